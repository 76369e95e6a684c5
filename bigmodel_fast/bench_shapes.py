"""The standard benchmark shapes: the one list used by ``bigmodel-fast bench``
and by the pytest benchmarks in ``benchmarks/``.

The shapes are those of the kernel issues' target tables, plus a causal and a
padding-masked attention.  Each shape knows its name, its dimensions, its flop
count, how to make its inputs (seeded, unit scale, so SPEC's tolerances apply)
and how to call a function with the ``bf.rnn`` / ``bf.attention`` signature on
them.  ``quick=True`` gives the smaller variants used by ``bench --quick``:
the same roles at sizes that keep the whole run near 30 seconds on 2 cores.
``WIDER_SHAPES`` (``bench --wider``) are sizes beyond the targets', timed the
same way but with no targets of their own.
"""

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

__all__ = ["RNNShape", "AttentionShape", "RNN_SHAPES", "ATTENTION_SHAPES", "SHAPES",
           "WIDER_SHAPES", "standard_shapes", "KERNELS", "DTYPES"]

KERNELS = ("rnn", "attention")
DTYPES = ("float32", "float64")
_DTYPE_TAG = {"float32": "f32", "float64": "f64"}


class _Shape:
    """What the RNN and attention shapes share: naming and the quick variant."""

    kernel: ClassVar[str]

    @property
    def label(self):
        """name, dimensions and dtype in one line (for logs and plots)."""
        return f"{self.name} ({self.dims}, {self.dtype})"

    def quick_variant(self):
        """The --quick version: `quick` overrides applied, "-quick" appended to the name
        when the dimensions change (so a quick result is never mistaken for a full one)."""
        if not self.quick:
            return self
        return dataclasses.replace(self, name=self.name + "-quick", quick={}, **self.quick)


@dataclass(frozen=True)
class RNNShape(_Shape):
    """bf.rnn(x (T, B, I), h0 (B, H), Wx (H, I), Wh (H, H), b (H,))."""

    name: str
    T: int
    B: int
    I: int
    H: int
    dtype: str = "float32"
    quick: dict = field(default_factory=dict)   # overrides for the --quick variant
    report_peak: bool = False                   # print its fraction of the matmul peak

    kernel: ClassVar[str] = "rnn"

    @property
    def dims(self):
        return f"T={self.T} B={self.B} I={self.I} H={self.H}"

    @property
    def flops(self):
        # Per step and batch row: H x I and H x H matrix-vector products.
        return 2 * self.T * self.B * self.H * (self.I + self.H)

    def make_inputs(self, seed=0):
        """x, h0 of unit scale; weights and bias scaled 1/sqrt(fan_in) (torch's init scale)."""
        rng = np.random.default_rng(seed)
        T, B, I, H = self.T, self.B, self.I, self.H
        arrays = {
            "x": rng.standard_normal((T, B, I)),
            "h0": rng.standard_normal((B, H)),
            "Wx": rng.standard_normal((H, I)) / np.sqrt(I),
            "Wh": rng.standard_normal((H, H)) / np.sqrt(H),
            "b": rng.standard_normal(H) / np.sqrt(H),
        }
        return {k: v.astype(self.dtype) for k, v in arrays.items()}

    def call(self, fn, inputs, num_threads=None):
        """fn(x, h0, Wx, Wh, b, num_threads=...): bf.rnn or bf.reference.rnn."""
        i = inputs
        return fn(i["x"], i["h0"], i["Wx"], i["Wh"], i["b"], num_threads=num_threads)


@dataclass(frozen=True)
class AttentionShape(_Shape):
    """bf.attention(Q (Lq, B, E), K (Lk, B, E), V (Lk, B, E), mask, num_heads, causal)."""

    name: str
    Lq: int
    Lk: int
    B: int
    E: int
    heads: int = 1
    dtype: str = "float32"
    causal: bool = False
    padding_mask: bool = False   # boolean (B, Lq, Lk) mask: batch element b sees its first valid_keys(b) keys
    quick: dict = field(default_factory=dict)
    report_peak: bool = False

    kernel: ClassVar[str] = "attention"

    @property
    def dims(self):
        text = f"Lq={self.Lq} Lk={self.Lk} B={self.B} E={self.E} h={self.heads}"
        if self.causal:
            text += " causal"
        if self.padding_mask:
            text += " mask"
        return text

    def valid_keys(self, b):
        """Keys batch element b may attend under the padding mask: from Lk down to 3/4 Lk."""
        return self.Lk - (b * self.Lk) // (4 * max(self.B - 1, 1))

    @property
    def flops(self):
        # 4*Lq*Lk*E*B (QK^T and PV, 2 flops a multiply-add) counted over the
        # (query, key) pairs actually attended, so causal and masked shapes
        # are not credited with work they may legitimately skip.
        pairs = 0
        for b in range(self.B):
            keys = self.valid_keys(b) if self.padding_mask else self.Lk
            if self.causal:  # query i sees keys j <= i + (Lk - Lq)
                offset = self.Lk - self.Lq
                pairs += sum(max(0, min(keys, i + offset + 1)) for i in range(self.Lq))
            else:
                pairs += self.Lq * keys
        return 4 * self.E * pairs

    def make_inputs(self, seed=0):
        rng = np.random.default_rng(seed)
        Lq, Lk, B, E = self.Lq, self.Lk, self.B, self.E
        inputs = {
            "Q": rng.standard_normal((Lq, B, E)).astype(self.dtype),
            "K": rng.standard_normal((Lk, B, E)).astype(self.dtype),
            "V": rng.standard_normal((Lk, B, E)).astype(self.dtype),
            "mask": None,
        }
        if self.padding_mask:
            # The seed's (B, Lq, Lk) form; True = may attend.
            keys = np.array([self.valid_keys(b) for b in range(B)])
            row = np.arange(Lk)[None, :] < keys[:, None]               # (B, Lk)
            inputs["mask"] = np.ascontiguousarray(np.broadcast_to(row[:, None, :], (B, Lq, Lk)))
        return inputs

    def call(self, fn, inputs, num_threads=None):
        """fn(Q, K, V, mask, num_heads=, causal=, num_threads=): bf.attention or the reference."""
        i = inputs
        return fn(i["Q"], i["K"], i["V"], i["mask"], num_heads=self.heads, causal=self.causal,
                  num_threads=num_threads)


# The targets' shapes (issues 3 and 4).  `quick` shrinks the long dimension of
# the expensive ones; the cheap ones run as they are.
RNN_SHAPES = (
    RNNShape("rnn-small", T=100, B=1, I=64, H=64),
    RNNShape("rnn-long", T=1000, B=1, I=256, H=256, quick={"T": 200}),
    RNNShape("rnn-batch16", T=200, B=16, I=128, H=256, quick={"T": 50}),
    RNNShape("rnn-batch64", T=100, B=64, I=512, H=512, quick={"T": 20}, report_peak=True),
    RNNShape("rnn-long-f64", T=1000, B=1, I=256, H=256, dtype="float64", quick={"T": 200}),
)

ATTENTION_SHAPES = (
    AttentionShape("attn-short", Lq=128, Lk=128, B=8, E=64),
    AttentionShape("attn-long", Lq=2048, Lk=2048, B=2, E=64,
                   quick={"Lq": 1024, "Lk": 1024}, report_peak=True),
    AttentionShape("attn-8heads", Lq=1024, Lk=1024, B=2, E=512, heads=8,
                   quick={"Lq": 512, "Lk": 512}),
    AttentionShape("attn-decode", Lq=1, Lk=4096, B=8, E=512, heads=8, quick={"Lk": 2048}),
    AttentionShape("attn-long-f64", Lq=2048, Lk=2048, B=2, E=64, dtype="float64",
                   quick={"Lq": 1024, "Lk": 1024}),
    AttentionShape("attn-causal", Lq=1024, Lk=1024, B=2, E=64, causal=True,
                   quick={"Lq": 512, "Lk": 512}),
    AttentionShape("attn-masked", Lq=1024, Lk=1024, B=2, E=64, padding_mask=True,
                   quick={"Lq": 512, "Lk": 512}),
)

SHAPES = RNN_SHAPES + ATTENTION_SHAPES

# `bench --wider`: sizes users run beyond the targets' (no targets of their own),
# each call under about 15 ms, to show where the kernels stand elsewhere: lone
# and batched sequences up to H = 1024, 1-16 query rows over long keys, one wide
# head, odd head sizes.
WIDER_SHAPES = (
    RNNShape("rnn-b2-h32", T=50, B=2, I=32, H=32),
    RNNShape("rnn-b4-h128", T=100, B=4, I=128, H=128),
    RNNShape("rnn-b3-h257", T=100, B=3, I=33, H=257),
    RNNShape("rnn-b1-i1", T=200, B=1, I=1, H=100),
    RNNShape("rnn-b8-h512", T=50, B=8, I=256, H=512),
    RNNShape("rnn-b32-h256", T=50, B=32, I=256, H=256),
    RNNShape("rnn-b128-h256", T=20, B=128, I=256, H=256),
    RNNShape("rnn-b1-h512", T=200, B=1, I=512, H=512),
    RNNShape("rnn-b1-h1024", T=50, B=1, I=1024, H=1024),
    RNNShape("rnn-b32-h1024", T=10, B=32, I=1024, H=1024),
    RNNShape("rnn-b4-h128-f64", T=100, B=4, I=128, H=128, dtype="float64"),
    AttentionShape("attn-b16-l64", Lq=64, Lk=64, B=16, E=64),
    AttentionShape("attn-256-2heads", Lq=256, Lk=256, B=4, E=128, heads=2),
    AttentionShape("attn-512-4heads", Lq=512, Lk=512, B=2, E=256, heads=4),
    AttentionShape("attn-512-e128", Lq=512, Lk=512, B=1, E=128),
    AttentionShape("attn-512-e80", Lq=512, Lk=512, B=2, E=80),
    AttentionShape("attn-300-e96", Lq=300, Lk=300, B=3, E=96),
    AttentionShape("attn-1024-causal-b1", Lq=1024, Lk=1024, B=1, E=64, causal=True),
    AttentionShape("attn-256x1024", Lq=256, Lk=1024, B=2, E=64),
    AttentionShape("attn-16x1024", Lq=16, Lk=1024, B=4, E=256, heads=4),
    AttentionShape("attn-12x4096-8heads", Lq=12, Lk=4096, B=8, E=512, heads=8),
    AttentionShape("attn-4x2048", Lq=4, Lk=2048, B=4, E=256, heads=4),
    AttentionShape("attn-1x512-b32", Lq=1, Lk=512, B=32, E=64),
    AttentionShape("attn-256-f64", Lq=256, Lk=256, B=2, E=64, dtype="float64"),
)


def standard_shapes(quick=False, kernel=None, dtype=None, names=None, wider=False):
    """The standard shapes (their quick variants when `quick`), filtered.

    kernel: "rnn" | "attention" | None; dtype: "float32" | "float64" | None;
    names: an iterable of shape names (full or "-quick" names), or None for all;
    wider: WIDER_SHAPES instead (which have no quick variants).
    """
    if kernel is not None and kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    base_set = WIDER_SHAPES if wider else SHAPES
    shapes = [s.quick_variant() if quick else s for s in base_set]
    if names is not None:
        wanted = set(names)
        known = {s.name for s in base_set} | {s.quick_variant().name for s in base_set}
        unknown = wanted - known
        if unknown:
            raise ValueError(f"unknown shape name(s) {sorted(unknown)}; known: {sorted(known)}")
        # A full name also selects its quick variant and vice versa.
        base = {n[:-len("-quick")] if n.endswith("-quick") else n for n in wanted}
        shapes = [s for s, full in zip(shapes, base_set) if full.name in base]
    return [s for s in shapes
            if (kernel is None or s.kernel == kernel) and (dtype is None or s.dtype == dtype)]
