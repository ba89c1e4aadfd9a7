"""Benchmark of the exact int8 add (issue 11 item 5): FixedPointAdd.apply against torch.ops.quantized.add and a copy.

Usage:
    python benchmarks/bench_add.py [--repeats N] [--threads 1 2] [--isas auto avx2] [--clock wall|thread] [--json PATH]

One run, side by side: for every kernel body (--isas; "auto" is the best the CPU has, "avx2" the same as
FXBN_ISA=avx2), thread count and size, a round robin (each round times every implementation once, after warm-up);
medians of the rounds (and, as the noise floor of a shared machine, the best round of each implementation).
Implementations: fxbn (apply(x1, x2, out=y), preallocated), fxbn_alloc (apply(x1, x2)),
torch (torch.ops.quantized.add on quint8 tensors of the same bytes, torch.set_num_threads(T)), copy3 (np.copyto of
x1 into y plus a read of x2 (x2.max()): the three streams of the add, as copy bandwidth).  Ratios are medians of
per-round ratios.  Bandwidth = (2 inputs read + 1 output written) / time.
Targets: fxbn >= 3x torch, and >= 60% of copy3 bandwidth on large tensors.
--clock thread times with the calling thread's CPU time (time.thread_time) instead of wall time: on a loaded shared
machine it leaves out the time the process waits for a core (not the cache and memory contention); with --threads 1
every implementation runs in the calling thread, so the ratios stay like for like.
"""
import argparse
import json
import os
import statistics
import time

import numpy as np

import fxbn
from fxbn import _core
from machine import cpu_model

SIZES = {"small": 1 << 16, "medium": 1 << 20, "large": 1 << 24}


CLOCK = time.perf_counter


def timed(fn, min_time=0.005):
    fn()
    n = 1
    while True:
        t0 = CLOCK()
        for _ in range(n):
            fn()
        t = CLOCK() - t0
        if t >= min_time:
            return t / n
        n *= 2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--isas", nargs="+", default=["auto", "avx2"])
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--clock", choices=["wall", "thread"], default="wall")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    global CLOCK
    if args.clock == "thread":
        if max(args.threads) > 1:
            ap.error("--clock thread measures the calling thread only: use --threads 1")
        CLOCK = time.thread_time
    try:
        import warnings

        import torch
        warnings.filterwarnings("ignore", message=".*quantized tensor creation.*")
    except ImportError:
        torch = None
    layer = fxbn.from_add((0.0123, 0.05), (3, -5), 0.07, 1, rounding="half_even")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs, load average {load:.1f}); torch: "
          f"{torch.__version__ if torch else 'absent'}; numpy {np.__version__}; clock {args.clock}")
    print(f"layer: {layer}")
    rows = []
    rng = np.random.default_rng(0)
    for label in args.sizes:
        n = SIZES[label]
        shape = (n // (64 * 64), 64, 8, 8)
        x1 = rng.integers(-128, 128, shape, dtype=np.int8)
        x2 = rng.integers(-128, 128, shape, dtype=np.int8)
        y = np.empty(shape, np.int8)
        if torch is not None:  # the same bytes as quint8 (zero points shifted by 128), the peer's own op
            q1 = torch._make_per_tensor_quantized_tensor(torch.from_numpy((x1.view(np.uint8) ^ 0x80).copy()),
                                                         0.0123, 3 + 128)
            q2 = torch._make_per_tensor_quantized_tensor(torch.from_numpy((x2.view(np.uint8) ^ 0x80).copy()),
                                                         0.05, -5 + 128)
        for isa in args.isas:
            try:
                _core.kernel_isa(isa)
            except ValueError:
                print(f"kernel ISA {isa}: not available on this CPU")
                continue
            body = _core.kernel_isa()
            for nt in args.threads:
                impl = {
                    "fxbn": lambda: layer.apply(x1, x2, out=y, threads=nt),
                    "fxbn_alloc": lambda: layer.apply(x1, x2, threads=nt),
                    "copy3": lambda: (np.copyto(y, x1), x2.max()),
                }
                if torch is not None:
                    torch.set_num_threads(nt)
                    impl["torch"] = lambda: torch.ops.quantized.add(q1, q2, 0.07, 1 + 128)
                samples = {k: [] for k in impl}
                for _ in range(args.repeats):
                    for k, fn in impl.items():
                        samples[k].append(timed(fn))
                med = {k: statistics.median(v) for k, v in samples.items()}
                best = {k: min(v) for k, v in samples.items()}
                ratio = lambda a, b: statistics.median(sa / sb for sa, sb in zip(samples[a], samples[b]))  # noqa
                row = {"size": label, "n": n, "isa": body, "threads": nt,
                       "us": {k: round(v * 1e6, 2) for k, v in med.items()},
                       "best_us": {k: round(v * 1e6, 2) for k, v in best.items()},
                       "best_copy3_pct": round(100 * best["copy3"] / best["fxbn"], 1),
                       "copy3_pct": round(100 * ratio("copy3", "fxbn"), 1),
                       "copy3_pct_alloc": round(100 * ratio("copy3", "fxbn_alloc"), 1)}
                if torch is not None:
                    row["x_torch"] = round(ratio("torch", "fxbn"), 2)
                    row["x_torch_alloc"] = round(ratio("torch", "fxbn_alloc"), 2)
                    row["copy3_x_torch"] = round(ratio("torch", "copy3"), 2)
                    row["best_x_torch"] = round(best["torch"] / best["fxbn"], 2)
                rows.append(row)
                print(f"{label} n={n} ({3 * n / 1e6:.1f} MB moved) kernel ISA {body}, {nt} thread(s):")
                for k in impl:
                    print(f"  {k:11s} median {med[k] * 1e6:10.1f} us   {3 * n / med[k] / 1e9:6.2f} GB/s   "
                          f"(best {best[k] * 1e6:10.1f} us)")
                if torch is not None:
                    print(f"  fxbn vs torch: {row['x_torch']:.2f}x faster (fxbn_alloc {row['x_torch_alloc']:.2f}x; "
                          f"copy3 itself {row['copy3_x_torch']:.2f}x)")
                print(f"  fxbn bandwidth: {row['copy3_pct']:.0f}% of copy3 (fxbn_alloc {row['copy3_pct_alloc']:.0f}%)")
                print(f"  best rounds: fxbn {row.get('best_x_torch', float('nan')):.2f}x torch, "
                      f"{row['best_copy3_pct']:.0f}% of copy3")
    _core.kernel_isa("auto")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"cpu": cpu_model(), "load_average": os.getloadavg()[0], "clock": args.clock,
                       "torch": torch.__version__ if torch else None, "layer": repr(layer),
                       "repeats": args.repeats, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
