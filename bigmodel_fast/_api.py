"""The public kernels: check once (_validate), then run native or NumPy."""

from . import _backend, reference
from ._validate import prepare_attention, prepare_rnn


def _threads(call):
    return call.num_threads if call.num_threads is not None else _backend.get_num_threads()


def _native_rnn(call, out):
    i = call.inputs
    _backend.native.rnn(i["x"], i["h0"], i["Wx"], i["Wh"], i["b"], out, _threads(call))


def _native_attention(call, out):
    i = call.inputs
    _backend.native.attention(i["Q"], i["K"], i["V"], i["mask"], call.heads, call.causal,
                              call.scale, out, _threads(call))


def rnn(x, h0, Wx, Wh, b, *, num_threads=None, out=None):
    """Elman tanh RNN forward, time-major (the layout of ``torch.nn.RNN``).

    ``h_t = tanh(x_t @ Wx.T + h_{t-1} @ Wh.T + b)`` for ``t = 0 .. T-1``,
    with ``h_{-1} = h0``.

    Parameters
    ----------
    x : array (T, B, I), or (T, B) read as I = 1
    h0 : array (B, H), the state before x[0]
    Wx : array (H, I)  (torch's ``weight_ih``)
    Wh : array (H, H)  (torch's ``weight_hh``)
    b : array (H,)     (torch's ``bias_ih``; ``bias_hh`` is 0)
    num_threads : int, optional. Default: ``get_num_threads()``.
    out : C-contiguous array of the result's shape and dtype, optional.

    Returns
    -------
    array (T, B, H): ``result[t]`` is the state after ``x[t]``; ``result[-1]``
    can be fed back as the next ``h0``.  dtype: NumPy's promotion of the
    inputs (float16 computed in float32, integers and bools as float64).
    """
    call = prepare_rnn(x, h0, Wx, Wh, b, num_threads, out)
    if _backend.native is None:
        return call.run(reference.rnn_kernel)
    return call.run(_native_rnn, _backend.native.empty_aligned)


def attention(Q, K, V, mask=None, *, num_heads=1, causal=False, scale=None,
              num_threads=None, out=None):
    """Scaled dot-product attention, ``(length, batch, features)`` layout.

    ``out = softmax(Q K^T * scale + mask) V`` per batch element and head, the
    softmax over keys; fused and tiled, it never builds the (Lq, Lk) scores.

    Parameters
    ----------
    Q : array (Lq, B, E);  K : array (Lk, B, E);  V : array (Lk, B, Ev)
    mask : None, or boolean (True = may attend) or floating (added to the
        scores, -inf removes a key), of shape (Lq, Lk), (B, Lq, Lk),
        (B*num_heads, Lq, Lk) (batch-major), or 4-D broadcastable to
        (B, num_heads, Lq, Lk).  A size of 1 broadcasts.
    num_heads : int, splits E and Ev into equal heads.
    causal : bool, query i attends key j only when j <= i + (Lk - Lq).
    scale : float, default 1 / sqrt(E / num_heads).
    num_threads : int, optional. Default: ``get_num_threads()``.
    out : C-contiguous array of the result's shape and dtype, optional.

    Returns
    -------
    array (Lq, B, Ev).  A query row with no key left gives zeros.
    """
    call = prepare_attention(Q, K, V, mask, num_heads, causal, scale, num_threads, out)
    if _backend.native is None:
        return call.run(reference.attention_kernel)
    return call.run(_native_attention, _backend.native.empty_aligned)
