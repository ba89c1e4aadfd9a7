"""The portable build of the C++ core: what aarch64 and other compilers get (-DFXBN_NO_DISPATCH compiles out the x86
dispatch and the AVX-512 bodies; the baseline body the dispatch build runs under FXBN_ISA=baseline is the same code).
Each source must compile there with the project's strict warnings, with and without OpenMP."""
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "csrc" / "fxbn").glob("*.cpp"))
CXX = shutil.which("g++") or shutil.which("c++")


@pytest.mark.skipif(CXX is None, reason="no C++ compiler on PATH")
@pytest.mark.parametrize("openmp", [False, True])
def test_core_compiles_without_x86_dispatch(openmp):
    assert SOURCES, "csrc/fxbn/*.cpp not found"
    flags = ["-std=c++17", "-O0", "-Wall", "-Wextra", "-Werror", "-DFXBN_NO_DISPATCH", f"-I{ROOT / 'csrc'}"]
    if openmp:
        flags.append("-fopenmp")
    for src in SOURCES:
        res = subprocess.run([CXX, *flags, "-c", str(src), "-o", "/dev/null"], capture_output=True, text=True)
        assert res.returncode == 0, f"{src.name} (portable build):\n{res.stderr[-3000:]}"
