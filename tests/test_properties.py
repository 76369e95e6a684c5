"""Hypothesis property tests: random small shapes (0, 1 and odd sizes),
dtypes, layouts, heads, causality, mask forms, ISA levels and thread counts.

- native equals the reference within SPEC's tolerances;
- native is bitwise identical across thread counts;
- the reference equals the loop oracle (both backends, tiny shapes).
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bigmodel_fast as bf
from conftest import (KEY_TILE, KEY_TILE_KEY_MAJOR, LAYOUTS, assert_bitwise_equal,
                      assert_close, attention_inputs, isa_levels, loop_attention, loop_rnn,
                      native_in_use, rnn_inputs, use_isa, with_layout)

ref = bf.reference
needs_native = pytest.mark.skipif(not native_in_use(), reason="native backend not in use")
PROPERTY = settings(max_examples=40, deadline=None)

dtypes = st.sampled_from([np.float64, np.float32])
layouts = st.sampled_from(LAYOUTS)
isas = st.sampled_from(isa_levels() or ["baseline"])
threads = st.integers(1, 4)
seeds = st.integers(0, 2**32 - 1)
# Small sizes with 0, 1 and odd values; key lengths around the key tiles (64 and 512).
small = st.integers(0, 7)
key_lengths = st.one_of(st.integers(0, 9),
                        st.sampled_from([KEY_TILE_KEY_MAJOR + d for d in (-1, 0, 1)] + [200]
                                        + [KEY_TILE + d for d in (-1, 0, 1)]))
MASK_FORMS = [None, "2d", "3d-batch", "3d-batch-head", "4d"]


@st.composite
def rnn_cases(draw):
    T, B, I = draw(small), draw(small), draw(small)
    H = draw(st.one_of(small, st.sampled_from([9, 17, 33, 65])))
    saturating = draw(st.sampled_from([False, False, True]))
    return (T, B, I, H), saturating


@st.composite
def attention_cases(draw, key_lengths=key_lengths, max_rows=40):
    Lq = draw(st.integers(0, max_rows) if max_rows < 8 else st.one_of(small, st.integers(8, max_rows)))
    Lk, B = draw(key_lengths), draw(st.integers(0, 3))
    heads, Dk, Dv = draw(st.integers(1, 4)), draw(st.integers(0, 9)), draw(st.integers(0, 9))
    causal = draw(st.booleans())
    form = draw(st.sampled_from(MASK_FORMS))
    if form == "4d":               # each dimension full or a broadcast 1
        full = (B, heads, Lq, Lk)
        shape = tuple(n if draw(st.booleans()) else 1 for n in full)
    else:
        shape = {None: None, "2d": (Lq, Lk), "3d-batch": (B, Lq, Lk),
                 "3d-batch-head": (B * heads, Lq, Lk)}[form]
    mask_kind = draw(st.sampled_from(["bool", "float"]))
    return (Lq, Lk, B, heads * Dk, heads * Dv, heads, causal), shape, mask_kind


def make_mask(rng, shape, kind):
    if shape is None:
        return None
    if kind == "bool":
        return rng.random(shape) > 0.3
    m = rng.standard_normal(shape)
    m[rng.random(shape) < 0.3] = -np.inf
    return m


# ---------------------------------------------------------------- native vs reference

@needs_native
@PROPERTY
@given(case=rnn_cases(), dtype=dtypes, layout=layouts, isa=isas, n=threads, seed=seeds)
def test_rnn_native_matches_reference(case, dtype, layout, isa, n, seed):
    shape, saturating = case
    args = rnn_inputs(np.random.default_rng(seed), *shape, dtype=dtype, saturating=saturating)
    expected = ref.rnn(*args)
    with use_isa(isa):
        got = bf.rnn(*(with_layout(a, layout) for a in args), num_threads=n)
    assert got.dtype == dtype
    assert_close(got, expected)


@needs_native
@PROPERTY
@given(case=attention_cases(), dtype=dtypes, layout=layouts, isa=isas, n=threads, seed=seeds)
def test_attention_native_matches_reference(case, dtype, layout, isa, n, seed):
    (Lq, Lk, B, E, Ev, heads, causal), mask_shape, kind = case
    rng = np.random.default_rng(seed)
    Q, K, V = attention_inputs(rng, Lq, Lk, B, E, Ev, dtype)
    mask = make_mask(rng, mask_shape, kind)
    kw = dict(num_heads=heads, causal=causal)
    expected = ref.attention(Q, K, V, mask, **kw)
    laid = [None if a is None else with_layout(a, layout) for a in (Q, K, V, mask)]
    with use_isa(isa):
        got = bf.attention(*laid, num_threads=n, **kw)
    assert got.dtype == dtype and got.shape == (Lq, B, Ev)
    assert_close(got, expected)


# ---------------------------------------------------------------- thread counts

@needs_native
@PROPERTY
@given(case=rnn_cases(), dtype=dtypes, isa=isas, n=st.integers(2, 4), seed=seeds)
def test_rnn_native_bitwise_across_threads(case, dtype, isa, n, seed):
    shape, saturating = case
    args = rnn_inputs(np.random.default_rng(seed), *shape, dtype=dtype, saturating=saturating)
    with use_isa(isa):
        assert_bitwise_equal(bf.rnn(*args, num_threads=n), bf.rnn(*args, num_threads=1))


@needs_native
@PROPERTY
@given(case=attention_cases(key_lengths=st.one_of(key_lengths, st.integers(1024, 2600))),
       dtype=dtypes, isa=isas, n=st.integers(2, 4), seed=seeds)
def test_attention_native_bitwise_across_threads(case, dtype, isa, n, seed):
    # Key lengths past 1024 reach the split-key path when there are few rows.
    (Lq, Lk, B, E, Ev, heads, causal), mask_shape, kind = case
    rng = np.random.default_rng(seed)
    Q, K, V = attention_inputs(rng, Lq, Lk, B, E, Ev, dtype)
    mask = make_mask(rng, mask_shape, kind)
    kw = dict(num_heads=heads, causal=causal)
    with use_isa(isa):
        assert_bitwise_equal(bf.attention(Q, K, V, mask, num_threads=n, **kw),
                             bf.attention(Q, K, V, mask, num_threads=1, **kw))


# ---------------------------------------------------------------- reference vs loops

@PROPERTY
@given(T=st.integers(0, 3), B=st.integers(0, 3), I=st.integers(0, 4), H=st.integers(0, 5),
       dtype=dtypes, seed=seeds)
def test_rnn_reference_matches_loops(T, B, I, H, dtype, seed):
    args = rnn_inputs(np.random.default_rng(seed), T, B, I, H, dtype=dtype)
    assert_close(ref.rnn(*args), loop_rnn(*args), dtype)
    assert_close(bf.rnn(*args), loop_rnn(*args), dtype)


@PROPERTY
@given(case=attention_cases(key_lengths=st.integers(0, 6), max_rows=6), dtype=dtypes,
       seed=seeds)
def test_attention_reference_matches_loops(case, dtype, seed):
    (Lq, Lk, B, E, Ev, heads, causal), mask_shape, kind = case
    rng = np.random.default_rng(seed)
    Q, K, V = attention_inputs(rng, Lq, Lk, B, E, Ev, dtype)
    mask = make_mask(rng, mask_shape, kind)
    kw = dict(num_heads=heads, causal=causal)
    expected = loop_attention(Q, K, V, mask, **kw)
    assert_close(ref.attention(Q, K, V, mask, **kw), expected, dtype)
    assert_close(bf.attention(Q, K, V, mask, **kw), expected, dtype)
