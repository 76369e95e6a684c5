/* bmf_omp.h: the only place the kernels touch OpenMP.
 *
 * Kernels never write an OpenMP pragma themselves.  They describe their
 * parallel work as a function body(ctx, thread_id, n_threads) and run it with
 * bmf_parallel(); inside, bmf_barrier() synchronises the team (and
 * bmf_step_wait(), a lighter spinning barrier, a loop's every step).  Without
 * OpenMP (a compiler lacking it) everything here degrades to a serial call and
 * a no-op barrier, so the kernels build and give the same bits either way.
 *
 * A process forked after the parent ran a parallel region (ours or any other
 * library's: the GNU libgomp pool is shared) inherits a thread pool whose
 * threads do not exist in the child; its next parallel region would hang.
 * dispatch.c registers, when the library loads, a pthread_atfork handler that
 * marks a child whose parent had more than one thread (or an unknown count);
 * from then on that child runs every kernel on the calling thread alone,
 * never entering OpenMP.
 */
#ifndef BMF_OMP_H
#define BMF_OMP_H

#include <sched.h>
#include <stddef.h>

#ifdef _OPENMP
#include <omp.h>
#define BMF_PRAGMA(text) _Pragma(#text)
#else
#define BMF_PRAGMA(text)
#endif

typedef void (*bmf_parallel_body)(void *ctx, int thread_id, int n_threads);

/* Defined in dispatch.c (one copy shared by every ISA's translation unit). */
void bmf_parallel(int n_threads, bmf_parallel_body body, void *ctx);

/* Synchronise the team of the enclosing bmf_parallel.  With a team of one
 * nothing is executed: a serial body may run inside the CALLER's own parallel
 * region (a C program calling the kernels from OpenMP threads), where an
 * orphaned barrier would bind to that region and could wait forever. */
static inline void bmf_barrier(int n_threads)
{
    if (n_threads > 1) {
        BMF_PRAGMA(omp barrier)
    }
}

/* A barrier for a loop that meets once per step (the RNN recurrence): the
 * threads count in on a shared counter and wait for the last to bump the
 * generation (a sense-reversing barrier).  On 2-core VMs it costs far less
 * than libgomp's barrier, which a short step pays every time.  A waiting
 * thread spins with pause for a while, then yields its core, so that a team
 * on a busy machine does not spin against the thread it waits for.  Zero-
 * initialise one per parallel region; with a team of one it does nothing. */
typedef struct {
    size_t arrived, generation;
} bmf_step_barrier;

#define BMF_SPINS_BEFORE_YIELD 20000

static inline void bmf_step_wait(bmf_step_barrier *b, int n_threads)
{
    if (n_threads <= 1) return;
    size_t gen = __atomic_load_n(&b->generation, __ATOMIC_ACQUIRE);
    if (__atomic_add_fetch(&b->arrived, 1, __ATOMIC_ACQ_REL) == (size_t)n_threads) {
        __atomic_store_n(&b->arrived, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&b->generation, gen + 1, __ATOMIC_RELEASE);
        return;
    }
    for (unsigned spins = 0; __atomic_load_n(&b->generation, __ATOMIC_ACQUIRE) == gen;) {
        if (spins < BMF_SPINS_BEFORE_YIELD) {
            spins++;
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        } else {
            sched_yield();
        }
    }
}

/* Static, contiguous split of [0, n) into n_parts nearly equal ranges; part
 * `part` gets [*begin, *end).  Depends only on (n, part, n_parts). */
static inline void bmf_split_range(size_t n, int part, int n_parts,
                                   size_t *begin, size_t *end)
{
    size_t base = n / (size_t)n_parts, extra = n % (size_t)n_parts;
    size_t p = (size_t)part;
    *begin = p * base + (p < extra ? p : extra);
    *end = *begin + base + (p < extra ? 1 : 0);
}

/* Dynamic work sharing: each call hands out the next index of [0, n) from a
 * shared counter that starts at 0.  A thread slowed down by another process
 * (e.g. BLAS worker threads still spinning after a NumPy call) then simply
 * takes fewer items.  Only for items whose results do not depend on which
 * thread computes them, so results stay bitwise identical. */
static inline size_t bmf_next_item(size_t *counter)
{
    return __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
}

#endif /* BMF_OMP_H */
