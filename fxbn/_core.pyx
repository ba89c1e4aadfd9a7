"""Thin wrappers over the C++ core (csrc/fxbn).  Arrays are validated and shaped by fxbn.api; here they are only
passed through, with the GIL released around the C++ calls."""
import numpy as np

from libc.stdint cimport int8_t, int32_t, int64_t
from libcpp.string cimport string

from fxbn.errors import InfeasibleError

_ROUNDING = {"half_even": Rounding.half_even, "half_up": Rounding.half_up,
             "half_away": Rounding.half_away, "floor": Rounding.floor}
_DTYPE = {"int8": DType.int8, "uint8": DType.uint8, "int16": DType.int16, "uint16": DType.uint16,
          "int32": DType.int32}


cdef int raise_fxbn_error() except -1:
    cdef string message
    cdef int kind = classify_current_exception(&message)
    text = message.decode("utf-8", "replace")
    if kind == 1:
        raise InfeasibleError(text)
    if kind == 2:
        raise ValueError(text)
    if kind == 3:
        raise MemoryError(text)
    raise RuntimeError(text)


cdef SolveOptions _options(int acc_bits, int max_multiplier_bits):
    cdef SolveOptions opt
    opt.acc_bits = acc_bits
    opt.max_multiplier_bits = max_multiplier_bits
    opt.min_shift = 0
    opt.max_shift = 62
    return opt


cdef BatchNormArrays _bn_arrays(const double[::1] gamma, const double[::1] beta, const double[::1] mean,
                                const double[::1] var, const double[::1] eps, const double[::1] in_scale,
                                const double[::1] out_scale, const int64_t[::1] in_zero_point,
                                const int64_t[::1] out_zero_point):
    cdef BatchNormArrays p
    p.gamma = &gamma[0]
    p.beta = &beta[0]
    p.mean = &mean[0]
    p.var = &var[0]
    p.eps = &eps[0]
    p.in_scale = &in_scale[0]
    p.out_scale = &out_scale[0]
    p.in_zero_point = &in_zero_point[0]
    p.out_zero_point = &out_zero_point[0]
    return p


def _solution_arrays(Py_ssize_t channels):
    return (np.empty(channels, np.int64), np.empty(channels, np.int64), np.empty(channels, np.int32),
            np.empty(channels, np.int32), np.empty(channels, np.int32))


cdef LayerOutput _layer_output(int64_t[::1] A, int64_t[::1] B, int32_t[::1] s, int32_t[::1] mb, int32_t[::1] ab):
    cdef LayerOutput out
    out.multiplier = &A[0]
    out.bias = &B[0]
    out.shift = &s[0]
    out.multiplier_bits = &mb[0]
    out.accumulator_bits = &ab[0]
    return out


def solve_affine(const double[::1] a, const double[::1] b, const int64_t[::1] lo, const int64_t[::1] hi,
                 int64_t qmin, int64_t qmax, str rounding, int acc_bits, int max_multiplier_bits,
                 bint common_shift):
    """Per-channel (multiplier, bias, shift, multiplier_bits, accumulator_bits) for the affine form."""
    cdef Py_ssize_t n = a.shape[0]
    res = _solution_arrays(n)
    cdef LayerOutput out = _layer_output(res[0], res[1], res[2], res[3], res[4])
    cdef SolveOptions opt = _options(acc_bits, max_multiplier_bits)
    cdef Rounding r = _ROUNDING[rounding]
    with nogil:
        solve_affine_layer(n, &a[0], &b[0], &lo[0], &hi[0], qmin, qmax, r, opt, common_shift, out)
    return res


def solve_batchnorm(gamma, beta, mean, var, eps, in_scale, out_scale, in_zero_point, out_zero_point,
                    const int64_t[::1] lo, const int64_t[::1] hi, int64_t qmin, int64_t qmax, str rounding,
                    int acc_bits, int max_multiplier_bits, bint common_shift):
    """Per-channel (multiplier, bias, shift, multiplier_bits, accumulator_bits) for the batchnorm form."""
    cdef Py_ssize_t n = lo.shape[0]
    cdef BatchNormArrays p = _bn_arrays(gamma, beta, mean, var, eps, in_scale, out_scale, in_zero_point,
                                        out_zero_point)
    res = _solution_arrays(n)
    cdef LayerOutput out = _layer_output(res[0], res[1], res[2], res[3], res[4])
    cdef SolveOptions opt = _options(acc_bits, max_multiplier_bits)
    cdef Rounding r = _ROUNDING[rounding]
    with nogil:
        solve_batchnorm_layer(n, p, &lo[0], &hi[0], qmin, qmax, r, opt, common_shift, out)
    return res


def breakpoints_affine(const double[::1] a, const double[::1] b, const int64_t[::1] lo, const int64_t[::1] hi,
                       int64_t qmin, int64_t qmax, str rounding):
    """(direction int8[C], T int64[C, qmax - qmin]): reference breakpoints in mirrored coordinates."""
    cdef Py_ssize_t n = a.shape[0]
    direction = np.empty(n, np.int8)
    T = np.empty((n, qmax - qmin), np.int64)
    cdef int8_t[::1] d = direction
    cdef int64_t[:, ::1] t = T
    cdef Rounding r = _ROUNDING[rounding]
    with nogil:
        affine_breakpoints(n, &a[0], &b[0], &lo[0], &hi[0], qmin, qmax, r, &d[0],
                           &t[0, 0] if qmax > qmin else <int64_t*>NULL)
    return direction, T


def breakpoints_batchnorm(gamma, beta, mean, var, eps, in_scale, out_scale, in_zero_point, out_zero_point,
                          const int64_t[::1] lo, const int64_t[::1] hi, int64_t qmin, int64_t qmax, str rounding):
    """(direction int8[C], T int64[C, qmax - qmin]): reference breakpoints in mirrored coordinates."""
    cdef Py_ssize_t n = lo.shape[0]
    cdef BatchNormArrays p = _bn_arrays(gamma, beta, mean, var, eps, in_scale, out_scale, in_zero_point,
                                        out_zero_point)
    direction = np.empty(n, np.int8)
    T = np.empty((n, qmax - qmin), np.int64)
    cdef int8_t[::1] d = direction
    cdef int64_t[:, ::1] t = T
    cdef Rounding r = _ROUNDING[rounding]
    with nogil:
        batchnorm_breakpoints(n, p, &lo[0], &hi[0], qmin, qmax, r, &d[0],
                              &t[0, 0] if qmax > qmin else <int64_t*>NULL)
    return direction, T


def breakpoints_fixed_point(const int64_t[::1] multiplier, const int64_t[::1] bias, const int32_t[::1] shift,
                            const int8_t[::1] direction, const int64_t[::1] lo, const int64_t[::1] hi,
                            int64_t qmin, int64_t qmax):
    """(T int64[C, qmax - qmin], ok int8[C]): breakpoints of the fixed-point map in the coordinates x' = d*x."""
    cdef Py_ssize_t n = multiplier.shape[0]
    T = np.empty((n, qmax - qmin), np.int64)
    ok = np.empty(n, np.int8)
    cdef int64_t[:, ::1] t = T
    cdef int8_t[::1] okv = ok
    with nogil:
        fixed_point_breakpoints(n, &multiplier[0], &bias[0], &shift[0], &direction[0], &lo[0], &hi[0], qmin, qmax,
                                &t[0, 0] if qmax > qmin else <int64_t*>NULL, &okv[0])
    return T, ok


def apply_kernel(x, y, const int64_t[::1] multiplier, const int64_t[::1] bias, const int32_t[::1] shift,
                 const int64_t[::1] lo, const int64_t[::1] hi, int64_t qmin, int64_t qmax, bint acc32,
                 int threads):
    """x, y: C-contiguous arrays of shape (outer, channels, inner).  Returns -1 or the flat index of the first
    input outside its channel's range."""
    cdef DType tin = _DTYPE[x.dtype.name]
    cdef DType tout = _DTYPE[y.dtype.name]
    cdef int64_t outer = x.shape[0], channels = x.shape[1], inner = x.shape[2]
    cdef KernelParams p
    p.multiplier = &multiplier[0]
    p.bias = &bias[0]
    p.shift = &shift[0]
    p.lo = &lo[0]
    p.hi = &hi[0]
    p.qmin = qmin
    p.qmax = qmax
    p.acc32 = acc32
    cdef int64_t bad
    if x.size == 0:
        return -1
    x_view = memoryview(x)
    y_view = memoryview(y)
    cdef const unsigned char[::1] xv = x_view.cast("B")
    cdef unsigned char[::1] yv = y_view.cast("B")
    with nogil:
        bad = apply(tin, &xv[0], tout, &yv[0], outer, channels, inner, p, threads)
    return bad


def check_range(x, const int64_t[::1] lo, const int64_t[::1] hi):
    """-1, or the flat index of the first element of the (outer, channels, inner) array x outside its range."""
    cdef DType tin = _DTYPE[x.dtype.name]
    cdef int64_t outer = x.shape[0], channels = x.shape[1], inner = x.shape[2]
    cdef int64_t bad
    if x.size == 0:
        return -1
    cdef const unsigned char[::1] xv = memoryview(x).cast("B")
    with nogil:
        bad = first_out_of_range(tin, &xv[0], outer, channels, inner, &lo[0], &hi[0])
    return bad


def affine_exact_sign(double a, double b, int64_t x, int64_t twice_t):
    """Exact sign of a*x + b - twice_t/2."""
    cdef AffineParams p
    p.a = a
    p.b = b
    return affine_sign(p, x, twice_t)


def batchnorm_exact_sign(double gamma, double beta, double mean, double var, double eps, double in_scale,
                         double out_scale, int64_t in_zero_point, int64_t out_zero_point, int64_t x,
                         int64_t twice_t):
    """Exact sign of v(x) - twice_t/2 for the batchnorm form."""
    cdef BatchNormParams p
    p.gamma, p.beta, p.mean, p.var, p.eps = gamma, beta, mean, var, eps
    p.in_scale, p.out_scale = in_scale, out_scale
    p.in_zero_point, p.out_zero_point = in_zero_point, out_zero_point
    return batchnorm_sign(p, x, twice_t)
