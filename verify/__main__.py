"""``python -m verify``: prove that fxbn layers are exact (or within a bound) for every input of their range.

PATHs are saved FixedPointBN layers (.json/.npz written by FixedPointBN.save, or directories of them) or model
files, whose Conv/Linear -> BatchNorm pairs are built into one FixedPointBN per BN by fxbn.importers:

- X.npz of named float arrays with PyTorch state_dict names (conv1.weight, bn1.running_mean, ...; pairs convK/bnK,
  conv/bn and consecutive nn.Sequential entries);
- X.npz with Keras <layer>/<weight> names and its topology X.model.json beside it (or the .model.json named;
  without a topology the naming convention X_bn <-> X, as in Keras MobileNet);
- X.pt / X.pth torch state_dicts (torch.load(weights_only=True); needs torch).

A model file has no activation quantization: --activations FILE.json gives, per BN layer, the conv input's and the
BN output's scale / zero_point / dtype / qmin / qmax (plus optional relu, eps, rounding; schema in verify/model.py).
--write-activations-template OUT.json writes that file for the model's BN layers with null scales to fill in;
`python -m experiments.activations NET --out FILE.json` writes it from the experiments' calibration. The layers
built from a model then go through the same verification as saved layers, one line per BN layer (a BN followed by
LeakyReLU gives two, BN and BN.leaky, whose maximum is the output, as in experiments/).

    python -m verify MODEL.npz --write-activations-template acts.json      # then fill in its null fields
    python -m verify MODEL.npz --activations acts.json --method breakpoints

Exit codes: 0 all proved, 1 something refuted, 2 unknown / timeout, 64 usage error: a bad option or a file that
cannot be used (malformed or tampered layer file, model or activations file; the message names the file, the
field or BN layer and what is wrong), 70 internal error (a bug in fxbn or verify: please report it).  Exit 1 means
a real refutation and nothing else.
"""
import io
import json
import os
import sys
import time

import math

from fxbn import _cli
from fxbn.atomic import write_file

EXIT_PROVED, EXIT_REFUTED, EXIT_UNKNOWN, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, _cli.EXIT_USAGE, 70
LEMMA_IN_DTYPES = ("int8", "uint8", "int16", "int32")
LEMMA_ACC_BITS = (32, 64)


def build_parser():
    p = _cli.parser("python -m verify", __doc__)
    p.add_argument("paths", nargs="*", help="saved FixedPointBN files (.json/.npz) or directories of them, or model "
                                            "files (.npz state_dict / Keras weights + X.model.json, .pt/.pth)")
    p.add_argument("--activations", metavar="FILE.json",
                   help="activation quantization of every BN layer of the model files (required with them)")
    p.add_argument("--write-activations-template", metavar="OUT.json",
                   help="write an activations file listing every BN pair of the model files (null scales to fill "
                        "in) and exit")
    p.add_argument("--eps", type=float, default=None,
                   help="BN epsilon for model files (overrides the activations file; default: the Keras "
                        "topology's, else PyTorch 1e-5 / Keras 1e-3)")
    p.add_argument("--rounding", choices=("half_even", "half_up", "half_away", "floor"), default=None,
                   help="rounding of the layers built from model files (overrides the activations file; "
                        "default half_up)")
    p.add_argument("--demo", action="store_true", help="verify the built-in seeded layer set")
    p.add_argument("--method", choices=("breakpoints", "z3", "both"), default="both")
    p.add_argument("--bound", type=int, default=0, help="claim |fixed - reference| <= BOUND (default 0: exact)")
    p.add_argument("--engine", choices=("core", "python"), default="core",
                   help="reference breakpoints for the certificate: C++ core or fxbn.reference (Fractions)")
    p.add_argument("--no-minimality", action="store_true", help="skip the shift-minimality certificate")
    p.add_argument("--lemmas", action="store_true", help="also prove the datapath lemmas (QF_BV)")
    p.add_argument("--in-dtypes", default="int8,uint8,int16,int32", help="input types for --lemmas")
    p.add_argument("--acc-bits", default="32,64", help="accumulator widths for --lemmas")
    p.add_argument("--audit", action="store_true", help="exact error of the peer schemes on the same layers")
    p.add_argument("--json", metavar="OUT", help="write the certificate (JSON)")
    p.add_argument("--emit-smt2", metavar="DIR", help="write every z3 query as SMT-LIB2")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per solver query (default 10)")
    p.add_argument("--rlimit", type=int, default=None, help="z3 resource limit per query")
    p.add_argument("--jobs", type=int, default=1, help="processes for z3 (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run the z3 work on an existing Dask distributed scheduler (e.g. tcp://host:8786; needs "
                        "pip install 'fxbn[dask]'); results identical to the local run")
    p.add_argument("--no-batch", action="store_true", help="z3: one channel per solver call (no batching)")
    return p


def _collect(paths, style=None):
    """[(name, FixedPointBN) or verify.model.Model] in argument order."""
    import fxbn
    from verify import model

    out = []
    seen_models = set()
    for path in paths:
        if os.path.isfile(path) and model.is_model_file(path):
            m = model.load_model(path, style)
            if os.path.abspath(m.path) not in seen_models:     # X.npz and X.model.json name the same model
                seen_models.add(os.path.abspath(m.path))
                out.append(m)
            continue
        if os.path.isdir(path):
            files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith((".json", ".npz")))
            if not files:
                raise ValueError(f"{path}: no .json or .npz layer files")
        elif os.path.isfile(path):
            files = [path]
        else:
            raise ValueError(f"{path}: no such file or directory")
        found = 0
        for f in files:
            try:
                layer = fxbn.load(f, check=False)     # validated; exactness is what verify decides
            except ValueError as e:
                if f == path:                  # a file named explicitly must be a layer
                    raise ValueError(str(e) if str(e).startswith(f) else f"{f}: {e}") from None
                hint = " (name model files explicitly)" if model.is_model_file(f) else ""
                print(f"python -m verify: skipping {f}: not a saved FixedPointBN ({e}){hint}", file=sys.stderr)
                continue
            out.append((os.path.splitext(os.path.basename(f))[0], layer))
            found += 1
        if not found:
            raise ValueError(f"{path}: no saved FixedPointBN layers among {len(files)} .json/.npz file(s)")
    return out


def _some(names, n=8):
    return ", ".join(names[:n]) + (f", ... ({len(names)} in all)" if len(names) > n else "")


def _model_layers(items, args, on_layer=None):
    """Replace the models among `items` by their layers; (layers, {name: model info}). ValueError: usage error.
    on_layer(name, layer): called as each model layer is built."""
    from verify import model

    models = [i for i in items if isinstance(i, model.Model)]
    if getattr(args, "activations_data", None):
        model.apply_data_flow(models, args.activations_data)
    for m in models:
        for bn in m.skipped:
            print(f"python -m verify: {m.path}: BN {bn!r} has no Conv/Linear paired with it: skipped",
                  file=sys.stderr)
    if args.write_activations_template:
        if not models:
            raise ValueError("--write-activations-template needs a model file among the PATHs")
        text = json.dumps(model.activations_template(models), indent=1) + "\n"
        if args.write_activations_template == "-":
            sys.stdout.write(text)
        else:
            write_file(args.write_activations_template, text)        # all or nothing
        n = sum(len(m.pairs) for m in models)
        print(f"python -m verify: wrote {args.write_activations_template}: {n} BN layer(s) of "
              f"{', '.join(m.path for m in models)}; fill in the null scales and zero points", file=sys.stderr)
        return None, None
    if not models:
        if args.activations:
            raise ValueError("--activations is for model files, but no PATH is a model file")
        return items, {}
    bns = [bn for m in models for bn in m.bn_names()]
    if not args.activations:
        raise ValueError(f"model file {', '.join(m.path for m in models)} has no activation quantization: give "
                         f"--activations FILE.json for its BN layers {_some(bns)}; write one with "
                         "--write-activations-template OUT.json")
    acts = args.activations_data
    missing = model.uncovered(models, acts)
    if missing:
        raise ValueError(f"--activations {args.activations} does not cover BN layer(s) {_some(missing)} "
                         f"({len(missing)} of {len(bns)}; see --write-activations-template)")
    extra = sorted(set(acts["layers"]) - set(bns))
    if extra:
        print(f"python -m verify: --activations {args.activations}: no BN layer {_some(extra)} in the model "
              "file(s): ignored", file=sys.stderr)
    built = {}
    for name, layer, meta in model.build_layers(models, acts, args.eps, args.rounding, on_layer):
        built.setdefault(meta["model"], []).append((name, layer, meta))
    layers, info = [], {}
    for item in items:
        if isinstance(item, model.Model):
            for name, layer, meta in built.get(item.path, []):
                layers.append((name, layer))
                info[name] = meta
                if not meta["bias_fold_exact"]:
                    print(f"python -m verify: {name}: conv bias folded into the BN mean with float64 rounding; "
                          "the reference is that of the folded BN", file=sys.stderr)
        else:
            layers.append(item)
    return layers, info


class _Progress:
    def __init__(self, total, enabled):
        self.total, self.done, self.enabled = total, 0, enabled and total > 1 and sys.stderr.isatty()

    def __call__(self, n):
        self.done += n
        if self.enabled:
            width = 30
            filled = width * self.done // self.total
            sys.stderr.write(f"\r  z3 [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}")
            if self.done >= self.total:
                sys.stderr.write("\r" + " " * (width + 30) + "\r")
            sys.stderr.flush()


def _line(rec):
    secs = sum(rec["seconds"].values())
    extra = f", max error {rec['max_error']}" if rec.get("max_error") is not None and rec["verdict"] != "PROVED" \
        else ""
    mins = "" if "minimality" not in rec else (f", shift minimal: {rec['minimality']}"
                                               + (" (common shift)" if rec.get("common_shift") else ""))
    return (f"{rec['verdict']:8s} {rec['name']}: {rec['channels']} ch, {rec['form']} {rec['in_dtype']}->"
            f"{rec['out_dtype']} {rec['rounding']}, method {rec['method']}, bound {rec['bound']}{extra}{mins}, "
            f"{secs:.3f} s")


def _details(rec):
    lines = []
    for p in rec["per_channel"]:
        if p["verdict"] != "PROVED":
            methods = ", ".join(f"{m} {p[m]}" for m in ("breakpoints", "z3") if m in p)
            why = f" ({p['z3_reason']})" if p.get("z3_reason") else ""
            lines.append(f"    channel {p['channel']}: {methods}{why}")
    for r in rec["refutations"]:
        lines.append(f"    channel {r['channel']}: x = {r['x']}: fixed point {r['fixed_point']}, exact reference "
                     f"{r['reference']} (v = {r['reference_value']} ~ {r['reference_value_float']:.9g})")
        lines.append(f"      {r['example']}")
    for p in rec["per_channel"]:
        if p.get("minimal_shift") is False:
            lines.append(f"    channel {p['channel']}: shift is not minimal: (A, B, s) = "
                         f"{tuple(p['smaller_parameters'])} is exact")
    if rec.get("minimality") == "REFUTED" and rec.get("minimality_reason"):
        lines.append(f"    shift minimality: {rec['minimality_reason']}")
    if rec.get("store", {}).get("verdict") == "REFUTED":
        lines.append(f"    store into {rec['out_dtype']}: {rec['store']['reason']}")
    return lines


def _options_error(args):
    """The first unusable option value, as a message, or None."""
    if not args.paths and not args.demo and not args.lemmas:
        return "give layer or model PATHs, --demo, or --lemmas"
    if not 1 <= args.jobs <= 1024:
        return f"--jobs must be in [1, 1024], got {args.jobs}"
    if not math.isfinite(args.timeout) or not 0.001 <= args.timeout <= 86400:
        return f"--timeout must be a number of seconds in [0.001, 86400], got {args.timeout}"
    if args.rlimit is not None and args.rlimit < 1:
        return f"--rlimit must be a positive integer, got {args.rlimit}"
    if args.bound < 0:
        return f"--bound must be >= 0, got {args.bound}"
    in_dtypes = [s for s in args.in_dtypes.split(",") if s]
    bad = [d for d in in_dtypes if d not in LEMMA_IN_DTYPES]
    if bad or not in_dtypes:
        return f"--in-dtypes takes a comma-separated subset of {','.join(LEMMA_IN_DTYPES)}, got {args.in_dtypes!r}"
    try:
        acc_bits = [int(s) for s in args.acc_bits.split(",") if s]
    except ValueError:
        acc_bits = []
    if not acc_bits or any(w not in LEMMA_ACC_BITS for w in acc_bits):
        return f"--acc-bits takes a comma-separated subset of 32,64 (the kernel's widths), got {args.acc_bits!r}"
    args.in_dtypes_list, args.acc_bits_list = in_dtypes, acc_bits
    for opt, path in (("--json", args.json), ("--write-activations-template", args.write_activations_template)):
        if path and path != "-":
            parent = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(parent):
                return f"{opt} {path}: directory {parent} does not exist"
            if os.path.isdir(path):
                return f"{opt} {path} is a directory"
    if args.emit_smt2:
        try:
            os.makedirs(args.emit_smt2, exist_ok=True)
        except OSError as e:
            return f"--emit-smt2 {args.emit_smt2}: {e}"
    return None


def main(argv=None):
    """Run the command line; every failure that is not a refutation or unknown verdict becomes exit 64 or 70."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("python -m verify: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug, not a verdict: never exit 1 (refuted) for it
        print(f"python -m verify: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_INTERNAL


def _main(argv):
    args = build_parser().parse_args(argv)
    problem = _options_error(args)
    if problem:
        print(f"python -m verify: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    in_dtypes, acc_bits = args.in_dtypes_list, args.acc_bits_list
    from verify import run

    cert = {"format": "fxbn.verify.certificate", "version": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                         time.gmtime()),
            "solver": None, "layers": [], "lemmas": [], "audit": []}
    executor, close = None, _no_executor
    pending = {}                    # id(layer) -> (layer, collector of its z3 work queued on the executor)

    def queue_z3(name, layer):      # as soon as a layer is built: the workers start while the next one is built
        if executor is not None and not _is_add(layer) and id(layer) not in pending:
            pending[id(layer)] = (layer, run.start_z3(layer, args.bound, int(args.timeout * 1000), args.rlimit,
                                                      args.emit_smt2, name, args.jobs,
                                                      _Progress(layer.channels, not args.quiet), executor,
                                                      not args.no_batch))

    try:
        from verify import model

        args.activations_data = model.load_activations(args.activations) if args.activations else None
        style = (args.activations_data or {}).get("style")
        items = _collect(args.paths, style)
        if args.method != "breakpoints" or args.lemmas:
            from verify import smt

            cert["solver"] = {"name": "z3", "version": smt.solver_version()}   # z3 loaded before workers fork
        if not args.write_activations_template:
            executor, close = _executor(args)
        layers, info = _model_layers(items, args, queue_z3)
    except (ValueError, OSError, RecursionError) as e:
        close(cancel=True)
        print(f"python -m verify: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BaseException:
        close(cancel=True)
        raise
    if layers is None:                      # --write-activations-template
        close()
        return EXIT_PROVED
    if args.demo:
        from verify import demo

        layers += demo.demo_layers()
    worst = EXIT_PROVED
    rank = {"PROVED": EXIT_PROVED, "UNKNOWN": EXIT_UNKNOWN, "REFUTED": EXIT_REFUTED}

    def note(verdict):
        nonlocal worst
        code = rank[verdict]
        if code == EXIT_REFUTED or (code == EXIT_UNKNOWN and worst == EXIT_PROVED):
            worst = code

    try:
        for name, layer in layers:          # every layer's z3 work queued at once: no idle workers between layers
            queue_z3(name, layer)
        for name, layer in layers:
            queued = pending.get(id(layer))
            _verify_one(args, cert, info, name, layer, note, executor,
                        queued[1] if queued is not None and queued[0] is layer else None)
    except BaseException:
        close(cancel=True)                  # an error or an interrupt: drop the queued work, do not wait for it
        raise
    close()
    if args.lemmas:
        from verify import lemmas

        for res in lemmas.prove_all(in_dtypes, acc_bits, int(args.timeout * 1000), args.emit_smt2):
            cert["lemmas"].append(res)
            verdict = {"proved": "PROVED", "refuted": "REFUTED"}.get(res["status"], "UNKNOWN")
            note(verdict)
            why = f" ({res['reason']})" if res.get("reason") else ""
            cex = f" counterexample {res['counterexample']}" if res.get("counterexample") else ""
            print(f"{verdict:8s} lemma {res['name']} [{res['config']}], {res['logic']}, "
                  f"{res['seconds']:.3f} s{why}{cex}")
    if args.json:
        try:            # all or nothing, whatever fails (and never over a file of the user's named <json>.tmp)
            write_file(args.json, lambda fh: _write_json_binary(cert, fh))
        except OSError as e:
            print(f"python -m verify: error: --json {args.json}: {e}", file=sys.stderr)
            return EXIT_USAGE
    return worst


def _no_executor(cancel=False):
    pass


def _executor(args):
    """(executor or None, close(cancel=False)): a Dask client's executor for --scheduler, one process pool for
    --jobs > 1 shared by every layer, else None (in-process).  close(cancel=True) drops the queued work."""
    if args.scheduler and args.method != "breakpoints":
        try:
            from dask.distributed import Client
        except ImportError:
            raise ValueError("--scheduler needs dask.distributed: pip install 'fxbn[dask]'") from None
        client = Client(args.scheduler)
        return client.get_executor(), lambda cancel=False: client.close()
    if args.jobs > 1 and args.method != "breakpoints":
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(max_workers=args.jobs)
        return pool, lambda cancel=False: pool.shutdown(cancel_futures=cancel)
    return None, _no_executor


def _is_add(layer):
    return getattr(layer, "source", {}).get("form") == "add"


def _verify_one(args, cert, info, name, layer, note, executor, pending=None):
    from verify import run

    if _is_add(layer):  # fxbn.FixedPointAdd: its own certificate
        from verify import add as add_verify

        rec = add_verify.verify_add_layer(layer, name, args.method, not args.no_minimality,
                                          int(args.timeout * 1000), args.emit_smt2)
        cert["layers"].append(rec)
        note(rec["verdict"])
        print(_line(rec))
        for line in _details(rec):
            print(line)
        return
    progress = _Progress(layer.channels, not args.quiet and args.method != "breakpoints")
    rec = run.verify_layer(layer, name, args.method, args.bound, not args.no_minimality, int(args.timeout * 1000),
                           args.rlimit, args.emit_smt2, args.jobs, args.engine, progress, executor,
                           not args.no_batch, pending)
    rec["parameters"] = [run.channel_record(layer, c) for c in range(layer.channels)]
    rec["accumulator_bits"] = int(layer.accumulator_bits.max())
    rec["multiplier_bits"] = int(layer.multiplier_bits.max())
    if name in info:
        rec["model"] = info[name]
    cert["layers"].append(rec)
    note(rec["verdict"])
    print(_line(rec))
    for line in _details(rec):
        print(line)
    if args.audit:
        from verify import audit

        rows = audit.audit_layer(layer)
        cert["audit"].append({"layer": name, "schemes": rows})
        for row in audit.summary_lines(rows):
            print("    " + row)


def _write_json_binary(obj, fh):
    text = io.TextIOWrapper(fh, "utf-8")
    write_json(obj, text)
    text.flush()
    text.detach()               # the binary file stays open for its owner


def write_json(obj, fh, expand=4):
    """Write obj as JSON to fh: containers nested fewer than `expand` levels deep one item per line (indent 1),
    deeper ones (a certificate's per-channel records) each on one line by the C encoder, whose output json.dump
    with indent cannot use: the same JSON value as ``json.dump(obj, fh, indent=1)``, several times faster.

    Examples
    --------
    >>> import io, json
    >>> buf = io.StringIO()
    >>> write_json({"layers": [{"per_channel": [{"channel": 0, "z3": "PROVED"}]}]}, buf)
    >>> json.loads(buf.getvalue())
    {'layers': [{'per_channel': [{'channel': 0, 'z3': 'PROVED'}]}]}
    """
    flat = json.JSONEncoder(default=_default, separators=(", ", ": ")).encode
    write = fh.write

    def emit(o, depth):
        pad = "\n" + " " * (depth + 1)
        if depth >= expand or not isinstance(o, (dict, list, tuple)) or not o:
            write(flat(o))
        elif isinstance(o, dict):
            write("{")
            for i, (k, v) in enumerate(o.items()):
                key = flat(k) if isinstance(k, str) else flat({k: None})[1:-len(": null}")]   # json's key rules
                write(("," if i else "") + pad + key + ": ")
                emit(v, depth + 1)
            write("\n" + " " * depth + "}")
        else:
            write("[")
            for i, v in enumerate(o):
                write(("," if i else "") + pad)
                emit(v, depth + 1)
            write("\n" + " " * depth + "]")

    emit(obj, 0)


def _default(o):
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


if __name__ == "__main__":
    sys.exit(main())
