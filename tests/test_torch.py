"""Cross-check against PyTorch, where it is installed (never required):
bf.rnn against torch.nn.RNN, bf.attention against
torch.nn.functional.scaled_dot_product_attention."""

import numpy as np
import pytest

import bigmodel_fast as bf
from conftest import assert_close, attention_inputs, rnn_inputs

torch = pytest.importorskip("torch")
F = torch.nn.functional

DTYPES = [np.float64, np.float32]


def torch_rnn(x, h0, Wx, Wh, b):
    """torch.nn.RNN with weight_ih = Wx, weight_hh = Wh, bias_ih = b, bias_hh = 0."""
    H, I = Wx.shape
    rnn = torch.nn.RNN(I, H, nonlinearity="tanh", bias=True, batch_first=False)
    rnn = rnn.to(torch.from_numpy(x).dtype)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.from_numpy(Wx))
        rnn.weight_hh_l0.copy_(torch.from_numpy(Wh))
        rnn.bias_ih_l0.copy_(torch.from_numpy(b))
        rnn.bias_hh_l0.zero_()
        out, h_n = rnn(torch.from_numpy(x), torch.from_numpy(h0)[None])
    assert torch.equal(out[-1], h_n[0])
    return out.numpy()


def to_heads(a, heads):
    """(L, B, heads*D) numpy -> (B, heads, L, D) torch."""
    L, B, E = a.shape
    return torch.from_numpy(a).reshape(L, B, heads, E // heads).permute(1, 2, 0, 3)


def torch_attention(Q, K, V, mask=None, num_heads=1, is_causal=False, scale=None):
    """SDPA on (B, heads, L, D); mask broadcastable to (B, heads, Lq, Lk)."""
    attn_mask = None if mask is None else torch.from_numpy(mask)
    out = F.scaled_dot_product_attention(to_heads(Q, num_heads), to_heads(K, num_heads),
                                         to_heads(V, num_heads), attn_mask=attn_mask,
                                         is_causal=is_causal, scale=scale)
    B, h, Lq, Dv = out.shape
    return out.permute(2, 0, 1, 3).reshape(Lq, B, h * Dv).numpy()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("T,B,I,H", [(1, 1, 1, 1), (7, 3, 5, 17), (4, 2, 33, 64), (3, 5, 1, 130)])
def test_rnn_matches_torch(rng, T, B, I, H, dtype):
    args = rnn_inputs(rng, T, B, I, H, dtype=dtype)
    assert_close(bf.rnn(*args), torch_rnn(*args))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("Lq,Lk,B,E,Ev,heads", [(5, 7, 2, 16, 16, 1), (9, 9, 3, 40, 40, 5),
                                                (6, 140, 2, 24, 12, 2), (1, 300, 1, 8, 8, 1)])
def test_attention_matches_sdpa(rng, Lq, Lk, B, E, Ev, heads, dtype):
    Q, K, V = attention_inputs(rng, Lq, Lk, B, E, Ev, dtype)
    assert_close(bf.attention(Q, K, V, num_heads=heads), torch_attention(Q, K, V, num_heads=heads))
    assert_close(bf.attention(Q, K, V, num_heads=heads, scale=0.3),
                 torch_attention(Q, K, V, num_heads=heads, scale=0.3))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("L", [1, 6, 150])
def test_causal_square_matches_sdpa_is_causal(rng, L, dtype):
    # torch's is_causal is top-left aligned: the same as ours only when Lq == Lk.
    Q, K, V = attention_inputs(rng, L, L, 2, 16, 8, dtype)
    assert_close(bf.attention(Q, K, V, num_heads=2, causal=True),
                 torch_attention(Q, K, V, num_heads=2, is_causal=True))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("Lq,Lk", [(1, 9), (4, 11), (40, 200)])
def test_causal_bottom_right_matches_sdpa_mask(rng, Lq, Lk, dtype):
    Q, K, V = attention_inputs(rng, Lq, Lk, 2, 8, 8, dtype)
    bottom_right = np.tril(np.ones((Lq, Lk), bool), k=Lk - Lq)
    assert_close(bf.attention(Q, K, V, causal=True),
                 torch_attention(Q, K, V, bottom_right))


@pytest.mark.parametrize("dtype", DTYPES)
def test_boolean_masks_match_sdpa(rng, dtype):
    Lq, Lk, B, heads = 5, 140, 2, 2
    Q, K, V = attention_inputs(rng, Lq, Lk, B, 8, 6, dtype)
    allowed = rng.random((B * heads, Lq, Lk)) > 0.3
    allowed[..., 0] = True               # every row keeps a key (torch gives NaN otherwise)
    as_4d = allowed.reshape(B, heads, Lq, Lk)   # batch-major, as nn.MultiheadAttention
    expected = torch_attention(Q, K, V, as_4d, num_heads=heads)
    assert_close(bf.attention(Q, K, V, allowed, num_heads=heads), expected)
    assert_close(bf.attention(Q, K, V, as_4d, num_heads=heads), expected)
    # (B, Lq, Lk): per batch element, shared by the heads.
    per_batch = allowed[::heads]
    assert_close(bf.attention(Q, K, V, per_batch, num_heads=heads),
                 torch_attention(Q, K, V, per_batch[:, None], num_heads=heads))
    # (Lq, Lk) combined with causality, against an explicit combined mask.
    shared = allowed[0]
    both = shared & np.tril(np.ones((Lq, Lk), bool), k=Lk - Lq)
    assert_close(bf.attention(Q, K, V, shared, num_heads=heads, causal=True),
                 torch_attention(Q, K, V, both, num_heads=heads))


@pytest.mark.parametrize("dtype", DTYPES)
def test_float_mask_matches_sdpa(rng, dtype):
    Q, K, V = attention_inputs(rng, 6, 20, 3, 12, 12, dtype)
    mask = rng.standard_normal((3, 1, 6, 20)).astype(dtype)
    mask[..., 5:9] = -np.inf
    assert_close(bf.attention(Q, K, V, mask, num_heads=3),
                 torch_attention(Q, K, V, mask, num_heads=3))
