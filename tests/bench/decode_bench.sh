#!/usr/bin/env bash
# Decoding benchmark of mtp (reports, does not assert).
#
#   tests/bench/decode_bench.sh [--models DIR] [--train] [--repeats R] [--runs N] [--build DIR]
#
# Measures, at 1 thread, on models kept in --models DIR (default /tmp/mtp_decode_models):
#   1. single-head decode speed of the 6.3M-parameter shape (dim 288, 6 layers = 5 trunk blocks +
#      1 transformer head, 6 attention heads, ffn 768, vocab 512, ctx 256, n = 1): `mtp bench
#      --lookahead 1`, fp32, bf16 and auto, in N separate processes (--runs, default 3): min/median/max
#      of their medians; speed.mtp is trained for 200 steps (about 3 minutes) when missing;
#   2. the speedup of self-speculative decoding, greedy, lookahead 1..n, for the models trained on
#      builtin:arith: arith4.mtp and arith8.mtp (5M parameters, n = 4 and 8) and arith4L.mtp (15M,
#      n = 4), fp32 and bf16: `mtp bench` with every lookahead in the same process, repeats taken
#      round-robin, the median of R (--repeats, default 5); and with --precision auto (the default:
#      each lookahead in the precision its passes measured faster). The first two take about 40
#      minutes to train (both at once, 1 thread each), the third about 35 minutes on 2 threads; without
#      --train a missing one is reported and skipped. The training commands are printed below.
#
# A Markdown report goes to stdout, progress to stderr, every command is printed so it can be
# rerun. Timings are only meaningful on an otherwise idle machine: the load average is printed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$ROOT/build
MODELS=/tmp/mtp_decode_models
TRAIN=0
REPEATS=5
RUNS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --models) MODELS=$2; shift ;;
    --train) TRAIN=1 ;;
    --repeats) REPEATS=$2; shift ;;
    --runs) RUNS=$2; shift ;;
    --build) BUILD=$2; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "decode_bench.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

MTP=$BUILD/bin/mtp
PY=/usr/bin/python3
[ -x "$MTP" ] || { echo "build first: cmake -S . -B build && cmake --build build -j2 (needs $MTP)" >&2; exit 1; }
mkdir -p "$MODELS"
export OMP_WAIT_POLICY=passive
log() { echo "[decode_bench $(date +%H:%M:%S)] $*" >&2; }

# The models: name, then the training command's arguments.
SPEED_ARGS="--data builtin:arith --vocab 512 --dim 288 --layers 5 --attn-heads 6 --ffn 768 --heads 1 --ctx 256 --steps 200 --batch 16 --threads 2 --precision bf16 --eval-every 0"
ARITH_ARGS="--data builtin:arith --dim 256 --layers 6 --attn-heads 8 --ffn 688 --head-type linear --steps 2500 --lr 1.5e-3 --batch 16 --threads 1 --precision bf16 --eval-every 250"
ARITH_L_ARGS="--data builtin:arith --dim 384 --layers 8 --attn-heads 6 --ffn 1024 --heads 4 --head-type linear --steps 1500 --lr 1.5e-3 --batch 16 --threads 2 --precision bf16 --eval-every 250"
train_cmd() { # train_cmd NAME -> the command line that makes MODELS/NAME.mtp
  case "$1" in
    speed) echo "$MTP train $SPEED_ARGS --out $MODELS/speed.mtp" ;;
    arith4) echo "$MTP train $ARITH_ARGS --heads 4 --out $MODELS/arith4.mtp" ;;
    arith8) echo "$MTP train $ARITH_ARGS --heads 8 --out $MODELS/arith8.mtp" ;;
    arith4L) echo "$MTP train $ARITH_L_ARGS --out $MODELS/arith4L.mtp" ;;
  esac
}

echo "# mtp decoding benchmark"
echo
echo "- date: $(date -Is)"
echo "- CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) logical CPUs"
echo "- git: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$ROOT" && [ -n "$(git status --porcelain 2>/dev/null)" ] && echo ' (dirty tree)')"
echo "- load average at start: $(cat /proc/loadavg)"
echo "- models: $MODELS"
echo

[ -f "$MODELS/speed.mtp" ] || { log "training speed.mtp"; $(train_cmd speed) >"$MODELS/speed.train.log" 2>&1; }
if [ $TRAIN = 1 ]; then
  pids=()
  for n in 4 8; do
    if [ ! -f "$MODELS/arith$n.mtp" ]; then
      log "training arith$n.mtp (about an hour; log in $MODELS/arith$n.train.log)"
      $(train_cmd arith$n) >"$MODELS/arith$n.train.log" 2>&1 &
      pids+=($!)
    fi
  done
  for p in "${pids[@]}"; do wait "$p"; done
  if [ ! -f "$MODELS/arith4L.mtp" ]; then
    log "training arith4L.mtp (about 35 minutes; log in $MODELS/arith4L.train.log)"
    $(train_cmd arith4L) >"$MODELS/arith4L.train.log" 2>&1
  fi
fi

# ---- 1. single-head speed ------------------------------------------------------------------------
echo "## Single-head decode speed (1 thread, lookahead 1)"
echo
echo "Model: \`$(train_cmd speed)\`"
echo
echo "| precision | tokens/s min | median | max | ($RUNS processes, each the median of $REPEATS repeats) |"
echo "| --- | --- | --- | --- | --- |"
for prec in fp32 bf16 auto; do
  rates=()
  for r in $(seq "$RUNS"); do
    cmd="$MTP bench --model $MODELS/speed.mtp --lookahead 1 --threads 1 --repeats $REPEATS --precision $prec --json $MODELS/speed.$prec.$r.json"
    log "load $(cut -d' ' -f1 /proc/loadavg) | + $cmd"
    $cmd >/dev/null 2>"$MODELS/speed.$prec.$r.err" || { echo "FAILED: $cmd" >&2; cat "$MODELS/speed.$prec.$r.err" >&2; exit 1; }
    rates+=("$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["runs"][0]["tokens_per_s"])' "$MODELS/speed.$prec.$r.json")")
  done
  $PY - "$prec" "${rates[@]}" <<'EOF'
import statistics, sys
prec, r = sys.argv[1], sorted(float(x) for x in sys.argv[2:])
print(f"| {prec} | {r[0]:,.0f} | {statistics.median(r):,.0f} | {r[-1]:,.0f} | |")
EOF
done
echo
echo "Command: \`$MTP bench --model speed.mtp --lookahead 1 --threads 1 --repeats $REPEATS --precision P\`"
echo

# ---- 2. speedup ----------------------------------------------------------------------------------
echo "## Speedup of self-speculative decoding (greedy, 1 thread)"
echo
for n in 4 8 4L; do
  f=$MODELS/arith$n.mtp
  echo "### arith$n: \`$(train_cmd arith$n)\`"
  echo
  if [ ! -f "$f" ]; then
    echo "(not measured: $f is missing; rerun with --train)"
    echo
    continue
  fi
  "$MTP" info "$f" | sed -n 's/^/    /; 2,4p'
  echo
  for prec in fp32 bf16 auto; do
    cmd="$MTP bench --model $f --threads 1 --repeats $REPEATS --precision $prec --json $MODELS/arith$n.$prec.json"
    log "load $(cut -d' ' -f1 /proc/loadavg) | + $cmd"
    $cmd >"$MODELS/arith$n.$prec.out" 2>"$MODELS/arith$n.$prec.err" || { echo "FAILED: $cmd" >&2; cat "$MODELS/arith$n.$prec.err" >&2; exit 1; }
    echo "$prec (load average before: $(cut -d' ' -f1-3 /proc/loadavg)):"
    echo
    $PY - "$MODELS/arith$n.$prec.json" <<'EOF'
import json, sys
runs = json.load(open(sys.argv[1]))["runs"]
print("| lookahead | precision | tokens/s | speedup | tokens/forward | bound | speedup/bound | identical | forward ms | acceptance of heads 2..K |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for r in runs:
    eff = r["speedup"] / r["bound"] if r["bound"] else 0
    acc = " ".join(f"{100*a:.0f}%" for a in r["head_acceptance"])
    fwd = 1e3 * r["forward_s"] / r["forwards"] if r["forwards"] else 0
    print(f"| {r['lookahead']} | {r.get('precision', '?')} | {r['tokens_per_s']:,.0f} | {r['speedup']:.2f}x | {r['tokens_per_forward']:.2f} | "
          f"{r['bound']:.2f}x | {eff:.2f} | {'yes' if r['identical'] else 'NO'} | {fwd:.3f} | {acc} |")
EOF
    echo
  done
  echo "Command: \`$MTP bench --model arith$n.mtp --threads 1 --repeats $REPEATS --precision P --json F\`"
  echo
done
echo "forward ms = the mean time of one forward pass at that lookahead (drafting heads included)."
log "done"
