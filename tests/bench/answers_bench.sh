#!/usr/bin/env bash
# answers_bench.sh - tokenizer figures and chain-of-thought answers on GSM8K-format data: not a test.
#
#   tests/bench/answers_bench.sh [--models DIR] [--train] [--limit N] [--repeats R] [--build DIR]
#
# Prints a markdown report to stdout (progress on stderr):
#   1. the BPE tokenizer on ../shared/data (Tiny Shakespeare, GSM8K train): bytes per token at 1k,
#      4k and 16k tokens, training seconds, encode and decode MB/s (build/bin/mtp_bpe_bench);
#   2. for each model, `mtp eval --task answers` on its held-out problems (accuracy, chain length,
#      tokens/s at lookahead n and 1, speedup, identical outputs) and `mtp bench` at lookahead
#      1..n (median of R round-robin repeats), 1 thread, bf16:
#        gsm_bytes.mtp  byte-level, trained on gsm8k_train.jsonl (its first 90% of lines)
#        gsm_bpe.mtp    BPE (bpe:2048), same data and shape
#        arith4.mtp     byte-level, builtin:arith (tests/bench/decode_bench.sh trains it)
#        arith_bpe.mtp  BPE (bpe:1024), builtin:arith, same shape
#        arith1.mtp, arith1_bpe.mtp  byte-level and BPE, builtin:arith --difficulty 1 (chains of about
#                       200 bytes, which fit the context), same shape
#      eval --task answers runs 3 times per model (its speedup: min / median / max).
#      --train trains the missing models first: the two GSM8K ones at once (1 thread each, about
#      25 minutes on 2 cores), then arith_bpe (2 threads, about 12 minutes), then the two level-1
#      ones at once (about 22 minutes); their commands are printed in the report.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$ROOT/build
MODELS=/tmp/mtp-models
TRAIN=0
LIMIT=100
REPEATS=5
while [ $# -gt 0 ]; do
  case $1 in
    --models) MODELS=$2; shift ;;
    --train) TRAIN=1 ;;
    --limit) LIMIT=$2; shift ;;
    --repeats) REPEATS=$2; shift ;;
    --build) BUILD=$2; shift ;;
    *) echo "usage: $0 [--models DIR] [--train] [--limit N] [--repeats R] [--build DIR]" >&2; exit 2 ;;
  esac
  shift
done
MTP=$BUILD/bin/mtp
DATA=$ROOT/../shared/data
GSM=$DATA/gsm8k_train.jsonl
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
mkdir -p "$MODELS"
[ -x "$MTP" ] || { echo "build first: $MTP is missing" >&2; exit 1; }

GSM_ARGS="--data $GSM --dim 256 --layers 6 --attn-heads 8 --ffn 688 --heads 4 --head-type linear --batch 8 --steps 1200 --lr 1.5e-3 --threads 1 --precision bf16 --eval-every 300"
ARITH1_ARGS="--data builtin:arith --difficulty 1 --dim 256 --layers 6 --attn-heads 8 --ffn 688 --heads 4 --head-type linear --steps 1800 --lr 1.5e-3 --batch 16 --threads 1 --precision bf16 --eval-every 300"
train_cmd() {
  case $1 in
    gsm_bytes) echo "$MTP train $GSM_ARGS --ctx 512 --out $MODELS/gsm_bytes.mtp" ;;
    gsm_bpe) echo "$MTP train $GSM_ARGS --tokenizer bpe:2048 --ctx 384 --out $MODELS/gsm_bpe.mtp" ;;
    arith4) echo "(tests/bench/decode_bench.sh --train --models $MODELS)" ;;
    arith1) echo "$MTP train $ARITH1_ARGS --out $MODELS/arith1.mtp" ;;
    arith1_bpe) echo "$MTP train $ARITH1_ARGS --tokenizer bpe:1024 --out $MODELS/arith1_bpe.mtp" ;;
    arith_bpe) echo "$MTP train --data builtin:arith --tokenizer bpe:1024 --dim 256 --layers 6 --attn-heads 8 --ffn 688 --heads 4 --head-type linear --steps 1500 --lr 1.5e-3 --batch 16 --threads 2 --precision bf16 --eval-every 250 --out $MODELS/arith_bpe.mtp" ;;
  esac
}

echo "# mtp tokenizer and answers benchmark"
echo
echo "- date: $(date -Is)"
echo "- CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) logical CPUs"
echo "- git: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$ROOT" && [ -n "$(git status --porcelain 2>/dev/null)" ] && echo ' (dirty tree)')"
echo "- load average at start: $(cat /proc/loadavg)"
echo

# ---- 1. tokenizer -------------------------------------------------------------------------------
echo "## BPE tokenizer (1 thread)"
echo
if [ -f "$GSM" ] && [ -x "$BUILD/bin/mtp_bpe_bench" ]; then
  log "+ mtp_bpe_bench"
  "$BUILD/bin/mtp_bpe_bench" "$DATA/tinyshakespeare.txt" "$GSM"
  echo
  echo "Command: \`$BUILD/bin/mtp_bpe_bench ../shared/data/tinyshakespeare.txt ../shared/data/gsm8k_train.jsonl\`"
else
  echo "(skipped: $GSM or mtp_bpe_bench is missing)"
fi
echo

# ---- 2. answers and speedup ---------------------------------------------------------------------
# train_missing NAME...: trains the named models that are missing, all at once
train_missing() {
  local pids=() m p
  for m in "$@"; do
    if [ ! -f "$MODELS/$m.mtp" ]; then
      log "training $m.mtp (log in $MODELS/$m.train.log)"
      $(train_cmd "$m") >"$MODELS/$m.train.log" 2>&1 &
      pids+=($!)
    fi
  done
  for p in "${pids[@]}"; do wait "$p"; done
}
if [ $TRAIN = 1 ]; then
  [ -f "$GSM" ] && train_missing gsm_bytes gsm_bpe
  train_missing arith_bpe
  train_missing arith1 arith1_bpe
fi

echo "## Chain-of-thought answers and decoding speedup (greedy, 1 thread, bf16)"
echo
for m in gsm_bytes gsm_bpe arith4 arith_bpe arith1 arith1_bpe; do
  f=$MODELS/$m.mtp
  echo "### $m: \`$(train_cmd $m)\`"
  echo
  if [ ! -f "$f" ]; then
    echo "(not measured: $f is missing)"
    echo
    continue
  fi
  "$MTP" info "$f" | sed -n 's/^/    /; 2,3p'
  echo
  cmd="$MTP eval --task answers --model $f --limit $LIMIT --threads 1 --precision bf16 --json"
  for run in 1 2 3; do
    log "load $(cut -d' ' -f1 /proc/loadavg) | + $cmd"
    $cmd >"$MODELS/$m.answers.$run.json" 2>"$MODELS/$m.answers.err" || { echo "FAILED: $cmd" >&2; cat "$MODELS/$m.answers.err" >&2; exit 1; }
  done
  $PY - "$MODELS/$m.answers."{1,2,3}.json <<'EOF'
import json, statistics, sys
runs = [json.load(open(f)) for f in sys.argv[1:]]
runs.sort(key=lambda r: r['speedup'])
r = runs[len(runs) // 2]  # the median run (the answers are the same in every run)
sp = " / ".join(f"{x['speedup']:.2f}" for x in runs)
print("| held-out problems | accuracy | no answer | context full | mean chain | lookahead | tokens/s | at lookahead 1 | speedup (min / median / max of 3) | tokens/forward | identical |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
print(f"| {r['problems']} | {100*r['accuracy']:.1f}% ({r['correct']}) | {r['no_answer']} | {r['hit_context']} | "
      f"{r['mean_chain_tokens']:.0f} tokens, {r['mean_chain_bytes']:.0f} bytes | {r['lookahead']} | {r['tokens_per_s']:,.0f} | "
      f"{r['baseline_tokens_per_s']:,.0f} | {sp}x | {r['tokens_per_forward']:.2f} | {min(x['identical'] for x in runs)}/{r['problems']} |")
EOF
  echo
  echo "Command: \`$MTP eval --task answers --model $m.mtp --limit $LIMIT --threads 1 --precision bf16 --json\`"
  echo
  cmd="$MTP bench --model $f --threads 1 --repeats $REPEATS --precision bf16 --json $MODELS/$m.bench.json"
  log "load $(cut -d' ' -f1 /proc/loadavg) | + $cmd"
  $cmd >"$MODELS/$m.bench.out" 2>"$MODELS/$m.bench.err" || { echo "FAILED: $cmd" >&2; cat "$MODELS/$m.bench.err" >&2; exit 1; }
  $PY - "$MODELS/$m.bench.json" <<'EOF'
import json, sys
runs = json.load(open(sys.argv[1]))["runs"]
print("| lookahead | tokens/s | speedup | tokens/forward | bound | identical | acceptance of heads 2..K |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for r in runs:
    acc = " ".join(f"{100*a:.0f}%" for a in r["head_acceptance"])
    print(f"| {r['lookahead']} | {r['tokens_per_s']:,.0f} | {r['speedup']:.2f}x | {r['tokens_per_forward']:.2f} | "
          f"{r['bound']:.2f}x | {'yes' if r['identical'] else 'NO'} | {acc} |")
EOF
  echo
  echo "Command: \`$MTP bench --model $m.mtp --threads 1 --repeats $REPEATS --precision bf16\` (16 held-out questions, 256 tokens each)"
  echo
done
log "done"
