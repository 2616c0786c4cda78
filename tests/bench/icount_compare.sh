#!/usr/bin/env bash
# Instructions executed by two builds of mtp on the same small workloads, counted by callgrind
# (reports, does not assert). Counts do not depend on what else the machine is doing, so they
# settle what noisy timings cannot: whether a change made the hot paths do more work.
#
#   tests/bench/icount_compare.sh --before DIR --after DIR --model F.mtp [--scratch DIR]
#
# DIR is a build folder (bin/mtp) configured with -DMTP_ARCH=x86-64-v3: valgrind does not run
# AVX-512 code (oneDNN then picks its AVX2 kernels in both builds alike). F is a model with linear
# heads (tests/bench/compare_bench.sh trains arith4.mtp). Workloads, 1 thread, fp32:
#   decode: `mtp bench --lookahead 4 --max-tokens 48` on two prompts (lookahead 1 and 4, a warm-up
#           and one timed repeat each); the count inside decode_greedy is the decoding;
#   train:  3 steps of a small 4-head model (dim 64, 2 layers, ctx 64, batch 4) on builtin:arith;
#           the count inside mtp_train_step is the training.
# --scratch DIR keeps the runs' outputs there, and reuses the ones already there (the report
# again without the runs, about 6 minutes). Needs valgrind (apt-get install valgrind).
set -euo pipefail

BEFORE=
AFTER=
MODEL=
SCRATCH=
while [ $# -gt 0 ]; do
  case "$1" in
    --before) BEFORE=$2; shift ;;
    --after) AFTER=$2; shift ;;
    --model) MODEL=$2; shift ;;
    --scratch) SCRATCH=$2; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "icount_compare.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[ -x "$BEFORE/bin/mtp" ] && [ -x "$AFTER/bin/mtp" ] && [ -f "$MODEL" ] || {
  echo "give --before DIR --after DIR (build folders with bin/mtp) and --model F.mtp" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
[ -n "$SCRATCH" ] || SCRATCH=$(mktemp -d /tmp/mtp_icount.XXXXXX)
mkdir -p "$SCRATCH"
printf 'Compute 4821 * 37.\nCompute 905 - 318 - 77.\n' >"$SCRATCH/prompts.txt"
export OMP_NUM_THREADS=1
VG=(valgrind --tool=callgrind --smc-check=all-non-file)

for side in before after; do
  dir=$BEFORE; [ $side = after ] && dir=$AFTER
  [ -s "$SCRATCH/decode.$side.out" ] && [ -s "$SCRATCH/train.$side.out" ] && continue
  echo "[icount_compare] $side: decode" >&2
  "${VG[@]}" --callgrind-out-file="$SCRATCH/decode.$side.out" "$dir/bin/mtp" bench --model "$MODEL" --threads 1 \
    --repeats 1 --max-tokens 48 --lookahead 4 --prompts "$SCRATCH/prompts.txt" --precision fp32 \
    >"$SCRATCH/decode.$side.txt" 2>"$SCRATCH/decode.$side.err"
  echo "[icount_compare] $side: train" >&2
  "${VG[@]}" --callgrind-out-file="$SCRATCH/train.$side.out" "$dir/bin/mtp" train --data builtin:arith --dim 64 \
    --layers 2 --attn-heads 4 --ffn 172 --ctx 64 --batch 4 --steps 3 --heads 4 --threads 1 --eval-every 0 \
    --eval-batches 1 --token-cache "$SCRATCH/tokens.$side" --out "$SCRATCH/train.$side.mtp" \
    >"$SCRATCH/train.$side.txt" 2>&1
done

# count OUT FUNCTION: instructions inside FUNCTION (inclusive), or the program's total (awk reads
# to the end: an early exit would fail the pipe)
count() {
  if [ "$2" = total ]; then callgrind_annotate "$1" | awk '!n && /PROGRAM TOTALS/ {gsub(",", "", $1); n = $1} END {print n}'
  else callgrind_annotate --inclusive=yes "$1" | awk -v f=":$2 " '!n && $0 ~ f {gsub(",", "", $1); n = $1} END {print n}'; fi
}
echo "# mtp instruction counts (callgrind)"
echo
echo "- date: $(date -Is); CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
echo "- before: $BEFORE/bin/mtp, after: $AFTER/bin/mtp; model: $MODEL"
echo
echo "| workload | counted in | before | after | after / before |"
echo "| --- | --- | --- | --- | --- |"
for w in "decode decode_greedy" "decode total" "train mtp_train_step" "train total"; do
  set -- $w
  b=$(count "$SCRATCH/$1.before.out" "$2") a=$(count "$SCRATCH/$1.after.out" "$2")
  awk -v w="$1" -v f="$2" -v b="$b" -v a="$a" 'BEGIN { printf "| %s | %s | %.0f | %.0f | %.5f |\n", w, f, b, a, a / b }'
done
echo
if cmp -s "$SCRATCH/train.before.mtp" "$SCRATCH/train.after.mtp"; then echo "The two training runs wrote identical checkpoints."
else echo "The two training runs wrote DIFFERENT checkpoints."; fi
echo "[icount_compare] done (scratch: $SCRATCH)" >&2
