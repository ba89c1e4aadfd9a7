# cdef extern mirrors of the C++ headers in csrc/fxbn (declarations only).
from libc.stdint cimport int8_t, int32_t, int64_t
from libcpp cimport bool
from libcpp.string cimport string

# The one place C++ exceptions become Python exceptions (defined in _core.pyx).
cdef int raise_fxbn_error() except -1


cdef extern from "fxbn/reference.hpp" namespace "fxbn":
    cdef enum class Rounding(int):
        half_even
        half_up
        half_away
        floor

    cdef struct AffineParams:
        double a
        double b

    cdef struct BatchNormParams:
        double gamma, beta, mean, var, eps, in_scale, out_scale
        int64_t in_zero_point, out_zero_point

    int affine_sign(const AffineParams& p, int64_t x, int64_t twice_t) except +raise_fxbn_error
    int batchnorm_sign(const BatchNormParams& p, int64_t x, int64_t twice_t) except +raise_fxbn_error


cdef extern from "fxbn/solver.hpp" namespace "fxbn":
    cdef cppclass SolveOptions:
        int acc_bits
        int max_multiplier_bits
        int min_shift
        int max_shift


cdef extern from "fxbn/layer.hpp" namespace "fxbn":
    cdef struct LayerOutput:
        int64_t* multiplier
        int64_t* bias
        int32_t* shift
        int32_t* multiplier_bits
        int32_t* accumulator_bits

    cdef struct BatchNormArrays:
        const double* gamma
        const double* beta
        const double* mean
        const double* var
        const double* eps
        const double* in_scale
        const double* out_scale
        const int64_t* in_zero_point
        const int64_t* out_zero_point

    void solve_affine_layer(int64_t channels, const double* a, const double* b, const int64_t* lo,
                            const int64_t* hi, int64_t qmin, int64_t qmax, Rounding rounding,
                            const SolveOptions& opt, bool common_shift, const LayerOutput& out) except +raise_fxbn_error nogil
    void solve_batchnorm_layer(int64_t channels, const BatchNormArrays& p, const int64_t* lo, const int64_t* hi,
                               int64_t qmin, int64_t qmax, Rounding rounding, const SolveOptions& opt,
                               bool common_shift, const LayerOutput& out) except +raise_fxbn_error nogil
    void affine_breakpoints(int64_t channels, const double* a, const double* b, const int64_t* lo,
                            const int64_t* hi, int64_t qmin, int64_t qmax, Rounding rounding, int8_t* direction,
                            int64_t* T) except +raise_fxbn_error nogil
    void batchnorm_breakpoints(int64_t channels, const BatchNormArrays& p, const int64_t* lo, const int64_t* hi,
                               int64_t qmin, int64_t qmax, Rounding rounding, int8_t* direction,
                               int64_t* T) except +raise_fxbn_error nogil
    void fixed_point_breakpoints(int64_t channels, const int64_t* multiplier, const int64_t* bias,
                                 const int32_t* shift, const int8_t* direction, const int64_t* lo,
                                 const int64_t* hi, int64_t qmin, int64_t qmax, int64_t* T,
                                 int8_t* ok) except +raise_fxbn_error nogil


cdef extern from "fxbn/kernel.hpp" namespace "fxbn":
    cdef enum class DType(int):
        int8
        uint8
        int16
        uint16
        int32

    cdef cppclass KernelCache:
        pass
    KernelCache* new_kernel_cache() except +raise_fxbn_error
    void delete_kernel_cache(KernelCache* cache)
    int64_t byte_template_channels(KernelCache* cache, DType in_type, DType out_type)
    void byte_template_params(bool in_signed, bool out_signed, int64_t channels, const int64_t* multiplier,
                              const int64_t* bias, const int32_t* shift, const int64_t* lo, const int64_t* hi,
                              int64_t qmin, int64_t qmax, bool find, int32_t* params,
                              int8_t* ok) except +raise_fxbn_error nogil

    cdef struct KernelParams:
        const int64_t* multiplier
        const int64_t* bias
        const int32_t* shift
        const int64_t* lo
        const int64_t* hi
        int64_t qmin, qmax
        bool acc32
        bool keep_out_on_error
        KernelCache* cache

    int64_t apply(DType in_type, const void* x, DType out_type, void* y, int64_t outer, int64_t channels,
                  int64_t inner, const KernelParams& p, int threads) except +raise_fxbn_error nogil
    int64_t first_out_of_range(DType in_type, const void* x, int64_t outer, int64_t channels, int64_t inner,
                               const int64_t* lo, const int64_t* hi) except +raise_fxbn_error nogil
    const char* kernel_isa_cpp "fxbn::kernel_isa"()
    bool set_kernel_isa(const char* name)


cdef extern from "fxbn/errors.hpp" namespace "fxbn":
    int classify_current_exception(string* message)



cdef extern from "fxbn/add.hpp" namespace "fxbn":
    cdef struct AddParams:
        double s1, s2, s_out
        int64_t z1, z2, z_out
        int64_t l1, h1, l2, h2
        int64_t qmin, qmax
        Rounding rounding

    cdef struct AddSolution:
        int64_t a1, a2, bias
        int shift, multiplier_bits, accumulator_bits

    cdef struct AddKernelParams:
        int64_t a1, a2, bias
        int shift
        int64_t l1, h1, l2, h2
        int64_t qmin, qmax
        bool acc32
        bool keep_out_on_error

    int add_sign(const AddParams& p, int64_t x1, int64_t x2, int64_t twice_t) except +raise_fxbn_error
    int64_t add_reference(const AddParams& p, int64_t x1, int64_t x2) except +raise_fxbn_error
    AddSolution solve_add(const AddParams& p, int max_shift, int acc_bits) except +raise_fxbn_error nogil
    bool add_feasible_at(const AddParams& p, int s) except +raise_fxbn_error nogil
    bool add_check_all(const AddParams& p, int64_t a1, int64_t a2, int64_t bias, int shift, int64_t* bad1,
                       int64_t* bad2) except +raise_fxbn_error nogil
    int64_t add_apply(DType t1, const void* x1, DType t2, const void* x2, int64_t period, DType tout, void* y,
                      int64_t n, const AddKernelParams& p, int threads, int* which,
                      bool keep_y) except +raise_fxbn_error nogil


cdef extern from "fxbn/minimality.hpp" namespace "fxbn":
    void minimality_hulls(int64_t channels, int64_t levels, const int64_t* T, const int64_t* lo, const int64_t* hi,
                          const int32_t* shift_m1, int64_t qmin, int32_t* status, int64_t* idx) nogil
