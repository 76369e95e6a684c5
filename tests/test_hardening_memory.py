"""Memory: no growth over thousands of calls (failed ones included), the
attention kernel never builds the (Lq, Lk) score matrix, and running out of
memory raises MemoryError instead of crashing.

Resident memory is read from /proc/self/status (VmRSS) and peak memory from
getrusage(RUSAGE_SELF).ru_maxrss in a fresh interpreter, so that nothing
else in the test run moves the peak.
"""
import gc
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import bigmodel_fast as bf

LINUX_PROC = os.path.exists("/proc/self/status")
native_only = pytest.mark.skipif(
    bf.backend() != "native",
    reason="a property of the native kernels: the NumPy fallback builds the score matrix "
           "by design (it is the readable reference)")


def _rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _call_mix():
    """One round of calls.  Every kind allocates enough per call (packed
    weights, score tiles, copies of inputs, error messages holding inputs) that
    a leak of it would pass 20 MiB over 3000 calls."""
    rng = np.random.default_rng(1)
    f32, f64 = np.float32, np.float64
    T, B, I, H = 3, 4, 96, 96                        # packed Wx and Wh: ~36 KiB each (f32)
    rnn64 = (rng.standard_normal((T, B, I)), rng.standard_normal((B, H)),
             rng.standard_normal((H, I)) * 0.1, rng.standard_normal((H, H)) * 0.1,
             rng.standard_normal(H))
    rnn32 = tuple(a.astype(f32) for a in rnn64)
    Q, K, V = (rng.standard_normal((40, 2, 32)) for _ in range(3))   # tiles: ~60 KiB
    Q32, K32, V32 = Q.astype(f32), K.astype(f32), V.astype(f32)
    mask = rng.random((2, 40, 40)) < 0.8
    big_bad = np.zeros((64, 64, 8))                   # 256 KiB, rejected
    out_rnn = np.empty((T, B, H), f32)
    out_att = np.empty((40, 2, 32))
    Kdec, Vdec = rng.standard_normal((1100, 1, 16)), rng.standard_normal((1100, 1, 16))

    # One thread, except one call: on a busy machine every parallel region
    # of a tiny call costs a scheduler wake-up, which would only slow this down.
    def ok():
        bf.rnn(*rnn64, num_threads=1)
        bf.rnn(*rnn32, out=out_rnn, num_threads=1)
        bf.rnn(rnn64[0].astype(np.float16), *rnn32[1:], num_threads=1)   # float16 in, cast back
        bf.rnn(rnn64[0][:, :, ::2], rnn64[1], rnn64[2][:, ::2], *rnn64[3:], num_threads=1)
        bf.attention(Q, K, V, mask, num_heads=2, num_threads=1)
        bf.attention(Q32, K32, V32, causal=True, num_threads=2)
        bf.attention(Q, K, V, out=out_att, num_threads=1)
        bf.attention(Q[:1, :1, :16], Kdec, Vdec, num_threads=1)    # split keys: partials buffer
        bf.attention(Q[:, :, :8], K[:0, :, :8], V[:0, :, :8])      # Lk = 0

    def bad():
        errors = 0
        for call in (lambda: bf.rnn(big_bad, *rnn64[1:]),                     # wrong shapes
                     lambda: bf.rnn(rnn64[0], rnn64[1], rnn64[2], big_bad, rnn64[4]),
                     lambda: bf.attention(big_bad, K, V),
                     lambda: bf.attention(Q, K, V, big_bad[:40, :40, :1]),   # bad mask shape
                     lambda: bf.attention(Q.astype(complex), K, V),           # bad dtype
                     lambda: bf.attention(Q, K, V, num_heads=3),              # heads
                     lambda: bf.attention(Q, K, V, num_threads=0),
                     lambda: bf.rnn(*rnn64, out=np.empty((1, 1, 1)))):        # bad out
            try:
                call()
            except (TypeError, ValueError):
                errors += 1
        assert errors == 8
    return ok, bad


@pytest.mark.skipif(not LINUX_PROC, reason="reads VmRSS from /proc/self/status (Linux)")
def test_no_growth_over_thousands_of_calls():
    ok, bad = _call_mix()
    for _ in range(30):                      # warm-up: pools, caches, arenas
        ok()
        bad()
    gc.collect()
    before = _rss_mib()
    calls = 0
    while calls < 3000:
        ok()
        bad()
        calls += 9 + 8
    gc.collect()
    grown = _rss_mib() - before
    assert grown < 20, f"resident memory grew by {grown:.1f} MiB over {calls} calls"


PEAK = textwrap.dedent(r"""
    import resource, sys, time
    import numpy as np
    import bigmodel_fast as bf
    L, B, E = 8192, 1, 64
    rng = np.random.default_rng(0)
    Q, K, V = (rng.standard_normal((L, B, E), dtype=np.float32) for _ in range(3))
    out = np.zeros((L, B, E), np.float32)          # touched: counted before
    bf.attention(Q[:64], K[:64], V[:64])           # thread pool up, code paged in
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    bf.attention(Q, K, V, out=out)
    bf.attention(Q, K, V, causal=True, out=out)
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((after - before) / 1024, elapsed)
""")


@native_only
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss is in KiB on Linux")
def test_attention_8192_does_not_build_the_score_matrix():
    """Lq = Lk = 8192: the float32 score matrix alone would be 256 MiB.  The
    peak resident memory may grow by less than 64 MiB over the inputs."""
    proc = subprocess.run([sys.executable, "-c", PEAK], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    grown_mib, seconds = map(float, proc.stdout.split())
    print(f"peak RSS growth {grown_mib:.1f} MiB, two 8192x8192 calls in {seconds:.2f} s")
    assert grown_mib < 64


OOM = textwrap.dedent(r"""
    import resource
    import numpy as np
    import bigmodel_fast as bf
    # 80 keys of 2**20 features and 16 query rows (enough for the kernel to
    # pack K once per call, even over keys this big): the packed copy of K
    # needs 320 MiB, more than the address-space limit below leaves.
    E = 1 << 20
    rng = np.random.default_rng(0)
    Q = rng.standard_normal((16, 1, E), dtype=np.float32)
    K = rng.standard_normal((80, 1, E), dtype=np.float32)
    V = np.ones((80, 1, 1), np.float32)
    small = bf.attention(Q[:, :, :64], K[:, :, :64], V, num_threads=1)
    with open("/proc/self/status") as f:
        vm = [int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize:")][0]
    resource.setrlimit(resource.RLIMIT_AS, (vm + (256 << 20), resource.RLIM_INFINITY))
    try:
        bf.attention(Q, K, V, num_threads=1)
        print("no error")
    except MemoryError:
        print("MemoryError")
    # still usable afterwards
    assert np.array_equal(bf.attention(Q[:, :, :64], K[:, :, :64], V, num_threads=1), small)
""")


@pytest.mark.skipif(bf.backend() != "native", reason="checks the native kernels' work-buffer "
                    "allocation; NumPy raises its own MemoryError")
@pytest.mark.skipif(not LINUX_PROC, reason="reads VmSize from /proc/self/status (Linux)")
def test_out_of_memory_raises_memoryerror():
    """A work buffer that cannot be allocated is a MemoryError, not a crash
    (num_threads=1: under the limit libgomp could not start threads either)."""
    proc = subprocess.run([sys.executable, "-c", OOM], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "MemoryError"
