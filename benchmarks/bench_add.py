"""Benchmark of the exact int8 add (issue 11): FixedPointAdd.apply against torch.ops.quantized.add and a copy.

Usage:
    python benchmarks/bench_add.py [--repeats N] [--threads T]

One run, side by side, round robin (each round times every implementation once, after warm-up); medians of the
rounds.  Rows per size: fxbn (apply(x1, x2, out=y), preallocated), fxbn_alloc (apply(x1, x2)), torch
(torch.ops.quantized.add on quint8 tensors of the same bytes, torch.set_num_threads(T)), copy3 (np.copyto of x1
into y plus a read of x2: the three streams of the add, as copy bandwidth).  Ratios are medians of per-round ratios.
Bandwidth = (2 inputs read + 1 output written) / time.
Targets: fxbn >= 3x torch and >= 60% of copy3 bandwidth on large tensors.
"""
import argparse
import platform
import statistics
import subprocess
import time

import numpy as np

import fxbn
from fxbn import _core


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def timed(fn, min_time=0.005):
    fn()
    n, t = 1, 0.0
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        t = time.perf_counter() - t0
        if t >= min_time:
            return t / n
        n *= 2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    try:
        import torch
        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
    layer = fxbn.from_add((0.0123, 0.05), (3, -5), 0.07, 1, rounding="half_even")
    print(f"CPU: {cpu_model()}; kernel ISA: {_core.kernel_isa()}; threads: {args.threads}; "
          f"torch: {torch.__version__ if torch else 'absent'}")
    print(f"layer: {layer}")
    rng = np.random.default_rng(0)
    for n in (1 << 16, 1 << 20, 1 << 24):
        shape = (n // (64 * 64), 64, 8, 8)
        x1 = rng.integers(-128, 128, shape, dtype=np.int8)
        x2 = rng.integers(-128, 128, shape, dtype=np.int8)
        y = np.empty(shape, np.int8)
        impl = {
            "fxbn": lambda: layer.apply(x1, x2, out=y, threads=args.threads),
            "fxbn_alloc": lambda: layer.apply(x1, x2, threads=args.threads),
            "copy3": lambda: (np.copyto(y, x1), x2.max()),
        }
        if torch is not None:
            # the same bytes as quint8 (zero points shifted by 128), the peer's own op
            q1 = torch._make_per_tensor_quantized_tensor(torch.from_numpy((x1.view(np.uint8) ^ 0x80).copy()),
                                                         0.0123, 3 + 128)
            q2 = torch._make_per_tensor_quantized_tensor(torch.from_numpy((x2.view(np.uint8) ^ 0x80).copy()),
                                                         0.05, -5 + 128)
            impl["torch"] = lambda: torch.ops.quantized.add(q1, q2, 0.07, 1 + 128)
        samples = {k: [] for k in impl}
        for _ in range(args.repeats):
            for k, fn in impl.items():
                samples[k].append(timed(fn))
        med = {k: statistics.median(v) for k, v in samples.items()}
        print(f"n = {n} ({3 * n / 1e6:.1f} MB moved per call)")
        for k in impl:
            print(f"  {k:11s} median {med[k] * 1e6:10.1f} us   {3 * n / med[k] / 1e9:6.2f} GB/s")
        ratio = lambda a, b: statistics.median(sa / sb for sa, sb in zip(samples[a], samples[b]))  # noqa: E731
        if torch is not None:
            print(f"  fxbn vs torch: {ratio('torch', 'fxbn'):.2f}x faster (fxbn_alloc {ratio('torch', 'fxbn_alloc'):.2f}x)")
        print(f"  fxbn bandwidth: {100 * ratio('copy3', 'fxbn'):.0f}% of copy3")


if __name__ == "__main__":
    main()
