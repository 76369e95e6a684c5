#!/usr/bin/env bash
# Thread scaling on a many-core machine, in one unattended run: build the
# extension in place, check it (the C test and the bitwise tests compare every
# thread count up to the machine's cores), then run the full benchmark once per
# thread count, each into its own JSON, so that a run cut short keeps what it
# finished.  Merge and plot the JSONs with tools/merge_bench_json.py.
#
#   OUT=bench-out/scaling tools/scaling_sweep.sh 1 16 8 4 2
#
# Thread counts default to 1, then the core count halved down to 2 (16 cores:
# 1 16 8 4 2).  PYTHON picks the interpreter (default python3);
# BENCH_ARGS adds arguments to each bench (e.g. "--quick --shapes rnn-small").
# SWEEP_BUDGET_S: start no bench after this many seconds less BENCH_EST_S
# (default 90), so that a run under a time limit ends with whole JSON files.
set -u -o pipefail
OUT=${OUT:-bench-out/scaling}
PYTHON=${PYTHON:-python3}
CORES=$(nproc)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)   # absolute: the rest runs in the repository's root
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
if [ $# -gt 0 ]; then
    THREADS="$*"
else
    THREADS=1
    for ((n = CORES; n >= 2; n /= 2)); do THREADS="$THREADS $n"; done
fi
step() { echo "== $* ($(date +%T))"; }

step machine
{
    lscpu
    "${CC:-cc}" --version | head -1
    "$PYTHON" -c "import sys, numpy; print(sys.version); print('numpy', numpy.__version__)"
    "$PYTHON" -c "import torch; print('torch', torch.__version__)" || true
} >"$OUT/machine.txt" 2>&1
grep -E "Model name|^CPU\(s\)|Thread\(s\) per core|Core\(s\) per socket|Socket|NUMA node\(s\)|L2|L3" \
    "$OUT/machine.txt"

step build
"$PYTHON" setup.py -q build_ext --inplace >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
"$PYTHON" -m bigmodel_fast info || exit 1

step "C test, 1..$CORES threads"
BMF_TEST_MAX_THREADS=$CORES make -s -C src test 2>&1 | grep -E "FAIL|failed|threads compared" \
    || echo "the C test FAILED"   # go on: the bench checks each result against the reference

step "bitwise tests, 1..$CORES threads"
BMF_TEST_MAX_THREADS=$CORES "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_native.py \
    -k "bitwise or default_threads" 2>&1 | tail -3 || echo "the bitwise tests FAILED"

for t in $THREADS; do
    if [ -n "${SWEEP_BUDGET_S:-}" ] && [ $((SECONDS + ${BENCH_EST_S:-90})) -gt "$SWEEP_BUDGET_S" ]; then
        step "bench, $t threads: skipped, past the time budget"
        continue
    fi
    step "bench, $t threads"
    "$PYTHON" -m bigmodel_fast bench --threads "$t" --repeats 5 --json "$OUT/bench-t$t.json" \
        ${BENCH_ARGS:-} \
        2>&1 | grep -vE "^\s*$" | tail -16
done
step done
