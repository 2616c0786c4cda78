#!/usr/bin/env bash
# Before/after benchmark of two builds of mtp on the same machine in the same run (reports, does
# not assert): for a change that must not slow anything down (a refactoring, say).
#
#   tests/bench/compare_bench.sh --before DIR --after DIR [--models DIR] [--rounds N] [--steps S]
#
# DIR is a build folder (with bin/mtp). The two binaries take turns, round after round (--rounds,
# default 3), so a slow spell of the machine lands on both alike. Measured:
#   1. training: tokens/s of the reference model (the trainer's defaults: 6.46M parameters, n = 4
#      transformer heads, batch 16 x ctx 256) on builtin:arith, fp32 and bf16, 1 and 2 threads:
#      the median step over steps 3..S of each run (--steps, default 10), then min/median/max
#      over the rounds;
#   2. decoding, 1 thread: `mtp bench` (greedy, 16 prompts, median of 3 round-robin repeats) on the
#      models in --models (default /tmp/mtp_compare_models, trained by the before binary when
#      missing, about 10 minutes): speed.mtp, the 6.3M single-head shape of decode_bench.sh, at
#      lookahead 1; arith4.mtp (dim 256, 6 blocks, 4 linear heads, 700 steps) at lookaheads 1..4;
#      fp32 and bf16: tokens/s and the mean forward pass, min/median/max over the rounds.
# The ratio column is after / before of the medians (tokens/s: above 1 is faster). Every command
# is printed; a Markdown report goes to stdout, progress to stderr. Only meaningful on an
# otherwise idle machine: the load average is printed before every measurement.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BEFORE=
AFTER=
MODELS=/tmp/mtp_compare_models
ROUNDS=3
STEPS=10
while [ $# -gt 0 ]; do
  case "$1" in
    --before) BEFORE=$2; shift ;;
    --after) AFTER=$2; shift ;;
    --models) MODELS=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --steps) STEPS=$2; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "compare_bench.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[ -x "$BEFORE/bin/mtp" ] && [ -x "$AFTER/bin/mtp" ] || { echo "give --before DIR --after DIR, two build folders with bin/mtp" >&2; exit 2; }
PY=/usr/bin/python3
mkdir -p "$MODELS"
SCRATCH=$(mktemp -d /tmp/mtp_compare.XXXXXX)
export OMP_WAIT_POLICY=passive
log() { echo "[compare_bench $(date +%H:%M:%S)] load $(cut -d' ' -f1 /proc/loadavg) | $*" >&2; }
run() { log "+ $*"; "$@"; }

echo "# mtp before/after benchmark"
echo
echo "- date: $(date -Is)"
echo "- CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) logical CPUs"
echo "- before: $BEFORE/bin/mtp, after: $AFTER/bin/mtp (git $(cd "$ROOT" && git rev-parse --short HEAD))"
echo "- load average at start: $(cat /proc/loadavg)"
echo "- $ROUNDS rounds, the two binaries taking turns in each"
echo

# ---- models --------------------------------------------------------------------------------------
SPEED_ARGS="--data builtin:arith --vocab 512 --dim 288 --layers 5 --attn-heads 6 --ffn 768 --heads 1 --ctx 256 --steps 200 --batch 16 --threads 2 --precision bf16 --eval-every 0"
ARITH_ARGS="--data builtin:arith --dim 256 --layers 6 --attn-heads 8 --ffn 688 --head-type linear --heads 4 --steps 700 --lr 1.5e-3 --batch 16 --threads 2 --precision bf16 --eval-every 350"
for m in speed arith4; do
  [ -f "$MODELS/$m.mtp" ] && continue
  args=$SPEED_ARGS; [ $m = arith4 ] && args=$ARITH_ARGS
  log "training $m.mtp"
  # shellcheck disable=SC2086
  run "$BEFORE/bin/mtp" train $args --out "$MODELS/$m.mtp" >"$MODELS/$m.train.log" 2>&1
done

# stats FILE...: one number per line in each file -> "min median max" of all of them
stats() { cat "$@" | $PY -c 'import statistics,sys; v=sorted(float(x) for x in sys.stdin.read().split()); print(v[0], statistics.median(v), v[-1])'; }
# row LABEL UNIT HIGHER_IS_BETTER: a table row from $SCRATCH/{before,after}.$LABEL.*
row() {
  local b a
  b=$(stats "$SCRATCH"/before."$1".*) a=$(stats "$SCRATCH"/after."$1".*)
  $PY - "$1" "$b" "$a" <<'EOF'
import sys
label, b, a = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
f = lambda v: " / ".join(f"{x:,.3f}" if x < 10 else f"{x:,.0f}" for x in v)
print(f"| {label} | {f(b)} | {f(a)} | {a[1] / b[1]:.3f} |")
EOF
}

# ---- 1. training ---------------------------------------------------------------------------------
echo "## Training: reference model, tokens/s (min / median / max over $ROUNDS runs)"
echo
echo "Each run: \`mtp train --data builtin:arith --steps $STEPS --threads P --precision X --eval-every 0 --eval-batches 1 --log F\`, the median step over steps 3..$STEPS."
echo
for r in $(seq "$ROUNDS"); do
  for cfg in "fp32 1" "bf16 1" "fp32 2" "bf16 2"; do
    set -- $cfg
    for side in before after; do
      dir=$BEFORE; [ $side = after ] && dir=$AFTER
      lf=$SCRATCH/$side.train.$1.$2t.$r.jsonl
      run "$dir/bin/mtp" train --data builtin:arith --steps "$STEPS" --threads "$2" --precision "$1" --eval-every 0 \
        --eval-batches 1 --token-cache "$SCRATCH/arith.tokens" --log "$lf" --out "$SCRATCH/$side.mtp" >/dev/null 2>&1
      $PY -c 'import json,statistics,sys; s=[json.loads(l) for l in open(sys.argv[1]) if "\"type\":\"step\"" in l]; print(statistics.median(x["tokens_per_s"] for x in s[2:]))' "$lf" >"$SCRATCH/$side.train-$1-$2t.$r"
    done
  done
done
echo "| precision, threads | before | after | after / before |"
echo "| --- | --- | --- | --- |"
for cfg in fp32-1t bf16-1t fp32-2t bf16-2t; do row "train-$cfg"; done
echo

# ---- 2. decoding ---------------------------------------------------------------------------------
echo "## Decoding, 1 thread (min / median / max over $ROUNDS runs)"
echo
echo "Each run: \`mtp bench --model M --threads 1 --repeats 3 --precision X --json F\` (lookahead 1 alone for speed.mtp)."
echo
for r in $(seq "$ROUNDS"); do
  for prec in fp32 bf16; do
    for m in speed arith4; do
      for side in before after; do
        dir=$BEFORE; [ $side = after ] && dir=$AFTER
        js=$SCRATCH/$side.$m.$prec.$r.json
        extra=(); [ $m = speed ] && extra=(--lookahead 1)
        run "$dir/bin/mtp" bench --model "$MODELS/$m.mtp" --threads 1 --repeats 3 --precision "$prec" "${extra[@]}" \
          --json "$js" >/dev/null 2>&1
        $PY - "$js" "$SCRATCH/$side" "$m" "$prec" "$r" <<'EOF'
import json, sys
js, prefix, m, prec, r = sys.argv[1:]
for run in json.load(open(js))["runs"]:
    k = run["lookahead"]
    open(f"{prefix}.{m}-{prec}-K{k}-tok_s.{r}", "w").write(f"{run['tokens_per_s']}\n")
    open(f"{prefix}.{m}-{prec}-K{k}-forward_ms.{r}", "w").write(f"{1e3 * run['forward_s'] / max(run['forwards'], 1)}\n")
    if not run["identical"]: print(f"{js}: lookahead {k} changed the output", file=sys.stderr)
EOF
      done
    done
  done
done
echo "| model, precision, lookahead, figure | before | after | after / before |"
echo "| --- | --- | --- | --- |"
for prec in fp32 bf16; do
  row "speed-$prec-K1-tok_s"
  row "speed-$prec-K1-forward_ms"
  for k in 1 2 3 4; do
    row "arith4-$prec-K$k-tok_s"
    row "arith4-$prec-K$k-forward_ms"
  done
done
echo
echo "forward_ms: the mean time of one forward pass at that lookahead (drafting heads included); lower is faster."
log "done (scratch: $SCRATCH)"
