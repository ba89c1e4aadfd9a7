"""Benchmark (issue 12 item 6): onnxruntime latency of fxbn's exact integer-only ResNet-50 against onnxruntime's own
quantize_static (QDQ) model of the same float network, in one run.

Usage:
    python benchmarks/bench_onnx.py [--rounds N] [--calib N] [--profile] [--batches 1 16] [--threads 1 2]

Models: the exact model from fxbn.onnx.network.export_network (uint8 NHWC pixels -> int64 logits: ConvInteger +
integer FixedPointBN subgraphs) and quantize_static(export_float(graph)) (QDQ, per-channel int8 weights, uint8
activations, MinMax on the same calibration images), both with graph optimizations ORT_ENABLE_ALL, CPU provider,
intra_op_num_threads = T.  Inputs: random pixels (uint8) / their normalised NCHW float32 (QDQ's input).  Timing:
round robin (each round runs every model once per configuration after warm-up); medians over the rounds; the ratio
is the median of the per-round ratios exact / QDQ.  Goal: ratio <= 1.3.
``--profile``: onnxruntime's profiler on both models (batch 16, 2 threads), time per op type.
The machine is shared and noisy: compare only figures of one run.
"""
import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from machine import cpu_model  # noqa: E402  (benchmarks/machine.py: the script's own directory)


def session(model, threads, profile=False):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    if profile:
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "ort")
    return ort.InferenceSession(model.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"])


def per_op(sess, feed, runs):
    """Run ``runs`` times under onnxruntime's profiler: {op type: ms per run}, sorted, and the total."""
    for _ in range(runs):
        sess.run(None, feed)
    path = sess.end_profiling()
    events = json.loads(pathlib.Path(path).read_text())
    times = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            times[op] = times.get(op, 0.0) + e["dur"] / 1000.0 / runs
    return dict(sorted(times.items(), key=lambda kv: -kv[1])), sum(times.values())


def main(argv=None):
    import onnxruntime as ort

    import fxbn
    from experiments import onnx_net
    from fxbn.onnx.network import export_float, export_network

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--calib", type=int, default=20, help="calibration images (the first N ImageNet samples)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--profile", action="store_true")
    p.add_argument("--convinteger", action=argparse.BooleanOptionalAction, default=True,
                   help="also time export_network(conv='convinteger') (NCHW ConvInteger)")
    p.add_argument("--save", default=None, help="directory to save both models in")
    args = p.parse_args(argv)

    from fxbn import _core

    print(f"CPU: {cpu_model()}; fxbn kernel ISA: {_core.kernel_isa()}; onnxruntime {ort.__version__}; "
          f"fxbn {getattr(fxbn, '__version__', '?')}; os.cpu_count() = {os.cpu_count()}")
    print("NOTE: shared, noisy machine (other jobs running): compare figures within this run only; medians.")
    from experiments import data

    onnx_net.use_torch_conv(True)          # calibration speed only (exact; see experiments.onnx_net)
    t0 = time.time()
    graph, _, _, calib = onnx_net.imagenet_network(pathlib.Path(data.data_dir()), "resnet50", limit=args.calib,
                                                   calib=args.calib, batch=10)
    exact = export_network(graph, 224)
    exact_ci = export_network(graph, 224, conv="convinteger") if args.convinteger else None
    with tempfile.TemporaryDirectory() as tmp:
        qdq = onnx_net.qdq_model(export_float(graph, 224), graph, calib, os.path.join(tmp, "qdq.onnx"))
    if args.save:
        import onnx

        os.makedirs(args.save, exist_ok=True)
        onnx.save(exact, os.path.join(args.save, "resnet50.int.onnx"))
        onnx.save(qdq, os.path.join(args.save, "resnet50.qdq.onnx"))
    print(f"ResNet-50 calibrated on {len(calib)} images, exported and quantize_static'd in {time.time() - t0:.0f} s; "
          f"exact model {len(exact.graph.node)} nodes, QDQ model {len(qdq.graph.node)} nodes")
    rng = np.random.default_rng(0)
    print("exact = export_network (conv='matmul': NHWC, per-tap MatMulInteger); exact_ci = conv='convinteger' "
          "(NCHW ConvInteger)")
    print(f"{'batch':>5} {'threads':>7} {'exact ms':>10} {'QDQ ms':>10} {'exact/QDQ':>10} {'exact_ci ms':>12} "
          f"{'exact_ci/QDQ':>13}  rounds")
    rows = []
    for batch in args.batches:
        pixels = rng.integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8)
        feeds = {"exact": {"pixels": pixels}, "qdq": {"image": onnx_net.float_inputs(graph, pixels)},
                 "exact_ci": {"pixels": pixels}}
        for threads in args.threads:
            sessions = {"exact": session(exact, threads), "qdq": session(qdq, threads)}
            if exact_ci is not None:
                sessions["exact_ci"] = session(exact_ci, threads)
            for name, s in sessions.items():       # warm-up
                s.run(None, feeds[name])
            t = {name: [] for name in sessions}
            for _ in range(args.rounds):
                for name, s in sessions.items():
                    t0 = time.perf_counter()
                    s.run(None, feeds[name])
                    t[name].append((time.perf_counter() - t0) * 1000)
            ratio = statistics.median(a / b for a, b in zip(t["exact"], t["qdq"]))
            row = {"batch": batch, "threads": threads, "exact_ms": statistics.median(t["exact"]),
                   "qdq_ms": statistics.median(t["qdq"]), "ratio": ratio}
            ci = ""
            if "exact_ci" in t:
                row["exact_ci_ms"] = statistics.median(t["exact_ci"])
                row["ci_ratio"] = statistics.median(a / b for a, b in zip(t["exact_ci"], t["qdq"]))
                ci = f"{row['exact_ci_ms']:12.1f} {row['ci_ratio']:13.2f}"
            else:
                ci = f"{'-':>12} {'-':>13}"
            rows.append(row)
            print(f"{batch:5d} {threads:7d} {row['exact_ms']:10.1f} {row['qdq_ms']:10.1f} {ratio:10.2f} {ci}  "
                  f"{args.rounds}", flush=True)
    met = all(r["ratio"] <= 1.3 for r in rows)
    print(f"goal exact <= 1.3 x QDQ: {'met' if met else 'NOT met'} (worst {max(r['ratio'] for r in rows):.2f})")
    if args.profile:
        batch, threads = max(args.batches), max(args.threads)
        pixels = rng.integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8)
        for name, model, feed in (("exact", exact, {"pixels": pixels}),
                                  ("qdq", qdq, {"image": onnx_net.float_inputs(graph, pixels)})):
            s = session(model, threads, profile=True)
            s.run(None, feed)
            ops, total = per_op(s, feed, 3)
            print(f"profile {name} (batch {batch}, {threads} threads): {total:.1f} ms of kernel time per run; "
                  + ", ".join(f"{op} {ms:.1f} ms ({ms / total:.0%})" for op, ms in list(ops.items())[:10]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
