"""pytest-benchmark: bf.rnn vs the NumPy reference vs torch.nn.RNN on the standard RNN shapes
(parametrized by conftest.py: shape x implementation, grouped by shape)."""

KERNEL = "rnn"


def test_rnn(run_case):
    run_case()
