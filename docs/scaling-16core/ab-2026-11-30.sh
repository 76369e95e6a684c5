#!/usr/bin/env bash
# The second lending's device call (2026-11-30), kept as it ran: A/B of
# attention variants at 16 and 8 threads, then tools/scaling_sweep.sh within
# what is left of BUDGET seconds.  Run from the repository root at d707330
# (the sed lines edit that commit's src/attention_impl.h):
#   OUT=bench-out/ab BUDGET=235 bash docs/scaling-16core/ab-2026-11-30.sh
# Variants: A = query blocks of 40 (the balancing off), B = d707330,
# S8k / S4k = key-major segments of 8 / 4 KiB (groups of 32 / 16 pairs of
# 64-wide heads), C128 = key chunks of 128 keys (other bits).
set -u
el() { echo "[$SECONDS s] $*"; }
mkdir -p "$OUT"
exec > >(tee "$OUT/dev_ab.log") 2>&1
el "start on $(nproc) cpus; $(gcc --version | head -1)"
for n in A B S8k S4k C128; do rm -rf /tmp/v-$n; cp -r src /tmp/v-$n; done
sed -i 's|if (!c.key_major \&\& !c.bh_major) {|if (0) {|' /tmp/v-A/attention_impl.h
sed -i 's|#define BMF_ATT_SEGMENT_BYTES 16384|#define BMF_ATT_SEGMENT_BYTES 8192|' /tmp/v-S8k/attention_impl.h
sed -i 's|#define BMF_ATT_SEGMENT_BYTES 16384|#define BMF_ATT_SEGMENT_BYTES 4096|' /tmp/v-S4k/attention_impl.h
sed -i 's|#define BMF_ATT_MIN_CHUNK_KM 256|#define BMF_ATT_MIN_CHUNK_KM 128|' /tmp/v-C128/attention_impl.h
pids=""
for n in A B S8k S4k C128; do (make -s -C /tmp/v-$n shared >/dev/null 2>&1 && cp /tmp/v-$n/libbmf_core.so /tmp/lib-$n.so) & pids="$pids $!"; done
make -s -C src ab >/dev/null 2>&1 & pids="$pids $!"
wait $pids
ls /tmp/lib-*.so src/tests/ab_kernels || exit 1
grep -c "if (0)" /tmp/v-A/attention_impl.h
el "attn-short: A = blocks of 40, 40, 40, 8; B = 35, 35, 35, 23 (this commit)"
for t in 16 8 16; do echo "-- $t threads"; src/tests/ab_kernels att "128 128 8 64 1" 200 $t /tmp/lib-A.so /tmp/lib-B.so /tmp/lib-A.so /tmp/lib-B.so; done
el "attn-decode: B = 16 KiB segments (1 group), S8k (2 groups), S4k (4 groups), C128 (32 chunks)"
for t in 16 8; do echo "-- $t threads"; src/tests/ab_kernels att "1 4096 8 512 8" 40 $t /tmp/lib-B.so /tmp/lib-S8k.so /tmp/lib-S4k.so /tmp/lib-C128.so /tmp/lib-B.so; done
el "sweep"
[ "${BUDGET:-540}" -gt 0 ] || exit 0
OUT=$OUT SWEEP_BUDGET_S=$((${BUDGET:-540} - SECONDS)) bash tools/scaling_sweep.sh 16 1 2 4 8
el end
