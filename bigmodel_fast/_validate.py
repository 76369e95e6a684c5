"""Argument checking and normalisation: the one place for both backends.

``prepare_rnn`` and ``prepare_attention`` check every argument before any
work, raise ``TypeError``/``ValueError`` naming the argument and the shapes,
and return a ``Prepared`` call: C-contiguous inputs in the compute dtype
(float32 or float64), the result's shape and dtype, and the array the kernel
writes into.  ``Prepared.run(kernel)`` calls a kernel (native or NumPy) and
hands back the result as SPEC.md describes (``out=``, float16 cast back).
"""

import math
import numbers
import operator

import numpy as np

_BAD_KINDS = {"c": "complex", "O": "object", "U": "string", "S": "bytes",
              "V": "structured/void", "M": "datetime", "m": "timedelta"}


def _as_array(name, value):
    if type(value) is np.ndarray and value.dtype.kind == "f":
        return value          # the common case, quickly
    if value is None:
        raise TypeError(f"{name} must be an array, got None")
    try:
        arr = np.asarray(value)
    except ValueError as exc:  # ragged nested sequences
        raise ValueError(f"{name} is not a rectangular array: {exc}") from exc
    if arr.dtype.kind in _BAD_KINDS:
        converted = ("a mask is boolean or floating" if name == "mask" else
                     "integer and boolean inputs are converted to float64")
        raise TypeError(f"{name} has dtype {arr.dtype} ({_BAD_KINDS[arr.dtype.kind]}); "
                        f"bigmodel_fast computes with real floating-point numbers ({converted})")
    return arr


_FLOAT32, _FLOAT64 = np.dtype(np.float32), np.dtype(np.float64)


def _kernel_ready(arr, dtype):
    """arr is C-contiguous, aligned (the C kernels read it through typed
    pointers) and of dtype: the kernels take it as it is.  _ready_dtype makes
    the same test inline, for speed; change both together."""
    flags = arr.flags
    return arr.dtype is dtype and flags.c_contiguous and flags.aligned


def _ready_dtype(arrays):
    """float32 or float64 when every array is already what the kernels take (a
    C-contiguous, aligned ndarray, all of that one dtype), else None: the common case,
    recognised in one quick pass so that it skips the conversions below.  The
    checks are inlined, not a _kernel_ready call per array: at rnn-small's size the
    Python layer is a fifth of bf.rnn's time (about 2.7 of 18 us on the README's
    machine; 3.5 us before this and the other quick paths here)."""
    first = arrays[0]
    if type(first) is not np.ndarray:
        return None
    dtype = first.dtype
    if dtype is not _FLOAT32 and dtype is not _FLOAT64:
        return None
    for a in arrays:
        if type(a) is not np.ndarray or a.dtype is not dtype:
            return None
        flags = a.flags
        if not (flags.c_contiguous and flags.aligned):
            return None
    return dtype


def _as_arrays(names, values):
    """_as_array of each value."""
    return [_as_array(n, v) for n, v in zip(names, values)]


def _dtypes(arrays):
    """(result dtype, compute dtype) for the non-mask inputs, per SPEC.md."""
    result = np.result_type(*arrays)
    if result.kind in "biu":
        result = np.dtype(np.float64)
    compute = np.dtype(np.float32 if result.itemsize <= 4 else np.float64)
    return result, compute


def _contiguous(arr, dtype):
    """arr as a C-contiguous, aligned array of dtype, copied only when it is not one."""
    return arr if _kernel_ready(arr, dtype) else np.require(arr, dtype, "CA")


def _contiguous_all(arrays, dtype):
    """_contiguous of each array."""
    return [_contiguous(a, dtype) for a in arrays]


_MAX_THREADS = 2**31 - 1


def check_num_threads(num_threads):
    """None or a positive integer; returns None or an int."""
    if num_threads is None:
        return None
    if type(num_threads) is int and 1 <= num_threads <= _MAX_THREADS:
        return num_threads    # the common case, without the numbers.Integral check (~0.6 us)
    if isinstance(num_threads, (bool, np.bool_)) or not isinstance(num_threads, numbers.Integral):
        raise TypeError(f"num_threads must be None or a positive int, got {num_threads!r}")
    n = operator.index(num_threads)
    if n < 1:
        raise ValueError(f"num_threads must be >= 1, got {n}")
    if n > _MAX_THREADS:  # the kernels take a C int
        raise ValueError(f"num_threads must be <= {_MAX_THREADS}, got {n}")
    return n


def _check_out(out, shape, dtype):
    if out is None:
        return None
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"out has shape {out.shape}, the result has shape {shape}")
    if out.dtype != dtype:
        raise TypeError(f"out has dtype {out.dtype}, the result has dtype {dtype}")
    if not out.flags.c_contiguous:
        raise ValueError("out must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    return out


class Prepared:
    """A checked call: compute-dtype inputs and where the result goes."""

    __slots__ = ("inputs", "shape", "result_dtype", "compute_dtype", "user_out", "num_threads",
                 "heads", "causal", "scale")

    def __init__(self, inputs, shape, result_dtype, compute_dtype, out, num_threads,
                 heads=None, causal=None, scale=None):
        self.inputs = inputs              # dict name -> C-contiguous compute-dtype array
        self.shape = shape
        self.result_dtype = result_dtype
        self.compute_dtype = compute_dtype
        self.user_out = out
        self.num_threads = num_threads    # None (the default) or an int >= 1
        self.heads, self.causal, self.scale = heads, causal, scale   # attention only

    def run(self, kernel, empty=np.empty):
        """kernel(self, dest) fills dest (C-contiguous, compute dtype; a new
        one from empty(shape, dtype) unless out can be written directly)."""
        out = self.user_out
        direct = (out is not None and out.dtype == self.compute_dtype and out.flags.aligned
                  and not any(np.may_share_memory(out, a) for a in self.inputs.values()
                              if a is not None))
        dest = out if direct else empty(self.shape, self.compute_dtype)
        if dest.size:
            kernel(self, dest)
        if direct:
            return out
        if out is not None:
            out[...] = dest
            return out
        return dest if self.result_dtype == self.compute_dtype else dest.astype(self.result_dtype)


_RNN_INPUTS = ("x", "h0", "Wx", "Wh", "b")


def prepare_rnn(x, h0, Wx, Wh, b, num_threads=None, out=None):
    ready = _ready_dtype((x, h0, Wx, Wh, b))
    if ready is None:
        x, h0, Wx, Wh, b = _as_arrays(_RNN_INPUTS, (x, h0, Wx, Wh, b))
    x_shape = x.shape  # as passed, for messages
    if x.ndim == 2:
        x = x[:, :, None]  # (T, B): one input feature, as the seed's docstring
    elif x.ndim != 3:
        raise ValueError(f"x must be 3-D (T, B, I) or 2-D (T, B), got shape {x_shape}")
    T, B, I = x.shape
    if h0.ndim != 2 or h0.shape[0] != B:
        raise ValueError(f"h0 must have shape (B, H) = ({B}, H) for x of shape {x_shape}, "
                         f"got {h0.shape} (x is time-major: (T, B, I), not (B, T, I))")
    H = h0.shape[1]
    if Wx.shape != (H, I) or Wh.shape != (H, H) or b.shape != (H,):
        for name, arr, want in (("Wx", Wx, (H, I)), ("Wh", Wh, (H, H)), ("b", b, (H,))):
            if arr.shape != want:
                raise ValueError(f"{name} must have shape {want} for x of shape {x_shape} and "
                                 f"h0 of shape {h0.shape}, got {arr.shape}")
    result, compute = (ready, ready) if ready is not None else _dtypes([x, h0, Wx, Wh, b])
    n = check_num_threads(num_threads)
    shape = (T, B, H)
    out = _check_out(out, shape, result)
    if ready is None:
        x, h0, Wx, Wh, b = _contiguous_all((x, h0, Wx, Wh, b), compute)
    return Prepared({"x": x, "h0": h0, "Wx": Wx, "Wh": Wh, "b": b}, shape, result, compute,
                    out, n)


def _mask_4d(mask, B, heads, Lq, Lk):
    """The mask as a 4-D array broadcastable to (B, heads, Lq, Lk), or raise."""
    accepted = (f"accepted: (Lq, Lk) = ({Lq}, {Lk}), (B, Lq, Lk) = ({B}, {Lq}, {Lk}), "
                f"(B*heads, Lq, Lk) = ({B * heads}, {Lq}, {Lk}), or 4-D broadcastable to "
                f"(B, heads, Lq, Lk) = ({B}, {heads}, {Lq}, {Lk}); a size of 1 broadcasts")
    if mask.ndim == 2:
        m4 = mask[None, None]
    elif mask.ndim == 3:
        lead = mask.shape[0]
        if lead in (1, B):
            m4 = mask[:, None]
        elif lead == B * heads:
            m4 = mask.reshape(B, heads, *mask.shape[1:])  # batch-major, as nn.MultiheadAttention
        else:
            raise ValueError(f"mask of shape {mask.shape} does not fit; {accepted}")
    elif mask.ndim == 4:
        m4 = mask
    else:
        raise ValueError(f"mask must be 2-, 3- or 4-D, got shape {mask.shape}; {accepted}")
    for size, full in zip(m4.shape, (B, heads, Lq, Lk)):
        if size not in (1, full):
            raise ValueError(f"mask of shape {mask.shape} does not fit; {accepted}")
    return m4


def prepare_attention(Q, K, V, mask=None, num_heads=1, causal=False, scale=None,
                      num_threads=None, out=None):
    ready = _ready_dtype((Q, K, V))
    if ready is None:
        Q, K, V = _as_arrays(("Q", "K", "V"), (Q, K, V))
    for name, arr, layout in (("Q", Q, "(Lq, B, E)"), ("K", K, "(Lk, B, E)"), ("V", V, "(Lk, B, Ev)")):
        if arr.ndim != 3:
            raise ValueError(f"{name} must be 3-D {layout}, got shape {arr.shape}")
    Lq, B, E = Q.shape
    Lk = K.shape[0]
    Ev = V.shape[2]
    if K.shape[1:] != (B, E):
        raise ValueError(f"K must have shape (Lk, B, E) = (Lk, {B}, {E}) for Q of shape "
                         f"{Q.shape}, got {K.shape} (the layout is (length, batch, "
                         f"features), as nn.MultiheadAttention with batch_first=False)")
    if V.shape[:2] != (Lk, B):
        raise ValueError(f"V must have shape (Lk, B, Ev) = ({Lk}, {B}, Ev) for K of shape "
                         f"{K.shape}, got {V.shape}")
    if type(num_heads) is int:
        heads = num_heads     # the common case, without the numbers.Integral check
    elif isinstance(num_heads, (bool, np.bool_)) or not isinstance(num_heads, numbers.Integral):
        raise TypeError(f"num_heads must be a positive int, got {num_heads!r}")
    else:
        heads = operator.index(num_heads)
    if heads < 1:
        raise ValueError(f"num_heads must be >= 1, got {heads}")
    if E % heads or Ev % heads:
        raise ValueError(f"num_heads={heads} must divide E={E} (Q, K) and Ev={Ev} (V)")
    if causal is not False and causal is not True and not isinstance(causal, np.bool_):
        raise TypeError(f"causal must be a bool, got {causal!r}")
    if scale is None:
        scale = 1.0 / math.sqrt(E // heads) if E else 1.0   # correctly rounded, as np.sqrt
    elif isinstance(scale, (bool, np.bool_)) or not isinstance(scale, numbers.Real):
        raise TypeError(f"scale must be None or a real number, got {scale!r}")
    scale = float(scale)
    result, compute = (ready, ready) if ready is not None else _dtypes([Q, K, V])
    n = check_num_threads(num_threads)
    shape = (Lq, B, Ev)
    out = _check_out(out, shape, result)

    mask4 = None
    if mask is not None:
        mask = _as_array("mask", mask)
        if mask.dtype.kind not in "bf":
            raise TypeError(f"mask must be boolean (True = may attend) or floating "
                            f"(added to the scores), got dtype {mask.dtype}")
        m4 = _mask_4d(mask, B, heads, Lq, Lk)
        # Boolean masks stay bytes (the kernels read them as such); floating
        # masks are cast to the compute dtype.
        m4 = _contiguous(m4, np.dtype(bool) if m4.dtype.kind == "b" else compute)
        # Broadcast view: stride 0 where a size of 1 stands for many.
        mask4 = np.broadcast_to(m4, (B, heads, Lq, Lk))
    if ready is None:
        Q, K, V = _contiguous_all((Q, K, V), compute)
    return Prepared({"Q": Q, "K": K, "V": V, "mask": mask4}, shape, result, compute, out, n,
                    heads=heads, causal=bool(causal), scale=scale)
