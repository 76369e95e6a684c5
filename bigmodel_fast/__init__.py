"""bigmodel_fast: fast, correct CPU kernels for the blog post's NumPy RNN and
attention (C + OpenMP, SIMD chosen at run time), with a NumPy fallback.

    import bigmodel_fast as bf
    h = bf.rnn(x, h0, Wx, Wh, b)                  # (T, B, H)
    o = bf.attention(Q, K, V, mask, num_heads=8)  # (Lq, B, Ev)

``bf.reference`` holds the same functions in plain NumPy.  The exact contract
is in the README ("The API", "Choices where SPEC.md is silent" and "What the
package promises"), which restates the project's SPEC.md.
"""

from . import reference
from ._api import attention, rnn
from ._backend import backend, get_num_threads, openmp_enabled, set_num_threads

__version__ = "0.1.0"
__all__ = ["rnn", "attention", "reference", "backend", "openmp_enabled",
           "get_num_threads", "set_num_threads", "__version__"]
