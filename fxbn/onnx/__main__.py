"""``python -m fxbn.onnx``: export saved FixedPointBN layers as integer-only ONNX models and check them in onnxruntime.

    python -m fxbn.onnx export LAYER.json [LAYER.npz | DIR ...] --out DIR [--axis 1] [--rank 4] [--acc int32|int64]
    python -m fxbn.onnx check MODEL.onnx LAYER.json [--budget N] [--samples N]
    python -m fxbn.onnx quantize MODEL.onnx --calib IMAGES --out MODEL.int.onnx --input-mean M,M,M
        --input-std S,S,S [--size N] [--layers DIR] [--activations ACTS.json]
    python -m fxbn.onnx check MODEL.int.onnx --images IMAGES [--model MODEL.onnx] [--limit N]

``export`` writes DIR/<layer file stem>.onnx per layer (directories: every .json/.npz inside).  ``check`` runs the
model in onnxruntime (graph optimizations ORT_ENABLE_ALL and ORT_DISABLE_ALL) against FixedPointBN.apply on every
input of each channel's range when they total at most --budget values, else on the range ends, every reference
breakpoint with its neighbours and --samples random values per channel; it prints the mismatches (must be 0) and the
model's out_of_range count.

``quantize`` imports a float NCHW ONNX model (fxbn.onnx.importer), calibrates it on IMAGES (a directory of image
files, or a .npy/.npz of uint8 (N, H, W, 3) pixels; min/max, a progress bar on stderr), quantizes it (int8, every
rescaling an exact fxbn layer) and writes the integer-only model (fxbn.onnx.network: uint8 NHWC pixels in, exact
int64 logits out); --layers DIR saves its FixedPointBN / FixedPointAdd layers (``python -m verify DIR``) and
--activations the file for ``python -m verify MODEL.onnx --activations ACTS.json``.  ``check MODEL.int.onnx
--images`` rebuilds the library's integer network from the float model recorded in the integer model (path and
SHA-256; --model if it moved) and compares logits on the images: onnxruntime (optimizations on and off) vs fxbn,
and fxbn vs the exact reference.  Exit codes: 0 all identical, 1 a mismatch, 64 usage error.
"""
import os
import sys

from fxbn import _cli
from fxbn.atomic import write_file

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE = 0, 1, _cli.EXIT_USAGE


def build_parser():
    p = _cli.parser("python -m fxbn.onnx", __doc__)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_cli.UsageParser)
    e = sub.add_parser("export", help="saved layers -> integer-only ONNX models")
    e.add_argument("layers", nargs="+", help="FixedPointBN files (.json/.npz) or directories of them")
    e.add_argument("--out", required=True, metavar="DIR", help="output directory (created if absent)")
    e.add_argument("--axis", type=int, default=1, help="channel axis (1: NCHW, -1: NHWC; default 1)")
    e.add_argument("--rank", type=int, default=4, help="input rank (default 4)")
    e.add_argument("--in-dtype", choices=("int8", "uint8", "int16", "int32"), default=None,
                   help="input element type (default: the layer's in_dtype)")
    e.add_argument("--acc", choices=("int32", "int64"), default=None,
                   help="accumulator type (default: int32 where proven, else int64)")
    e.add_argument("--no-range-check", action="store_true", help="omit the out_of_range output")
    c = sub.add_parser("check", help="run a model in onnxruntime against FixedPointBN.apply")
    c.add_argument("model", help="an exported .onnx model")
    c.add_argument("layer", nargs="?", help="the FixedPointBN file (.json/.npz) it was exported from (layer models)")
    c.add_argument("--images", metavar="IMAGES", help="network models: images (directory, .npy or .npz of uint8 "
                   "NHWC pixels) to compare the logits on")
    c.add_argument("--model", dest="float_model", metavar="MODEL.onnx", help="network models: the float model (default: the path "
                   "recorded at quantize time)")
    c.add_argument("--limit", type=int, default=None, help="network models: use the first N images")
    c.add_argument("--batch", type=int, default=100, help="network models: images per run (default 100)")
    c.add_argument("--reference", action="store_true",
                   help="network models: also compare fxbn's integer network with the exact reference (slow)")
    c.add_argument("--axis", type=int, default=None, help="channel axis (default: from the model's metadata)")
    c.add_argument("--rank", type=int, default=None, help="input rank (default: from the model's metadata)")
    c.add_argument("--budget", type=int, default=1 << 22,
                   help="check every input when all channels' ranges total at most this many values "
                        "(default 4194304)")
    c.add_argument("--samples", type=int, default=4096, help="random inputs per channel otherwise (default 4096)")
    c.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (default 1)")
    q = sub.add_parser("quantize", help="float ONNX model + calibration images -> integer-only ONNX model")
    q.add_argument("model", help="a float ONNX model (NCHW input)")
    q.add_argument("--calib", required=True, metavar="IMAGES",
                   help="calibration images: a directory of image files, or a .npy/.npz of uint8 (N, H, W, 3)")
    q.add_argument("--out", required=True, metavar="MODEL.int.onnx", help="the integer-only model to write")
    q.add_argument("--input-mean", required=True, metavar="M,M,M",
                   help="per-channel mean of the normalisation (pixel/255 - mean)/std")
    q.add_argument("--input-std", required=True, metavar="S,S,S", help="per-channel std of the normalisation")
    q.add_argument("--size", type=int, default=None, help="image height = width (default: the model's)")
    q.add_argument("--layers", metavar="DIR", help="save the exact layers here (for python -m verify DIR)")
    q.add_argument("--activations", metavar="ACTS.json",
                   help="write the activations file for python -m verify MODEL.onnx --activations")
    q.add_argument("--limit", type=int, default=None, help="use the first N calibration images")
    q.add_argument("--batch", type=int, default=100, help="images per calibration batch (default 100)")
    q.add_argument("--rounding", choices=("half_up", "half_even", "half_away", "floor"), default="half_up")
    return p


def _floats(text, what):
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"{what} {text!r}: expected comma-separated numbers") from None
    return vals


def _model_size(path, size):
    """The square image size: --size, else the model's static input H = W."""
    import onnx

    from fxbn.onnx.importer import _load

    if size is not None:
        if size < 1:
            raise ValueError(f"--size {size}: must be positive")
        return size
    model = _load(path)
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim] \
        if len(inputs) == 1 else []
    if len(dims) != 4 or dims[2] is None or dims[2] != dims[3]:
        raise ValueError(f"{path}: input dims {dims}: give --size (square images)")
    del onnx
    return dims[2]


def _positive(value, what):
    if value is not None and value < 1:
        raise ValueError(f"{what} {value}: must be positive")


def _quantize(args):
    import json

    import fxbn.onnx as fo
    from fxbn.onnx import quantize as fq
    from fxbn.network_io import activations_json

    _positive(args.limit, "--limit")
    _positive(args.batch, "--batch")
    mean, std = _floats(args.input_mean, "--input-mean"), _floats(args.input_std, "--input-std")
    if not os.path.isfile(args.model):
        raise ValueError(f"{args.model}: no such file")
    size = _model_size(args.model, args.size)
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        raise ValueError(f"--out {args.out}: directory {out_dir} does not exist")
    pixels = fq.load_images(args.calib, size, args.limit)
    graph, model = fq.quantize_model(args.model, pixels, mean, std, size, batch=args.batch, rounding=args.rounding)
    fo._save_atomic(model, args.out)
    bns = len(graph.bn_nodes())
    adds = sum(n.op == "add" for n in graph.nodes)
    pools = sum(n.op == "avgpool" for n in graph.nodes)
    adds = f"{adds} adds, {pools} average pools" if pools else f"{adds} adds"
    print(f"{args.out}: {len(pixels)} calibration images, {bns} BN layers, {adds}, "
          f"{len(model.graph.node)} ONNX nodes, opset {fo.OPSET}")
    if args.layers:
        saved = fq.save_layers(graph, args.layers)
        print(f"{args.layers}: {len(saved)} exact layers (python -m verify {args.layers})")
    if args.activations:
        write_file(args.activations, json.dumps(activations_json(graph, args.model), indent=1))   # all or nothing
        print(f"{args.activations}: activations for python -m verify {args.model} --activations {args.activations}")
    return EXIT_OK


def _check_network(args, model, rec):
    from fxbn.onnx import quantize as fq

    _positive(args.limit, "--limit")
    _positive(args.batch, "--batch")
    graph = fq.network_from_record(rec, args.float_model)
    pixels = fq.load_images(args.images, rec["size"], args.limit)
    res = fq.check_network(graph, model, pixels, batch=args.batch, threads=args.threads, reference=args.reference)
    print(f"{args.model}: {res['images']} images; images with a logit differing from the fxbn integer network:")
    ok = res["reference"] in (0, None)
    if res["reference"] is not None:
        print(f"  fxbn vs exact reference     {res['reference']}")
    for level in ("ORT_ENABLE_ALL", "ORT_DISABLE_ALL"):
        r = res[level]
        first = f" (first: image {r['first']})" if r["first"] is not None else ""
        print(f"  onnxruntime {level:16s}{r['mismatches']}{first}")
        ok = ok and r["mismatches"] == 0
    print("IDENTICAL" if ok else "MISMATCH")
    return EXIT_OK if ok else EXIT_MISMATCH


def _layer_files(paths):
    files = []
    for path in paths:
        if os.path.isdir(path):
            inside = sorted(os.path.join(path, f) for f in os.listdir(path)
                            if os.path.splitext(f)[1].lower() in (".json", ".npz"))
            if not inside:
                raise ValueError(f"{path}: no .json/.npz layer files")
            files += inside
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise ValueError(f"{path}: no such file or directory")
    return files


def _export(args):
    import fxbn
    import fxbn.onnx as fo

    files = _layer_files(args.layers)
    layers = []
    for f in files:                                   # load (and so validate) everything before writing anything
        try:
            layers.append((f, fxbn.load(f)))
        except (ValueError, KeyError, OSError) as exc:
            raise ValueError(f"{f}: {exc}") from exc
    stems = [os.path.splitext(os.path.basename(f))[0] for f in files]
    dup = {s for s in stems if stems.count(s) > 1}
    if dup:
        raise ValueError(f"two layer files would write the same model: {', '.join(sorted(dup))}.onnx")
    models = []
    for (f, layer), stem in zip(layers, stems):
        try:
            models.append(fo.export_layer(layer, None, axis=args.axis, rank=args.rank, in_dtype=args.in_dtype,
                                          acc=args.acc, range_check=not args.no_range_check, name=stem))
        except ValueError as exc:
            raise ValueError(f"{f}: {exc}") from exc
    os.makedirs(args.out, exist_ok=True)
    for (f, layer), stem, model in zip(layers, stems, models):
        out = os.path.join(args.out, stem + ".onnx")
        fo._save_atomic(model, out)
        props = {p.key: p.value for p in model.metadata_props}
        print(f"{out}: {layer.channels} channels, {props['fxbn.in_dtype']} -> {layer.out_dtype.name}, "
              f"accumulator {props['fxbn.acc']}, {len(model.graph.node)} nodes, opset {fo.OPSET}")
    return EXIT_OK


def _check(args):
    import json

    import fxbn
    import fxbn.onnx as fo
    from fxbn.onnx import quantize as fq
    from fxbn.onnx.importer import _load

    model = _load(args.model)
    rec = fq.read_record(model, args.model)
    if rec is not None:
        if args.layer is not None or args.images is None:
            raise ValueError(f"{args.model} is a network model: check it with --images IMAGES (no layer file)")
        return _check_network(args, model, rec)
    if args.layer is None:
        raise ValueError(f"{args.model} is a layer model: name the layer file it was exported from")
    layer = fxbn.load(args.layer)
    stored = fo.model_layer(model)
    if stored is not None and json.dumps(stored[0].to_dict()) != json.dumps(layer.to_dict()):
        print(f"note: the layer stored in {args.model} differs from {args.layer}; checking against {args.layer}")
    res = fo.check_layer(model, layer, axis=args.axis, rank=args.rank, budget=args.budget, samples=args.samples,
                         threads=args.threads)
    how = "every input of every channel's range" if res["exhaustive"] else \
        "range ends, breakpoints +-1 and random samples"
    print(f"{args.model}: {layer.channels} channels, accumulator {res['acc']}, {res['inputs']} inputs ({how})")
    ok = True
    for level in ("ORT_ENABLE_ALL", "ORT_DISABLE_ALL"):
        r = res[level]
        line = f"  {level:16s} mismatches {r['mismatches']}, out_of_range {r['out_of_range']}"
        if r["first"]:
            f = r["first"]
            line += f"; first: channel {f['channel']} x={f['x']}: onnx {f['onnx']} vs fxbn {f['fxbn']}"
        print(line)
        ok = ok and r["mismatches"] == 0 and r["out_of_range"] in (0, None)
    print("IDENTICAL" if ok else "MISMATCH")
    return EXIT_OK if ok else EXIT_MISMATCH


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return {"export": _export, "check": _check, "quantize": _quantize}[args.command](args)
    except (ValueError, OSError) as exc:
        print(f"python -m fxbn.onnx {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
