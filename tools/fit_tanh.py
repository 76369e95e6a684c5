"""Fit the coefficients of the float32 tanh in src/bmf_simd.h.

tanh(x) ~= x P(x^2) / Q(x^2) on [0, c], P and Q of degree 4 (Q(0) = 1), c =
9.02 (above it tanh rounds to 1 in float32).  The fit minimises the maximum
relative error of P/Q against tanh(x)/x, a function of s = x^2: linearised
least squares (P - g Q = 0, weighted by 1 / (g Q) of the previous pass), then
Lawson's reweighting towards the minimax solution; Chebyshev basis on [0, c^2]
for conditioning.  Needs NumPy only:

    python tools/fit_tanh.py            # prints P, Q (lowest degree first)

Its error (about 2e-8 relative) is far below float32's rounding; the kernel's
error, measured over the whole float range by `make -C src test`, comes from
evaluating P, Q and the quotient in float32.
"""

import sys

import numpy as np
from numpy.polynomial import chebyshev as cheb


def fit(deg_p=4, deg_q=4, c=9.02, passes=60):
    x = np.unique(np.concatenate([np.linspace(1e-3, c, 40000),
                                  c * np.sin(np.linspace(0, np.pi / 2, 40000))]))
    x = x[x > 0]
    s, g = x * x, np.tanh(x) / x
    z = 2 * s / (c * c) - 1                       # s in [0, c^2] -> z in [-1, 1]
    Vp, Vq = cheb.chebvander(z, deg_p), cheb.chebvander(z, deg_q)[:, 1:]
    weight, q_prev = np.ones_like(x), np.ones_like(x)
    best = (np.inf, None, None)
    for i in range(passes):
        A = np.concatenate([Vp, -g[:, None] * Vq], 1)
        row_scale = weight / (g * q_prev)
        sol = np.linalg.lstsq(A * row_scale[:, None], g * row_scale, rcond=None)[0]
        pc, qc = sol[:deg_p + 1], np.concatenate([[1.0], sol[deg_p + 1:]])
        q_prev = cheb.chebval(z, qc)
        err = np.abs(cheb.chebval(z, pc) / q_prev / g - 1)
        if err.max() < best[0]:
            best = (err.max(), pc, qc)
        if i >= 8:                                # Lawson: weight the worst points up
            weight *= (err / err.max()) ** 0.3
            weight /= weight.max()
    max_err, pc, qc = best
    to_power = lambda coef: cheb.Chebyshev(coef, domain=[0, c * c]).convert(
        kind=np.polynomial.Polynomial).coef
    P, Q = to_power(pc), to_power(qc)
    return P / Q[0], Q / Q[0], max_err


if __name__ == "__main__":
    P, Q, max_err = fit(*(int(a) for a in sys.argv[1:3]))
    print(f"max relative error of the fit: {max_err:.2e}")
    print("P:", ", ".join(f"{v:.9e}" for v in P))
    print("Q:", ", ".join(f"{v:.9e}" for v in Q))
