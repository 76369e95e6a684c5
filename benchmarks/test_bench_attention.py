"""pytest-benchmark: bf.attention vs the NumPy reference vs torch's scaled_dot_product_attention
on the standard attention shapes, with a causal and a padding-masked one (parametrized by
conftest.py: shape x implementation, grouped by shape)."""

KERNEL = "attention"


def test_attention(run_case):
    run_case()
