"""Benchmark of verify/: breakpoint certificate on a ResNet-50-sized layer set, z3 per-channel times, lemmas.

    python benchmarks/bench_verify.py [--z3-channels 200] [--jobs 2]
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fxbn  # noqa: E402
from verify import breakpoints, lemmas, run  # noqa: E402

RESNET50_BN_CHANNELS = 26560


def resnet_like(seed=0, channels=RESNET50_BN_CHANNELS):
    rng = np.random.default_rng(seed)
    a = (rng.lognormal(-7, 1, channels) * rng.choice([-1, 1], channels)).astype(np.float32).astype(np.float64)
    b = rng.normal(0, 20, channels).astype(np.float32).astype(np.float64)
    return fxbn.from_affine(a, b, in_dtype="int32", rounding="half_even")


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            return next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        import platform
        return platform.processor() or "unknown"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--z3-channels", type=int, default=200)
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args()
    layer = resnet_like()
    t0 = time.perf_counter()
    layer.reference_breakpoints("core")
    t1 = time.perf_counter()
    cert = breakpoints.certify(layer)
    t2 = time.perf_counter()
    assert all(r["proved"] for r in cert)
    print(f"breakpoint certificate, {layer.channels} channels int32 -> int8: reference breakpoints {t1 - t0:.3f} s "
          f"+ certificate {t2 - t1:.3f} s = {t2 - t0:.3f} s")
    sub = fxbn.FixedPointBN(layer.multiplier[:args.z3_channels], layer.bias[:args.z3_channels],
                            layer.shift[:args.z3_channels], layer.in_range[:args.z3_channels], layer.out_range,
                            layer.rounding, {k: (v if isinstance(v, str) else v[:args.z3_channels])
                                             for k, v in layer.source.items()}, "int8", "int32")
    t0 = time.perf_counter()
    z = run.run_z3(sub, jobs=args.jobs)
    wall = time.perf_counter() - t0
    times = np.array([r["seconds"] for r in z.values()])
    total = np.array([r["seconds"] + r["build_seconds"] for r in z.values()])
    status = {s: sum(r["status"] == s for r in z.values()) for s in ("proved", "refuted", "unknown")}
    print(f"z3 per channel (int32 in, affine, half_even), {len(times)} channels: median {np.median(times) * 1e3:.1f} ms, "
          f"p90 {np.percentile(times, 90) * 1e3:.1f} ms, max {times.max() * 1e3:.1f} ms (solver); with query building "
          f"median {np.median(total) * 1e3:.1f} ms; {status}; wall {wall:.2f} s "
          f"with --jobs {args.jobs} -> whole set ~{wall / len(times) * layer.channels / 60:.1f} min")
    cpu = {}
    for batched in (False, True):                 # same channels, one process, CPU seconds (robust to load)
        t0 = time.process_time()
        zz = run.run_z3(sub, batched=batched)
        cpu[batched] = time.process_time() - t0
        assert all(r["status"] == "proved" for r in zz.values())
    print(f"z3 CPU per channel, one process, {sub.channels} channels: per-channel scripts "
          f"{cpu[False] / sub.channels * 1e3:.2f} ms, batched threshold scripts ({run.BATCH} per call) "
          f"{cpu[True] / sub.channels * 1e3:.2f} ms: {cpu[False] / cpu[True]:.2f}x; kernel ISA {fxbn._core.kernel_isa()}, "
          f"CPU {_cpu_model()}")
    worst = 0.0
    for res in lemmas.prove_all(timeout_ms=60000):
        worst = max(worst, res["seconds"])
        assert res["status"] == "proved", res
    print(f"datapath lemmas: all proved, slowest {worst:.2f} s")


if __name__ == "__main__":
    main()
