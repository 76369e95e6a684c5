"""Many Python threads at once, and the GIL.

SPEC: the kernels release the GIL and are safe to call from many Python
threads at once; results are bitwise identical for every num_threads.  Every
wait here has a timeout, so a deadlock fails instead of hanging CI.
"""
import threading
import time

import numpy as np
import pytest

import bigmodel_fast as bf

N_THREADS = 8
ROUNDS = 4
TIMEOUT = 120


def _jobs():
    """A mix of calls to both kernels: dtypes, heads, masks, causal, out=,
    non-contiguous inputs and explicit thread counts."""
    rng = np.random.default_rng(99)
    jobs = []
    for dtype in (np.float64, np.float32):
        d = lambda *s: rng.standard_normal(s).astype(dtype)
        T, B, I, H = 9, 8, 24, 64
        rnn_args = (d(T, B, I), d(B, H), d(H, I) * 0.3, d(H, H) * 0.15, d(H))
        Lq, Lk, Bt, E = 70, 600, 2, 32
        Q, K, V = d(Lq, Bt, E), d(Lk, Bt, E), d(Lk, Bt, E)
        mask = np.where(rng.random((Bt, Lq, Lk)) < 0.2, -np.inf, 0).astype(dtype)
        for nt in (None, 1, 2, 3):
            jobs.append((bf.rnn, rnn_args, {"num_threads": nt}))
            jobs.append((bf.attention, (Q, K, V), {"num_heads": 2, "causal": True, "num_threads": nt}))
            jobs.append((bf.attention, (Q[::2], K, V, mask[:, ::2]), {"num_threads": nt}))
        jobs.append((bf.attention, (Q[:1], K, V), {}))        # decoding: keys split into chunks
        jobs.append((bf.rnn, (rnn_args[0][:, :, :1].copy(order="F"),) + rnn_args[1:2]
                     + (rnn_args[2][:, :1],) + rnn_args[3:], {}))
    return jobs


@pytest.fixture
def _blas_single_threaded():
    """NumPy's BLAS (used by the NumPy backend and nothing else here) on one
    thread: with eight callers its own thread pool only oversubscribes the
    machine (40 s instead of 2 s on 2 cores) and is not what is tested."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield


def test_eight_threads_get_the_serial_results(_blas_single_threaded):
    jobs = _jobs()
    serial = [fn(*args, **kw) for fn, args, kw in jobs]
    start = threading.Barrier(N_THREADS, timeout=TIMEOUT)
    errors, mismatches = [], []

    def worker(seed):
        try:
            order = np.random.default_rng(seed).permutation(len(jobs))
            start.wait()
            for _ in range(ROUNDS):
                for k in order:
                    fn, args, kw = jobs[k]
                    if k % 2:   # half the calls write into out=
                        out = np.empty_like(serial[k])
                        got = fn(*args, out=out, **kw)
                        assert got is out
                    else:
                        got = fn(*args, **kw)
                    if got.dtype != serial[k].dtype or not np.array_equal(got, serial[k]):
                        mismatches.append((seed, k))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(N_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors[0]
    assert not mismatches, f"{len(mismatches)} results differ from the serial ones, e.g. job {mismatches[0][1]}"
    # the inputs were not modified by all that
    for (fn, args, kw), want in zip(jobs, serial):
        np.testing.assert_array_equal(fn(*args, **kw), want)


def _big_attention():
    rng = np.random.default_rng(5)
    Q, K, V = (rng.standard_normal((3072, 1, 64), dtype=np.float32) for _ in range(3))
    return lambda: bf.attention(Q, K, V, num_threads=1)


def _big_rnn():
    rng = np.random.default_rng(6)
    T, B, I, H = 1200, 8, 256, 256
    x = rng.standard_normal((T, B, I), dtype=np.float32)
    Wx = rng.standard_normal((H, I), dtype=np.float32) * 0.05
    Wh = rng.standard_normal((H, H), dtype=np.float32) * 0.05
    h0, b = np.zeros((B, H), np.float32), np.zeros(H, np.float32)
    return lambda: bf.rnn(x, h0, Wx, Wh, b, num_threads=1)


@pytest.mark.skipif(bf.backend() != "native", reason="the GIL promise is the native kernels'; "
                    "the NumPy fallback holds the GIL between NumPy operations")
@pytest.mark.parametrize("make_call", [_big_attention, _big_rnn], ids=["attention", "rnn"])
def test_gil_is_released_during_a_kernel(make_call):
    """One thread runs a kernel of a few tenths of a second; the main thread
    counts how often it runs Python code while that thread is inside the
    kernel.  Each loop turn yields the GIL (time.sleep(0)), so with the GIL
    held by the kernel the main thread could look at most once or twice (when
    the kernel returns, before the flag is cleared); with the GIL released it
    looks thousands of times."""
    call = make_call()
    call()  # warm up (thread pool, page faults)
    # Idle OpenMP workers of earlier tests may still spin (LLVM's runtime: 200 ms,
    # KMP_BLOCKTIME) and take the cores both Python threads need on a small machine.
    time.sleep(0.3)
    state = {"in_kernel": False}

    def worker():
        state["in_kernel"] = True
        call()
        state["in_kernel"] = False

    seen = 0
    t = threading.Thread(target=worker)
    t.start()
    deadline = time.monotonic() + TIMEOUT
    while t.is_alive() and time.monotonic() < deadline:
        if state["in_kernel"]:
            seen += 1
        time.sleep(0)
    t.join(TIMEOUT)
    assert not t.is_alive()
    assert seen >= 50, f"the main thread ran only {seen} times while the kernel ran: GIL held?"
