"""Which implementation runs, at which ISA level, on how many threads.

BIGMODEL_FAST_BACKEND: unset = native when it loads, NumPy otherwise;
"numpy" = always NumPy; "native" = native or a loud ImportError.
BIGMODEL_FAST_ISA: baseline | avx2 | avx512 | amx caps the native kernels' ISA level.
GOMP_SPINCOUNT / OMP_WAIT_POLICY: yours win; unset, GNU OpenMP is loaded with a
short idle spin (below).
"""

import importlib
import os

_BACKENDS = ("native", "numpy")
_requested = os.environ.get("BIGMODEL_FAST_BACKEND", "").strip().lower()
if _requested not in ("",) + _BACKENDS:
    raise ImportError(f"BIGMODEL_FAST_BACKEND={_requested!r}: use 'native', 'numpy' or leave it unset")

# GNU OpenMP reads how long its idle threads spin once, when it loads.  Its
# default, 300,000 pause instructions (6 ms on the README's machine), keeps
# our workers spinning long after each call; where they share few cores with
# another pool's threads (NumPy's OpenBLAS spins for 2**28 cycles after each
# call), a 2-thread call waits scheduler slices for its worker: attention at
# Lq = Lk = 128 took 3.7-7.5 ms right after a NumPy matmul instead of 0.4 ms
# (one thread: about 1 ms).  With 10,000 (0.2 ms here) it took 0.5-1.6 ms,
# and back-to-back calls were as fast (tools/after_blas.py).  Set only when
# the user set neither variable and our extension is the one that loads GNU
# OpenMP (torch and scikit-learn wheels bring their own copies); removed
# again once loaded, so that child processes see the user's environment.
_GOMP_SPINCOUNT = "10000"
openmp_wait_setting = None   # what the load was given, for `bigmodel-fast info`


def _gnu_openmp_loaded():
    try:
        with open("/proc/self/maps") as maps:
            return "/libgomp.so.1" in maps.read()   # the copy our extension links
    except OSError:              # not Linux: assume not yet
        return False


def _import_native():
    global openmp_wait_setting
    user = {v: os.environ[v] for v in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY") if v in os.environ}
    loaded_before = not user and _gnu_openmp_loaded()
    set_here = not user and not loaded_before
    if set_here:
        os.environ["GOMP_SPINCOUNT"] = _GOMP_SPINCOUNT
    try:
        # (not `from . import _native`: when the module is missing, Python's
        # message for that blames a circular import)
        _native = importlib.import_module(__package__ + "._native")
    finally:
        if set_here:
            del os.environ["GOMP_SPINCOUNT"]
    if user:
        openmp_wait_setting = ", ".join(f"{k}={v} (yours)" for k, v in user.items())
    elif loaded_before:
        openmp_wait_setting = "as set when GNU OpenMP was loaded, before bigmodel_fast"
    else:
        openmp_wait_setting = f"GOMP_SPINCOUNT={_GOMP_SPINCOUNT} (set while loading)"
    return _native


native = None          # the compiled module, when in use
native_load_error = None
if _requested != "numpy":
    try:
        native = _import_native()
    except ImportError as exc:
        if _requested == "native":
            raise ImportError("BIGMODEL_FAST_BACKEND=native, but the compiled kernels of "
                              "bigmodel_fast cannot be loaded (is the extension built? "
                              f"`pip install .` compiles it): {exc}") from exc
        native_load_error = str(exc)

_isa_cap = os.environ.get("BIGMODEL_FAST_ISA", "").strip().lower()
if _isa_cap:
    _levels = ("baseline", "avx2", "avx512", "amx")
    if _isa_cap not in _levels:
        raise ImportError(f"BIGMODEL_FAST_ISA={_isa_cap!r}: use one of {', '.join(_levels)}")
    if native is not None:
        native.set_isa(_isa_cap)


def backend():
    """"native" when the compiled kernels are in use, else "numpy"."""
    return "numpy" if native is None else "native"


def openmp_enabled():
    """True when the native kernels are in use and were built with OpenMP."""
    return native is not None and native.openmp_enabled()


_threads_override = None


def _cpus_available():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def set_num_threads(n):
    """Set the default thread count of the kernels (None restores the default).

    An explicit ``num_threads=`` argument still wins.
    """
    from ._validate import check_num_threads
    global _threads_override
    _threads_override = check_num_threads(n)


def get_num_threads():
    """The thread count a call with ``num_threads=None`` uses.

    ``set_num_threads`` if called, else OpenMP's default in the calling thread
    (``OMP_NUM_THREADS``, a ``threadpoolctl`` limit, or the CPUs this process
    may use), else the CPUs this process may use.
    """
    if _threads_override is not None:
        return _threads_override
    if native is not None and native.openmp_enabled():
        return native.default_threads()
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return _cpus_available()
