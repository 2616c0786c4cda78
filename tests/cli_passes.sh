#!/usr/bin/env bash
# cli_passes.sh MTP_EXE SCRATCH_DIR - `mtp bench --passes`, the decoding pass against its floor:
#  - the JSON has a point per (cache length, rows) asked for, with the documented keys, and its
#    figures are consistent: the parts (products, attention, rest, drafts) add up to the pass
#    within 10% and none is negative, vs_floor = ms / floor_ms, floor_ms = max(read floor, FLOP
#    floor), pass_ratio = ms / the 1-row ms at the same cache length, and the bytes and FLOPs grow
#    with the rows and the cache as the pass does (no timing is asserted);
#  - in fp32 and bf16, with linear heads (drafts) and a single head (none);
#  - kernel names what serves products of 1-16 rows;
#  - --precision auto picks one and says so (fp32 stays the default);
#  - bad --rows and --cache are one-line usage errors.
source "$(dirname "$0")/lib_cli.sh"

TINY=(--data builtin:arith --dim 32 --layers 2 --attn-heads 2 --ffn 64 --ctx 64 --batch 2 --steps 2 --threads 1
      --eval-every 0 --eval-batches 1 --token-cache none)
expect_ok "$MTP" train "${TINY[@]}" --heads 3 --head-type linear --out lin.ckpt
expect_ok "$MTP" train "${TINY[@]}" --heads 1 --out one.ckpt

# consistent FILE ROWS CACHES DRAFTS: the checks above on one --json file
consistent() {
    python3 - "$@" <<'EOF'
import json, sys
path, rows, caches, drafts = sys.argv[1], [int(x) for x in sys.argv[2].split(",")], \
    [int(x) for x in sys.argv[3].split(",")], sys.argv[4] == "1"
j = json.load(open(path))
assert j["cpu"] and j["peak_gflops"] > 0 and j["threads"] == 1, j
assert j["kernel"] in ("onednn", "avx2", "avx512", "avx512-dot"), j["kernel"]
pts = j["passes"]
assert [(p["cache_len"], p["rows"]) for p in pts] == [(c, r) for c in caches for r in rows], pts
keys = ["rows", "ms", "floor_ms", "vs_floor", "pass_ratio", "products_ms", "attention_ms", "rest_ms", "drafts_ms",
        "read_floor_ms", "flop_floor_ms", "weight_bytes", "cache_bytes", "flops", "read_gbs"]
for p in pts:
    missing = [k for k in keys if k not in p]
    assert not missing, (missing, p)
    parts = p["products_ms"] + p["attention_ms"] + p["rest_ms"] + p["drafts_ms"]
    assert abs(parts - p["ms"]) <= 0.1 * p["ms"], ("parts do not add up", p)
    assert min(p["products_ms"], p["attention_ms"], p["drafts_ms"]) >= 0 and p["rest_ms"] >= -0.1 * p["ms"], p
    assert (p["drafts_ms"] > 0) == drafts, ("drafts", p)
    assert abs(p["vs_floor"] - p["ms"] / p["floor_ms"]) <= 0.01 * p["vs_floor"] + 1e-3, p
    assert abs(p["floor_ms"] - max(p["read_floor_ms"], p["flop_floor_ms"])) <= 1e-3, p
    one = [q for q in pts if q["cache_len"] == p["cache_len"] and q["rows"] == 1][0]
    assert abs(p["pass_ratio"] - p["ms"] / one["ms"]) <= 0.01 * p["pass_ratio"] + 1e-3, p
for c in caches:
    row = [p for p in pts if p["cache_len"] == c]
    assert all(a["flops"] < b["flops"] and a["cache_bytes"] <= b["cache_bytes"] and a["weight_bytes"] == b["weight_bytes"]
               for a, b in zip(row, row[1:])), row
for r in rows:
    col = [p for p in pts if p["rows"] == r]
    assert all(a["cache_bytes"] < b["cache_bytes"] and a["flops"] < b["flops"] for a, b in zip(col, col[1:])), col
EOF
}

for prec in fp32 bf16; do
    expect_ok "$MTP" bench --passes --model lin.ckpt --rows 1,2,4 --cache 8,40 --repeats 3 --threads 1 \
        --precision "$prec" --json lin.$prec.json
    check "bench --passes, linear heads, $prec: consistent JSON" consistent lin.$prec.json 1,2,4 8,40 1
    check "bench --passes prints a line per point" test "$(grep -cE '^ +(8|40) +[124] ' out.txt)" -eq 6
done
expect_ok "$MTP" bench --passes --model one.ckpt --rows 1,3 --repeats 3 --threads 1 --json one.json
check "bench --passes, one head: no drafts; default caches 32 and ctx - 3" consistent one.json 1,3 32,61 0

# --precision auto: the precision picked on a pass of the largest row count, with both times
expect_ok "$MTP" bench --passes --model lin.ckpt --rows 1,4 --cache 8 --repeats 3 --threads 1 --precision auto \
    --json auto.json
check "bench --passes --precision auto: consistent JSON" consistent auto.json 1,4 8 1
check "bench --passes --precision auto: the pick in the JSON" python3 -c '
import json
j = json.load(open("auto.json"))
assert j["precision"] in ("fp32", "bf16") and j["precision_auto"] is True, j
assert "pass_ms" not in j or (j["pass_ms"]["fp32"] > 0 and j["pass_ms"]["bf16"] > 0), j
'
check "bench --passes --precision auto: the pick on the first line" grep -qE '^mtp bench --passes: lin.ckpt, precision auto: (fp32|bf16) ' out.txt
expect_ok "$MTP" bench --passes --model lin.ckpt --rows 1 --cache 8 --repeats 3 --threads 1 --json fp32.json
check "bench --passes: fp32 by default" python3 -c '
import json
j = json.load(open("fp32.json"))
assert (j["precision"], j["precision_auto"], "pass_ms" in j) == ("fp32", False, False), j
'
expect_fail 2 "--rows '0,2'" "$MTP" bench --passes --model lin.ckpt --rows 0,2
expect_fail 2 "--rows: 64 rows do not fit the model's context of 64" "$MTP" bench --passes --model lin.ckpt --rows 64
expect_fail 2 "--cache '70': expected comma-separated lengths from 1 to 48" "$MTP" bench --passes --model lin.ckpt --cache 70
expect_fail 2 "--model FILE is required" "$MTP" bench --passes --rows 1

echo "cli_passes: $PASS passed, $FAIL failed"
[[ $FAIL -eq 0 ]]
