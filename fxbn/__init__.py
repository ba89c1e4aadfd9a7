"""fxbn: exact, minimal-bit fixed-point Batch Normalization for quantized neural networks.

Per channel, y = clamp((multiplier*x + bias) >> shift, qmin, qmax) equals the exact real-number reference
clamp(R(a*x + b), qmin, qmax) for EVERY integer x of the declared input range, with the smallest shift that allows it.

>>> import numpy as np, fxbn
>>> layer = fxbn.from_affine([0.02, -0.013], [1.5, 0.25], in_dtype="int16")
>>> x = np.array([[1000, -2000], [30000, 123]], dtype=np.int16)      # (N, C)
>>> layer.apply(x, axis=1).tolist()
[[22, 26], [127, -1]]
>>> bool((layer.apply(x, axis=1) == layer.reference(x, axis=1)).all())
True
"""
from fxbn.api import DTYPE_RANGES, FixedPointBN, from_affine, from_batchnorm, load
from fxbn.errors import InfeasibleError
from fxbn.reference import ROUNDINGS

__version__ = "0.1.0"
__all__ = ["FixedPointBN", "from_affine", "from_batchnorm", "load", "InfeasibleError", "ROUNDINGS",
           "DTYPE_RANGES", "__version__"]
