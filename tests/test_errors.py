"""Bad input: a TypeError or ValueError that names the argument (and the
shapes involved), on both backends, before any work."""

import re

import numpy as np
import pytest

import bigmodel_fast as bf

# Valid arguments that each case spoils in one place.
T, B, I, H = 4, 2, 3, 5
Lq, Lk, E, Ev = 3, 6, 4, 6


def good_rnn():
    rng = np.random.default_rng(0)
    return dict(x=rng.standard_normal((T, B, I)), h0=rng.standard_normal((B, H)),
                Wx=rng.standard_normal((H, I)), Wh=rng.standard_normal((H, H)),
                b=rng.standard_normal(H))


def good_attention():
    rng = np.random.default_rng(0)
    return dict(Q=rng.standard_normal((Lq, B, E)), K=rng.standard_normal((Lk, B, E)),
                V=rng.standard_normal((Lk, B, Ev)))


def readonly(shape):
    a = np.zeros(shape)
    a.flags.writeable = False
    return a


def shape_text(shape):
    return re.escape(str(tuple(shape)))


BACKENDS = {"api": (bf.rnn, bf.attention),
            "reference": (bf.reference.rnn, bf.reference.attention)}

# id -> (kernel, overrides, exception, regex the message must match)
CASES = {
    # rnn: ranks and shapes
    "x-1d": ("rnn", dict(x=np.zeros(4)), ValueError, r"\bx\b.*\(4,\)"),
    "x-4d": ("rnn", dict(x=np.zeros((T, B, I, 1))), ValueError, r"\bx\b.*" + shape_text((T, B, I, 1))),
    "x-scalar": ("rnn", dict(x=1.0), ValueError, r"\bx\b.*\(\)"),
    "h0-1d": ("rnn", dict(h0=np.zeros(H)), ValueError, r"h0.*\(5,\)"),
    "h0-3d": ("rnn", dict(h0=np.zeros((1, B, H))), ValueError, r"h0.*" + shape_text((1, B, H))),
    "h0-wrong-batch": ("rnn", dict(h0=np.zeros((B + 1, H))), ValueError, r"h0.*" + shape_text((B + 1, H))),
    "Wx-wrong-I": ("rnn", dict(Wx=np.zeros((H, I + 1))), ValueError, r"Wx.*" + shape_text((H, I + 1))),
    "Wx-transposed": ("rnn", dict(Wx=np.zeros((I, H))), ValueError, r"Wx.*" + shape_text((I, H))),
    "Wx-1d": ("rnn", dict(Wx=np.zeros(H)), ValueError, r"Wx.*\(5,\)"),
    "Wh-not-square": ("rnn", dict(Wh=np.zeros((H, H - 1))), ValueError, r"Wh.*" + shape_text((H, H - 1))),
    "Wh-wrong-H": ("rnn", dict(Wh=np.zeros((H + 1, H + 1))), ValueError, r"Wh.*" + shape_text((H + 1, H + 1))),
    "b-2d": ("rnn", dict(b=np.zeros((H, 1))), ValueError, r"\bb\b.*" + shape_text((H, 1))),
    "b-wrong-H": ("rnn", dict(b=np.zeros(H - 1)), ValueError, r"\bb\b.*\(4,\)"),
    "x-2d-wrong-Wx": ("rnn", dict(x=np.zeros((T, B))), ValueError, r"Wx.*" + shape_text((H, I))),
    # rnn: kinds
    "x-complex": ("rnn", dict(x=np.zeros((T, B, I), complex)), TypeError, r"\bx\b.*complex"),
    "h0-object": ("rnn", dict(h0=np.zeros((B, H), object)), TypeError, r"h0.*object"),
    "Wx-string": ("rnn", dict(Wx=np.full((H, I), "a")), TypeError, r"Wx.*string"),
    "Wh-bytes": ("rnn", dict(Wh=np.full((H, H), b"a")), TypeError, r"Wh"),
    "b-None": ("rnn", dict(b=None), TypeError, r"\bb\b.*None"),
    "x-None": ("rnn", dict(x=None), TypeError, r"\bx\b.*None"),
    "b-ragged": ("rnn", dict(b=[1.0, [2.0, 3.0], 4.0, 5.0, 6.0]), ValueError, r"\bb\b.*rectangular"),
    "x-ragged": ("rnn", dict(x=[[[1.0, 2.0, 3.0]], [[1.0]]]), ValueError, r"\bx\b.*rectangular"),
    "h0-datetime": ("rnn", dict(h0=np.zeros((B, H), "datetime64[s]")), TypeError, r"h0"),
    # rnn: num_threads and out
    "rnn-threads-0": ("rnn", dict(num_threads=0), ValueError, r"num_threads"),
    "rnn-threads-neg": ("rnn", dict(num_threads=-1), ValueError, r"num_threads"),
    "rnn-threads-float": ("rnn", dict(num_threads=2.5), TypeError, r"num_threads"),
    "rnn-threads-str": ("rnn", dict(num_threads="2"), TypeError, r"num_threads"),
    "rnn-threads-bool": ("rnn", dict(num_threads=True), TypeError, r"num_threads"),
    "rnn-threads-huge": ("rnn", dict(num_threads=2**31), ValueError, r"num_threads"),
    "rnn-out-shape": ("rnn", dict(out=np.zeros((T, B, H + 1))), ValueError,
                      r"out.*" + shape_text((T, B, H + 1)) + r".*" + shape_text((T, B, H))),
    "rnn-out-dtype": ("rnn", dict(out=np.zeros((T, B, H), np.float32)), TypeError, r"out.*float32"),
    "rnn-out-strided": ("rnn", dict(out=np.zeros((T, B, 2 * H))[:, :, ::2]), ValueError, r"out.*contiguous"),
    "rnn-out-fortran": ("rnn", dict(out=np.zeros((T, B, H), order="F")), ValueError, r"out.*contiguous"),
    "rnn-out-readonly": ("rnn", dict(out=readonly((T, B, H))), ValueError, r"out.*read-only"),
    "rnn-out-list": ("rnn", dict(out=np.zeros((T, B, H)).tolist()), TypeError, r"out.*ndarray"),
    # attention: ranks and shapes
    "Q-2d": ("attention", dict(Q=np.zeros((Lq, E))), ValueError, r"\bQ\b.*" + shape_text((Lq, E))),
    "K-4d": ("attention", dict(K=np.zeros((Lk, B, E, 1))), ValueError, r"\bK\b.*" + shape_text((Lk, B, E, 1))),
    "V-2d": ("attention", dict(V=np.zeros((Lk, Ev))), ValueError, r"\bV\b.*" + shape_text((Lk, Ev))),
    "K-wrong-batch": ("attention", dict(K=np.zeros((Lk, B + 1, E))), ValueError, r"\bK\b.*" + shape_text((Lk, B + 1, E))),
    "K-wrong-E": ("attention", dict(K=np.zeros((Lk, B, E + 1))), ValueError, r"\bK\b.*" + shape_text((Lk, B, E + 1))),
    "V-wrong-Lk": ("attention", dict(V=np.zeros((Lk - 1, B, Ev))), ValueError, r"\bV\b.*" + shape_text((Lk - 1, B, Ev))),
    "V-wrong-batch": ("attention", dict(V=np.zeros((Lk, B + 1, Ev))), ValueError, r"\bV\b.*" + shape_text((Lk, B + 1, Ev))),
    # attention: kinds
    "Q-complex": ("attention", dict(Q=np.zeros((Lq, B, E), complex)), TypeError, r"\bQ\b.*complex"),
    "K-object": ("attention", dict(K=np.zeros((Lk, B, E), object)), TypeError, r"\bK\b.*object"),
    "V-string": ("attention", dict(V=np.full((Lk, B, Ev), "x")), TypeError, r"\bV\b.*string"),
    "Q-None": ("attention", dict(Q=None), TypeError, r"\bQ\b.*None"),
    "K-python-objects": ("attention", dict(K=[[["a"]]]), TypeError, r"\bK\b"),
    # attention: masks
    "mask-int": ("attention", dict(mask=np.zeros((Lq, Lk), int)), TypeError, r"mask.*int"),
    "mask-uint8": ("attention", dict(mask=np.zeros((Lq, Lk), np.uint8)), TypeError, r"mask.*uint8"),
    "mask-complex": ("attention", dict(mask=np.zeros((Lq, Lk), complex)), TypeError, r"mask.*complex"),
    "mask-object": ("attention", dict(mask=np.zeros((Lq, Lk), object)), TypeError, r"mask"),
    "mask-string": ("attention", dict(mask=np.full((Lq, Lk), "a")), TypeError, r"mask"),
    "mask-ragged": ("attention", dict(mask=[[True, False], [True]]), ValueError, r"mask.*rectangular"),
    "Q-ragged": ("attention", dict(Q=[[[1.0, 2.0]], [[1.0]]]), ValueError, r"\bQ\b.*rectangular"),
    "mask-1d": ("attention", dict(mask=np.zeros(Lk)), ValueError, r"mask.*\(6,\)"),
    "mask-5d": ("attention", dict(mask=np.zeros((1, 1, 1, Lq, Lk))), ValueError, r"mask.*" + shape_text((1, 1, 1, Lq, Lk))),
    "mask-transposed": ("attention", dict(mask=np.zeros((Lk, Lq))), ValueError, r"mask.*" + shape_text((Lk, Lq))),
    "mask-wrong-Lk": ("attention", dict(mask=np.zeros((Lq, Lk + 1))), ValueError, r"mask.*" + shape_text((Lq, Lk + 1))),
    "mask-3d-bad-lead": ("attention", dict(mask=np.zeros((B + 1, Lq, Lk), bool)), ValueError, r"mask.*" + shape_text((B + 1, Lq, Lk))),
    "mask-4d-bad-heads": ("attention", dict(mask=np.zeros((B, 3, Lq, Lk)), num_heads=2), ValueError, r"mask.*" + shape_text((B, 3, Lq, Lk))),
    "mask-4d-bad-batch": ("attention", dict(mask=np.zeros((B + 1, 1, Lq, Lk))), ValueError, r"mask.*" + shape_text((B + 1, 1, Lq, Lk))),
    # attention: heads, causal, scale
    "heads-not-dividing-E": ("attention", dict(num_heads=3), ValueError, r"num_heads.*E=4"),
    "heads-not-dividing-Ev": ("attention", dict(num_heads=4), ValueError, r"num_heads.*Ev=6"),
    "heads-0": ("attention", dict(num_heads=0), ValueError, r"num_heads"),
    "heads-neg": ("attention", dict(num_heads=-1), ValueError, r"num_heads"),
    "heads-float": ("attention", dict(num_heads=1.5), TypeError, r"num_heads"),
    "heads-bool": ("attention", dict(num_heads=True), TypeError, r"num_heads"),
    "heads-str": ("attention", dict(num_heads="2"), TypeError, r"num_heads"),
    "heads-None": ("attention", dict(num_heads=None), TypeError, r"num_heads"),
    "causal-str": ("attention", dict(causal="yes"), TypeError, r"causal"),
    "causal-None": ("attention", dict(causal=None), TypeError, r"causal"),
    "scale-str": ("attention", dict(scale="a"), TypeError, r"scale"),
    "scale-complex": ("attention", dict(scale=1j), TypeError, r"scale"),
    "scale-array": ("attention", dict(scale=np.array([1.0, 2.0])), TypeError, r"scale"),
    # attention: num_threads and out
    "att-threads-0": ("attention", dict(num_threads=0), ValueError, r"num_threads"),
    "att-threads-str": ("attention", dict(num_threads="2"), TypeError, r"num_threads"),
    "att-threads-float": ("attention", dict(num_threads=2.0), TypeError, r"num_threads"),
    "att-threads-huge": ("attention", dict(num_threads=2**40), ValueError, r"num_threads"),
    "att-out-shape": ("attention", dict(out=np.zeros((Lq, B, E))), ValueError,
                      r"out.*" + shape_text((Lq, B, E)) + r".*" + shape_text((Lq, B, Ev))),
    "att-out-dtype": ("attention", dict(out=np.zeros((Lq, B, Ev), np.float32)), TypeError, r"out.*float32"),
    "att-out-strided": ("attention", dict(out=np.zeros((Lq, 2 * B, Ev))[:, ::2]), ValueError, r"out.*contiguous"),
    "att-out-readonly": ("attention", dict(out=readonly((Lq, B, Ev))), ValueError, r"out.*read-only"),
    "att-out-tuple": ("attention", dict(out=(1, 2)), TypeError, r"out.*ndarray"),
}


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_bad_input(case, backend):
    kernel, overrides, exc, pattern = case
    rnn, attention = BACKENDS[backend]
    args = good_rnn() if kernel == "rnn" else good_attention()
    args.update(overrides)
    fn = rnn if kernel == "rnn" else attention
    out = args.get("out")
    before = out.copy() if isinstance(out, np.ndarray) else None
    with pytest.raises(exc, match=pattern):
        fn(**args)
    if before is not None:       # raised before any work: out untouched
        assert np.array_equal(out, before)


def test_at_least_forty_cases():
    assert len(CASES) >= 40


@pytest.mark.parametrize("bad", [0, -2, 2.5, "3", True, 2**31])
def test_set_num_threads_rejects(bad):
    before = bf.get_num_threads()
    with pytest.raises((TypeError, ValueError), match="num_threads"):
        bf.set_num_threads(bad)
    assert bf.get_num_threads() == before


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_good_arguments_pass(backend):
    # The baseline of every case above is itself valid.
    rnn, attention = BACKENDS[backend]
    assert rnn(**good_rnn()).shape == (T, B, H)
    assert attention(**good_attention(), num_heads=2).shape == (Lq, B, Ev)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_numpy_scalars_pass_as_their_python_values(backend):
    # The quick paths for plain ints and bools must not turn NumPy's away.
    rnn, attention = BACKENDS[backend]
    args = good_attention()
    want = attention(**args, num_heads=2, causal=True, scale=0.5, num_threads=2)
    got = attention(**args, num_heads=np.int64(2), causal=np.bool_(True), scale=np.float32(0.5),
                    num_threads=np.int32(2))
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(rnn(**good_rnn(), num_threads=np.uint8(2)),
                                  rnn(**good_rnn(), num_threads=2))
