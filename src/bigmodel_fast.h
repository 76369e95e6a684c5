/* bigmodel_fast.h: the C core's public API.  It stands alone: the Python
 * package binds it with Cython, src/tests/test_kernels.c calls it directly.
 *
 * All arrays are C-contiguous in the layouts of SPEC.md:
 * (complex.h makes `I` a macro, so the prototypes spell the sizes out.)
 *   rnn:       x (T, B, I), h0 (B, H), Wx (H, I), Wh (H, H), b (H), out (T, B, H)
 *   attention: Q (Lq, B, heads*Dk), K (Lk, B, heads*Dk), V (Lk, B, heads*Dv),
 *              out (Lq, B, heads*Dv); mask (optional) is read through four
 *              element strides (batch, head, query, key), any of which may be 0
 *              for a broadcast dimension: with mask_is_bool == 0 it holds
 *              values of the call's type added to the scores (-inf removes a
 *              key), with mask_is_bool == 1 bytes (nonzero = may attend).
 * Sizes are size_t and strides ptrdiff_t throughout: products may pass 2^31.
 * out must not overlap any input.  Results do not depend on n_threads.
 * Return value: 0, or BMF_ERR_NOMEM when a work buffer cannot be allocated
 * (out is then unspecified).
 */
#ifndef BIGMODEL_FAST_H
#define BIGMODEL_FAST_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BMF_ERR_NOMEM 1

enum bmf_isa { BMF_ISA_BASELINE = 0, BMF_ISA_AVX2 = 1, BMF_ISA_AVX512 = 2, BMF_ISA_AMX = 3 };

int bmf_cpu_isa(void);                 /* widest level this CPU and OS support */
int bmf_get_isa(void);                 /* level in use */
int bmf_set_isa(int level);            /* caps the level in use; returns it */
const char *bmf_isa_name(int level);   /* "baseline", "avx2", "avx512", "amx" */
int bmf_openmp_enabled(void);
int bmf_default_threads(void);         /* omp_get_max_threads(), or 1 */
const char *bmf_build_info(void);

int bmf_rnn_f32(size_t steps, size_t batch, size_t n_in, size_t n_hidden, const float *x,
                const float *h0, const float *Wx, const float *Wh,
                const float *b, float *out, int n_threads);
int bmf_rnn_f64(size_t steps, size_t batch, size_t n_in, size_t n_hidden, const double *x,
                const double *h0, const double *Wx, const double *Wh,
                const double *b, double *out, int n_threads);

int bmf_attention_f32(size_t Lq, size_t Lk, size_t B, size_t heads, size_t Dk,
                      size_t Dv, const float *Q, const float *K, const float *V,
                      const void *mask, int mask_is_bool, const ptrdiff_t mask_strides[4],
                      int causal, double scale, float *out, int n_threads);
int bmf_attention_f64(size_t Lq, size_t Lk, size_t B, size_t heads, size_t Dk,
                      size_t Dv, const double *Q, const double *K,
                      const double *V, const void *mask, int mask_is_bool,
                      const ptrdiff_t mask_strides[4], int causal, double scale,
                      double *out, int n_threads);

#ifdef __cplusplus
}
#endif

#endif /* BIGMODEL_FAST_H */
