/* bmf_kernels.h: the table of kernels that each ISA level provides, and the
 * tables themselves (defined by kernels_<isa>.c, chosen by dispatch.c). */
#ifndef BMF_KERNELS_H
#define BMF_KERNELS_H

#include <stddef.h>

typedef struct {
    int (*rnn_f32)(size_t, size_t, size_t, size_t, const float *, const float *,
                   const float *, const float *, const float *, float *, int);
    int (*rnn_f64)(size_t, size_t, size_t, size_t, const double *,
                   const double *, const double *, const double *,
                   const double *, double *, int);
    int (*attention_f32)(size_t, size_t, size_t, size_t, size_t, size_t,
                         const float *, const float *, const float *,
                         const void *, int, const ptrdiff_t *, int, double, float *,
                         int);
    int (*attention_f64)(size_t, size_t, size_t, size_t, size_t, size_t,
                         const double *, const double *, const double *,
                         const void *, int, const ptrdiff_t *, int, double,
                         double *, int);
} bmf_kernel_table;

/* A 64-byte aligned work buffer of at least `bytes` for one call on the
 * calling thread (dispatch.c): the thread's kept buffer when it is not too
 * large, else a fresh one; NULL when out of memory.  Hand it back with
 * bmf_workspace_release before the call returns. */
void *bmf_workspace_acquire(size_t bytes);
void bmf_workspace_release(void *buffer);

/* When an RNN thread has waited for the others' steps, past the spinning
 * phase, at least bmf_rnn_takeover_seconds in all and a BMF_RNN_TAKEOVER_SHARE
 * of its time, its team is not running side by side: another process or
 * pool holds a core (a descheduled thread costs a scheduler slice per wait),
 * or two of its threads share one (each step then costs a switch between
 * them).  It then runs every thread's remaining steps itself, at one
 * thread's speed.  A usual wait is a few microseconds.  (The value is in
 * dispatch.c; the C test sets 0 to force a take-over.) */
extern double bmf_rnn_takeover_seconds;
#define BMF_RNN_TAKEOVER_SHARE 0.5

/* A matrix product whose B (its share of the panels) passes this many bytes
 * takes B a group of panels at a time for all its rows (gemm_impl.h):
 * half the L2 the OS reports (1 MiB on the 2 MiB L2 the kernels were tuned
 * on), 1 MiB where it reports none.  Set once when the library loads
 * (dispatch.c); only the order of the tiles depends on it, never a bit
 * (the C test checks at 0 and at SIZE_MAX). */
extern size_t bmf_gemm_b_cached_bytes;

extern const bmf_kernel_table bmf_kernels_baseline;
#if defined(__x86_64__) || defined(_M_X64)
#define BMF_HAVE_X86_LEVELS 1
extern const bmf_kernel_table bmf_kernels_avx2;
extern const bmf_kernel_table bmf_kernels_avx512;
/* The AMX level needs the amx-tile and amx-bf16 targets: gcc 11, clang 12. */
#if (defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 11)
#define BMF_HAVE_AMX 1
extern const bmf_kernel_table bmf_kernels_amx;
#endif
#endif

#endif /* BMF_KERNELS_H */
