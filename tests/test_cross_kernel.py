"""fxbn's own kernel (the portable body, -DFXBN_NO_DISPATCH) cross-compiled for aarch64 and run under qemu-user:
bit-exact with the host's FixedPointBN.apply (x86 dispatch) on every int8/int16 input of every channel, the int32
sample, and the first out-of-range index; the same for 32-bit ARM (arm-linux-gnueabihf-g++, qemu-arm): kernel.cpp
has no 128-bit arithmetic (widen_to_high's int64 overflow checks are compared with the former __int128 version on the
host by tests/cross/widen_check.cpp).  The solver still uses __int128 (128-bit products and divisions), so fxbn as a
whole does not build for 32-bit targets."""
import os
import pathlib
import shutil
import subprocess

import numpy as np
import pytest

from test_codegen import inputs, out_of_range_case, synthetic_layers

ROOT = pathlib.Path(__file__).resolve().parents[1]
TARGETS = {"aarch64": ("aarch64-linux-gnu-g++", "qemu-aarch64"), "armhf": ("arm-linux-gnueabihf-g++", "qemu-arm")}
DTYPES = {"int8": 0, "uint8": 1, "int16": 2, "uint16": 3, "int32": 4}


@pytest.fixture(scope="module", params=sorted(TARGETS))
def driver(request, tmp_path_factory):
    cxx, qemu = TARGETS[request.param]
    for tool in (cxx, qemu):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (apt-get install g++-aarch64-linux-gnu g++-arm-linux-gnueabihf "
                        "qemu-user)")
    exe = tmp_path_factory.mktemp("xk") / "kernel_driver"
    res = subprocess.run([cxx, "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", "-static", "-DFXBN_NO_DISPATCH",
                          f"-I{ROOT / 'csrc'}", str(ROOT / "tests" / "cross" / "kernel_driver.cpp"),
                          str(ROOT / "csrc" / "fxbn" / "kernel.cpp"), "-o", str(exe)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    return qemu, exe


def run_kernel(driver, layer, x, workdir, mutate=None):
    """x: (outer, C, inner).  Returns (first out-of-range index or -1, y)."""
    outer, C, inner = x.shape
    A, B = layer.multiplier.copy(), layer.bias.copy()
    if mutate is not None:
        B[mutate] += 1 << int(layer.shift[mutate])
    head = np.array([DTYPES[layer.in_dtype.name], DTYPES[layer.out_dtype.name], outer, C, inner,
                     int(np.max(layer.accumulator_bits) <= 32), *layer.out_range], np.int64)
    ip, op = os.path.join(workdir, "in.bin"), os.path.join(workdir, "out.bin")
    with open(ip, "wb") as f:
        for arr in (head, A, B, layer.in_range[:, 0], layer.in_range[:, 1]):
            f.write(np.ascontiguousarray(arr, np.int64).tobytes())
        f.write(layer.shift.astype(np.int32).tobytes())
        f.write(np.ascontiguousarray(x).tobytes())
    qemu, exe = driver
    res = subprocess.run([qemu, str(exe), ip, op], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, (res.returncode, res.stderr)
    raw = open(op, "rb").read()
    return int(np.frombuffer(raw[:8], np.int64)[0]), np.frombuffer(raw[8:], layer.out_dtype).reshape(x.shape)


@pytest.mark.parametrize("name", sorted(synthetic_layers()))
def test_portable_kernel_on_arm_bit_exact(driver, name, tmp_path):
    layer = synthetic_layers()[name]
    x = inputs(layer, 20_000)
    r, y = run_kernel(driver, layer, x, str(tmp_path))
    assert r == -1 and np.array_equal(y, layer.apply(x, axis=1))
    bad = out_of_range_case(layer, x)
    if bad is not None:
        lo, hi = layer.in_range[:, 0].reshape(1, -1, 1), layer.in_range[:, 1].reshape(1, -1, 1)
        first = int(np.flatnonzero(((bad < lo) | (bad > hi)).reshape(-1))[0])
        assert run_kernel(driver, layer, bad, str(tmp_path))[0] == first


def test_mutated_parameters_detected(driver, tmp_path):
    layer = synthetic_layers()["i16_half_away"]
    x = inputs(layer, 0)
    _, y = run_kernel(driver, layer, x, str(tmp_path), mutate=1)
    assert not np.array_equal(y, layer.apply(x, axis=1))


def test_widen_to_high_matches_int128_version(tmp_path):
    """kernel.cpp's widen_to_high (int64 with overflow checks, so it builds for 32-bit ARM) gives the same parameters
    as the former __int128 formulation on 400,000 edge and random cases (compiled on the host)."""
    if shutil.which("g++") is None:
        pytest.skip("g++ not installed")
    exe = tmp_path / "widen_check"
    res = subprocess.run(["g++", "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", "-DFXBN_NO_DISPATCH",
                          f"-I{ROOT / 'csrc'}", str(ROOT / "tests" / "cross" / "widen_check.cpp"), "-o", str(exe)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    diffs, widened = (int(v) for v in subprocess.run([str(exe)], capture_output=True, text=True).stdout.split())
    assert diffs == 0 and widened > 10_000
