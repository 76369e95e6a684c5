"""Are two builds' results the same bits?  Dumps the native results of the test
suite's cases (tests/test_native.py's RNN and attention cases, masks and causal
included, plus a few benchmark-like shapes) at every ISA level of this CPU, on
1 and 3 threads, then compares two dumps bit for bit.  src/tests/ab_kernels
checks bits too, but only unmasked attention and the RNN.

    python tools/result_bits.py dump before.npz      # with the old build installed
    python tools/result_bits.py dump after.npz       # rebuilt
    python tools/result_bits.py compare before.npz after.npz   # exit 1 if any differ
"""

import sys
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parent.parent / "tests"
EXTRA_RNN = {"long": (50, 1, 256, 256), "batch16": (10, 16, 128, 256),
             "batch64": (3, 64, 512, 512), "B37": (4, 37, 3, 40)}
EXTRA_ATTENTION = {                     # Lq, Lk, B, E, Ev, heads, causal, mask form
    "long": (300, 700, 2, 64, 64, 1, False, None),
    "8heads": (100, 200, 1, 512, 512, 8, False, None),
    "decode": (1, 2000, 2, 512, 512, 8, False, None)}


def dump(path):
    sys.path.insert(0, str(TESTS))
    import bigmodel_fast as bf
    import test_native as tn
    from conftest import attention_inputs, isa_levels, rnn_inputs, use_isa

    rnn_cases = {**tn.RNN_CASES, **{"D-" + k: v for k, v in tn.DETERMINISM_RNN.items()},
                 **EXTRA_RNN}
    att_cases = {**tn.ATTENTION_CASES,
                 **{"D-" + k: v for k, v in tn.DETERMINISM_ATTENTION.items()}, **EXTRA_ATTENTION}
    out = {}
    for isa in isa_levels():
        with use_isa(isa):
            for dtype in (np.float32, np.float64):
                for name, shape in rnn_cases.items():
                    args = rnn_inputs(np.random.default_rng(7), *shape, dtype=dtype)
                    for n in (1, 3):
                        out[f"{isa}/{dtype.__name__}/rnn/{name}/{n}"] = bf.rnn(*args, num_threads=n)
                for name, (Lq, Lk, B, E, Ev, heads, causal, form) in att_cases.items():
                    rng = np.random.default_rng(7)
                    Q, K, V = attention_inputs(rng, Lq, Lk, B, E, Ev, dtype)
                    mask = tn.make_mask(rng, form, Lq, Lk, B, heads)
                    for n in (1, 3):
                        out[f"{isa}/{dtype.__name__}/attention/{name}/{n}"] = bf.attention(
                            Q, K, V, mask, num_heads=heads, causal=causal, num_threads=n)
    np.savez(path, **out)
    print(f"{len(out)} results of {bf.__file__} ({bf._backend.native.build_info()}) "
          f"written to {path}")


def compare(path_a, path_b):
    a, b = np.load(path_a), np.load(path_b)
    if set(a.files) != set(b.files):
        print("the dumps hold different cases (made from different test files?)")
        return 1
    differ = 0
    for key in a.files:
        x, y = a[key], b[key]
        if x.shape != y.shape or x.dtype != y.dtype:
            differ += 1
            print(f"differ: {key}: {x.dtype}{x.shape} against {y.dtype}{y.shape}")
        elif x.tobytes() != y.tobytes():
            differ += 1
            as_int = np.dtype(f"u{x.dtype.itemsize}")   # NaN payloads compared too
            n = np.count_nonzero(x.view(as_int) != y.view(as_int))
            with np.errstate(invalid="ignore"):
                gap = np.nanmax(np.abs(x.astype(np.float64) - y.astype(np.float64)), initial=0)
            print(f"differ: {key}: {n} of {x.size} elements, largest difference {gap:.2e}")
    print(f"{differ} of {len(a.files)} results differ")
    return 1 if differ else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "dump":
        dump(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    else:
        sys.exit(__doc__)
