#!/usr/bin/env bash
# tests/fuzz/seeds.sh [OUT]: makes the seed corpora of the fuzz targets from files the project
# itself writes, into OUT/<target>/ (default build-fuzz/seeds). The committed hand-written seeds
# (tests/fuzz/seeds/<target>/) are used beside these; run.sh passes both.
#
#   checkpoint   tiny checkpoints written by `mtp train` (bytes and BPE tokenizers, linear and
#                transformer heads, several data sources with JSONL fields, --vocab wider than the
#                tokenizer) and one written by `mtp calibrate` (with a calibration)
#   tokenizer    tokenizer files written by `mtp tokenize --learn bpe:N`, and a checkpoint
#   bpe_merges   the merge lists inside those tokenizer files
#   tokcache     token caches written by `mtp train --token-cache` on the sources fuzz_tokcache
#                sets up (it is run with -runs=0 first, to write them)
#   jsonl        lines of ../shared/data/gsm8k_train.jsonl, when present
#   prompts      the same lines, and lines of ../shared/data/tinyshakespeare.txt
#
# Needs the Release executable ($MTP, default build/bin/mtp; built here when missing) and the
# fuzzers ($FUZZ_BIN, default build-fuzz/bin). Takes a few seconds; every file is under 100 KB.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:-$ROOT/build-fuzz/seeds}
MTP=${MTP:-$ROOT/build/bin/mtp}
FUZZ_BIN=${FUZZ_BIN:-$ROOT/build-fuzz/bin}
SHARED=${MTP_SHARED_DATA:-$ROOT/../shared/data}
# the folder of fuzz_tokcache's sources (the same default as the fuzzer's)
if [[ -z ${MTP_FUZZ_TOKCACHE_DIR:-} ]]; then
    if [[ -d /dev/shm && -w /dev/shm ]]; then MTP_FUZZ_TOKCACHE_DIR=/dev/shm/mtp-fuzz-tokcache
    else MTP_FUZZ_TOKCACHE_DIR=/tmp/mtp-fuzz-tokcache; fi
fi
export MTP_FUZZ_TOKCACHE_DIR OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive

if [[ ! -x $MTP ]]; then
    echo "seeds.sh: building the Release executable ($ROOT/build)"
    cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$ROOT/build" -j2 --target mtp >/dev/null
fi
[[ -x $FUZZ_BIN/fuzz_tokcache ]] || { echo "seeds.sh: no $FUZZ_BIN/fuzz_tokcache (build the fuzzers first)"; exit 2; }

rm -rf "${OUT:?}"
mkdir -p "$OUT"/{checkpoint,tokenizer,bpe_merges,tokcache,jsonl,prompts}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

quiet() { "$@" >log.txt 2>&1 || { cat log.txt; echo "seeds.sh: failed: $*"; exit 1; }; }
TINY=(--dim 8 --layers 1 --attn-heads 2 --ffn 16 --ctx 16 --batch 2 --threads 1 --eval-every 0
    --eval-batches 1 --precision fp32 --token-cache none)

# text to learn tokenizers on, and JSONL lines: the shared data when present, else generated ones
if [[ -f $SHARED/tinyshakespeare.txt && -f $SHARED/gsm8k_train.jsonl ]]; then
    TEXT=$SHARED/tinyshakespeare.txt
    head -n 200 "$SHARED/gsm8k_train.jsonl" >gsm.jsonl
else
    TEXT=builtin:arith
    python3 - >gsm.jsonl <<'PY'
import json
for i in range(200):
    a, b = 3 * i + 1, 7 * i + 2
    print(json.dumps({"question": f"Tom has {a} apples and buys {b} more. How many now?",
                      "answer": f"He has {a} + {b} = <<{a}+{b}={a+b}>>{a+b} apples.\n#### {a+b}"}))
PY
fi

# tokenizers: tokenizer files, and their merge lists as the files hold them
quiet "$MTP" tokenize --learn bpe:300 --data "$TEXT" --out ts300.tokenizer
quiet "$MTP" tokenize --learn bpe:1024 --data gsm.jsonl --out gsm1024.tokenizer
cp ts300.tokenizer gsm1024.tokenizer "$OUT/tokenizer/"
python3 - "$OUT/bpe_merges" ts300.tokenizer gsm1024.tokenizer <<'PY'
import os, struct, sys
out = sys.argv[1]
for path in sys.argv[2:]:
    b = open(path, 'rb').read()
    i = b.index(b'\xa6merges') + 7          # the key "merges" (fixstr), then its bin
    tag = b[i]
    if tag == 0xc4: n, i = b[i + 1], i + 2
    elif tag == 0xc5: n, i = struct.unpack('>H', b[i + 1:i + 3])[0], i + 3
    elif tag == 0xc6: n, i = struct.unpack('>I', b[i + 1:i + 5])[0], i + 5
    else: sys.exit('no merges bin in ' + path)
    merges = b[i:i + n]
    name = os.path.splitext(os.path.basename(path))[0]
    open(os.path.join(out, name + '.merges'), 'wb').write(merges)
    open(os.path.join(out, name + '-first40.merges'), 'wb').write(merges[:40 * 8])
PY

# checkpoints
quiet "$MTP" train "${TINY[@]}" --data builtin:arith --heads 2 --head-type linear --steps 3 --out bytes.mtp
quiet "$MTP" calibrate --model bytes.mtp --out calibrated.mtp --limit 4 --max-tokens 16 --max-nodes 8 --threads 1 \
    --precision fp32
quiet "$MTP" train "${TINY[@]}" --data builtin:arith --tokenizer ts300.tokenizer --heads 3 --head-type transformer \
    --steps 2 --out bpe.mtp
quiet "$MTP" train "${TINY[@]}" --data gsm.jsonl --data builtin:arith:0.5 --fields question,answer --skip-bad-lines \
    --heads 1 --vocab 300 --steps 2 --out sources.mtp
cp bytes.mtp calibrated.mtp bpe.mtp sources.mtp "$OUT/checkpoint/"
cp bytes.mtp "$OUT/tokenizer/checkpoint.mtp"

# token caches of fuzz_tokcache's run: its two sources, ctx 16
mkdir -p empty
"$FUZZ_BIN/fuzz_tokcache" -runs=0 empty >log.txt 2>&1 || { cat log.txt; exit 1; }
SRC=(--data "$MTP_FUZZ_TOKCACHE_DIR/a.txt" --data "$MTP_FUZZ_TOKCACHE_DIR/b.jsonl:0.5")
quiet "$MTP" train "${TINY[@]/none/$OUT/tokcache/cache}" "${SRC[@]}" --heads 1 --steps 1 --out cache.mtp
quiet "$MTP" train "${TINY[@]/none/$OUT/tokcache/cache-skip-bad-lines}" "${SRC[@]}" --skip-bad-lines --heads 1 \
    --steps 1 --out cache2.mtp

# JSONL lines and prompts
split -l 5 -a 2 gsm.jsonl "$OUT/jsonl/gsm-"
for f in "$OUT"/jsonl/gsm-a[a-d]; do cp "$f" "$OUT/prompts/"; done
rm -f "$OUT"/jsonl/gsm-[b-z]?
[[ -f $SHARED/tinyshakespeare.txt ]] && head -n 12 "$SHARED/tinyshakespeare.txt" >"$OUT/prompts/tinyshakespeare"

n=$(find "$OUT" -type f | wc -l)
big=$(find "$OUT" -type f -size +100k | wc -l)
echo "seeds.sh: $n seed files in $OUT ($big over 100 KB)"
