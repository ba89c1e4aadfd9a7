"""Layer-level and end-to-end experiments on the shared data's real networks and images.

    python -m experiments.run                       # ResNet-20/56 on CIFAR-10 (10k JPEG test images)
    python -m experiments.run --nets darknet_tiny resnet50 mobilenet
    python -m experiments.plots                     # PNGs from the JSON

Writes experiments/results/<net>.json (everything, incl. wall times) and experiments/results/results.md (tables).
Calibration: the first `--calib-per-class` images of each CIFAR-10 class (default 50, i.e. 500 test images), the
first `--calib` ImageNet sample images; the calibration images are also evaluated (there is no separate split).
"""
import argparse
import os
import sys

if __name__ == "__main__":  # one BLAS thread per worker process (set before numpy loads OpenBLAS)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import json
import multiprocessing
import pathlib
import time

import numpy as np

import fxbn
from experiments import data, nets, qgraph
from fxbn import importers

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
PEER_SCHEMES = None  # filled from verify.audit when it is importable
SHIFT_BITS = 6       # a shift in 0..62


def peer_schemes():
    """Scheme names of verify.audit.peer_apply (its SCHEMES tuple, without "fxbn"), or () when it is absent."""
    global PEER_SCHEMES
    if PEER_SCHEMES is None:
        try:
            from verify import audit
        except ImportError:
            PEER_SCHEMES = ()
        else:
            names = getattr(audit, "SCHEMES", None) or getattr(audit, "PEER_SCHEMES", None) or ()
            # "fxbn" (the layer itself) is counted against the reference separately
            PEER_SCHEMES = tuple(s for s in (names.keys() if isinstance(names, dict) else names) if s != "fxbn")
    return PEER_SCHEMES


def peer_apply(scheme, layer, x, cache):
    """verify.audit.peer_apply on channels-last x; the scheme's parameters are derived once per layer (in cache)."""
    from verify import audit

    if scheme not in cache:
        cache[scheme] = audit.scheme_parameters(scheme, layer)
    return np.asarray(audit.peer_apply(scheme, layer, x, axis=-1, params=cache[scheme]))


# ---------------------------------------------------------------------------------------------- static layer table
def fingerprint(layer):
    """A hash of the integer parameters and ranges: a peers-only rerun checks it rebuilt the same layers."""
    import hashlib

    h = hashlib.sha256()
    for arr in (layer.multiplier, layer.bias, layer.shift, layer.in_range):
        h.update(np.ascontiguousarray(arr, np.int64).tobytes())
    h.update(repr(layer.out_range).encode())
    return h.hexdigest()[:16]


def layer_table(graph):
    """Per BN layer: channels, accumulator bounds and bits, minimal shifts, multiplier/accumulator bits, memory."""
    rows = []
    for node in graph.bn_nodes():
        layer = graph.q[node.name]["layers"][0]
        bounds = layer.in_range
        range_bits = importers.range_bits(bounds)
        # the same layer solved for the full int32 input range: what the exact bound saves
        src = layer.source
        try:
            full = fxbn.from_batchnorm(src["gamma"], src["beta"], src["mean"], src["var"], src["eps"],
                                       in_scale=src["in_scale"], out_scale=src["out_scale"],
                                       out_zero_point=src["out_zero_point"], in_dtype="int32",
                                       out_dtype=layer.out_dtype, rounding=layer.rounding, out_range=layer.out_range)
            full_row = {"shift_max": int(full.shift.max()), "multiplier_bits_max": int(full.multiplier_bits.max()),
                        "accumulator_bits_max": int(full.accumulator_bits.max())}
        except fxbn.InfeasibleError as exc:  # the full int32 range can need more than 64 bits
            full_row = {"infeasible": str(exc)[:300]}
        levels = layer.out_range[1] - layer.out_range[0]
        bias_bits = importers.range_bits(np.stack([layer.bias, layer.bias], axis=1))
        fxbn_bits = layer.multiplier_bits + bias_bits + SHIFT_BITS
        finn_bits = levels * range_bits
        shifts = layer.shift
        rows.append({
            "layer": node.name,
            "activation": node.attrs["act"] if not isinstance(node.attrs["act"], tuple) else "leaky",
            "channels": layer.channels,
            "acc_bound_lo": int(bounds[:, 0].min()), "acc_bound_hi": int(bounds[:, 1].max()),
            "acc_range_bits_max": int(range_bits.max()), "acc_range_bits_min": int(range_bits.min()),
            "bits_saved_vs_int32": int(32 - range_bits.max()),
            "shift_min": int(shifts.min()), "shift_median": float(np.median(shifts)), "shift_max": int(shifts.max()),
            "shifts": [int(s) for s in shifts],
            "constant_channels": int(np.count_nonzero(layer.multiplier == 0)),
            "fingerprint": fingerprint(layer),
            "bias_fold_exact": bool(graph.q[node.name]["bias_fold_exact"]),
            "multiplier_bits_max": int(layer.multiplier_bits.max()),
            "accumulator_bits_max": int(layer.accumulator_bits.max()),
            "full_int32": full_row,
            "acc32_path": bool(layer.accumulator_bits.max() <= 32),
            "out_levels": levels,
            "memory_bits_per_channel": {"fxbn_max": int(fxbn_bits.max()), "finn_thresholds_max": int(finn_bits.max()),
                                        "finn_thresholds_count": levels},
        })
    return rows


# ---------------------------------------------------------------------------------------------- evaluation
class Counter:
    """Per-BN-layer mismatch counts against the exact reference and observed accumulator extremes."""

    def __init__(self, graph, schemes):
        self.graph, self.schemes = graph, schemes
        self.counts = {}

    def __call__(self, node, acc, fxbn_out, ref_out):
        layers = self.graph.q[node.name]["layers"]
        entry = self.counts.setdefault(node.name, {"outputs": 0, "fxbn": 0, "acc_min": None, "acc_max": None,
                                                   **{s: 0 for s in self.schemes}, "errors": {}})
        entry["outputs"] += int(acc.size)
        entry["fxbn"] += int(np.count_nonzero(fxbn_out != ref_out))
        flat = acc.reshape(-1, acc.shape[-1])
        lo, hi = flat.min(axis=0), flat.max(axis=0)
        entry["acc_min"] = lo if entry["acc_min"] is None else np.minimum(entry["acc_min"], lo)
        entry["acc_max"] = hi if entry["acc_max"] is None else np.maximum(entry["acc_max"], hi)
        layer = layers[0]
        # peers reproduce the BN layer itself (for LeakyReLU nets: the layer without the activation)
        ref_layer = ref_out if len(layers) == 1 else qgraph.reference_fast(layer, acc)
        for scheme in self.schemes:
            try:
                out = peer_apply(scheme, layer, acc, self.graph.q[node.name].setdefault("peer_params", {}))
                entry[scheme] += int(np.count_nonzero(out != ref_layer))
            except Exception as exc:  # a peer that cannot represent the layer is reported, not fatal
                entry["errors"][scheme] = f"{type(exc).__name__}: {exc}"[:200]


_WORK = {}


def _evaluate_batch(index):
    graph, pixels, labels, schemes = (_WORK[k] for k in ("graph", "pixels", "labels", "schemes"))
    lo, hi = index
    px = pixels[lo:hi]
    counter = Counter(graph, schemes)
    t0, c0 = time.perf_counter(), time.process_time()
    if _WORK.get("integer_only"):  # peers-only rerun: the float pipelines are already recorded
        float_logits = fq_logits = None
    else:
        float_logits = graph.forward_float(px)
    t1 = time.perf_counter()
    if not _WORK.get("integer_only"):
        fq_logits = graph.forward_float(px, fake_quant=True)
    t2 = time.perf_counter()
    lf, lr, unit, diverged = graph.forward_pair(px, observe=counter)
    t3 = time.perf_counter()
    identical = np.all((lf == lr).reshape(len(lf), -1), axis=1)
    if lf.ndim > 2 or float_logits is None:  # feature maps / peers-only: no logits to keep
        float_logits = fq_logits = lf = lr = np.zeros((len(px), 1))
    out = {"float": float_logits, "fake_quant": fq_logits, "int_real": lf * unit, "ref_real": lr * unit,
           "identical": identical, "diverged": diverged, "counts": counter.counts,
           "seconds": {"float": t1 - t0, "fake_quant": t2 - t1, "integer_pair_and_peers": t3 - t2,
                       "cpu": time.process_time() - c0}}
    return out


def topk(logits, labels, k):
    top = np.argsort(-logits, axis=1)[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def evaluate(graph, pixels, labels, batch, workers, schemes, integer_only=False):
    _WORK.update(graph=graph, pixels=pixels, labels=labels, schemes=schemes, integer_only=integer_only)
    spans = [(i, min(i + batch, len(pixels))) for i in range(0, len(pixels), batch)]
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_evaluate_batch, spans, chunksize=1)
    else:
        parts = [_evaluate_batch(s) for s in spans]
    merged = {k: np.concatenate([p[k] for p in parts]) for k in ("float", "fake_quant", "int_real", "ref_real",
                                                                  "identical")}
    counts = {}
    for p in parts:
        for name, c in p["counts"].items():
            if name not in counts:
                counts[name] = {k: (v.copy() if isinstance(v, np.ndarray) else (dict(v) if isinstance(v, dict) else v))
                                for k, v in c.items()}
                continue
            e = counts[name]
            for k, v in c.items():
                if k == "errors":
                    e[k].update(v)
                elif k == "acc_min":
                    e[k] = np.minimum(e[k], v)
                elif k == "acc_max":
                    e[k] = np.maximum(e[k], v)
                else:
                    e[k] += v
    seconds = {k: float(sum(p["seconds"][k] for p in parts)) for k in parts[0]["seconds"]}
    diverged = sorted({d for p in parts for d in p["diverged"]})
    return merged, counts, seconds, diverged


# ---------------------------------------------------------------------------------------------- networks
def load_network(name, data_root):
    if name in ("resnet20", "resnet56"):
        return nets.cifar_resnet(data_root / "cifar10" / f"{name}.npz")
    if name == "resnet50":
        return nets.resnet50(data_root)
    if name == "darknet_tiny":
        return nets.darknet_tiny(data_root)
    if name == "mobilenet":
        return nets.mobilenet_v1(data_root)
    raise ValueError(f"unknown network {name}")


def load_images(name, data_root, args):
    """(eval pixels, eval labels, calibration pixels, description)."""
    if name in ("resnet20", "resnet56"):
        px, labels = data.cifar_test(data_root, limit_per_class=args.limit_per_class)
        calib_idx = np.concatenate([np.flatnonzero(labels == c)[:args.calib_per_class] for c in range(10)])
        return px, labels, px[calib_idx], (f"CIFAR-10 JPEG test set ({len(px)} images); calibration: first "
                                           f"{args.calib_per_class} test images of each class")
    crop = None if name == "darknet_tiny" else 224
    size = 224 if name == "darknet_tiny" else 256
    px, labels, files = data.imagenet_images(data_root, size=size, crop=crop, limit=args.limit_imagenet)
    if name == "darknet_tiny":  # outputs are in Darknet's class order: map to the standard label of each output
        wnids = (data_root / "imagenet" / "darknet_tiny.output_wnids.txt").read_text().split()
        order = {w: i for i, w in enumerate(sorted(wnids))}
        nets.DARKNET_OUTPUT_TO_LABEL = np.array([order[w] for w in wnids])
    return px, labels, px[:args.calib], (f"ImageNet sample images ({len(px)}); calibration: the first {args.calib}")


def add_peers(name, args, data_root):
    """Re-run only the integer pipelines to add the peer schemes' mismatch counts to an existing result."""
    path = args.out / f"{name}.json"
    result = json.loads(path.read_text())
    t_start = time.perf_counter()
    graph = load_network(name, data_root)
    pixels, labels, calib, _ = load_images(name, data_root, args)
    graph.calibrate([calib[i:i + args.batch] for i in range(0, len(calib), args.batch)], method=args.method,
                    percentile=args.percentile)
    graph.quantize(rounding=args.rounding)
    for row in result["layers"]:
        fp = fingerprint(graph.q[row["layer"]]["layers"][0])
        if row.setdefault("fingerprint", fp) != fp:
            raise SystemExit(f"{name}: layer {row['layer']} differs from the recorded run: rerun without --peers-only")
    schemes = peer_schemes()
    if not schemes:
        raise SystemExit("verify.audit.peer_apply is not available")
    merged, counts, seconds, diverged = evaluate(graph, pixels, labels, args.batch, args.workers, schemes,
                                                 integer_only=True)
    for row in result["layers"]:
        c = counts[row["layer"]]
        if c["outputs"] != row["outputs"] or c["fxbn"] != row["mismatch"]["fxbn"]:
            raise SystemExit(f"{name}: layer {row['layer']} saw different data than the recorded run")
        row["mismatch"].update({s: (None if s in c["errors"] else c[s]) for s in schemes})
        row["peer_errors"] = c["errors"]
    result["peer_schemes"] = list(schemes)
    result["wall_seconds"]["peers_rerun"] = time.perf_counter() - t_start
    return result


def run_network(name, args, data_root):
    t_start = time.perf_counter()
    graph = load_network(name, data_root)
    pixels, labels, calib, images_desc = load_images(name, data_root, args)
    t_load = time.perf_counter()
    graph.calibrate([calib[i:i + args.batch] for i in range(0, len(calib), args.batch)], method=args.method,
                    percentile=args.percentile)
    graph.quantize(rounding=args.rounding)
    t_quant = time.perf_counter()
    table = layer_table(graph)
    t_table = time.perf_counter()
    schemes = peer_schemes() if not args.no_peers else ()
    merged, counts, seconds, diverged = evaluate(graph, pixels, labels, args.batch, args.workers, schemes)
    t_eval = time.perf_counter()
    remap = getattr(nets, "DARKNET_OUTPUT_TO_LABEL", None) if name == "darknet_tiny" else None
    for row in table:
        c = counts[row["layer"]]
        row["outputs"] = c["outputs"]
        row["mismatch"] = {"fxbn": c["fxbn"], **{s: (None if s in c["errors"] else c[s]) for s in schemes}}
        row["peer_errors"] = c["errors"]
        bound_lo, bound_hi = graph.q[row["layer"]]["layers"][0].in_range.T
        row["acc_observed_lo"], row["acc_observed_hi"] = int(c["acc_min"].min()), int(c["acc_max"].max())
        row["acc_bound_respected"] = bool(np.all(c["acc_min"] >= bound_lo) and np.all(c["acc_max"] <= bound_hi))
        row["acc_observed_fill"] = float(np.max((c["acc_max"] - c["acc_min"]) / np.maximum(bound_hi - bound_lo, 1)))
    e2e = {}
    pipelines = {"float": "float", "fake_quant": "fake_quant_float_bn", "int_real": "fxbn_integer",
                 "ref_real": "reference_integer"}
    for key, label in pipelines.items() if name != "mobilenet" else ():
        logits = merged[key]
        if remap is not None:
            logits = logits[:, np.argsort(remap)]  # column j -> standard label j
        e2e[label] = {"top1": topk(logits, labels, 1)}
        if name not in ("resnet20", "resnet56"):
            e2e[label]["top5"] = topk(logits, labels, 5)
    e2e["bit_identical_logits_fraction"] = float(merged["identical"].mean())
    e2e["images"] = int(len(labels))
    e2e["diverged_layers"] = diverged
    result = {
        "network": name, "images": images_desc, "calibration": {"method": args.method, "percentile": args.percentile},
        "rounding": args.rounding, "peer_schemes": list(schemes), "layers": table, "end_to_end": e2e,
        "wall_seconds": {"load": t_load - t_start, "calibrate_quantize": t_quant - t_load,
                         "layer_table": t_table - t_quant, "evaluate": t_eval - t_table,
                         "total": time.perf_counter() - t_start, "per_pass_cpu": seconds, "workers": args.workers},
    }
    return result


# ---------------------------------------------------------------------------------------------- tables
def summary(results):
    """One row per network: the headline numbers (README table)."""
    head = ["network", "images", "BN layers / channels", "BN outputs checked", "fxbn mismatches",
            "acc range bits (max)", "mult bits (max)", "shift range", "top-1 float / fake-quant / fxbn / reference",
            "bit-identical outputs", "wall s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        layers, e = r["layers"], r["end_to_end"]
        acc = " / ".join(f"{100 * e[k]['top1']:.2f}" for k in ("float", "fake_quant_float_bn", "fxbn_integer",
                                                               "reference_integer") if k in e) or "n/a"
        if "top5" in e.get("float", {}):
            acc += " (top-5 " + " / ".join(f"{100 * e[k]['top5']:.1f}" for k in ("float", "fake_quant_float_bn",
                                                                                 "fxbn_integer", "reference_integer")) + ")"
        lines.append("| " + " | ".join([
            r["network"], str(e["images"]), f"{len(layers)} / {sum(row['channels'] for row in layers)}",
            f"{sum(row['outputs'] for row in layers):,}", str(sum(row["mismatch"]["fxbn"] for row in layers)),
            str(max(row["acc_range_bits_max"] for row in layers)),
            str(max(row["multiplier_bits_max"] for row in layers)),
            f"{min(row['shift_min'] for row in layers)}..{max(row['shift_max'] for row in layers)}", acc,
            f"{100 * e['bit_identical_logits_fraction']:.2f}%", f"{r['wall_seconds']['total']:.0f}"]) + " |")
    return "\n".join(lines)


def peer_summary(results):
    """Mismatching BN outputs over all layers and images, per network and scheme (count and rate)."""
    schemes = ["fxbn"]
    for r in results:
        schemes += [s for s in r["peer_schemes"] if s not in schemes]
    lines = ["| network | BN outputs | " + " | ".join(schemes) + " |", "|" + "---|" * (len(schemes) + 2)]
    for r in results:
        total = sum(row["outputs"] for row in r["layers"])
        cells = [r["network"], f"{total:,}"]
        for s in schemes:
            counts = [row["mismatch"].get(s) for row in r["layers"]]
            if s not in ["fxbn"] + list(r["peer_schemes"]):
                cells.append("not run")
            elif any(c is None for c in counts):
                cells.append("error in some layers")
            else:
                n = sum(counts)
                cells.append(f"{n:,} ({n / total:.1e})" if n else "**0**")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(results):
    lines = ["## Summary", "", summary(results), "", "Mismatching BN outputs against the exact reference, all layers "
             "and images (rate in parentheses):", "", peer_summary(results), "",
             "Shift 0 occurs only for constant channels (multiplier 0: the output is the same for the whole range).",
             ""]
    for r in results:
        e = r["end_to_end"]
        schemes = [s for s in r["peer_schemes"] if s != "fxbn"]
        lines.append(f"### {r['network']}: {r['images']}")
        lines.append("")
        acc = ", ".join(f"{k} {100 * v['top1']:.2f}%" + (f" / top-5 {100 * v['top5']:.2f}%" if "top5" in v else "")
                        for k, v in e.items() if isinstance(v, dict))
        lines.append(f"Top-1: {acc or 'n/a (feature extractor)'}. Bit-identical integer outputs (fxbn vs exact reference): "
                     f"{100 * e['bit_identical_logits_fraction']:.2f}% of {e['images']} images. "
                     f"Wall time {r['wall_seconds']['total']:.0f} s ({r['wall_seconds']['workers']} workers).")
        lines.append("")
        head = ["layer", "ch", "acc bound", "range bits (saved vs int32)", "shift min/med/max", "mult bits",
                "acc bits (full int32 range)", "outputs", "fxbn mismatches"] + [f"{s}" for s in schemes] + \
               ["mem bits/ch fxbn vs FINN"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for row in r["layers"]:
            mm = row["mismatch"]
            cells = [row["layer"], str(row["channels"]), f"[{row['acc_bound_lo']}, {row['acc_bound_hi']}]",
                     f"{row['acc_range_bits_max']} ({row['bits_saved_vs_int32']})",
                     f"{row['shift_min']}/{row['shift_median']:g}/{row['shift_max']}",
                     f"{row['multiplier_bits_max']} ({row['full_int32'].get('multiplier_bits_max', '>64')})",
                     f"{row['accumulator_bits_max']} ({row['full_int32'].get('accumulator_bits_max', '>64')})",
                     str(row["outputs"]), f"**{mm['fxbn']}**" + (" (exact)" if mm["fxbn"] == 0 else " (FAIL)")]
            cells += [str(mm.get(s, "n/a")) if s not in row["peer_errors"] else "error" for s in schemes]
            m = row["memory_bits_per_channel"]
            cells.append(f"{m['fxbn_max']} vs {m['finn_thresholds_max']}")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def to_jsonable(obj):
    if isinstance(obj, dict):
        return {k: to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nets", nargs="+", default=["resnet20", "resnet56"],
                   choices=["resnet20", "resnet56", "darknet_tiny", "resnet50", "mobilenet"])
    data.add_run_arguments(p, RESULTS)
    p.add_argument("--no-peers", action="store_true")
    p.add_argument("--peers-only", action="store_true",
                   help="add the peer schemes' counts to existing results (integer pipelines only)")
    args = p.parse_args(argv)
    if not args.data.is_dir():
        sys.exit(f"data directory {args.data} not found (set FXBN_DATA)")
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for name in args.nets:
        t = time.perf_counter()
        r = add_peers(name, args, args.data) if args.peers_only else run_network(name, args, args.data)
        (args.out / f"{name}.json").write_text(json.dumps(to_jsonable(r), indent=1))
        results.append(r)
        e = r["end_to_end"]
        top1 = ", ".join(f"{k} {v['top1']:.4f}" for k, v in e.items() if isinstance(v, dict))
        print(f"{name}: {time.perf_counter() - t:.0f} s, top-1 {top1 or 'n/a'}, bit-identical "
              f"{e['bit_identical_logits_fraction']:.4f}, fxbn mismatches "
              f"{sum(row['mismatch']['fxbn'] for row in r['layers'])}", flush=True)
    all_results = []
    for path in sorted(args.out.glob("*.json")):
        all_results.append(json.loads(path.read_text()))
    (args.out / "results.md").write_text(markdown(all_results) + "\n")


if __name__ == "__main__":
    main()
