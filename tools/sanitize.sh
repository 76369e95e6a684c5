#!/usr/bin/env bash
# tools/sanitize.sh: AddressSanitizer + UndefinedBehaviorSanitizer run.
#
#   tools/sanitize.sh                 # the standalone C test and the default test subset
#   tools/sanitize.sh tests/test_x.py # the standalone C test and these pytest arguments
#
# 1. Builds src/tests/test_kernels.c with ASan+UBSan (leak checking on) and
#    runs it: every kernel, every ISA level of this CPU, 1..3 threads.
# 2. Copies the working tree (tracked and untracked-but-not-ignored files) to
#    a throwaway directory, builds the extension there with the same
#    sanitizers (setup.py reads BIGMODEL_FAST_EXTRA_CFLAGS/LDFLAGS) in a
#    throwaway virtual environment, and runs the test subset under it, with
#    libasan preloaded into Python (ASan must be the first library loaded)
#    and leak checking off (CPython's own allocations are not ours).
# Any sanitizer report aborts the run: exit status non-zero.  Nothing in the
# repository is touched.
#
# The default subset leaves out tests/test_hardening_memory.py (ASan's
# quarantine and shadow memory change RSS, and an address-space limit cannot
# hold ASan's reservations) and tests/test_hardening_large.py (ASan's
# calloc would write all 8 GiB).
#
# Environment: PYTHON (default python3), CC (default gcc),
# BMF_SANITIZE_VENV=dir reuses a venv that has numpy, Cython, setuptools,
# pytest and threadpoolctl instead of making one.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
CC=${CC:-gcc}
export CC
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bmf-sanitize.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
START=$SECONDS

SAN_FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1"
SAN_LDFLAGS="-fsanitize=address,undefined"
LIBASAN=$($CC -print-file-name=libasan.so)
if [ ! -e "$LIBASAN" ]; then
    echo "sanitize.sh: $CC has no libasan.so (install the compiler's ASan runtime)" >&2
    exit 2
fi
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ASAN_COMMON=abort_on_error=0:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1

echo "== sanitize: standalone C test (ASan + UBSan, leak checking on)"
$CC $SAN_FLAGS -std=gnu11 -ffp-contract=off -fno-math-errno -fopenmp -I"$ROOT/src" \
    -o "$WORK/test_kernels" "$ROOT/src/tests/test_kernels.c" "$ROOT"/src/*.c -lm -lpthread
ASAN_OPTIONS=$ASAN_COMMON:detect_leaks=1 "$WORK/test_kernels" > "$WORK/c_test.log" \
    || { cat "$WORK/c_test.log"; exit 1; }
tail -n 1 "$WORK/c_test.log"; echo "   ($((SECONDS - START)) s)"

echo "== sanitize: copy of the tree, throwaway environment"
mkdir "$WORK/tree"
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
    | xargs -0 cp --parents -t "$WORK/tree")
if [ -n "${BMF_SANITIZE_VENV:-}" ]; then
    VPY="$BMF_SANITIZE_VENV/bin/python"
else
    "$PY" -m venv "$WORK/venv"
    VPY="$WORK/venv/bin/python"
    "$VPY" -m pip install -q numpy "Cython>=3.0.8,<4" "setuptools>=77" pytest threadpoolctl hypothesis 2>&1 \
        | grep -v "is ignored" || true
fi

echo "== sanitize: build the extension with ASan + UBSan"
(cd "$WORK/tree" && BIGMODEL_FAST_EXTRA_CFLAGS="$SAN_FLAGS" BIGMODEL_FAST_EXTRA_LDFLAGS="$SAN_LDFLAGS" \
    BIGMODEL_FAST_REQUIRE_OPENMP=1 "$VPY" setup.py -q build_ext --inplace > "$WORK/build.log" 2>&1) \
    || { tail -n 50 "$WORK/build.log"; exit 1; }

cd "$WORK/tree"
# The module under test must be the sanitized one.
LD_PRELOAD="$LIBASAN" ASAN_OPTIONS=detect_leaks=0 PYTHONPATH="$WORK/tree" "$VPY" -c '
import bigmodel_fast as bf, bigmodel_fast._native as n, sys
info = n.build_info()
assert bf.backend() == "native" and "-fsanitize=address,undefined" in info, info
print("   built:", info, "(%d s)" % int(sys.argv[1]))' $((SECONDS - START))

if [ $# -eq 0 ]; then
    set -- tests/test_native.py tests/test_hardening_numerics.py tests/test_hardening_concurrency.py \
           tests/test_hardening_fork.py tests/test_hardening_threadpoolctl.py
    [ -e "$WORK/tree/tests/test_errors.py" ] && set -- "$@" tests/test_errors.py
fi

echo "== sanitize: pytest $* (ASan + UBSan)"
LD_PRELOAD="$LIBASAN" ASAN_OPTIONS=$ASAN_COMMON:detect_leaks=0 BIGMODEL_FAST_BACKEND=native \
    PYTHONPATH="$WORK/tree" "$VPY" -m pytest -q -p no:cacheprovider "$@"
echo "== sanitize: no report, $((SECONDS - START)) s"
