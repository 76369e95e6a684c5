"""The meaning of ``rnn`` and ``attention`` in plain NumPy.

This is the blog post's two snippets, corrected (see the README's API section):
the same names, argument order and time-major layout, the standard meaning.
It is written to be read, and to be reasonably fast: the RNN's input
projection is one matrix product hoisted out of the time loop, the softmax is
stabilised by its row maximum.  It checks its arguments exactly as the native
kernels do (``bigmodel_fast._validate``), and is the oracle the tests hold the
native kernels to.  It is also the NumPy fallback backend.
"""

import numpy as np

from ._validate import prepare_attention, prepare_rnn

__all__ = ["rnn", "attention", "TOLERANCE"]

# SPEC.md: native results match this reference within these maximum absolute
# errors (inputs of unit scale), by dtype name.  The tests and the bench
# (which refuses to time a result outside them) read them from here.
TOLERANCE = {"float32": 2e-5, "float64": 1e-12}


def rnn_kernel(call, out):
    """h_t = tanh(x_t Wx^T + h_{t-1} Wh^T + b), written into out (T, B, H)."""
    x, h, Wx, Wh, b = (call.inputs[k] for k in ("x", "h0", "Wx", "Wh", "b"))
    np.matmul(x, Wx.T, out=out)      # the input projection of every step at once
    out += b
    for t in range(out.shape[0]):
        step = out[t]
        step += h @ Wh.T
        np.tanh(step, out=step)
        h = step


def attention_kernel(call, out):
    """softmax(Q K^T * scale + mask) V per batch element and head, into out."""
    Q, K, V, mask = (call.inputs[k] for k in ("Q", "K", "V", "mask"))
    if mask is not None and mask.dtype == bool:      # True = may attend
        mask = np.where(mask, Q.dtype.type(0), Q.dtype.type(-np.inf))
    Lq, B, E = Q.shape
    Lk, Ev, h = K.shape[0], V.shape[2], call.heads
    if Lk == 0:                      # no key at all: every row gives zeros
        out[...] = 0
        return
    # (L, B, h*D) -> (B, h, L, D)
    q = Q.reshape(Lq, B, h, E // h).transpose(1, 2, 0, 3)
    k = K.reshape(Lk, B, h, E // h).transpose(1, 2, 0, 3)
    v = V.reshape(Lk, B, h, Ev // h).transpose(1, 2, 0, 3)
    scores = (q @ k.transpose(0, 1, 3, 2)) * call.scale
    # A key removed from a row (mask -inf or False, or causally hidden) is
    # never read for that row: neither its K (a NaN score) nor its V counts.
    removed = np.zeros((1, 1, Lq, Lk), bool)
    if mask is not None:
        removed = removed | (mask == -np.inf)
        scores = scores + mask                             # a NaN mask entry stays
    if call.causal:                  # bottom-right aligned: query i sees keys j <= i + Lk - Lq
        removed = removed | (np.arange(Lk)[None, :] > np.arange(Lq)[:, None] + (Lk - Lq))
    scores = np.where(removed, -np.inf, scores)
    row_max = scores.max(axis=-1, keepdims=True)           # NaN in a row stays in it
    row_max = np.where(row_max == -np.inf, 0, row_max)     # a row with no key: exp(-inf) = 0
    with np.errstate(invalid="ignore", divide="ignore"):   # NaN rows stay NaN, silently
        weights = np.exp(scores - row_max)                    # +inf score: inf - inf = NaN
        total = weights.sum(axis=-1, keepdims=True)
        result = np.where(total == 0, 0, _weighted_values(weights, v, removed) / total)
    out[...] = result.transpose(2, 0, 1, 3).reshape(Lq, B, Ev)


def _weighted_values(weights, v, removed):
    """weights @ v, except that a removed key's V is not read: 0 * NaN would
    otherwise make NaN of every row.  Only keys holding a NaN or inf pay for
    the exact treatment."""
    finite = np.isfinite(v)
    if finite.all():
        return weights @ v
    result = weights @ np.where(finite, v, 0)
    for key in np.flatnonzero(~finite.all(axis=(0, 1, 3))):
        bad = np.where(finite[:, :, key], 0, v[:, :, key])[:, :, None, :]  # (B, h, 1, Dv)
        w = weights[:, :, :, key, None]                                     # (B, h, Lq, 1)
        kept = ~removed[:, :, :, key, None]
        result = result + np.where(kept, w * bad, 0)
    return result


def rnn(x, h0, Wx, Wh, b, *, num_threads=None, out=None):
    """Elman tanh RNN, time-major; the NumPy reference of ``bigmodel_fast.rnn``.

    ``h_t = tanh(x_t @ Wx.T + h_{t-1} @ Wh.T + b)`` for ``t = 0 .. T-1`` with
    ``h_{-1} = h0``.  Shapes: x ``(T, B, I)`` (or ``(T, B)`` for ``I = 1``),
    h0 ``(B, H)``, Wx ``(H, I)``, Wh ``(H, H)``, b ``(H,)``; returns
    ``(T, B, H)``, the state after each step.  ``num_threads`` is checked and
    otherwise ignored here.
    """
    return prepare_rnn(x, h0, Wx, Wh, b, num_threads, out).run(rnn_kernel)


def attention(Q, K, V, mask=None, *, num_heads=1, causal=False, scale=None,
              num_threads=None, out=None):
    """Scaled dot-product attention, ``(length, batch, features)`` layout; the
    NumPy reference of ``bigmodel_fast.attention``.

    ``out = softmax(Q K^T * scale + mask) V`` per batch element and head, the
    softmax over keys.  Q ``(Lq, B, E)``, K ``(Lk, B, E)``, V ``(Lk, B, Ev)``;
    returns ``(Lq, B, Ev)``.  See ``bigmodel_fast.attention`` for the mask
    forms, heads, ``causal`` and ``scale``.  Builds the full score matrix.
    """
    call = prepare_attention(Q, K, V, mask, num_heads, causal, scale, num_threads, out)
    return call.run(attention_kernel)
