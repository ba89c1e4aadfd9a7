"""Verify whole layers: breakpoint certificate and z3 per channel, minimality, exact error; verdicts and records."""
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np

from verify import breakpoints, exact

PROVED, REFUTED, UNKNOWN = "PROVED", "REFUTED", "UNKNOWN"
METHODS = ("breakpoints", "z3", "both")


BATCH = 32          # channels per z3 call on the batched path


def _z3_chunk(args):
    """{channel: z3 result} of some channels of a layer: batched threshold scripts (:func:`verify.smt.prove_batch`)
    first, then every channel they did not prove one by one (:func:`verify.smt.prove_channel_split`, which decides
    it exactly and reports the counterexample)."""
    layer, channels, bound, timeout_ms, rlimit, smt2_dir, name = args[:7]
    batched = args[7] if len(args) > 7 else True
    from verify import smt

    out = {}
    if batched and smt.batch_eligible(layer, rlimit, smt2_dir):
        for i in range(0, len(channels), BATCH):
            out.update(smt.prove_batch(layer, channels[i:i + BATCH], bound, timeout_ms))
    for c in channels:
        if c in out:
            continue
        path = None if smt2_dir is None else os.path.join(smt2_dir, f"{name}.ch{c}.smt2")
        out[c] = smt.prove_channel_split(layer, c, bound, timeout_ms, rlimit, path)
    return out


def _chunks(C, jobs, size):
    """Contiguous channel chunks of a multiple of BATCH channels (so the batches, hence the records, do not depend
    on the executor): at least 4 per worker where possible (load balance), at most `size` channels each."""
    per = max(BATCH, min(size, -(-C // (4 * jobs)) // BATCH * BATCH or BATCH))
    return [list(range(i, min(C, i + per))) for i in range(0, C, per)]


def run_z3(layer, bound=0, timeout_ms=10000, rlimit=None, smt2_dir=None, name="layer", jobs=1, progress=None,
           executor=None, batched=True):
    """{channel: z3 result} for every channel.

    Parameters
    ----------
    jobs : int
        Processes of a local ProcessPoolExecutor (when no `executor` is given and jobs > 1).
    progress : callable, optional
        Called with the number of channels each finished piece of work decided.
    executor : concurrent.futures.Executor, optional
        Any executor (process pool, ``dask.distributed.Client(...).get_executor()``, ...): the channels are
        submitted to it in chunks; the results are those of the local run (each channel is decided on its own).
    batched : bool
        Prove channels in batches of threshold scripts first (default); False: one channel per z3 call.

    Examples
    --------
    >>> from concurrent.futures import ProcessPoolExecutor
    >>> import fxbn
    >>> layer = fxbn.from_affine([0.3, -0.7], [1.5, 0.25])
    >>> with ProcessPoolExecutor(2) as ex:
    ...     sorted((c, r["status"]) for c, r in run_z3(layer, executor=ex).items())
    [(0, 'proved'), (1, 'proved')]
    """
    return start_z3(layer, bound, timeout_ms, rlimit, smt2_dir, name, jobs, progress, executor, batched)()


def start_z3(layer, bound, timeout_ms, rlimit, smt2_dir, name, jobs, progress, executor, batched):
    """Submit the z3 work of a layer to `executor` (or a pool of `jobs` processes) now; return the function that
    collects {channel: result} (in-process without either: the work runs when it is called)."""
    C = layer.channels
    if executor is None and (jobs <= 1 or C == 1):
        def local():
            results = {}
            for ch in _chunks(C, 1, BATCH):
                part = _z3_chunk((layer, ch, bound, timeout_ms, rlimit, smt2_dir, name, batched))
                results.update(part)
                if progress:
                    progress(len(part))
            return results
        return local
    own = executor is None
    pool = ProcessPoolExecutor(max_workers=jobs) if own else executor
    try:
        futures = [pool.submit(_z3_chunk, (layer, ch, bound, timeout_ms, rlimit, smt2_dir, name, batched))
                   for ch in _chunks(C, max(jobs, 2), 4 * BATCH)]
    except BaseException:
        if own:
            pool.shutdown()
        raise

    def collect():
        results = {}
        try:
            for fut in as_completed(futures):
                part = fut.result()
                results.update(part)
                if progress:
                    progress(len(part))
        finally:
            if own:
                pool.shutdown()
        return results
    return collect


def _refutation(layer, c, x):
    """Details of a counterexample at x: fixed-point output, exact reference (rational/float), @example."""
    A, B, s, _, _ = exact.channel_params(layer, c)
    f = exact.fixed_output(A, B, s, x, *layer.out_range)
    y = exact.reference_output(layer, c, x)
    v_exact, v_float = exact.reference_value(layer, c, x)
    return {"channel": c, "x": int(x), "fixed_point": f, "reference": y, "reference_value": v_exact,
            "reference_value_float": v_float, "example": exact.example_snippet(layer, c, x)}


def verify_layer(layer, name="layer", method="both", bound=0, minimality=True, timeout_ms=10000, rlimit=None,
                 smt2_dir=None, jobs=1, engine="core", progress=None, executor=None, batched=True, z3_pending=None):
    """Verify every channel of a layer; return a JSON-ready record.

    Parameters
    ----------
    layer : fxbn.FixedPointBN
    method : {"breakpoints", "z3", "both"}
        "both" requires the two methods to agree on every channel.
    bound : int
        The claim is |f(x) - y(x)| <= bound for every x in in_range (0: exact).
    minimality : bool
        Also certify that no (A, B) exists at shift - 1.
    executor : concurrent.futures.Executor, optional
        Where the per-channel z3 work runs (see :func:`run_z3`); the record is that of the local run.
    batched : bool
        z3 channels in batches first (see :func:`run_z3`).
    z3_pending : callable, optional
        The collector :func:`start_z3` returned for this layer with the same arguments (work submitted earlier,
        e.g. every layer's at once so that the executor never idles between layers).

    Returns
    -------
    dict
        ``verdict`` (PROVED / REFUTED / UNKNOWN), per-method ``seconds``, ``channels`` (per-channel verdicts,
        exact max error, witnesses), ``refutations`` (details of each counterexample), ``minimality``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    record = {"name": name, "channels": layer.channels, "form": layer.source["form"], "rounding": layer.rounding,
              "in_dtype": layer.in_dtype.name, "out_dtype": layer.out_dtype.name,
              "out_range": list(layer.out_range), "bound": int(bound), "method": method, "seconds": {},
              "claims": [f"for every channel and every integer x in its in_range: |clamp((A*x + B) >> s, qmin, qmax)"
                         f" - clamp(R(v(x)), qmin, qmax)| <= {int(bound)}, R = {layer.rounding}, v exact"]
              + ([_minimality_claim(layer)] if minimality and bound == 0 else []) + [_store_claim(layer)]}
    record["store"] = _store_check(layer)
    per = [{"channel": c} for c in range(layer.channels)]
    witnesses = {}
    z3_collect, early_min = None, None
    if method in ("z3", "both") and (executor is not None or z3_pending is not None):
        t_z3 = time.perf_counter()                          # the executor works while this process certifies
        z3_collect = z3_pending or start_z3(layer, bound, timeout_ms, rlimit, smt2_dir, name, jobs, progress,
                                            executor, batched)
        if minimality and bound == 0:
            t0 = time.perf_counter()
            mins = breakpoints.minimality(layer, engine)
            early_min = mins, breakpoints.layer_minimality(layer, mins), time.perf_counter() - t0
    if method in ("breakpoints", "both"):
        t0 = time.perf_counter()
        if bound == 0:
            cert = breakpoints.certify(layer, engine)
            for c, r in enumerate(cert):
                per[c]["breakpoints"] = PROVED if r["proved"] else REFUTED
                if r["witness"] is not None:
                    witnesses.setdefault(c, r["witness"])
        errors = breakpoints.exact_error(layer, engine) if bound > 0 or not all(
            p.get("breakpoints") == PROVED for p in per) else None
        if errors is not None:
            for c, r in enumerate(errors):
                per[c]["max_error"] = r["max_error"]
                per[c]["mismatches"] = r["mismatches"]
                if bound > 0:
                    per[c]["breakpoints"] = PROVED if r["max_error"] <= bound else REFUTED
                if r["max_error"] > bound:
                    witnesses.setdefault(c, r["witness"])
        else:
            for p in per:
                p["max_error"], p["mismatches"] = 0, 0
        record["seconds"]["breakpoints"] = time.perf_counter() - t0
    if method in ("z3", "both"):
        t0 = time.perf_counter() if z3_collect is None else t_z3
        z = run_z3(layer, bound, timeout_ms, rlimit, smt2_dir, name, jobs, progress, executor, batched) \
            if z3_collect is None else z3_collect()
        for c, r in z.items():
            per[c]["z3"] = r["status"].upper()
            per[c]["z3_seconds"] = round(r["seconds"], 6)
            per[c]["z3_build_seconds"] = round(r.get("build_seconds", 0.0), 6)
            for key in ("encoding", "logic", "checks", "bracket_bits", "refinements", "fallback_reason", "batch"):
                if key in r:
                    per[c][f"z3_{key}"] = r[key]
            if r["status"] == "refuted":
                per[c]["z3_witness"] = r["witness"]
                witnesses.setdefault(c, r["witness"])
            elif r["status"] == "unknown":
                per[c]["z3_reason"] = r.get("reason")
        record["seconds"]["z3"] = time.perf_counter() - t0
        times = [p["z3_seconds"] for p in per]
        record["z3_median_seconds"] = float(np.median(times))
    for p in per:
        verdicts = {p[m] for m in ("breakpoints", "z3") if m in p}
        if REFUTED in verdicts:
            p["verdict"] = REFUTED
        elif UNKNOWN in verdicts:
            p["verdict"] = UNKNOWN
        else:
            p["verdict"] = PROVED
        if len(verdicts - {UNKNOWN}) > 1:
            p["disagreement"] = True          # never expected: one of the two methods is wrong
    if minimality and bound == 0:
        if early_min is None:
            t0 = time.perf_counter()
            mins = breakpoints.minimality(layer, engine)
            early_min = mins, breakpoints.layer_minimality(layer, mins), time.perf_counter() - t0
        mins, summary, record["seconds"]["minimality"] = early_min
        common = summary["common_shift"]
        for c, m in enumerate(mins):
            if common and m["minimal"] is False:
                per[c]["minimal_shift"] = None                # not the binding channel of the common shift
                per[c]["common_shift_not_binding"] = True
            else:
                per[c]["minimal_shift"] = m["minimal"]
            if m["minimal"] is not None:
                per[c]["minimality_method"] = m["method"]
            if m["minimal"] is False:
                per[c]["smaller_parameters"] = list(m["smaller"])
            elif m["minimal"]:
                per[c]["minimality_certificate"] = _jsonable(m["certificate"])
                if "unconstrained_smaller" in m:
                    per[c]["unconstrained_smaller_parameters"] = list(m["unconstrained_smaller"])
        record["minimality"] = PROVED if summary["proved"] else REFUTED
        record["minimality_reason"] = summary["reason"]
        record["common_shift"] = common
        record["solve_options"] = dict(getattr(layer, "solve_options", None) or {})
    record["refutations"] = [_refutation(layer, c, x) for c, x in sorted(witnesses.items())]
    record["per_channel"] = per
    verdicts = {p["verdict"] for p in per}
    record["verdict"] = REFUTED if REFUTED in verdicts else UNKNOWN if UNKNOWN in verdicts else PROVED
    if record.get("minimality") == REFUTED and record["verdict"] == PROVED:
        record["verdict"] = REFUTED
    if record["store"]["verdict"] == REFUTED:
        record["verdict"] = REFUTED
    record["max_error"] = max((p.get("max_error", 0) or 0) for p in per) if method != "z3" else None
    return record


def _store_claim(layer):
    return (f"the clamp range out_range = [{layer.out_range[0]}, {layer.out_range[1]}] lies within out_dtype "
            f"{layer.out_dtype.name} (the store into out_dtype is the identity) and every channel's in_range lies "
            f"within in_dtype {layer.in_dtype.name}")


def _store_check(layer):
    """The claim above, checked with NumPy's own limits of the two dtypes (independent of fxbn's tables)."""
    out_info, in_info = np.iinfo(layer.out_dtype), np.iinfo(layer.in_dtype)
    qmin, qmax = (int(v) for v in layer.out_range)
    ranges = [(int(a), int(b)) for a, b in np.asarray(layer.in_range).tolist()]
    out_ok = int(out_info.min) <= qmin <= qmax <= int(out_info.max)
    bad_in = [c for c, (a, b) in enumerate(ranges) if not int(in_info.min) <= a <= b <= int(in_info.max)]
    rec = {"verdict": PROVED if out_ok and not bad_in else REFUTED,
           "out_dtype_range": [int(out_info.min), int(out_info.max)],
           "in_dtype_range": [int(in_info.min), int(in_info.max)]}
    if not out_ok:
        rec["reason"] = f"out_range [{qmin}, {qmax}] is not within {layer.out_dtype.name}"
    elif bad_in:
        rec["reason"] = f"in_range of channel {bad_in[0]} is not within {layer.in_dtype.name}"
    return rec


def _minimality_claim(layer):
    opts = getattr(layer, "solve_options", None) or {}
    acc, mb = breakpoints.solve_limits(layer)
    within = "" if acc is None and mb is None else \
        f" within the recorded limits (acc_bits={acc}, max_multiplier_bits={mb})"
    if opts.get("common_shift"):
        return f"the common shift S is minimal: some channel has no exact (A, B){within} at S - 1"
    return f"every shift s > 0 is minimal: no (A, B){within} is exact at s - 1"


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def channel_record(layer, c):
    """The exact integer parameters and source of channel c, for certificates."""
    A, B, s, lo, hi = exact.channel_params(layer, c)
    return {"multiplier": A, "bias": B, "shift": s, "in_range": [lo, hi], "source": exact.channel_source(layer, c)}
