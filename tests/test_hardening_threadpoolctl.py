"""threadpoolctl: threadpool_limits(n, user_api="openmp") limits the kernels;
an explicit num_threads= wins; threadpool_info() sees our OpenMP runtime.

OpenMP's limit (omp_set_num_threads) belongs to the calling thread, so these
tests call the kernels from the thread that set it, as users do.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import bigmodel_fast as bf

threadpoolctl = pytest.importorskip("threadpoolctl")

pytestmark = pytest.mark.skipif(
    not bf.openmp_enabled(),
    reason="threadpoolctl's 'openmp' limits act on the native OpenMP kernels; the NumPy "
           "backend and a serial build have no OpenMP runtime of ours to limit")


@pytest.fixture(autouse=True)
def _no_override():
    bf.set_num_threads(None)
    yield
    bf.set_num_threads(None)


def _calls():
    rng = np.random.default_rng(3)
    out = []
    for dtype in (np.float64, np.float32):
        d = lambda *s: rng.standard_normal(s).astype(dtype)
        B, H = 8, 64
        out.append(lambda nt=None, a=(d(5, B, 16), d(B, H), d(H, 16) * 0.3, d(H, H) * 0.1, d(H)):
                   bf.rnn(*a, num_threads=nt))
        out.append(lambda nt=None, a=(d(100, 2, 32), d(900, 2, 32), d(900, 2, 32)):
                   bf.attention(*a, num_heads=2, causal=True, num_threads=nt))
    return out


def _mapped_openmp_runtimes():
    """Real paths of the OpenMP runtimes mapped into this process."""
    found = set()
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split()
            if len(parts) >= 6 and parts[5].startswith("/"):
                name = os.path.basename(parts[5])
                if name.startswith(("libgomp", "libomp", "libiomp")):
                    found.add(os.path.realpath(parts[5]))
    return found


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs /proc (Linux)")
def test_threadpool_info_lists_our_openmp_runtime():
    mapped = _mapped_openmp_runtimes()
    assert mapped, "the native build uses OpenMP but no OpenMP runtime is mapped"
    listed = {os.path.realpath(p["filepath"]) for p in threadpoolctl.threadpool_info()
              if p["user_api"] == "openmp"}
    assert mapped <= listed, f"mapped {mapped}, threadpool_info lists {listed}"


def test_limits_change_the_default_and_keep_the_bits():
    calls = _calls()
    n0 = bf.get_num_threads()
    expected = [c() for c in calls]
    with threadpoolctl.threadpool_limits(1, user_api="openmp"):
        assert bf.get_num_threads() == 1
        for c, want in zip(calls, expected):
            np.testing.assert_array_equal(c(), want)
            np.testing.assert_array_equal(c(2), want)    # explicit num_threads still runs
    assert bf.get_num_threads() == n0
    with threadpoolctl.threadpool_limits(3, user_api="openmp"):
        assert bf.get_num_threads() == 3
        for c, want in zip(calls, expected):
            np.testing.assert_array_equal(c(), want)
    with threadpoolctl.threadpool_limits(limits=1):      # every API, as users often write it
        assert bf.get_num_threads() == 1
    assert bf.get_num_threads() == n0


def test_set_num_threads_wins_over_threadpoolctl():
    """As documented by get_num_threads: set_num_threads first, then OpenMP's
    default (which threadpoolctl sets)."""
    bf.set_num_threads(2)
    with threadpoolctl.threadpool_limits(1, user_api="openmp"):
        assert bf.get_num_threads() == 2
    bf.set_num_threads(None)
    with threadpoolctl.threadpool_limits(1, user_api="openmp"):
        assert bf.get_num_threads() == 1


OBSERVE = textwrap.dedent(r"""
    import os, sys
    import numpy as np
    import bigmodel_fast as bf
    from threadpoolctl import threadpool_limits
    def n_threads():
        return len(os.listdir("/proc/self/task"))
    rng = np.random.default_rng(0)
    # Many query blocks and ~33M multiply-adds: 3 threads all have work
    # (the kernel gives a thread no less than about 1M multiply-adds).
    Q, K, V = (rng.standard_normal((512, 1, 64)) for _ in range(3))
    want = bf.attention(Q, K, V, num_threads=1)
    base = n_threads()
    with threadpool_limits(1, user_api="openmp"):
        a = bf.attention(Q, K, V)                   # limited to 1: no OpenMP worker
        after_default = n_threads()
        b = bf.attention(Q, K, V, num_threads=3)    # explicit wins: 2 workers join
        after_explicit = n_threads()
    assert np.array_equal(a, want) and np.array_equal(b, want)
    print(after_default - base, after_explicit - base)
""")


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs /proc (Linux)")
def test_limit_and_explicit_num_threads_as_seen_by_the_os():
    """In a fresh interpreter (no OpenMP pool yet), count the process's OS
    threads: a limited default call starts no OpenMP worker, an explicit
    num_threads=3 call starts exactly 2."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_", "KMP_"))}
    env.pop("BIGMODEL_FAST_BACKEND", None)
    proc = subprocess.run([sys.executable, "-c", OBSERVE], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["0", "2"], proc.stdout


def _gnu_openmp_settings(extra_env, load_openmp_first=False):
    """In a fresh interpreter: GNU OpenMP's settings as it prints them when it
    loads (OMP_DISPLAY_ENV), and GOMP_SPINCOUNT as the environment has it
    after the import."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_", "KMP_"))}
    env.pop("BIGMODEL_FAST_BACKEND", None)
    env.update(OMP_DISPLAY_ENV="VERBOSE", **extra_env)
    code = "import os, bigmodel_fast; print(os.environ.get('GOMP_SPINCOUNT'))"
    if load_openmp_first:
        code = "import ctypes; ctypes.CDLL('libgomp.so.1'); " + code
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr, proc.stdout.strip()


@pytest.mark.skipif("libgomp" not in {p["prefix"] for p in threadpoolctl.threadpool_info()},
                    reason="the idle spin is set for GNU OpenMP only")
def test_short_idle_spin_is_set_while_loading_only():
    """The package loads GNU OpenMP with a short idle spin (README: "Threads
    and other libraries"), and leaves the environment as it found it."""
    shown, after = _gnu_openmp_settings({})
    assert "GOMP_SPINCOUNT = '10000'" in shown, shown
    assert after == "None"


@pytest.mark.skipif("libgomp" not in {p["prefix"] for p in threadpoolctl.threadpool_info()},
                    reason="the idle spin is set for GNU OpenMP only")
@pytest.mark.parametrize("user_env, shown_spin", [({"GOMP_SPINCOUNT": "1234"}, "1234"),
                                                  ({"OMP_WAIT_POLICY": "passive"}, "0")])
def test_user_openmp_wait_settings_win(user_env, shown_spin):
    shown, after = _gnu_openmp_settings(user_env)
    assert f"GOMP_SPINCOUNT = '{shown_spin}'" in shown, shown
    assert after == user_env.get("GOMP_SPINCOUNT", "None")


@pytest.mark.skipif("libgomp" not in {p["prefix"] for p in threadpoolctl.threadpool_info()},
                    reason="the idle spin is set for GNU OpenMP only")
def test_gnu_openmp_loaded_before_keeps_its_setting():
    """Loaded before the package, GNU OpenMP keeps what it read then (its
    default), and the package does not touch the environment."""
    shown, after = _gnu_openmp_settings({}, load_openmp_first=True)
    assert "GOMP_SPINCOUNT = '300000'" in shown, shown
    assert after == "None"
