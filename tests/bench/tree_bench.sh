#!/usr/bin/env bash
# tree_bench.sh - draft trees and adaptive chains against the chain of drafts: not a test.
#
#   tests/bench/tree_bench.sh [--models DIR] [--out DIR] [--repeats R] [--sizes LIST] [--min-p LIST]
#                             [--precision P] [--build DIR]
#
# Models (in --models, default /tmp/mtp-models): gsm_bytes.mtp and gsm_bpe.mtp (GSM8K-format,
# bytes and BPE; tests/bench/answers_bench.sh --train makes them) and arith4.mtp (builtin:arith;
# tests/bench/decode_bench.sh --train makes it); those missing are skipped.
# For each model, on a copy in --out (default /tmp/mtp-trees):
#   1. mtp calibrate: greedy text from held-out problems other than the 16 bench decodes;
#   2. mtp bench --lookahead 1,4 --draft-min-p 0 with each tree size of --sizes (default
#      2,3,4,6,8,10,12,16) and with the size mtp picks by itself (no --tree): each run measures head
#      1 alone, the plain chain of 4 and the tree in the same process (round-robin repeats, median
#      of R, default 3);
#   3. mtp bench --lookahead 1,4 --tree 0 --draft-min-p P for each P of --min-p (default
#      0.1,0.2,0.3,0.5,0.7): the chain cut where a head is unsure.
# 1 thread, --precision P (default auto). Prints a markdown report with the CPU model; the raw JSON
# stays in --out.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$ROOT/build
MODELS=/tmp/mtp-models
OUT=/tmp/mtp-trees
REPEATS=3
SIZES=2,3,4,6,8,10,12,16
MINP=0.1,0.2,0.3,0.5,0.7
PREC=auto
while [ $# -gt 0 ]; do
  case $1 in
    --models) MODELS=$2; shift ;;
    --out) OUT=$2; shift ;;
    --repeats) REPEATS=$2; shift ;;
    --sizes) SIZES=$2; shift ;;
    --min-p) MINP=$2; shift ;;
    --precision) PREC=$2; shift ;;
    --build) BUILD=$2; shift ;;
    *) echo "usage: $0 [--models DIR] [--out DIR] [--repeats R] [--sizes LIST] [--min-p LIST] [--precision P] [--build DIR]" >&2; exit 2 ;;
  esac
  shift
done
MTP=$BUILD/bin/mtp
[ -x "$MTP" ] || { echo "build first: $MTP is missing" >&2; exit 1; }
mkdir -p "$OUT"
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
PY=python3
CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -1)

# one bench run: NAME ARGS... -> $OUT/NAME.json
bench() {
  local name=$1; shift
  "$MTP" bench --threads 1 --precision "$PREC" --repeats "$REPEATS" --json "$OUT/$name.json" "$@" \
    > "$OUT/$name.out" 2> "$OUT/$name.err" || { echo "failed: $name (see $OUT/$name.err)" >&2; return 1; }
}

# the row of a bench JSON: lookahead 1, the chain of 4 and the tree (or the cut chain)
summarize() {
  $PY - "$@" <<'EOF'
import json, sys
for path in sys.argv[1:]:
    runs = json.load(open(path))["runs"]
    one = next(r for r in runs if r["lookahead"] == 1)
    chain = next(r for r in runs if r["lookahead"] == 4 and r.get("tree_nodes", 0) == 0)
    tree = next((r for r in runs if r.get("tree_nodes", 0) > 0), None)
    name = path.rsplit("/", 1)[-1][:-5]
    if tree:
        print(f"| {name} | {tree['tree_nodes']}{' (picked)' if tree.get('tree_picked') and 'default' in name else ''} "
              f"| {chain['tokens_per_forward']:.2f} | {tree['tokens_per_forward']:.2f} "
              f"| {tree['tokens_per_forward'] / chain['tokens_per_forward']:.2f}x | {tree['rows_per_forward']:.1f} "
              f"| {chain['speedup']:.2f}x | {tree['speedup']:.2f}x | {tree['speedup_vs_chain']:.2f}x "
              f"| {tree['precision']} | {'yes' if tree['identical'] and chain['identical'] else 'NO'} |")
    else:
        print(f"| {name} | {chain['tokens_per_forward']:.2f} | {chain['rows_per_forward']:.2f} "
              f"| {chain['speedup']:.2f}x | {one['tokens_per_s']:.0f} | {chain['tokens_per_s']:.0f} "
              f"| {'yes' if chain['identical'] else 'NO'} |")
EOF
}

echo "## $(date +%Y-%m-%d), $CPU, 1 thread, precision $PREC, median of $REPEATS repeats"
echo
echo "Command: \`tests/bench/tree_bench.sh --models $MODELS --sizes $SIZES --min-p $MINP --precision $PREC\`"
for m in gsm_bytes gsm_bpe arith4; do
  [ -f "$MODELS/$m.mtp" ] || { log "skipping $m: no $MODELS/$m.mtp"; continue; }
  cp "$MODELS/$m.mtp" "$OUT/$m.mtp"
  log "$m: calibrate"
  "$MTP" calibrate --model "$OUT/$m.mtp" --threads 1 --json "$OUT/$m.calibration.json" > "$OUT/$m.calibrate.out" 2>&1
  echo
  echo "### $m"
  echo
  echo '```'
  sed -n '/^head/,$p' "$OUT/$m.calibrate.out" | grep -v "wrote the calibration"
  echo '```'
  echo
  echo "Trees against the chain of 4 (same run): tokens per pass, rows per pass, speedups against head 1 alone and against the chain."
  echo
  echo "| run | tree nodes | chain tok/pass | tree tok/pass | ratio | tree rows/pass | chain speedup | tree speedup | tree vs chain | precision | identical |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  files=()
  for n in ${SIZES//,/ }; do
    log "$m: tree $n"
    bench "$m.tree$n" --model "$OUT/$m.mtp" --lookahead 1,4 --tree "$n" --draft-min-p 0 && files+=("$OUT/$m.tree$n.json")
  done
  log "$m: the tree mtp picks"
  bench "$m.default" --model "$OUT/$m.mtp" --lookahead 1,4 --draft-min-p 0 && files+=("$OUT/$m.default.json")
  grep -h "^tree:" "$OUT/$m.default.out" "$OUT/$m.default.err" 2>/dev/null | head -1 | sed 's/^/picked: /' >&2 || true
  summarize "${files[@]}"
  echo
  echo "Picked by mtp: $(grep -h "^tree:" "$OUT/$m.default.out" "$OUT/$m.default.err" 2>/dev/null | head -1)"
  echo
  echo "Chains of 4 cut at the first head whose top probability is below P (--draft-min-p):"
  echo
  echo "| run | tok/pass | rows/pass | speedup | head 1 tok/s | chain tok/s | identical |"
  echo "|---|---|---|---|---|---|---|"
  files=()
  for p in 0 ${MINP//,/ }; do
    log "$m: --draft-min-p $p"
    bench "$m.minp$p" --model "$OUT/$m.mtp" --lookahead 1,4 --tree 0 --draft-min-p "$p" && files+=("$OUT/$m.minp$p.json")
  done
  summarize "${files[@]}"
done
