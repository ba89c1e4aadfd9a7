"""The built-in seeded layer set of ``python -m verify --demo``: affine and batchnorm layers over int8, int16 and
int32 inputs, every rounding, all solved by fxbn (z3-friendly sizes: the whole set verifies in seconds)."""
import numpy as np

import fxbn

SEED = 20240531


def _f32(a):
    return np.asarray(a, np.float32).astype(np.float64)


def demo_layers(seed=SEED):
    """[(name, FixedPointBN)] built deterministically from `seed`."""
    rng = np.random.default_rng(seed)
    layers = []
    for in_dtype, rounding, channels in (("int8", "half_even", 8), ("int8", "half_up", 4), ("int16", "floor", 3),
                                         ("int32", "half_away", 2)):
        a = _f32(rng.lognormal(-3.5 if in_dtype == "int8" else -6, 0.8, channels) * rng.choice([-1, 1], channels))
        b = _f32(rng.normal(0, 20, channels))
        layers.append((f"affine_{in_dtype}_{rounding}",
                       fxbn.from_affine(a, b, in_dtype=in_dtype, rounding=rounding)))
    for in_dtype, rounding, channels, in_scale in (("int16", "half_even", 3, 2e-4), ("int16", "half_up", 2, 3e-4)):
        layers.append((f"batchnorm_{in_dtype}_{rounding}", fxbn.from_batchnorm(
            _f32(rng.uniform(-2, 2, channels)), _f32(rng.uniform(-1, 1, channels)), _f32(rng.uniform(-1, 1, channels)),
            _f32(rng.uniform(0.2, 3, channels)), 1e-5, in_scale=in_scale, out_scale=0.05, in_zero_point=3,
            out_zero_point=-2, in_dtype=in_dtype, rounding=rounding)))
    return layers
