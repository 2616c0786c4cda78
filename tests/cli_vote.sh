#!/usr/bin/env bash
# cli_vote.sh MTP_EXE SCRATCH_DIR - voting over sampled chains, mtp eval --task answers --samples K:
#  - --json: the curve at k = 1, 2, 4, ..., K (K itself when not a power of two) with
#    majority_accuracy, pass_at_k, seconds_per_problem and baseline_seconds_per_problem; majority@k
#    and pass@k equal a direct computation from the per-sample answers that --verbose prints; times
#    grow with k; accuracy is majority@K;
#  - reproducible under --seed (the same answers and chain lengths; another seed gives others), and
#    --limit keeps the samples of the problems it keeps;
#  - --plot FILE.png / FILE.svg: a valid picture (PNG signature and size; SVG that parses, with the
#    legend's texts), written atomically;
#  - errors, one line each: voting options without --samples, --tree with --samples, a --plot name
#    that is neither .png nor .svg, and --plot without gnuplot on PATH (before any decoding).
# The model: a tiny one trained on a JSONL of one question, "Pick a digit.", whose answers are 1, 2
# or 3 at random (weights 5:3:2): it learns to answer with that distribution, so sampled answers
# vary, some right and some wrong, and majority@k and pass@k are far from 0 and 1. The arithmetic
# of the votes is also test_vote.c's.
source "$(dirname "$0")/lib_cli.sh"

python3 -c '
import random
random.seed(5)
with open("digits.jsonl", "w") as f:
    for i in range(300):
        f.write("{\"question\":\"Pick a digit.\",\"answer\":\"#### %s\"}\n" % random.choices("123", weights=[5, 3, 2])[0])
'
TINY=(--data digits.jsonl --dim 32 --layers 1 --attn-heads 2 --ffn 64 --ctx 64 --batch 4 --threads 1 --eval-every 0
      --eval-batches 1 --token-cache none --precision fp32 --lr 1e-2 --heads 3 --head-type linear)
EVAL=(eval --task answers --model m.ckpt --threads 1 --precision fp32)
expect_ok "$MTP" train "${TINY[@]}" --steps 150 --out m.ckpt

# ---- the curve against the samples -----------------------------------------------------------------
expect_ok "$MTP" "${EVAL[@]}" --samples 6 --temperature 1 --seed 7 --baseline 2 --json --verbose
cp out.txt v.json
cp err.txt v.err
grep '^problem .* sample ' err.txt >v.samples
check "--verbose: a line per sample (30 problems x 6)" test "$(wc -l <v.samples)" = 180
curve_ok() {
    python3 - v.json v.samples v.err <<'EOF'
import json, re, sys
j = json.load(open(sys.argv[1]))
assert j["problems"] == 30 and j["samples"] == 6 and j["lookahead"] == 3, j
assert j["temperature"] == 1 and j["seed"] == 7 and j["baseline_problems"] == 2, j
ks = [c["k"] for c in j["curve"]]
assert ks == [1, 2, 4, 6], ks
# the answers of every sample, and the references, from --verbose
ans, refs = {}, {}
for line in open(sys.argv[2]):
    m = re.match(r"problem (\d+) sample (\d+): (.*) \((\d+) tokens", line)
    ans.setdefault(int(m.group(1)), []).append("" if m.group(3) == "no answer" else m.group(3))
for line in open(sys.argv[3]):
    m = re.match(r"problem (\d+): (right|wrong) \(reference (\S+), majority (\S+)\)", line)
    if m: refs[int(m.group(1))] = m.group(3)
assert sorted(ans) == sorted(refs) == list(range(1, 31)), (ans, refs)
def majority(a):
    best, top = None, 0
    for i, x in enumerate(a):
        if x and a[:i + 1].count(x) > top: best, top = x, a[:i + 1].count(x)
    return best
for c in j["curve"]:
    k = c["k"]
    maj = sum(majority(ans[p][:k]) == refs[p] for p in ans) / 30
    pas = sum(refs[p] in ans[p][:k] for p in ans) / 30
    assert abs(c["majority_accuracy"] - maj) < 1e-6 and abs(c["pass_at_k"] - pas) < 1e-6, (c, maj, pas)
    assert c["seconds_per_problem"] > 0 and c["baseline_seconds_per_problem"] > 0, c
# the model answers with its learned distribution: votes that can be wrong, pass@k that grows
assert 0 < j["curve"][0]["pass_at_k"] < j["curve"][-1]["pass_at_k"], j["curve"]
assert 0 < j["curve"][-1]["majority_accuracy"] < 1, j["curve"]
s = [c["seconds_per_problem"] for c in j["curve"]]
assert s == sorted(s), s
assert j["accuracy"] == j["curve"][-1]["majority_accuracy"], j
assert j["speedup"] > 0 and 0 <= j["no_answer_rate"] <= 1 and j["mean_chain_tokens"] > 0, j
EOF
}
check "--json: the curve is the direct computation from the samples" curve_ok

# ---- reproducible --------------------------------------------------------------------------------
expect_ok "$MTP" "${EVAL[@]}" --samples 6 --temperature 1 --seed 7 --baseline 0 --verbose
grep '^problem .* sample ' err.txt >v2.samples
check "the same --seed: the same samples (answers and lengths)" cmp -s v.samples v2.samples
expect_ok "$MTP" "${EVAL[@]}" --samples 6 --temperature 1 --seed 8 --baseline 0 --verbose
grep '^problem .* sample ' err.txt >v3.samples
check "another --seed: other samples" eval '! cmp -s v.samples v3.samples'
expect_ok "$MTP" "${EVAL[@]}" --limit 2 --samples 6 --temperature 1 --seed 7 --baseline 0 --verbose
grep '^problem .* sample ' err.txt >v4.samples
check "--limit 2: the first problems' samples as with --limit 5" cmp -s v4.samples <(head -12 v.samples)
expect_ok "$MTP" "${EVAL[@]}" --limit 2 --samples 3 --lookahead 1 --json
check "--lookahead 1: a curve without a baseline of its own (speedup 1)" \
    test "$(python3 -c 'import json; j = json.load(open("out.txt")); print(j["speedup"], [c["k"] for c in j["curve"]])')" = "1.0 [1, 2, 3]"

# ---- --plot ----------------------------------------------------------------------------------------
expect_ok "$MTP" "${EVAL[@]}" --limit 3 --samples 4 --plot curve.png
png_ok() {
    python3 - curve.png <<'EOF'
import struct, sys
b = open(sys.argv[1], "rb").read()
assert b[:8] == b"\x89PNG\r\n\x1a\n" and b[12:16] == b"IHDR", b[:16]
w, h = struct.unpack(">II", b[16:24])
assert (w, h) == (900, 600), (w, h)
assert b[-12:-8] == b"\0\0\0\0" and b[-8:-4] == b"IEND", "no IEND chunk: cut short"
EOF
}
check "--plot curve.png: a whole PNG of 900 x 600" png_ok
check "... no temp file left" no_temp_files
expect_ok "$MTP" "${EVAL[@]}" --limit 3 --samples 4 --plot curve.svg
svg_ok() {
    python3 - curve.svg <<'EOF'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag.endswith("svg"), root.tag
text = " ".join(t.strip() for t in root.itertext())
for want in ("lookahead 1 (head 1 alone)", "lookahead 3 (speculative sampling)", "wall seconds per problem", "accuracy (%)"):
    assert want in text, want
EOF
}
check "--plot curve.svg: SVG that parses, with both lines' legends and the axes' names" svg_ok

# ---- errors --------------------------------------------------------------------------------------
expect_fail 2 "--temperature applies to voting: give --samples K too" "$MTP" "${EVAL[@]}" --temperature 0.5
expect_fail 2 "--plot applies to voting" "$MTP" "${EVAL[@]}" --plot x.png
expect_fail 2 "--tree applies to greedy decoding" "$MTP" "${EVAL[@]}" --samples 2 --tree 4
expect_fail 2 "must end in .png or .svg" "$MTP" "${EVAL[@]}" --samples 2 --plot x.jpg
expect_fail 2 "--plot needs gnuplot" env PATH=/nonexistent "$MTP" "${EVAL[@]}" --samples 2 --plot x.png
expect_fail 2 "--samples must be between" "$MTP" "${EVAL[@]}" --samples 0
check "no picture from refused runs" test ! -e x.png -a ! -e x.jpg

echo "cli_vote: $PASS passed, $FAIL failed"
((FAIL == 0))
