"""Benchmark of verify/: where the time of a whole-model proof goes, and the z3 encodings side by side.

    python benchmarks/bench_verify.py [--z3-channels 200] [--jobs 2]
    python benchmarks/bench_verify.py --model ../shared/data/imagenet/resnet50.npz --activations acts.json \\
        [--sample 32] [--full]

Every figure is CPU time of this process (time.process_time) unless it says wall: the machine is shared, so wall
times depend on the load average, which is printed at the start and the end with the CPU model, the z3 version and
the kernel ISA.  With --model, each phase of ``python -m verify MODEL --activations ACTS`` is timed on its own:
building the layers, the exact reference breakpoints (C++ core), the breakpoint certificate, the minimality
certificate (all channels), and for z3 the Python text building and z3 itself on the first --sample channels of
every layer (extrapolated to all channels), for each of the three z3 encodings measured in the same run:
per-channel scripts (--no-batch), threshold batches (the previous batched encoding) and xor batches (the
current one, bound 0).  --full also runs the whole CLI with --jobs and reports its wall and CPU time
(workers included).  acts.json: ``python -m experiments.activations resnet50 --calib 16 --out acts.json``.
"""
import argparse
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fxbn  # noqa: E402
from verify import breakpoints, lemmas, run, smt  # noqa: E402

RESNET50_BN_CHANNELS = 26560
CPU = time.process_time


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
        return platform.processor() or "unknown"


def _load():
    try:
        return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "load average unknown"


def header():
    print(f"CPU {_cpu_model()}, {os.cpu_count()} logical cores, kernel ISA {fxbn._core.kernel_isa()}, "
          f"z3 {smt.solver_version()}, Python {platform.python_version()}; {_load()}")


def _z3_encodings(layer, channels):
    """{encoding: (python build CPU s, z3 CPU s)} on `channels`, every answer checked to be unsat."""
    out = {}
    opts = "(set-logic QF_LIA)(set-option :timeout 60000)"
    for name, block in (("threshold batches", lambda c: smt.threshold_block(layer, c, 0)),
                        ("xor batches", lambda c: smt.exact_block(layer, c))):
        build = solve = 0.0
        for i in range(0, len(channels), run.BATCH):
            part = channels[i:i + run.BATCH]
            t0 = CPU()
            text = opts + "".join(block(c) for c in part)
            t1 = CPU()
            answers = smt._eval_script(text)
            t2 = CPU()
            if answers != ["unsat"] * len(part):
                raise AssertionError(f"{name}: {answers[:3]}")
            build, solve = build + t1 - t0, solve + t2 - t1
        out[name] = (build, solve)
    t0 = CPU()
    for c in channels:                                        # one script per channel (--no-batch)
        r = smt.prove_channel_split(layer, c, 0, 60000)
        assert r["status"] == "proved", r
    out["per-channel scripts"] = (0.0, CPU() - t0)             # build and solve together
    return out


def synthetic(args):
    layer = resnet_like()
    t0 = CPU()
    layer.reference_breakpoints("core")
    t1 = CPU()
    cert = breakpoints.certify(layer)
    t2 = CPU()
    assert all(r["proved"] for r in cert)
    print(f"synthetic ResNet-50-sized layer set ({layer.channels} channels int32 -> int8, affine half_even): "
          f"reference breakpoints {t1 - t0:.3f} s + certificate {t2 - t1:.3f} s")
    n = args.z3_channels
    sub = fxbn.FixedPointBN(layer.multiplier[:n], layer.bias[:n], layer.shift[:n], layer.in_range[:n],
                            layer.out_range, layer.rounding,
                            {k: (v if isinstance(v, str) else v[:n]) for k, v in layer.source.items()}, "int8",
                            "int32")
    enc = _z3_encodings(sub, list(range(sub.channels)))
    _print_encodings(enc, sub.channels, sub.channels)


def _print_encodings(enc, sampled, total):
    ref = sum(enc["per-channel scripts"])
    for name, (b, s) in enc.items():
        per = (b + s) / sampled
        print(f"  z3 {name:20s}: {per * 1e3:6.2f} ms CPU per channel (Python text {b / sampled * 1e3:.2f} + z3 "
              f"{s / sampled * 1e3:.2f}), {ref / (b + s):.2f}x the per-channel scripts; {total} channels: "
              f"{per * total:.0f} s CPU")


def model_phases(args):
    from verify import model
    from verify.__main__ import _collect

    t0 = CPU()
    acts = model.load_activations(args.activations)
    items = _collect([args.model], acts.get("style"))
    models = [i for i in items if isinstance(i, model.Model)]
    model.apply_data_flow(models, acts)
    layers = [(n, lay) for n, lay, _ in model.build_layers(models, acts)]
    phases = {"load + build layers": CPU() - t0}
    C = sum(lay.channels for _, lay in layers)
    ph = dict.fromkeys(("reference breakpoints (C++)", "breakpoint certificate",
                        "minimality certificate (C++ hulls)", "minimality certificate (Python hulls)"), 0.0)
    enc_all, sampled = {}, 0
    for name, layer in layers:
        t = CPU()
        layer.reference_breakpoints("core")
        ph["reference breakpoints (C++)"] += CPU() - t
        t = CPU()
        assert all(r["proved"] for r in breakpoints.certify(layer))
        ph["breakpoint certificate"] += CPU() - t
        t = CPU()
        mins = breakpoints.minimality(layer)
        assert breakpoints.layer_minimality(layer, mins)["proved"]
        ph["minimality certificate (C++ hulls)"] += CPU() - t
        t = CPU()
        assert breakpoints.minimality(layer, hulls="python") == mins          # the previous path, same certificate
        ph["minimality certificate (Python hulls)"] += CPU() - t
        chans = list(range(min(args.sample, layer.channels)))
        for k, (b, s) in _z3_encodings(layer, chans).items():
            ob, os_ = enc_all.get(k, (0.0, 0.0))
            enc_all[k] = (ob + b, os_ + s)
        sampled += len(chans)
    phases.update(ph)
    print(f"{args.model}: {len(layers)} layers, {C} channels; CPU seconds per phase (one process):")
    for k, v in phases.items():
        print(f"  {k:32s} {v:8.2f} s  ({v / C * 1e3:.3f} ms per channel)")
    print(f"  z3, first {args.sample} channels of every layer ({sampled} channels), extrapolated to {C}:")
    _print_encodings(enc_all, sampled, C)
    b, s = enc_all["xor batches"]
    rest = sum(v for k, v in phases.items() if "Python hulls" not in k)
    z3_all = (b + s) / sampled * C
    total = rest + z3_all
    print(f"  estimated CPU of the whole proof with xor batches: {total:.0f} s (z3 {100 * z3_all / total:.0f} %) "
          f"-> {total / 2:.0f} s wall at best on 2 idle cores (JSON: see --full)")
    if args.full:
        out = os.path.join(tempfile.mkdtemp(), "cert.json")
        cmd = [sys.executable, "-m", "verify", args.model, "--activations", args.activations, "--jobs",
               str(args.jobs), "--quiet", "--json", out]
        print(f"  full run: {' '.join(cmd[1:])}; {_load()}")
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        w0 = time.perf_counter()
        res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - w0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        cert = json.load(open(out))
        proved = sum(rec["verdict"] == "PROVED" for rec in cert["layers"])
        print(f"  full run: exit {res.returncode}, {proved}/{len(cert['layers'])} layers PROVED, wall {wall:.1f} s, "
              f"CPU {cpu:.1f} s (workers included); {_load()}")
        from verify.__main__ import write_json

        t = CPU()
        json.dumps(cert, indent=1)
        t1 = CPU()
        write_json(cert, io.StringIO())
        t2 = CPU()
        print(f"  JSON of the certificate ({os.path.getsize(out) / 1e6:.0f} MB): {t2 - t1:.2f} s CPU to serialise "
              f"(verify.__main__.write_json), json.dumps(indent=1) {t1 - t:.2f} s")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--z3-channels", type=int, default=200, help="synthetic layer: channels for the z3 comparison")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--model", help="model file (e.g. ../shared/data/imagenet/resnet50.npz)")
    p.add_argument("--activations", help="its activations file")
    p.add_argument("--sample", type=int, default=32, help="z3 channels per layer with --model")
    p.add_argument("--full", action="store_true", help="also run python -m verify on the model with --jobs")
    p.add_argument("--no-lemmas", action="store_true")
    args = p.parse_args()
    header()
    synthetic(args)
    if args.model:
        model_phases(args)
    if not args.no_lemmas:
        worst = 0.0
        for res in lemmas.prove_all(timeout_ms=60000):
            worst = max(worst, res["seconds"])
            assert res["status"] == "proved", res
        print(f"datapath lemmas: all proved, slowest {worst:.2f} s")
    print(_load())


if __name__ == "__main__":
    main()
