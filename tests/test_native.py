"""The native kernels against bigmodel_fast.reference, at every ISA level this
CPU has, within SPEC's tolerances; bitwise identical for every thread count."""

import numpy as np
import pytest

import bigmodel_fast as bf
from bigmodel_fast import _backend
from conftest import (KEY_TILE, LAYOUTS, OTHER_THREAD_COUNTS, TILED_LK, assert_bitwise_equal,
                      assert_close, attention_inputs, native_in_use, rnn_inputs, with_layout)

pytestmark = pytest.mark.skipif(not native_in_use(), reason="native backend not in use")

ref = bf.reference
DTYPES = [np.float64, np.float32]
THREADS = (1, 3)


def test_openmp_enabled():
    assert bf.openmp_enabled() is True


def test_isa_fixture_sets_level(isa):
    assert _backend.native.get_isa() == isa


# ---------------------------------------------------------------- rnn

RNN_CASES = {                        # T, B, I, H
    "tiny": (1, 1, 1, 1),
    "H257": (4, 3, 5, 257),
    "I1": (5, 1, 1, 16),
    "B1-odd": (6, 1, 7, 13),
    "I80": (3, 2, 80, 33),
    "wide-I": (2, 3, 300, 129),
    "batch5": (4, 5, 17, 64),
    "I0": (3, 2, 0, 8),
    "B37-H70": (3, 37, 9, 70),
    "B16-H257": (3, 16, 4, 257),     # AVX-512: tall tiles, K in slices, a partial panel
    "B32-H300": (2, 32, 3, 300),
    # Wx and Wh past GEMM_B_CACHED_BYTES (1 MiB): the projection takes each group of
    # panels for all its rows; on AVX-512 the steps' two 16-row blocks meet each slice of
    # Wh together on 1 thread; one at a time from 2 threads in float32, 3 in float64
    # (where each thread's share of Wh is under 1 MiB)
    "B32-H520-I600": (2, 32, 600, 520),
    "long-T": (60, 2, 3, 24),
    "B1-H64": (40, 1, 64, 64),       # rnn_lone (few units, B = 1): 4 chains a sum
    "B1-H31-I70": (9, 1, 70, 31),    # rnn_lone: a partial panel, H % 4 == 3, I > H
    "B1-H65": (5, 1, 9, 65),         # just past rnn_lone on AVX-512 float32
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", list(RNN_CASES.values()), ids=list(RNN_CASES))
def test_rnn_matches_reference(isa, rng, shape, dtype):
    args = rnn_inputs(rng, *shape, dtype=dtype)
    expected = ref.rnn(*args)
    for n in THREADS:
        got = bf.rnn(*args, num_threads=n)
        assert got.dtype == dtype
        assert_close(got, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rnn_saturating(isa, rng, dtype):
    args = rnn_inputs(rng, 5, 3, 6, 40, dtype=dtype, saturating=True)
    expected = ref.rnn(*args)
    assert np.all(np.abs(expected) > 0.999)   # really saturated
    for n in THREADS:
        assert_close(bf.rnn(*args, num_threads=n), expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rnn_near_saturation(isa, rng, dtype):
    # Pre-activations of a few units: tanh's tails (|a| ~ 3..20), where a fast
    # tanh approximation loses accuracy first.
    x, h0, Wx, Wh, b = rnn_inputs(rng, 6, 4, 8, 37, dtype=dtype)
    x = x * 6
    expected = ref.rnn(x, h0, Wx, Wh, b)
    assert np.mean(np.abs(expected) > 0.99) > 0.3
    for n in THREADS:
        assert_close(bf.rnn(x, h0, Wx, Wh, b, num_threads=n), expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rnn_2d_x(isa, rng, dtype):
    x, h0, Wx, Wh, b = rnn_inputs(rng, 6, 3, 1, 20, dtype=dtype)
    assert_close(bf.rnn(x[:, :, 0], h0, Wx, Wh, b), ref.rnn(x, h0, Wx, Wh, b))


# ---------------------------------------------------------------- attention

def tile_mask(rng, Lq, Lk):
    """Additive mask: keys [KEY_TILE, 2 KEY_TILE) hidden from every query (a
    whole key tile to skip), random -inf in the keys after them (tiles partly
    hidden), query 3 hidden from every key (a row of zeros), the rest finite."""
    m = rng.standard_normal((Lq, Lk))
    m[:, KEY_TILE:2 * KEY_TILE] = -np.inf
    tail = m[:, 2 * KEY_TILE:]
    tail[rng.random(tail.shape) < 0.5] = -np.inf
    if Lq > 3:
        m[3] = -np.inf
    return m


def chunk_mask(rng, Lq, Lk):
    """Additive mask hiding the first 1280 keys (whole key chunks of the
    split-key path) and random keys after them."""
    m = np.zeros((Lq, Lk))
    m[:, :1280] = -np.inf
    m[:, 1280:][rng.random((Lq, Lk - 1280)) < 0.3] = -np.inf
    return m


def make_mask(rng, form, Lq, Lk, B, heads):
    if form is None:
        return None
    if form == "tiles":
        return tile_mask(rng, Lq, Lk)
    if form == "tiles-bool":
        return np.isfinite(tile_mask(rng, Lq, Lk))
    if form == "chunks":
        return chunk_mask(rng, Lq, Lk)
    shape = {"2d": (Lq, Lk), "3d-batch": (B, Lq, Lk), "3d-batch-head": (B * heads, Lq, Lk),
             "4d-padding": (B, 1, 1, Lk), "4d-heads-rows": (1, heads, Lq, 1),
             "4d-full": (B, heads, Lq, Lk)}[form.removesuffix("-bool")]
    if form.endswith("-bool"):
        return rng.random(shape) > 0.3
    m = rng.standard_normal(shape)
    m[rng.random(shape) < 0.3] = -np.inf
    return m


ATTENTION_CASES = {       # Lq, Lk, B, E, Ev, heads, causal, mask form
    "tiny": (1, 1, 1, 1, 1, 1, False, None),
    "E80-1head": (5, 7, 2, 80, 80, 1, False, None),
    "5heads-of-8": (9, 11, 3, 40, 40, 5, False, "3d-batch-head"),
    "Dk-ne-Dv": (6, 10, 2, 24, 40, 2, False, "2d-bool"),
    "odd-Dv": (33, 33, 2, 8, 3, 1, True, None),
    "B1-odd": (7, 13, 1, 9, 5, 1, False, "3d-batch"),
    "decode-split-keys": (1, 3000, 1, 16, 16, 1, False, None),
    "decode-split-causal": (2, 2500, 1, 8, 12, 2, True, "4d-padding"),
    "split-chunks-masked": (3, 2600, 2, 8, 8, 1, False, "chunks"),
    "decode-head-groups": (3, 900, 13, 96, 48, 6, True, "4d-full-bool"),   # 78 pairs: 2 key-major groups
    "many-tiles": (200, 300, 1, 16, 8, 1, False, None),
    "tiles-masked": (70, TILED_LK, 2, 8, 8, 2, False, "tiles"),
    "tiles-masked-bool": (40, TILED_LK, 1, 12, 4, 1, False, "tiles-bool"),
    "decode-tiles-masked": (3, TILED_LK, 2, 8, 8, 1, False, "tiles"),
    "causal-Lq-lt-Lk": (150, 400, 2, 8, 8, 1, True, "4d-heads-rows"),
    "causal-Lq-gt-Lk": (300, 100, 1, 8, 8, 1, True, "2d"),
    "4d-full-mask": (20, 140, 2, 12, 6, 3, False, "4d-full-bool"),
    "Dk300": (5, 200, 1, 300, 20, 1, False, "2d"),
    "Dv200": (35, 150, 1, 16, 200, 1, True, None),
    # K's and V's tiles past 1 MiB: each group of panels for all the block's rows
    "Dk-Dv-1100": (45, 520, 1, 1100, 1100, 1, False, "2d"),
    # ... with one tile of keys: one P.V product straight to the output, times 1 / l
    "Dk-Dv-1100-one-tile": (45, 500, 1, 1100, 1100, 1, False, None),
    # whole pairs as items, each thread packing its pairs into one slot (4 MiB of copies)
    "pairs-in-thread-slots": (45, 700, 6, 128, 128, 2, True, "3d-batch-head"),
    # 9 query rows over 17 MB of K and V: the query-lanes path (key-major past 64 MiB)
    "few-rows-big-kv": (9, 2100, 4, 256, 256, 2, False, "4d-padding"),
    # the query-lanes path (8-32 query rows, 16 keys or more per row): K and V read in
    # place, each query row a vector lane; key chunks, several pairs per item
    "query-lanes": (16, 1100, 2, 128, 128, 2, False, None),
    # ... causal with Lq < Lk and a full mask, heads of 20 and 10 (partial vectors)
    "query-lanes-causal-masked": (13, 700, 3, 40, 20, 2, True, "4d-full"),
    # ... whole 512-key tiles removed by a boolean mask, a row with no key
    "query-lanes-tiles-bool": (9, TILED_LK, 2, 8, 8, 1, False, "tiles-bool"),
    # ... heads of 80, causal and a boolean mask, the least keys it takes
    "query-lanes-E80": (12, 256, 1, 80, 80, 1, True, "2d-bool"),
    # ... 30 rows: 2 to 8 vectors of lanes by ISA level and dtype (16 rows at most
    # where a vector holds 2: tiled there)
    "query-lanes-30-rows": (30, 600, 2, 48, 48, 3, True, "3d-batch"),
    "many-heads": (3, 20, 7, 64, 48, 16, False, "3d-batch-head-bool"),
    # tiled tiles that remove no key take their exps inside P.V: blocks of 40 + 6 rows
    # (a lone row), heads of 80 (more vectors than one tile's), a last tile of 76 keys
    "exp-in-PV": (46, TILED_LK, 2, 16, 80, 1, False, None),
    # ... causal with Lq < Lk (the diagonal's tiles take the separate pass), 40 + 11 rows
    "exp-in-PV-causal": (51, 1300, 1, 48, 20, 2, True, None),
    # 16 pairs of short queries, enough work for 3 threads: each packs and runs whole pairs
    "pairs-as-items-causal": (40, 300, 4, 64, 64, 4, True, "4d-padding"),
    # 8 pairs of long queries (8-10 query blocks, 2 key tiles): whole pairs as items on 1-2
    # threads, query blocks on 3+
    "long-pairs-as-items": (300, 600, 4, 32, 32, 2, True, "4d-padding"),
    # decoding with heads of 4 or 8 vectors at some ISA level and dtype (the rows kept in
    # registers: att_km_dots, att_km_pv), masked, causal and split into key chunks
    "decode-heads-of-32": (2, 700, 3, 64, 64, 2, False, "4d-padding"),
    "decode-heads-of-64": (1, 650, 2, 128, 128, 2, True, None),
    "decode-heads-of-128": (3, 520, 2, 256, 256, 2, False, "2d-bool"),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(ATTENTION_CASES.values()), ids=list(ATTENTION_CASES))
def test_attention_matches_reference(isa, rng, case, dtype):
    Lq, Lk, B, E, Ev, heads, causal, form = case
    Q, K, V = attention_inputs(rng, Lq, Lk, B, E, Ev, dtype)
    mask = make_mask(rng, form, Lq, Lk, B, heads)
    kw = dict(num_heads=heads, causal=causal)
    expected = ref.attention(Q, K, V, mask, **kw)
    for n in THREADS:
        got = bf.attention(Q, K, V, mask, num_threads=n, **kw)
        assert got.dtype == dtype
        assert_close(got, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["exp-in-PV", "exp-in-PV-causal"])
def test_attention_exp_in_pv_gives_the_separate_pass_bits(isa, rng, case, dtype):
    """A zero additive mask sends every tile through the separate softmax
    pass and P.V product; without it the tiles that remove no key take their
    exps inside P.V (att_tile_exp_pv), which must give the same bits (finite
    inputs: where two NaNs meet, which one survives may differ)."""
    Lq, Lk, B, E, Ev, heads, causal, _ = ATTENTION_CASES[case]
    Q, K, V = attention_inputs(rng, Lq, Lk, B, E, Ev, dtype)
    kw = dict(num_heads=heads, causal=causal)
    for n in THREADS:
        np.testing.assert_array_equal(bf.attention(Q, K, V, num_threads=n, **kw),
                                      bf.attention(Q, K, V, np.zeros((Lq, Lk), dtype), num_threads=n, **kw))


@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_rows_without_keys_are_zero(isa, rng, dtype):
    Q, K, V = attention_inputs(rng, 40, TILED_LK, 1, 8, 8, dtype)
    mask = tile_mask(rng, 40, TILED_LK)
    got = bf.attention(Q, K, V, mask)
    assert not np.isnan(got).any()
    assert np.all(got[3] == 0)
    Q, K, V = attention_inputs(rng, 50, 10, 2, 8, 8, dtype)
    got = bf.attention(Q, K, V, causal=True)
    assert np.all(got[:40] == 0) and not np.isnan(got).any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("Lk", [7, 3000])
def test_attention_nan_stays_in_its_row(isa, rng, dtype, Lk):
    Q, K, V = attention_inputs(rng, 4, Lk, 2, 8, 6, dtype)
    Q[2, 1, 5] = np.nan                 # query 2, batch 1, head 1 (features 4..7)
    got = bf.attention(Q, K, V, num_heads=2)
    bad = np.zeros(got.shape, bool)
    bad[2, 1, 3:] = True                # head 1's output features
    assert np.isnan(got[bad]).all()
    assert not np.isnan(got[~bad]).any()
    assert_close(got, ref.attention(Q, K, V, num_heads=2))


@pytest.mark.parametrize("where", ["K", "V"])
@pytest.mark.parametrize("how", ["whole-tile", "part-tile", "bool-part-tile", "causal",
                                 "lanes-part-tile", "lanes-causal"])
def test_attention_removed_keys_are_never_read(isa, rng, where, how):
    # One key holds a NaN; only the rows that keep that key may turn NaN (SPEC:
    # "a NaN in the inputs of a row gives NaN in that row only").  Whether the
    # key's tile is skipped whole or computed must not matter.  lanes-*: 12
    # query rows, the query-lanes path.
    Lq, Lk, key = {"causal": (300, 300, 200), "lanes-causal": (12, 300, 295),
                   "lanes-part-tile": (12, TILED_LK, 200)}.get(how, (40, TILED_LK, 200))
    Q, K, V = attention_inputs(rng, Lq, Lk, 1, 8, 8)
    (K if where == "K" else V)[key, 0, 3] = np.nan
    keeps = np.ones((Lq, Lk), bool)
    mask, causal = None, False
    if how.endswith("causal"):
        causal = True
        keeps = np.tril(keeps, Lk - Lq)          # row i sees keys up to i + Lk - Lq
    elif how == "whole-tile":
        keeps[:, 0:KEY_TILE] = False             # the key's whole tile
    else:
        keeps[::2, key] = False                  # even rows drop the key only
    if not how.endswith("causal"):
        mask = keeps if how.startswith("bool") else np.where(keeps, 0.0, -np.inf)
    expected = ref.attention(Q, K, V, mask, causal=causal)
    assert np.isfinite(expected[~keeps[:, key]]).all()
    assert not np.isfinite(expected[keeps[:, key]]).all(axis=(1, 2)).any()
    got = bf.attention(Q, K, V, mask, causal=causal)
    assert_close(got, expected)


def test_attention_large_logits(isa, rng):
    Q, K, V = attention_inputs(rng, 20, 300, 2, 8, 8)
    got = bf.attention(Q, K, V, scale=300.0)
    assert np.isfinite(got).all()
    assert_close(got, ref.attention(Q, K, V, scale=300.0))
    got32 = bf.attention(*(a.astype(np.float32) for a in (Q, K, V)), scale=300.0)
    assert np.isfinite(got32).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_float16_and_custom_scale(isa, rng, dtype):
    Q, K, V = attention_inputs(rng, 9, 140, 2, 8, 8, dtype)
    assert_close(bf.attention(Q, K, V, num_heads=2, scale=0.7),
                 ref.attention(Q, K, V, num_heads=2, scale=0.7))
    h = tuple(a.astype(np.float16) for a in (Q, K, V))
    got = bf.attention(*h, causal=True)
    assert got.dtype == np.float16
    # Both round a float32 result to float16: at most one float16 step apart.
    expected = ref.attention(*h, causal=True)
    assert np.all(np.abs(got.astype(np.float64) - expected) <= np.spacing(np.abs(expected)))


# ---------------------------------------------------------------- layouts

@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_layouts(isa, rng, layout, dtype):
    args = rnn_inputs(rng, 5, 3, 7, 19, dtype=dtype)
    laid = [with_layout(a, layout) for a in args]
    assert_close(bf.rnn(*laid, num_threads=2), ref.rnn(*args))
    for a, c in zip(laid, args):
        assert np.array_equal(a, c)          # inputs untouched

    Q, K, V = attention_inputs(rng, 9, 150, 2, 12, 6, dtype)
    mask = make_mask(rng, "3d-batch", 9, 150, 2, 3)
    laid = [with_layout(a, layout) for a in (Q, K, V, mask)]
    got = bf.attention(*laid, num_heads=3, causal=True, num_threads=2)
    assert_close(got, ref.attention(Q, K, V, mask, num_heads=3, causal=True))
    for a, c in zip(laid, (Q, K, V, mask)):
        assert np.array_equal(a, c)


def test_broadcast_view_inputs(isa, rng):
    # Zero strides: every batch element the same.
    x, h0, Wx, Wh, b = rnn_inputs(rng, 4, 1, 5, 9)
    xb, h0b = np.broadcast_to(x, (4, 3, 5)), np.broadcast_to(h0, (3, 9))
    assert_close(bf.rnn(xb, h0b, Wx, Wh, b), ref.rnn(np.array(xb), np.array(h0b), Wx, Wh, b))
    mask = np.broadcast_to(np.isfinite(tile_mask(rng, 1, TILED_LK)), (10, TILED_LK))
    Q, K, V = attention_inputs(rng, 10, TILED_LK, 2, 8, 8)
    assert_close(bf.attention(Q, K, V, mask), ref.attention(Q, K, V, np.array(mask)))


# ---------------------------------------------------------------- out=

@pytest.mark.parametrize("dtype", DTYPES)
def test_out(isa, rng, dtype):
    args = rnn_inputs(rng, 3, 2, 4, 11, dtype=dtype)
    out = np.full((3, 2, 11), np.nan, dtype)
    assert bf.rnn(*args, out=out) is out
    assert_close(out, ref.rnn(*args))

    Q, K, V = attention_inputs(rng, 6, 140, 2, 8, 8, dtype)
    out = np.full((6, 2, 8), np.nan, dtype)
    assert bf.attention(Q, K, V, num_heads=2, out=out) is out
    assert_close(out, ref.attention(Q, K, V, num_heads=2))
    # out=Q: the kernel must not read Q after writing out.
    Q2 = Q.copy()
    assert bf.attention(Q2, Q2, Q2, num_heads=2, out=Q2) is Q2
    assert_close(Q2, ref.attention(Q, Q, Q, num_heads=2))
    # A C-contiguous out off an element boundary: written through a copy.
    out = with_layout(np.full((6, 2, 8), np.nan, dtype), "misaligned")
    assert not out.flags.aligned and out.flags.c_contiguous
    assert bf.attention(Q, K, V, num_heads=2, out=out) is out
    assert_close(out, ref.attention(Q, K, V, num_heads=2))
    # out=x (I == H): x must be read in full before out is written.
    x, h0, Wx, Wh, b = rnn_inputs(rng, 4, 2, 11, 11, dtype=dtype)
    expected = ref.rnn(x, h0, Wx, Wh, b)
    assert bf.rnn(x, h0, Wx, Wh, b, out=x) is x
    assert_close(x, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_inf_and_nan_in_mask(isa, rng, dtype):
    # +inf in a row's mask makes that row NaN (inf - inf), as in the reference;
    # NaN in a mask entry makes its row NaN; other rows are untouched.
    Q, K, V = attention_inputs(rng, 6, 300, 2, 8, 8, dtype)
    mask = np.zeros((2, 6, 300))
    mask[0, 1, 200] = np.inf
    mask[1, 4, 7] = np.nan
    got = bf.attention(Q, K, V, mask)
    expected = ref.attention(Q, K, V, mask)
    assert np.isnan(expected[1, 0]).all() and np.isnan(expected[4, 1]).all()
    assert np.isnan(expected).sum() == 16
    assert_close(got, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_subnormal_inputs(isa, rng, dtype):
    tiny = np.finfo(dtype).smallest_subnormal * 3
    args = [a * tiny if i < 2 else a for i, a in enumerate(rnn_inputs(rng, 4, 3, 5, 20, dtype))]
    assert_close(bf.rnn(*args), ref.rnn(*args))
    Q, K, V = attention_inputs(rng, 5, 150, 2, 8, 8, dtype)
    Q, V = Q * tiny, V * tiny
    assert_close(bf.attention(Q, K, V), ref.attention(Q, K, V))


# ---------------------------------------------------------------- zero sizes

RNN_ZERO = {"T0": (0, 2, 3, 4), "B0": (3, 0, 3, 4), "H0": (3, 2, 3, 0), "I0": (3, 2, 0, 4),
            "all0": (0, 0, 0, 0)}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", list(RNN_ZERO.values()), ids=list(RNN_ZERO))
def test_rnn_zero_sizes(isa, rng, shape, dtype):
    T, B, I, H = shape
    args = rnn_inputs(rng, *shape, dtype=dtype)
    got = bf.rnn(*args, num_threads=3)
    assert got.shape == (T, B, H) and got.dtype == dtype
    assert_close(got, ref.rnn(*args))


ATTENTION_ZERO = {           # Lq, Lk, B, E, Ev, heads
    "Lq0": (0, 5, 2, 4, 4, 1), "Lk0": (3, 0, 2, 4, 4, 2), "B0": (3, 5, 0, 4, 4, 1),
    "Ev0": (3, 5, 2, 4, 0, 2), "E0": (3, 5, 2, 0, 4, 2), "Lk0-split": (1, 0, 1, 8, 8, 1),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", list(ATTENTION_ZERO.values()), ids=list(ATTENTION_ZERO))
def test_attention_zero_sizes(isa, rng, shape, dtype):
    Lq, Lk, B, E, Ev, heads = shape
    Q, K, V = attention_inputs(rng, Lq, Lk, B, E, Ev, dtype)
    mask = np.zeros((B, Lq, Lk), bool)
    for m in (None, mask):
        got = bf.attention(Q, K, V, m, num_heads=heads, num_threads=3)
        assert got.shape == (Lq, B, Ev) and got.dtype == dtype
        assert_close(got, ref.attention(Q, K, V, m, num_heads=heads))
        assert not np.isnan(got).any()


# ---------------------------------------------------------------- determinism

DETERMINISM_RNN = {"H257": (6, 4, 20, 257), "B64": (3, 64, 8, 70),
                   "B21-H300": (3, 21, 5, 300), "B1-H64": (30, 1, 64, 64),
                   # steps summed in segments (H a multiple of a cache line)
                   "B16-H128": (8, 16, 5, 128), "B11-H192": (5, 11, 9, 192),
                   # 8-row tall block, then 4 rows, in segments (AVX-512)
                   "B12-H128": (5, 12, 3, 128),
                   # Wh too big for the batch split: tall 16-row tiles in segments
                   "B16-H384": (3, 16, 2, 384),
    # Wh past 1 MiB on one thread, under it on two (float32) or three (float64):
    # the row blocks' order changes
    "B32-H520-I600": (2, 32, 600, 520),
                   # the batch split on 2 threads: an odd last row, an odd panel
                   # count (8-row tiles of 2 panels, then 1), no input
                   "B17-H40": (4, 17, 3, 40), "B16-H200-I0": (3, 16, 0, 200)}
DETERMINISM_ATTENTION = {    # Lq, Lk, B, E, Ev, heads, causal, mask form
    "tiles": (200, TILED_LK, 2, 32, 32, 2, True, "tiles"),
    "split-keys": (1, 3000, 1, 16, 16, 1, False, None),
    "split-masked": (3, 2600, 2, 16, 8, 2, True, "chunks"),
    "many-items": (70, 90, 4, 24, 12, 3, False, "3d-batch-head"),
    "pairs-then-blocks": (128, 150, 2, 48, 48, 3, True, "3d-batch-head"),  # items: pairs on 1 thread
    "long-pairs-then-blocks": ATTENTION_CASES["long-pairs-as-items"],  # pairs on 1-2 threads
    # ... each thread packing its pairs into one slot (2 MiB of copies), 8-10 query blocks
    "long-pairs-in-thread-slots": (301, 2100, 1, 128, 128, 8, True, None),
    "decode-heads-of-64": (2, 1500, 2, 128, 128, 2, False, "4d-padding"),
    # 32 pairs, 2 key chunks: one group of 32 pairs on 1 thread, smaller
    # groups on more (for more items per thread)
    "decode-regrouped": (1, 600, 8, 256, 256, 4, False, "4d-padding"),
    # whole pairs in a slot per thread (on 1 thread: one slot for all 12 pairs)
    "pairs-in-thread-slots": ATTENTION_CASES["pairs-in-thread-slots"],
    # query lanes: 32 pairs in groups that shrink with the thread count, 2 key chunks
    "query-lanes-regrouped": (12, 600, 8, 256, 256, 4, True, "4d-padding"),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", list(DETERMINISM_RNN.values()), ids=list(DETERMINISM_RNN))
def test_rnn_bitwise_across_threads(isa, rng, shape, dtype):
    args = rnn_inputs(rng, *shape, dtype=dtype)
    first = bf.rnn(*args, num_threads=1)
    for n in OTHER_THREAD_COUNTS:
        assert_bitwise_equal(bf.rnn(*args, num_threads=n), first)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(8, 16, 5, 128), (5, 11, 9, 192)], ids=["B16-H128", "B11-H192"])
def test_rnn_same_bits_on_or_off_a_cache_line(isa, rng, shape, dtype):
    """The default result starts on a cache line, so that on 2+ threads the
    steps are summed in segments; an out= off its line is summed in one pass.
    Both give the bits of one thread."""
    T, B, I, H = shape
    args = rnn_inputs(rng, *shape, dtype=dtype)
    first = bf.rnn(*args, num_threads=1)
    assert first.__array_interface__["data"][0] % 64 == 0
    off_line = _backend.native.empty_aligned((T * B * H + 1,), np.dtype(dtype))[1:]
    for n in (1,) + tuple(OTHER_THREAD_COUNTS):
        assert_bitwise_equal(bf.rnn(*args, num_threads=n), first)
        out = off_line.reshape(T, B, H)
        assert bf.rnn(*args, num_threads=n, out=out) is out
        assert_bitwise_equal(out, first)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(DETERMINISM_ATTENTION.values()),
                         ids=list(DETERMINISM_ATTENTION))
def test_attention_bitwise_across_threads(isa, rng, case, dtype):
    Lq, Lk, B, E, Ev, heads, causal, form = case
    Q, K, V = attention_inputs(rng, Lq, Lk, B, E, Ev, dtype)
    mask = make_mask(rng, form, Lq, Lk, B, heads)
    kw = dict(num_heads=heads, causal=causal)
    first = bf.attention(Q, K, V, mask, num_threads=1, **kw)
    for n in OTHER_THREAD_COUNTS:
        assert_bitwise_equal(bf.attention(Q, K, V, mask, num_threads=n, **kw), first)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["tiled-causal", "decode-regrouped-masked", "thread-slots-causal",
                                  "query-lanes-masked"])
def test_attention_bitwise_across_threads_with_nan_in_v(isa, rng, case, dtype):
    # A NaN in V sends P.V down a path that skips removed keys, chosen per
    # query block (tiled) or per group of pairs (decoding), so which rows or
    # pairs share one must not change the bits.  tiled-causal: Lq = 41 leaves
    # a lone row in a GEMM tile of its own (two chains of additions); whole
    # pairs are the items on 1-2 threads, blocks on 3+.  decode: one group of
    # 32 pairs on 1 thread, smaller groups on more; the mask removes keys.
    # thread-slots-causal: 12 pairs (4 MiB of copies) as items on 1-3 threads,
    # each thread's pairs packed into its own slot, with V's flags per slot.
    # query-lanes-masked: 12 query rows, groups of pairs as in decoding.
    if case == "tiled-causal":
        Lq, Lk, B, E, heads, causal, mask = 41, 41, 1, 2048, 8, True, None
    elif case == "thread-slots-causal":
        Lq, Lk, B, E, heads, causal, mask = 45, 700, 6, 128, 2, True, None
    else:
        Lq, Lk, B, E, heads, causal = 1, 600, 8, 256, 4, False
        if case == "query-lanes-masked":
            Lq = 12
        mask = rng.random((B, 1, 1, Lk)) > 0.2
    Q, K, V = attention_inputs(rng, Lq, Lk, B, E, E, dtype)
    V[0, 0, 0] = np.nan     # feature 0 of head 0 of batch row 0
    if mask is not None:
        mask[0, 0, 0, 0] = True
    kw = dict(num_heads=heads, causal=causal)
    first = bf.attention(Q, K, V, mask, num_threads=1, **kw)
    nan = np.isnan(first)   # key 0 is seen by every row; only its NaN feature is NaN
    assert nan[:, 0, 0].all() and nan.sum() == Lq
    for n in OTHER_THREAD_COUNTS:
        assert_bitwise_equal(bf.attention(Q, K, V, mask, num_threads=n, **kw), first)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("Lk", [150, 700], ids=["one-tile", "two-tiles"])
def test_attention_bitwise_across_threads_with_nan_and_inf_scores(isa, rng, Lk, dtype):
    # NaN and infinite entries in Q and K make rows whose scores hold NaN or
    # +-inf, hence a NaN weight or max.  With one tile of keys a block's
    # product is written straight to the output unless a row's weight is not
    # positive; NaN payloads and signs must not depend on the thread count
    # either way.  Lq = 90: whole (batch, head) pairs are the items on 1
    # thread, blocks on more.
    Lq, B, E, heads = 90, 3, 32, 2
    Q, K, V = attention_inputs(rng, Lq, Lk, B, E, E, dtype)
    Q[5, 0, 0] = np.nan
    Q[50, 1, 3] = np.inf
    K[7, 2, 1] = -np.inf
    K[100, 0, E // 2 + 1] = np.inf
    first = bf.attention(Q, K, V, num_heads=heads, num_threads=1)
    assert np.isnan(first).any()
    for n in OTHER_THREAD_COUNTS:
        assert_bitwise_equal(bf.attention(Q, K, V, num_heads=heads, num_threads=n), first)


def test_default_threads_give_the_same_bits(rng):
    Q, K, V = attention_inputs(rng, 64, 200, 2, 16, 16)
    one = bf.attention(Q, K, V, num_heads=2, num_threads=1)
    before = bf.get_num_threads()
    try:
        bf.set_num_threads(3)
        assert bf.get_num_threads() == 3
        assert_bitwise_equal(bf.attention(Q, K, V, num_heads=2), one)
    finally:
        bf.set_num_threads(None)
    assert bf.get_num_threads() == before
