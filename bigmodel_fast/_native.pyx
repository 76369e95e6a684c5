# cython: language_level=3, boundscheck=False, wraparound=False
"""Thin bindings over the C core (src/bigmodel_fast.h).

Callers (bigmodel_fast._api) pass arrays already checked by _validate.py:
C-contiguous, all of one dtype (float32 or float64), out not overlapping an
input.  Each kernel runs with the GIL released.
"""
cimport numpy as cnp

cnp.import_array()

from numpy import float32, float64

cdef extern from "bigmodel_fast.h" nogil:
    int BMF_ERR_NOMEM
    int bmf_cpu_isa() noexcept
    int bmf_get_isa() noexcept
    int bmf_set_isa(int level) noexcept
    const char *bmf_isa_name(int level) noexcept
    int bmf_openmp_enabled() noexcept
    int bmf_default_threads() noexcept
    const char *bmf_build_info() noexcept
    int bmf_rnn_f32(size_t T, size_t B, size_t I, size_t H, const float *x,
                    const float *h0, const float *Wx, const float *Wh,
                    const float *b, float *out, int n_threads) noexcept
    int bmf_rnn_f64(size_t T, size_t B, size_t I, size_t H, const double *x,
                    const double *h0, const double *Wx, const double *Wh,
                    const double *b, double *out, int n_threads) noexcept
    int bmf_attention_f32(size_t Lq, size_t Lk, size_t B, size_t heads,
                          size_t Dk, size_t Dv, const float *Q, const float *K,
                          const float *V, const void *mask, int mask_is_bool,
                          const Py_ssize_t *mask_strides, int causal,
                          double scale, float *out, int n_threads) noexcept
    int bmf_attention_f64(size_t Lq, size_t Lk, size_t B, size_t heads,
                          size_t Dk, size_t Dv, const double *Q,
                          const double *K, const double *V, const void *mask,
                          int mask_is_bool, const Py_ssize_t *mask_strides, int causal,
                          double scale, double *out, int n_threads) noexcept

ISA_LEVELS = ("baseline", "avx2", "avx512", "amx")


def cpu_isa():
    """The widest ISA level this CPU (and OS) supports."""
    return ISA_LEVELS[bmf_cpu_isa()]


def get_isa():
    """The ISA level the kernels use now."""
    return ISA_LEVELS[bmf_get_isa()]


def set_isa(name):
    """Cap the ISA level at `name` (never above the CPU's); returns the level in use."""
    return ISA_LEVELS[bmf_set_isa(ISA_LEVELS.index(name))]


def openmp_enabled():
    return bool(bmf_openmp_enabled())


def default_threads():
    """omp_get_max_threads() in the calling thread (1 without OpenMP)."""
    return bmf_default_threads()


def build_info():
    return bmf_build_info().decode()


cdef inline void *data(cnp.ndarray a):
    return cnp.PyArray_DATA(a)


def empty_aligned(tuple shape, dtype):
    """numpy.empty(shape, dtype) (float32 or float64) whose data starts on a
    64-byte boundary.

    The RNN's threads then own whole cache lines of the output, which lets
    each one sum its steps in segments (src/rnn_impl.h); NumPy's large
    arrays start 16 or 32 bytes past a line.
    """
    cdef int typenum
    if dtype == float32:
        typenum = cnp.NPY_FLOAT32
    elif dtype == float64:
        typenum = cnp.NPY_FLOAT64
    else:
        raise TypeError(f"empty_aligned: float32 or float64, not {dtype}")
    cdef int ndim = len(shape), i
    cdef cnp.npy_intp dims[8]
    cdef cnp.npy_intp size = 64
    if ndim > 8:
        raise ValueError("empty_aligned: at most 8 dimensions")
    for i in range(ndim):
        dims[i] = shape[i]
    size += (4 if typenum == cnp.NPY_FLOAT32 else 8) * cnp.PyArray_MultiplyList(dims, ndim)
    cdef cnp.ndarray buf = cnp.PyArray_EMPTY(1, &size, cnp.NPY_UINT8, 0)
    cdef char *start = <char *>cnp.PyArray_DATA(buf)
    start += (64 - <size_t>start % 64) % 64
    cdef cnp.ndarray arr = cnp.PyArray_SimpleNewFromData(ndim, dims, typenum, start)
    cnp.set_array_base(arr, buf)
    return arr


cdef check(int rc):
    if rc == BMF_ERR_NOMEM:
        raise MemoryError("bigmodel_fast: cannot allocate the kernel's work buffers")


def rnn(cnp.ndarray x, cnp.ndarray h0, cnp.ndarray Wx, cnp.ndarray Wh,
        cnp.ndarray b, cnp.ndarray out, int num_threads):
    cdef size_t T = x.shape[0], B = x.shape[1], I = x.shape[2], H = out.shape[2]
    cdef void *px = data(x)
    cdef void *ph0 = data(h0)
    cdef void *pWx = data(Wx)
    cdef void *pWh = data(Wh)
    cdef void *pb = data(b)
    cdef void *po = data(out)
    cdef int rc
    if cnp.PyArray_TYPE(out) == cnp.NPY_FLOAT32:
        with nogil:
            rc = bmf_rnn_f32(T, B, I, H, <float *>px, <float *>ph0, <float *>pWx,
                             <float *>pWh, <float *>pb, <float *>po, num_threads)
    else:
        with nogil:
            rc = bmf_rnn_f64(T, B, I, H, <double *>px, <double *>ph0, <double *>pWx,
                             <double *>pWh, <double *>pb, <double *>po, num_threads)
    check(rc)


def attention(cnp.ndarray Q, cnp.ndarray K, cnp.ndarray V, mask, size_t heads,
              bint causal, double scale, cnp.ndarray out, int num_threads):
    """mask: None, or a (B, heads, Lq, Lk) broadcast view whose base is C-contiguous,
    of bool (True = may attend) or of Q's dtype (added to the scores)."""
    cdef size_t Lq = Q.shape[0], Lk = K.shape[0], B = Q.shape[1]
    cdef size_t Dk = Q.shape[2] // heads, Dv = V.shape[2] // heads
    cdef Py_ssize_t strides[4]
    cdef void *pm = NULL
    cdef void *pq = data(Q)
    cdef void *pk = data(K)
    cdef void *pv = data(V)
    cdef void *po = data(out)
    cdef cnp.ndarray m
    cdef int rc, i, mask_is_bool = 0
    if mask is not None:
        m = mask
        pm = data(m)
        mask_is_bool = cnp.PyArray_TYPE(m) == cnp.NPY_BOOL
        for i in range(4):
            strides[i] = m.strides[i] // m.itemsize
    if cnp.PyArray_TYPE(out) == cnp.NPY_FLOAT32:
        with nogil:
            rc = bmf_attention_f32(Lq, Lk, B, heads, Dk, Dv, <float *>pq, <float *>pk,
                                   <float *>pv, pm, mask_is_bool, strides, causal, scale,
                                   <float *>po, num_threads)
    else:
        with nogil:
            rc = bmf_attention_f64(Lq, Lk, B, heads, Dk, Dv, <double *>pq, <double *>pk,
                                   <double *>pv, pm, mask_is_bool, strides, causal, scale,
                                   <double *>po, num_threads)
    check(rc)
