"""``python -m verify``: prove that fxbn layers are exact (or within a bound) for every input of their range.

Exit codes: 0 all proved, 1 something refuted, 2 unknown / timeout, 64 usage error.
"""
import argparse
import json
import os
import sys
import time

EXIT_PROVED, EXIT_REFUTED, EXIT_UNKNOWN, EXIT_USAGE = 0, 1, 2, 64


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def build_parser():
    p = _Parser(prog="python -m verify", description=__doc__.strip().splitlines()[0])
    p.add_argument("paths", nargs="*", help="saved FixedPointBN files (.json/.npz) or directories of them")
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
    return p


def _collect(paths):
    import fxbn

    out = []
    for path in paths:
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
                layer = fxbn.load(f)
            except (ValueError, KeyError) as e:
                if f == path:                  # a file named explicitly must be a layer
                    raise ValueError(f"{f}: {e}") from None
                print(f"python -m verify: skipping {f}: not a saved FixedPointBN ({e})", file=sys.stderr)
                continue
            out.append((os.path.splitext(os.path.basename(f))[0], layer))
            found += 1
        if not found:
            raise ValueError(f"{path}: no saved FixedPointBN layers among {len(files)} .json/.npz file(s)")
    return out


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
    return lines


def main(argv=None):
    args = build_parser().parse_args(argv)
    if not args.paths and not args.demo and not args.lemmas:
        print("python -m verify: error: give layer PATHs, --demo, or --lemmas", file=sys.stderr)
        return EXIT_USAGE
    if args.jobs < 1 or args.timeout <= 0 or args.bound < 0:
        print("python -m verify: error: --jobs >= 1, --timeout > 0 and --bound >= 0 are required", file=sys.stderr)
        return EXIT_USAGE
    try:
        in_dtypes = [s for s in args.in_dtypes.split(",") if s]
        acc_bits = [int(s) for s in args.acc_bits.split(",") if s]
    except ValueError:
        print("python -m verify: error: --acc-bits takes integers, e.g. 32,64", file=sys.stderr)
        return EXIT_USAGE
    from verify import run

    try:
        layers = _collect(args.paths)
    except (ValueError, OSError) as e:
        print(f"python -m verify: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.demo:
        from verify import demo

        layers += demo.demo_layers()
    if args.emit_smt2:
        os.makedirs(args.emit_smt2, exist_ok=True)
    cert = {"format": "fxbn.verify.certificate", "version": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                         time.gmtime()),
            "solver": None, "layers": [], "lemmas": [], "audit": []}
    if args.method != "breakpoints" or args.lemmas:
        from verify import smt

        cert["solver"] = {"name": "z3", "version": smt.solver_version()}
    worst = EXIT_PROVED
    rank = {"PROVED": EXIT_PROVED, "UNKNOWN": EXIT_UNKNOWN, "REFUTED": EXIT_REFUTED}

    def note(verdict):
        nonlocal worst
        code = rank[verdict]
        if code == EXIT_REFUTED or (code == EXIT_UNKNOWN and worst == EXIT_PROVED):
            worst = code

    for name, layer in layers:
        progress = _Progress(layer.channels, not args.quiet and args.method != "breakpoints")
        rec = run.verify_layer(layer, name, args.method, args.bound, not args.no_minimality,
                               int(args.timeout * 1000), args.rlimit, args.emit_smt2, args.jobs, args.engine,
                               progress)
        rec["parameters"] = [run.channel_record(layer, c) for c in range(layer.channels)]
        rec["accumulator_bits"] = int(layer.accumulator_bits.max())
        rec["multiplier_bits"] = int(layer.multiplier_bits.max())
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
        with open(args.json, "w") as fh:
            json.dump(cert, fh, indent=1, default=_default)
    return worst


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
