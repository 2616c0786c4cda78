#!/usr/bin/env bash
# tests/crash/kill_train.sh [N [N_CACHE]] - crash safety, measured: SIGKILL at random moments.
#
# Checkpoints (N kills, default 100): a tiny model (0.05M parameters, a 0.6 MB checkpoint) trains
# with --save-every 1, so that a save takes most of each step, and is killed with SIGKILL after a
# random delay (uniform over 0..KILL_MS ms, default 400: start-up, then some 50 steps). After each
# kill:
#   - the checkpoint at --out loads (mtp info: structure and every tensor's CRC-32) and holds a step
#     at least the one it held before the run: the old checkpoint or a newer one, never a damaged one;
#   - it resumes (mtp train --resume ck --steps STEP+1) to STEP+1;
#   - after that next start no temp file (ck.mtp.tmp.*) is left: those of killed saves are removed.
# At the end the checkpoint, after N kills and resumes, must equal byte for byte one trained without
# interruption to the same step (constant learning rate, 1 thread, fp32), so no kill lost or damaged
# any state (weights, optimizer moments, data position).
#
# Token cache (N_CACHE kills, default 30): a ~40 MB text corpus (../shared/data repeated, else a
# generated one) with a BPE tokenizer file, so that building the cache takes about a second; odd
# runs start with no cache, even ones with a stale one (built with another --val-frac) that they
# must rebuild. Each run is killed at a random moment of its first 1.1 x (uninterrupted run time);
# runs go on until N_CACHE of them were killed (those that finish first are counted apart).
# After each kill the cache file is absent, the old stale one, or identical to a reference build,
# never anything else; the next run succeeds, leaves the reference cache and no temp file.
#
# Environment: MTP (default build/bin/mtp), CRASH_DIR (scratch folder, default a new /tmp one,
# removed at the end unless KEEP=1), SEED (random delays, default 1), KILL_MS. Exits 1 if anything
# was damaged, did not load or resume, or left a temp file.
set -u
N=${1:-100}
NC=${2:-30}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MTP=${MTP:-$ROOT/build/bin/mtp}
MTP=$(cd "$(dirname "$MTP")" && pwd)/$(basename "$MTP")
SHARED=${MTP_SHARED_DATA:-$ROOT/../shared/data}
KILL_MS=${KILL_MS:-400}
RANDOM=${SEED:-1}
DIR=${CRASH_DIR:-$(mktemp -d /tmp/mtp-crash.XXXXXX)}
mkdir -p "$DIR" && cd "$DIR" || exit 2
export OMP_WAIT_POLICY=passive OMP_NUM_THREADS=1
[[ -x $MTP ]] || { echo "no executable $MTP (build first, or set MTP)"; exit 2; }

FAILS=0
fail() {
    FAILS=$((FAILS + 1))
    echo "FAIL: $*"
}
rand_ms() { echo $(((RANDOM * 32768 + RANDOM) % $1)); }
secs() { printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)); }
ms_now() { echo $(($(date +%s%N) / 1000000)); }
count() { compgen -G "$1" | wc -l; } # files matching a glob
info_step() { "$MTP" info "$1" --json 2>/dev/null | sed -n 's/.*"train":{"step":\([0-9]*\).*/\1/p'; }
# start_kill DELAY_MS CMD...: runs CMD in the background, SIGKILLs it after DELAY_MS; KRC = its
# status, KPID = its pid
start_kill() {
    local ms=$1
    shift
    "$@" >run.out 2>run.err &
    local pid=$!
    KPID=$pid
    sleep "$(secs "$ms")"
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null # no "Killed" job message
    KRC=$?
}

# ---- checkpoints -------------------------------------------------------------------------------

TINY=(--dim 32 --layers 1 --attn-heads 2 --ffn 64 --ctx 16 --batch 2 --heads 2 --eval-every 0 --eval-batches 2
    --precision fp32 --threads 1)
CONST=(--lr 3e-3 --min-lr 3e-3 --warmup 2) # the schedule does not depend on --steps: resumes are exact
rm -f ck.mtp*
if ! "$MTP" train --data builtin:arith "${TINY[@]}" "${CONST[@]}" --steps 2 --out ck.mtp >/dev/null 2>setup.err; then
    echo "setup failed:"
    cat setup.err
    exit 2
fi
# the load check detects damage: one flipped byte in the last tensor makes mtp info fail
cp ck.mtp flip.mtp
size=$(stat -c %s flip.mtp)
printf '\x55' | dd of=flip.mtp bs=1 seek=$((size - 100)) conv=notrunc status=none
if "$MTP" info flip.mtp >/dev/null 2>&1; then fail "mtp info loads a checkpoint with a flipped byte"; fi
rm -f flip.mtp

k_kills=0 k_load=0 k_resume=0 k_in_save=0 k_newer=0 k_left=0 k_saves=0 k_left_runs=0
for ((i = 1; i <= N; i++)); do
    s0=$(info_step ck.mtp)
    start_kill "$(rand_ms "$KILL_MS")" "$MTP" train --resume ck.mtp --steps 1000000000 --save-every 1 --threads 1
    if [[ $KRC -ne 137 ]]; then
        fail "kill $i: the run ended with status $KRC before the kill"
        sed 's/^/    | /' run.err | tail -3
        continue
    fi
    k_kills=$((k_kills + 1))
    # killed between its temp file's creation and its rename
    [[ -e ck.mtp.tmp.$KPID ]] && k_in_save=$((k_in_save + 1))
    s1=$(info_step ck.mtp)
    if [[ -z $s1 ]] || ((s1 < s0)); then
        fail "kill $i: the checkpoint does not load, or went back from step $s0 to '${s1}'"
        "$MTP" info ck.mtp 2>&1 | tail -2 | sed 's/^/    | /'
        break
    fi
    k_load=$((k_load + 1))
    ((s1 > s0)) && k_newer=$((k_newer + 1))
    k_saves=$((k_saves + s1 - s0))
    if "$MTP" train --resume ck.mtp --steps $((s1 + 1)) --threads 1 >resume.out 2>resume.err &&
        [[ $(info_step ck.mtp) == $((s1 + 1)) ]]; then
        k_resume=$((k_resume + 1))
    else
        fail "kill $i: resuming from step $s1 failed"
        sed 's/^/    | /' resume.err | tail -3
        break
    fi
    left=$(count 'ck.mtp.tmp.*')
    if [[ $left -gt 0 ]]; then
        fail "kill $i: $left temp file(s) there after the next start: $(compgen -G 'ck.mtp.tmp.*' | tr '\n' ' ')"
        k_left_runs=$((k_left_runs + 1))
    fi
done
k_left=$(count 'ck.mtp.tmp.*')
final=$(info_step ck.mtp)
exact="no"
if "$MTP" train --data builtin:arith "${TINY[@]}" "${CONST[@]}" --steps "$final" --out ref.mtp \
    --token-cache ck.mtp.tokens >/dev/null 2>ref.err && cmp -s ck.mtp ref.mtp; then
    exact="yes"
else
    fail "after $k_kills kills the checkpoint at step $final differs from an uninterrupted run's"
fi

# ---- token cache -------------------------------------------------------------------------------

if [[ -f $SHARED/tinyshakespeare.txt && -f $SHARED/gsm8k_train.jsonl ]]; then
    corpus_from="tinyshakespeare.txt and gsm8k_train.jsonl of ../shared/data, repeated"
    for ((r = 0; r < 8; r++)); do cat "$SHARED/tinyshakespeare.txt" "$SHARED/gsm8k_train.jsonl"; done >big.txt
    head -c 1000000 "$SHARED/tinyshakespeare.txt" >piece.txt
else
    corpus_from="generated words"
    awk 'BEGIN { srand(1); for (i = 0; i < 6000000; i++) printf "%s%s", substr("the of and to in is was for on with as by at an be this", int(rand() * 16) * 3 + 1, 3 + int(rand() * 3)), (i % 12 == 11 ? "\n" : " ") }' >big.txt
    head -c 1000000 big.txt >piece.txt
fi
"$MTP" tokenize --learn bpe:1024 --data piece.txt --out tok.bin >/dev/null 2>&1 || { echo "tokenize --learn failed"; exit 2; }
CACHE_RUN=("$MTP" train --data big.txt --tokenizer tok.bin "${TINY[@]}" --steps 1 --out c.mtp)
t0=$(ms_now)
"${CACHE_RUN[@]}" --token-cache ref.tokens >/dev/null 2>cache.err || { echo "cache run failed:"; cat cache.err; exit 2; }
run_ms=$(($(ms_now) - t0))
"${CACHE_RUN[@]}" --token-cache ref2.tokens >/dev/null 2>&1
cmp -s ref.tokens ref2.tokens || fail "two builds of the token cache differ: cannot compare with a reference"
"${CACHE_RUN[@]}" --token-cache stale.tokens --val-frac 0.2 >/dev/null 2>&1 || fail "building the stale cache"
rm -f ref2.tokens c.mtp
cache_mb=$(($(stat -c %s ref.tokens) / 1000000))

c_runs=0 c_kills=0 c_done=0 c_absent=0 c_old=0 c_new=0 c_bad=0 c_tmp_kill=0 c_next=0 c_rebuilt=0 c_left=0
for ((i = 1; c_kills < NC && i <= 3 * NC; i++)); do # runs until NC kills (some runs finish first)
    c_runs=$((c_runs + 1))
    rm -f c.mtp c.mtp.tokens
    ((i % 2 == 0)) && cp stale.tokens c.mtp.tokens
    start_kill "$(rand_ms $((run_ms * 11 / 10)))" "${CACHE_RUN[@]}" --token-cache c.mtp.tokens
    if [[ $KRC -eq 0 ]]; then
        c_done=$((c_done + 1)) # finished before the kill
    elif [[ $KRC -ne 137 ]]; then
        fail "cache kill $i: the run failed with status $KRC"
        sed 's/^/    | /' run.err | tail -3
        continue
    else
        c_kills=$((c_kills + 1))
    fi
    [[ -e c.mtp.tokens.tmp.$KPID || -e c.mtp.tokens.val.tmp.$KPID ]] && c_tmp_kill=$((c_tmp_kill + 1))
    if [[ ! -e c.mtp.tokens ]]; then
        c_absent=$((c_absent + 1))
    elif cmp -s c.mtp.tokens ref.tokens; then
        c_new=$((c_new + 1))
    elif cmp -s c.mtp.tokens stale.tokens; then
        c_old=$((c_old + 1))
    else
        c_bad=$((c_bad + 1))
        fail "cache kill $i: the cache file is neither absent, the old one nor a complete new one"
    fi
    before=$(stat -c %i:%Y c.mtp.tokens 2>/dev/null)
    if "${CACHE_RUN[@]}" --token-cache c.mtp.tokens >next.out 2>next.err && cmp -s c.mtp.tokens ref.tokens; then
        c_next=$((c_next + 1))
        [[ $(stat -c %i:%Y c.mtp.tokens) != "$before" ]] && c_rebuilt=$((c_rebuilt + 1))
    else
        fail "cache kill $i: the next run failed or left a cache unlike the reference"
        sed 's/^/    | /' next.err | tail -3
    fi
    left=$(count 'c.mtp.tokens*.tmp.*')
    if [[ $left -gt 0 ]]; then
        fail "cache kill $i: $left temp file(s) there after the next run"
        c_left=$((c_left + 1))
    fi
done

# ---- summary -----------------------------------------------------------------------------------

cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
echo
echo "Crash safety: SIGKILL at random moments ($(getconf _NPROCESSORS_ONLN) cores, ${cpu:-unknown CPU}, seed ${SEED:-1})"
echo
echo "Checkpoints: tiny model, --save-every 1, kills uniform over ${KILL_MS} ms"
printf '  %-62s %6s\n' "kills" "$k_kills" \
    "  inside a save (a temp file was there after the kill)" "$k_in_save" \
    "  checkpoint loads (old or newer step, CRCs good)" "$k_load" \
    "  ... newer than before the run (saves completed: $k_saves)" "$k_newer" \
    "  resumes (--resume to step+1)" "$k_resume" \
    "  next starts (resumes) after which a temp file was there" "$k_left_runs" \
    "  temp files there at the end (each as large as a checkpoint)" "$k_left" \
    "final checkpoint (step $final) == uninterrupted run" "$exact"
echo
echo "Token cache: $cache_mb MB cache of $(($(stat -c %s big.txt) / 1000000)) MB ($corpus_from), bpe:1024," \
    "run $run_ms ms; kills uniform over $((run_ms * 11 / 10)) ms; even runs replace a stale cache"
printf '  %-62s %6s\n' "runs" "$c_runs" \
    "  killed" "$c_kills" \
    "  finished before the kill" "$c_done" \
    "  temp file there after the kill" "$c_tmp_kill" \
    "  cache after the kill: absent" "$c_absent" \
    "  cache after the kill: the old stale one" "$c_old" \
    "  cache after the kill: complete, identical to the reference" "$c_new" \
    "  cache after the kill: anything else (damaged)" "$c_bad" \
    "  next run OK with the reference cache" "$c_next" \
    "  ... which it rebuilt" "$c_rebuilt" \
    "  next runs after which a temp file was there" "$c_left"
echo
if [[ $FAILS -eq 0 ]]; then echo "kill_train: all checks passed"; else echo "kill_train: $FAILS FAILED"; fi
cd / && [[ -z ${CRASH_DIR:-} && ${KEEP:-0} != 1 ]] && rm -rf "$DIR"
[[ $FAILS -eq 0 ]]
