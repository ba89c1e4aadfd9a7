"""fxbn.export_tosa: layers as TOSA graphs run in tosa-tools' reference model, bit-exact with FixedPointBN.apply on
every int8/int16 input of every channel (int32: a sample plus the range ends); the exact RESCALE-form checks."""
import os
import shutil

import numpy as np
import pytest

import fxbn
from fxbn import codegen, export_tosa as et
from conftest import DATA_DIR
from test_codegen import inputs, synthetic_layers

pytest.importorskip("serializer.tosa_serializer", reason="tosa-tools not installed (pip install tosa-tools)")


@pytest.fixture(scope="module")
def refmodel():
    if et.reference_model_path() is None:
        pytest.skip("tosa_reference_model not found (pip install tosa-tools)")


def rescale_layers():
    """Layers whose exact parameters are a single RESCALE: round-half-up of a*x + integer, a >= 0."""
    return {
        "rs_i8_ozp4": fxbn.from_affine([3 / 16, 5 / 32, 0.0], [4.0, 4.0, 4.0], in_dtype="int8",
                                       rounding="half_up"),
        "rs_i16": fxbn.from_affine([3 / 1024, 0.75], [0.0, 0.0], in_dtype="int16", out_dtype="int16",
                                   rounding="half_up"),
    }


INT32_FORM = ("i8_half_even", "i8_floor_narrow", "i16_acc32_narrow", "bn_i8_relu6", "i32_acc32_narrow")


def _run(layer, tmp_path, form=None, params_from=None):
    x = np.ascontiguousarray(inputs(layer, 20_000)[0].T)                      # [K, C]
    got_form = et.layer_to_tosa(params_from or layer, str(tmp_path), x.shape[0], form)
    y = et.run_reference_model(str(tmp_path), x)
    return got_form, x, y


@pytest.mark.parametrize("name", INT32_FORM)
def test_int32_form_bit_exact(refmodel, name, tmp_path):
    layer = synthetic_layers()[name]
    form, x, y = _run(layer, tmp_path)
    assert form == "int32"
    assert y.dtype == layer.out_dtype and np.array_equal(y, layer.apply(x, axis=-1))


@pytest.mark.parametrize("name", sorted(rescale_layers()))
def test_single_rescale_bit_exact(refmodel, name, tmp_path):
    layer = rescale_layers()[name]
    assert et.rescale_report(layer)["single"]
    form, x, y = _run(layer, tmp_path)
    assert form == "rescale"
    assert np.array_equal(y, layer.apply(x, axis=-1))
    assert x.shape[0] == np.iinfo(layer.in_dtype).max - np.iinfo(layer.in_dtype).min + 1   # exhaustive


def _mutated(layer, **changes):
    arrays = {k: getattr(layer, k).copy() for k in ("multiplier", "bias", "shift")}
    for k, (c, delta) in changes.items():
        arrays[k][c] += delta
    return fxbn.FixedPointBN(arrays["multiplier"], arrays["bias"], arrays["shift"], layer.in_range, layer.out_range,
                             layer.rounding, layer.source, layer.out_dtype, layer.in_dtype)


@pytest.mark.parametrize("form,name,change", [("int32", "i8_half_even", {"bias": (1, 97)}),
                                              ("int32", "i16_acc32_narrow", {"shift": (2, 1)}),
                                              ("rescale", "rs_i8_ozp4", {"multiplier": (0, 1)})])
def test_a_wrong_graph_is_detected(refmodel, form, name, change, tmp_path):
    """The comparison fails when the graph is built from a mutated parameter."""
    layer = {**synthetic_layers(), **rescale_layers()}[name]
    wrong = _mutated(layer, **change)
    got_form, x, y = _run(layer, tmp_path, form=None, params_from=wrong)
    assert got_form == form
    assert not np.array_equal(y, layer.apply(x, axis=-1))


def test_rescale_params_exact_check():
    """A bias off by one unit of the shifted domain no longer has a RESCALE form; negative multipliers, narrowed
    clamps and unsigned outputs are refused with the reason."""
    layer = rescale_layers()["rs_i8_ozp4"]
    assert et.rescale_params(layer) is not None
    assert et.rescale_params(_mutated(layer, bias=(1, 1 << int(layer.shift[1])))) is None
    neg = fxbn.from_affine([-3 / 16], [4.0], in_dtype="int8", rounding="half_up")
    assert "negative multiplier" in et.rescale_report(neg)["reason"]
    relu = fxbn.from_affine([3 / 16], [4.0], in_dtype="int8", rounding="half_up", relu=True)
    assert "clamp" in et.rescale_report(relu)["reason"]


def test_same_map_is_exact():
    """_same_map against brute force on small ranges, including a pair that differs at a single input."""
    rng = np.random.default_rng(5)
    for _ in range(300):
        A, A2 = (int(v) for v in rng.integers(0, 40, 2))
        s, s2 = (int(v) for v in rng.integers(0, 6, 2))
        B, B2 = (int(v) for v in rng.integers(-300, 300, 2))
        lo = int(rng.integers(-50, 10))
        hi = lo + int(rng.integers(0, 60))
        xs = range(lo, hi + 1)
        f = lambda a, b, t: [min(max((a * x + b) >> t, -3), 5) for x in xs]  # noqa: E731
        assert et._same_map(A, B, s, A2, B2, s2, lo, hi, -3, 5) == (f(A, B, s) == f(A2, B2, s2))
    assert not et._same_map(3, 0, 2, 3, 1, 2, 0, 10, -100, 100)      # differ at x = 1 only


def test_int32_form_refuses_wide_accumulators(tmp_path):
    layer = synthetic_layers()["i32_acc64"]
    with pytest.raises(ValueError, match="32 bits"):
        et.layer_to_tosa(layer, str(tmp_path), 4, "int32")


def test_unsigned_types_refused(tmp_path):
    with pytest.raises(ValueError, match="unsigned"):
        et.layer_to_tosa(synthetic_layers()["u8_half_up_relu"], str(tmp_path), 4)


# ------------------------------------------------------------------------------------------------ multi-word form
MULTIWORD_SYNTHETIC = ("i8_half_even", "i16_half_away", "i16_acc32_narrow", "i32_acc32_narrow", "bn_i8_relu6")


def _real():
    from shared_net_layers import real_layers

    layers = real_layers()
    if not layers:
        pytest.skip(f"shared data not found under {DATA_DIR}")
    return layers


def _run_multiword(layer, tmp_path, wrong=None, x=None):
    if x is None:
        x = np.ascontiguousarray(inputs(layer, 5_000)[0].T)
    form = et.layer_to_tosa(layer, str(tmp_path), x.shape[0], "multiword", wrong=wrong)
    assert form == "multiword"
    return x, et.run_reference_model(str(tmp_path), x)


@pytest.mark.parametrize("name", MULTIWORD_SYNTHETIC)
def test_multiword_bit_exact_synthetic(refmodel, name, tmp_path):
    """Exhaustive for 8/16-bit inputs, sample + range ends for int32; the NumPy model of the steps agrees."""
    layer = synthetic_layers()[name]
    x, y = _run_multiword(layer, tmp_path)
    assert y.dtype == layer.out_dtype and np.array_equal(y, layer.apply(x, axis=-1))
    assert np.array_equal(et.multiword_eval(layer, x), y)


def test_multiword_bit_exact_shared_networks(refmodel, tmp_path):
    """Real layers of ResNet-20, Darknet, MobileNet (incl. a depthwise layer) and ResNet-50: int32 accumulators of
    38..46 bits, no single RESCALE, no int32 form; the default form chosen is the multi-word one and it is
    bit-exact on a sample, the range ends and every breakpoint neighbourhood (T-1, T, T+1)."""
    from shared_net_layers import target_inputs

    for name, layer in _real().items():
        assert not et.rescale_report(layer)["single"] and codegen.c_accumulator_bits(layer) == 64, name
        x = target_inputs(layer)
        d = tmp_path / name
        assert et.layer_to_tosa(layer, str(d), x.shape[0]) == "multiword"
        y = et.run_reference_model(str(d), x)
        assert np.array_equal(y, layer.apply(x, axis=-1)), name


@pytest.mark.parametrize("wrong", et.MULTIWORD_WRONG)
def test_multiword_wrong_steps_detected(refmodel, wrong, tmp_path):
    """A graph from a wrong step list (carry dropped, carry at bit m - 1, MUL's rounding kept) mismatches on a real
    layer (and on a synthetic one without the data)."""
    from shared_net_layers import real_layers, target_inputs

    real = real_layers()
    layer = real["resnet20_bn1"] if "resnet20_bn1" in real else synthetic_layers()["i16_half_away"]
    x = target_inputs(layer) if real else None
    x, y = _run_multiword(layer, tmp_path, wrong, x)
    assert not np.array_equal(y, layer.apply(x, axis=-1))


def test_multiword_params_refusals():
    """A multiplier wider than int32 (the full-range int32 input layer) is refused with the channel named; unsigned
    types are refused; the split and constants satisfy their definitions."""
    with pytest.raises(ValueError, match="channel 0: multiplier"):
        et.multiword_params(synthetic_layers()["i32_acc64"])
    with pytest.raises(ValueError, match="unsigned"):
        et.multiword_params(synthetic_layers()["u8_half_up_relu"])
    layer = synthetic_layers()["i16_half_away"]
    p = et.multiword_params(layer)
    m = p["m"]
    for c in range(layer.channels):
        k = max(0, m - int(layer.shift[c]))
        assert int(p["A"][c]) == int(layer.multiplier[c]) << k
        assert (int(p["BH"][c]) << m) + int(p["BL"][c]) == int(layer.bias[c]) << k and 0 <= p["BL"][c] < 1 << m
        assert int(p["K"][c]) == min(int(layer.shift[c]) + k - m, 31)


def test_multiword_eval_requires_fit(monkeypatch):
    """The NumPy model enforces the spec's REQUIREs: a bias high word that makes an ADD overflow int32 is an error,
    not a wrapped value (multiword_params never emits one: it checks the words at the range ends)."""
    layer = synthetic_layers()["i16_half_away"]
    x = np.ascontiguousarray(inputs(layer, 10)[0].T)
    good = et.multiword_params(layer)
    assert np.array_equal(et.multiword_eval(layer, x), layer.apply(x, axis=-1))
    monkeypatch.setattr(et, "multiword_params", lambda _: {**good, "BH": np.full_like(good["BH"], (1 << 31) - 1)})
    with pytest.raises(ArithmeticError, match="REQUIRE"):
        et.multiword_eval(layer, x)


@pytest.mark.parametrize("splits", [(30,), (29,), (1, 16)])
def test_tosa_multiword_lemma_proved(splits):
    pytest.importorskip("z3")
    from verify import lemmas

    lemmas.EXPORT_LEMMAS["_tosa_multiword_subset"] = (
        lambda i, w, wrong=False: lemmas.tosa_multiword(i, w, wrong, splits=splits), "QF_BV")
    r = lemmas.prove("_tosa_multiword_subset", "int32", 32, timeout_ms=120000)
    assert r["status"] == "proved", r


@pytest.mark.parametrize("wrong", et.MULTIWORD_WRONG)
def test_tosa_multiword_lemma_refutes_wrong_steps(wrong):
    pytest.importorskip("z3")
    from verify import lemmas

    r = lemmas.prove("tosa_multiword", "int32", 32, wrong=wrong, timeout_ms=120000)
    assert r["status"] == "refuted", r
