import numpy as np

import bigmodel_fast as bf


def test_rnn_matches_reference(rng):
    x = rng.standard_normal((6, 3, 5))
    h0 = rng.standard_normal((3, 7))
    Wx, Wh, b = rng.standard_normal((7, 5)) * 0.3, rng.standard_normal((7, 7)) * 0.3, rng.standard_normal(7)
    np.testing.assert_allclose(bf.rnn(x, h0, Wx, Wh, b), bf.reference.rnn(x, h0, Wx, Wh, b),
                               rtol=0, atol=1e-12)


def test_attention_matches_reference(rng):
    Q, K, V = rng.standard_normal((9, 2, 16)), rng.standard_normal((11, 2, 16)), rng.standard_normal((11, 2, 8))
    np.testing.assert_allclose(bf.attention(Q, K, V, num_heads=4, causal=True),
                               bf.reference.attention(Q, K, V, num_heads=4, causal=True),
                               rtol=0, atol=1e-12)
