"""Sizes past 2^31 elements index correctly (SPEC).

Each test builds one input of more than 2^31 float32 elements (8 GiB of
address space) with np.zeros, which the OS backs lazily: pages never written
read as zeros without taking memory.  Nonzero rows are written where an index
wrapped at 2^31 would land elsewhere (around and past element 2^31, and
spread over the whole array), so a kernel that computed any offset in 32 bits
would read zeros (or crash) instead.  Resident memory stays near 100 MiB;
each test takes a few seconds.

The values are small integers (times powers of two) so every dot product is
exact in float32 whatever the summation order; the oracle is a chunked NumPy
(BLAS) computation followed by float64 softmax or tanh, independent of both
bigmodel_fast implementations.

Skipped where the 8 GiB of address space cannot be had (MemoryError), and on
the NumPy backend, where the arithmetic is NumPy's own (and its attention
would copy K).
"""
import numpy as np
import pytest

import bigmodel_fast as bf

pytestmark = pytest.mark.skipif(
    bf.backend() != "native",
    reason="checks the C kernels' index arithmetic; on the NumPy backend it is NumPy's")

TWO31 = 2 ** 31


def _zeros(shape, dtype=np.float32):
    try:
        return np.zeros(shape, dtype)
    except MemoryError:
        pytest.skip(f"cannot reserve {np.prod(shape) * np.dtype(dtype).itemsize / 2**30:.1f} GiB "
                    "of address space here")


def test_attention_keys_past_2_31_elements():
    rng = np.random.default_rng(2024)
    B, E, Lq, Ev = 2, 512, 3, 2
    split = TWO31 // (B * E)                 # first key whose elements all lie past 2^31
    Lk = split + 256
    K = _zeros((Lk, B, E))
    assert K.size > TWO31
    tern = lambda shape: rng.integers(-1, 2, shape).astype(np.float32)
    special = np.r_[np.arange(split - 256, Lk),                       # around and past 2^31
                    (np.arange(32)[:, None] * (split // 32) + np.arange(8)).ravel()]  # spread
    K[special] = tern((len(special), B, E))
    Q = tern((Lq, B, E))
    for i in range(Lq):                      # one key past 2^31 scores exactly 10 for query i
        for b in range(B):
            on = rng.choice(np.flatnonzero(Q[i, b]), 40, replace=False)
            K[split + 10 + i, b] = 0
            K[split + 10 + i, b, on] = Q[i, b, on]
    V = np.empty((Lk, B, Ev), np.float32)
    V[:, :, 0] = (np.arange(Lk) >= split)[:, None]       # weight of the keys past 2^31
    V[:, :, 1] = rng.standard_normal((Lk, B))
    scale = 0.25

    got = bf.attention(Q, K, V, scale=scale)

    # Oracle: chunked, exact float32 scores (integers), float64 softmax.
    Qblk = np.zeros((B * E, B * Lq), np.float32)         # block-diagonal: one BLAS call per chunk
    for b in range(B):
        Qblk[b * E:(b + 1) * E, b * Lq:(b + 1) * Lq] = Q[:, b].T
    m = np.full(B * Lq, -np.inf)
    l = np.zeros(B * Lq)
    acc = np.zeros((B * Lq, Ev))
    Vcols = V.astype(np.float64)
    chunk = 1 << 18
    for c0 in range(0, Lk, chunk):
        c1 = min(c0 + chunk, Lk)
        s = (K[c0:c1].reshape(c1 - c0, B * E) @ Qblk).astype(np.float64) * scale   # (n, B*Lq)
        m_new = np.maximum(m, s.max(axis=0))
        w = np.exp(s - m_new)
        alpha = np.exp(m - m_new)
        l = l * alpha + w.sum(axis=0)
        vb = np.repeat(Vcols[c0:c1], Lq, axis=1)          # (n, B*Lq, Ev), column b*Lq+i -> batch b
        acc = acc * alpha[:, None] + np.einsum("nk,nkv->kv", w, vb)
        m = m_new
    want = (acc / l[:, None]).reshape(B, Lq, Ev).transpose(1, 0, 2)
    past = want[:, :, 0]
    # A misread of either side would move the result by far more than the tolerance.
    assert np.all((past > 1e-3) & (past < 1 - 1e-3)), f"both sides of 2^31 must matter: {past}"
    np.testing.assert_allclose(got, want, rtol=0, atol=bf.reference.TOLERANCE["float32"])


def test_rnn_input_past_2_31_elements():
    rng = np.random.default_rng(2025)
    T, I, H = 2, 1024, 3
    B = (1 << 20) + 8
    rows = T * B                             # (t, b) rows of x, I elements each
    first_past = TWO31 // I                  # first row that starts at element 2^31
    assert first_past < rows
    x = _zeros((T, B, I))
    assert x.size > TWO31
    x2 = x.reshape(rows, I)
    tern = lambda shape: rng.integers(-1, 2, shape).astype(np.float32)
    special = np.r_[np.arange(first_past - 64, rows),                       # around and past 2^31
                    (np.arange(32)[:, None] * (first_past // 32) + np.arange(8)).ravel()]
    x2[special] = tern((len(special), I)) * np.float32(2.0 ** -4)
    Wx = tern((H, I))
    Wh = (rng.standard_normal((H, H)) * 0.2).astype(np.float32)
    b = (rng.standard_normal(H) * 0.5).astype(np.float32)
    h0 = (rng.standard_normal((B, H)) * 0.5).astype(np.float32)

    got = bf.rnn(x, h0, Wx, Wh, b)

    # Oracle: exact float32 projection (multiples of 2^-4, |sum| <= 64),
    # then the recurrence in float64.
    proj = np.empty((rows, H))
    chunk = 1 << 18
    for r0 in range(0, rows, chunk):
        proj[r0:r0 + chunk] = x2[r0:r0 + chunk] @ Wx.T
    proj = proj.reshape(T, B, H) + b.astype(np.float64)
    want = np.empty((T, B, H))
    h = h0.astype(np.float64)
    for t in range(T):
        h = np.tanh(proj[t] + h @ Wh.T.astype(np.float64))
        want[t] = h
    past = proj.reshape(rows, H)[first_past:] - b
    assert np.abs(past).max() > 1                  # the rows past 2^31 matter
    np.testing.assert_allclose(got, want, rtol=0, atol=bf.reference.TOLERANCE["float32"])
