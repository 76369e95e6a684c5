#!/usr/bin/env python3
"""Measure how much subnormal (denormal) numbers slow the kernels down.

For each case the same call runs on normal inputs and on inputs that make the
kernel's arithmetic meet subnormal numbers (as inputs, or as results that
underflow), interleaved, and the script prints the ratio of the median times
(subnormal / normal).  A ratio above 2 is a bug (SPEC: a slowdown from
denormals of more than 2x); the script exits 1 when any case exceeds --limit.

This is a measurement, not a unit test: run it by hand or in a benchmark job,
on a quiet machine.   python tools/denormal_check.py [--repeat 15] [--threads 1]
"""
import argparse
import sys
import time

import numpy as np

import bigmodel_fast as bf


def cases(dtype):
    """(name, normal_args, subnormal_args, function) for one dtype."""
    rng = np.random.default_rng(0)
    tiny = np.finfo(dtype).smallest_subnormal
    sub = tiny * 64            # a subnormal with a few significant bits
    d = lambda a: np.asarray(a, dtype=dtype)
    out = []

    # RNN whose every state is subnormal: x subnormal, h0 = 0, b = 0, so the
    # projection, the recurrence and tanh all work on subnormal values.
    T, B, I, H = 64, 16, 64, 128
    x = rng.standard_normal((T, B, I))
    Wx, Wh = rng.standard_normal((H, I)) * 0.1, rng.standard_normal((H, H)) * 0.1
    h0, b = np.zeros((B, H)), np.zeros(H)
    # Normal twin: x of unit scale keeps the states normal (|h| up to ~1).
    out.append(("rnn: subnormal x, zero h0 and b",
                (d(x), d(h0), d(Wx), d(Wh), d(b)),
                (d(x * sub), d(h0), d(Wx), d(Wh), d(b)), bf.rnn))
    # RNN with subnormal inputs only (bias normal: states stay normal).
    bn = rng.standard_normal(H) * 0.1
    out.append(("rnn: subnormal x, normal b",
                (d(x), d(h0), d(Wx), d(Wh), d(bn)),
                (d(x * sub), d(h0), d(Wx), d(Wh), d(bn)), bf.rnn))

    Lq, Lk, Bt, E = 256, 1024, 2, 64
    Q = rng.standard_normal((Lq, Bt, E))
    K = rng.standard_normal((Lk, Bt, E))
    V = rng.standard_normal((Lk, Bt, E))
    # Q and K subnormal: every score underflows (products of two subnormals).
    out.append(("attention: subnormal Q, K",
                (d(Q), d(K), d(V)), (d(Q * sub), d(K * sub), d(V)), bf.attention))
    # V subnormal: P V products and the output are subnormal.
    out.append(("attention: subnormal V",
                (d(Q), d(K), d(V)), (d(Q), d(K), d(V * sub)), bf.attention))
    # Logits spread so that most exp(s - max) are subnormal (float32: s - max
    # in (-103, -87); float64: (-744, -708)), with normal Q, K, V.
    lo, hi = (-103.0, -87.5) if dtype == np.float32 else (-744.0, -708.5)
    spread = np.where(rng.random((Lq, Lk)) < 0.98, rng.uniform(lo, hi, (Lq, Lk)), 0.0)
    spread[:, 0] = 0.0   # the row max, so the others give subnormal weights
    zero = np.zeros((Lq, Lk))
    out.append(("attention: subnormal softmax weights (mask)",
                (d(Q), d(K), d(V), d(zero)), (d(Q), d(K), d(V), d(spread)), bf.attention))
    return out


def median_times(fn, a, b, repeat, threads):
    ta, tb = [], []
    fn(*a, num_threads=threads)
    fn(*b, num_threads=threads)
    for _ in range(repeat):
        for args, acc in ((a, ta), (b, tb)):
            t0 = time.perf_counter()
            fn(*args, num_threads=threads)
            acc.append(time.perf_counter() - t0)
    return float(np.median(ta)), float(np.median(tb))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--limit", type=float, default=2.0)
    p.add_argument("--dtype", choices=["float32", "float64", "both"], default="both")
    args = p.parse_args()
    info = f"backend={bf.backend()}"
    if bf.backend() == "native":
        from bigmodel_fast import _native
        info += f" isa={_native.get_isa()}"
    print(f"denormal check: {info} threads={args.threads} repeat={args.repeat}")
    print(f"{'case':48s} {'dtype':8s} {'normal ms':>10s} {'subnorm ms':>10s} {'ratio':>6s}")
    worst = 0.0
    dtypes = [np.float32, np.float64] if args.dtype == "both" else [np.dtype(args.dtype).type]
    for dtype in dtypes:
        for name, normal, subnormal, fn in cases(dtype):
            tn, ts = median_times(fn, normal, subnormal, args.repeat, args.threads)
            ratio = ts / tn
            worst = max(worst, ratio)
            flag = "  <-- SLOW" if ratio > args.limit else ""
            print(f"{name:48s} {np.dtype(dtype).name:8s} {tn * 1e3:10.2f} {ts * 1e3:10.2f} "
                  f"{ratio:6.2f}{flag}", flush=True)
    print(f"worst ratio {worst:.2f} (limit {args.limit})")
    return 1 if worst > args.limit else 0


if __name__ == "__main__":
    sys.exit(main())
