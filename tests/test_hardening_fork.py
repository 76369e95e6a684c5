"""fork: a process forked after its parent used the kernels keeps working.

GNU libgomp keeps a pool of worker threads per master thread; fork copies the
pool's bookkeeping but not its threads, so the child's next parallel region
waits forever for threads that do not exist.  dispatch.c's pthread_atfork
handler makes such a child run every kernel on the calling thread.  These
tests fork the way PyTorch's DataLoader and multiprocessing do (the "fork"
start method) and put a timeout on every wait, so a hang fails the test
instead of hanging CI.  Results are compared bitwise with the parent's: the
kernels give the same bits for every thread count (SPEC).
"""
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import bigmodel_fast as bf

pytestmark = pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(),
                                reason="needs the fork start method (POSIX)")

CTX = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None
TIMEOUT = 60  # seconds; the calls themselves take milliseconds


def _inputs(dtype):
    """Shapes big enough that the kernels use 2+ threads (several query
    blocks, and B*H*H past the RNN's per-thread threshold)."""
    rng = np.random.default_rng(7)
    d = lambda *s: rng.standard_normal(s).astype(dtype)
    T, B, I, H = 6, 8, 16, 64
    rnn_args = (d(T, B, I), d(B, H), d(H, I) * 0.2, d(H, H) * 0.1, d(H))
    Lq, Lk, Bt, E = 100, 700, 2, 32
    att_args = (d(Lq, Bt, E), d(Lk, Bt, E), d(Lk, Bt, E))
    return rnn_args, att_args


def _compute(num_threads):
    out = []
    for dtype in (np.float64, np.float32):
        rnn_args, att_args = _inputs(dtype)
        out.append(bf.rnn(*rnn_args, num_threads=num_threads))
        out.append(bf.attention(*att_args, num_heads=2, causal=True, num_threads=num_threads))
    return out


def _several_calls():
    """What a forked worker does: several calls, every thread count."""
    return [_compute(nt) for nt in (None, 2, 1, 3, None)]


def _assert_same(results, expected):
    for got_set in results:
        assert len(got_set) == len(expected)
        for got, want in zip(got_set, expected):
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want)


def _run_forked(fn, timeout=TIMEOUT):
    """Run fn() in a child forked now; return its result, or fail on a hang."""
    recv, send = CTX.Pipe(duplex=False)

    def child():
        try:
            send.send(("ok", fn()))
        except BaseException as exc:  # report, never hang the parent
            send.send(("error", repr(exc)))

    proc = CTX.Process(target=child)
    proc.start()
    send.close()
    try:
        if not recv.poll(timeout):
            pytest.fail(f"forked child did not answer within {timeout} s (hung)")
        status, value = recv.recv()
    finally:
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()
    assert status == "ok", f"forked child failed: {value}"
    assert proc.exitcode == 0
    return value


def test_pool_worker_after_parent_used_threads():
    expected = _compute(2)              # the parent runs the kernels with 2 threads
    with CTX.Pool(2) as pool:
        jobs = [pool.apply_async(_several_calls) for _ in range(2)]
        results = [job.get(timeout=TIMEOUT) for job in jobs]
    for res in results:
        _assert_same(res, expected)
    _assert_same([_compute(2), _compute(None)], expected)  # the parent still works


def test_child_and_grandchild_keep_working():
    expected = _compute(2)

    def child():
        mine = _several_calls()
        # The child (which ran kernels after its fork) forks again.
        grand = _run_forked(_several_calls)
        return mine, grand

    mine, grand = _run_forked(child)
    _assert_same(mine, expected)
    _assert_same(grand, expected)


def test_fork_from_a_thread_that_used_the_kernels():
    expected = _compute(None)
    box = {}

    def worker():
        try:
            box["own"] = _compute(2)   # this thread's OpenMP pool now has threads
            box["child"] = _run_forked(_several_calls)
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=worker)
    t.start()
    t.join(2 * TIMEOUT)
    assert not t.is_alive(), "thread forking a child hung"
    if "error" in box:
        raise box["error"]
    _assert_same([box["own"]], expected)
    _assert_same(box["child"], expected)


def _libgomp_path():
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1]
            if "libgomp" in os.path.basename(path):
                return path
    return None


FOREIGN_OPENMP = textwrap.dedent(r"""
    import ctypes, multiprocessing, sys
    import numpy as np
    import bigmodel_fast as bf
    # Another library in this process (anything linked to the same libgomp)
    # runs a 2-thread parallel region; bigmodel_fast has run nothing yet.
    gomp = ctypes.CDLL(sys.argv[1])
    body = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(lambda data: None)
    gomp.GOMP_parallel.argtypes = [type(body), ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    gomp.GOMP_parallel(body, None, 2, 0)
    rng = np.random.default_rng(0)
    Q, K, V = (rng.standard_normal((100, 2, 32)) for _ in range(3))
    def work():
        return bf.attention(Q, K, V, num_threads=2)
    with multiprocessing.get_context("fork").Pool(1) as pool:
        got = pool.apply_async(work).get(timeout=float(sys.argv[2]))
    assert np.array_equal(got, bf.attention(Q, K, V, num_threads=2))
    print("ok")
""")


@pytest.mark.skipif(not bf.openmp_enabled(), reason="native OpenMP build only: the NumPy "
                    "backend and a serial build have no OpenMP thread pool to break")
def test_child_after_another_library_used_openmp():
    """libgomp's pool is per master thread, shared by every library in the
    process: a pool started by someone else breaks in the child just as ours
    does, even when the parent never ran a bigmodel_fast kernel."""
    gomp = _libgomp_path()
    if gomp is None:
        pytest.skip("the extension does not use GNU libgomp (no libgomp in /proc/self/maps)")
    proc = subprocess.run([sys.executable, "-c", FOREIGN_OPENMP, gomp, "30"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", (
        f"child forked after another library used OpenMP failed or hung "
        f"(rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}")
