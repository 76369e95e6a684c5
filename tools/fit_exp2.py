"""Fit the coefficients of exp2 in src/bmf_simd.h (attention's softmax).

2^f ~= 1 + c1 f + ... + cd f^d on 0 <= f <= 1, c0 = 1 exactly (so that
2^0, a row's largest score, gives exactly 1).  [0, 1], not [-1/2, 1/2]: on
AVX-512, f = y - floor(y) is one instruction (vreduceps) and vscalefps
multiplies by 2^floor(y) itself.  Remez exchange on the relative
error, in 60-digit arithmetic (the double fit's error, 1.8e-17, is below what
float64 arithmetic could resolve).  Needs mpmath (a development tool only:
`pip install mpmath`):

    python tools/fit_exp2.py        # degree 6 (float), then 11 (double)

Degree 6 errs 2.6e-9 relative, degree 11 1.8e-17: far below each type's
rounding; the kernels' error, measured by `make -C src test` through the
attention (a softmax of two keys), comes from the float arithmetic.
"""

import mpmath as mp

mp.mp.dps = 60


def relative_error(c, x):
    return (mp.polyval(c[::-1], x) - mp.power(2, x)) / mp.power(2, x)


def fit(deg, iterations=30, grid_points=4000):
    a, b = mp.mpf(0), mp.mpf(1)
    # reference points: Chebyshev extrema, then the error's extrema
    xs = [(a + b) / 2 + (b - a) / 2 * mp.cos(mp.pi * (deg - i) / deg) for i in range(deg + 1)]
    grid = [a + (b - a) * i / grid_points for i in range(grid_points + 1)]
    for _ in range(iterations):
        # 1 + sum_k c_k x^k - 2^x = (-1)^i E 2^x at every reference point
        A = mp.matrix(deg + 1, deg + 1)
        rhs = mp.matrix(deg + 1, 1)
        for i, x in enumerate(xs):
            for k in range(1, deg + 1):
                A[i, k - 1] = x**k
            A[i, deg] = -((-1) ** i) * mp.power(2, x)
            rhs[i] = mp.power(2, x) - 1
        sol = mp.lu_solve(A, rhs)
        c = [mp.mpf(1)] + [sol[k] for k in range(deg)]
        err = [relative_error(c, x) for x in grid]
        peaks = [(grid[i], err[i]) for i in range(len(grid))
                 if i in (0, len(grid) - 1) or abs(err[i - 1]) <= abs(err[i]) >= abs(err[i + 1])]
        alternating = []
        for x, e in peaks:  # the largest of each run of one sign
            if alternating and mp.sign(e) == mp.sign(alternating[-1][1]):
                if abs(e) > abs(alternating[-1][1]):
                    alternating[-1] = (x, e)
            else:
                alternating.append((x, e))
        while len(alternating) > deg + 1:
            alternating.pop(0 if abs(alternating[0][1]) < abs(alternating[-1][1]) else -1)
        if len(alternating) < deg + 1:
            break
        xs = [x for x, _ in alternating]
    return c, max(abs(e) for e in err)


if __name__ == "__main__":
    for deg, digits in ((6, 9), (11, 17)):
        c, worst = fit(deg)
        print(f"degree {deg}: max relative error {mp.nstr(worst, 3)}")
        print("  " + ", ".join(mp.nstr(ck, digits + 3, min_fixed=-1, max_fixed=1) for ck in c))
