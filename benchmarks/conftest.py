"""pytest-benchmark over the standard shapes (bigmodel_fast.bench_shapes).

    pytest benchmarks/                                   # every standard shape
    pytest benchmarks/ --quick-shapes                    # the `bench --quick` variants
    pytest benchmarks/ --benchmark-json out.json         # machine-readable
    pytest benchmarks/ --kernel-threads 1                # thread count of native and torch

Each shape is one benchmark group, so native, reference and torch sit side
by side.  pytest-benchmark times one test after another; for ratios measured
interleaved in one process use `bigmodel-fast bench` instead.  These files are
not part of the unit tests (pyproject's testpaths is tests/).
"""

import math
import time

import pytest

import bigmodel_fast as bf
from bigmodel_fast import _bench
from bigmodel_fast.bench_shapes import standard_shapes

IMPLEMENTATIONS = _bench.IMPLEMENTATIONS      # native, reference, torch


def pytest_addoption(parser):
    group = parser.getgroup("bigmodel_fast")
    group.addoption("--quick-shapes", action="store_true",
                    help="benchmark the smaller --quick variants of the standard shapes")
    group.addoption("--kernel-threads", type=int, default=None,
                    help="threads for the native kernels and torch (default: bf.get_num_threads())")


def pytest_generate_tests(metafunc):
    """Parametrize `shape` with the standard shapes of the module's KERNEL, and `impl`."""
    if "shape" in metafunc.fixturenames:
        shapes = standard_shapes(quick=metafunc.config.getoption("quick_shapes"),
                                 kernel=metafunc.module.KERNEL)
        metafunc.parametrize("shape", shapes, ids=[s.name for s in shapes], scope="module")
    if "impl" in metafunc.fixturenames:
        metafunc.parametrize("impl", IMPLEMENTATIONS)


@pytest.fixture(scope="module")
def inputs(shape):
    return shape.make_inputs()


@pytest.fixture(scope="session")
def threads(request):
    return request.config.getoption("kernel_threads") or bf.get_num_threads()


def _callable(impl, shape, inputs, threads):
    """The zero-argument call to time; native is checked against the reference first."""
    if impl == "reference":
        return lambda: shape.call(_bench.reference_function(shape.kernel), inputs)
    if impl == "torch":
        torch = pytest.importorskip("torch")
        run, _ = _bench.torch_function(torch, shape, inputs, threads)
        return run
    native = _bench.native_function(shape.kernel)
    error = _bench.max_abs_error(shape.call(native, inputs, num_threads=threads),
                                 shape.call(_bench.reference_function(shape.kernel), inputs))
    tolerance = _bench.TOLERANCE[shape.dtype]
    assert error <= tolerance, f"{shape.label}: native result WRONG (max abs error {error:.3g} > {tolerance:g})"
    return lambda: shape.call(native, inputs, num_threads=threads)


@pytest.fixture
def run_case(benchmark, impl, shape, inputs, threads):
    """Benchmark one implementation on one shape, grouped by the shape's name."""
    return lambda: _run_case(benchmark, impl, shape, inputs, threads)


def _run_case(benchmark, impl, shape, inputs, threads):
    fn = _callable(impl, shape, inputs, threads)
    benchmark.group = shape.name
    benchmark.extra_info.update(kernel=shape.kernel, dims=shape.dims, dtype=shape.dtype,
                                flops=shape.flops, threads=threads, implementation=impl,
                                backend=bf.backend())
    time.sleep(_bench.DEFAULT_SETTLE)     # the reference's BLAS threads, just used, go idle
    start = time.perf_counter()
    fn()                                  # warm-up, and the cost estimate for the rounds
    once = max(time.perf_counter() - start, 1e-7)
    # Few rounds (a second or so per case at most); tiny calls batched per round.
    iterations = max(1, min(1000, math.ceil(2e-3 / once)))
    rounds = max(3, min(15, int(1.0 / (once * iterations))))
    benchmark.pedantic(fn, rounds=rounds, iterations=iterations, warmup_rounds=1)
