"""Which implementation runs, at which ISA level, on how many threads.

BIGMODEL_FAST_BACKEND: unset = native when it loads, NumPy otherwise;
"numpy" = always NumPy; "native" = native or a loud ImportError.
BIGMODEL_FAST_ISA: baseline | avx2 | avx512 caps the native kernels' ISA level.
"""

import os

_BACKENDS = ("native", "numpy")
_requested = os.environ.get("BIGMODEL_FAST_BACKEND", "").strip().lower()
if _requested not in ("",) + _BACKENDS:
    raise ImportError(f"BIGMODEL_FAST_BACKEND={_requested!r}: use 'native', 'numpy' or leave it unset")

native = None          # the compiled module, when in use
native_load_error = None
if _requested != "numpy":
    try:
        from . import _native as native
    except ImportError as exc:
        if _requested == "native":
            raise ImportError("BIGMODEL_FAST_BACKEND=native, but the compiled kernels of "
                              f"bigmodel_fast cannot be loaded: {exc}") from exc
        native_load_error = str(exc)

_isa_cap = os.environ.get("BIGMODEL_FAST_ISA", "").strip().lower()
if _isa_cap:
    _levels = ("baseline", "avx2", "avx512")
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
