/* bmf_omp.h: the only place the kernels touch OpenMP.
 *
 * Kernels never write an OpenMP pragma themselves.  They describe their
 * parallel work as a function body(ctx, thread_id, n_threads) and run it with
 * bmf_parallel(); inside, bmf_barrier() synchronises the team (and
 * bmf_progress_wait(), a lighter spinning wait, a loop's every step).  Without
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
#include <time.h>

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

/* Progress counters for a loop whose step t reads what the other threads
 * wrote at step t-1 (the RNN recurrence).  Each thread publishes how many
 * steps it has finished, on a cache line of its own, and waits only when it
 * is about to read the others' results: unlike a barrier, a thread can first
 * work on data of its own while theirs arrives, and each wait moves one line
 * per thread waited for.  A waiting thread spins with pause for a while, then
 * yields its core, so that a team on a busy machine does not spin against the
 * thread it waits for.  Zero-initialise one per thread of the team.  The same padded
 * counter serves as a slice's count of claimed steps (bmf_claim_step). */
typedef struct {
    size_t done;
    unsigned char pad[64 - sizeof(size_t)];
} bmf_progress;

/* About 4 us here (a pause is 20 ns on the README's machine): a step's
 * partner is normally that close.  Longer spins hurt where the kernels'
 * threads outnumber the cores (e.g. two Python threads each running a
 * 2-thread RNN on 2 cores): a waiter then often holds the core its partner
 * needs, and with 20,000 spins such a call took 370 ms instead of 9. */
#define BMF_SPINS_BEFORE_YIELD 200

static inline void bmf_progress_publish(bmf_progress *self, size_t steps)
{
    __atomic_store_n(&self->done, steps, __ATOMIC_RELEASE);
}

static inline double bmf_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* How much waiting a thread tolerates before it gives up on its team (see
 * bmf_wait_for): at least `min_seconds` of waiting past the spinning phase,
 * and at least `share` of the time since `start`.  NULL: no limit. */
typedef struct {
    double start, waited, min_seconds, share;
} bmf_patience;

/* Waits until counter->done >= target (acquire: the writes released before
 * it got there are then visible) and returns 1; or returns 0 once the time
 * waited past the spinning phase, added up over the calls that share
 * `patience`, exhausts it.  The clock is read only past the spinning phase,
 * so a short wait costs none. */
static inline int bmf_wait_for(const bmf_progress *counter, size_t target, bmf_patience *patience)
{
    for (unsigned spins = 0; spins < BMF_SPINS_BEFORE_YIELD; spins++) {
        if (__atomic_load_n(&counter->done, __ATOMIC_ACQUIRE) >= target) return 1;
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
    double since = patience ? bmf_seconds() : 0;
    while (__atomic_load_n(&counter->done, __ATOMIC_ACQUIRE) < target) {
        sched_yield();
        if (patience) {
            double now = bmf_seconds(), waited = patience->waited + (now - since);
            if (waited >= patience->min_seconds && waited >= patience->share * (now - patience->start)) {
                patience->waited = waited;
                return 0;
            }
        }
    }
    if (patience) patience->waited += bmf_seconds() - since;
    return 1;
}

/* Returns 1 once every thread of the team but `self` has finished `steps`
 * steps (their writes before bmf_progress_publish are then visible), or 0
 * when `patience` ran out first (bmf_wait_for). */
static inline int bmf_progress_wait(bmf_progress *team, int n_threads, int self, size_t steps,
                                    bmf_patience *patience)
{
    for (int j = 0; j < n_threads; j++)
        if (j != self && !bmf_wait_for(&team[j], steps, patience)) return 0;
    return 1;
}

/* Claims step `step` of a slice of work whose claim counter (starting at 0)
 * is `claims`: 1 for the one caller that moves it from step to step + 1, 0
 * for everyone else (the step is, or was, someone else's to do). */
static inline int bmf_claim_step(bmf_progress *claims, size_t step)
{
    size_t expected = step;
    return __atomic_compare_exchange_n(&claims->done, &expected, step + 1, 0, __ATOMIC_RELAXED,
                                       __ATOMIC_RELAXED);
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

/* Dynamic work sharing with affinity: [0, n) is split as bmf_split_range
 * into one range per thread, and a thread takes the items of its own range
 * first, then whatever is left of the others'.  A call repeated on the same
 * shape then gives a thread mostly the same items as last time, whose
 * buffers (its packed copies, its output rows) its own cache still holds,
 * where first come, first served moves half of them to the other core's
 * cache at every call; a thread slowed down by another process still
 * leaves its items to the rest.  `next` holds one counter per thread of the
 * team, zeroed before the region; the same rule as bmf_next_item applies. */
static inline size_t bmf_next_item_affine(bmf_progress *next, size_t n, int self, int n_threads)
{
    for (int k = 0; k < n_threads; k++) {
        int part = (self + k) % n_threads;
        size_t begin, end;
        bmf_split_range(n, part, n_threads, &begin, &end);
        /* a plain load first: a finished range costs no write to its line */
        if (__atomic_load_n(&next[part].done, __ATOMIC_RELAXED) >= end - begin) continue;
        size_t i = __atomic_fetch_add(&next[part].done, 1, __ATOMIC_RELAXED);
        if (i < end - begin) return begin + i;
    }
    return n;
}

#endif /* BMF_OMP_H */
