"""The command line (bigmodel_fast.__main__ / _bench): bench, info, the summary.

Timing is cut to the bone (--repeats 1 --sample-time 0) to keep CI fast: these
tests check what the command does and reports, never a speed.
"""

import json
import statistics

import numpy as np
import pytest

import bigmodel_fast as bf
from bigmodel_fast import _bench
from bigmodel_fast.__main__ import main
from bigmodel_fast.bench_shapes import standard_shapes

FAST = ["--repeats", "1", "--sample-time", "0", "--settle", "0", "--no-torch"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One `bench --quick --json` over every quick shape, shared by the tests below."""
    path = tmp_path_factory.mktemp("bench") / "quick.json"
    status = main(["bench", "--quick", "--json", str(path)] + FAST)
    with open(path) as f:
        return status, json.load(f)


def test_bench_quick_json_holds_every_quick_shape(quick_run):
    status, doc = quick_run
    assert status == 0
    assert doc["ok"] is True
    names = [row["name"] for row in doc["rows"]]
    assert names == [s.name for s in standard_shapes(quick=True)]
    for row in doc["rows"]:
        assert row["ok"] and row["error"] is None
        assert row["max_error"] <= row["tolerance"]
        assert row["native_s"] > 0 and row["reference_s"] > 0 and row["native_gflops"] > 0
        assert row["speedup_vs_reference"] == pytest.approx(row["reference_s"] / row["native_s"])
        assert row["backend"] == bf.backend()
        assert row["threads"] == bf.get_num_threads()


def test_bench_json_describes_the_machine(quick_run):
    _, doc = quick_run
    machine = doc["machine"]
    assert machine["bigmodel_fast"]["version"] == bf.__version__
    assert machine["bigmodel_fast"]["backend"] == bf.backend()
    assert machine["numpy"] == np.__version__
    assert machine["cpu_model"] and machine["cpus"] >= 1 and machine["numpy_blas"]
    assert machine["command"].startswith("bigmodel-fast bench --quick --json")
    assert doc["settings"]["quick"] is True
    assert all(gflops > 0 for gflops in doc["peak_gflops"].values())
    # The batched RNN and the long attention report their fraction of NumPy's
    # matmul, timed in their own round robin (median samples, like the others).
    reported = [r for r in doc["rows"] if r["report_peak"]]
    assert len(reported) == 2
    for r in reported:
        assert len(r["samples"]["matmul"]) == len(r["samples"]["native"])
        assert r["matmul_gflops"] == pytest.approx(
            2 * 2048 ** 3 / statistics.median(r["samples"]["matmul"]) / 1e9)
        assert r["fraction_of_peak"] == pytest.approx(r["native_gflops"] / r["matmul_gflops"])
    assert not any("matmul" in r["samples"] for r in doc["rows"] if not r["report_peak"])


def test_wrong_native_kernel_fails_the_run(monkeypatch, tmp_path, capsys):
    real = bf.attention

    def wrong_attention(*args, **kwargs):
        return real(*args, **kwargs) + 1e-3       # off by far more than SPEC allows

    monkeypatch.setattr(bf, "attention", wrong_attention)   # what bench calls "native"
    path = tmp_path / "wrong.json"
    status = main(["bench", "--quick", "--shapes", "rnn-small,attn-short", "--json", str(path)]
                  + FAST)
    captured = capsys.readouterr()
    assert status == 1
    rows = {r["name"]: r for r in json.loads(path.read_text())["rows"]}
    bad, good = rows["attn-short"], rows["rnn-small"]
    assert not bad["ok"] and "WRONG" in bad["error"]
    assert bad["max_error"] == pytest.approx(1e-3, rel=1e-2)
    assert bad["speedup_vs_reference"] is None and bad["native_s"] is None
    assert good["ok"] and good["speedup_vs_reference"] is not None
    table_row = next(line for line in captured.out.splitlines() if line.startswith("attn-short"))
    assert "WRONG" in table_row and not any(cell.endswith("x") and cell[:-1].replace(".", "").isdigit()
                                            for cell in table_row.split())
    assert "ERROR" in captured.out and "attn-short" in captured.err


def test_native_exception_is_a_failed_row(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(_bench, "native_function", lambda kernel: broken)
    status = main(["bench", "--shapes", "rnn-small", "--quick"] + FAST)
    out = capsys.readouterr().out
    assert status == 1
    assert "FAILED" in out and "RuntimeError: boom" in out


def test_info_names_the_backend(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"backend:          {bf.backend()}" in out
    assert "OpenMP:" in out and "NumPy:" in out and "BLAS" in out and "ISA level:" in out


def test_no_command_compares_native_and_reference(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert f"backend {bf.backend()}" in out
    assert out.count("max error") == 2       # one small shape of each kernel


def test_progress_is_quiet_when_stderr_is_not_a_terminal(capsys):
    main(["bench", "--quick", "--shapes", "rnn-small"] + FAST)
    assert "\r" not in capsys.readouterr().err


def test_plot_without_matplotlib_says_so(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(_bench, "import_pyplot", lambda: None)
    status = main(["bench", "--quick", "--shapes", "rnn-small", "--plot", str(tmp_path / "p.png")]
                  + FAST)
    assert status == 2
    assert "matplotlib" in capsys.readouterr().err
    assert not (tmp_path / "p.png").exists()


def test_plot_with_thread_sweep(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "p.png"
    status = main(["bench", "--quick", "--shapes", "rnn-small", "--threads", "1,2",
                   "--plot", str(path)] + FAST)
    assert status == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv", [["--threads", "0"], ["--threads", "a"], ["--shapes", "nope"],
                                  ["--kernel", "rnn", "--shapes", "attn-short"]])
def test_bad_options_exit_2(argv, capsys):
    try:
        status = main(["bench", "--quick"] + argv + FAST)
    except SystemExit as exc:          # argparse's own errors
        status = exc.code
    assert status == 2


def test_torch_computes_the_same_thing():
    """The torch side of the comparison runs the same computation (else its ratio means nothing)."""
    torch = pytest.importorskip("torch")
    for shape in standard_shapes(quick=True, names=["rnn-small", "rnn-long-f64", "attn-short",
                                                     "attn-8heads", "attn-causal", "attn-masked"]):
        inputs = shape.make_inputs()
        run, to_numpy = _bench.torch_function(torch, shape, inputs, threads=1)
        expected = shape.call(bf.reference.__dict__[shape.kernel], inputs)
        assert _bench.max_abs_error(to_numpy(run()), expected) <= 10 * _bench.TOLERANCE[shape.dtype]


def test_max_abs_error():
    a = np.array([1.0, np.nan, 3.0])
    assert _bench.max_abs_error(a, a.copy()) == 0.0
    assert _bench.max_abs_error(a, np.array([1.0, 2.0, 3.0])) == np.inf
    assert _bench.max_abs_error(a[:2], a) == np.inf
    assert _bench.max_abs_error(np.float32([1, 2]), np.float32([1, 2.5])) == 0.5


def test_bench_summary_takes_medians_over_runs(quick_run, tmp_path):
    """tools/bench_summary.py (the README's table of several runs) on three
    copies of a real run whose ratios are scaled by 1, 2 and 3."""
    import subprocess
    import sys
    from pathlib import Path
    _, doc = quick_run
    paths = []
    for k in (1, 2, 3):
        run = json.loads(json.dumps(doc))
        for row in run["rows"]:
            row["speedup_vs_reference"] *= k
        paths.append(tmp_path / f"run{k}.json")
        paths[-1].write_text(json.dumps(run))
    tool = Path(__file__).resolve().parent.parent / "tools" / "bench_summary.py"
    out = subprocess.run([sys.executable, str(tool), *map(str, paths)], capture_output=True,
                         text=True, check=True).stdout
    first = doc["rows"][0]
    line = next(l for l in out.splitlines() if l.startswith(f"| {first['name']} |"))
    r = first["speedup_vs_reference"]
    assert f"**{2 * r:.2f}x** ({r:.2f}x–{3 * r:.2f}x)" in line
    assert "Medians of 3 runs" in out
