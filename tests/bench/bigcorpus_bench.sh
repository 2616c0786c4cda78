#!/usr/bin/env bash
# bigcorpus_bench.sh - training on a corpus larger than the memory the process may use: not a test.
#
#   sudo tests/bench/bigcorpus_bench.sh [--size-mb N] [--limit-mb N] [--dir DIR] [--build DIR]
#
# Builds a text corpus of N MB (default 2048: Tiny Shakespeare and GSM8K train repeated, every copy
# with its own header line) in DIR (default /tmp/mtp-bigcorpus), then trains a small model with a
# BPE tokenizer on it inside a memory cgroup capped at --limit-mb (default 512): the corpus, and the
# token cache built from it, are several times larger than the cap. It reports the cache build
# time, the cgroup's peak memory, and what happens to the same run with --token-cache none (the
# tokens held in memory), which the cap does not allow. Needs root and the cgroup v1 memory
# controller or cgroup v2; prints markdown to stdout.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$ROOT/build
SIZE_MB=2048
LIMIT_MB=512
DIR=/tmp/mtp-bigcorpus
while [ $# -gt 0 ]; do
  case $1 in
    --size-mb) SIZE_MB=$2; shift ;;
    --limit-mb) LIMIT_MB=$2; shift ;;
    --dir) DIR=$2; shift ;;
    --build) BUILD=$2; shift ;;
    *) echo "usage: $0 [--size-mb N] [--limit-mb N] [--dir DIR] [--build DIR]" >&2; exit 2 ;;
  esac
  shift
done
MTP=$BUILD/bin/mtp
DATA=$ROOT/../shared/data
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
[ -x "$MTP" ] || { echo "build first: $MTP is missing" >&2; exit 1; }
[ -f "$DATA/tinyshakespeare.txt" ] || { echo "needs $DATA/tinyshakespeare.txt" >&2; exit 1; }
mkdir -p "$DIR"

# ---- the cgroup: v2 (memory.max, memory.peak) or v1 (memory.limit_in_bytes, max_usage) ----------
CG=
if [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw memory /sys/fs/cgroup/cgroup.controllers; then
  CG=/sys/fs/cgroup/mtp-bigcorpus.$$
  mkdir "$CG"
  echo $((LIMIT_MB << 20)) >"$CG/memory.max"
  echo 0 >"$CG/memory.swap.max" 2>/dev/null || true
  LIMIT_FILE=memory.max PEAK_FILE=memory.peak
elif [ -d /sys/fs/cgroup/memory ]; then
  CG=/sys/fs/cgroup/memory/mtp-bigcorpus.$$
  mkdir "$CG"
  echo $((LIMIT_MB << 20)) >"$CG/memory.limit_in_bytes"
  LIMIT_FILE=memory.limit_in_bytes PEAK_FILE=memory.max_usage_in_bytes
else
  echo "no usable memory cgroup (needs root and cgroup v1 or v2)" >&2
  exit 1
fi
trap 'rmdir "$CG" 2>/dev/null || true' EXIT
# in_cgroup CMD...: runs CMD in the cgroup (a fresh peak for each run), prints nothing itself
in_cgroup() {
  [ -f "$CG/memory.max_usage_in_bytes" ] && echo 0 >"$CG/memory.max_usage_in_bytes" 2>/dev/null || true
  bash -c 'echo $$ >"$1/cgroup.procs"; shift; exec "$@"' _ "$CG" "$@"
}
peak_mb() { echo $(($(cat "$CG/$PEAK_FILE" 2>/dev/null || echo 0) >> 20)); }
# anonymous memory (the process's own, page cache left out), sampled every 0.2 s into $1 while $2 runs
anon_now() { awk '$1 == "total_rss" || $1 == "anon" {print $2; exit}' "$CG/memory.stat"; }
sample_anon() {
  local out=$1 pid=$2 peak=0 v
  while kill -0 "$pid" 2>/dev/null; do
    v=$(anon_now); [ -n "$v" ] && [ "$v" -gt "$peak" ] && peak=$v
    sleep 0.2
  done
  echo $((peak >> 20)) >"$out"
}

# ---- the corpus ---------------------------------------------------------------------------------
CORPUS=$DIR/big.txt
if [ ! -f "$CORPUS" ] || [ $(($(stat -c %s "$CORPUS") >> 20)) -lt "$SIZE_MB" ]; then
  log "writing a ${SIZE_MB} MB corpus to $CORPUS"
  rm -f "$CORPUS"
  i=0
  while [ $(($( [ -f "$CORPUS" ] && stat -c %s "$CORPUS" || echo 0) >> 20)) -lt "$SIZE_MB" ]; do
    for k in $(seq 64); do
      echo "=== copy $i.$k ==="
      cat "$DATA/tinyshakespeare.txt"
      [ -f "$DATA/gsm8k_train.jsonl" ] && cat "$DATA/gsm8k_train.jsonl"
    done >>"$CORPUS"
    i=$((i + 1))
  done
fi
CORPUS_MB=$(($(stat -c %s "$CORPUS") >> 20))

echo "# mtp: a corpus larger than the memory it may use"
echo
echo "- date: $(date -Is)"
echo "- CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) logical CPUs; RAM $(free -g | awk '/Mem:/{print $2}') GB"
echo "- git: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "- corpus: $CORPUS_MB MB of text; memory cgroup limit: $LIMIT_MB MB (${CG%%.*})"
echo

ARGS=(--data "$CORPUS" --tokenizer bpe:4096 --dim 128 --layers 2 --attn-heads 4 --ffn 344 --ctx 256 --batch 8
      --heads 2 --head-type linear --steps 50 --eval-every 0 --eval-batches 4 --threads 2)
rm -f "$DIR/big.mtp" "$DIR/big.mtp.tokens" "$DIR"/big.mtp.tokens.*tmp*
sync
echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
log "+ mtp train ${ARGS[*]} --out $DIR/big.mtp   (in the cgroup)"
t0=$(date +%s.%N)
set +e
in_cgroup "$MTP" train "${ARGS[@]}" --out "$DIR/big.mtp" --token-cache "$DIR/big.mtp.tokens" >"$DIR/cache.out" 2>"$DIR/cache.err" &
job=$!
sample_anon "$DIR/anon1" $job &
wait $job
rc=$?
wait
set -e
t1=$(date +%s.%N)
peak1=$(peak_mb)
tokens_mb=$(( $( [ -f "$DIR/big.mtp.tokens" ] && stat -c %s "$DIR/big.mtp.tokens" || echo 0) >> 20))
echo "## With the token cache (the default)"
echo
echo "| exit status | wall time | token cache | peak anonymous memory (sampled) | peak of the cgroup (page cache included) |"
echo "| --- | --- | --- | --- | --- |"
printf "| %d | %.0f s | %d MB | %d MB | %d MB |\n" "$rc" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b - a}')" "$tokens_mb" "$(cat "$DIR/anon1")" "$peak1"
echo
echo '```'
grep -v '^step [0-9]*/' "$DIR/cache.err" | tail -8
echo '```'
echo

rm -f "$DIR/mem.mtp"
log "+ the same with --token-cache none (in the cgroup)"
set +e
in_cgroup "$MTP" train "${ARGS[@]}" --token-cache none --out "$DIR/mem.mtp" >"$DIR/mem.out" 2>"$DIR/mem.err" &
job=$!
sample_anon "$DIR/anon2" $job &
wait $job
rc2=$?
wait
set -e
peak2=$(peak_mb)
echo "## The same with --token-cache none (tokens in memory)"
echo
echo "exit status $rc2 (137 = killed by the cgroup's out-of-memory killer), peak anonymous memory $(cat "$DIR/anon2") MB."
echo
echo '```'
tail -3 "$DIR/mem.err"
echo '```'
echo
echo "Command: \`sudo tests/bench/bigcorpus_bench.sh --size-mb $SIZE_MB --limit-mb $LIMIT_MB\`"
log "done"
