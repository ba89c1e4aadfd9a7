"""The C++ core built for aarch64 (Debian's g++-aarch64-linux-gnu) and checked under qemu-user by
tests/cpp/kernel_check.cpp against a 128-bit scalar reference: every dtype pair, the three accumulator paths with
random and extreme-range parameters, by-row and periodic layouts with tails, 1 and 2 threads, the first
out-of-range index.  On aarch64 the kernel runs its NEON bodies (csrc/fxbn/kernel_neon.cpp, kernel ISA "neon"); the
program also runs the portable body (ISA "baseline") on the same data and requires identical output bytes, and
FXBN_ISA=baseline runs the whole check on the portable body alone.
The comparison can fail: the program with --mutate (one multiplier off by one) must fail, and so must builds of
kernel_neon.cpp with one deliberately wrong instruction (a logical shift for the arithmetic one, a truncating narrow
for a saturating one, a zero-extended signed input, the 16-bit multiply without its range check, wrong periodic
table reads).  Skips without the cross compiler or qemu-aarch64.  This checks correctness only: ARM speed is not
measured here (qemu timings mean nothing).
CI: apt-get install -y g++-aarch64-linux-gnu qemu-user"""
import os
import pathlib
import re
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CXX = shutil.which("aarch64-linux-gnu-g++")
QEMU = shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")
SYSROOT = pathlib.Path("/usr/aarch64-linux-gnu")
FLAGS = ["-std=c++17", "-O1", "-fopenmp", "-Wall", "-Wextra", "-Werror", f"-I{ROOT / 'csrc'}"]
NEON = ROOT / "csrc" / "fxbn" / "kernel_neon.cpp"

pytestmark = pytest.mark.skipif(CXX is None or QEMU is None or not SYSROOT.is_dir(),
                                reason="needs aarch64-linux-gnu-g++, qemu-aarch64 and /usr/aarch64-linux-gnu")

# Deliberately wrong NEON bodies: (old text, wrong text), each old text occurring exactly once in kernel_neon.cpp.
MUTANTS = {
    # ushl: a logical right shift of the 32-bit accumulator (the mul32 bodies)
    "logical_shift32": ("return vshlq_s32(v, neg_s);",
                        "return vreinterpretq_s32_u32(vshlq_u32(vreinterpretq_u32_s32(v), neg_s));"),
    # ushl on the 64-bit accumulator (the widen bodies)
    "logical_shift64": ("return vshlq_s64(v, neg_s);",
                        "return vreinterpretq_s64_u64(vshlq_u64(vreinterpretq_u64_s64(v), neg_s));"),
    # xtn for sqxtn: the 64-bit accumulator truncated to 32 bits instead of saturated
    "truncating_narrow64": ("vqmovn_high_s64(vqmovn_s64(", "vmovn_high_s64(vmovn_s64("),
    # xtn for sqxtn in the store: int32 lanes truncated to int16 before the clamp
    "truncating_store": ("const int16x8_t w0 = vqmovn_high_s32(vqmovn_s32(q[0]), q[1]);",
                         "const int16x8_t w0 = vmovn_high_s32(vmovn_s32(q[0]), q[1]);"),
    # uxtl for sxtl: int8 inputs zero-extended
    "zero_extend_int8": ("return h ? vmovl_high_s8(v) : vmovl_s8(vget_low_s8(v));",
                         "return vreinterpretq_s16_u16(h ? vmovl_high_u8(vreinterpretq_u8_s8(v)) : "
                         "vmovl_u8(vreinterpret_u8_s8(vget_low_s8(v))));"),
    # periodic tables: the mul32 shift table used without its negation (sshl by +s: a left shift)
    "periodic_positive_count": ("vnegq_s32(vld1q_s32(S + t))", "vld1q_s32(S + t)"),
    # periodic tables: lanes 2-3 of the widen bodies read B of lanes 0-1
    "periodic_widen_b_entries": ("vld1q_s64(B + t + 2)", "vld1q_s64(B + t)"),
    # smlal for every multiplier: A beyond int16 loses its high bits
    "smlal_unchecked_a": ("const bool a16 = a >= std::numeric_limits<int16_t>::min() && "
                          "a <= std::numeric_limits<int16_t>::max();", "const bool a16 = true;"),
}


def _compile(src, obj, extra=()):
    res = subprocess.run([CXX, *FLAGS, *extra, "-c", str(src), "-o", str(obj)], capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    return obj


def _link(objs, out):
    res = subprocess.run([CXX, "-fopenmp", *map(str, objs), "-o", str(out)], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def objects(tmp_path_factory):
    """kernel_check and every kernel source except kernel_neon.cpp (the x86 files compile to nothing there)."""
    d = tmp_path_factory.mktemp("aarch64")
    sources = [ROOT / "tests" / "cpp" / "kernel_check.cpp",
               *(p for p in sorted((ROOT / "csrc" / "fxbn").glob("kernel*.cpp")) if p != NEON)]
    return d, [_compile(src, d / f"{src.stem}.o") for src in sources]


@pytest.fixture(scope="module")
def binary(objects):
    d, objs = objects
    return _link([*objs, _compile(NEON, d / "kernel_neon.o")], d / "kernel_check")


def _run(binary, *args, env=None):
    environ = {k: v for k, v in os.environ.items() if k != "FXBN_ISA"}
    environ.update(env or {})
    return subprocess.run([QEMU, "-L", str(SYSROOT), str(binary), *args], capture_output=True, text=True,
                          timeout=900, env=environ)


def _counts(stdout):
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", stdout)}


def test_neon_bodies_match_reference_and_portable_body(binary):
    res = _run(binary)
    assert res.returncode == 0 and res.stdout.startswith("ok"), (res.stdout, res.stderr[-2000:])
    assert "isa=neon" in res.stdout
    c = _counts(res.stdout)
    # every run compared with the portable body's bytes as well
    assert c["runs"] > 1500 and c["compared_with_baseline"] == c["runs"] and c["differences"] == 0, c


def test_portable_body_matches_reference(binary):
    res = _run(binary, env={"FXBN_ISA": "baseline"})
    assert res.returncode == 0 and res.stdout.startswith("ok"), (res.stdout, res.stderr[-2000:])
    assert "isa=baseline" in res.stdout and _counts(res.stdout)["compared_with_baseline"] == 0


def test_aarch64_check_detects_a_wrong_multiplier(binary):
    res = _run(binary, "--mutate")
    assert res.returncode == 1 and res.stdout.startswith("FAIL"), res.stdout


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_wrong_neon_body_fails(objects, tmp_path, name):
    """A kernel_neon.cpp with one wrong instruction must disagree with the 128-bit reference (not only with the
    portable body)."""
    old, new = MUTANTS[name]
    text = NEON.read_text()
    assert text.count(old) == 1, f"mutant {name}: its text is no longer in kernel_neon.cpp"
    src = tmp_path / "kernel_neon.cpp"
    src.write_text(text.replace(old, new))
    d, objs = objects
    obj = _compile(src, tmp_path / "kernel_neon.o", [f"-I{ROOT / 'csrc' / 'fxbn'}", "-Wno-error"])
    res = _run(_link([*objs, obj], tmp_path / "kernel_check"), "--first-failure")
    assert res.returncode == 1 and res.stdout.startswith("FAIL"), (name, res.stdout)
    assert _counts(res.stdout)["mismatches"] > 0, (name, res.stdout)
