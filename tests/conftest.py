"""Shared helpers of the test suite: array makers, layouts, SPEC's tolerances,
ISA levels, and the per-element loop oracles (plain Python, float64) that the
NumPy reference is held to."""

import contextlib
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest

import bigmodel_fast as bf
from bigmodel_fast import _backend

# SPEC.md: native matches the reference to within these (inputs of unit scale).
TOLERANCE = {np.dtype(name): tol for name, tol in bf.reference.TOLERANCE.items()}

ISA_ORDER = ("baseline", "avx2", "avx512", "amx")


def _kernel_constant(name):
    """A #define of src/kernels_impl.h, read from the source so that the
    tests follow the kernels' tile sizes."""
    header = Path(__file__).resolve().parent.parent / "src" / "kernels_impl.h"
    return int(re.search(rf"#define {name} (\d+)", header.read_text()).group(1))


# Keys per tile of attention's tiled path (BMF_ATT_BK) and of its key-major
# (decoding) path (BMF_ATT_BK_KM): the tests mask whole tiles and pick key
# lengths around them.  A range aligned to KEY_TILE is whole tiles of both.
# TILED_LK: two whole tiles and a partial one.
KEY_TILE = _kernel_constant("BMF_ATT_BK")
KEY_TILE_KEY_MAJOR = _kernel_constant("BMF_ATT_BK_KM")
assert KEY_TILE % KEY_TILE_KEY_MAJOR == 0
TILED_LK = 2 * KEY_TILE + 76


# The thread counts that the bitwise tests compare with one thread: 2..4, or
# 2..N with BMF_TEST_MAX_THREADS=N >= 2 in the environment (a many-core machine:
# every split of the work up to N), as src/tests/test_kernels.c reads it.
def _other_thread_counts(default_max=4):
    try:
        top = int(os.environ.get("BMF_TEST_MAX_THREADS", ""))
    except ValueError:
        top = default_max
    return tuple(range(2, (top if top >= 2 else default_max) + 1))


OTHER_THREAD_COUNTS = _other_thread_counts()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# ---------------------------------------------------------------- comparisons

def assert_close(actual, expected, dtype=None):
    """Absolute difference within SPEC's tolerance for `dtype` (default: the
    result's); NaN must sit exactly where the expected result has NaN."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    dtype = np.dtype(dtype if dtype is not None else actual.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    np.testing.assert_allclose(actual.astype(np.float64), expected.astype(np.float64),
                               rtol=0, atol=TOLERANCE[dtype], equal_nan=True)


def assert_bitwise_equal(a, b):
    """Same shape, dtype and bytes (NaN payloads included)."""
    assert a.shape == b.shape and a.dtype == b.dtype
    assert np.array_equal(np.ascontiguousarray(a).view(np.uint8),
                          np.ascontiguousarray(b).view(np.uint8))


# ---------------------------------------------------------------- array makers

def rnn_inputs(rng, T, B, I, H, dtype=np.float64, saturating=False):
    """x, h0, Wx, Wh, b with weights scaled 1/sqrt(fan_in), so that the state
    stays in tanh's linear-ish range.

    saturating=True: |x| >= 1e4, and x (per step and batch row) and Wx (per
    hidden unit) of one sign each, so every pre-activation is >= ~1e3 in
    magnitude (I >= 1): tanh saturates everywhere.  (Random |x| ~ 1e4 would
    put a few pre-activations near 0, where rounding of the 1e4-sized terms,
    not the kernel, decides the result beyond SPEC's unit-scale tolerance.)"""
    if saturating:
        x = (np.sign(rng.standard_normal((T, B, 1))) * 1e4
             * (1 + np.abs(rng.standard_normal((T, B, I)))))
        Wx = (np.sign(rng.standard_normal((H, 1)))
              * (0.1 + np.abs(rng.standard_normal((H, I)))) / math.sqrt(max(I, 1)))
    else:
        x = rng.standard_normal((T, B, I))
        Wx = rng.standard_normal((H, I)) / math.sqrt(max(I, 1))
    h0 = rng.standard_normal((B, H)) * 0.5
    Wh = rng.standard_normal((H, H)) / math.sqrt(max(H, 1))
    b = rng.standard_normal(H) * 0.1
    return tuple(a.astype(dtype) for a in (x, h0, Wx, Wh, b))


def attention_inputs(rng, Lq, Lk, B, E, Ev, dtype=np.float64):
    """Q (Lq, B, E), K (Lk, B, E), V (Lk, B, Ev) of unit scale."""
    Q = rng.standard_normal((Lq, B, E))
    K = rng.standard_normal((Lk, B, E))
    V = rng.standard_normal((Lk, B, Ev))
    return tuple(a.astype(dtype) for a in (Q, K, V))


LAYOUTS = ("C", "F", "strided", "reversed", "readonly", "misaligned")


def with_layout(a, layout):
    """The same values as `a` in another memory layout."""
    if layout == "C":
        return np.ascontiguousarray(a)
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "strided":        # every other element of a larger buffer
        big = np.zeros(tuple(2 * s for s in a.shape), a.dtype)
        view = big[tuple(slice(None, None, 2) for _ in a.shape)]
        view[...] = a
        return view
    if layout == "reversed":       # negative strides
        big = np.ascontiguousarray(a[tuple(slice(None, None, -1) for _ in a.shape)])
        return big[tuple(slice(None, None, -1) for _ in a.shape)]
    if layout == "readonly":
        r = np.array(a)
        r.flags.writeable = False
        return r
    if layout == "misaligned":     # C-contiguous, one byte off an element boundary
        r = np.zeros(a.nbytes + 1, np.uint8)[1:].view(a.dtype).reshape(a.shape)
        r[...] = a
        return r
    raise ValueError(layout)


# ---------------------------------------------------------------- ISA levels

def isa_levels():
    """The ISA levels this CPU has (none without the native backend)."""
    if _backend.native is None:
        return []
    cpu = _backend.native.cpu_isa()
    return list(ISA_ORDER[:ISA_ORDER.index(cpu) + 1])


@contextlib.contextmanager
def use_isa(level):
    """Run the native kernels at `level`, then restore the previous level."""
    native = _backend.native
    before = native.get_isa()
    try:
        assert native.set_isa(level) == level
        yield level
    finally:
        native.set_isa(before)


@pytest.fixture(params=isa_levels() or [None])
def isa(request):
    """Parametrised over every ISA level of this CPU (native backend only)."""
    if request.param is None:
        pytest.skip("native backend not in use")
    with use_isa(request.param):
        yield request.param


def native_in_use():
    return bf.backend() == "native"


# ---------------------------------------------------------------- loop oracles
# Deliberately naive: one output element at a time, Python floats (float64),
# math.tanh / math.exp, no NumPy arithmetic.  Obvious rather than fast.

def loop_rnn(x, h0, Wx, Wh, b):
    """h_t[k] = tanh(sum_i x_t[i] Wx[k, i] + sum_j h_{t-1}[j] Wh[k, j] + b[k])."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        x = x[:, :, None]
    x, h0, Wx, Wh, b = (np.asarray(a, dtype=np.float64).tolist() for a in (x, h0, Wx, Wh, b))
    T, B = len(x), len(h0)
    H = len(b)
    I = len(Wx[0]) if H else 0
    out = []
    h = [list(row) for row in h0]
    for t in range(T):
        new = []
        for bi in range(B):
            row = []
            for k in range(H):
                acc = b[k]
                for i in range(I):
                    acc += x[t][bi][i] * Wx[k][i]
                for j in range(H):
                    acc += h[bi][j] * Wh[k][j]
                row.append(math.tanh(acc))
            new.append(row)
        out.append(new)
        h = new
    return np.array(out, dtype=np.float64).reshape(T, B, H)


def _mask_value(mask, b, hd, i, j, B, heads):
    """The additive mask entry for (batch b, head hd, query i, key j), read
    straight from SPEC's list of accepted shapes."""
    if mask is None:
        return 0.0
    if mask.ndim == 2:                         # (Lq, Lk), size 1 broadcasts
        v = mask[i if mask.shape[0] > 1 else 0, j if mask.shape[1] > 1 else 0]
    elif mask.ndim == 3:
        lead = mask.shape[0]
        if lead == 1:                          # (1, Lq, Lk): one for all
            idx = 0
        elif lead == B:                        # (B, Lq, Lk): per batch element
            idx = b
        else:                                  # (B*heads, Lq, Lk), batch-major
            assert lead == B * heads
            idx = b * heads + hd
        v = mask[idx, i if mask.shape[1] > 1 else 0, j if mask.shape[2] > 1 else 0]
    else:                                      # 4-D, size 1 broadcasts
        s = mask.shape
        v = mask[b if s[0] > 1 else 0, hd if s[1] > 1 else 0,
                 i if s[2] > 1 else 0, j if s[3] > 1 else 0]
    if mask.dtype == np.bool_:
        return 0.0 if v else -math.inf
    return float(v)


def loop_attention(Q, K, V, mask=None, num_heads=1, causal=False, scale=None):
    """out[i, b, head h's features] = sum_j w_j V[j, b, ...] / sum_j w_j with
    w_j = exp(s_j - max s), s_j = scale * <Q[i, b, h], K[j, b, h]> + mask;
    keys whose mask is -inf (False) or causally hidden drop out before their
    K and V are read; no key left -> zeros; any NaN score -> NaN row."""
    Q, K, V = (np.asarray(a, dtype=np.float64) for a in (Q, K, V))
    mask = None if mask is None else np.asarray(mask)
    Lq, B, E = Q.shape
    Lk, Ev = K.shape[0], V.shape[2]
    Dk, Dv = E // num_heads, Ev // num_heads
    if scale is None:
        scale = 1.0 / math.sqrt(Dk) if Dk else 1.0
    q, k, v = Q.tolist(), K.tolist(), V.tolist()
    out = np.zeros((Lq, B, Ev))
    for b in range(B):
        for hd in range(num_heads):
            for i in range(Lq):
                scores = []                     # (score, key index) of keys that count
                has_nan = False
                for j in range(Lk):
                    added = _mask_value(mask, b, hd, i, j, B, num_heads)
                    if (causal and j > i + (Lk - Lq)) or added == -math.inf:
                        continue                # a removed key: K and V never read
                    s = 0.0
                    for d in range(Dk):
                        s += q[i][b][hd * Dk + d] * k[j][b][hd * Dk + d]
                    s = s * scale + added
                    if math.isnan(s):
                        has_nan = True
                    elif s != -math.inf:
                        scores.append((s, j))
                for d in range(Dv):
                    col = hd * Dv + d
                    if has_nan:
                        out[i, b, col] = math.nan
                    elif not scores:
                        out[i, b, col] = 0.0
                    else:
                        m = max(s for s, _ in scores)
                        num = sum(math.exp(s - m) * v[j][b][col] for s, j in scores)
                        den = sum(math.exp(s - m) for s, _ in scores)
                        out[i, b, col] = num / den
    return out


def pytest_report_header(config):
    """Say which implementation the suite is testing (a silent NumPy fallback
    would otherwise look like a green native run)."""
    from bigmodel_fast import _backend
    native = _backend.native
    if native is None:
        why = _backend.native_load_error or "BIGMODEL_FAST_BACKEND=numpy"
        return f"bigmodel_fast backend: numpy ({why})"
    return (f"bigmodel_fast backend: native, ISA {native.get_isa()} (CPU: {native.cpu_isa()}), "
            f"OpenMP {native.openmp_enabled()}, default threads {bf.get_num_threads()}")
