#!/usr/bin/env bash
# Decoding at 2 threads against 1 thread (reports, does not assert): `mtp bench` on the bench
# models, greedy, lookahead 1 and the model's widest, fp32 and bf16, the two thread counts taking
# turns process by process; tokens/s min / median / max over the runs and the ratio of medians.
#
#   tests/bench/threads_bench.sh [--models DIR] [--runs N] [--build DIR] [--max-tokens N]
#
# Models in --models DIR (default /tmp/mtp_decode_models): speed.mtp, arith4.mtp, arith8.mtp
# (tests/bench/decode_bench.sh trains them) and big.mtp (tests/bench/passes_bench.sh makes it);
# missing ones are skipped. OpenMP's default wait policy (a thread spins a while before it sleeps)
# is what two threads rely on: a decoding pass splits each large product over both threads, and a
# sleeping thread takes tens of microseconds to wake, several times per pass (OMP_WAIT_POLICY=passive
# makes every split pay that). The script unsets OMP_WAIT_POLICY for that reason. A Markdown report
# goes to stdout.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$ROOT/build
MODELS=/tmp/mtp_decode_models
RUNS=3
MAX_TOKENS=128
while [ $# -gt 0 ]; do
  case "$1" in
    --models) MODELS=$2; shift ;;
    --runs) RUNS=$2; shift ;;
    --build) BUILD=$2; shift ;;
    --max-tokens) MAX_TOKENS=$2; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "threads_bench.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
MTP=$BUILD/bin/mtp
PY=/usr/bin/python3
[ -x "$MTP" ] || { echo "build first (needs $MTP)" >&2; exit 1; }
unset OMP_WAIT_POLICY
log() { echo "[threads_bench $(date +%H:%M:%S)] load $(cut -d' ' -f1 /proc/loadavg) | $*" >&2; }
SCRATCH=$(mktemp -d /tmp/mtp_threads.XXXXXX)

echo "# mtp bench: 2 threads against 1"
echo
echo "- date: $(date -Is); CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) logical CPUs"
echo "- git: $(cd "$ROOT" && git rev-parse --short HEAD); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- each figure: min / median / max over $RUNS processes of \`mtp bench --model M --lookahead 1,K --threads T"
echo "  --precision P --max-tokens $MAX_TOKENS --repeats 3 --json F\` (tokens/s: the median of its 3 repeats), 1 and 2"
echo "  threads taking turns; OMP_WAIT_POLICY unset"
echo
for m in speed arith4 arith8 big; do
  [ -f "$MODELS/$m.mtp" ] || { echo "($m.mtp missing in $MODELS: skipped)"; echo; continue; }
  K=$("$MTP" info "$MODELS/$m.mtp" | sed -n 's/^heads: *\([0-9]\+\) .*/\1/p')
  LA=1; [ "${K:-1}" -gt 1 ] && LA="1,$K"
  for prec in fp32 bf16; do
    for r in $(seq "$RUNS"); do
      for t in 1 2; do
        log "$m $prec lookahead $LA threads $t run $r"
        "$MTP" bench --model "$MODELS/$m.mtp" --lookahead "$LA" --threads $t --precision "$prec" \
          --max-tokens "$MAX_TOKENS" --repeats 3 --json "$SCRATCH/$m.$prec.$t.$r.json" >/dev/null
      done
    done
  done
  $PY - "$SCRATCH" "$m" <<'EOF'
import glob, json, statistics, sys
scratch, m = sys.argv[1:]
print(f"## {m}")
print()
print("| precision | lookahead | 1 thread tokens/s | 2 threads tokens/s | 2 / 1 (medians) |")
print("| --- | --- | --- | --- | --- |")
for prec in ("fp32", "bf16"):
    tps = {}
    for t in (1, 2):
        for f in sorted(glob.glob(f"{scratch}/{m}.{prec}.{t}.*.json")):
            for run in json.load(open(f))["runs"]:
                tps.setdefault((run["lookahead"], t), []).append(run["tokens_per_s"])
    for K in sorted({k for k, _ in tps}):
        one, two = tps[(K, 1)], tps[(K, 2)]
        f3 = lambda v: " / ".join(f"{x:,.0f}" for x in (min(v), statistics.median(v), max(v)))
        print(f"| {prec} | {K} | {f3(one)} | {f3(two)} | {statistics.median(two) / statistics.median(one):.2f} |")
print()
EOF
done
log "done (scratch: $SCRATCH)"
