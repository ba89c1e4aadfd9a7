"""The C++ core built for aarch64 (Debian's g++-aarch64-linux-gnu; the portable body: the x86 dispatch compiles out)
and checked under qemu-user by tests/cpp/kernel_check.cpp against a 128-bit scalar reference: every dtype pair, the
three accumulator paths, by-row and periodic layouts with tails, 1 and 2 threads, the first out-of-range index.
The same program with --mutate (one multiplier off by one) must fail, so the comparison can fail.  Skips without the
cross compiler or qemu-aarch64.  This checks correctness only: ARM speed is not measured here.
CI: apt-get install -y g++-aarch64-linux-gnu qemu-user"""
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CXX = shutil.which("aarch64-linux-gnu-g++")
QEMU = shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")
SYSROOT = pathlib.Path("/usr/aarch64-linux-gnu")

pytestmark = pytest.mark.skipif(CXX is None or QEMU is None or not SYSROOT.is_dir(),
                                reason="needs aarch64-linux-gnu-g++, qemu-aarch64 and /usr/aarch64-linux-gnu")


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    out = tmp_path_factory.mktemp("aarch64") / "kernel_check"
    sources = [ROOT / "tests" / "cpp" / "kernel_check.cpp", *sorted((ROOT / "csrc" / "fxbn").glob("kernel*.cpp"))]
    flags = ["-std=c++17", "-O1", "-fopenmp", "-Wall", "-Wextra", "-Werror", f"-I{ROOT / 'csrc'}"]
    res = subprocess.run([CXX, *flags, *map(str, sources), "-o", str(out)], capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def _run(binary, *args):
    return subprocess.run([QEMU, "-L", str(SYSROOT), str(binary), *args], capture_output=True, text=True, timeout=600)


def test_aarch64_kernel_matches_reference(binary):
    res = _run(binary)
    assert res.returncode == 0 and res.stdout.startswith("ok"), (res.stdout, res.stderr[-2000:])
    assert "isa=baseline" in res.stdout


def test_aarch64_check_detects_a_wrong_multiplier(binary):
    res = _run(binary, "--mutate")
    assert res.returncode == 1 and res.stdout.startswith("FAIL"), res.stdout
