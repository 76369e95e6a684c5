"""Numerics at the edges: saturation, huge and tiny logits, infinities and
NaN, subnormal numbers, rows with no key, empty sizes.

Every case is checked two ways, for float32 and float64: against
``bigmodel_fast.reference`` (SPEC: 1e-12 for float64, 2e-5 for float32,
NaN and inf in the same places), and against an oracle that does not go
through either implementation (the value the math says: +-1 for a saturated
tanh, V[argmax] for a one-hot softmax, the mean of V for equal logits, zeros
for a row with no key).  On the NumPy backend the first check is trivial and
the second still holds the reference to the math.

The slowdown from subnormal numbers is measured by tools/denormal_check.py,
not here (no timing in unit tests).
"""
import warnings

import numpy as np
import pytest

import bigmodel_fast as bf
from bigmodel_fast import reference as ref
from conftest import KEY_TILE, TILED_LK

DTYPES = [np.float64, np.float32]
TOL = {np.dtype(name).type: tol for name, tol in ref.TOLERANCE.items()}


@pytest.fixture(autouse=True)
def _quiet_fp_warnings():
    # The reference is plain NumPy: inf - inf, 0 * inf and underflow warn.
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def rand(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def assert_close(got, want, dtype):
    """Same shape and dtype, NaN and +-inf in the same places, finite values
    within SPEC's absolute tolerance."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg="NaN positions differ")
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL[dtype], equal_nan=True)


def both(fn, *args, **kw):
    """(bigmodel_fast result, reference result)."""
    return getattr(bf, fn)(*args, **kw), getattr(ref, fn)(*args, **kw)


def nan_rows(out):
    """Indices (i, b) of output rows holding a NaN anywhere."""
    return {tuple(ix) for ix in np.argwhere(np.isnan(out).any(axis=-1))}


# ---------------------------------------------------------------- rnn

@pytest.mark.parametrize("dtype", DTYPES)
def test_rnn_saturating_inputs(dtype):
    rng = np.random.default_rng(10)
    T, B, I, H = 7, 3, 5, 9
    x = rand(rng, (T, B, I), dtype, 1e4)
    h0, Wx, Wh, b = rand(rng, (B, H), dtype), rand(rng, (H, I), dtype), rand(rng, (H, H), dtype), rand(rng, H, dtype)
    got, want = both("rnn", x, h0, Wx, Wh, b)
    assert_close(got, want, dtype)
    assert np.all(np.abs(got) <= 1)
    # Oracle: where the first step's pre-activation is beyond +-40, tanh is
    # exactly +-1 in both precisions.
    pre0 = x[0].astype(np.float64) @ Wx.T.astype(np.float64) + h0 @ Wh.T.astype(np.float64) + b
    sat = np.abs(pre0) > 40
    assert sat.mean() > 0.9
    np.testing.assert_array_equal(got[0][sat], np.sign(pre0[sat]).astype(dtype))
    # 2-D x (T, B) read as I = 1, also saturating
    got2, want2 = both("rnn", x[:, :, 0], h0, Wx[:, :1], Wh, b)
    assert_close(got2, want2, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rnn_inf_and_nan_inputs(dtype):
    rng = np.random.default_rng(11)
    T, B, I, H = 6, 3, 1, 8     # I = 1: inf * w is +-inf, never inf - inf
    x = rand(rng, (T, B, I), dtype)
    h0, Wx, b = rand(rng, (B, H), dtype), rand(rng, (H, I), dtype), rand(rng, H, dtype)
    Wh = rand(rng, (H, H), dtype, 0.3)
    x[2, 1, 0] = np.inf          # batch row 1 saturates at t = 2, then goes on
    x[1, 0, 0] = np.nan          # batch row 0 is NaN from t = 1 on
    got, want = both("rnn", x, h0, Wx, Wh, b)
    assert_close(got, want, dtype)
    expect_nan = np.zeros(got.shape, bool)
    expect_nan[1:, 0, :] = True
    np.testing.assert_array_equal(np.isnan(got), expect_nan)
    np.testing.assert_array_equal(got[2, 1], np.sign(Wx[:, 0]).astype(dtype))
    assert np.all(np.isfinite(got[:, 2]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_rnn_subnormal_inputs(dtype):
    rng = np.random.default_rng(12)
    tiny = np.finfo(dtype).smallest_subnormal
    T, B, I, H = 5, 4, 6, 7
    ints = rng.integers(-50, 50, (T, B, I))
    x = (ints * tiny).astype(dtype)          # every x is subnormal (or 0)
    assert np.all(np.abs(x[x != 0]) < np.finfo(dtype).tiny)
    h0, Wx, Wh, b = rand(rng, (B, H), dtype), rand(rng, (H, I), dtype), rand(rng, (H, H), dtype, 0.3), rand(rng, H, dtype)
    got, want = both("rnn", x, h0, Wx, Wh, b)
    assert_close(got, want, dtype)
    # Oracle: x this small contributes nothing at this tolerance.
    assert_close(got, ref.rnn(np.zeros_like(x), h0, Wx, Wh, b), dtype)
    # All-subnormal run (states subnormal too): results stay within
    # tolerance of zero, finite.
    z = np.zeros((B, H), dtype)
    got, want = both("rnn", x, z, Wx, Wh, np.zeros(H, dtype))
    assert_close(got, want, dtype)
    assert_close(got, np.zeros_like(got), dtype)
    # Subnormal weights and bias, normal x.
    xs = rand(rng, (T, B, I), dtype)
    tiny_w = (rng.integers(-9, 9, (H, I)) * tiny).astype(dtype)
    tiny_b = (rng.integers(-9, 9, H) * tiny).astype(dtype)
    got, want = both("rnn", xs, h0, tiny_w, Wh, tiny_b)
    assert_close(got, want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rnn_zero_steps(dtype):
    rng = np.random.default_rng(13)
    B, I, H = 3, 4, 5
    args = (np.zeros((0, B, I), dtype), rand(rng, (B, H), dtype), rand(rng, (H, I), dtype),
            rand(rng, (H, H), dtype), rand(rng, H, dtype))
    got, want = both("rnn", *args)
    assert got.shape == want.shape == (0, B, H) and got.dtype == want.dtype == dtype
    out = np.empty((0, B, H), dtype)
    assert bf.rnn(*args, out=out) is out
    # (T, B) form of x with T = 0
    got, want = both("rnn", np.zeros((0, B), dtype), args[1], args[2][:, :1], args[3], args[4])
    assert got.shape == want.shape == (0, B, H)


# ---------------------------------------------------------- attention

def _one_hot_problem(rng, dtype, Lq=37, Lk=150, B=2, E=16):
    """Each query is 3x one key, so one key wins by a wide margin."""
    K = rand(rng, (Lk, B, E), dtype)
    V = rand(rng, (Lk, B, E), dtype)
    win = rng.integers(0, Lk, (Lq, B))
    Q = np.stack([3 * K[win[:, b], b] for b in range(B)], axis=1).astype(dtype)
    return Q, K, V, win


@pytest.mark.parametrize("dtype", DTYPES)
# 1e18: logits near 1e20.  Lk = 160 makes every key tile a whole number of
# vectors, so unmasked rows take the kernel's read-only max pass; Lk = 150
# leaves a ragged last tile, which takes the general pass.
@pytest.mark.parametrize("Lk", [150, 160])
@pytest.mark.parametrize("scale", [1e3, 1e5, 1e18])
def test_attention_huge_logits(dtype, scale, Lk):
    rng = np.random.default_rng(20)
    Q, K, V, win = _one_hot_problem(rng, dtype, Lk=Lk)
    got, want = both("attention", Q, K, V, scale=scale)
    assert_close(got, want, dtype)
    # Oracle: the winner's logit leads the next by far more than 40, so the
    # softmax is one-hot to well below the tolerance: out = V[winner].
    s = np.einsum("ibe,jbe->bij", Q.astype(np.float64), K.astype(np.float64)) * scale
    top2 = np.sort(s, axis=-1)[..., -2:]
    assert np.all(top2[..., 1] - top2[..., 0] > 40)
    best = s.argmax(axis=-1)                     # (B, Lq); mostly the planted key
    assert (best.T == win).mean() > 0.8
    expect = np.stack([V[best[b], b] for b in range(Q.shape[1])], axis=1)
    assert_close(got, expect.astype(dtype), dtype)
    # The same with a finite, huge additive mask on some keys, and causal.
    mask = np.where(rng.random((Q.shape[0], K.shape[0])) < 0.3, dtype(-1e30), dtype(0))
    for kw in ({"mask": mask}, {"causal": True}, {"mask": mask, "causal": True, "num_heads": 2}):
        got, want = both("attention", Q, K, V, scale=scale, **kw)
        assert_close(got, want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_unmasked_rows_round_the_scaled_score_as_the_reference(dtype):
    """Near ties among large logits: the kernel's unmasked pass must round
    score * scale before subtracting the max, as the reference does (a fused
    multiply-subtract would not), so no mask and an all-zero mask agree bit
    for bit, and both agree with the reference.  Integer scores (exact in
    both dtypes), a scale of 1/sqrt(2) (not a power of two), Lk a whole
    number of vectors at every ISA level."""
    rng = np.random.default_rng(24)
    Lq, Lk, B, E = 9, 64, 1, 2
    Q, K = np.zeros((Lq, B, E), dtype), np.zeros((Lk, B, E), dtype)
    Q[..., 0], K[..., 0] = 1000, 1000              # logits near 1e6 / sqrt(2)
    Q[..., 1] = rng.integers(-3, 4, (Lq, B))
    K[..., 1] = rng.integers(-3, 4, (Lk, B))
    V = rand(rng, (Lk, B, E), dtype)
    got, want = both("attention", Q, K, V)
    assert_close(got, want, dtype)
    np.testing.assert_array_equal(got, bf.attention(Q, K, V, np.zeros((Lq, Lk), dtype)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_tiny_inputs(dtype):
    rng = np.random.default_rng(21)
    Lq, Lk, B, E = 19, 140, 2, 8
    Q, K = rand(rng, (Lq, B, E), dtype, 1e-30), rand(rng, (Lk, B, E), dtype, 1e-30)
    V = rand(rng, (Lk, B, E), dtype)
    got, want = both("attention", Q, K, V)
    assert_close(got, want, dtype)
    # Oracle: every logit is ~1e-60 (0 in float32): weights are uniform.
    expect = np.broadcast_to(V.astype(np.float64).mean(axis=0), (Lq, B, E))
    assert_close(got, expect.astype(dtype), dtype)
    # Logits of unit size, tiny values: out is tiny, tiny V passes through.
    Qn, Kn = rand(rng, (Lq, B, E), dtype), rand(rng, (Lk, B, E), dtype)
    got, want = both("attention", Qn, Kn, V * dtype(1e-30))
    assert_close(got, want, dtype)
    got, want = both("attention", Qn, Kn, V, scale=1e-30)
    assert_close(got, expect.astype(dtype), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_equal_huge_negative_mask_is_not_removal(dtype):
    """A finite mask, however negative, shifts every logit of a row alike: the
    row is the plain softmax (here: uniform), not zeros."""
    rng = np.random.default_rng(22)
    Lq, Lk, B, E = 9, 200, 1, 8
    Q, K = rand(rng, (Lq, B, E), dtype, 1e-3), rand(rng, (Lk, B, E), dtype, 1e-3)
    V = rand(rng, (Lk, B, E), dtype)
    mask = np.zeros((Lq, Lk), dtype)
    mask[4] = dtype(-1e30)
    got, want = both("attention", Q, K, V, mask)
    assert_close(got, want, dtype)
    np.testing.assert_allclose(got[4, 0], V[:, 0].astype(np.float64).mean(axis=0),
                               rtol=0, atol=TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_rows_with_no_key_give_zeros(dtype):
    rng = np.random.default_rng(23)
    Lq, Lk, B, E = 40, 300, 2, 16
    Q, K, V = rand(rng, (Lq, B, E), dtype), rand(rng, (Lk, B, E), dtype), rand(rng, (Lk, B, E), dtype)
    fmask = np.zeros((B, Lq, Lk), dtype)
    fmask[1, 5] = -np.inf                    # batch 1, query 5: every key removed
    fmask[0, :, ::3] = -np.inf               # batch 0: every third key removed
    bmask = fmask == 0                       # the same as a boolean mask
    for mask in (fmask, bmask):
        for heads in (1, 2):
            got, want = both("attention", Q, K, V, mask, num_heads=heads)
            assert_close(got, want, dtype)
            np.testing.assert_array_equal(got[5, 1], np.zeros(E, dtype))
            assert np.all(np.isfinite(got))
    # Oracle for removal: the same as attending only the kept keys.
    keep = np.arange(Lk) % 3 != 0
    got = bf.attention(Q[:, :1], K[:, :1], V[:, :1], fmask[:1])
    assert_close(got, ref.attention(Q[:, :1], K[keep, :1], V[keep, :1]), dtype)
    # Every row masked (whole tiles skipped): all zeros.
    got = bf.attention(Q, K, V, np.zeros((Lq, Lk), bool))
    np.testing.assert_array_equal(got, np.zeros_like(got))
    # Causal with Lq > Lk: query i sees keys j <= i - (Lq - Lk); the first
    # Lq - Lk rows see none.
    Lq2, Lk2 = 50, 20
    Q2 = rand(rng, (Lq2, B, E), dtype)
    got, want = both("attention", Q2, K[:Lk2], V[:Lk2], causal=True)
    assert_close(got, want, dtype)
    np.testing.assert_array_equal(got[:Lq2 - Lk2], np.zeros((Lq2 - Lk2, B, E), dtype))
    assert np.all(got[Lq2 - Lk2:] != 0)
    # causal and a mask together leave row 31 (which alone would see key 0
    # and 1) nothing.
    m = np.ones((Lq2, Lk2), bool)
    m[31, :2] = False
    got, want = both("attention", Q2, K[:Lk2], V[:Lk2], m, causal=True)
    assert_close(got, want, dtype)
    np.testing.assert_array_equal(got[31], np.zeros((B, E), dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_no_keys_at_all(dtype):
    rng = np.random.default_rng(24)
    Lq, B, E, Ev = 6, 2, 8, 4
    Q, K, V = rand(rng, (Lq, B, E), dtype), np.zeros((0, B, E), dtype), np.zeros((0, B, Ev), dtype)
    for kw in ({}, {"causal": True}, {"mask": np.zeros((Lq, 0), dtype)},
               {"mask": np.zeros((B, Lq, 0), bool), "num_heads": 2}):
        got, want = both("attention", Q, K, V, **kw)
        assert got.shape == want.shape == (Lq, B, Ev) and got.dtype == dtype
        np.testing.assert_array_equal(got, np.zeros((Lq, B, Ev), dtype))
        np.testing.assert_array_equal(want, np.zeros((Lq, B, Ev), dtype))
    out = np.full((Lq, B, Ev), np.nan, dtype)
    assert bf.attention(Q, K, V, out=out) is out
    np.testing.assert_array_equal(out, 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_nan_in_one_query_row(dtype):
    rng = np.random.default_rng(25)
    Lq, Lk, B, E = 40, 300, 2, 16
    Q, K, V = rand(rng, (Lq, B, E), dtype), rand(rng, (Lk, B, E), dtype), rand(rng, (Lk, B, E), dtype)
    Q[7, 1, 3] = np.nan                 # head 0 of query 7, batch 1 (with 2 heads)
    for heads in (1, 2):
        got, want = both("attention", Q, K, V, num_heads=heads)
        assert_close(got, want, dtype)
        expect = np.zeros(got.shape, bool)
        expect[7, 1, : E // heads] = True
        np.testing.assert_array_equal(np.isnan(got), expect)
    # -inf / +inf in a query: scores +-inf, a +inf score makes that row NaN
    # (inf - inf), and only that row.
    Q2 = rand(rng, (Lq, B, E), dtype)
    Q2[11, 0, 2] = -np.inf
    got, want = both("attention", Q2, K, V)
    assert_close(got, want, dtype)
    assert nan_rows(got) == {(11, 0)}


@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_nan_and_inf_in_mask(dtype):
    rng = np.random.default_rng(26)
    Lq, Lk, B, E = 40, 300, 2, 16
    Q, K, V = rand(rng, (Lq, B, E), dtype), rand(rng, (Lk, B, E), dtype), rand(rng, (Lk, B, E), dtype)
    mask = rand(rng, (B, Lq, Lk), dtype)
    mask[0, 3, 100] = np.nan            # NaN: row (3, 0) only
    mask[1, 9, 250] = np.inf            # +inf: inf - inf in row (9, 1) only
    mask[1, 20, :] = -np.inf            # all removed: zeros
    mask[0, 21, 7] = -np.inf            # one key removed
    got, want = both("attention", Q, K, V, mask)
    assert_close(got, want, dtype)
    assert nan_rows(got) == {(3, 0), (9, 1)}
    np.testing.assert_array_equal(got[20, 1], 0)


@pytest.mark.parametrize("Lq", [33, 5], ids=["tiled", "key-major"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_inf_in_keys_and_values(dtype, Lq):
    rng = np.random.default_rng(27)
    Lk, B, E = 260, 1, 8
    Q, K, V = rand(rng, (Lq, B, E), dtype), rand(rng, (Lk, B, E), dtype), rand(rng, (Lk, B, E), dtype)
    K2 = K.copy()
    K2[40, 0, 0] = np.inf      # score +inf (NaN row) or -inf (key removed) per query
    got, want = both("attention", Q, K2, V)
    assert_close(got, want, dtype)
    plus = Q[:, 0, 0] > 0
    assert nan_rows(got) == {(i, 0) for i in np.flatnonzero(plus)}
    keep = np.arange(Lk) != 40  # rows with -inf at key 40 equal attention without it
    assert_close(got[~plus], ref.attention(Q[~plus], K[keep], V[keep]), dtype)
    V2 = V.copy()
    V2[40, 0, 5] = np.inf      # weight > 0 times inf: column 5 is inf everywhere
    got, want = both("attention", Q, K, V2)
    assert_close(got, want, dtype)
    assert np.all(np.isposinf(got[:, 0, 5]))
    assert np.all(np.isfinite(np.delete(got, 5, axis=2)))
    # A key scored -inf by the data is not removed: its weight is 0, and
    # 0 * NaN in its V makes the row NaN, as in the reference, whether or
    # not the mask or causality removes other keys of the tile.
    V3 = V.copy()
    V3[40, 0, 2] = np.nan
    other_key_masked = np.zeros((Lq, Lk), dtype)
    other_key_masked[:, 7] = -np.inf
    for kwargs in [{}, {"mask": other_key_masked}, {"mask": other_key_masked == 0}, {"causal": True}]:
        got, want = both("attention", Q, K2, V3, **kwargs)
        assert nan_rows(got) == nan_rows(want) == {(i, 0) for i in range(Lq)}, kwargs
        assert_close(got, want, dtype)
    # Every key scored -inf by the data: the total weight is 0 and the
    # reference gives zeros, even with a NaN in V (0 * NaN is never divided out).
    E1 = 1
    Qm, Ki, Vn = -np.ones((Lq, 1, E1), dtype), np.full((3, 1, E1), np.inf, dtype), np.ones((3, 1, E1), dtype)
    Vn[1] = np.nan
    got, want = both("attention", Qm, Ki, Vn)
    np.testing.assert_array_equal(want, 0)
    np.testing.assert_array_equal(got, 0)


@pytest.mark.parametrize("Lq", [1, 40], ids=["key-major", "tiled"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_key_chunk_of_only_minus_inf_scores(dtype, Lq):
    """Long keys are split into chunks merged afterwards.  A chunk whose keys
    all score -inf (by the data, not removed) weighs 0, but a NaN in its V
    still makes the row NaN when other keys carry the weight (reference:
    0 * NaN)."""
    rng = np.random.default_rng(29)
    Lk = 4 * TILED_LK                        # several chunks on both paths
    Q = np.ones((Lq, 1, 1), dtype)
    K = rng.standard_normal((Lk, 1, 1)).astype(dtype)
    K[Lk // 4:3 * Lk // 4] = -np.inf        # whole chunks of -inf scores, on both paths
    V = rng.standard_normal((Lk, 1, 1)).astype(dtype)
    got, want = both("attention", Q, K, V)
    assert_close(got, want, dtype)
    V[Lk // 2] = np.nan                      # inside such a chunk
    got, want = both("attention", Q, K, V)
    assert nan_rows(want) == {(i, 0) for i in range(Lq)}
    assert nan_rows(got) == nan_rows(want)


@pytest.mark.parametrize("Lq", [40, 5], ids=["tiled", "key-major"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_nan_at_masked_positions_matches_reference(dtype, Lq):
    """A NaN input at a position the mask removes.  The reference (SPEC: "the
    meaning") computes NaN + -inf = NaN and 0 * NaN = NaN, so the NaN shows.
    The result of one row must not depend on how the kernel tiles the others:
    each case is run once with the removed key alone in its tile's mask and
    once with every row of its block masked there (which lets a flash kernel
    skip the whole tile).  Lq = 5 takes the key-major (decoding) path."""
    rng = np.random.default_rng(28)
    Lk, B, E = TILED_LK, 1, 8
    Q, K, V = rand(rng, (Lq, B, E), dtype), rand(rng, (Lk, B, E), dtype), rand(rng, (Lk, B, E), dtype)
    one_key = np.zeros((Lq, Lk), dtype)
    one_key[:, 200] = -np.inf            # key 200 removed for every query
    whole_tile = np.zeros((Lq, Lk), dtype)
    whole_tile[:, :KEY_TILE] = -np.inf   # key 200's whole tile removed for every query
    Kn, Vn = K.copy(), V.copy()
    Kn[200, 0, 0] = np.nan
    Vn[200, 0, 0] = np.nan
    failures = []
    for label, args in [("NaN in K[200]", (Q, Kn, V)), ("NaN in V[200]", (Q, K, Vn))]:
        for mname, mask in [("key 200 masked", one_key), ("key 200's whole tile masked", whole_tile)]:
            got, want = both("attention", *args, mask)
            if not np.array_equal(np.isnan(got), np.isnan(want)):
                failures.append(f"{label}, {mname}: native NaN rows {len(nan_rows(got))}, "
                                f"reference {len(nan_rows(want))}")
    # A query row whose keys are all removed, with a NaN in the query itself.
    Qn = Q.copy()
    Qn[3, 0, 0] = np.nan
    row3 = np.zeros((Lq, Lk), dtype)
    row3[3] = -np.inf
    for mname, mask in [("only row 3 masked", row3), ("all rows masked", np.full((Lq, Lk), -np.inf, dtype))]:
        got, want = both("attention", Qn, K, V, mask)
        if not np.array_equal(np.isnan(got), np.isnan(want)):
            failures.append(f"NaN in Q[3], {mname}: native NaN rows {sorted(nan_rows(got))}, "
                            f"reference {sorted(nan_rows(want))}")
    assert not failures, "; ".join(failures)


@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_subnormal_inputs(dtype):
    rng = np.random.default_rng(29)
    tiny = np.finfo(dtype).smallest_subnormal
    Lq, Lk, B, E = 35, 270, 2, 16
    sub = lambda shape: (rng.integers(-60, 60, shape) * tiny).astype(dtype)
    Q, K, V = rand(rng, (Lq, B, E), dtype), rand(rng, (Lk, B, E), dtype), rand(rng, (Lk, B, E), dtype)
    Qs, Ks, Vs = sub((Lq, B, E)), sub((Lk, B, E)), sub((Lk, B, E))
    assert np.all(np.abs(Qs) < np.finfo(dtype).tiny)
    uniform = np.broadcast_to(V.astype(np.float64).mean(axis=0), (Lq, B, E)).astype(dtype)
    # Subnormal Q and K: every logit underflows to 0, weights are uniform.
    got, want = both("attention", Qs, Ks, V, num_heads=2)
    assert_close(got, want, dtype)
    assert_close(got, uniform, dtype)
    # Subnormal V: the output is (within tolerance) zero, and finite.
    got, want = both("attention", Q, K, Vs)
    assert_close(got, want, dtype)
    assert_close(got, np.zeros_like(got), dtype)
    # Half the entries subnormal, half normal.
    pick = lambda a, s: np.where(rng.random(a.shape) < 0.5, a, s)
    args = (pick(Q, Qs), pick(K, Ks), pick(V, Vs))
    got, want = both("attention", *args, causal=True)
    assert_close(got, want, dtype)
    # A mask of subnormal values changes nothing at this tolerance.
    mask = sub((Lq, Lk))
    got, want = both("attention", Q, K, V, mask)
    assert_close(got, want, dtype)
    assert_close(got, ref.attention(Q, K, V), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_kernels_leave_the_callers_floating_point_mode_alone(dtype):
    """Whatever the kernels do about subnormals inside (flush-to-zero is the
    usual cure for their slowness), the caller's thread keeps IEEE gradual
    underflow: a kernel must not leak FTZ/DAZ into NumPy code that follows."""
    rng = np.random.default_rng(30)
    tiny = np.finfo(dtype).tiny
    sub = (rng.integers(1, 50, (20, 2, 8)) * np.finfo(dtype).smallest_subnormal).astype(dtype)
    for nt in (1, 2):
        bf.attention(sub, sub, sub, num_threads=nt)
        bf.rnn(sub, sub[0], np.ones((8, 8), dtype), np.ones((8, 8), dtype), np.zeros(8, dtype),
               num_threads=nt)
        half = np.array([tiny], dtype) / dtype(2)           # a subnormal result, not 0 (FTZ)
        assert half[0] != 0
        assert (half * dtype(2))[0] == tiny                # a subnormal input, not 0 (DAZ)


# ---------------------------------------------------------------- AMX's fallbacks

def test_attention_amx_fallbacks(isa):
    """At every level (the AMX level's scores come from bf16 parts from 256
    query rows on): a block of query rows or a key tile with a value that
    is not finite, or nonzero and below 2^-50 or from 2^50 in magnitude,
    takes the float32 product, and so matches the reference as the other
    blocks and tiles do."""
    rng = np.random.default_rng(61)
    dtype = np.float32
    Lq, Lk, B, E, heads = 300, 2 * KEY_TILE + 60, 2, 128, 2
    Q, K, V = rand(rng, (Lq, B, E), dtype), rand(rng, (Lk, B, E), dtype), rand(rng, (Lk, B, E), dtype)
    got, want = both("attention", Q, K, V, num_heads=heads)
    assert_close(got, want, dtype)
    Q2, K2 = Q.copy(), K.copy()
    K2[KEY_TILE + 7, 0, 3] = np.inf     # head 0 of batch 0: the second key tile
    Q2[100, 1, 70] = np.nan             # head 1 of batch 1: one query row
    Q2[250, 0, 5] = 1e-35               # a tiny value in a block of rows
    K2[20, 1, 100] = -3e-33             # ... and in a key tile
    got, want = both("attention", Q2, K2, V, num_heads=heads)
    assert_close(got, want, dtype)
    assert (100, 1) in nan_rows(got)
    # Tiny values beside unit ones: their parts would vanish through AMX.
    Q3 = Q.copy()
    Q3[:, :, ::2] *= dtype(1e-34)
    got, want = both("attention", Q3, K, V, num_heads=heads)
    assert_close(got, want, dtype)
    # Huge ones: AMX rounds each part product to float32 on its own, so
    # 2^64 * -2^63 + 2^64 * 2^64 (exactly 2^127) would overflow there, where
    # FMAs do not (nor the reference's BLAS).  The baseline level has no FMA:
    # its products round on their own too.
    if isa == "baseline":
        return
    Q4, K4 = Q.copy(), K.copy()
    Q4[50, 0, :2] = 2.0 ** 64
    K4[30, 0, :2] = (-(2.0 ** 63), 2.0 ** 64)
    got, want = both("attention", Q4, K4, V, num_heads=heads)
    assert_close(got, want, dtype)
    assert not np.isnan(got).any()
