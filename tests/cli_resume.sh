#!/usr/bin/env bash
# cli_resume.sh MTP_EXE SCRATCH_DIR - resuming through the mtp command is bit for bit:
#  - 8 steps straight == 4 steps, then --resume to 8 (per-step losses of steps 5..8 identical in the
#    logs, final checkpoints byte-identical), with 1 and with 2 threads. The learning rate is held
#    constant after a short warmup (--min-lr = --lr, --warmup 2) because the schedule is a function
#    of --steps: a run created with --steps 4 decays (and clamps its warmup) over 4 steps;
#  - Ctrl-C (SIGINT) saves and exits 130; the checkpoint resumes with a larger --steps, and resumed
#    without --steps it finishes the original run exactly like an uninterrupted one (default
#    cosine schedule);
#  - --save-every: the final checkpoint is the same as without it; killed (SIGKILL) mid-run, the
#    last periodic save is there and is at a multiple of the period;
#  - --precision auto (the default): the checkpoint and the log record the precision picked, and a
#    resumed run keeps it: 4 auto steps + resume to 8 == 8 straight in that precision.
# Every other run gives --precision: auto may pick differently from one run to the next.
source "$(dirname "$0")/lib_cli.sh"
# run_ok LOGNAME CMD...: runs, stderr to LOGNAME.err; fails the test unless status 0
run_ok() {
    local name=$1
    shift
    "$@" >"$name.out" 2>"$name.err"
    local rc=$?
    if [[ $rc -ne 0 ]]; then
        fail "status $rc: $*"
        sed 's/^/      | /' "$name.err" | tail -5
        return 1
    fi
    pass
}

info_step() { # info_step FILE: the saved step, from mtp info --json
    "$MTP" info "$1" --json | python3 -c 'import json,sys; t=json.load(sys.stdin)["train"]; print(t["step"] if t else "none")'
}

MODEL=(--data builtin:arith --dim 32 --layers 1 --attn-heads 2 --ffn 64 --ctx 16 --batch 2 --heads 2 --eval-every 0
    --eval-batches 2 --precision fp32)
CONST=(--lr 3e-3 --min-lr 3e-3 --warmup 2)

# ---- 8 straight == 4 + resume to 8 ---------------------------------------------------------------

for threads in 1 2; do
    t=t$threads
    run_ok "$t-a" "$MTP" train "${MODEL[@]}" "${CONST[@]}" --threads "$threads" --steps 8 --out "$t-a.ckpt" --log "$t-a.jsonl" || continue
    run_ok "$t-b1" "$MTP" train "${MODEL[@]}" "${CONST[@]}" --threads "$threads" --steps 4 --out "$t-b.ckpt" --log "$t-b.jsonl" || continue
    check "$t: info shows step 4 after the first half" test "$(info_step "$t-b.ckpt")" = 4
    run_ok "$t-b2" "$MTP" train --resume "$t-b.ckpt" --threads "$threads" --eval-every 0 --steps 8 --log "$t-b.jsonl" || continue
    check "$t: resuming says so" grep -q 'resuming' "$t-b2.err"
    losses "$t-a.jsonl" 1 8 >"$t-a.losses"
    losses "$t-b.jsonl" 1 8 >"$t-b.losses"
    if ! grep -q missing "$t-a.losses" && cmp -s "$t-a.losses" "$t-b.losses"; then pass; else
        fail "$t: per-step losses differ between 8 straight and 4 + resume to 8"
        diff "$t-a.losses" "$t-b.losses" | head -10 | sed 's/^/      | /'
    fi
    check "$t: the losses change from step to step" test "$(sed -n 5p "$t-a.losses")" != "$(sed -n 8p "$t-a.losses")"
    check "$t: final checkpoints byte-identical (8 straight vs 4 + resume)" cmp "$t-a.ckpt" "$t-b.ckpt"
    check "$t: info shows step 8" test "$(info_step "$t-b.ckpt")" = 8
    # the very command of the first half again, --steps 8 and --resume added: its flags equal the
    # saved settings, so it is accepted and gives the same run; a different value is refused
    if [ "$threads" = 1 ]; then
        run_ok "$t-d1" "$MTP" train "${MODEL[@]}" "${CONST[@]}" --threads 1 --steps 4 --out "$t-d.ckpt"
        run_ok "$t-d2" "$MTP" train "${MODEL[@]}" "${CONST[@]}" --threads 1 --steps 8 --out "$t-d.ckpt" --resume "$t-d.ckpt"
        check "$t: the same command with --resume: byte-identical to 8 straight" cmp "$t-a.ckpt" "$t-d.ckpt"
        if "$MTP" train --batch 3 --steps 9 --resume "$t-d.ckpt" >"$t-d3.out" 2>"$t-d3.err"; then
            fail "$t: --batch 3 on a run saved with batch 2 was accepted"
        else
            check "$t: --batch 3 refused, naming the saved value" grep -q -- '--batch 3 differs from the run being resumed (2)' "$t-d3.err"
        fi
    fi
    # resuming a finished run with the same --steps trains nothing and leaves the weights as they are
    cp "$t-a.ckpt" "$t-c.ckpt"
    run_ok "$t-c" "$MTP" train --resume "$t-c.ckpt" --threads "$threads"
    check "$t: resuming a finished run says there is nothing to train" grep -q 'nothing to train' "$t-c.err"
    check "$t: ... and leaves the checkpoint identical" cmp "$t-a.ckpt" "$t-c.ckpt"
done

# ---- Ctrl-C ----------------------------------------------------------------------------------------

# A bigger batch, so a step takes about a millisecond; the default learning-rate schedule.
LONG=(--data builtin:arith --dim 32 --layers 1 --attn-heads 2 --ffn 64 --ctx 32 --batch 4 --heads 2 --eval-every 0
    --eval-batches 2 --threads 1 --precision fp32)
rm -f int.jsonl
"$MTP" train "${LONG[@]}" --steps 1500 --out int.ckpt --log int.jsonl >int.out 2>int.err &
PID=$!
for ((i = 0; i < 1200; i++)); do # up to 60 s for the first steps
    if [[ -f int.jsonl ]] && [[ $(grep -c '"type":"step"' int.jsonl) -ge 5 ]]; then break; fi
    kill -0 $PID 2>/dev/null || break
    sleep 0.05
done
kill -INT $PID 2>/dev/null
wait $PID
RC=$?
if [[ $RC -eq 130 ]]; then pass; else
    fail "SIGINT: status $RC, expected 130"
    tail -3 int.err | sed 's/^/      | /'
fi
check "SIGINT: the checkpoint exists" test -f int.ckpt
check "SIGINT: stderr says it saved" grep -q 'interrupted at step' int.err
check "SIGINT: no error message" test "$(grep -c 'error:' int.err)" = 0
K=$(info_step int.ckpt 2>/dev/null)
LAST=$(grep '"type":"step"' int.jsonl | tail -n 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["step"])')
if [[ $K =~ ^[0-9]+$ ]] && ((K > 0 && K < 1500)); then pass; else fail "SIGINT: saved step '$K' not in 1..1499"; K=0; fi
check "SIGINT: the saved step ($K) is the last step logged ($LAST)" test "$K" = "$LAST"
check "SIGINT: no temp file left behind" no_temp_files

if ((K > 0)); then
    # resume with a couple more steps
    cp int.ckpt int2.ckpt
    run_ok int2 "$MTP" train --resume int2.ckpt --threads 1 --eval-every 0 --steps $((K + 2))
    check "SIGINT: resumed to step K+2" test "$(info_step int2.ckpt)" = $((K + 2))
    # resume to the end of the original run: the same as never interrupted
    run_ok int3 "$MTP" train --resume int.ckpt --threads 1 --eval-every 0 --log int.jsonl
    check "SIGINT: the resumed run reaches step 1500" test "$(info_step int.ckpt)" = 1500
    run_ok straight "$MTP" train "${LONG[@]}" --steps 1500 --out straight.ckpt --log straight.jsonl
    losses straight.jsonl 1 1500 >straight.losses
    losses int.jsonl 1 1500 >int.losses
    if ! grep -q missing int.losses && cmp -s straight.losses int.losses; then pass; else
        fail "SIGINT: per-step losses of the interrupted + resumed run differ from the straight run"
        diff straight.losses int.losses | head -6 | sed 's/^/      | /'
    fi
    check "SIGINT: interrupted + resumed checkpoint byte-identical to the uninterrupted one" cmp straight.ckpt int.ckpt
fi

# ---- --save-every --------------------------------------------------------------------------------

run_ok se "$MTP" train "${MODEL[@]}" --threads 1 --steps 7 --save-every 3 --out se.ckpt
check "--save-every 3 --steps 7: info shows step 7" test "$(info_step se.ckpt)" = 7
run_ok nose "$MTP" train "${MODEL[@]}" --threads 1 --steps 7 --out nose.ckpt
check "--save-every does not change the result" cmp se.ckpt nose.ckpt
check "--save-every: no temp file left behind" no_temp_files

# killed without a chance to save: the last periodic checkpoint is on disk, whole
rm -f kill.jsonl
"$MTP" train "${LONG[@]}" --steps 100000 --save-every 50 --out kill.ckpt --log kill.jsonl >kill.out 2>kill.err &
PID=$!
for ((i = 0; i < 1200; i++)); do
    if [[ -f kill.jsonl ]] && [[ $(grep -c '"type":"step"' kill.jsonl) -ge 120 ]]; then break; fi
    kill -0 $PID 2>/dev/null || break
    sleep 0.05
done
kill -KILL $PID 2>/dev/null
wait $PID 2>/dev/null
S=$(info_step kill.ckpt 2>/dev/null)
if [[ $S =~ ^[0-9]+$ ]] && ((S >= 100 && S % 50 == 0)); then pass; else
    fail "--save-every 50, killed after step 120: saved step '$S' is not a multiple of 50 >= 100"
fi

# ---- --precision auto --------------------------------------------------------------------------------

# run_records LOG: "precision precision_auto" of each run record of a --log file, one per line
run_records() {
    python3 -c 'import json, sys
for l in open(sys.argv[1]):
    j = json.loads(l)
    if j["type"] == "run": print(j["precision"], str(j["precision_auto"]).lower())' "$1"
}
AUTO=(--data builtin:arith --dim 32 --layers 1 --attn-heads 2 --ffn 64 --ctx 16 --batch 2 --heads 2 --eval-every 0
    --eval-batches 2 --threads 1 "${CONST[@]}")
rm -f auto.jsonl
if run_ok auto1 "$MTP" train "${AUTO[@]}" --steps 4 --out auto.ckpt --log auto.jsonl; then
    P=$("$MTP" info auto.ckpt | sed -n 's/^training: .*, \(fp32\|bf16\)$/\1/p')
    check "auto: info shows the precision picked, fp32 or bf16 ('$P')" test -n "$P"
    check "auto: stderr says what it picked and why" grep -qE "^mtp train: precision auto: $P \((products .* GFLOP/s bf16, .* fp32|no bf16 products on this CPU)" auto1.err
    check "auto: the log's run record has the pick" test "$(run_records auto.jsonl)" = "$P true"
    run_ok auto2 "$MTP" train --resume auto.ckpt --threads 1 --eval-every 0 --steps 8 --log auto.jsonl
    check "auto: the resumed run keeps the checkpoint's precision" grep -q "1 thread, $P\$" auto2.err
    check "auto: ... and does not measure" test "$(grep -c 'precision auto' auto2.err)" = 0
    check "auto: ... and logs it as given" test "$(run_records auto.jsonl | tail -n 1)" = "$P false"
    run_ok auto3 "$MTP" train "${AUTO[@]}" --precision "$P" --steps 8 --out auto8.ckpt
    check "auto: 4 steps + resume to 8 == 8 straight in the precision picked" cmp auto.ckpt auto8.ckpt
    run_ok auto4 "$MTP" train --resume auto8.ckpt --threads 1 --eval-every 0 --steps 9 --precision auto
    check "auto: --precision auto given to a resumed run picks again" grep -q "^mtp train: precision auto: " auto4.err
fi

echo "cli_resume: $PASS passed, $FAIL failed"
[[ $FAIL -eq 0 ]]
