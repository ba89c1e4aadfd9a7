"""verify.audit: exact peer errors (enumeration == breakpoint counting), scalar re-implementations of the peers."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fxbn
from verify import audit, exact
from strategies import small_affine_layers


def solve(a, b, rounding, in_dtype):
    try:
        return fxbn.from_affine(a, b, in_dtype=in_dtype, rounding=rounding)
    except fxbn.InfeasibleError:
        return None


def srdhm_scalar(a, b):
    if a == b == -(1 << 31):
        return (1 << 31) - 1
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return int((ab + nudge) / (1 << 31)) if abs(ab + nudge) < (1 << 52) else \
        (abs(ab + nudge) // (1 << 31)) * (1 if ab + nudge >= 0 else -1)


def rdbpot_scalar(x, e):
    mask = (1 << e) - 1
    rem = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if rem > threshold else 0)


def tflite_scalar(layer, c, x):
    a, b = (float(v[c]) for v in layer.affine)
    m, sh = audit.quantize_multiplier(a)
    bias = 0 if a == 0 else int(min(max(round(b / a), -(1 << 31)), (1 << 31) - 1))
    acc = min(max(x + bias, -(1 << 31)), (1 << 31) - 1)
    acc = min(max(acc << max(sh, 0), -(1 << 31)), (1 << 31) - 1)
    y = rdbpot_scalar(srdhm_scalar(acc, m), max(-sh, 0))
    return min(max(y, layer.out_range[0]), layer.out_range[1])


@settings(max_examples=25)
@given(small_affine_layers(max_channels=2), st.sampled_from(audit.SCHEMES))
def test_enumeration_equals_breakpoint_counting(params, scheme):
    layer = solve(*params)
    if layer is None:
        return
    by_enum = audit.audit_layer(layer, [scheme])[0]
    by_bp = audit.audit_layer(layer, [scheme], enumerate_limit=0)[0]
    assert by_enum["per_channel"] == by_bp["per_channel"]
    x = np.arange(-128 if layer.in_dtype.name == "int8" else 0, 128 if layer.in_dtype.name == "int8" else 256)
    xs = np.repeat(x[:, None], layer.channels, axis=1)
    y = audit.peer_apply(scheme, layer, xs, axis=1)
    ref = layer.reference(xs.astype(layer.in_dtype), axis=1)
    err = np.abs(y - ref)
    assert by_enum["max_error"] == err.max() and by_enum["mismatches"] == int((err != 0).sum())
    if by_enum["witness"]:
        w = by_enum["witness"]
        assert abs(w["peer"] - w["reference"]) == by_enum["max_error"]


@settings(max_examples=25)
@given(small_affine_layers(max_channels=2))
def test_tflite_double_matches_scalar_gemmlowp(params):
    layer = solve(*params)
    if layer is None:
        return
    x = np.arange(-128, 128) if layer.in_dtype.name == "int8" else np.arange(256)
    y = audit.peer_apply("tflite_double", layer, np.repeat(x[:, None], layer.channels, axis=1))
    for c in range(layer.channels):
        assert y[:, c].tolist() == [tflite_scalar(layer, c, int(v)) for v in x]


def test_pytorch_fp32_half_even_in_float32():
    layer = fxbn.from_affine([0.5], [0.0], in_dtype="int8", rounding="half_up")
    y = audit.peer_apply("pytorch_fp32", layer, np.array([[1], [3], [5]]))
    assert y[:, 0].tolist() == [0, 2, 2]          # lrintf ties to even, unlike the half_up reference (1, 2, 3)
    row = audit.audit_layer(layer, ["pytorch_fp32"])[0]
    assert row["max_error"] == 1 and row["mismatches"] == 64     # the ties x = 4m + 1 (v = 2m + 1/2)


def test_fxbn_scheme_exact_and_broken_layer_detected():
    layer = fxbn.from_affine([0.0123, -0.37], [3.25, 0.1], in_dtype="int16", rounding="half_even")
    assert audit.audit_layer(layer, ["fxbn"])[0]["max_error"] == 0
    bad = fxbn.FixedPointBN(layer.multiplier + [1, 0], layer.bias, layer.shift, layer.in_range, layer.out_range,
                            layer.rounding, layer.source, "int8", "int16")
    row = audit.audit_layer(bad, ["fxbn"])[0]
    x = np.arange(-(1 << 15), 1 << 15)
    A, B, s = (int(v[0]) for v in (bad.multiplier, bad.bias, bad.shift))
    f = np.clip((A * x + B) >> s, -128, 127)
    y = layer.reference(np.stack([x, np.zeros_like(x)], 1).astype(np.int16), axis=1)[:, 0]
    assert row["per_channel"][0]["mismatches"] == int((f != y).sum()) > 0


def test_fixed_bits_8_is_worse_than_16_on_int32():
    rng = np.random.default_rng(5)
    layer = fxbn.from_affine(rng.lognormal(-7, 1, 4), rng.normal(0, 10, 4), in_dtype="int32", rounding="half_up")
    rows = {r["scheme"]: r for r in audit.audit_layer(layer, ["fxbn", "fixed_bits_8", "fixed_bits_16"])}
    assert rows["fxbn"]["mismatches"] == 0
    assert rows["fixed_bits_8"]["mismatches"] > rows["fixed_bits_16"]["mismatches"]
    w = rows["fixed_bits_8"]["witness"]
    assert exact.reference_output(layer, w["channel"], w["x"]) == w["reference"] != w["peer"]


def test_unknown_scheme_is_a_clear_error():
    layer = fxbn.from_affine([0.5], [0.0], in_dtype="int8", rounding="half_up")
    with pytest.raises(ValueError, match="unknown scheme"):
        audit.peer_apply("gemmlowp", layer, np.zeros((1, 1), np.int8))


@pytest.mark.parametrize("chunk", [7, 1 << 15])
def test_peer_apply_layout_and_blocking(monkeypatch, chunk):
    """peer_apply works on cache-sized blocks with tiled parameters: NCHW, NHWC and every block boundary (a block
    size that does not divide the rows) give what each channel gives on its own."""
    rng = np.random.default_rng(7)
    a = 10.0 ** rng.uniform(-4, -1, 5) * rng.choice([-1, 1], 5)
    b = rng.uniform(-60, 60, 5)
    layer = fxbn.from_affine(a, b, in_dtype="int16", rounding="half_even")
    x = rng.integers(-(1 << 15), 1 << 15, (3, 5, 4, 6)).astype(np.int16)
    monkeypatch.setattr(audit, "_CHUNK", chunk)
    for scheme in audit.SCHEMES:
        params = audit.scheme_parameters(scheme, layer)
        nchw = audit.peer_apply(scheme, layer, x, axis=1, params=params)
        nhwc = audit.peer_apply(scheme, layer, np.moveaxis(x, 1, -1), axis=-1)
        assert np.array_equal(np.moveaxis(nchw, 1, -1), nhwc), scheme
        for c in range(layer.channels):
            col = x[:, c].reshape(-1, 1).astype(np.int64)
            alone = audit._apply_channels(scheme, layer, params, col, [c])[:, 0]
            assert np.array_equal(nchw[:, c].reshape(-1), alone), (scheme, c)
