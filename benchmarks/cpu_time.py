"""Kernel throughput in CPU time (process_time), one thread, against np.copyto of the same input.

On a shared machine wall-clock medians move with other processes' load; CPU time of a single-threaded loop does not
count time spent descheduled, so it shows what bounds the kernel (compute vs bandwidth) more stably.  No PMU is
available in this VM (perf stat reports cycles as <not supported>).

Usage: python benchmarks/cpu_time.py [--isa NAME]
"""
import argparse
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench  # noqa: E402
from fxbn import _core  # noqa: E402


def cpu(fn, reps):
    fn()
    t0 = time.process_time()
    for _ in range(reps):
        fn()
    return (time.process_time() - t0) / reps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--isa", default=None)
    ap.add_argument("--reps", type=int, default=30)
    args = ap.parse_args()
    if args.isa:
        _core.kernel_isa(args.isa)
    print(f"kernel ISA {_core.kernel_isa()}, shape 32x64x56x56, 1 thread, CPU time per call")
    rng = np.random.default_rng(2026)
    shape = (32, 64, 56, 56)
    for name, tin, tout in [("uint8->uint8", "uint8", "uint8"), ("int8->int8", "int8", "int8"),
                            ("int32->int8", "int32", "int8"), ("int16->int16", "int16", "int16")]:
        if tin == "int32":
            layer, _, _ = bench.affine_layer(64, rng)
            x = np.clip(rng.normal(0, 4000, shape), -2 ** 31, 2 ** 31 - 1).astype(np.int32)
        else:
            layer, _ = bench.bn_layer(64, tin, tout, rng)
            info = np.iinfo(tin)
            x = rng.integers(info.min, int(info.max) + 1, shape, dtype=tin)
        for layout, xx, axis in (("NCHW", x, 1), ("NHWC", np.ascontiguousarray(x.transpose(0, 2, 3, 1)), -1)):
            y = np.empty(xx.shape, layer.out_dtype)
            d = np.empty_like(xx)
            tf = cpu(lambda: layer.apply(xx, axis=axis, out=y, threads=1), args.reps)
            tc = cpu(lambda: np.copyto(d, xx), args.reps)
            bf = (xx.nbytes + y.nbytes) / tf / 1e9
            bc = 2 * xx.nbytes / tc / 1e9
            acc = "acc32" if np.all(layer.accumulator_bits <= 32) else "acc64"
            print(f"{name:14s}{layout:6s}{acc:7s} fxbn {tf * 1e6:8.0f} us {bf:6.1f} GB/s   copy {tc * 1e6:8.0f} us "
                  f"{bc:6.1f} GB/s   {100 * bf / bc:5.0f}% of copy bandwidth")


if __name__ == "__main__":
    main()
