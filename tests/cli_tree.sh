#!/usr/bin/env bash
# cli_tree.sh MTP_EXE SCRATCH_DIR - draft trees through the mtp command:
#  - mtp calibrate writes a consistent calibration (--json: rates, trees of 1..--max-nodes nodes
#    with their expected tokens per pass) into --out, leaving --model as it was, and the same bytes
#    when it rewrites --model in place (atomically: no temp file left); mtp info shows it;
#  - bench --tree 4 --json: a tree run at the largest lookahead beside the chains, its output
#    identical to lookahead 1's, its keys consistent (tree_nodes, rows_per_forward,
#    speedup_vs_chain), every existing key still there; without --tree on a calibrated model a
#    tree is picked and said so; an uncalibrated model has no tree run;
#  - generate --tree 4 (greedy) writes lookahead 1's text and reports the tree and rows per pass;
#    sampling with a tree runs; --draft-min-p cuts chains and keeps the output;
#  - eval --task answers --tree 4 --json: tree keys after the existing ones, outputs identical;
#  - errors, one line each: --tree N > 0 on an uncalibrated model is a usage error (status 2)
#    naming mtp calibrate, as is N beyond the calibration's trees; calibrate on a one-head model
#    (status 2); bad --tree / --draft-min-p / calibrate options;
#  - a calibrated checkpoint resumes training exactly as the uncalibrated one does (the saved
#    result is byte-identical: the calibration, measured on the old weights, is not carried on).
# Every run gives --precision fp32 and --threads 1: outputs are compared across runs.
source "$(dirname "$0")/lib_cli.sh"

TINY=(--data builtin:arith --difficulty 1 --dim 32 --layers 1 --attn-heads 2 --ffn 64 --ctx 64 --batch 4 --threads 1
      --eval-every 0 --eval-batches 1 --token-cache none --precision fp32 --lr 1e-2)
FAST=(--threads 1 --precision fp32)
expect_ok "$MTP" train "${TINY[@]}" --heads 4 --head-type linear --steps 100 --out m4.ckpt
expect_ok "$MTP" train "${TINY[@]}" --heads 1 --steps 2 --out one.ckpt
cp m4.ckpt plain.ckpt

# ---- calibrate -----------------------------------------------------------------------------------

CAL=(--limit 8 --max-tokens 48 --max-nodes 8 "${FAST[@]}")
expect_ok "$MTP" calibrate --model m4.ckpt --out cal.ckpt "${CAL[@]}" --json cal.json
check "calibrate prints the rates and the trees" grep -q 'nodes  tokens/pass' out.txt
check "calibrate says where it wrote" grep -q 'wrote the calibration (trees of 1..8 nodes) into cal.ckpt' err.txt
check "calibrate --out leaves --model as it was" cmp -s m4.ckpt plain.ckpt
calibration_ok() {
    python3 - "$@" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
heads, nodes = 4, 8
assert j["positions"] > 0, j
assert len(j["rates"]) == heads - 1 and all(len(r) == 8 for r in j["rates"]), j["rates"]
assert all(0 <= x <= 1 for r in j["rates"] for x in r) and all(sum(r) <= 1 + 1e-6 for r in j["rates"]), j["rates"]
t = j["trees"]
assert [x["nodes"] for x in t] == list(range(1, nodes + 1)), t
e = [x["expected_tokens_per_pass"] for x in t]
assert e[0] == 1 and all(a <= b for a, b in zip(e, e[1:])) and e[-1] <= heads, e
for x in t:
    p, r = x["parent"], x["rank"]
    assert len(p) == len(r) == x["nodes"] and p[0] == -1 and r[0] == 0, x
    assert all(0 <= p[i] < i and 0 <= r[i] < 8 for i in range(1, len(p))), x
EOF
}
check "calibrate --json: consistent rates and trees" calibration_ok cal.json
# info reads the calibration back
"$MTP" info cal.ckpt --json >info.json 2>/dev/null
check "info --json has the calibration's positions and expected tokens per pass" python3 -c '
import json, sys
i, c = json.load(open("info.json"))["calibration"], json.load(open("cal.json"))
assert i and i["positions"] == c["positions"], i
e = [t["expected_tokens_per_pass"] for t in c["trees"]]
assert len(i["expected"]) == len(e) and all(abs(a - b) < 1e-3 for a, b in zip(i["expected"], e)), i'
"$MTP" info cal.ckpt >info.txt 2>/dev/null
check "info shows the calibration" grep -q '^calibration:' info.txt
"$MTP" info plain.ckpt --json >info.json 2>/dev/null
check "info --json of an uncalibrated model: calibration null" python3 -c '
import json; assert json.load(open("info.json"))["calibration"] is None'
# in place (the default --out): the same bytes as --out, and no temp file left behind
cp m4.ckpt inplace.ckpt
expect_ok "$MTP" calibrate --model inplace.ckpt "${CAL[@]}"
check "calibrate in place writes what --out writes" cmp -s inplace.ckpt cal.ckpt
check "calibrate leaves no temp file" no_temp_files
printf 'Compute 1 + 2.\nCompute 3 * 4.\n' >prompts.txt
expect_ok "$MTP" calibrate --model m4.ckpt --out prompts.ckpt --prompts prompts.txt --max-nodes 3 "${FAST[@]}"
check "calibrate --prompts: trees of 1..3 nodes" grep -q 'trees of 1..3 nodes' err.txt

# ---- bench ---------------------------------------------------------------------------------------

BENCH=(--repeats 1 --max-tokens 32 "${FAST[@]}")
bench_ok() { # bench_ok FILE TREE_NODES PICKED: the runs of a bench --json
    python3 - "$@" <<'EOF'
import json, sys
runs, nodes, picked = json.load(open(sys.argv[1]))["runs"], int(sys.argv[2]), sys.argv[3] == "1"
keys = ["lookahead", "tokens_per_s", "speedup", "tokens_per_forward", "bound", "identical", "head_acceptance", "tokens",
        "forwards", "prefill_s", "forward_s", "choose_s", "other_s", "precision", "precision_auto", "tree_nodes",
        "rows_per_forward"]
for r in runs:
    assert all(k in r for k in keys), [k for k in keys if k not in r]
    assert r["identical"] is True and r["tokens_per_forward"] >= 1 and r["rows_per_forward"] >= 1, r
chains, trees = [r for r in runs if r["tree_nodes"] == 0], [r for r in runs if r["tree_nodes"] > 0]
assert [r["lookahead"] for r in chains] == [1, 2, 3, 4], chains
assert all("speedup_vs_chain" not in r for r in chains), chains
if nodes == 0:
    assert not trees, trees
    sys.exit(0)
assert len(trees) == 1, trees
t = trees[0]
assert t["lookahead"] == 4 and (nodes < 0 or t["tree_nodes"] == nodes), t
assert t["rows_per_forward"] <= t["tree_nodes"] and t["tokens_per_forward"] <= 4, t
assert t["speedup_vs_chain"] > 0 and t["tree_picked"] is picked, t
c = [r for r in chains if r["lookahead"] == 4][0]
assert abs(t["speedup_vs_chain"] - t["tokens_per_s"] / c["tokens_per_s"]) <= 0.01 * t["speedup_vs_chain"], (t, c)
EOF
}
expect_ok "$MTP" bench --model cal.ckpt --tree 4 "${BENCH[@]}" --json b4.json
check "bench --tree 4: a tree run of 4 nodes at lookahead 4, consistent" bench_ok b4.json 4 0
check "bench --tree 4: the table has a tree row" grep -qE '^tree 4 +4 ' out.txt
expect_ok "$MTP" bench --model cal.ckpt "${BENCH[@]}" --json bpick.json
check "bench on a calibrated model: a tree picked" bench_ok bpick.json -1 1
check "bench says which tree it picked and why" grep -qE '^tree: [0-9]+ nodes? \(expected [0-9.]+ tokens per pass, pass' out.txt
expect_ok "$MTP" bench --model plain.ckpt "${BENCH[@]}" --json bplain.json
check "bench on an uncalibrated model: chains only" bench_ok bplain.json 0 0
expect_ok "$MTP" bench --model cal.ckpt --tree 0 "${BENCH[@]}" --json b0.json
check "bench --tree 0: chains only" bench_ok b0.json 0 0

# ---- generate ------------------------------------------------------------------------------------

GEN=(--prompt "Compute 12 + 34." --max-tokens 40 "${FAST[@]}")
expect_ok "$MTP" generate --model cal.ckpt "${GEN[@]}" --lookahead 1
cp out.txt g1.txt
expect_ok "$MTP" generate --model cal.ckpt "${GEN[@]}" --tree 4 --stats
check "generate --tree 4 writes lookahead 1's text" cmp -s out.txt g1.txt
check "generate --stats reports the tree" grep -q 'lookahead 4, tree of 4 nodes' err.txt
check "generate --stats reports rows per pass" grep -q 'rows per forward pass' err.txt
expect_ok "$MTP" generate --model cal.ckpt "${GEN[@]}" --stats
check "generate without --tree on a calibrated model: picked, same text" cmp -s out.txt g1.txt
check "generate --stats says which tree and why" grep -qE '^  tree: [0-9]+ nodes? \(expected' err.txt
expect_ok "$MTP" generate --model cal.ckpt "${GEN[@]}" --tree 0 --draft-min-p 0.5 --stats
check "generate --draft-min-p 0.5: the same text" cmp -s out.txt g1.txt
check "generate --draft-min-p: rows per pass below the lookahead" python3 -c '
import re, sys; assert float(re.search(r"rows per forward pass ([0-9.]+)", open("err.txt").read()).group(1)) < 4'
expect_ok "$MTP" generate --model cal.ckpt "${GEN[@]}" --tree 8 --temperature 0.8 --seed 3
check "generate --tree 8, sampling: some text" test -s out.txt

# ---- eval --task answers -------------------------------------------------------------------------

expect_ok "$MTP" eval --task answers --model cal.ckpt --limit 4 --max-tokens 32 --tree 4 --threads 1 --json
check "eval --task answers --tree 4: keys and identical outputs" python3 -c '
import json
j = json.load(open("out.txt"))
old = ["task", "problems", "correct", "accuracy", "no_answer", "hit_context", "skipped", "mean_chain_tokens",
       "mean_chain_bytes", "lookahead", "tokens_per_s", "tokens_per_forward", "baseline_tokens_per_s", "speedup",
       "identical"]
assert list(j)[:len(old)] == old, list(j)
assert j["tree_nodes"] == 4 and j["tree_identical"] == j["identical"] == j["problems"] > 0, j
assert j["tree_tokens_per_forward"] >= 1 and 1 <= j["tree_rows_per_forward"] <= 4, j
assert j["tree_speedup"] > 0 and j["tree_speedup_vs_chain"] > 0, j'
expect_ok "$MTP" eval --task answers --model plain.ckpt --limit 2 --max-tokens 16 --threads 1 --json
check "eval --task answers, no calibration: tree_nodes 0" python3 -c '
import json; j = json.load(open("out.txt")); assert j["tree_nodes"] == 0 and "tree_identical" not in j, j'

# ---- errors --------------------------------------------------------------------------------------

for cmd in "generate --prompt x" "bench" "eval --task answers"; do
    # shellcheck disable=SC2086
    expect_fail 2 "--tree 3: plain.ckpt has no calibration: run mtp calibrate --model plain.ckpt first" \
        "$MTP" $cmd --model plain.ckpt --tree 3 --threads 1
done
expect_fail 2 "--tree 9: the calibration of cal.ckpt has trees of 1..8 nodes" "$MTP" generate --model cal.ckpt --prompt x --tree 9
expect_fail 2 "--tree must be between 0 and 32" "$MTP" bench --model cal.ckpt --tree 33
expect_fail 2 "--draft-min-p must be between 0 and 1" "$MTP" generate --model cal.ckpt --prompt x --draft-min-p 1.5
expect_fail 2 "nothing to calibrate: the model has one head" "$MTP" calibrate --model one.ckpt --threads 1
"$MTP" info one.ckpt --json >info.json 2>/dev/null
check "calibrate on a one-head model leaves it uncalibrated" python3 -c '
import json; assert json.load(open("info.json"))["calibration"] is None'
expect_fail 2 "--model FILE is required" "$MTP" calibrate --limit 3
expect_fail 2 "--prompts FILE is used whole" "$MTP" calibrate --model m4.ckpt --prompts prompts.txt --limit 3
expect_fail 2 "--max-nodes must be between 1 and 32" "$MTP" calibrate --model m4.ckpt --max-nodes 33
expect_fail 1 "--prompts nope.txt" "$MTP" calibrate --model m4.ckpt --prompts nope.txt --threads 1

# ---- resuming a calibrated checkpoint ------------------------------------------------------------

cp cal.ckpt resume-cal.ckpt
cp m4.ckpt resume-plain.ckpt
expect_ok "$MTP" train --resume resume-cal.ckpt --threads 1 --steps 110
expect_ok "$MTP" train --resume resume-plain.ckpt --threads 1 --steps 110
check "a calibrated checkpoint resumes as the uncalibrated one (byte-identical result)" \
    cmp -s resume-cal.ckpt resume-plain.ckpt

echo "cli_tree: $PASS passed, $FAIL failed"
[[ $FAIL -eq 0 ]]
