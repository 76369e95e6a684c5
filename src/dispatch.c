/* dispatch.c: CPU detection, the ISA level in use, the public entry points
 * (which forward to that level's kernel table), OpenMP plumbing and fork
 * safety.  Compiled for the baseline only: nothing here needs a wide ISA. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#if defined(__SSE2__) || defined(__x86_64__)
#include <xmmintrin.h>
#endif
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif

#include "bigmodel_fast.h"
#include "bmf_kernels.h"
#include "bmf_omp.h"

#ifndef BMF_BUILD_CFLAGS
#define BMF_BUILD_CFLAGS "(unknown)"
#endif

/* ---- CPU features ------------------------------------------------------- */

#ifdef BMF_HAVE_X86_LEVELS
#include <cpuid.h>

static unsigned long long bmf_xgetbv0(void)
{
    unsigned eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

/* AMX's tile data is granted per process, on request (Linux 5.16 and later:
 * arch_prctl ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA); without it the first
 * tile instruction faults. */
static int bmf_request_amx(void)
{
#if defined(__linux__) && defined(SYS_arch_prctl)
    return syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) == 0;
#else
    return 0;
#endif
}

/* The widest level whose instructions the CPU has AND whose registers the OS
 * saves on a context switch (XCR0, tile state included), as the Intel SDM
 * prescribes. */
static int bmf_detect_isa(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return BMF_ISA_BASELINE;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
    if (!osxsave || !avx || !fma) return BMF_ISA_BASELINE;
    unsigned long long xcr0 = bmf_xgetbv0();
    if ((xcr0 & 0x6) != 0x6) return BMF_ISA_BASELINE; /* XMM and YMM state */
    if (__get_cpuid_max(0, NULL) < 7) return BMF_ISA_BASELINE;
    __cpuid_count(7, 0, a, b, c, d);
    int avx2 = (b >> 5) & 1;
    int avx512 = ((b >> 16) & 1) && ((b >> 17) & 1) /* F, DQ */
                 && ((b >> 30) & 1) && ((b >> 31) & 1); /* BW, VL */
    if (!avx2) return BMF_ISA_BASELINE;
    if (!avx512 || (xcr0 & 0xE6) != 0xE6) return BMF_ISA_AVX2; /* + opmask, ZMM */
    int amx = ((d >> 22) & 1) && ((d >> 24) & 1); /* AMX-BF16, AMX-TILE */
#ifdef BMF_HAVE_AMX
    if (amx && (xcr0 & 0x60000) == 0x60000 && bmf_request_amx()) return BMF_ISA_AMX;
#else
    (void)amx;
#endif
    return BMF_ISA_AVX512;
}
#else
static int bmf_detect_isa(void) { return BMF_ISA_BASELINE; }
#endif

static int bmf_cpu_level = -1;
static int bmf_level = -1;

/* Read and written with relaxed atomics: kernels may be called from many
 * threads while the lazy detection runs (every writer stores the same value). */
int bmf_cpu_isa(void)
{
    int level = __atomic_load_n(&bmf_cpu_level, __ATOMIC_RELAXED);
    if (level < 0) {
        level = bmf_detect_isa();
        __atomic_store_n(&bmf_cpu_level, level, __ATOMIC_RELAXED);
    }
    return level;
}

int bmf_get_isa(void)
{
    int level = __atomic_load_n(&bmf_level, __ATOMIC_RELAXED);
    if (level < 0) {
        level = bmf_cpu_isa();
        __atomic_store_n(&bmf_level, level, __ATOMIC_RELAXED);
    }
    return level;
}

int bmf_set_isa(int level)
{
    int cpu = bmf_cpu_isa();
    if (level < BMF_ISA_BASELINE) level = BMF_ISA_BASELINE;
    if (level > cpu) level = cpu;
    __atomic_store_n(&bmf_level, level, __ATOMIC_RELAXED);
    return level;
}

const char *bmf_isa_name(int level)
{
    switch (level) {
    case BMF_ISA_AVX2: return "avx2";
    case BMF_ISA_AVX512: return "avx512";
    case BMF_ISA_AMX: return "amx";
    default: return "baseline";
    }
}

static const bmf_kernel_table *bmf_table(void)
{
#ifdef BMF_HAVE_X86_LEVELS
    switch (bmf_get_isa()) {
#ifdef BMF_HAVE_AMX
    case BMF_ISA_AMX: return &bmf_kernels_amx;
#endif
    case BMF_ISA_AVX512: return &bmf_kernels_avx512;
    case BMF_ISA_AVX2: return &bmf_kernels_avx2;
    default: break;
    }
#endif
    return &bmf_kernels_baseline;
}

/* ---- OpenMP and fork ---------------------------------------------------- */

/* GNU libgomp keeps a pool of worker threads per master thread and shares it
 * with every library in the process that uses the same libgomp.  fork() copies
 * the pool's bookkeeping but none of its threads: the child's next parallel
 * region waits forever.  The pool may have been started by anyone (another
 * extension, a BLAS), not only by our kernels, so the test is not "did we run
 * a parallel region" but "did the parent have any thread besides the one that
 * forks": pool threads live as long as their master thread, so a parent with a
 * single thread has no pool to break.  When that cannot be told (no /proc),
 * the child is marked too.  A marked child (and every process it forks) runs
 * every kernel on the calling thread and never enters OpenMP. */
static volatile int bmf_in_forked_child;
static volatile int bmf_threads_at_fork = -1;

/* The "Threads:" count of /proc/self/status, or -1; only open/read/close. */
static int bmf_count_threads(void)
{
    char buf[8192];
    size_t len = 0;
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    for (;;) {
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n <= 0) break;
        len += (size_t)n;
        if (len == sizeof buf - 1) break;
    }
    close(fd);
    buf[len] = 0;
    const char *p = strstr(buf, "\nThreads:");
    if (!p) return -1;
    p += strlen("\nThreads:");
    while (*p == ' ' || *p == '\t') p++;
    if (*p < '0' || *p > '9') return -1;
    int count = 0;
    while (*p >= '0' && *p <= '9' && count < 1000000) count = count * 10 + (*p++ - '0');
    return count;
}

static void bmf_atfork_prepare(void) { bmf_threads_at_fork = bmf_count_threads(); }

static void bmf_atfork_child(void)
{
    if (bmf_threads_at_fork != 1) bmf_in_forked_child = 1;
}

static pthread_once_t bmf_atfork_once = PTHREAD_ONCE_INIT;
static void bmf_register_atfork(void)
{
    pthread_atfork(bmf_atfork_prepare, NULL, bmf_atfork_child);
}

#if defined(__GNUC__) || defined(__clang__)
/* Registered when the library loads: a fork before our first kernel call
 * can already inherit a pool someone else started. */
__attribute__((constructor)) static void bmf_init_fork_safety(void)
{
    pthread_once(&bmf_atfork_once, bmf_register_atfork);
}
#endif

/* ---- work buffers ---------------------------------------------------------
 * Each calling thread keeps its largest work buffer (up to
 * BMF_WORKSPACE_KEEP_MAX) between calls.  Freshly allocated, a buffer of a
 * few hundred KiB comes from mmap at every call, and its page faults cost
 * attention on short sequences about a fifth of its time.  A thread's buffer
 * is freed when the thread exits (the key's destructor). */
#define BMF_WORKSPACE_KEEP_MAX ((size_t)32 << 20)

typedef struct {
    void *buffer;
    size_t bytes;
} bmf_workspace;

static pthread_key_t bmf_workspace_key;
static int bmf_workspace_key_ok;
static pthread_once_t bmf_workspace_once = PTHREAD_ONCE_INIT;

static void bmf_workspace_destroy(void *arg)
{
    bmf_workspace *w = arg;
    free(w->buffer);
    free(w);
}

static void bmf_workspace_init(void)
{
    bmf_workspace_key_ok = pthread_key_create(&bmf_workspace_key, bmf_workspace_destroy) == 0;
}

static void *bmf_aligned_alloc(size_t bytes)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
    return p;
}

void *bmf_workspace_acquire(size_t bytes)
{
    if (bytes > BMF_WORKSPACE_KEEP_MAX) return bmf_aligned_alloc(bytes);
    pthread_once(&bmf_workspace_once, bmf_workspace_init);
    if (!bmf_workspace_key_ok) return bmf_aligned_alloc(bytes);
    bmf_workspace *w = pthread_getspecific(bmf_workspace_key);
    if (!w) {
        w = calloc(1, sizeof *w);
        if (!w || pthread_setspecific(bmf_workspace_key, w) != 0) {
            free(w);
            return bmf_aligned_alloc(bytes);
        }
    }
    if (w->bytes < bytes || !w->buffer) {
        free(w->buffer);
        w->bytes = 0;
        w->buffer = bmf_aligned_alloc(bytes);
        if (w->buffer) w->bytes = bytes;
    }
    return w->buffer;
}

void bmf_workspace_release(void *buffer)
{
    pthread_once(&bmf_workspace_once, bmf_workspace_init); /* acquire may have skipped it */
    bmf_workspace *w = bmf_workspace_key_ok ? pthread_getspecific(bmf_workspace_key) : NULL;
    if (!w || buffer != w->buffer) free(buffer); /* not the kept one */
}

int bmf_openmp_enabled(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int bmf_default_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* Subnormal operands and results make x86 floating point 10-50 times slower
 * (tools/denormal_check.py measured up to 56x).  Kernel bodies run with
 * flush-to-zero and denormals-are-zero, set on each thread that runs them and
 * restored after, so the caller's own arithmetic is untouched.  A subnormal
 * then counts as 0: an absolute change below 1.2e-38 (float) / 2.3e-308. */
static void bmf_run_body(bmf_parallel_body body, void *ctx, int tid, int nt)
{
#if defined(__SSE2__) || defined(__x86_64__)
    unsigned int saved = _mm_getcsr();
    _mm_setcsr(saved | 0x8040u); /* FTZ (bit 15) | DAZ (bit 6) */
    body(ctx, tid, nt);
    _mm_setcsr(saved);
#elif defined(__aarch64__)
    unsigned long saved;
    __asm__ volatile("mrs %0, fpcr" : "=r"(saved));
    __asm__ volatile("msr fpcr, %0" : : "r"(saved | (1ul << 24))); /* FZ */
    body(ctx, tid, nt);
    __asm__ volatile("msr fpcr, %0" : : "r"(saved));
#else
    body(ctx, tid, nt);
#endif
}

/* See bmf_kernels.h. */
double bmf_rnn_takeover_seconds = 1e-3;

/* See bmf_kernels.h. */
size_t bmf_gemm_b_cached_bytes = (size_t)1 << 20;

#if (defined(__GNUC__) || defined(__clang__)) && defined(_SC_LEVEL2_CACHE_SIZE)
__attribute__((constructor)) static void bmf_init_cache_size(void)
{
    long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE); /* 0 or -1 where unknown */
    if (l2 >= (64L << 10) && l2 <= (64L << 20)) bmf_gemm_b_cached_bytes = (size_t)l2 / 2;
}
#endif

void bmf_parallel(int n_threads, bmf_parallel_body body, void *ctx)
{
    pthread_once(&bmf_atfork_once, bmf_register_atfork);
#ifdef _OPENMP
    if (n_threads > 1 && !bmf_in_forked_child) {
        BMF_PRAGMA(omp parallel num_threads(n_threads))
        bmf_run_body(body, ctx, omp_get_thread_num(), omp_get_num_threads());
        return;
    }
#else
    (void)n_threads;
#endif
    bmf_run_body(body, ctx, 0, 1);
}

const char *bmf_build_info(void)
{
    return "compiler: "
#ifdef __VERSION__
#ifdef __clang__
           "clang "
#elif defined(__GNUC__)
           "gcc "
#endif
           __VERSION__
#else
           "unknown"
#endif
           "; flags: " BMF_BUILD_CFLAGS;
}

/* ---- public entry points ------------------------------------------------ */

int bmf_rnn_f32(size_t T, size_t B, size_t I, size_t H, const float *x,
                const float *h0, const float *Wx, const float *Wh,
                const float *b, float *out, int n_threads)
{
    return bmf_table()->rnn_f32(T, B, I, H, x, h0, Wx, Wh, b, out, n_threads);
}

int bmf_rnn_f64(size_t T, size_t B, size_t I, size_t H, const double *x,
                const double *h0, const double *Wx, const double *Wh,
                const double *b, double *out, int n_threads)
{
    return bmf_table()->rnn_f64(T, B, I, H, x, h0, Wx, Wh, b, out, n_threads);
}

int bmf_attention_f32(size_t Lq, size_t Lk, size_t B, size_t heads, size_t Dk,
                      size_t Dv, const float *Q, const float *K, const float *V,
                      const void *mask, int mask_is_bool, const ptrdiff_t mask_strides[4],
                      int causal, double scale, float *out, int n_threads)
{
    return bmf_table()->attention_f32(Lq, Lk, B, heads, Dk, Dv, Q, K, V, mask, mask_is_bool,
                                      mask_strides, causal, scale, out, n_threads);
}

int bmf_attention_f64(size_t Lq, size_t Lk, size_t B, size_t heads, size_t Dk,
                      size_t Dv, const double *Q, const double *K,
                      const double *V, const void *mask, int mask_is_bool,
                      const ptrdiff_t mask_strides[4], int causal, double scale,
                      double *out, int n_threads)
{
    return bmf_table()->attention_f64(Lq, Lk, B, heads, Dk, Dv, Q, K, V, mask, mask_is_bool,
                                      mask_strides, causal, scale, out, n_threads);
}
