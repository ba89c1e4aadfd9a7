"""Batched z3 proofs (verify.smt.prove_batch: threshold-split scripts, many channels per z3 call) and the executor
API (verify.run.run_z3 / verify_layer(executor=...), python -m verify --scheduler on a Dask LocalCluster).

The batched path must prove exactly the channels the exact error says are within the bound, refute (through the
per-channel fallback, with a real witness) a wrong channel hidden inside a batch, and give the per-channel run's
verdicts; any executor must give the local run's certificate."""
import json
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fxbn
from verify import breakpoints, exact, run, smt
from verify.__main__ import main

pytest.importorskip("z3")
ROUNDINGS = ("half_even", "half_up", "half_away", "floor")
TIMING = {"seconds", "z3_seconds", "z3_build_seconds", "z3_median_seconds", "created"}


def _with(layer, A, B, s):
    return fxbn.FixedPointBN(A, B, s, layer.in_range, layer.out_range, layer.rounding, layer.source,
                             layer.out_dtype, layer.in_dtype)


def _mutate(layer, c, what, delta):
    A, B, s = layer.multiplier.copy(), layer.bias.copy(), layer.shift.copy()
    if what == "A":
        A[c] += delta
    elif what == "level":                             # about delta half output levels
        B[c] += delta * (1 << max(0, int(s[c]) - 1))
    else:
        B[c] += delta
    return _with(layer, A, B, s)


def _layer(form, channels, rounding, in_dtype, seed):
    rng = np.random.default_rng(seed)
    if form == "affine":
        return fxbn.from_affine(rng.lognormal(-5, 1, channels) * rng.choice([-1, 1], channels),
                                rng.normal(0, 8, channels), in_dtype=in_dtype, rounding=rounding)
    return fxbn.from_batchnorm(rng.normal(1, 0.3, channels) * rng.choice([-1, 1], channels),
                               rng.normal(0, 0.5, channels), rng.normal(0, 1, channels),
                               rng.uniform(0.2, 3, channels), 1e-5, in_scale=0.002, out_scale=0.05,
                               out_zero_point=-3, in_dtype=in_dtype, rounding=rounding)


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in TIMING}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


@settings(max_examples=40, deadline=None)
@given(form=st.sampled_from(["affine", "batchnorm"]), rounding=st.sampled_from(ROUNDINGS),
       in_dtype=st.sampled_from(["int8", "int16", "int32"]), seed=st.integers(0, 2 ** 16),
       bound=st.sampled_from([0, 0, 1]), bad=st.integers(0, 5),
       what=st.sampled_from(["A", "B", "level"]), delta=st.sampled_from([-3, -1, 1, 2, 40]))
def test_batch_proves_exactly_the_channels_within_the_bound(form, rounding, in_dtype, seed, bound, bad, what, delta):
    try:
        layer = _layer(form, 6, rounding, in_dtype, seed)
    except fxbn.InfeasibleError:                       # e.g. a half_even tie that no affine floor reproduces
        return
    layer = _mutate(layer, bad, what, delta)
    errors = breakpoints.exact_error(layer)               # the exact max error of every channel (no z3)
    proved = smt.prove_batch(layer, range(6), bound)
    for c in range(6):
        if errors[c]["max_error"] > bound:
            assert c not in proved, (c, errors[c])           # soundness: a wrong channel is never proved
        elif form == "affine":
            assert c in proved, c                           # the affine encoding is exact: complete
    assert all(r["status"] == "proved" and r["batch"] == 6 for r in proved.values())


def test_wrong_channel_inside_a_batch_is_refuted_with_a_real_witness():
    layer = _layer("batchnorm", 40, "half_even", "int32", 1)
    bad = _mutate(layer, 17, "A", 1)                       # one multiplier off by one, in the middle of a batch
    assert breakpoints.exact_error(bad)[17]["max_error"] > 0
    proved = smt.prove_batch(bad, range(40))
    assert set(proved) == set(range(40)) - {17}
    for delta in (-1, 1):                                   # half a level lower / higher: y > f, resp. f > y
        low = _mutate(layer, 30, "level", delta)
        assert breakpoints.exact_error(low)[30]["max_error"] > 0
        assert set(smt.prove_batch(low, range(40))) == set(range(40)) - {30}
    z = run.run_z3(bad)
    assert [c for c, r in z.items() if r["status"] != "proved"] == [17]
    assert z[17]["status"] == "refuted"
    A, B, s, _, _ = exact.channel_params(bad, 17)
    w = z[17]["witness"]
    assert exact.fixed_output(A, B, s, w, *bad.out_range) != exact.reference_output(bad, 17, w)
    rec = run.verify_layer(bad, "bad")
    assert rec["verdict"] == run.REFUTED and [r["channel"] for r in rec["refutations"]] == [17]


@pytest.mark.parametrize("form", ["affine", "batchnorm"])
def test_batched_run_gives_the_per_channel_verdicts(form):
    layer = _layer(form, 70, "half_up", "int32", 7)
    layer = _mutate(_mutate(layer, 3, "B", 5), 66, "A", -1)
    one = run.verify_layer(layer, "l", batched=False)
    many = run.verify_layer(layer, "l")
    assert [p["verdict"] for p in one["per_channel"]] == [p["verdict"] for p in many["per_channel"]]
    assert [p["z3"] for p in one["per_channel"]] == [p["z3"] for p in many["per_channel"]]
    assert one["refutations"] == many["refutations"] and one["claims"] == many["claims"]
    assert any(p.get("z3_batch") for p in many["per_channel"])
    assert not any(p.get("z3_batch") for p in one["per_channel"])


def test_any_executor_gives_the_local_record():
    layer = _mutate(_layer("batchnorm", 150, "half_even", "int16", 3), 100, "B", 3)
    done = []
    local = run.verify_layer(layer, "l")
    with ProcessPoolExecutor(2) as ex:
        remote = run.verify_layer(layer, "l", executor=ex, progress=done.append)
    assert _strip(remote) == _strip(local)
    assert sum(done) == 150 and len(done) > 1                # progress over channels, piece by piece
    assert remote["verdict"] == run.REFUTED


def _model_free_layers(tmp_path):
    good = _layer("batchnorm", 48, "half_up", "int32", 11)
    good.save(str(tmp_path / "good.json"))
    _mutate(_layer("affine", 40, "half_even", "int16", 12), 9, "B", 2).save(str(tmp_path / "bad.json"))
    return [str(tmp_path / "good.json"), str(tmp_path / "bad.json")]


def test_dask_local_cluster_certificate_matches_the_local_run(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    paths = _model_free_layers(tmp_path)
    assert main(paths + ["--quiet", "--json", str(tmp_path / "local.json")]) == 1
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cl:
        assert main(paths + ["--quiet", "--scheduler", cl.scheduler_address,
                             "--json", str(tmp_path / "dask.json")]) == 1
    local, dask = (json.load(open(tmp_path / f)) for f in ("local.json", "dask.json"))
    assert _strip(dask) == _strip(local)
    assert [r["channel"] for r in dask["layers"][1]["refutations"]] == [9]


def test_jobs_and_no_batch_certificates_match(tmp_path):
    paths = _model_free_layers(tmp_path)
    outs = []
    for extra in ([], ["--jobs", "2"], ["--no-batch"]):
        out = tmp_path / f"c{len(outs)}.json"
        assert main(paths + ["--quiet", "--json", str(out)] + extra) == 1
        outs.append(json.load(open(out)))
    verdicts = [[[p["verdict"] for p in rec["per_channel"]] for rec in c["layers"]] for c in outs]
    assert verdicts[0] == verdicts[1] == verdicts[2]
    assert _strip(outs[0]) == _strip(outs[1])


def test_scheduler_without_dask_is_a_usage_error(tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "dask", None)
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    paths = _model_free_layers(tmp_path)
    assert main(paths[:1] + ["--quiet", "--scheduler", "tcp://127.0.0.1:1"]) == 64
    assert "fxbn[dask]" in capsys.readouterr().err


def test_violations_only_above_the_top_fixed_point_level_are_caught():
    """f(x) = f(hi) < y(x) = f(hi) + 1 and nowhere else wrong: only the threshold f(hi) + 1 sees it."""
    found = 0
    for seed in range(30):
        for what, delta in (("A", -1), ("A", 1), ("level", -1)):
            bad = _mutate(_layer("affine", 1, "half_up", "int8", seed), 0, what, delta)
            A, B, s, lo, hi = exact.channel_params(bad, 0)
            fs = [exact.fixed_output(A, B, s, x, *bad.out_range) for x in range(lo, hi + 1)]
            wrong = [(f, exact.reference_output(bad, 0, x)) for x, f in zip(range(lo, hi + 1), fs)]
            wrong = [(f, y) for f, y in wrong if f != y]
            if wrong and max(fs) < bad.out_range[1] and all(y == max(fs) + 1 for _, y in wrong):
                found += 1
                assert smt.prove_batch(bad, [0]) == {}, (seed, what, delta)
                assert run.run_z3(bad)[0]["status"] == "refuted"
    assert found >= 3


@pytest.mark.parametrize("form,rounding", [("batchnorm", "half_up"), ("affine", "half_even")])
def test_one_mutated_multiplier_in_a_large_batch_is_caught_and_named(form, rounding):
    """The xor-per-threshold batches (verify.smt.exact_block): 160 channels, a multiplier off by one in channel 137
    only; the batch of 128 channels around it proves every other channel, the run refutes 137 with a real witness."""
    layer = _layer(form, 160, rounding, "int32", 5)
    bad = _mutate(layer, 137, "A", 1 if form == "affine" else -1)
    assert breakpoints.exact_error(bad)[137]["max_error"] > 0
    assert all(e["max_error"] == 0 for c, e in enumerate(breakpoints.exact_error(bad)) if c != 137)
    proved = smt.prove_batch(bad, range(32, 160))
    assert set(proved) == set(range(32, 160)) - {137}
    assert {r["encoding"] for r in proved.values()} == {f"{'affine' if form == 'affine' else 'batchnorm-bracket'}"
                                                        f"-xor-batch"}
    rec = run.verify_layer(bad, "big")
    assert rec["verdict"] == run.REFUTED
    assert [c for c, p in enumerate(rec["per_channel"]) if p["z3"] != "PROVED"] == [137]
    assert rec["per_channel"][137]["z3"] == "REFUTED" and rec["per_channel"][137]["breakpoints"] == "REFUTED"
    [ref] = rec["refutations"]
    assert ref["channel"] == 137 and ref["fixed_point"] != ref["reference"]
    assert run.verify_layer(layer, "good")["verdict"] == run.PROVED
