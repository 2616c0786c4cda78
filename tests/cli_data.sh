#!/usr/bin/env bash
# cli_data.sh MTP_EXE SCRATCH_DIR - training data through the mtp command:
#  - JSONL sources (question/answer template, a text field, --fields, --skip-bad-lines): bad lines
#    are one-line errors naming FILE:LINE; CRLF files, blank lines and a last line without a newline
#    give the same tokens (and the same step-1 loss) as the clean LF file;
#  - tokenizers: --tokenizer bytes | bpe:N | FILE, mtp info, mtp tokenize (pieces give back the text
#    byte for byte), mtp tokenize --learn;
#  - weighted mixing of repeated --data SPEC[:WEIGHT], and resuming such a run bit for bit;
#  - the token cache at a path of its own (--token-cache FILE; train_ok gives OUT.tokens): reused,
#    rebuilt when a source changes, --token-cache none, never overwriting a file that is not a
#    cache, never left half-built by SIGKILL (the shared default folder: tests/cli_cache.sh);
#  - mtp eval --task answers, mtp eval (loss), generate and bench on such models.
# Tiny models (ctx 64) so the whole script takes seconds.
#
# Needs python3 (json, struct: standard library only).
source "$(dirname "$0")/lib_cli.sh"

# (the precision given: auto, the default, may pick either from one run to the next)
TINY=(--dim 32 --layers 1 --attn-heads 2 --ffn 64 --ctx 64 --batch 2 --heads 2 --head-type linear --threads 1
    --eval-every 0 --eval-batches 2 --precision fp32)
CONST=(--lr 3e-3 --min-lr 3e-3 --warmup 2) # a learning rate that does not depend on --steps (see cli_resume.sh)

# train_ok OUT [ARGS...]: mtp train --out OUT with the tiny model, 5 steps and the token cache
# OUT.tokens unless ARGS say otherwise
train_ok() {
    local out=$1
    shift
    local steps=(--steps 5) cache=(--token-cache "$out.tokens")
    [[ " $* " == *" --steps "* ]] && steps=()
    [[ " $* " == *" --token-cache "* ]] && cache=()
    expect_ok "$MTP" train "${TINY[@]}" "${steps[@]}" "${cache[@]}" --out "$out" "$@"
}

# json_get FILE EXPR: evaluates the python expression EXPR on j = the JSON object in FILE
json_get() {
    python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

# cache_tokens CACHE: a digest of the token part of a token cache file (after its data offset), with
# the header's checks: magic, data offset a multiple of 4096, the token count a whole number of int32
cache_tokens() {
    python3 - "$1" <<'EOF'
import hashlib, struct, sys
b = open(sys.argv[1], 'rb').read()
assert b[:8] == b'MTPTOKS1', 'bad magic'
hlen, off = struct.unpack('<II', b[8:16])
assert off % 4096 == 0 and 16 + hlen <= off <= len(b) and (len(b) - off) % 4 == 0, (hlen, off, len(b))
print(len(b) - off, hashlib.sha256(b[off:]).hexdigest())
EOF
}

# step1_loss LOG: the exact "loss" array printed for step 1 in a --log file
step1_loss() {
    python3 - "$1" <<'EOF'
import json, re, sys
for line in open(sys.argv[1]):
    if json.loads(line).get('type') == 'step' and json.loads(line)['step'] == 1:
        print(re.search(r'"loss":(\[[^\]]*\])', line).group(1))
        break
else:
    print('missing')
EOF
}

fstat() { stat -c '%i %s %y' "$1" 2>/dev/null; } # inode, size, mtime (ns): changes when a file is replaced

# ---- data files ------------------------------------------------------------------------------------

# gsm.jsonl: 200 GSM8K-like records. Names, items and verbs of the same length and two-digit numbers,
# so every question is 43 bytes: 45 tokens with its newline and BOS for a byte model, leaving 19
# tokens of a 64 context. Varied enough for bpe:300 to learn all its merges.
# words.txt: plain text (no problems in it).
python3 - <<'EOF'
import json, random
r = random.Random(1)
names = 'Ann Bea Cal Dot Eve Fay Gus Hal Ivy Jon'.split()
items = 'pens cups hats keys toys jars mugs pots'.split()
verbs = 'buys gets wins adds'.split()
with open('gsm.jsonl', 'w') as f:
    for i in range(200):
        a, b = r.randint(10, 49), r.randint(10, 49)
        n, it, v = r.choice(names), r.choice(items), r.choice(verbs)
        q = '%s has %d %s and %s %d more. How many?' % (n, a, it, v, b)
        ans = '%s had %d %s. %d + %d = %d %s in all.\n#### %d' % (n, a, it, a, b, a + b, it, a + b)
        f.write(json.dumps({'question': q, 'answer': ans}) + '\n')
w = 'the cat sat on a mat and dog ran far away'.split()
open('words.txt', 'w').write(' '.join(r.choice(w) for _ in range(6000)) + '\n')
EOF

# ---- 1. training on JSONL; tokenizers --------------------------------------------------------------

train_ok bytes.ckpt --data gsm.jsonl
check "train on a .jsonl file writes the checkpoint" test -s bytes.ckpt
check "... and reports the source" grep -q 'gsm.jsonl: ' err.txt
expect_ok "$MTP" info bytes.ckpt --json
cp out.txt bytes.info.json
check "info --json of a byte model: tokenizer bytes, vocab 259" \
    test "$(json_get bytes.info.json '(j["tokenizer"]["type"], j["tokenizer"]["vocab"], j["config"]["vocab"])')" \
    = "('bytes', 259, 259)"
expect_ok "$MTP" info bytes.ckpt
check "info (text) names the byte tokenizer" grep -q 'byte tokenizer' out.txt

train_ok bpe.ckpt --data gsm.jsonl --tokenizer bpe:300
check "train --tokenizer bpe:300 says it learned a tokenizer" grep -q 'learned a BPE tokenizer of 300 tokens' err.txt
expect_ok "$MTP" info bpe.ckpt --json
cp out.txt bpe.info.json
check "info --json of a bpe:300 model: tokenizer bpe with vocab 303 (N + 3), config vocab >= 303" python3 -c '
import json, sys
j = json.load(open("bpe.info.json"))
t, c = j["tokenizer"], j["config"]
assert t["type"] == "bpe" and t["vocab"] == 303 and c["vocab"] >= 303, j
assert j["params"]["embedding"] == c["vocab"] * c["dim"], j
'
expect_ok "$MTP" info bpe.ckpt
check "info (text) names the BPE tokenizer" grep -q 'BPE tokenizer of 300 tokens' out.txt
# bad --tokenizer values: refused before any work with one line (status 1 today, where tokenize
# --learn gives 2 for the same value: either is accepted)
for t in bpe:100 bpe:256 bpe:70000 bpe:x bpe: bpe:300x; do
    expect_fail 1,2 "--tokenizer $t: the vocabulary must be bpe:N with N from 257 to 65536" \
        "$MTP" train "${TINY[@]}" --steps 2 --data gsm.jsonl --out badtok.ckpt --tokenizer "$t"
done
expect_fail 1 "no-such.tok" "$MTP" train "${TINY[@]}" --steps 2 --data gsm.jsonl --out badtok.ckpt --tokenizer no-such.tok
expect_fail 1 "not a tokenizer file or checkpoint" "$MTP" train "${TINY[@]}" --steps 2 --data gsm.jsonl \
    --out badtok.ckpt --tokenizer gsm.jsonl
expect_fail 2 "--tokenizer needs a non-empty value" "$MTP" train "${TINY[@]}" --data gsm.jsonl --out badtok.ckpt --tokenizer ""
check "no checkpoint and no cache from refused tokenizers" test ! -e badtok.ckpt -a ! -e badtok.ckpt.tokens

# ---- 2. mtp tokenize ---------------------------------------------------------------------------------

TEXT='Ann has 12 pens and buys 34 more.'
expect_ok "$MTP" tokenize --model bpe.ckpt --text "$TEXT"
cp out.txt tok.bpe.txt
check "tokenize: the summary line counts bytes and tokens (BPE, vocabulary 303)" \
    grep -qE "^${#TEXT} bytes, [0-9]+ tokens, [0-9.]+ bytes per token \(BPE tokenizer, vocabulary 303\)$" tok.bpe.txt
NTOK=$(sed -nE 's/^[0-9]+ bytes, ([0-9]+) tokens.*/\1/p' tok.bpe.txt)
check "tokenize: one line per token before the summary" test "$(grep -cE '^ *[0-9]+  "' tok.bpe.txt)" = "$NTOK"
check "tokenize: BPE merges (fewer tokens than bytes)" test "$NTOK" -lt "${#TEXT}"

# pieces_equal JSON FILE: the JSON's pieces, each code point one byte, concatenate to FILE's bytes;
# the token count and the "bytes" field agree
pieces_equal() {
    python3 - "$1" "$2" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
want = open(sys.argv[2], 'rb').read()
got = ''.join(j['pieces']).encode('latin-1')
assert got == want, (got, want)
assert len(j['tokens']) == len(j['pieces']) and j['bytes'] == len(want), j
assert all(isinstance(t, int) and 0 <= t for t in j['tokens']), j
EOF
}
# texts with bytes >= 0x80 (valid and invalid UTF-8), control bytes, quotes and backslashes
T1=$'Ann has 12 pens.\n#### 12'
T2=$'caf\xc3\xa9 \xff\xfe\x80 \x01\x02\x1b[0m \x7f\t"quoted" back\\slash\r\nend'
T3=$'\xe2\x82\xac\xf0\x9f\x98\x80 pens  \x0b\x0c'
i=0
for model in bytes.ckpt bpe.ckpt; do
    for t in "$T1" "$T2" "$T3"; do
        i=$((i + 1))
        printf '%s' "$t" >text.$i
        run "$MTP" tokenize --model $model --text "$t" --json
        cp out.txt tok.$i.json
        if [[ $RC -eq 0 ]] && pieces_equal tok.$i.json text.$i 2>pe.err; then pass; else
            fail "tokenize --json --model $model: the pieces are not the text (text $i)"
            show
            tail -2 pe.err | sed 's/^/      | /'
        fi
        run "$MTP" tokenize --model $model --file text.$i --json
        check "tokenize --file gives the same JSON as --text ($model, text $i)" cmp -s out.txt tok.$i.json
    done
done
check "the byte tokenizer: one token per byte" test "$(json_get tok.2.json 'j["tokens"] == list(open("text.2","rb").read())')" = True
printf 'a\0b\0\xff' >nul.bin # NUL bytes can only come from a file
run "$MTP" tokenize --model bpe.ckpt --file nul.bin --json
cp out.txt nul.json
if [[ $RC -eq 0 ]] && pieces_equal nul.json nul.bin 2>/dev/null; then pass; else
    fail "tokenize --file with NUL bytes"
    show
fi

# --learn, then train with the tokenizer file
expect_ok "$MTP" tokenize --learn bpe:300 --data gsm.jsonl --out tok.file
check "tokenize --learn writes the tokenizer file" test -s tok.file
check "... and says so on stderr, nothing on stdout" test ! -s out.txt -a -s err.txt
train_ok bpefile.ckpt --data gsm.jsonl --tokenizer tok.file
expect_ok "$MTP" info bpefile.ckpt --json
check "a model trained with --tokenizer FILE has it (bpe, vocab 303)" \
    test "$(json_get out.txt '(j["tokenizer"]["type"], j["tokenizer"]["vocab"])')" = "('bpe', 303)"
for t in "$TEXT" "$T2"; do
    "$MTP" tokenize --model bpefile.ckpt --text "$t" >tk.model.txt 2>&1
    "$MTP" tokenize --tokenizer tok.file --text "$t" >tk.file.txt 2>&1
    check "tokenize --model (trained with tok.file) == tokenize --tokenizer tok.file" cmp -s tk.model.txt tk.file.txt
done
check "--learn bpe:300 learns the tokenizer train --tokenizer bpe:300 learns (same checkpoint)" cmp -s bpe.ckpt bpefile.ckpt
"$MTP" tokenize --tokenizer bpe.ckpt --text "$TEXT" >tk.ckpt.txt 2>&1
check "tokenize --tokenizer accepts a checkpoint" cmp -s tk.ckpt.txt tok.bpe.txt
expect_fail 2 "give one of --model FILE or --tokenizer FILE" "$MTP" tokenize --model bpe.ckpt --tokenizer tok.file --text x
expect_fail 2 "give one of --model FILE or --tokenizer FILE" "$MTP" tokenize --text x
expect_fail 2 "give one of --text T or --file F" "$MTP" tokenize --model bpe.ckpt
expect_fail 2 "give one of --text T or --file F" "$MTP" tokenize --model bpe.ckpt --text x --file nul.bin
expect_fail 1 "not a tokenizer file or checkpoint" "$MTP" tokenize --tokenizer gsm.jsonl --text x
expect_fail 1 "no-such.ckpt" "$MTP" tokenize --model no-such.ckpt --text x
expect_fail 1,2 "with N from 257 to 65536" "$MTP" tokenize --learn bpe:100 --data gsm.jsonl --out t2.file
check "no tokenizer file from a refused --learn" test ! -e t2.file

# ---- 3. malformed JSONL, CRLF, blank lines, a last line without newline --------------------------

awk 'NR == 7 { print "{\"question\": \"broken"; next } { print }' gsm.jsonl >bad.jsonl
expect_fail 1 "bad.jsonl:7: byte 21: unterminated string" "$MTP" train "${TINY[@]}" --data bad.jsonl --out bad.ckpt
check "no checkpoint from a bad line" test ! -e bad.ckpt
train_ok bad.ckpt --data bad.jsonl --skip-bad-lines
check "--skip-bad-lines: the first stderr line counts the skipped line" \
    grep -q 'bad.jsonl: .*, 1 bad lines skipped |' <(head -n 1 err.txt)
awk 'NR == 9 { print "{\"question\": \"only a question\"}"; next } { print }' gsm.jsonl >miss.jsonl
expect_fail 1 "miss.jsonl:9: no \"question\"/\"answer\" pair and no \"text\" field" \
    "$MTP" train "${TINY[@]}" --data miss.jsonl --out miss.ckpt
awk 'NR == 12 { print "[1, 2]"; next } { print }' gsm.jsonl >arr.jsonl
expect_fail 1 "arr.jsonl:12:" "$MTP" train "${TINY[@]}" --data arr.jsonl --out arr.ckpt
head -c -2 gsm.jsonl >cut.jsonl # the last line loses its '}' and newline: malformed
expect_fail 1 "cut.jsonl:200:" "$MTP" train "${TINY[@]}" --data cut.jsonl --out cut.ckpt
check "no checkpoints from bad JSONL" test ! -e miss.ckpt -a ! -e arr.ckpt -a ! -e cut.ckpt

# the same records as CRLF, with blank lines at the start (not counted as bad; the validation split,
# the last round(0.1 * lines) lines, stays the same 20 records), and without the final newline
sed 's/$/\r/' gsm.jsonl >crlf.jsonl
{ printf '   \n\t\r\n'; cat gsm.jsonl; } >blank.jsonl
head -c -1 gsm.jsonl >nonl.jsonl
check "the CRLF file has CRLF" test "$(grep -c $'\r$' crlf.jsonl)" = 200
rm -f lf.log
train_ok lf.ckpt --data gsm.jsonl --log lf.log
LF_TOKENS=$(cache_tokens lf.ckpt.tokens)
LF_LOSS=$(step1_loss lf.log)
for v in crlf blank nonl; do
    rm -f $v.log
    train_ok $v.ckpt --data $v.jsonl --log $v.log
    check "$v: no bad lines reported" test "$(grep -c 'bad lines' err.txt)" = 0
    check "$v: the same tokens as the LF file (token cache)" test "$(cache_tokens $v.ckpt.tokens)" = "$LF_TOKENS"
    L=$(step1_loss $v.log)
    if [[ $L != missing && $L == "$LF_LOSS" ]]; then pass; else fail "$v: step 1 loss $L, LF file: $LF_LOSS"; fi
done

# --fields: other field names, and a single text field, give the same tokens
python3 - <<'EOF'
import json
recs = [json.loads(l) for l in open('gsm.jsonl')]
with open('qa.jsonl', 'w') as f:
    for d in recs: f.write(json.dumps({'id': 1, 'q': d['question'], 'a': d['answer']}) + '\n')
with open('text.jsonl', 'w') as f:
    for d in recs: f.write(json.dumps({'text': d['question'] + '\n' + d['answer'] + '\n'}) + '\n')
with open('body.jsonl', 'w') as f:
    for d in recs: f.write(json.dumps({'body': d['question'] + '\n' + d['answer'] + '\n', 'n': [1, {}]}) + '\n')
EOF
train_ok qa.ckpt --data qa.jsonl --fields q,a
check "--fields q,a: the same tokens as question/answer" test "$(cache_tokens qa.ckpt.tokens)" = "$LF_TOKENS"
train_ok text.ckpt --data text.jsonl
check "a \"text\" field: the same tokens as the question/answer template" test "$(cache_tokens text.ckpt.tokens)" = "$LF_TOKENS"
train_ok body.ckpt --data body.jsonl --fields body
check "--fields body: the same tokens" test "$(cache_tokens body.ckpt.tokens)" = "$LF_TOKENS"
expect_fail 1 "qa.jsonl:1: no \"question\"/\"answer\" pair" "$MTP" train "${TINY[@]}" --data qa.jsonl --out qa2.ckpt
expect_fail 2 "--fields must be QUESTION,ANSWER or TEXT" "$MTP" train "${TINY[@]}" --data qa.jsonl --out qa2.ckpt --fields q,a,b
expect_fail 2 "--fields must be QUESTION,ANSWER or TEXT" "$MTP" train "${TINY[@]}" --data qa.jsonl --out qa2.ckpt --fields ,a

# ---- 4. weighted mixing, and resuming it ---------------------------------------------------------

train_ok mix.ckpt --data words.txt:0.7 --data builtin:arith:0.3 --token-cache none
check "two weighted sources: reported with their shares" grep -q '2 sources (words.txt 70%, builtin:arith 30%)' err.txt
for w in 0 -1 nan inf 1e999; do
    expect_fail 2 "--data words.txt:$w: the weight must be a number > 0" \
        "$MTP" train "${TINY[@]}" --data words.txt:$w --out w.ckpt
done
expect_fail 1 "words.txt is given twice as a data source" \
    "$MTP" train "${TINY[@]}" --data words.txt --data words.txt:2 --out w.ckpt
expect_fail 1 "builtin:arith is given twice as a data source" \
    "$MTP" train "${TINY[@]}" --data builtin:arith:1 --data gsm.jsonl --data builtin:arith:2 --out w.ckpt
check "no checkpoint from refused --data" test ! -e w.ckpt
expect_fail 1 "is given twice as a data source" "$MTP" train "${TINY[@]}" --data words.txt --data ./words.txt --out w.ckpt

# 8 steps straight == 4 steps, then --resume to 8, with 2 sources and a BPE tokenizer
MIX=(--data gsm.jsonl:0.6 --data words.txt:0.4 --tokenizer bpe:300)
rm -f r8.log r4.log
train_ok r8.ckpt "${MIX[@]}" "${CONST[@]}" --steps 8 --log r8.log
train_ok r4.ckpt "${MIX[@]}" "${CONST[@]}" --steps 4 --log r4.log
cp r4.ckpt r4b.ckpt
expect_ok "$MTP" train --resume r4.ckpt --threads 1 --eval-every 0 --steps 8 --log r4.log
check "resume (2 sources, bpe): says so" grep -q 'resuming r4.ckpt at step 4 of 8' err.txt
check "resume (2 sources, bpe): byte-identical to 8 straight" cmp r8.ckpt r4.ckpt
losses r8.log 1 8 >r8.losses
losses r4.log 1 8 >r4.losses
if ! grep -q missing r8.losses && cmp -s r8.losses r4.losses; then pass; else
    fail "resume (2 sources, bpe): per-step losses differ"
    diff r8.losses r4.losses | head -6 | sed 's/^/      | /'
fi
# without its token cache (rebuilt from the sources with the saved tokenizer), and with none
rm -f r4b.ckpt.tokens
expect_ok "$MTP" train --resume r4b.ckpt --threads 1 --eval-every 0 --steps 8 --token-cache none
check "resume without the token cache (--token-cache none): byte-identical" cmp r8.ckpt r4b.ckpt
check "... and no cache file written" test ! -e r4b.ckpt.tokens
# the same --tokenizer as saved is accepted (the same command again with --resume added); another is
# refused, naming the saved one
cp r8.ckpt r9.ckpt
expect_ok "$MTP" train --resume r9.ckpt --threads 1 --eval-every 0 --steps 9 --tokenizer bpe:300
expect_fail 2 "--tokenizer bpe:400 differs from the run being resumed (a BPE of 300 tokens)" "$MTP" train --resume r8.ckpt --steps 9 --tokenizer bpe:400
expect_fail 2 "--tokenizer bytes differs from the run being resumed (a BPE of 300 tokens)" "$MTP" train --resume r8.ckpt --steps 9 --tokenizer bytes

# ---- 5. the token cache ------------------------------------------------------------------------------

cp words.txt tc.txt
train_ok tc.ckpt --data tc.txt
check "the cache OUT.tokens is created" test -f tc.ckpt.tokens
check "... and starts with MTPTOKS1" test "$(head -c 8 tc.ckpt.tokens)" = MTPTOKS1
check "... and is well-formed" eval 'cache_tokens tc.ckpt.tokens >/dev/null'
S0=$(fstat tc.ckpt.tokens)
sleep 0.05
train_ok tc.ckpt --data tc.txt
check "a second run reuses the cache (not rewritten)" test "$(fstat tc.ckpt.tokens)" = "$S0"
echo "the cat ran far away" >>tc.txt
train_ok tc.ckpt --data tc.txt
S1=$(fstat tc.ckpt.tokens)
check "appending to the source rebuilds the cache" test "$S1" != "$S0"
check "... to the new size" test "$(stat -c %s tc.ckpt.tokens)" -gt "$(echo "$S0" | cut -d' ' -f2)"
check "... and the run reports the new source size" grep -q "tc.txt: $(stat -c %s tc.txt) bytes" err.txt
touch -d '2001-01-01' tc.txt
train_ok tc.ckpt --data tc.txt
S2=$(fstat tc.ckpt.tokens)
check "touching the source (same bytes, other mtime) rebuilds the cache" test "$S2" != "$S1"
train_ok tc.ckpt --data tc.txt --tokenizer tok.file
check "another tokenizer rebuilds the cache" test "$(fstat tc.ckpt.tokens)" != "$S2"
check "no temp files left behind" no_temp_files

ls >before.ls
train_ok none.ckpt --data tc.txt --token-cache none
ls >after.ls
check "--token-cache none: no cache file" test ! -e none.ckpt.tokens
check "--token-cache none: no file but the checkpoint" test "$(comm -13 before.ls after.ls | tr '\n' ' ')" = "after.ls none.ckpt "
train_ok own.ckpt --data tc.txt --token-cache own.cache
check "--token-cache FILE: written there, not to OUT.tokens" test -f own.cache -a ! -e own.ckpt.tokens

echo "not a cache, keep me" >notcache.bin
cp notcache.bin notcache.bak
expect_fail 1 "token cache notcache.bin exists and is not a token cache" \
    "$MTP" train "${TINY[@]}" --data tc.txt --out nc.ckpt --token-cache notcache.bin
check "... and the file is unchanged" cmp notcache.bin notcache.bak
cp tc.txt tc.bak
expect_fail 1 "is not a token cache" "$MTP" train "${TINY[@]}" --data tc.txt --out nc.ckpt --token-cache tc.txt
check "a --token-cache that is the data file itself is left unchanged" cmp tc.txt tc.bak
: >emptycache.bin
expect_fail 1 "is not a token cache" "$MTP" train "${TINY[@]}" --data tc.txt --out nc.ckpt --token-cache emptycache.bin
check "no checkpoint from a refused cache" test ! -e nc.ckpt
mkdir -p cdir
expect_fail 1 "token cache cdir: not a regular file" "$MTP" train "${TINY[@]}" --data tc.txt --out nc.ckpt --token-cache cdir
# a cache cut short (right magic, wrong size) is stale, rebuilt
head -c 100 tc.ckpt.tokens >short.cache
train_ok sc.ckpt --data tc.txt --token-cache short.cache
check "a truncated cache is rebuilt" test "$(cache_tokens short.cache)" = "$(cache_tokens own.cache)"

# --token-cache may not name the checkpoint itself: the save would overwrite the cache
expect_fail 2 "is the checkpoint's own path" "$MTP" train "${TINY[@]}" --steps 2 --data tc.txt --out same.ckpt --token-cache same.ckpt
check "... refused before anything is written" test ! -e same.ckpt

# SIGKILL while the cache is being built: never a OUT.tokens, at most a temp file. 20 MB of random
# text with a BPE tokenizer takes about half a second to encode; the kill lands once the temp file
# has data in it.
python3 -c '
import os
tab = bytes((b"abcdefghijklmnopqrstuvwxyz  0123456789 .,\n" * 7)[:256])
with open("big.txt", "wb") as f:
    for i in range(20): f.write(os.urandom(1 << 20).translate(tab))
'
"$MTP" train "${TINY[@]}" --steps 1 --data big.txt --tokenizer tok.file --out kill.ckpt --token-cache kill.ckpt.tokens \
    >kill.out 2>kill.err &
PID=$!
TMP=
for ((i = 0; i < 4000; i++)); do # up to 20 s
    TMP=$(compgen -G 'kill.ckpt.tokens.tmp.*' | head -n 1)
    [[ -n $TMP && -s $TMP ]] && break
    kill -0 $PID 2>/dev/null || break
    sleep 0.005
done
kill -KILL $PID 2>/dev/null
wait $PID 2>/dev/null
if [[ -n $TMP && -e $TMP ]]; then # killed before the rename
    pass
    check "SIGKILL mid-build: no kill.ckpt.tokens" test ! -e kill.ckpt.tokens
    check "SIGKILL mid-build: no checkpoint" test ! -e kill.ckpt
    rm -f kill.ckpt.tokens.tmp.*
    train_ok kill.ckpt --steps 1 --data big.txt --tokenizer tok.file
    check "after the kill, a new run builds a good cache" eval 'cache_tokens kill.ckpt.tokens >/dev/null'
else
    fail "SIGKILL mid-build: could not kill the run while it built the cache (temp file '$TMP')"
fi
rm -f big.txt kill.ckpt.tokens kill.ckpt.tokens.tmp.*

# ---- 6. eval --task answers ------------------------------------------------------------------------

KEYS='problems correct accuracy no_answer hit_context skipped mean_chain_tokens mean_chain_bytes lookahead
    tokens_per_s tokens_per_forward baseline_tokens_per_s speedup identical'
# answers_json FILE PROBLEMS LOOKAHEAD: one JSON object on one line with the documented keys
answers_json() {
    python3 - "$@" "$KEYS" <<'EOF'
import json, math, sys
path, n, k, keys = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split()
text = open(path).read()
assert text.count('\n') == 1 and text.endswith('\n'), 'not one line'
def bad_const(s): raise ValueError('not JSON: ' + s)
j = json.loads(text, parse_constant=bad_const)
assert set(keys) <= set(j), set(keys) - set(j)
assert j['problems'] == n and j['identical'] == n and j['lookahead'] == k, j
assert 0 <= j['accuracy'] <= 1 and 0 <= j['correct'] <= j['problems'], j
assert j['correct'] + j['no_answer'] <= j['problems'], j
assert abs(j['accuracy'] - j['correct'] / j['problems']) < 1e-6, j
assert j['hit_context'] <= j['problems'] and j['skipped'] >= 0, j
for key in ('mean_chain_tokens', 'mean_chain_bytes', 'tokens_per_s', 'baseline_tokens_per_s', 'speedup',
            'tokens_per_forward'):
    assert isinstance(j[key], (int, float)) and math.isfinite(j[key]) and j[key] > 0, (key, j)
if k == 1:
    assert j['speedup'] == 1 and j['baseline_tokens_per_s'] == j['tokens_per_s'], j
EOF
}
for model in bytes.ckpt bpe.ckpt; do
    run "$MTP" eval --task answers --model $model --data gsm.jsonl --limit 5 --json --threads 1
    cp out.txt ans.json
    if [[ $RC -eq 0 ]] && answers_json ans.json 5 2 2>aj.err; then pass; else
        fail "eval --task answers --limit 5 --json ($model): $(cat ans.json) $(tail -n 1 aj.err)"
        show
    fi
    check "eval --task answers --json: nothing on stderr ($model)" test ! -s err.txt
    run "$MTP" eval --task answers --model $model --data gsm.jsonl --limit 5 --lookahead 1 --json --threads 1
    cp out.txt ans1.json
    if [[ $RC -eq 0 ]] && answers_json ans1.json 5 1 2>aj.err; then pass; else
        fail "eval --task answers --lookahead 1 ($model): $(cat ans1.json) $(tail -n 1 aj.err)"
        show
    fi
done
# all held-out problems (the last 20 of 200 lines), and the data defaults to the training data
run "$MTP" eval --task answers --model bpe.ckpt --json --threads 1
cp out.txt ansall.json
if [[ $RC -eq 0 ]] && answers_json ansall.json 20 2 2>aj.err; then pass; else
    fail "eval --task answers without --data or --limit: 20 problems: $(cat ansall.json) $(tail -n 1 aj.err)"
fi
expect_ok "$MTP" eval --task answers --model bpe.ckpt --limit 3 --threads 1
check "eval --task answers (text): the report" grep -q '^accuracy ' out.txt
check "... with the speedup line" grep -q '^speedup .*identical for 3 of 3 problems' out.txt
expect_ok "$MTP" eval --task answers --model qa.ckpt --limit 2 --json --threads 1
check "eval --task answers on a --fields q,a model: its fields by default" answers_json out.txt 2 2

train_ok arith.ckpt --data builtin:arith --token-cache none
run "$MTP" eval --task answers --model arith.ckpt --data builtin:arith --limit 3 --json --threads 1
cp out.txt ansar.json
if [[ $RC -eq 0 ]] && answers_json ansar.json 3 2 2>aj.err; then pass; else
    fail "eval --task answers --data builtin:arith --limit 3: $(cat ansar.json) $(tail -n 1 aj.err)"
    show
fi
expect_fail 1 "words.txt has no held-out problems" \
    "$MTP" eval --task answers --model bytes.ckpt --data words.txt --limit 5 --threads 1
expect_fail 2 "--lookahead 3 is more than the model's 2 heads" \
    "$MTP" eval --task answers --model bytes.ckpt --data gsm.jsonl --lookahead 3
expect_fail 2 "--lookahead must be between" "$MTP" eval --task answers --model bytes.ckpt --lookahead 0
expect_fail 2 "--limit must be between" "$MTP" eval --task answers --model bytes.ckpt --limit -1
expect_fail 2 "--task must be loss or answers" "$MTP" eval --task foo --model bytes.ckpt

# a model that never ends an example (trained on plain text, no EOS) decodes every chain until the
# context is full: 45 prompt tokens (BOS, 43 bytes, newline) + 19 = 64
train_ok words.ckpt --data words.txt --steps 30 "${CONST[@]}"
run "$MTP" eval --task answers --model words.ckpt --data gsm.jsonl --limit 4 --json --threads 1
cp out.txt answ.json
# (19 or 20: whether the token predicted at the last position is emitted too, as generate does)
check "eval --task answers, a text model: every chain runs to the end of the context (19 or 20 tokens)" \
    test "$(json_get answ.json '(j["problems"], j["mean_chain_tokens"] in (19, 20), j["no_answer"])')" = "(4, True, 4)"
check "eval --task answers: hit_context counts the chains that filled the context (4 of 4)" \
    test "$(json_get answ.json 'j["hit_context"]')" = 4
# at --lookahead 1 (plain decoding, one token per pass) tokens per forward is 1, as mtp bench counts it
run "$MTP" eval --task answers --model words.ckpt --data gsm.jsonl --limit 4 --lookahead 1 --json --threads 1
check "eval --task answers --lookahead 1: tokens_per_forward >= 1 (got $(json_get out.txt 'j["tokens_per_forward"]'))" \
    test "$(json_get out.txt 'j["tokens_per_forward"] >= 1')" = True

# ---- 7. eval (loss) and generate on BPE and JSONL models -------------------------------------------

# eval_losses FILE HEADS: eval --json with finite positive losses for every head
eval_losses() {
    python3 - "$1" "$2" <<'EOF'
import json, math, sys
j = json.load(open(sys.argv[1]))
assert [h['head'] for h in j['heads']] == list(range(1, int(sys.argv[2]) + 1)), j
assert j['tokens'] > 0, j
for h in j['heads']:
    assert math.isfinite(h['loss']) and h['loss'] > 0 and 0 <= h['accuracy'] <= 1, h
EOF
}
for model in bpe.ckpt bytes.ckpt mix.ckpt r8.ckpt; do
    run "$MTP" eval --model $model --batches 2 --json --threads 1
    cp out.txt ev.json
    if [[ $RC -eq 0 ]] && eval_losses ev.json 2 2>/dev/null; then pass; else
        fail "eval --json on $model: $(cat ev.json)"
        show
    fi
done
expect_ok "$MTP" eval --model bpe.ckpt --batches 2 --threads 1
check "eval (text) on a BPE model prints a loss per head" test "$(grep -cE '^ +[12] +t\+[12] +[0-9.]+ ' out.txt)" = 2
expect_ok "$MTP" eval --model bpe.ckpt --data gsm.jsonl --batches 2 --json --threads 1
cp out.txt ev1.json
expect_ok "$MTP" eval --model bpe.ckpt --batches 2 --json --threads 1
check "eval: the default data is the training data" cmp -s out.txt ev1.json
expect_fail 1 "gsm.jsonl:1: no \"q\"/\"a\" pair" "$MTP" eval --model qa.ckpt --data gsm.jsonl --threads 1

for model in bpe.ckpt bytes.ckpt; do
    run "$MTP" generate --model $model --prompt "Ann has 12 pens and buys 34 more. How many?" --max-tokens 10 --threads 1
    check "generate with $model: status 0" test "$RC" -eq 0
    check "generate with $model: prints something" test -s out.txt
done
for K in 1 2; do
    "$MTP" generate --model bpe.ckpt --prompt "Ann has 12 pens" --lookahead $K --max-tokens 10 --threads 1 \
        --precision fp32 >gen.$K.txt 2>/dev/null
done
check "generate on a BPE model: --lookahead 2 gives the --lookahead 1 output" cmp -s gen.1.txt gen.2.txt
run "$MTP" generate --model bpe.ckpt --prompt "$T2" --max-tokens 5 --threads 1
check "generate on a BPE model with a non-UTF-8 prompt" test "$RC" -eq 0

# ---- 8. bench on a JSONL + BPE model (prompts: the held-out questions) -----------------------------

run "$MTP" bench --model bpe.ckpt --max-tokens 16 --repeats 1 --threads 1 --precision fp32 --json bench.json
check "bench on a JSONL bpe model: status 0" test "$RC" -eq 0
check "bench: 16 prompts from the model's source" grep -q 'bpe.ckpt, 16 prompts' err.txt
check "bench --json: lookaheads 1 and 2, identical outputs" python3 -c '
import json
runs = json.load(open("bench.json"))["runs"]
assert [r["lookahead"] for r in runs] == [1, 2], runs
assert all(r["identical"] is True and r["tokens_per_s"] > 0 for r in runs), runs
assert runs[0]["speedup"] == 1.0, runs
'

echo "cli_data: $PASS passed, $FAIL failed"
[[ $FAIL -eq 0 ]]
