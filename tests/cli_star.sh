#!/usr/bin/env bash
# cli_star.sh MTP_EXE SCRATCH_DIR - self-training, mtp star:
#  - a 2-round run on a tiny model writes PREFIX.round1.mtp and PREFIX.round2.mtp (valid
#    checkpoints: mtp info, mtp eval) and PREFIX.jsonl (a run line, round 0 = the model as given,
#    a line per round with its counts and held-out accuracies), and no temp file;
#  - resuming: --rounds 1 then the same command with --rounds 2 gives the same bytes as 2 rounds
#    straight (checkpoint and log but the times); a finished run has nothing to do; other options
#    are refused (status 2) and nothing is written;
#  - held-out problems never enter training: the training problems a run reports dropped are the
#    training lines whose question is a held-out one (computed here from the file);
#  - --reference (a supervised control): every training problem's own chain is kept;
#  - errors, one line each: missing required options, data without problems.
source "$(dirname "$0")/lib_cli.sh"

# a + b with one digit each: 81 questions, so the 10% held-out lines repeat many training questions
python3 -c '
import random
random.seed(5)
with open("sums.jsonl", "w") as f:
    for i in range(400):
        a, b = random.randint(1, 9), random.randint(1, 9)
        f.write("{\"question\":\"%d + %d = ?\",\"answer\":\"#### %d\"}\n" % (a, b, a + b))
'
expect_ok "$MTP" train --data sums.jsonl --dim 32 --layers 1 --attn-heads 2 --ffn 64 --ctx 64 --batch 4 --threads 1 \
    --eval-every 0 --eval-batches 1 --token-cache none --precision fp32 --lr 1e-2 --heads 2 --head-type linear \
    --steps 150 --out m.ckpt
STAR=(star --model m.ckpt --samples 4 --problems 40 --eval-limit 20 --steps 20 --lr 1e-3 --threads 1)

expect_ok "$MTP" "${STAR[@]}" --rounds 2 --out a
check "two rounds: two checkpoints and a log" test -s a.round1.mtp -a -s a.round2.mtp -a -s a.jsonl
check "... no third round, no temp file" test ! -e a.round3.mtp -a ! -e a.round0.mtp
check "... no temp file" no_temp_files
check "... says how many problems gained a right chain each round" \
    test "$(grep -c 'problems with a right chain (.* never before)' err.txt)" = 2
expect_ok "$MTP" info a.round2.mtp --json
check "round 2 is a checkpoint mtp info reads (2 heads)" grep -q '"heads":2' out.txt
expect_ok "$MTP" eval --task answers --model a.round2.mtp --limit 3 --threads 1
log_ok() {
    python3 - a.jsonl <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert [l["type"] for l in lines] == ["run", "round", "round", "round"], lines
run = lines[0]
assert run["samples"] == 4 and run["problems"] == 40 and run["steps"] == 20 and run["data"] == ["sums.jsonl"], run
assert [l["round"] for l in lines[1:]] == [0, 1, 2], lines
for l in lines[1:]:
    assert 0 <= l["greedy_accuracy"] <= 1 and 0 <= l["majority_accuracy"] <= 1 and l["heldout_problems"] == 20, l
for l in lines[2:]:
    assert l["problems"] == 40 and 0 <= l["new_solved"] <= l["solved"] <= l["chains_kept"] <= 4 * l["solved"], l
    assert len(l["solved_set"]) == 10, l
    assert bin(int(l["solved_set"][::-1], 16)).count("1") == l["solved"], l
assert lines[3]["new_solved"] == bin(int(lines[3]["solved_set"][::-1], 16) & ~int(lines[2]["solved_set"][::-1], 16)).count("1"), lines
PY
}
check "the log: run line, rounds 0..2 with consistent counts" log_ok

# resuming
expect_ok "$MTP" "${STAR[@]}" --rounds 1 --out b
expect_ok "$MTP" "${STAR[@]}" --rounds 2 --out b
check "resumed: says so" grep -q "resuming after round 1" err.txt
check "resumed: round 2 byte-identical to the straight run's" cmp a.round2.mtp b.round2.mtp
check "resumed: the same log but the times" \
    cmp -s <(sed 's/"seconds":[0-9.]*//' a.jsonl) <(sed 's/"seconds":[0-9.]*//' b.jsonl)
expect_ok "$MTP" "${STAR[@]}" --rounds 2 --out b
check "a finished run has nothing to do" grep -q "already holds round 2 of 2" err.txt
cp b.jsonl b.jsonl.bak
expect_fail 2 "written by a run with other options" "$MTP" "${STAR[@]}" --rounds 3 --out b --seed 2
check "... and nothing is written" test ! -e b.round3.mtp
check "... the log unchanged" cmp b.jsonl b.jsonl.bak
# a log line of a round whose checkpoint is missing (killed between the two) is dropped, the round redone
rm b.round2.mtp
expect_ok "$MTP" "${STAR[@]}" --rounds 2 --out b
check "a round without its checkpoint is done again, the same" cmp a.round2.mtp b.round2.mtp
check "... its log line once" test "$(grep -c '"round":2' b.jsonl)" = 1

# held-out problems never enter training
expect_ok "$MTP" star --model m.ckpt --samples 2 --problems 60 --eval-limit 20 --steps 5 --threads 1 --rounds 1 --out c
dropped_ok() {
    python3 - sums.jsonl "$(sed -n 's/.* problems (\([0-9]*\) dropped.*/\1/p' err.txt)" <<'PY'
import json, sys
q = [json.loads(l)["question"] for l in open(sys.argv[1])]
n_train = len(q) - round(0.1 * len(q))
held = set(q[n_train:])
# the run reads every held-out question, then 60 + that many training lines, and drops those held out
first = q[:60 + len(q) - n_train]
want = sum(x in held for x in first)
assert int(sys.argv[2]) == want, (sys.argv[2], want)
assert len([x for x in first if x not in held]) >= 60
PY
}
check "the training problems dropped are exactly those with a held-out question" dropped_ok
check "... and it says 60 training problems" grep -q "60 training problems" err.txt

# --reference: the control fine-tunes on every training problem's own chain, no sampling
expect_ok "$MTP" star --model m.ckpt --samples 2 --problems 30 --eval-limit 10 --steps 5 --threads 1 --rounds 1 --out ref --reference
check "--reference: every training problem's chain kept, the run line says so" test "$(python3 -c '
import json
l = [json.loads(x) for x in open("ref.jsonl")]
print(l[0]["reference"], l[2]["chains_kept"], l[2]["solved"])')" = "True 30 30"

# errors
expect_fail 2 "--rounds R is required" "$MTP" star --model m.ckpt --samples 2 --out x
expect_fail 2 "--samples K is required" "$MTP" star --model m.ckpt --rounds 1 --out x
expect_fail 2 "--out PREFIX is required" "$MTP" star --model m.ckpt --rounds 1 --samples 2
expect_fail 2 "--model FILE is required" "$MTP" star --rounds 1 --samples 2 --out x
echo "plain text" >plain.txt
expect_fail 1 "plain.txt has no held-out problems" "$MTP" star --model m.ckpt --rounds 1 --samples 2 --out x --data plain.txt
expect_fail 1 "cannot write nodir/x.jsonl" "$MTP" "${STAR[@]}" --rounds 1 --out nodir/x
check "no files from refused runs" test ! -e x.jsonl -a ! -e x.round1.mtp

echo "cli_star: $PASS passed, $FAIL failed"
((FAIL == 0))
