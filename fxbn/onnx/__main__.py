"""``python -m fxbn.onnx``: export saved FixedPointBN layers as integer-only ONNX models and check them in onnxruntime.

    python -m fxbn.onnx export LAYER.json [LAYER.npz | DIR ...] --out DIR [--axis 1] [--rank 4] [--acc int32|int64]
    python -m fxbn.onnx check MODEL.onnx LAYER.json [--budget N] [--samples N]

``export`` writes DIR/<layer file stem>.onnx per layer (directories: every .json/.npz inside).  ``check`` runs the
model in onnxruntime (graph optimizations ORT_ENABLE_ALL and ORT_DISABLE_ALL) against FixedPointBN.apply on every
input of each channel's range when they total at most --budget values, else on the range ends, every reference
breakpoint with its neighbours and --samples random values per channel; it prints the mismatches (must be 0) and the
model's out_of_range count.  Exit codes: 0 all identical, 1 a mismatch, 64 usage error.
"""
import argparse
import os
import sys

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE = 0, 1, 64


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def build_parser():
    doc = __doc__.strip().splitlines()
    p = _Parser(prog="python -m fxbn.onnx", description=doc[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                epilog="\n".join(doc[2:]))
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
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
    c.add_argument("layer", help="the FixedPointBN file (.json/.npz) it was exported from")
    c.add_argument("--axis", type=int, default=None, help="channel axis (default: from the model's metadata)")
    c.add_argument("--rank", type=int, default=None, help="input rank (default: from the model's metadata)")
    c.add_argument("--budget", type=int, default=1 << 22,
                   help="check every input when all channels' ranges total at most this many values "
                        "(default 4194304)")
    c.add_argument("--samples", type=int, default=4096, help="random inputs per channel otherwise (default 4096)")
    c.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (default 1)")
    return p


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

    import onnx

    import fxbn
    import fxbn.onnx as fo

    layer = fxbn.load(args.layer)
    model = onnx.load(args.model)
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
        return _export(args) if args.command == "export" else _check(args)
    except (ValueError, OSError) as exc:
        print(f"python -m fxbn.onnx {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
