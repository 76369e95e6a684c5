"""Merge `bigmodel-fast bench --json` files of one machine, each run at its own
thread count (tools/scaling_sweep.sh writes them), into one JSON and,
optionally, the scaling plot that `bench --threads 1,2,... --plot` draws; print
a markdown table of native time, speedup over one thread, and the ratios.

    python tools/merge_bench_json.py OUT.json [--plot OUT.png] IN.json...
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bigmodel_fast import _bench  # noqa: E402


def merge(docs):
    first = docs[0]
    merged = dict(first)
    merged["rows"] = [row for doc in docs for row in doc["rows"]]
    merged["ok"] = all(doc["ok"] for doc in docs)
    merged["peak_gflops"] = {k: v for doc in docs for k, v in doc["peak_gflops"].items()}
    merged["settings"] = dict(first["settings"],
                              threads=[t for doc in docs for t in doc["settings"]["threads"]],
                              seconds=sum(doc["settings"]["seconds"] for doc in docs))
    merged["machine"] = dict(first["machine"],
                             command=[doc["machine"]["command"] for doc in docs])
    return merged


def table(merged):
    counts = sorted({row["threads"] for row in merged["rows"]})
    head = " | ".join(f"{t} thr" for t in counts)
    lines = [f"| shape | {head} |", "| --- |" + " --- |" * len(counts)]
    for name in dict.fromkeys(row["name"] for row in merged["rows"]):
        by_count = {row["threads"]: row for row in merged["rows"]
                    if row["name"] == name and row["ok"]}
        fewest = by_count[min(by_count)]["native_s"] if by_count else None
        cells = []
        for t in counts:
            row = by_count.get(t)
            if row is None:       # not run at this count, or a wrong result
                cells.append("-")
                continue
            torch = row["speedup_vs_torch"]
            cells.append(f"{_bench.format_seconds(row['native_s'])}"
                         f" ({fewest / row['native_s']:.1f}x;"
                         f" {row['speedup_vs_reference']:.1f} / "
                         f"{'-' if torch is None else f'{torch:.2f}'})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("--plot")
    args = parser.parse_args(argv)
    docs = []
    for path in args.inputs:
        with open(path) as f:
            docs.append(json.load(f))
    docs.sort(key=lambda doc: doc["settings"]["threads"][0])
    merged = merge(docs)
    with open(args.out, "w") as f:
        json.dump(merged, f, indent=1)
        f.write("\n")
    if args.plot:
        machine = merged["machine"]
        _bench.write_plot(args.plot, merged,
                          title=f"{machine['cpu_model']}, {machine['cpus']} CPUs; one bench "
                                "run per thread count (tools/scaling_sweep.sh)")
    print("cells: native median (speedup over the fewest threads; vs NumPy / vs torch)")
    print(table(merged))


if __name__ == "__main__":
    main()
