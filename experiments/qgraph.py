"""The integer network now lives in the library as :mod:`fxbn.network`; this module keeps the experiments' old
import path and holds the approximate (TFLite-style) residual add the experiments compare against."""
import numpy as np

from fxbn.network import (FLOAT32_EXACT, FLOAT64_EXACT, Graph, Node, conv_int, conv_nhwc, fake_quantize,  # noqa: F401
                          float_activation, maxpool_nhwc, pad_nhwc, reference_fast, same_padding, shortcut_a)


def add_requant(q1, a1, q2, a2, out, relu, shift=30):
    """Approximate integer residual add: clamp(round_half_up((M1*(q1-z1) + M2*(q2-z2)) / 2^shift) + z_out),
    M_i = round(s_i/s_out * 2^shift) -- a fixed 2^30 multiplier as TFLite-style kernels do. Not exact: the peer
    fxbn.network's FixedPointAdd is measured against."""
    m1 = int(round(a1.scale / out.scale * 2 ** shift))
    m2 = int(round(a2.scale / out.scale * 2 ** shift))
    acc = m1 * (q1.astype(np.int64) - a1.zero_point) + m2 * (q2.astype(np.int64) - a2.zero_point)
    y = ((acc + (1 << (shift - 1))) >> shift) + out.zero_point
    lo = max(out.qmin, out.zero_point) if relu else out.qmin
    return np.clip(y, lo, out.qmax).astype(out.dtype)
