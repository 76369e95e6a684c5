"""The benchmark behind ``bigmodel-fast bench`` / ``info`` (see __main__.py).

How a result is made trustworthy:

* every shape's native result is checked against ``bigmodel_fast.reference``
  (SPEC tolerances) BEFORE it is timed; a wrong result gets no speedup and
  makes the command fail;
* native, reference and torch are timed in one process, interleaved round
  robin (native, reference, torch, native, ...), so that a change in machine
  load hits all of them alike, after a warm-up; the medians are reported;
* torch (when importable) runs on the same inputs and weights with as many
  threads as the native kernel; with threadpoolctl installed, NumPy's BLAS
  (the reference's, and the matmul peak's) is limited to that count too.

``run_benchmark`` returns plain dicts (rows); ``print_table`` and friends
print them; ``write_json`` and ``write_plot`` save them.

On the NumPy backend (``bf.backend() == "numpy"``) ``bf.rnn`` and
``bf.attention`` run the reference code: the "native" column then times that
NumPy path, the speedups vs the reference are ~1x, and the output says so.
"""

import gc
import importlib.metadata
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time

import numpy as np

import bigmodel_fast as bf
from . import _backend
from .bench_shapes import standard_shapes
from .reference import TOLERANCE


# Matmul size for the single-precision peak: large enough for BLAS to reach
# its steady state, small enough (17 GFLOP a product) to stay well under a second.
PEAK_MATMUL_N = 2048

IMPLEMENTATIONS = ("native", "reference", "torch")


# ---------------------------------------------------------------- optional imports

def import_torch():
    """torch, or None when it is not installed (torch is optional)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def _threadpoolctl():
    try:
        import threadpoolctl
    except ImportError:
        return None
    return threadpoolctl


class _blas_threads:
    """Limit NumPy's BLAS to n threads while inside (no-op without threadpoolctl)."""

    def __init__(self, n):
        tpc = _threadpoolctl()
        self._limits = tpc.threadpool_limits(limits=n, user_api="blas") if tpc else None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._limits is not None:
            self._limits.restore_original_limits()


# ---------------------------------------------------------------- what is compared

def native_function(kernel):
    """The function timed as "native": ``bf.rnn`` / ``bf.attention``.

    Looked up at call time (tests monkeypatch it).  On the NumPy backend it
    runs the reference code.
    """
    return getattr(bf, kernel)


def reference_function(kernel):
    return getattr(bf.reference, kernel)


def torch_function(torch, shape, inputs, threads):
    """(run, to_numpy) computing `shape` with torch on the same data, or raise.

    run() returns a torch tensor; to_numpy(result) gives it in the package's
    layout, to check it against the reference.  Conversions happen here, once,
    outside the timed call: torch is timed on its preferred layout.
    """
    torch.set_num_threads(threads)
    if shape.kernel == "rnn":
        i = inputs
        dtype = torch.float32 if shape.dtype == "float32" else torch.float64
        rnn = torch.nn.RNN(shape.I, shape.H, num_layers=1, nonlinearity="tanh", bias=True,
                           batch_first=False, dtype=dtype)
        with torch.no_grad():   # torch's weight_ih = Wx, weight_hh = Wh, bias_ih = b, bias_hh = 0
            rnn.weight_ih_l0.copy_(torch.from_numpy(i["Wx"]))
            rnn.weight_hh_l0.copy_(torch.from_numpy(i["Wh"]))
            rnn.bias_ih_l0.copy_(torch.from_numpy(i["b"]))
            rnn.bias_hh_l0.zero_()
        x, h0 = torch.from_numpy(i["x"]), torch.from_numpy(i["h0"])[None]

        def run():
            with torch.inference_mode():
                return rnn(x, h0)[0]

        return run, lambda result: result.numpy()

    # attention: scaled_dot_product_attention on contiguous (B, heads, L, D) tensors
    if shape.causal and shape.Lq != shape.Lk:
        raise ValueError("torch's is_causal is top-left aligned; it differs from ours when Lq != Lk")
    h = shape.heads

    def heads_first(a):
        L, B, E = a.shape
        return torch.from_numpy(np.ascontiguousarray(a.reshape(L, B, h, E // h).transpose(1, 2, 0, 3)))

    q, k, v = (heads_first(inputs[n]) for n in ("Q", "K", "V"))
    mask = inputs["mask"]
    attn_mask = None if mask is None else torch.from_numpy(mask)[:, None]   # (B, 1, Lq, Lk), True = attend
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def run():
        with torch.inference_mode():
            return sdpa(q, k, v, attn_mask=attn_mask, is_causal=shape.causal)

    def to_numpy(result):
        B, _, Lq, D = result.shape
        return result.numpy().transpose(2, 0, 1, 3).reshape(Lq, B, h * D)

    return run, to_numpy


def max_abs_error(result, expected):
    """Max |result - expected| in float64; a NaN on one side only counts as infinite."""
    result = np.asarray(result)
    if result.shape != expected.shape:
        return math.inf
    if result.size == 0:
        return 0.0
    a, b = result.astype(np.float64), expected.astype(np.float64)
    with np.errstate(invalid="ignore"):
        err = np.abs(a - b)
    err[(a == b) | (np.isnan(a) & np.isnan(b))] = 0.0   # equal infinities, NaN where the reference has NaN
    err[np.isnan(err)] = np.inf
    return float(err.max())


# ---------------------------------------------------------------- timing

# Before each timed sample: long enough for another library's worker threads
# to go idle.  OpenBLAS's busy-wait for 2**28 TSC cycles after a call, 0.13 s
# at 2.1 GHz, and would otherwise share the cores with whatever is timed next:
# torch's sample follows the reference's (without torch, native's does).  At
# 0.1 s this inflated the ratios to torch (README, Performance).
DEFAULT_SETTLE = 0.2
# After that pause, calls for this long (at least one) before the timed ones:
# on this VM the first calls after a pause run slow, torch's most (its RNN at
# rnn-batch16-quick after NumPy's and ours: 16-38 ms for its first call,
# 12-34 for its second, 2.0-3.1 by its fourth), and a sample of a few slow
# calls was mostly that (README, Performance).
WARMUP_AFTER_SETTLE = 0.1


def time_interleaved(calls, repeats, sample_time, settle=DEFAULT_SETTLE):
    """Time zero-argument callables round robin; return {name: [seconds per call, ...]}.

    Each callable has been called at least once already (the correctness
    check is the warm-up).  Calibration (as timeit's autorange) finds how many
    calls make a sample of at least `sample_time` seconds, so that short calls
    are batched and the timer's resolution and one-off stalls do not dominate.
    Then `repeats` rounds: in each, one sample of every callable in turn,
    each after a pause of `settle` seconds and then, untimed, calls for
    WARMUP_AFTER_SETTLE seconds (none when settle is 0).
    Returns (samples, calls per sample).
    """
    number = {}
    for name, fn in calls.items():
        n = 1
        while True:
            start = time.perf_counter()
            for _ in range(n):
                fn()
            if time.perf_counter() - start >= sample_time or n >= 10_000:
                break
            n *= 2
        number[name] = n
    samples = {name: [] for name in calls}
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()        # a collection inside one sample would bias it
    try:
        for _ in range(repeats):
            for name, fn in calls.items():
                n = number[name]
                if settle:
                    time.sleep(settle)
                    warm_until = time.perf_counter() + WARMUP_AFTER_SETTLE
                    fn()
                    while time.perf_counter() < warm_until:
                        fn()
                start = time.perf_counter()
                for _ in range(n):
                    fn()
                samples[name].append((time.perf_counter() - start) / n)
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples, number


def matmul_call(n=PEAK_MATMUL_N):
    """(run, flops): one float32 n x n NumPy matmul (its BLAS, its threads), to be
    timed interleaved with a shape's implementations: the peak a row's
    fraction is taken of, measured under the same load as the row."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    return (lambda: np.matmul(a, b, out=c)), 2.0 * n ** 3


def measure_matmul_peak(threads, n=PEAK_MATMUL_N, repeats=3):
    """Single-precision matmul GFLOP/s of NumPy's BLAS: the best of `repeats` n x n products.

    BLAS is limited to `threads` when threadpoolctl is installed; otherwise
    it uses its own default (reported by the machine description).
    """
    run, flops = matmul_call(n)
    with _blas_threads(threads):
        run()                            # warm-up
        best = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - start)
    return flops / best / 1e9


# ---------------------------------------------------------------- the run

class Progress:
    """One self-overwriting status line on stderr, only when stderr is a terminal."""

    def __init__(self, stream=None, enabled=None):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled

    def show(self, text):
        if self.enabled:
            self.stream.write("\r\033[K" + text[:150])
            self.stream.flush()

    def done(self):
        self.show("")


def _median(values):
    return statistics.median(values) if values else None


def bench_shape(shape, inputs, threads, repeats, sample_time, torch=None, progress=None,
                settle=DEFAULT_SETTLE, with_matmul=False):
    """One row: check native against the reference, then time the implementations.

    Returns a dict: name, kernel, dims, dtype, threads, flops, backend; ok and
    error (why not ok); max_error (native vs reference) and tolerance;
    native_s, reference_s, torch_s (median seconds a call; None when not
    timed), native_gflops, speedup_vs_reference, speedup_vs_torch (None when
    not ok); torch_max_error and torch_note; the raw samples and
    calls_per_sample of each implementation.  With `with_matmul`, a float32
    NumPy matmul (matmul_call) takes part in the round robin too: its median
    gives matmul_gflops and fraction_of_peak = native_gflops / matmul_gflops.
    """
    progress = progress or Progress(enabled=False)
    row = {"name": shape.name, "kernel": shape.kernel, "dims": shape.dims, "dtype": shape.dtype,
           "threads": threads, "flops": shape.flops, "backend": bf.backend(),
           "tolerance": TOLERANCE[shape.dtype], "ok": False, "error": None,
           "max_error": None, "torch_max_error": None, "torch_note": None,
           "native_s": None, "reference_s": None, "torch_s": None, "native_gflops": None,
           "speedup_vs_reference": None, "speedup_vs_torch": None,
           "samples": {}, "calls_per_sample": {}}
    native, reference = native_function(shape.kernel), reference_function(shape.kernel)
    with _blas_threads(threads):
        progress.show(f"{shape.label}, {threads} thread(s): checking against the reference")
        expected = shape.call(reference, inputs)
        try:
            result = shape.call(native, inputs, num_threads=threads)
        except Exception as exc:   # a crash of the kernel is a failed row, not a failed run
            row["error"] = f"native raised {type(exc).__name__}: {exc}"
            return row
        row["max_error"] = max_abs_error(result, expected)
        if not row["max_error"] <= row["tolerance"]:
            row["error"] = (f"WRONG RESULT: max abs error {row['max_error']:.3g} vs the reference "
                            f"exceeds the {shape.dtype} tolerance {row['tolerance']:g}")
            return row
        row["ok"] = True

        calls = {"native": lambda: shape.call(native, inputs, num_threads=threads),
                 "reference": lambda: shape.call(reference, inputs)}
        if torch is not None:
            try:
                run, to_numpy = torch_function(torch, shape, inputs, threads)
                row["torch_max_error"] = max_abs_error(to_numpy(run()), expected)
                calls["torch"] = run
                if not row["torch_max_error"] <= 100 * row["tolerance"]:
                    row["torch_note"] = (f"torch's result differs from the reference by "
                                         f"{row['torch_max_error']:.3g}")
            except Exception as exc:
                row["torch_note"] = f"torch could not run this shape: {type(exc).__name__}: {exc}"

        if with_matmul:
            calls["matmul"], matmul_flops = matmul_call()
        progress.show(f"{shape.label}, {threads} thread(s): timing {', '.join(calls)} "
                      f"x{repeats}")
        samples, number = time_interleaved(calls, repeats, sample_time, settle)
    row["samples"], row["calls_per_sample"] = samples, number
    for name in IMPLEMENTATIONS:
        row[f"{name}_s"] = _median(samples.get(name, []))
    row["native_gflops"] = shape.flops / row["native_s"] / 1e9
    row["speedup_vs_reference"] = row["reference_s"] / row["native_s"]
    if row["torch_s"] is not None:
        row["speedup_vs_torch"] = row["torch_s"] / row["native_s"]
    if with_matmul:
        row["matmul_gflops"] = matmul_flops / _median(samples["matmul"]) / 1e9
        row["fraction_of_peak"] = row["native_gflops"] / row["matmul_gflops"]
    return row


def run_benchmark(shapes, threads_list, repeats, sample_time, use_torch=True,
                  measure_peak=True, progress=None, peak_repeats=3, settle=DEFAULT_SETTLE):
    """Benchmark every shape at every thread count; return a result dict.

    {"rows": [...], "peak_gflops": {threads: GFLOP/s}, "notes": [...], "ok": bool,
     "torch": version or None}.  Rows are shape-major, then thread count.
    """
    progress = progress or Progress(enabled=False)
    notes = []
    if bf.backend() == "numpy":
        why = _backend.native_load_error or "BIGMODEL_FAST_BACKEND=numpy"
        notes.append("backend is 'numpy' (the compiled kernels are not in use: " + why + "): "
                     "the 'native' column times bf.rnn/bf.attention on the NumPy fallback, "
                     "which is the reference code, so the speedups vs the reference are ~1x.")
    torch = import_torch() if use_torch else None
    if use_torch and torch is None:
        notes.append("torch is not installed: no torch comparison (pip install torch to add it).")
    if torch is not None:
        torch_threads_before = torch.get_num_threads()
    over = [n for n in threads_list if n > (_cpus_usable() or n)]
    if over:
        notes.append(f"{over} thread(s) is more than the {_cpus_usable()} CPUs this process may "
                     "use: those rows measure oversubscription.")
    if _threadpoolctl() is None:
        notes.append("threadpoolctl is not installed: NumPy's BLAS (the reference, the matmul "
                     "peak) runs with its default thread count, whatever --threads says.")

    peak = {}
    rows = []
    try:
        if measure_peak:
            for n in threads_list:
                progress.show(f"float32 matmul peak, {n} thread(s)")
                peak[n] = measure_matmul_peak(n, repeats=peak_repeats)
        for index, shape in enumerate(shapes, 1):
            inputs = shape.make_inputs()
            for n in threads_list:
                progress.show(f"[{index}/{len(shapes)}] {shape.label}, {n} thread(s)")
                row = bench_shape(shape, inputs, n, repeats, sample_time, torch, settle=settle,
                                  progress=_Prefixed(progress, f"[{index}/{len(shapes)}] "),
                                  with_matmul=measure_peak and shape.report_peak)
                row["report_peak"] = shape.report_peak
                rows.append(row)
                if not row["ok"]:
                    progress.done()
                    print(f"bigmodel_fast bench: ERROR: {shape.label}, {n} thread(s): "
                          f"{row['error']}", file=sys.stderr, flush=True)
            del inputs
    finally:
        progress.done()
        if torch is not None:
            torch.set_num_threads(torch_threads_before)
    return {"rows": rows, "peak_gflops": peak, "notes": notes,
            "ok": all(r["ok"] for r in rows),
            "torch": getattr(torch, "__version__", None)}


class _Prefixed:
    def __init__(self, progress, prefix):
        self.progress, self.prefix = progress, prefix

    def show(self, text):
        self.progress.show(self.prefix + text)

    def done(self):
        self.progress.done()


# ---------------------------------------------------------------- printing

def format_seconds(s):
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.3f} s"


def _ratio(x):
    return "-" if x is None else f"{x:.2f}x"


def table_lines(rows):
    """The benchmark table as lines of text (fixed-width columns)."""
    # On the NumPy backend the "native" column times the NumPy path: say so in its name.
    timed = "native" if all(r["backend"] == "native" for r in rows) else "bf(numpy)"
    header = ("shape", "dims", "dtype", "thr", timed, "GFLOP/s", "vs ref", "vs torch", "max err")
    body = []
    for r in rows:
        err = "-" if r["max_error"] is None else f"{r['max_error']:.1e}"
        if r["ok"]:
            cells = (format_seconds(r["native_s"]), f"{r['native_gflops']:.2f}",
                     _ratio(r["speedup_vs_reference"]), _ratio(r["speedup_vs_torch"]), err)
        else:   # no time, no speedup for a result that is wrong
            cells = ("-", "-", "WRONG" if r["max_error"] is not None else "FAILED", "-",
                     err + " !!")
        body.append((r["name"], r["dims"], r["dtype"], str(r["threads"])) + cells)
    widths = [max(len(row[i]) for row in [header] + body) for i in range(len(header))]
    left = {0, 1, 2}

    def fmt(cells):
        return "  ".join(c.ljust(w) if i in left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return [fmt(header), fmt(["-" * w for w in widths])] + [fmt(b) for b in body]


def print_report(result, file=None):
    """The table, the matmul-peak fractions, notes and a loud summary of failures."""
    file = file or sys.stdout
    rows = result["rows"]
    for note in result["notes"]:
        print("note: " + note, file=file)
    print("\n".join(table_lines(rows)), file=file)
    print("native = bigmodel_fast (backend %s); times are medians of interleaved samples; "
          "vs ref / vs torch = their median time / native's (higher is better)."
          % bf.backend(), file=file)
    for r in rows:
        if r["torch_note"]:
            print(f"torch, {r['name']}: {r['torch_note']}", file=file)
    peak = result["peak_gflops"]
    if peak:
        print("", file=file)
        for n, gflops in peak.items():
            print(f"float32 matmul peak (NumPy {PEAK_MATMUL_N}x{PEAK_MATMUL_N}, {n} thread(s)): "
                  f"{gflops:.1f} GFLOP/s", file=file)
        for r in rows:
            if r.get("report_peak") and r["ok"] and r.get("fraction_of_peak") is not None:
                print(f"  {r['name']} ({r['dims']}, {r['dtype']}, {r['threads']} thread(s)): "
                      f"{r['native_gflops']:.1f} GFLOP/s = {100 * r['fraction_of_peak']:.0f}% "
                      f"of the same matmul timed in its round robin "
                      f"({r['matmul_gflops']:.1f} GFLOP/s)", file=file)
    failed = [r for r in rows if not r["ok"]]
    if failed:
        print("", file=file)
        print("!" * 78, file=file)
        for r in failed:
            print(f"ERROR: {r['name']} ({r['dims']}, {r['dtype']}, {r['threads']} thread(s)): "
                  f"{r['error']}", file=file)
        print(f"ERROR: {len(failed)} of {len(rows)} results are WRONG or FAILED: "
              "no speedup is reported for them.", file=file)
        print("!" * 78, file=file)


# ---------------------------------------------------------------- machine description

def cpu_model():
    """The CPU's name, with its family and model numbers where Linux gives them:
    VMs often name every host "Intel(R) Xeon(R) Processor", and figures from
    different hosts must not be compared as if from one."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break             # the first processor's block is enough
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine() or "unknown"
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


def _cpus_usable():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def threadpools():
    """threadpoolctl's view of the loaded BLAS and OpenMP libraries, or None."""
    tpc = _threadpoolctl()
    return tpc.threadpool_info() if tpc else None


def numpy_blas():
    """A line naming NumPy's BLAS: the loaded library (threadpoolctl) or the build's."""
    pools = threadpools()
    if pools:
        blas = [p for p in pools if p.get("user_api") == "blas"]
        if blas:
            return "; ".join(f"{p.get('internal_api')} {p.get('version') or ''} "
                             f"({p.get('threading_layer', '?')} threading, "
                             f"{p.get('num_threads')} threads, {p.get('architecture', '?')})"
                             .replace("  ", " ") for p in blas)
    try:
        config = np.show_config(mode="dicts")   # numpy >= 2
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version', '')} (from numpy's build config)".strip()
    except Exception:
        return "unknown (install threadpoolctl to see it)"


def openmp_runtime():
    """Which OpenMP library is loaded, as threadpoolctl sees it, or 'unknown'."""
    pools = threadpools()
    if pools is None:
        return "unknown (install threadpoolctl to see it)"
    libs = [p for p in pools if p.get("user_api") == "openmp"]
    if not libs:
        return "none loaded"
    return "; ".join(f"{p.get('prefix')} {p.get('version') or ''} ({p.get('filepath')})"
                     .replace("  ", " ") for p in libs)


def _installed_version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def describe_machine(argv=None):
    """A dict describing the machine and the software (for --json and `info`)."""
    native = _backend.native
    return {
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "cpus_usable": _cpus_usable(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "bigmodel_fast": {
            "version": bf.__version__,
            "backend": bf.backend(),
            "native_load_error": _backend.native_load_error,
            "openmp": bf.openmp_enabled(),
            "openmp_runtime": openmp_runtime(),
            "openmp_wait": _backend.openmp_wait_setting,
            "default_threads": bf.get_num_threads(),
            "isa": native.get_isa() if native else None,
            "cpu_isa": native.cpu_isa() if native else None,
            "build": native.build_info() if native else None,
        },
        "numpy": np.__version__,
        "numpy_blas": numpy_blas(),
        "threadpoolctl": _installed_version("threadpoolctl"),
        "torch": _installed_version("torch"),
        "command": None if argv is None else shlex.join(argv),
    }


def info_lines():
    """`bigmodel-fast info`: what runs, how it was built, on what."""
    m = describe_machine()
    b = m["bigmodel_fast"]
    lines = [
        f"bigmodel_fast {b['version']}",
        f"backend:          {b['backend']}"
        + (f" (native kernels not loaded: {b['native_load_error']})" if b["native_load_error"] else ""),
        f"OpenMP:           {'enabled' if b['openmp'] else 'disabled'}; runtime loaded: {b['openmp_runtime']}"
        + (f"; idle wait: {b['openmp_wait']}" if b["openmp"] and b["openmp_wait"] else ""),
        f"default threads:  {b['default_threads']} (CPUs usable: {m['cpus_usable']} of {m['cpus']})",
    ]
    if b["isa"] is not None:
        lines.append(f"ISA level:        {b['isa']} in use; this CPU supports up to {b['cpu_isa']} "
                     "(levels: baseline, avx2, avx512, amx; BIGMODEL_FAST_ISA caps it)")
        lines.append(f"build:            {b['build']}")
    else:
        lines.append("ISA level:        none (NumPy backend)")
        lines.append("build:            none (NumPy backend)")
    lines += [
        f"CPU:              {m['cpu_model']}",
        f"Python:           {m['python']} on {m['platform']}",
        f"NumPy:            {m['numpy']}, BLAS: {m['numpy_blas']}",
        f"torch:            {m['torch'] or 'not installed'}",
        f"threadpoolctl:    {m['threadpoolctl'] or 'not installed'}",
    ]
    return lines


# ---------------------------------------------------------------- saving

def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)          # JSON has no inf/nan
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def write_json(path, result, settings, argv):
    doc = {"format": "bigmodel_fast-bench/1", "ok": result["ok"], "settings": settings,
           "machine": describe_machine(argv), "notes": result["notes"],
           "peak_gflops": result["peak_gflops"], "rows": result["rows"]}
    with open(path, "w") as f:
        json.dump(_jsonable(doc), f, indent=1)
        f.write("\n")


def import_pyplot():
    """matplotlib.pyplot on the Agg backend, or None when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def write_plot(path, result, title=""):
    """PNG: speedup vs reference and vs torch by shape (at the largest thread
    count); plus thread scaling when several thread counts were measured."""
    plt = import_pyplot()
    rows = [r for r in result["rows"] if r["ok"]]
    counts = sorted({r["threads"] for r in rows})
    scaling = len(counts) > 1
    fig, axes = plt.subplots(1, 2 if scaling else 1, figsize=(15 if scaling else 10, 5.5),
                             squeeze=False)
    ax = axes[0][0]
    top = [r for r in rows if r["threads"] == (counts[-1] if counts else None)]
    xs = np.arange(len(top))
    series = [("vs NumPy reference", "speedup_vs_reference"), ("vs torch", "speedup_vs_torch")]
    width = 0.4
    for k, (label, key) in enumerate(series):
        values = [r[key] if r[key] is not None else np.nan for r in top]
        if all(np.isnan(values)):
            continue
        bars = ax.bar(xs + (k - 0.5) * width, values, width, label=label)
        ax.bar_label(bars, labels=["" if np.isnan(v) else f"{v:.1f}" for v in values], fontsize=7)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(xs, [f"{r['name']}\n{r['dtype']}" for r in top], rotation=45, ha="right",
                  fontsize=8)
    ax.set_ylabel("speedup of bigmodel_fast (x, log scale)")
    ax.set_title(f"bigmodel_fast speedup, {counts[-1] if counts else '?'} thread(s)")
    ax.legend()
    if scaling:
        ax2 = axes[0][1]
        for i, name in enumerate(dict.fromkeys(r["name"] for r in rows)):
            mine = sorted((r for r in rows if r["name"] == name), key=lambda r: r["threads"])
            base = mine[0]["native_s"]
            # the colour cycle has 10 colours: the shapes after those get other marks
            ax2.plot([r["threads"] for r in mine], [base / r["native_s"] for r in mine],
                     marker="os"[i // 10 % 2], linestyle="-:"[i // 10 % 2], label=name)
        ax2.plot(counts, [c / counts[0] for c in counts], color="gray", linestyle="--",
                 label="ideal")
        ax2.set_xlabel("threads")
        ax2.set_ylabel(f"native speedup over {counts[0]} thread(s)")
        ax2.set_xticks(counts)
        ax2.set_title("thread scaling of the native kernels")
        ax2.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- the commands

def parse_threads(text):
    try:
        counts = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        counts = []
    if not counts or any(c < 1 for c in counts):
        raise ValueError(f"--threads wants positive integers separated by commas, got {text!r}")
    return list(dict.fromkeys(counts))


def bench_command(args, argv):
    """`bigmodel-fast bench`; returns the exit status (0 ok, 1 a wrong result, 2 usage)."""
    if args.plot and import_pyplot() is None:
        print("bigmodel-fast bench: --plot needs matplotlib, which is not installed; install it "
              "with: pip install 'bigmodel_fast[bench]'  (or pip install matplotlib)",
              file=sys.stderr)
        return 2
    try:
        threads_list = (parse_threads(args.threads) if args.threads
                        else [bf.get_num_threads()])
        names = [n.strip() for n in args.shapes.split(",") if n.strip()] if args.shapes else None
        shapes = standard_shapes(quick=args.quick, kernel=args.kernel, dtype=args.dtype,
                                 names=names, wider=args.wider)
    except ValueError as exc:
        print(f"bigmodel-fast bench: {exc}", file=sys.stderr)
        return 2
    if not shapes:
        print("bigmodel-fast bench: no shape matches the filters", file=sys.stderr)
        return 2
    repeats = args.repeats if args.repeats is not None else (5 if args.quick else 9)
    settle = args.settle if args.settle is not None else DEFAULT_SETTLE
    sample_time = (args.sample_time if args.sample_time is not None
                   else (0.02 if args.quick else 0.05))
    settings = {"quick": args.quick, "wider": args.wider, "repeats": repeats,
                "sample_time": sample_time,
                "settle": settle, "warmup_after_settle": WARMUP_AFTER_SETTLE if settle else 0,
                "threads": threads_list, "shapes": [s.name for s in shapes]}
    start = time.perf_counter()
    result = run_benchmark(shapes, threads_list, repeats, sample_time, use_torch=not args.no_torch,
                           settle=settle,
                           peak_repeats=3 if args.quick else 5, progress=Progress())
    settings["seconds"] = round(time.perf_counter() - start, 2)
    print_report(result)
    print(f"({settings['seconds']:.1f} s; {cpu_model()}; repeats {repeats}, "
          f"samples of >= {sample_time * 1e3:g} ms)")
    if args.json:
        write_json(args.json, result, settings, argv)
        print(f"wrote {args.json}")
    if args.plot:
        write_plot(args.plot, result, title=f"{cpu_model()}, bigmodel_fast {bf.__version__}, "
                                            f"backend {bf.backend()}")
        print(f"wrote {args.plot}")
    return 0 if result["ok"] else 1


def summary_command():
    """`python -m bigmodel_fast`: the setup and a quick native-vs-reference check."""
    m = describe_machine()["bigmodel_fast"]
    print(f"bigmodel_fast {m['version']}: backend {m['backend']}, ISA {m['isa'] or 'n/a'}, "
          f"{m['default_threads']} thread(s), OpenMP {'on' if m['openmp'] else 'off'}")
    shapes = [standard_shapes(quick=True, kernel=k)[0] for k in ("rnn", "attention")]
    threads = bf.get_num_threads()
    result = run_benchmark(shapes, [threads], repeats=5, sample_time=0.01, use_torch=False,
                           measure_peak=False, progress=Progress())
    for note in result["notes"]:
        if not note.startswith("threadpoolctl"):
            print("note: " + note)
    for r in result["rows"]:
        head = f"{r['kernel']:9} ({r['dims']}, {r['dtype']}):"
        if r["ok"]:
            print(f"{head} max error {r['max_error']:.1e}; native {format_seconds(r['native_s'])}"
                  f" vs reference {format_seconds(r['reference_s'])}: "
                  f"{r['speedup_vs_reference']:.1f}x")
        else:
            print(f"{head} ERROR: {r['error']}")
    print("These are a few short samples: another busy process moves such ratios by large "
          "factors (NumPy's threaded matmul most). Run `python -m bigmodel_fast bench --quick` "
          "for the standard shapes (and torch, when installed); `info` for the build.")
    return 0 if result["ok"] else 1
