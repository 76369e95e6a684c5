"""A short attention call right after a NumPy matmul, with this package's idle
spin for GNU OpenMP (GOMP_SPINCOUNT=10000, set when it loads) and with GNU
OpenMP's default (300000), each in its own process (the runtime reads the
setting once, when it loads), the two alternated.

    python tools/after_blas.py [--rounds 3] [--threads 2]

For each pause between the matmul and the call: the median time of the call.
"Settled" is the same call with no matmul before it.
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np

PAUSES = (0.0, 0.01, 0.05, 0.1, 0.2)
SETTINGS = {"package (10000)": None, "GNU default (300000)": "300000"}


def child(threads, calls):
    import bigmodel_fast as bf
    rng = np.random.default_rng(0)
    Q = rng.standard_normal((128, 8, 64), dtype=np.float32)   # attn-short
    A = rng.standard_normal((256, 256), dtype=np.float32)
    for _ in range(3):
        bf.attention(Q, Q, Q, num_threads=threads)
    rows = []
    for matmul_first in (False, True):
        for pause in PAUSES if matmul_first else (0.0,):
            times = []
            for _ in range(calls):
                if matmul_first:
                    A @ A
                time.sleep(pause)
                start = time.perf_counter()
                bf.attention(Q, Q, Q, num_threads=threads)
                times.append(time.perf_counter() - start)
            rows.append(float(np.median(times)))
    print(" ".join(f"{t:.6f}" for t in rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=7)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.threads, args.calls)
    results = {name: [] for name in SETTINGS}
    for _ in range(args.rounds):
        for name, spin in SETTINGS.items():
            env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
            if spin is not None:
                env["GOMP_SPINCOUNT"] = spin
            out = subprocess.run([sys.executable, __file__, "--child", "--threads", str(args.threads),
                                  "--calls", str(args.calls)],
                                 env=env, check=True, capture_output=True, text=True).stdout
            results[name].append([float(x) for x in out.split()])
    labels = ["settled"] + [f"matmul, {p * 1e3:g} ms pause" for p in PAUSES]
    print(f"attention Lq=Lk=128 B=8 E=64, {args.threads} thread(s); "
          f"median over {args.rounds} rounds of {args.calls} calls, in ms")
    print(f"{'':24}" + "".join(f"{name:>24}" for name in SETTINGS))
    for i, label in enumerate(labels):
        cells = [np.median([r[i] for r in results[name]]) * 1e3 for name in SETTINGS]
        print(f"{label:24}" + "".join(f"{c:24.2f}" for c in cells))


if __name__ == "__main__":
    main()
