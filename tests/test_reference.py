"""bigmodel_fast.reference (the NumPy meaning) against the per-element loop
oracles of conftest.py, on small sizes."""

import math
import warnings

import numpy as np
import pytest

import bigmodel_fast as bf
from conftest import (assert_close, attention_inputs, loop_attention, loop_rnn,
                      rnn_inputs)

ref = bf.reference


# ---------------------------------------------------------------- rnn

@pytest.mark.parametrize("T,B,I,H", [(1, 1, 1, 1), (4, 3, 5, 7), (3, 2, 1, 4), (5, 1, 6, 3),
                                     (2, 4, 3, 9)])
def test_rnn_matches_loops(rng, T, B, I, H):
    args = rnn_inputs(rng, T, B, I, H)
    assert_close(ref.rnn(*args), loop_rnn(*args))


def test_rnn_first_step_uses_x0_and_h0(rng):
    # The seed's bug: x[0] was never used and out[0] was h0.
    x, h0, Wx, Wh, b = rnn_inputs(rng, 1, 2, 3, 4)
    expected = np.tanh(x[0] @ Wx.T + h0 @ Wh.T + b)
    assert_close(ref.rnn(x, h0, Wx, Wh, b)[0], expected)


def test_rnn_last_state_feeds_next_call(rng):
    x, h0, Wx, Wh, b = rnn_inputs(rng, 6, 2, 3, 5)
    whole = ref.rnn(x, h0, Wx, Wh, b)
    first = ref.rnn(x[:4], h0, Wx, Wh, b)
    rest = ref.rnn(x[4:], first[-1], Wx, Wh, b)
    assert_close(np.concatenate([first, rest]), whole)


def test_rnn_2d_x_means_one_input_feature(rng):
    x, h0, Wx, Wh, b = rnn_inputs(rng, 5, 3, 1, 4)
    x2 = x[:, :, 0]
    got = ref.rnn(x2, h0, Wx, Wh, b)
    assert got.shape == (5, 3, 4)
    assert_close(got, loop_rnn(x2, h0, Wx, Wh, b))
    assert_close(got, ref.rnn(x, h0, Wx, Wh, b))


def test_rnn_zero_steps(rng):
    x, h0, Wx, Wh, b = rnn_inputs(rng, 0, 3, 2, 4)
    got = ref.rnn(x, h0, Wx, Wh, b)
    assert got.shape == (0, 3, 4) and got.dtype == np.float64


def test_rnn_zero_inputs_is_bias_plus_recurrence(rng):
    x, h0, Wx, Wh, b = rnn_inputs(rng, 3, 2, 0, 4)
    assert Wx.shape == (4, 0)
    assert_close(ref.rnn(x, h0, Wx, Wh, b), loop_rnn(x, h0, Wx, Wh, b))


def test_rnn_saturating_inputs(rng):
    args = rnn_inputs(rng, 4, 2, 3, 5, saturating=True)
    got = ref.rnn(*args)
    assert_close(got, loop_rnn(*args))
    assert np.all(np.abs(got) <= 1)


# ---------------------------------------------------------------- attention

@pytest.mark.parametrize("Lq,Lk,B,E,Ev,heads", [(1, 1, 1, 1, 1, 1), (3, 5, 2, 4, 6, 1),
                                                (4, 4, 2, 6, 4, 2), (2, 7, 1, 9, 6, 3),
                                                (5, 3, 3, 8, 8, 4)])
def test_attention_matches_loops(rng, Lq, Lk, B, E, Ev, heads):
    Q, K, V = attention_inputs(rng, Lq, Lk, B, E, Ev)
    assert_close(ref.attention(Q, K, V, num_heads=heads),
                 loop_attention(Q, K, V, num_heads=heads))


def _mask(rng, shape, kind):
    """A random mask: boolean (about a quarter False) or float (with -inf)."""
    if kind == "bool":
        return rng.random(shape) > 0.25
    m = rng.standard_normal(shape)
    m[rng.random(shape) < 0.25] = -np.inf
    return m


# (Lq, Lk, B, heads) = (3, 5, 2, 2) throughout: B*heads = 4 differs from B.
MASK_SHAPES = {
    "2d (Lq,Lk)": (3, 5),
    "2d (1,Lk)": (1, 5),
    "3d (B,Lq,Lk)": (2, 3, 5),
    "3d (1,Lq,Lk)": (1, 3, 5),
    "3d (B*h,Lq,Lk)": (4, 3, 5),
    "4d (B,h,Lq,Lk)": (2, 2, 3, 5),
    "4d (B,1,Lq,Lk)": (2, 1, 3, 5),
    "4d (1,h,Lq,Lk)": (1, 2, 3, 5),
    "4d (1,1,1,Lk)": (1, 1, 1, 5),
    "4d (B,h,Lq,1)": (2, 2, 3, 1),
}


@pytest.mark.parametrize("kind", ["bool", "float"])
@pytest.mark.parametrize("shape", list(MASK_SHAPES.values()), ids=list(MASK_SHAPES))
def test_attention_mask_forms(rng, shape, kind):
    Q, K, V = attention_inputs(rng, 3, 5, 2, 6, 4)
    mask = _mask(rng, shape, kind)
    assert_close(ref.attention(Q, K, V, mask, num_heads=2),
                 loop_attention(Q, K, V, mask, num_heads=2))


def test_attention_batch_major_mask_per_head(rng):
    # (B*h, Lq, Lk) is batch-major: entry b*h + head.  A mask that hides a
    # different key per (b, head) tells the layouts apart.
    B, heads, Lq, Lk = 2, 3, 2, 6
    Q, K, V = attention_inputs(rng, Lq, Lk, B, 6, 6)
    mask = np.ones((B * heads, Lq, Lk), bool)
    for n in range(B * heads):
        mask[n, :, n] = False
    got = ref.attention(Q, K, V, mask, num_heads=heads)
    assert_close(got, loop_attention(Q, K, V, mask, num_heads=heads))
    four_d = mask.reshape(B, heads, Lq, Lk)
    assert_close(got, ref.attention(Q, K, V, four_d, num_heads=heads))


def test_attention_bool_mask_equals_float_mask(rng):
    Q, K, V = attention_inputs(rng, 4, 6, 2, 4, 4)
    allowed = _mask(rng, (2, 4, 6), "bool")
    additive = np.where(allowed, 0.0, -np.inf)
    assert_close(ref.attention(Q, K, V, allowed), ref.attention(Q, K, V, additive))


@pytest.mark.parametrize("Lq,Lk", [(4, 4), (3, 7), (7, 3), (1, 6)])
@pytest.mark.parametrize("with_mask", [False, True])
def test_attention_causal_bottom_right(rng, Lq, Lk, with_mask):
    Q, K, V = attention_inputs(rng, Lq, Lk, 2, 4, 6)
    mask = _mask(rng, (Lq, Lk), "float") if with_mask else None
    got = ref.attention(Q, K, V, mask, num_heads=2, causal=True)
    assert_close(got, loop_attention(Q, K, V, mask, num_heads=2, causal=True))
    if Lq > Lk:   # the first Lq - Lk queries see no key
        assert np.all(got[:Lq - Lk] == 0)


def test_attention_single_query_causal_sees_all_keys(rng):
    Q, K, V = attention_inputs(rng, 1, 9, 2, 4, 4)
    assert_close(ref.attention(Q, K, V, causal=True), ref.attention(Q, K, V))


@pytest.mark.parametrize("scale", [0.1, 2.5, 0.0, -1.0, 3])
def test_attention_custom_scale(rng, scale):
    Q, K, V = attention_inputs(rng, 3, 4, 2, 4, 4)
    assert_close(ref.attention(Q, K, V, num_heads=2, scale=scale),
                 loop_attention(Q, K, V, num_heads=2, scale=scale))


def test_attention_default_scale_uses_head_dim(rng):
    Q, K, V = attention_inputs(rng, 3, 4, 2, 8, 4)
    assert_close(ref.attention(Q, K, V, num_heads=4),
                 ref.attention(Q, K, V, num_heads=4, scale=1 / math.sqrt(2)))


def test_attention_rows_without_keys_give_zeros(rng):
    Q, K, V = attention_inputs(rng, 4, 5, 2, 4, 3)
    mask = np.ones((2, 4, 5), bool)
    mask[0, 1] = False                  # batch 0, query 1: nothing
    fmask = np.where(mask, 0.0, -np.inf)
    for m in (mask, fmask):
        got = ref.attention(Q, K, V, m)
        assert not np.isnan(got).any()
        assert np.all(got[1, 0] == 0)
        assert_close(got, loop_attention(Q, K, V, m))


def test_attention_no_keys(rng):
    Q, K, V = attention_inputs(rng, 3, 0, 2, 4, 5)
    got = ref.attention(Q, K, V, np.zeros((3, 0)), num_heads=1)
    assert got.shape == (3, 2, 5) and np.all(got == 0)


def test_attention_nan_in_one_query_row(rng):
    Q, K, V = attention_inputs(rng, 4, 5, 2, 6, 4)
    Q[2, 1, 0] = np.nan                 # query 2, batch 1, head 0 (features 0..2)
    got = ref.attention(Q, K, V, num_heads=2)
    assert np.isnan(got[2, 1, :2]).all()
    nan_free = np.ones(got.shape, bool)
    nan_free[2, 1, :2] = False
    assert not np.isnan(got[nan_free]).any()
    assert_close(got, loop_attention(Q, K, V, num_heads=2))


def test_attention_nan_in_mask_entry(rng):
    Q, K, V = attention_inputs(rng, 3, 4, 1, 4, 4)
    mask = np.zeros((3, 4))
    mask[1, 2] = np.nan
    got = ref.attention(Q, K, V, mask)
    assert np.isnan(got[1]).all() and not np.isnan(got[[0, 2]]).any()


@pytest.mark.parametrize("fn", [ref.attention, bf.attention], ids=["reference", "api"])
def test_attention_inf_in_mask_gives_nan_row_without_warning(rng, fn):
    # +inf in a mask makes its row NaN (inf - inf), like NaN: quietly, as the
    # native kernels do, not with a RuntimeWarning from the NumPy path.
    Q, K, V = attention_inputs(rng, 3, 4, 2, 4, 4)
    mask = np.zeros((2, 3, 4))
    mask[1, 2, 0] = np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = fn(Q, K, V, mask)
    assert np.isnan(got[2, 1]).all() and np.isnan(got).sum() == 4
    assert_close(got, loop_attention(Q, K, V, mask))


@pytest.mark.parametrize("where", ["K", "V", "V-inf"])
@pytest.mark.parametrize("how", ["float-mask", "bool-mask", "causal"])
def test_attention_removed_keys_are_never_read(rng, where, how):
    # SPEC: a NaN in the inputs of a row gives NaN in that row only.  Key 4
    # holds a NaN (or inf); only the rows that keep key 4 may see it.
    Lq, Lk = 5, 6
    Q, K, V = attention_inputs(rng, Lq, Lk, 2, 4, 4)
    (K if where == "K" else V)[4, 1, 0] = np.inf if where == "V-inf" else np.nan
    keeps = np.ones((Lq, Lk), bool)
    mask, causal = None, False
    if how == "causal":
        causal = True
        keeps = np.tril(keeps, k=Lk - Lq)        # rows 3 and 4 see key 4
    else:
        keeps[[0, 2], 4] = False
        mask = keeps if how == "bool-mask" else np.where(keeps, 0.0, -np.inf)
    got = ref.attention(Q, K, V, mask, causal=causal)
    assert np.isfinite(got[~keeps[:, 4]]).all()
    assert not np.isfinite(got[keeps[:, 4], 1]).all(axis=-1).any()
    assert np.isfinite(got[:, 0]).all()          # batch 0 holds no NaN at all
    assert_close(got, loop_attention(Q, K, V, mask, causal=causal))


def test_attention_large_logits_are_stable(rng):
    Q, K, V = attention_inputs(rng, 3, 6, 2, 4, 4)
    got = ref.attention(Q, K, V, scale=300.0)
    assert np.isfinite(got).all()
    assert_close(got, loop_attention(Q, K, V, scale=300.0))


def test_attention_zero_features(rng):
    # E = 0: every score is 0 (+ mask), the softmax is uniform over the keys.
    Q, K, V = attention_inputs(rng, 3, 4, 2, 0, 4)
    assert_close(ref.attention(Q, K, V, num_heads=2), np.broadcast_to(V.mean(0), (3, 2, 4)))


# ---------------------------------------------------------------- dtypes

def test_float32_stays_float32(rng):
    Q, K, V = attention_inputs(rng, 3, 4, 2, 4, 4, np.float32)
    got = ref.attention(Q, K, V, np.zeros((3, 4)))       # a float64 mask does not promote
    assert got.dtype == np.float32
    assert_close(got, loop_attention(Q, K, V))
    args = rnn_inputs(rng, 3, 2, 3, 4, np.float32)
    got = ref.rnn(*args)
    assert got.dtype == np.float32
    assert_close(got, loop_rnn(*args))


def test_mixed_float32_float64_gives_float64(rng):
    Q, K, V = attention_inputs(rng, 3, 4, 2, 4, 4)
    got = ref.attention(Q.astype(np.float32), K, V)
    assert got.dtype == np.float64
    assert_close(got, loop_attention(Q.astype(np.float32), K, V))


def _float16_tolerance_check(got16, inputs16, oracle):
    assert got16.dtype == np.float16
    # float16 keeps ~3 decimal digits: the result of unit scale within 2e-3.
    np.testing.assert_allclose(got16.astype(np.float64), oracle(*inputs16), rtol=0, atol=2e-3)


def test_float16_computed_in_float32(rng):
    x, h0, Wx, Wh, b = (a.astype(np.float16) for a in rnn_inputs(rng, 3, 2, 3, 4))
    got = ref.rnn(x, h0, Wx, Wh, b)
    _float16_tolerance_check(got, (x, h0, Wx, Wh, b), loop_rnn)
    as32 = ref.rnn(*(a.astype(np.float32) for a in (x, h0, Wx, Wh, b)))
    assert np.array_equal(got, as32.astype(np.float16))

    Q, K, V = (a.astype(np.float16) for a in attention_inputs(rng, 3, 5, 2, 4, 4))
    got = ref.attention(Q, K, V, num_heads=2)
    _float16_tolerance_check(got, (Q, K, V), lambda *a: loop_attention(*a, num_heads=2))
    as32 = ref.attention(*(a.astype(np.float32) for a in (Q, K, V)), num_heads=2)
    assert np.array_equal(got, as32.astype(np.float16))


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_])
def test_integer_and_bool_inputs_give_float64(rng, dtype):
    x, h0, Wx, Wh, b = (rng.integers(0, 2, s).astype(dtype)
                        for s in ((3, 2, 2), (2, 3), (3, 2), (3, 3), (3,)))
    got = ref.rnn(x, h0, Wx, Wh, b)
    assert got.dtype == np.float64
    assert_close(got, loop_rnn(x, h0, Wx, Wh, b))

    Q, K, V = (rng.integers(0, 2, s).astype(dtype) for s in ((3, 2, 4), (5, 2, 4), (5, 2, 2)))
    got = ref.attention(Q, K, V)
    assert got.dtype == np.float64
    assert_close(got, loop_attention(Q, K, V))


def test_python_lists_are_accepted():
    got = ref.rnn([[1.0], [2.0]], [[0.5]], [[0.3]], [[0.2]], [0.1])
    assert got.shape == (2, 1, 1)
    assert_close(got, loop_rnn([[1.0], [2.0]], [[0.5]], [[0.3]], [[0.2]], [0.1]))


# ---------------------------------------------------------------- out= and inputs

def test_rnn_out_is_filled_and_returned(rng):
    args = rnn_inputs(rng, 3, 2, 3, 4)
    out = np.full((3, 2, 4), np.nan)
    got = ref.rnn(*args, out=out)
    assert got is out
    assert_close(out, loop_rnn(*args))


def test_attention_out_is_filled_and_returned(rng):
    Q, K, V = attention_inputs(rng, 3, 4, 2, 4, 6)
    out = np.full((3, 2, 6), np.nan)
    got = ref.attention(Q, K, V, num_heads=2, out=out)
    assert got is out
    assert_close(out, loop_attention(Q, K, V, num_heads=2))


def test_out_float16(rng):
    Q, K, V = (a.astype(np.float16) for a in attention_inputs(rng, 3, 4, 2, 4, 4))
    out = np.zeros((3, 2, 4), np.float16)
    got = ref.attention(Q, K, V, out=out)
    assert got is out
    assert np.array_equal(out, ref.attention(Q, K, V))


def test_out_may_alias_an_input(rng):
    # out=Q: Q must be read in full before out is written.
    Q, K, V = attention_inputs(rng, 4, 4, 2, 6, 6)
    expected = loop_attention(Q, K, V, num_heads=3)
    got = ref.attention(Q, K, V, num_heads=3, out=Q)
    assert got is Q
    assert_close(Q, expected)


def test_inputs_are_not_modified(rng):
    Q, K, V = attention_inputs(rng, 3, 4, 2, 4, 4, np.float32)
    mask = _mask(rng, (3, 4), "bool")
    copies = [a.copy() for a in (Q, K, V, mask)]
    ref.attention(Q, K, V, mask, causal=True)
    for a, c in zip((Q, K, V, mask), copies):
        assert np.array_equal(a, c)
    args = rnn_inputs(rng, 3, 2, 3, 4)
    copies = [a.copy() for a in args]
    ref.rnn(*args)
    for a, c in zip(args, copies):
        assert np.array_equal(a, c)
