"""The standard benchmark shapes (bigmodel_fast.bench_shapes)."""

import numpy as np
import pytest

from bigmodel_fast.bench_shapes import (ATTENTION_SHAPES, RNN_SHAPES, SHAPES, WIDER_SHAPES,
                                        AttentionShape, RNNShape, standard_shapes)


def test_the_target_shapes_are_there():
    rnn = {(s.T, s.B, s.I, s.H, s.dtype) for s in RNN_SHAPES}
    assert rnn == {(100, 1, 64, 64, "float32"), (1000, 1, 256, 256, "float32"),
                   (200, 16, 128, 256, "float32"), (100, 64, 512, 512, "float32"),
                   (1000, 1, 256, 256, "float64")}
    plain = {(s.Lq, s.Lk, s.B, s.E, s.heads, s.dtype) for s in ATTENTION_SHAPES
             if not (s.causal or s.padding_mask)}
    assert plain == {(128, 128, 8, 64, 1, "float32"), (2048, 2048, 2, 64, 1, "float32"),
                     (1024, 1024, 2, 512, 8, "float32"), (1, 4096, 8, 512, 8, "float32"),
                     (2048, 2048, 2, 64, 1, "float64")}
    assert any(s.causal for s in ATTENTION_SHAPES) and any(s.padding_mask for s in ATTENTION_SHAPES)
    assert len({s.name for s in SHAPES}) == len(SHAPES)
    assert len({s.name for s in standard_shapes(quick=True)}) == len(SHAPES)


def test_flops():
    assert RNNShape("r", T=10, B=2, I=3, H=4).flops == 2 * 10 * 2 * 4 * (3 + 4)
    assert AttentionShape("a", Lq=5, Lk=7, B=2, E=8).flops == 4 * 5 * 7 * 8 * 2
    causal = AttentionShape("c", Lq=4, Lk=4, B=1, E=2, causal=True)
    assert causal.flops == 4 * 2 * (1 + 2 + 3 + 4)       # attended (query, key) pairs only
    masked = AttentionShape("m", Lq=3, Lk=8, B=2, E=2, padding_mask=True)
    mask = masked.make_inputs()["mask"]
    assert masked.flops == 4 * 2 * mask.sum()


def test_quick_variants_are_smaller_and_named_so():
    for full, quick in zip(SHAPES, standard_shapes(quick=True)):
        assert quick.flops <= full.flops
        assert (quick.name == full.name) == (quick.flops == full.flops)
        assert quick.kernel == full.kernel and quick.dtype == full.dtype


@pytest.mark.parametrize("shape", [s.quick_variant() for s in SHAPES[:1] + ATTENTION_SHAPES[-2:]],
                         ids=lambda s: s.name)
def test_inputs_are_seeded_and_of_the_shape_dtype(shape):
    a, b = shape.make_inputs(), shape.make_inputs()
    for key in a:
        if a[key] is None:
            continue
        np.testing.assert_array_equal(a[key], b[key])
        if a[key].dtype != bool:
            assert a[key].dtype == np.dtype(shape.dtype)


def test_filters():
    assert {s.kernel for s in standard_shapes(kernel="rnn")} == {"rnn"}
    assert {s.dtype for s in standard_shapes(dtype="float64")} == {"float64"}
    assert [s.name for s in standard_shapes(quick=True, names=["attn-long"])] == ["attn-long-quick"]
    assert [s.name for s in standard_shapes(names=["attn-long-quick"])] == ["attn-long"]
    with pytest.raises(ValueError, match="unknown shape"):
        standard_shapes(names=["nope"])


def test_the_wider_set():
    names = [s.name for s in WIDER_SHAPES]
    assert len(set(names)) == len(names) and not set(names) & {s.name for s in SHAPES}
    assert [s.name for s in standard_shapes(wider=True)] == names
    assert [s.name for s in standard_shapes(wider=True, quick=True)] == names   # no quick variants
    assert {s.kernel for s in standard_shapes(wider=True, kernel="rnn")} == {"rnn"}
    assert [s.name for s in standard_shapes(wider=True, names=["attn-16x1024"])] == ["attn-16x1024"]
    with pytest.raises(ValueError, match="unknown shape"):
        standard_shapes(wider=True, names=["attn-long"])
