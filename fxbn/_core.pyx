"""Thin wrappers over the C++ core (csrc/fxbn).  Arrays are validated and shaped by fxbn.api; here they are only
passed through, with the GIL released around the C++ calls."""
import numpy as np

cimport numpy as cnp
from libc.stdint cimport int8_t, int32_t, int64_t
from libcpp.string cimport string
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_C_CONTIGUOUS, PyBUF_WRITABLE, PyBUF_FORMAT

from fxbn.errors import InfeasibleError

cnp.import_array()

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


# (kind, itemsize) -> DType: dtype.kind and dtype.itemsize are cheap attributes (dtype.name is computed per call).
_KIND_SIZE = {("i", 1): DType.int8, ("u", 1): DType.uint8, ("i", 2): DType.int16, ("u", 2): DType.uint16,
              ("i", 4): DType.int32}


# id(dtype) -> (dtype, DType, itemsize) of the dtypes _dtype_of accepted: the entry keeps its dtype alive (so the id
# is not reused) and is used only when it holds that very object.  No tuple is built per call.
cdef dict _ACCEPTED_DTYPES = {}


cdef DType _dtype_of(object arr, Py_ssize_t* itemsize) except *:
    dt = arr.dtype
    entry = _ACCEPTED_DTYPES.get(id(dt))
    if entry is not None and (<tuple>entry)[0] is dt:
        itemsize[0] = (<tuple>entry)[2]
        return (<tuple>entry)[1]
    if not dt.isnative:
        raise ValueError(f"dtype {dt} is not in the machine's byte order")
    itemsize[0] = dt.itemsize
    try:
        code = _KIND_SIZE[(dt.kind, itemsize[0])]
    except KeyError:
        raise ValueError(f"unsupported dtype {dt}") from None
    if len(_ACCEPTED_DTYPES) < 64:
        _ACCEPTED_DTYPES[id(dt)] = (dt, code, itemsize[0])
    return code


cdef bint _dtype_of_type_num(int type_num, DType* code):
    """The kernel's DType of a NumPy type number; False for any other type."""
    if type_num == cnp.NPY_INT8:
        code[0] = DType.int8
    elif type_num == cnp.NPY_UINT8:
        code[0] = DType.uint8
    elif type_num == cnp.NPY_INT16:
        code[0] = DType.int16
    elif type_num == cnp.NPY_UINT16:
        code[0] = DType.uint16
    elif type_num == cnp.NPY_INT32:
        code[0] = DType.int32
    else:
        return False
    return True


cdef int _get_buffer(object arr, Py_buffer* view, int flags, int64_t nbytes, str name) except -1:
    """A C-contiguous buffer of at least nbytes (cheaper than a memoryview cast on every call)."""
    PyObject_GetBuffer(arr, view, flags)
    if view.len < nbytes:
        PyBuffer_Release(view)
        raise ValueError(f"{name} holds {view.len} bytes, the shape needs {nbytes}")
    return 0


cdef class Kernel:
    """A layer's kernel parameters, validated once (multiplier, bias, lo, hi int64; shift int32; one entry per
    channel).  run() then only takes the two buffers.  The arrays are kept referenced, not copied: they must not be
    changed while the Kernel is in use."""
    cdef KernelParams p
    cdef readonly int64_t channels
    cdef object arrays
    cdef KernelCache* cache

    def __cinit__(self, const int64_t[::1] multiplier, const int64_t[::1] bias, const int32_t[::1] shift,
                  const int64_t[::1] lo, const int64_t[::1] hi, int64_t qmin, int64_t qmax, bint acc32):
        self.cache = new_kernel_cache()  # the 8-bit template's verified parameters and tables, built on first use
        self.p.cache = self.cache
        self.channels = multiplier.shape[0]
        if bias.shape[0] != self.channels or shift.shape[0] != self.channels or lo.shape[0] != self.channels \
                or hi.shape[0] != self.channels:
            raise ValueError(f"parameter arrays differ in length from the {self.channels} multipliers")
        self.arrays = (multiplier, bias, shift, lo, hi)
        self.p.qmin = qmin
        self.p.qmax = qmax
        self.p.acc32 = acc32
        if self.channels == 0:  # run() has nothing to do
            return
        self.p.multiplier = &multiplier[0]
        self.p.bias = &bias[0]
        self.p.shift = &shift[0]
        self.p.lo = &lo[0]
        self.p.hi = &hi[0]

    def __dealloc__(self):
        if self.cache != NULL:
            delete_kernel_cache(self.cache)

    def byte_template_channels(self, str in_dtype, str out_dtype):
        """How many channels run the verified 8-bit template for (in_dtype, out_dtype) channel-last calls, or -1
        when no call built it yet."""
        return byte_template_channels(self.cache, _DTYPE[in_dtype], _DTYPE[out_dtype])

    def run(self, x, y, int64_t outer, int64_t inner, int threads, bint keep_out=False):
        """x, y: C-contiguous arrays of outer * channels * inner elements (any shape).  Returns -1 or the flat
        index of the first input outside its channel's range; with keep_out, y then holds what it held before
        (the kernel saves each block of y before writing it, in the same pass).  The GIL is released while the
        kernel runs."""
        cdef Py_ssize_t in_size, out_size
        cdef DType tin = _dtype_of(x, &in_size)
        cdef DType tout = _dtype_of(y, &out_size)
        if outer < 0 or inner < 0:
            raise ValueError(f"negative outer ({outer}) or inner ({inner}) size")
        cdef int64_t count = outer * self.channels * inner
        if count == 0:
            return -1
        cdef int64_t bad
        cdef Py_buffer xb, yb
        cdef KernelParams p = self.p
        p.keep_out_on_error = keep_out
        _get_buffer(x, &xb, PyBUF_C_CONTIGUOUS, count * in_size, "x")
        try:
            _get_buffer(y, &yb, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE, count * out_size, "y")
            try:
                with nogil:
                    bad = apply(tin, xb.buf, tout, yb.buf, outer, self.channels, inner, p, threads)
            finally:
                PyBuffer_Release(&yb)
        finally:
            PyBuffer_Release(&xb)
        return bad

    def try_apply(self, x, axis, out, threads, out_dtype):
        """FixedPointBN.apply's common case without Python-level checks: x an ndarray (exactly) of int8, uint8, int16
        or int32, C-contiguous and in native byte order, `axis` an int naming an axis of `channels` entries, `out` None
        or an ndarray (exactly) of x's shape and dtype `out_dtype`, C-contiguous, writeable and not overlapping x's
        bytes, `threads` None or an int in [0, 1024].  Returns the output array, or the flat index (an int) of the
        first input outside its channel's range (out then untouched), or None when any condition fails: the caller
        then takes its own path, which validates and reports."""
        if not cnp.PyArray_CheckExact(x) or type(axis) is not int:
            return None
        cdef cnp.ndarray xa = <cnp.ndarray>x
        cdef DType tin, tout
        cdef int in_type = cnp.PyArray_TYPE(xa)
        # uint16 inputs declined: the kernel takes them, FixedPointBN.apply does not
        if in_type == cnp.NPY_UINT16 or not _dtype_of_type_num(in_type, &tin):
            return None
        if not cnp.PyArray_ISNOTSWAPPED(xa) or not cnp.PyArray_IS_C_CONTIGUOUS(xa):
            return None
        cdef int ndim = cnp.PyArray_NDIM(xa)
        if ndim == 0 or not -ndim <= axis < ndim:
            return None
        cdef int ax = axis
        if ax < 0:
            ax += ndim
        cdef cnp.npy_intp* dims = cnp.PyArray_DIMS(xa)
        if dims[ax] != self.channels:
            return None
        cdef int64_t outer = 1, inner = 1
        cdef int k
        for k in range(ax):
            outer *= dims[k]
        for k in range(ax + 1, ndim):
            inner *= dims[k]
        cdef int nthreads = 0
        if threads is not None:
            if type(threads) is not int or not 0 <= threads <= 1024:
                return None
            nthreads = threads
        if not isinstance(out_dtype, cnp.dtype):
            return None
        cdef cnp.dtype odt = <cnp.dtype>out_dtype
        cdef int out_type = odt.type_num
        if not _dtype_of_type_num(out_type, &tout):
            return None
        cdef cnp.ndarray ya
        cdef bint keep_out = out is not None
        cdef char* xlo = <char*>cnp.PyArray_DATA(xa)
        cdef char* ylo
        if keep_out:
            if not cnp.PyArray_CheckExact(out):
                return None
            ya = <cnp.ndarray>out
            if cnp.PyArray_TYPE(ya) != out_type or not cnp.PyArray_ISNOTSWAPPED(ya) \
                    or not cnp.PyArray_IS_C_CONTIGUOUS(ya) or not cnp.PyArray_ISWRITEABLE(ya) \
                    or cnp.PyArray_NDIM(ya) != ndim:
                return None
            for k in range(ndim):
                if cnp.PyArray_DIMS(ya)[k] != dims[k]:
                    return None
            ylo = <char*>cnp.PyArray_DATA(ya)
            if ylo < xlo + cnp.PyArray_NBYTES(xa) and xlo < ylo + cnp.PyArray_NBYTES(ya):
                return None  # overlapping bytes: the caller goes through a temporary
        else:
            ya = cnp.PyArray_EMPTY(ndim, dims, out_type, 0)
            ylo = <char*>cnp.PyArray_DATA(ya)
        cdef int64_t bad = -1
        cdef KernelParams p = self.p
        p.keep_out_on_error = keep_out
        if outer * self.channels * inner != 0:
            with nogil:
                bad = apply(tin, xlo, tout, ylo, outer, self.channels, inner, p, nthreads)
        if bad >= 0:
            return bad
        return ya


def byte_template(const int64_t[::1] multiplier, const int64_t[::1] bias, const int32_t[::1] shift,
                  const int64_t[::1] lo, const int64_t[::1] hi, int64_t qmin, int64_t qmax, str in_dtype,
                  str out_dtype, params=None):
    """The 8-bit template of a layer (8-bit input and output): with params None, search it; else check the given
    int32[C, 5] params (m, p, n, sm, flip per channel).  Returns (params int32[C, 5], ok bool[C]): ok[c] when the
    exhaustive check passed on every input of channel c's range, the only way parameters reach the kernel."""
    cdef int64_t n = multiplier.shape[0]
    if in_dtype not in ("int8", "uint8") or out_dtype not in ("int8", "uint8"):
        raise ValueError(f"the 8-bit template needs 8-bit dtypes, not {in_dtype} -> {out_dtype}")
    if bias.shape[0] != n or shift.shape[0] != n or lo.shape[0] != n or hi.shape[0] != n:
        raise ValueError(f"parameter arrays differ in length from the {n} multipliers")
    cdef bint find = params is None
    out = np.zeros((n, 5), np.int32) if find else np.array(params, np.int32, copy=True).reshape(n, 5)
    ok = np.zeros(n, np.int8)
    if n == 0:
        return out, ok != 0
    cdef int32_t[:, ::1] pv = out
    cdef int8_t[::1] okv = ok
    cdef bint ins = in_dtype == "int8", outs = out_dtype == "int8"
    with nogil:
        byte_template_params(ins, outs, n, &multiplier[0], &bias[0], &shift[0], &lo[0], &hi[0], qmin, qmax, find,
                             &pv[0, 0], &okv[0])
    return out, ok != 0


def apply_kernel(x, y, multiplier, bias, shift, lo, hi, int64_t qmin, int64_t qmax, bint acc32, int threads):
    """x, y: C-contiguous arrays of shape (outer, channels, inner); the parameter arrays as for Kernel (their first
    `channels` entries are used).  Returns -1 or the flat index of the first input outside its channel's range."""
    shape = x.shape
    if y.shape != shape:
        raise ValueError(f"y has shape {y.shape}, x has {shape}")
    cdef int64_t channels = shape[1]
    if multiplier.shape[0] < channels or bias.shape[0] < channels or shift.shape[0] < channels \
            or lo.shape[0] < channels or hi.shape[0] < channels:
        raise ValueError(f"parameter arrays are shorter than the {channels} channels")
    kernel = Kernel(multiplier[:channels], bias[:channels], shift[:channels], lo[:channels], hi[:channels], qmin,
                    qmax, acc32)
    return kernel.run(x, y, shape[0], shape[2], threads)


def check_range(x, const int64_t[::1] lo, const int64_t[::1] hi):
    """-1, or the flat index of the first element of the (outer, channels, inner) array x outside its range."""
    cdef Py_ssize_t in_size
    cdef DType tin = _dtype_of(x, &in_size)
    shape = x.shape
    cdef int64_t outer = shape[0], channels = shape[1], inner = shape[2]
    if lo.shape[0] < channels or hi.shape[0] < channels:
        raise ValueError(f"range arrays are shorter than the {channels} channels")
    cdef int64_t count = outer * channels * inner
    if count == 0:
        return -1
    cdef int64_t bad
    cdef Py_buffer xb
    _get_buffer(x, &xb, PyBUF_C_CONTIGUOUS, count * in_size, "x")
    try:
        with nogil:
            bad = first_out_of_range(tin, xb.buf, outer, channels, inner, &lo[0], &hi[0])
    finally:
        PyBuffer_Release(&xb)
    return bad


def kernel_isa(name=None):
    """The instruction set the kernel loops use ("x86-64-v4+vbmi+vnni", "x86-64-v4", "avx2", "neon" on aarch64, or
    "baseline"); with a name ("auto" for the best available) select it first (process-wide), raising ValueError when
    this CPU or build lacks it.  For tests and benchmarks; the environment variable FXBN_ISA sets the initial choice."""
    if name is not None:
        if not set_kernel_isa(name.encode()):
            raise ValueError(f"kernel ISA {name!r} is unknown or not supported on this CPU")
    return kernel_isa_cpp().decode()


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


# ------------------------------------------------------------------------------------------- the exact add
cdef AddParams _add_params(tuple scales, tuple zero_points, tuple box, int64_t qmin, int64_t qmax, str rounding):
    cdef AddParams p
    p.s1, p.s2, p.s_out = scales
    p.z1, p.z2, p.z_out = zero_points
    p.l1, p.h1, p.l2, p.h2 = box
    p.qmin = qmin
    p.qmax = qmax
    p.rounding = _ROUNDING[rounding]
    return p


def solve_add_params(tuple scales, tuple zero_points, tuple box, int64_t qmin, int64_t qmax, str rounding,
                     int max_shift, int acc_bits):
    """(a1, a2, bias, shift, multiplier_bits, accumulator_bits) of the smallest-shift exact add.
    scales = (s1, s2, s_out), zero_points = (z1, z2, z_out), box = (l1, h1, l2, h2)."""
    cdef AddParams p = _add_params(scales, zero_points, box, qmin, qmax, rounding)
    cdef AddSolution s
    with nogil:
        s = solve_add(p, max_shift, acc_bits)
    return s.a1, s.a2, s.bias, s.shift, s.multiplier_bits, s.accumulator_bits


def add_feasible(tuple scales, tuple zero_points, tuple box, int64_t qmin, int64_t qmax, str rounding, int shift):
    """Whether any integer (A1, A2, B) is exact at this shift (the C++ core's own decision)."""
    cdef AddParams p = _add_params(scales, zero_points, box, qmin, qmax, rounding)
    cdef bool ok
    with nogil:
        ok = add_feasible_at(p, shift)
    return True if ok else False


def add_check(tuple scales, tuple zero_points, tuple box, int64_t qmin, int64_t qmax, str rounding, int64_t a1,
              int64_t a2, int64_t bias, int shift):
    """None when the fixed-point add equals the exact reference on the whole box, else the first (x1, x2)."""
    cdef AddParams p = _add_params(scales, zero_points, box, qmin, qmax, rounding)
    cdef int64_t b1 = 0, b2 = 0
    cdef bool ok
    with nogil:
        ok = add_check_all(p, a1, a2, bias, shift, &b1, &b2)
    return None if ok else (b1, b2)


def add_exact_sign(tuple scales, tuple zero_points, int64_t x1, int64_t x2, int64_t twice_t):
    """Exact sign of (s1*(x1 - z1) + s2*(x2 - z2))/s_out + z_out - twice_t/2."""
    cdef AddParams p = _add_params(scales, zero_points, (x1, x1, x2, x2), 0, 0, "floor")
    return add_sign(p, x1, x2, twice_t)


cdef class AddKernel:
    """An add layer's kernel parameters, bound once; run() takes the buffers."""
    cdef AddKernelParams p

    def __cinit__(self, int64_t a1, int64_t a2, int64_t bias, int shift, tuple box, int64_t qmin, int64_t qmax,
                  bint acc32):
        self.p.a1, self.p.a2, self.p.bias, self.p.shift = a1, a2, bias, shift
        self.p.l1, self.p.h1, self.p.l2, self.p.h2 = box
        self.p.qmin, self.p.qmax, self.p.acc32 = qmin, qmax, acc32

    def run(self, x1, x2, y, int64_t n, int64_t period, int threads, bint keep_y=False):
        """x1 (n elements), x2 (period elements, repeated), y (n elements or None: range check only), all
        C-contiguous.  Returns (index, which): (-1, 0), or the first flat index whose x1 (which=1) or x2 (which=2,
        the index taken modulo period) is outside the proven box.  keep_y: y is left untouched when (index, which)
        reports an error (a read-only check first where the box is narrower than the input types; a y overlapping
        an input is computed into a temporary and copied).  The GIL is released while the kernel runs."""
        cdef Py_ssize_t s1, s2, so = 0
        cdef DType t1 = _dtype_of(x1, &s1)
        cdef DType t2 = _dtype_of(x2, &s2)
        cdef DType to = DType.int8
        if y is not None:
            to = _dtype_of(y, &so)
        if n == 0:
            return -1, 0
        if period <= 0 or n % period != 0:
            raise ValueError(f"period {period} does not divide {n}")
        cdef int64_t bad
        cdef int which = 0
        cdef Py_buffer b1, b2, by
        cdef void* yp = NULL
        cdef char* tmp = NULL
        cdef char* ys
        cdef char* ye
        _get_buffer(x1, &b1, PyBUF_C_CONTIGUOUS, n * s1, "x1")
        try:
            _get_buffer(x2, &b2, PyBUF_C_CONTIGUOUS, period * s2, "x2")
            try:
                if y is not None:
                    _get_buffer(y, &by, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE, n * so, "y")
                    yp = by.buf
                    ys = <char*>by.buf
                    ye = ys + n * so
                    if (ys < <char*>b1.buf + n * s1 and <char*>b1.buf < ye) or \
                            (ys < <char*>b2.buf + period * s2 and <char*>b2.buf < ye):
                        tmp = <char*>malloc(n * so)
                        if tmp == NULL:
                            PyBuffer_Release(&by)
                            raise MemoryError()
                        yp = tmp
                try:
                    with nogil:
                        bad = add_apply(t1, b1.buf, t2, b2.buf, period, to, yp, n, self.p, threads, &which,
                                        keep_y and tmp == NULL)
                        if tmp != NULL and bad < 0:
                            memcpy(by.buf, tmp, n * so)
                finally:
                    free(tmp)
                    if y is not None:
                        PyBuffer_Release(&by)
            finally:
                PyBuffer_Release(&b2)
        finally:
            PyBuffer_Release(&b1)
        return bad, which

    def run_same(self, x1, x2, y, int threads, bytes out_code, bint keep_y):
        """The fast path of FixedPointAdd.apply: x1, x2 and y C-contiguous, of one shape, x1, x2 int8 / uint8 /
        int16 in native order, y writable with the one-character buffer format out_code, not overlapping the
        inputs.  Returns None when the arguments do not qualify (the caller then takes run()'s general path), else
        (index, which) as run(x1, x2, y, n, n, threads, keep_y).  The GIL is released while the kernel runs."""
        cdef Py_buffer b1, b2, by
        cdef DType t1 = DType.int8, t2 = DType.int8, to
        cdef int64_t bad = -1, n
        cdef int which = 0, i
        cdef char* ys
        cdef char* ye
        if len(out_code) != 1:
            return None
        try:
            PyObject_GetBuffer(x1, &b1, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
        except (BufferError, ValueError, TypeError):  # numpy: ValueError for non-contiguous or read-only
            return None
        try:
            try:
                PyObject_GetBuffer(x2, &b2, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
            except (BufferError, ValueError, TypeError):  # numpy: ValueError for non-contiguous or read-only
                return None
            try:
                try:
                    PyObject_GetBuffer(y, &by, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE)
                except (BufferError, ValueError, TypeError):  # numpy: ValueError for non-contiguous or read-only
                    return None
                try:
                    if b1.ndim != b2.ndim or b1.ndim != by.ndim or not _add_code(b1.format, &t1) or \
                            not _add_code(b2.format, &t2) or by.format[0] != out_code[0] or by.format[1] != 0:
                        return None
                    for i in range(b1.ndim):
                        if b1.shape[i] != b2.shape[i] or b1.shape[i] != by.shape[i]:
                            return None
                    n = b1.len // b1.itemsize
                    ys = <char*>by.buf
                    ye = ys + by.len
                    if n == 0 or (ys < <char*>b1.buf + b1.len and <char*>b1.buf < ye) or \
                            (ys < <char*>b2.buf + b2.len and <char*>b2.buf < ye):
                        return None
                    to = _out_type(out_code[0])
                    with nogil:
                        bad = add_apply(t1, b1.buf, t2, b2.buf, n, to, by.buf, n, self.p, threads, &which, keep_y)
                finally:
                    PyBuffer_Release(&by)
            finally:
                PyBuffer_Release(&b2)
        finally:
            PyBuffer_Release(&b1)
        return bad, which


cdef bint _add_code(const char* fmt, DType* t) noexcept:
    """An add input's one-character native buffer format: int8 'b', uint8 'B', int16 'h'."""
    if fmt == NULL or fmt[0] == 0 or fmt[1] != 0:
        return False
    if fmt[0] == b'b':
        t[0] = DType.int8
    elif fmt[0] == b'B':
        t[0] = DType.uint8
    elif fmt[0] == b'h':
        t[0] = DType.int16
    else:
        return False
    return True


cdef DType _out_type(char c) noexcept:
    if c == b'b':
        return DType.int8
    if c == b'B':
        return DType.uint8
    if c == b'h':
        return DType.int16
    return DType.uint16


def minimality_hull_search(const int64_t[:, ::1] T, const int64_t[::1] lo, const int64_t[::1] hi,
                           const int32_t[::1] shift_m1, int64_t qmin):
    """(status int32[C], idx int64[C, 4]): verify.breakpoints.feasible_at's hull search at shift_m1 for every
    channel (no width limits), constraints named by level index (csrc/fxbn/minimality.hpp)."""
    cdef Py_ssize_t n = T.shape[0]
    cdef Py_ssize_t levels = T.shape[1]
    if lo.shape[0] != n or hi.shape[0] != n or shift_m1.shape[0] != n:
        raise ValueError(f"minimality_hull_search: T has {n} rows but lo/hi/shift_m1 have "
                         f"{lo.shape[0]}/{hi.shape[0]}/{shift_m1.shape[0]}")
    status = np.empty(n, np.int32)
    idx = np.empty((n, 4), np.int64)
    if n == 0:
        return status, idx
    cdef int32_t[::1] st = status
    cdef int64_t[:, ::1] ix = idx
    with nogil:
        minimality_hulls(n, levels, &T[0, 0] if levels > 0 else <int64_t*>NULL, &lo[0], &hi[0], &shift_m1[0],
                         qmin, &st[0], &ix[0, 0])
    return status, idx
