"""Combine several `bigmodel-fast bench --json` runs into one markdown table.

On a shared machine one run's ratios swing by tens of percent; the median over
runs, with the range beside it, says more.  For each shape: the median (and
min-max) of the speedups vs the NumPy reference and vs torch, and of the
fraction of NumPy's float32 matmul (timed in the same round robin) where
the run reported one.

    python tools/bench_summary.py docs/bench.json docs/bench-run2.json docs/bench-run3.json
"""

import json
import statistics
import sys


def cell(values, fmt="{:.2f}x"):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    text = ("**" + fmt + "**").format(statistics.median(values))
    if len(values) > 1:
        text += (" (" + fmt + "–" + fmt + ")").format(min(values), max(values))
    return text


def main(paths):
    runs = [json.load(open(p)) for p in paths]
    names = [row["name"] for row in runs[0]["rows"]]
    print(f"| shape | dims | dtype | vs NumPy reference | vs torch | notes |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in names:
        rows = [r for run in runs for r in run["rows"] if r["name"] == name]
        first = rows[0]
        peak = cell([r.get("fraction_of_peak") for r in rows if r.get("report_peak")], "{:.0%}")
        print(f"| {name} | {first['dims']} | {first['dtype']} | "
              f"{cell([r['speedup_vs_reference'] for r in rows])} | "
              f"{cell([r['speedup_vs_torch'] for r in rows])} | "
              f"{peak + ' of the matmul' if peak != '-' else ''} |")
    # The matmul each fraction is of: timed in the row's own round robin
    # (matmul_gflops), or, in older files, once at the start of the run.
    peaks = [r["matmul_gflops"] for run in runs for r in run["rows"] if r.get("matmul_gflops")]
    peaks = peaks or [g for run in runs for g in (run.get("peak_gflops") or {}).values()]
    if peaks:
        print(f"\nMedians of {len(runs)} runs (min–max in brackets); NumPy's float32 matmul "
              f"measured {min(peaks):.0f}–{max(peaks):.0f} GFLOP/s over the runs.")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
