"""Hypothesis strategies shared by the test modules (append new ones here)."""
import numpy as np
from hypothesis import strategies as st

ROUNDINGS = ("half_even", "half_up", "half_away", "floor")


@st.composite
def slopes(draw):
    """Slopes a across the magnitudes real layers see, both signs, sometimes exactly dyadic (ties possible)."""
    kind = draw(st.sampled_from(["log", "dyadic", "zero"]))
    if kind == "zero":
        return 0.0
    sign = draw(st.sampled_from([-1.0, 1.0]))
    if kind == "dyadic":
        return sign * draw(st.integers(1, 64)) / 2.0 ** draw(st.integers(0, 12))
    return sign * 10.0 ** draw(st.floats(-6, 2))


@st.composite
def offsets(draw):
    kind = draw(st.sampled_from(["float", "dyadic"]))
    if kind == "dyadic":
        return draw(st.integers(-512, 512)) / 4.0
    return draw(st.floats(-300, 300, allow_nan=False))


@st.composite
def affine_layers(draw, max_channels=4):
    """(a, b, rounding) with per-channel float64 arrays."""
    c = draw(st.integers(1, max_channels))
    a = np.array([draw(slopes()) for _ in range(c)])
    b = np.array([draw(offsets()) for _ in range(c)])
    return a, b, draw(st.sampled_from(ROUNDINGS))


@st.composite
def batchnorm_layers(draw, max_channels=3):
    """Keyword arguments for fxbn.from_batchnorm (float32-valued, like real models)."""
    c = draw(st.integers(1, max_channels))
    f32 = lambda lo, hi: np.float32(draw(st.floats(float(np.float32(lo)), float(np.float32(hi)), width=32)))  # noqa: E731
    gamma = np.array([f32(-3, 3) for _ in range(c)], np.float64)
    beta = np.array([f32(-2, 2) for _ in range(c)], np.float64)
    mean = np.array([f32(-2, 2) for _ in range(c)], np.float64)
    var = np.array([f32(1e-4, 5) for _ in range(c)], np.float64)
    return dict(gamma=gamma, beta=beta, mean=mean, var=var, eps=draw(st.sampled_from([1e-5, 1e-3, 0.0])),
                in_scale=float(f32(1e-3, 0.2)), out_scale=float(f32(1e-3, 0.2)),
                in_zero_point=draw(st.integers(-5, 5)), out_zero_point=draw(st.integers(-10, 10)),
                rounding=draw(st.sampled_from(ROUNDINGS)))


@st.composite
def conv_bn_models(draw, max_out=4, max_terms=40):
    """Quantized conv weights (out, terms) with int8 values and an int8 activation quantization with a range."""
    from fxbn.importers import ActivationQuant

    out = draw(st.integers(1, max_out))
    terms = draw(st.integers(1, max_terms))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    w_q = np.random.default_rng(seed).integers(-127, 128, size=(out, terms)).astype(np.int8)
    zero_point = draw(st.integers(-128, 127))
    qmin = draw(st.integers(-128, 127))
    qmax = draw(st.integers(qmin, 127))
    act = ActivationQuant(draw(st.floats(1e-4, 1.0)), zero_point, "int8", qmin, qmax)
    return {"w_q": w_q, "act": act, "seed": seed}


@st.composite
def small_affine_layers(draw, max_channels=3):
    """(a, b, rounding, in_dtype) for small int8/uint8 exhaustive checks of verify/ (dyadic slopes included)."""
    a, b, rounding = draw(affine_layers(max_channels))
    return a, b, rounding, draw(st.sampled_from(["int8", "uint8"]))


@st.composite
def breakages(draw):
    """How to break a solved layer: ("A", +-1), ("B", +-1) or ("s", +-1) on one channel."""
    return draw(st.sampled_from(["A", "B", "s"])), draw(st.sampled_from([-1, 1]))
