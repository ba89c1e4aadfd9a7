"""FixedPointBN and its constructors: exact, minimal-shift integer Batch Normalization.

>>> import numpy as np, fxbn
>>> layer = fxbn.from_affine([0.0123, -0.5], [3.25, 0.1], in_dtype="int8", rounding="half_up")
>>> layer.shift.tolist()
[13, 1]
>>> x = np.arange(-128, 128, dtype=np.int8).reshape(1, 1, 256).repeat(2, axis=1)
>>> bool((layer.apply(x) == layer.reference(x)).all())
True
"""
from fractions import Fraction
from collections.abc import Mapping
from types import MappingProxyType

import numpy as np

from fxbn import _core
from fxbn import io as _io
from fxbn import reference as ref
from fxbn.errors import InfeasibleError

__all__ = ["FixedPointBN", "from_affine", "from_batchnorm", "load", "InfeasibleError", "DTYPE_RANGES"]

DTYPE_RANGES = {
    "int8": (-128, 127),
    "uint8": (0, 255),
    "int16": (-(2 ** 15), 2 ** 15 - 1),
    "uint16": (0, 2 ** 16 - 1),
    "int32": (-(2 ** 31), 2 ** 31 - 1),
}
IN_DTYPES = ("int8", "uint8", "int16", "int32")
_IN_DTYPE_SET = frozenset(np.dtype(d) for d in IN_DTYPES)
OUT_DTYPES = ("int8", "uint8", "int16", "uint16")
_AFFINE_KEYS = ("a", "b")
_BN_FLOAT_KEYS = ("gamma", "beta", "mean", "var", "eps", "in_scale", "out_scale")
_BN_INT_KEYS = ("in_zero_point", "out_zero_point")


def _dtype_name(dtype, what, allowed):
    try:
        name = np.dtype(dtype).name
    except TypeError:
        raise ValueError(f"{what}: unknown dtype {dtype!r}; expected one of {', '.join(allowed)}") from None
    if name not in allowed:
        raise ValueError(f"{what}: dtype {name} is not supported; expected one of {', '.join(allowed)}")
    return name


INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1
ZERO_POINT_RANGE = (-(2 ** 31), 2 ** 31 - 1)   # zero points: exact int64 arithmetic in the reference needs a bound


def _as_array(name, value):
    try:
        arr = np.asarray(value)
    except (OverflowError, ValueError, TypeError) as e:
        raise ValueError(f"{name}: not a numeric scalar or 1-D array ({e})") from None
    if arr.ndim > 1:
        raise ValueError(f"{name} must be a scalar or a 1-D per-channel array, got shape {arr.shape}")
    return arr


def _where(name, arr, i):
    return f"{name}[{i}]" if arr.ndim else name


def _channel_floats(name, value):
    """float64 array holding exactly the given values; ValueError for anything float64 cannot hold exactly."""
    arr = _as_array(name, value)
    if arr.dtype.kind == "O":
        items = arr.reshape(-1).tolist()
        for i, v in enumerate(items):
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise ValueError(f"{_where(name, arr, i)} is {v!r}: parameters must be real numbers")
        try:
            out = np.array([float(v) for v in items], np.float64).reshape(arr.shape)
        except OverflowError:
            raise ValueError(f"{name}: a value is too large for float64") from None
        wide = items
    elif arr.dtype.kind in "fiu":
        with np.errstate(over="ignore", invalid="ignore"):
            out = arr.astype(np.float64)
        wide = None
    else:
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    flat = out.reshape(-1)
    bad = np.flatnonzero(~np.isfinite(flat))
    if bad.size:
        raise ValueError(f"{_where(name, arr, bad[0])} is {arr.reshape(-1)[bad[0]]}: parameters must be finite")
    # the exact value must survive the conversion: int64 beyond 2^53, longdouble, Python ints
    if arr.dtype.kind in "iu" or wide is not None:
        src = wide if wide is not None else arr.reshape(-1).tolist()
        for i, (v, f) in enumerate(zip(src, flat.tolist())):
            if Fraction(v) != Fraction(f):
                raise ValueError(f"{_where(name, arr, i)} = {v!r} is not exactly representable as float64")
    elif arr.dtype.itemsize > 8:  # longdouble
        back = out.astype(arr.dtype)
        bad = np.flatnonzero(back.reshape(-1) != arr.reshape(-1))
        if bad.size:
            raise ValueError(f"{_where(name, arr, bad[0])} = {arr.reshape(-1)[bad[0]]!r} ({arr.dtype}) is not "
                             "exactly representable as float64; round it explicitly if that is intended")
    return out


def _channel_ints(name, value, lo=INT64_MIN, hi=INT64_MAX):
    """int64 array of the given integers, each within [lo, hi]; ValueError naming the first one that is not."""
    arr = _as_array(name, value)
    if arr.dtype.kind not in "fiubO":
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    items = arr.reshape(-1).tolist()
    out = []
    for i, v in enumerate(items):
        if isinstance(v, (float, np.floating)):
            if not np.isfinite(v) or v != int(v):
                raise ValueError(f"{_where(name, arr, i)} is {v!r}: expected an integer")
            v = int(v)
        elif isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{_where(name, arr, i)} is {v!r}: expected an integer")
        v = int(v)
        if not lo <= v <= hi:
            raise ValueError(f"{_where(name, arr, i)} = {v} is outside the accepted range [{lo}, {hi}]")
        out.append(int(v))
    return np.array(out, np.int64).reshape(arr.shape)


def _broadcast(named):
    """Broadcast 0-D / 1-D arrays to one channel count; name the mismatching parameter."""
    sizes = {k: v.shape[0] for k, v in named.items() if v.ndim == 1}
    counts = set(sizes.values())
    if len(counts) > 1:
        first = next(iter(sizes))
        other = next(k for k in sizes if sizes[k] != sizes[first])
        raise ValueError(f"mismatched lengths: {first} has {sizes[first]} channels, {other} has {sizes[other]}")
    channels = counts.pop() if counts else 1
    if channels == 0:
        raise ValueError("no channels: parameter arrays are empty")
    return channels, {k: np.ascontiguousarray(np.broadcast_to(v, (channels,))) for k, v in named.items()}


def _in_range(in_range, in_dtype, channels):
    dlo, dhi = DTYPE_RANGES[in_dtype]
    if in_range is None:
        return np.full(channels, dlo, np.int64), np.full(channels, dhi, np.int64)
    if isinstance(in_range, tuple) and len(in_range) == 2:
        lo, hi = (_channel_ints("in_range low", in_range[0]), _channel_ints("in_range high", in_range[1]))
    else:
        arr = _as_2d_range(in_range)
        lo, hi = arr[..., 0], arr[..., 1]
    if lo.ndim == 1 and lo.shape[0] != channels or hi.ndim == 1 and hi.shape[0] != channels:
        raise ValueError(f"in_range has {max(lo.size, hi.size)} channels, the parameters have {channels}")
    lo = np.ascontiguousarray(np.broadcast_to(lo, (channels,)), dtype=np.int64)
    hi = np.ascontiguousarray(np.broadcast_to(hi, (channels,)), dtype=np.int64)
    _check_in_range(lo, hi, in_dtype)
    return lo, hi


def _check_in_range(lo, hi, in_dtype):
    dlo, dhi = DTYPE_RANGES[in_dtype]
    bad = np.flatnonzero((lo > hi) | (lo < dlo) | (hi > dhi))
    if bad.size:
        c = int(bad[0])
        if lo[c] > hi[c]:
            raise ValueError(f"in_range of channel {c} is empty: [{lo[c]}, {hi[c]}]")
        raise ValueError(f"in_range of channel {c}, [{lo[c]}, {hi[c]}], exceeds in_dtype {in_dtype} [{dlo}, {dhi}]")


def _as_2d_range(value):
    try:
        arr = np.asarray(value)
    except (OverflowError, ValueError, TypeError) as e:
        raise ValueError(f"in_range must be (lo, hi) or a (channels, 2) array of integers ({e})") from None
    if arr.shape[-1:] != (2,) or arr.ndim > 2:
        raise ValueError(f"in_range must be (lo, hi) or a (channels, 2) array, got shape {arr.shape}")
    return _channel_ints("in_range", arr.reshape(-1)).reshape(arr.shape)


def _out_range(out_dtype, out_range, relu, zero_point, out_scale, rounding):
    qmin, qmax = DTYPE_RANGES[out_dtype]
    if out_range is not None:
        if isinstance(out_range, (str, bytes)) or np.ndim(out_range) != 1 or len(out_range) != 2:
            raise ValueError(f"out_range must be a pair (qmin, qmax) of integers, got {out_range!r}")
        lo, hi = _channel_ints("out_range", list(out_range)).tolist()
        if lo < qmin or hi > qmax or lo > hi:
            raise ValueError(f"out_range [{lo}, {hi}] must be a non-empty range within {out_dtype} [{qmin}, {qmax}]")
        qmin, qmax = lo, hi
    if isinstance(relu, (bool, np.bool_)):
        relu = bool(relu)
    elif not (isinstance(relu, str) and relu in ("relu", "relu6")):
        raise ValueError(f"relu must be False, True, 'relu' or 'relu6', got {relu!r}")
    if relu:
        zmin = set(int(z) for z in np.atleast_1d(zero_point))
        if len(zmin) != 1:
            raise ValueError("relu needs one output zero point shared by all channels")
        z = zmin.pop()
        qmin = max(qmin, z)
        if relu == "relu6":
            if out_scale is None:
                raise ValueError("relu='relu6' needs the output scale, which from_affine does not have (a and b are "
                                 "in output units): pass out_range=(zero_point, R(zero_point + 6/out_scale)) "
                                 "instead")
            scales = set(float(s) for s in np.atleast_1d(out_scale))
            if len(scales) != 1:
                raise ValueError("relu6 needs one output scale shared by all channels")
            qmax = min(qmax, ref.round_exact(z + Fraction(6) / Fraction(scales.pop()), rounding))
        if qmin > qmax:
            raise ValueError(f"relu leaves an empty output range [{qmin}, {qmax}]")
    return int(qmin), int(qmax)


MAX_THREADS = 1024


def _require_layer(layer, what):
    """Exporters of one FixedPointBN (a FixedPointRescale is one) name what they were given instead."""
    if not isinstance(layer, FixedPointBN):
        raise ValueError(f"{what} takes a FixedPointBN (or FixedPointRescale), got {type(layer).__name__}")


def _positive_rows(rows):
    if isinstance(rows, (bool, np.bool_)) or not isinstance(rows, (int, np.integer)) or rows < 1:
        raise ValueError(f"rows must be a positive integer, got {rows!r}")
    return int(rows)


def _threads(threads):
    """None or 0 -> 0 (all the kernel may use); otherwise an integer in [1, MAX_THREADS]."""
    if threads is None:
        return 0
    if isinstance(threads, (bool, np.bool_)) or not isinstance(threads, (int, np.integer)) \
            or not 0 <= threads <= MAX_THREADS:
        raise ValueError(f"threads must be None (all) or an integer in [0, {MAX_THREADS}], got {threads!r}")
    return int(threads)


def _check_source(source, n):
    """The source parameters, validated like the constructors' arguments, as a read-only mapping of arrays."""
    if not isinstance(source, Mapping):
        raise ValueError(f"source must be a mapping with a 'form', got {type(source).__name__}")
    form = source.get("form")
    keys = {"affine": _AFFINE_KEYS, "batchnorm": _BN_FLOAT_KEYS + _BN_INT_KEYS}.get(form) \
        if isinstance(form, str) else None
    if keys is None:
        raise ValueError(f"source form must be 'affine' or 'batchnorm', got {form!r}")
    unknown = sorted(str(k) for k in set(source) - set(keys) - {"form"})
    if unknown:
        raise ValueError(f"source ({form}) has unknown field(s) {', '.join(unknown)}")
    out = {"form": form}
    for k in keys:
        if k not in source:
            raise ValueError(f"source ({form}) lacks {k}")
        arr = _channel_ints(f"source.{k}", source[k], *ZERO_POINT_RANGE) if k in _BN_INT_KEYS else \
            _channel_floats(f"source.{k}", source[k])
        if arr.shape != (n,):
            raise ValueError(f"source.{k} has shape {arr.shape}, expected ({n},)")
        arr.flags.writeable = False
        out[k] = arr
    if form == "batchnorm":
        _check_batchnorm_values(out, "source.")
    return MappingProxyType(out)


def _check_batchnorm_values(p, prefix=""):
    """Positive scales and var + eps > 0 (exactly), per channel."""
    for name in ("in_scale", "out_scale"):
        bad = np.flatnonzero(p[name] <= 0)
        if bad.size:
            raise ValueError(f"{prefix}{name} of channel {bad[0]} is {p[name][bad[0]]}: scales must be positive")
    for c in range(p["var"].shape[0]):
        if Fraction(float(p["var"][c])) + Fraction(float(p["eps"][c])) <= 0:
            raise ValueError(f"var + eps of channel {c} is not positive (var={p['var'][c]!r}, eps={p['eps'][c]!r})")


def _record_ints(name, value, pairs=False):
    """A saved list of integers (of [lo, hi] pairs with pairs=True), typed exactly as JSON integers."""
    if not isinstance(value, list) or not all(
            isinstance(v, list) and len(v) == 2 if pairs else True for v in value):
        raise ValueError(f"{name} must be a list{' of [lo, hi] pairs' if pairs else ''}, got {_short(value)}")
    flat = [e for v in value for e in v] if pairs else value
    for i, v in enumerate(flat):
        if type(v) is not int:
            where = f"{name}[{i // 2}][{i % 2}]" if pairs else f"{name}[{i}]"
            raise ValueError(f"{where} is {_short(v)}: expected an integer")
    if pairs:
        return np.array(value, dtype=object).reshape(len(value), 2) if value else np.zeros((0, 2), np.int64)
    return value


def _record_floats(name, value):
    if not isinstance(value, list):
        raise ValueError(f"{name} must be a list, got {_short(value)}")
    for i, v in enumerate(value):
        if type(v) not in (int, float):
            raise ValueError(f"{name}[{i}] is {_short(v)}: expected a number")
    return value


def _record_options(opts):
    if opts is None:
        return {}
    if not isinstance(opts, dict):
        raise ValueError(f"solve_options must be an object, got {_short(opts)}")
    unknown = sorted(str(k) for k in set(opts) - {"acc_bits", "max_multiplier_bits", "common_shift"})
    if unknown:
        raise ValueError(f"solve_options has unknown field(s) {', '.join(unknown)}")
    if "acc_bits" in opts and not (type(opts["acc_bits"]) is int and 2 <= opts["acc_bits"] <= 64):
        raise ValueError(f"solve_options.acc_bits must be an integer in [2, 64], got {_short(opts['acc_bits'])}")
    mb = opts.get("max_multiplier_bits")
    if mb is not None and not (type(mb) is int and 1 <= mb <= 64):
        raise ValueError(f"solve_options.max_multiplier_bits must be null or an integer in [1, 64], got {_short(mb)}")
    if "common_shift" in opts and type(opts["common_shift"]) is not bool:
        raise ValueError(f"solve_options.common_shift must be true or false, got {_short(opts['common_shift'])}")
    return dict(opts)


def _short(v):
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def load(path, *, check=True):
    """Read a layer written by FixedPointBN.save (.json or .npz).

    Every field is validated (types, ranges, lengths), and with ``check=True`` (the default) the layer is re-checked
    exact against its source parameters (breakpoint certificate, milliseconds): a tampered or corrupted file raises
    ValueError instead of loading.  ``check=False`` skips only the exactness check (verify uses it, to report a
    refutation with a counterexample).

    >>> import fxbn, tempfile, os
    >>> layer = fxbn.from_affine([0.3, -0.2], [1.0, 2.5], in_dtype="int8")
    >>> path = os.path.join(tempfile.mkdtemp(), "bn.json")
    >>> layer.save(path)
    >>> fxbn.load(path).multiplier.tolist() == layer.multiplier.tolist()
    True
    """
    record = _io.read_record(path)
    try:
        if isinstance(record, dict) and record.get("format") == "fxbn.FixedPointAdd":
            from fxbn.ops import FixedPointAdd

            layer = FixedPointAdd.from_dict(record)
            if check and layer.check_exhaustive() is not None:
                raise ValueError(f"the add parameters differ from the exact reference at (x1, x2) = "
                                 f"{tuple(layer.check_exhaustive())}")
            return layer
        if isinstance(record, dict) and "op" in record:
            from fxbn.ops import FixedPointRescale

            layer = FixedPointRescale.from_dict(record)
        else:
            layer = FixedPointBN.from_dict(record)
        if check:
            layer.check_exact()
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return layer


def _limits(acc_bits, max_multiplier_bits):
    if not isinstance(acc_bits, (int, np.integer)) or not 2 <= acc_bits <= 64:
        raise ValueError(f"acc_bits must be an integer in [2, 64] (32 and 64 are the kernel's), got {acc_bits!r}")
    if max_multiplier_bits is None:
        max_multiplier_bits = 64
    if not isinstance(max_multiplier_bits, (int, np.integer)) or not 1 <= max_multiplier_bits <= 64:
        raise ValueError(f"max_multiplier_bits must be None or an integer in [1, 64], got {max_multiplier_bits!r}")
    return int(acc_bits), int(max_multiplier_bits)


def _options_record(acc_bits, max_multiplier_bits, common_shift):
    return {"acc_bits": int(acc_bits), "max_multiplier_bits": None if max_multiplier_bits >= 64 else
            int(max_multiplier_bits), "common_shift": bool(common_shift)}


def from_affine(a, b, *, in_range=None, in_dtype="int32", out_dtype="int8", rounding="half_even", relu=False,
                out_range=None, common_shift=False, acc_bits=64, max_multiplier_bits=None):
    """Exact fixed-point parameters for y = clamp(R(a*x + b), qmin, qmax), per channel.

    Parameters
    ----------
    a, b : float or array_like of float
        Per-channel slope and offset, taken as the exact rationals the floats denote.
    in_range : (lo, hi), (channels, 2) array, or None
        Integer inputs for which exactness is guaranteed (default: the whole in_dtype range).
    in_dtype : {"int8", "uint8", "int16", "int32"}
    out_dtype : {"int8", "uint8", "int16", "uint16"}
        Output type; [qmin, qmax] is its range unless out_range or relu narrow it.
    rounding : {"half_even", "half_up", "half_away", "floor"}
    relu : bool
        Fold a ReLU into the clamp (qmin >= 0; the output zero point is taken to be folded into b).
    out_range : (qmin, qmax), optional
    common_shift : bool
        One shift for all channels (the largest minimal shift, or more if the width limits need it).
    acc_bits : int
        Signed accumulator width every A*x, A*x + B and B must fit (64 or 32 for the kernel's paths).
    max_multiplier_bits : int, optional
        Signed width limit for A.

    Returns
    -------
    FixedPointBN

    Raises
    ------
    ValueError
        Bad parameters, naming the parameter and channel.
    InfeasibleError
        No exact parameters exist (ties under half_even, or the width limits), naming the channel.

    Examples
    --------
    >>> import fxbn
    >>> layer = fxbn.from_affine(0.25, -3.0, in_dtype="int8", rounding="floor")
    >>> (int(layer.multiplier[0]), int(layer.bias[0]), int(layer.shift[0]))
    (1, -12, 2)
    """
    ref.check_rounding(rounding)
    in_dtype = _dtype_name(in_dtype, "in_dtype", IN_DTYPES)
    out_dtype = _dtype_name(out_dtype, "out_dtype", OUT_DTYPES)
    channels, p = _broadcast({"a": _channel_floats("a", a), "b": _channel_floats("b", b)})
    lo, hi = _in_range(in_range, in_dtype, channels)
    qmin, qmax = _out_range(out_dtype, out_range, relu, 0, None, rounding)
    acc_bits, max_multiplier_bits = _limits(acc_bits, max_multiplier_bits)
    A, B, s, mb, ab = _core.solve_affine(p["a"], p["b"], lo, hi, qmin, qmax, rounding, acc_bits,
                                         max_multiplier_bits, bool(common_shift))
    source = {"form": "affine", "a": p["a"], "b": p["b"]}
    return FixedPointBN(A, B, s, np.stack([lo, hi], axis=1), (qmin, qmax), rounding, source, out_dtype, in_dtype,
                        multiplier_bits=mb, accumulator_bits=ab,
                        solve_options=_options_record(acc_bits, max_multiplier_bits, common_shift))


def from_batchnorm(gamma, beta, mean, var, eps, *, in_scale, out_scale, in_zero_point=0, out_zero_point=0,
                   in_range=None, in_dtype="int32", out_dtype="int8", rounding="half_even", relu=False,
                   out_range=None, common_shift=False, acc_bits=64, max_multiplier_bits=None):
    """Exact fixed-point parameters for quantized Batch Normalization, per channel.

    The reference is y = clamp(R(v), qmin, qmax) with, in exact real arithmetic (the square root included),
    v = (gamma*(in_scale*(x - in_zero_point) - mean)/sqrt(var + eps) + beta)/out_scale + out_zero_point.

    Parameters
    ----------
    gamma, beta, mean, var : array_like
        Per-channel BN parameters (running statistics), taken as exact rationals.
    eps : float or array_like
    in_scale, out_scale : float or array_like
        Quantization scales (> 0); in_scale may be per channel (e.g. activation scale times per-channel weight
        scale when x is a convolution accumulator).
    in_zero_point, out_zero_point : int or array_like of int
    relu : bool or "relu6"
        Fold ReLU (qmin = out_zero_point) or ReLU6 (also qmax = R(out_zero_point + 6/out_scale)) into the clamp.
    Other keywords are as in :func:`from_affine`.

    Examples
    --------
    >>> import fxbn
    >>> bn = fxbn.from_batchnorm([1.5], [0.2], [0.1], [4.0], 1e-5, in_scale=0.05, out_scale=0.1,
    ...                          in_dtype="int8")
    >>> bn.channels, int(bn.shift[0]) >= 0
    (1, True)
    """
    ref.check_rounding(rounding)
    in_dtype = _dtype_name(in_dtype, "in_dtype", IN_DTYPES)
    out_dtype = _dtype_name(out_dtype, "out_dtype", OUT_DTYPES)
    named = {k: _channel_floats(k, v) for k, v in zip(_BN_FLOAT_KEYS, (gamma, beta, mean, var, eps, in_scale,
                                                                        out_scale))}
    named.update({k: _channel_ints(k, v, *ZERO_POINT_RANGE)
                  for k, v in zip(_BN_INT_KEYS, (in_zero_point, out_zero_point))})
    channels, p = _broadcast(named)
    _check_batchnorm_values(p)
    lo, hi = _in_range(in_range, in_dtype, channels)
    qmin, qmax = _out_range(out_dtype, out_range, relu, p["out_zero_point"], p["out_scale"], rounding)
    acc_bits, max_multiplier_bits = _limits(acc_bits, max_multiplier_bits)
    A, B, s, mb, ab = _core.solve_batchnorm(*(p[k] for k in _BN_FLOAT_KEYS + _BN_INT_KEYS), lo, hi, qmin, qmax,
                                            rounding, acc_bits, max_multiplier_bits, bool(common_shift))
    source = dict(form="batchnorm", **p)
    return FixedPointBN(A, B, s, np.stack([lo, hi], axis=1), (qmin, qmax), rounding, source, out_dtype, in_dtype,
                        multiplier_bits=mb, accumulator_bits=ab,
                        solve_options=_options_record(acc_bits, max_multiplier_bits, common_shift))


class FixedPointBN:
    """Per-channel y = clamp((multiplier*x + bias) >> shift, qmin, qmax), exact for every x in in_range.

    Immutable: every attribute is a read-only property (arrays are read-only); use :meth:`replace` for a modified
    copy.  The constructor validates every field but not exactness (see :meth:`check_exact` and :func:`load`).

    Attributes
    ----------
    multiplier, bias, shift : ndarray of int64
    in_range : ndarray of int64, shape (channels, 2)
    out_range : (int, int)
    rounding : str
    multiplier_bits, accumulator_bits : ndarray of int64
        Signed widths of the multiplier and of the largest intermediate (A*x, A*x + B, B) over in_range.
    source : dict
        The parameters the layer was solved for ("form": "affine" or "batchnorm", per-channel arrays).
    solve_options : dict
        The limits it was solved under: acc_bits, max_multiplier_bits (None: unlimited), common_shift; empty
        for layers built by hand.
    """

    def __init__(self, multiplier, bias, shift, in_range, out_range, rounding, source, out_dtype="int8",
                 in_dtype="int32", multiplier_bits=None, accumulator_bits=None, solve_options=None):
        # Every field is validated and frozen (read-only arrays, properties without setters): what apply, save and
        # verify read is one and the same.  multiplier_bits / accumulator_bits are always recomputed from the
        # integers (the arguments are accepted for compatibility and must agree).
        ref.check_rounding(rounding)
        in_dtype = _dtype_name(in_dtype, "in_dtype", IN_DTYPES)
        out_dtype = _dtype_name(out_dtype, "out_dtype", OUT_DTYPES + ("int32",))   # the kernel also stores int32
        A = _channel_ints("multiplier", multiplier)
        n = A.size
        if A.ndim != 1 or n == 0:
            raise ValueError(f"multiplier must be a non-empty 1-D per-channel array, got shape {A.shape}")
        B = _channel_ints("bias", bias)
        S = _channel_ints("shift", shift, 0, 62)
        for name, arr in (("bias", B), ("shift", S)):
            if arr.shape != (n,):
                raise ValueError(f"{name} has shape {arr.shape}, expected ({n},)")
        rng = np.asarray(in_range) if not isinstance(in_range, np.ndarray) else in_range
        if rng.shape != (n, 2) and rng.shape != (2 * n,):
            raise ValueError(f"in_range has shape {rng.shape}, expected ({n}, 2)")
        rng = _channel_ints("in_range", rng.reshape(-1)).reshape(n, 2)
        _check_in_range(rng[:, 0], rng[:, 1], in_dtype)
        if isinstance(out_range, (str, bytes)) or np.ndim(out_range) != 1 or len(out_range) != 2:
            raise ValueError(f"out_range must be a pair (qmin, qmax) of integers, got {out_range!r}")
        qmin, qmax = _channel_ints("out_range", list(out_range)).tolist()
        dlo, dhi = DTYPE_RANGES[out_dtype]
        if not dlo <= qmin <= qmax <= dhi:
            raise ValueError(f"out_range [{qmin}, {qmax}] must be a non-empty range within out_dtype {out_dtype} "
                             f"[{dlo}, {dhi}]")
        self._source = _check_source(source, n)
        self._solve_options = dict(solve_options or {})
        self._multiplier, self._bias, self._shift, self._in_range = A, B, S, rng
        self._out_range = (int(qmin), int(qmax))
        self._rounding = str(rounding)
        self._in_dtype, self._out_dtype = np.dtype(in_dtype), np.dtype(out_dtype)
        bits_a, bits_acc = self._widths()
        if np.any(bits_acc > 64):
            c = int(np.flatnonzero(bits_acc > 64)[0])
            raise ValueError(f"channel {c}: multiplier*x + bias exceeds 64 bits over in_range")
        for name, given, computed in (("multiplier_bits", multiplier_bits, bits_a),
                                      ("accumulator_bits", accumulator_bits, bits_acc)):
            if given is not None and not np.array_equal(np.asarray(given).reshape(-1), computed):
                raise ValueError(f"{name} does not match the integer parameters")
        self._multiplier_bits, self._accumulator_bits = bits_a, bits_acc
        self._lo = np.ascontiguousarray(rng[:, 0])
        self._hi = np.ascontiguousarray(rng[:, 1])
        self._shift32 = S.astype(np.int32)
        for arr in (A, B, S, rng, self._lo, self._hi, self._shift32, bits_a, bits_acc):
            arr.flags.writeable = False
        self._acc32 = bool(np.all(bits_acc <= 32))
        self._kernel = None  # built on first use (_run_kernel)
        self._breakpoints = {}
        self._covers_cache = {}
        self._shape_cache = {}  # apply: (x.shape, id(x.dtype), axis) -> (x.dtype, axis, outer, inner), validated

    def _widths(self):
        def bits(v):
            return (v if v >= 0 else ~v).bit_length() + 1

        wa, wacc = [], []
        for A, B, (lo, hi) in zip(self._multiplier.tolist(), self._bias.tolist(), self._in_range.tolist()):
            wa.append(bits(A))
            wacc.append(max(bits(A * lo), bits(A * hi), bits(A * lo + B), bits(A * hi + B), bits(B)))
        return np.array(wa, np.int64), np.array(wacc, np.int64)

    multiplier = property(lambda self: self._multiplier, doc="int64[C] (read-only)")
    bias = property(lambda self: self._bias, doc="int64[C] (read-only)")
    shift = property(lambda self: self._shift, doc="int64[C] (read-only)")
    in_range = property(lambda self: self._in_range, doc="int64[C, 2] (read-only)")
    out_range = property(lambda self: self._out_range, doc="(qmin, qmax)")
    rounding = property(lambda self: self._rounding)
    in_dtype = property(lambda self: self._in_dtype)
    out_dtype = property(lambda self: self._out_dtype)
    multiplier_bits = property(lambda self: self._multiplier_bits)
    accumulator_bits = property(lambda self: self._accumulator_bits)
    source = property(lambda self: self._source, doc="read-only mapping of the source parameters")
    solve_options = property(lambda self: dict(self._solve_options))

    def replace(self, **changes):
        """A new layer with some fields replaced (and everything validated again), e.g. to build a wrong variant.

        >>> import fxbn
        >>> layer = fxbn.from_affine([0.5], [0.0], in_dtype="int8", rounding="floor")
        >>> layer.replace(bias=layer.bias + 1).bias.tolist()
        [1]
        """
        fields = dict(multiplier=self._multiplier, bias=self._bias, shift=self._shift, in_range=self._in_range,
                      out_range=self._out_range, rounding=self._rounding, source=dict(self._source),
                      out_dtype=self._out_dtype.name, in_dtype=self._in_dtype.name,
                      solve_options=self._solve_options)
        unknown = set(changes) - set(fields)
        if unknown:
            raise TypeError(f"replace() got unknown field(s) {', '.join(sorted(unknown))}")
        fields.update(changes)
        return FixedPointBN(**fields)

    def check_exact(self):
        """Raise ValueError unless the integer parameters equal the exact reference on every input of in_range.

        The breakpoint certificate (C++ core, exact integer arithmetic): milliseconds per layer.  load() runs it.
        """
        qmin, qmax = self._out_range
        step = max(1, (1 << 22) // max(1, qmax - qmin))   # channels per pass: bounded memory (uint16 outputs)
        src = self._source
        for c0 in range(0, self.channels, step):
            sl = slice(c0, min(self.channels, c0 + step))
            lo, hi = self._lo[sl], self._hi[sl]
            if src["form"] == "affine":
                d, T = _core.breakpoints_affine(src["a"][sl], src["b"][sl], lo, hi, qmin, qmax, self._rounding)
            else:
                d, T = _core.breakpoints_batchnorm(*(src[k][sl] for k in _BN_FLOAT_KEYS + _BN_INT_KEYS), lo, hi,
                                                   qmin, qmax, self._rounding)
            Tf, ok = _core.breakpoints_fixed_point(self._multiplier[sl], self._bias[sl], self._shift32[sl], d, lo,
                                                   hi, qmin, qmax)
            bad = np.flatnonzero((ok == 0) | np.any(Tf != T, axis=1))
            if bad.size:
                c = c0 + int(bad[0])
                raise ValueError(f"channel {c}: (multiplier, bias, shift) = ({int(self._multiplier[c])}, "
                                 f"{int(self._bias[c])}, {int(self._shift[c])}) does not equal the exact reference "
                                 "on its in_range")

    def __getstate__(self):  # copies and pickles rebind the kernel on first use
        state = self.__dict__.copy()
        state["_kernel"] = None
        state["_shape_cache"] = {}
        state["_source"] = dict(self._source)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.__dict__.setdefault("_shape_cache", {})
        for v in list(state.values()) + list(state["_source"].values()):
            if isinstance(v, np.ndarray):
                v.flags.writeable = False   # unpickled arrays come back writeable
        self._source = MappingProxyType(dict(state["_source"]))

    @property
    def channels(self):
        return int(self.multiplier.shape[0])

    @property
    def affine(self):
        """(a, b) as float64 arrays: the real map the layer reproduces (rounded; for peers and diagnostics)."""
        s = self.source
        if s["form"] == "affine":
            return np.asarray(s["a"], np.float64), np.asarray(s["b"], np.float64)
        inv = np.float64(1) / np.sqrt(np.asarray(s["var"], np.float64) + s["eps"])
        a = s["gamma"] * inv * s["in_scale"] / s["out_scale"]
        b = (s["beta"] - s["gamma"] * inv * (s["mean"] + s["in_scale"] * s["in_zero_point"])) / s["out_scale"] \
            + s["out_zero_point"]
        return a, b

    def __repr__(self):
        return (f"FixedPointBN(channels={self.channels}, form={self.source['form']}, rounding={self.rounding}, "
                f"shift={int(self.shift.min())}..{int(self.shift.max())}, "
                f"multiplier_bits<={int(self.multiplier_bits.max())}, "
                f"accumulator_bits<={int(self.accumulator_bits.max())}, out_range={self.out_range}, "
                f"out_dtype={self.out_dtype.name})")

    # ------------------------------------------------------------------ apply
    def _shape3(self, x, axis):
        x = np.asarray(x)
        if x.dtype not in _IN_DTYPE_SET:
            raise ValueError(f"x has dtype {x.dtype}; expected one of {', '.join(IN_DTYPES)} "
                             "(integer inputs; convert explicitly)")
        shape = x.shape
        ndim = len(shape)
        if ndim == 0:
            raise ValueError("x must have a channel axis")
        if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
            raise ValueError(f"axis must be an integer (1 for NCHW, -1 for NHWC), got {axis!r}")
        if not -ndim <= axis < ndim:
            raise ValueError(f"axis {axis} is out of bounds for x with {ndim} dimensions")
        axis %= ndim
        channels = len(self.multiplier)
        if shape[axis] != channels:
            raise ValueError(f"x has {shape[axis]} entries on axis {axis}, the layer has {channels} channels")
        outer = inner = 1
        for d in shape[:axis]:
            outer *= d
        for d in shape[axis + 1:]:
            inner *= d
        return x, axis, (outer, channels, inner)

    def _covers(self, dtype):
        """True when every channel's in_range contains every value of dtype (no input can be out of range)."""
        if dtype not in self._covers_cache:
            info = np.iinfo(dtype)
            self._covers_cache[dtype] = bool(np.all(self._lo <= info.min) and np.all(self._hi >= info.max))
        return self._covers_cache[dtype]

    def _bound_kernel(self):
        if self._kernel is None:  # the parameter arrays are read-only: bound once
            self._kernel = _core.Kernel(self._multiplier, self._bias, self._shift32, self._lo, self._hi,
                                        *self._out_range, self._acc32)
        return self._kernel

    def _run_kernel(self, x, y, outer, inner, threads, keep_out=False):
        return self._bound_kernel().run(x, y, outer, inner, threads, keep_out)

    def _range_error(self, x, axis, flat):
        idx = np.unravel_index(flat, x.shape)
        c = int(idx[axis])
        value = x[idx]
        return ValueError(f"x[{', '.join(str(int(i)) for i in idx)}] = {int(value)} is outside the in_range of "
                          f"channel {c}, [{self._lo[c]}, {self._hi[c]}]: outputs are proven only inside it")

    def apply(self, x, axis=1, out=None, threads=None):
        """The fixed-point map on an integer array whose `axis` holds the channels.

        Parameters
        ----------
        x : ndarray of int8, uint8, int16 or int32
            Any of the four, whatever the layer's in_dtype: every value is checked against its channel's in_range.
        axis : int
            Channel axis (1 for NCHW, -1 for NHWC and (N, C)).
        out : ndarray, optional
            C-contiguous output of x's shape and the layer's out_dtype; left untouched on error.  It may overlap x
            (then the result goes through a temporary).
        threads : int, optional
            Threads to use (None or 0: all; at most 1024).

        Raises
        ------
        ValueError
            An input outside its channel's in_range (first offending index and value), or a bad shape/dtype.
        """
        kernel = self._kernel if self._kernel is not None else self._bound_kernel()
        # the common case (ndarrays of the right types, an out that does not overlap x) checked and run in C; None
        # when anything is unusual, and everything below validates, reports and handles it
        res = kernel.try_apply(x, axis, out, threads, self._out_dtype)
        if res is not None:
            if type(res) is int:
                raise self._range_error(x, axis % x.ndim, res)
            return res
        # _shape3's checks, once per (shape, dtype, axis) of an ndarray: the cache holds only validated triples
        # (the dtype object itself is kept and compared by identity; an int axis, not a bool)
        key = known = None
        if type(x) is np.ndarray and type(axis) is int:
            dt = x.dtype
            key = (x.shape, id(dt), axis)
            known = self._shape_cache.get(key)
            if known is not None and known[0] is not dt:
                known = None
        if known is None:
            x, axis, (outer, _, inner) = self._shape3(x, axis)
            if key is not None and len(self._shape_cache) < 64:
                self._shape_cache[key] = (dt, axis, outer, inner)
        else:
            _, axis, outer, inner = known
        if threads is None:
            threads = 0
        elif type(threads) is not int or not 0 <= threads <= MAX_THREADS:
            threads = _threads(threads)
        xc = np.ascontiguousarray(x)
        out_dtype = self._out_dtype
        if out is None:
            y = np.empty(x.shape, out_dtype)
        else:
            flags = out.flags if isinstance(out, np.ndarray) else None
            if flags is None or out.shape != x.shape or (out.dtype is not out_dtype and out.dtype != out_dtype) \
                    or not flags.c_contiguous or not flags.writeable:
                raise ValueError(f"out must be a writeable C-contiguous {out_dtype} array of shape {x.shape}")
            # an out that overlaps the input is written through a temporary, as NumPy's ufuncs do
            y = np.empty(x.shape, out_dtype) if np.may_share_memory(xc, out) else out
        # out is left untouched on error: the kernel checks the range in the same pass and, on a violation, puts
        # back the blocks of out it saved before writing them (keep_out)
        bad = kernel.run(xc, y, outer, inner, threads, y is out)
        if bad >= 0:
            raise self._range_error(xc, axis, bad)
        if out is not None and y is not out:
            np.copyto(out, y)
            y = out
        return y

    __call__ = apply

    # ------------------------------------------------------------------ the exact reference
    def _channel_model(self, c):
        s = self.source
        if s["form"] == "affine":
            return ref.AffineChannel(float(s["a"][c]), float(s["b"][c]))
        return ref.BatchNormChannel(*(float(s[k][c]) for k in _BN_FLOAT_KEYS),
                                    *(int(s[k][c]) for k in _BN_INT_KEYS))

    def reference_breakpoints(self, engine="python"):
        """(direction int8[C], T int64[C, qmax - qmin]) of the exact reference, in mirrored coordinates.

        engine="python" uses fxbn.reference (Fractions, independent of the C++ core); engine="core" the C++ core.
        """
        if engine not in ("python", "core"):
            raise ValueError(f"engine must be 'python' or 'core', got {engine!r}")
        if engine not in self._breakpoints:
            qmin, qmax = self.out_range
            if engine == "core":
                s = self.source
                if s["form"] == "affine":
                    res = _core.breakpoints_affine(s["a"], s["b"], self._lo, self._hi, qmin, qmax, self.rounding)
                else:
                    res = _core.breakpoints_batchnorm(*(s[k] for k in _BN_FLOAT_KEYS + _BN_INT_KEYS), self._lo,
                                                      self._hi, qmin, qmax, self.rounding)
            else:
                d = np.empty(self.channels, np.int8)
                T = np.empty((self.channels, qmax - qmin), np.int64)
                for c in range(self.channels):
                    d[c], Tc = ref.breakpoints(self._channel_model(c), int(self._lo[c]), int(self._hi[c]), qmin,
                                               qmax, self.rounding)
                    T[c] = Tc
                res = (d, T)
            self._breakpoints[engine] = res
        return self._breakpoints[engine]

    def reference(self, x, axis=1, engine="python"):
        """The exact reference clamp(R(v(x)), qmin, qmax) for an integer array (channels on `axis`).

        Inputs outside in_range raise ValueError, as in apply.
        """
        x, axis, shape3 = self._shape3(x, axis)
        xc = np.ascontiguousarray(x)
        x3 = xc.reshape(shape3)
        bad = _core.check_range(x3, self._lo, self._hi)
        if bad >= 0:
            raise self._range_error(xc, axis, bad)
        d, T = self.reference_breakpoints(engine)
        y = np.empty(shape3, self.out_dtype)
        for c in range(self.channels):
            y[:, c, :] = ref.outputs_from_breakpoints(int(d[c]), T[c], x3[:, c, :], self.out_range[0])
        return y.reshape(x.shape)

    # ------------------------------------------------------------------ persistence
    def to_dict(self):
        """A JSON-ready dict with exact integers and the exact source floats (repr round-trips)."""
        src = {k: (v if isinstance(v, str) else [float(e) if np.asarray(v).dtype.kind == "f" else int(e)
                                                    for e in np.asarray(v).tolist()])
               for k, v in self.source.items()}
        return {
            "format": "fxbn.FixedPointBN",
            "version": 1,
            "channels": self.channels,
            "multiplier": [int(v) for v in self.multiplier.tolist()],
            "bias": [int(v) for v in self.bias.tolist()],
            "shift": [int(v) for v in self.shift.tolist()],
            "in_range": [[int(lo), int(hi)] for lo, hi in self.in_range.tolist()],
            "out_range": list(self.out_range),
            "rounding": self.rounding,
            "in_dtype": self.in_dtype.name,
            "out_dtype": self.out_dtype.name,
            "source": src,
            "solve_options": self.solve_options,
        }

    @classmethod
    def from_dict(cls, d):
        """Inverse of to_dict.  Strict: every field present with its JSON type (integers as integers, no strings or
        floats for them), every value in range; ValueError naming the field otherwise.  Exactness is not checked
        here (see load and check_exact)."""
        if not isinstance(d, dict) or d.get("format") != "fxbn.FixedPointBN":
            raise ValueError("not an fxbn.FixedPointBN record (missing format 'fxbn.FixedPointBN')")
        if d.get("version") != 1 or isinstance(d.get("version"), bool):
            raise ValueError(f"unsupported fxbn.FixedPointBN version {d.get('version')!r}")
        required = ("multiplier", "bias", "shift", "in_range", "out_range", "rounding", "in_dtype", "out_dtype",
                    "source")
        missing = [k for k in required if k not in d]
        if missing:
            raise ValueError(f"record lacks {', '.join(missing)}")
        unknown = sorted(str(k) for k in set(d) - set(required) - {"format", "version", "channels", "solve_options"})
        if unknown:
            raise ValueError(f"record has unknown field(s) {', '.join(unknown)}")
        for k in ("rounding", "in_dtype", "out_dtype"):
            if not isinstance(d[k], str):
                raise ValueError(f"{k} must be a string, got {d[k]!r}")
        A = _record_ints("multiplier", d["multiplier"])
        n = len(A)
        if "channels" in d and (type(d["channels"]) is not int or d["channels"] != n):
            raise ValueError(f"channels is {d['channels']!r}, multiplier has {n} entries")
        in_range = _record_ints("in_range", d["in_range"], pairs=True)
        out_range = _record_ints("out_range", d["out_range"])
        if not isinstance(d["source"], dict):
            raise ValueError("source must be an object")
        src = {}
        for k, v in d["source"].items():
            if k == "form":
                src[k] = v
            elif k in _BN_INT_KEYS:
                src[k] = _record_ints(f"source.{k}", v)
            else:
                src[k] = _record_floats(f"source.{k}", v)
        return cls(A, _record_ints("bias", d["bias"]), _record_ints("shift", d["shift"]), in_range, out_range,
                   d["rounding"], src, d["out_dtype"], d["in_dtype"],
                   solve_options=_record_options(d.get("solve_options")))

    def save(self, path):
        """Save as JSON (path ending .json) or NumPy npz (.npz); written to a temporary file, then renamed."""
        _io.write_record(self.to_dict(), path)

    def to_c(self, directory, name):
        """Write a C99 header and source for this layer (see :func:`fxbn.codegen.layer_to_c`); returns their paths.

        Examples
        --------
        >>> import fxbn, tempfile
        >>> layer = fxbn.from_affine(0.5, 1.0, in_dtype="int8", rounding="half_up")
        >>> layer.to_c(tempfile.mkdtemp(), "half")[0].endswith("half.h")
        True
        """
        from fxbn import codegen

        return codegen.layer_to_c(self, directory, name)
