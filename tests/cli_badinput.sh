#!/usr/bin/env bash
# cli_badinput.sh MTP_EXE SCRATCH_DIR - the mtp command on bad command lines, bad data and bad
# model files: every failure must be a clean exit (status 1 or 2, never a signal) with a one-line
# error on stderr, and an existing --out checkpoint must survive every failed run byte for byte.
# Also: --help, and the JSON of `mtp info --json` and `mtp eval --json`.
#
# Needs python3 (json, struct, zlib: standard library only) to check JSON and to find tensor data
# inside a checkpoint.
source "$(dirname "$0")/lib_cli.sh"

# The tiny model used everywhere; flags_without drops some of them so a case can set its own. The
# precision is given: auto (the default) may pick either from one run to the next.
BASE=(--dim 32 --layers 1 --attn-heads 2 --ffn 64 --ctx 16 --batch 2 --heads 2 --threads 1 --eval-every 0
    --eval-batches 2 --precision fp32)
flags_without() {
    local skip=" $* " i
    FLAGS=()
    for ((i = 0; i < ${#BASE[@]}; i += 2)); do
        [[ $skip == *" ${BASE[i]} "* ]] || FLAGS+=("${BASE[i]}" "${BASE[i + 1]}")
    done
}
flags_without

# expect_fail_late STATUS SUBSTRING CMD...: for failures after training started (progress lines
# come first): STATUS, exactly one "error:" line, the last one, containing SUBSTRING.
expect_fail_late() {
    local want=$1 sub=$2
    shift 2
    CMD="$*"
    run "$@"
    local errs
    errs=$(grep -c 'error:' err.txt)
    if [[ $RC -ge 128 && $RC -ne 130 ]]; then
        fail "killed by a signal ($((RC - 128))): $CMD"
        show
    elif [[ $RC -ne $want ]]; then
        fail "status $RC, expected $want: $CMD"
        show
    elif [[ $errs -ne 1 ]] || ! tail -n 1 err.txt | grep -q 'error:'; then
        fail "expected one error line, the last: $CMD"
        show
    elif ! tail -n 1 err.txt | grep -qF -- "$sub"; then
        fail "error line lacks '$sub': $CMD"
        show
    else
        pass
    fi
}

# expect_help CMD...: status 0, usage on stdout, nothing on stderr
expect_help() {
    CMD="$*"
    run "$@"
    if [[ $RC -ne 0 ]] || ! grep -q '^usage: mtp' out.txt || [[ -s err.txt ]]; then
        fail "help: $CMD"
        show
    else
        pass
    fi
}



cat >ckpt.py <<'EOF'
# A small msgpack walker for mtp checkpoints (no msgpack module needed).
import json, math, struct, sys, zlib

def parse(b, i):
    t = b[i]
    if t <= 0x7f: return ('uint', t, i, i + 1), i + 1
    if t >= 0xe0: return t - 256, i + 1
    if 0x80 <= t <= 0x8f: return parse_map(b, i + 1, t & 0x0f)
    if 0x90 <= t <= 0x9f: return parse_arr(b, i + 1, t & 0x0f)
    if 0xa0 <= t <= 0xbf: n = t & 0x1f; return b[i + 1:i + 1 + n].decode(), i + 1 + n
    if t == 0xc0: return None, i + 1
    if t in (0xc2, 0xc3): return t == 0xc3, i + 1
    if t in (0xc4, 0xc5, 0xc6):
        w = {0xc4: 1, 0xc5: 2, 0xc6: 4}[t]
        n = int.from_bytes(b[i + 1:i + 1 + w], 'big'); s = i + 1 + w
        return ('bin', s, s + n), s + n
    if t == 0xca: return struct.unpack('>f', b[i + 1:i + 5])[0], i + 5
    if t == 0xcb: return struct.unpack('>d', b[i + 1:i + 9])[0], i + 9
    if t in (0xcc, 0xcd, 0xce, 0xcf):
        w = {0xcc: 1, 0xcd: 2, 0xce: 4, 0xcf: 8}[t]
        return ('uint', int.from_bytes(b[i + 1:i + 1 + w], 'big'), i + 1, i + 1 + w), i + 1 + w
    if t in (0xd0, 0xd1, 0xd2, 0xd3):
        w = {0xd0: 1, 0xd1: 2, 0xd2: 4, 0xd3: 8}[t]
        return int.from_bytes(b[i + 1:i + 1 + w], 'big', signed=True), i + 1 + w
    if t in (0xd9, 0xda, 0xdb):
        w = {0xd9: 1, 0xda: 2, 0xdb: 4}[t]
        n = int.from_bytes(b[i + 1:i + 1 + w], 'big'); s = i + 1 + w
        return b[s:s + n].decode(), s + n
    if t in (0xdc, 0xdd):
        w = 2 if t == 0xdc else 4
        return parse_arr(b, i + 1 + w, int.from_bytes(b[i + 1:i + 1 + w], 'big'))
    if t in (0xde, 0xdf):
        w = 2 if t == 0xde else 4
        return parse_map(b, i + 1 + w, int.from_bytes(b[i + 1:i + 1 + w], 'big'))
    raise ValueError('unsupported msgpack byte 0x%02x at %d' % (t, i))

def parse_arr(b, i, n):
    out = []
    for _ in range(n):
        v, i = parse(b, i); out.append(v)
    return out, i

def parse_map(b, i, n):
    out = {}
    for _ in range(n):
        k, i = parse(b, i); v, i = parse(b, i); out[k] = v
    return out, i

def tensors(root):
    for t in root['tensors']: yield t

cmd, path = sys.argv[1], sys.argv[2]
if cmd in ('json', 'jsonl'):  # every line of the file parses as JSON (no NaN / Infinity either)
    def bad_const(s): raise ValueError('not JSON: ' + s)
    for line in open(path):
        json.loads(line, parse_constant=bad_const)
    sys.exit(0)
b = bytearray(open(path, 'rb').read())
root, end = parse(b, 0)
assert end == len(b), 'trailing bytes'
if cmd == 'flip':          # flip the byte in the middle of the data of tensor argv[3] into argv[4]
    t = [t for t in tensors(root) if t['name'] == sys.argv[3]][0]
    s, e = t['data'][1], t['data'][2]
    b[(s + e) // 2] ^= 0x55
    open(sys.argv[4], 'wb').write(b)
elif cmd == 'nonfinite':   # number of non-finite floats among the weights
    n = 0
    for t in tensors(root):
        s, e = t['data'][1], t['data'][2]
        n += sum(1 for (x,) in struct.iter_unpack('<f', bytes(b[s:e])) if not math.isfinite(x))
    print(n)
elif cmd == 'poison':      # copy into argv[3] with the first tensor's weights NaN and its checksum fixed
    t = next(tensors(root))
    s, e = t['data'][1], t['data'][2]
    _, old, cs, ce = t['crc32']
    for payload in range(1, 1 << 16):
        data = struct.pack('<I', 0x7fc00000 | payload) * ((e - s) // 4)
        crc = zlib.crc32(data)
        if ce - cs == 4 and crc >= 1 << 16: break  # keeps the uint32 encoding of the old checksum
    else:
        sys.exit('cannot patch the checksum')
    b[s:e] = data
    b[cs:ce] = crc.to_bytes(4, 'big')
    open(sys.argv[3], 'wb').write(b)
EOF
PY=("$PYTHON" "$DIR/ckpt.py")

# ---- command line --------------------------------------------------------------------------------

CMD="mtp (no arguments)"
run "$MTP"
if [[ $RC -ne 2 ]] || ! grep -q '^usage: mtp' err.txt || [[ -s out.txt ]]; then
    fail "mtp with no arguments: expected status 2 and usage on stderr"
    show
else pass; fi

expect_fail 2 "unknown command 'frobnicate'" "$MTP" frobnicate
expect_fail 2 "unknown command" "$MTP" --dim 32
expect_fail 2 "unknown option '--bogus'" "$MTP" train --data builtin:arith --out x.ckpt "${FLAGS[@]}" --bogus
expect_fail 2 "unknown option '--bogus'" "$MTP" eval --model x.ckpt --bogus
expect_fail 2 "unknown option '--bogus'" "$MTP" info x.ckpt --bogus
expect_fail 2 "--json takes no value" "$MTP" info x.ckpt --json=1
expect_fail 2 "unexpected argument 'y.ckpt'" "$MTP" info x.ckpt y.ckpt
expect_fail 2 "unexpected argument" "$MTP" train --data builtin:arith --out x.ckpt "${FLAGS[@]}" stray
expect_fail 2 "missing checkpoint FILE" "$MTP" info
expect_fail 2 "--model FILE is required" "$MTP" eval --data builtin:arith --threads 1
expect_fail 2 "--out FILE is required" "$MTP" train --data builtin:arith "${FLAGS[@]}"
expect_fail 2 "--data" "$MTP" train --out x.ckpt "${FLAGS[@]}"

flags_without --dim
expect_fail 2 "--dim needs a value" "$MTP" train --data builtin:arith --out x.ckpt "${FLAGS[@]}" --dim
expect_fail 2 "'abc' is not a valid integer" "$MTP" train --data builtin:arith --out x.ckpt "${FLAGS[@]}" --dim abc
expect_fail 2 "is not a valid integer" "$MTP" train --data builtin:arith --out x.ckpt "${FLAGS[@]}" --dim 32x
expect_fail 2 "is not a valid integer" "$MTP" train --data builtin:arith --out x.ckpt "${FLAGS[@]}" --dim 99999999999999999999
expect_fail 2 "--dim must be between" "$MTP" train --data builtin:arith --out x.ckpt "${FLAGS[@]}" --dim 0
expect_fail 2 "--dim must be between" "$MTP" train --data builtin:arith --out x.ckpt "${FLAGS[@]}" --dim -5
# a tensor over 4 GiB cannot be a msgpack bin: refused before anything is allocated
flags_without --dim --ffn --attn-heads
expect_fail 2 "over the checkpoint's limit of 4 GiB per tensor" "$MTP" train --data builtin:arith --out x.ckpt "${FLAGS[@]}" --dim 16384 --ffn 65536 --attn-heads 64
expect_fail 2 "--dim must be between" "$MTP" train --data builtin:arith --out x.ckpt "${FLAGS[@]}" --dim=-5
expect_fail 2 "--dim given twice" "$MTP" train --data builtin:arith --out x.ckpt "${FLAGS[@]}" --dim 32 --dim 32
flags_without --dim --attn-heads
expect_fail 2 "not divisible" "$MTP" train --data builtin:arith --out x.ckpt "${FLAGS[@]}" --dim 30 --attn-heads 4
expect_fail 2 "head dim 1024" "$MTP" train --data builtin:arith --out x.ckpt "${FLAGS[@]}" --dim 1024 --attn-heads 1
expect_fail 2 "must be even" "$MTP" train --data builtin:arith --out x.ckpt "${FLAGS[@]}" --dim 30 --attn-heads 2
flags_without --heads
expect_fail 2 "--heads must be between" "$MTP" train --data builtin:arith --out x.ckpt "${FLAGS[@]}" --heads 0
expect_fail 2 "--vocab must be between 259" "$MTP" train --data builtin:arith --out x.ckpt "${FLAGS[@]}" --vocab 258
expect_fail 2 "--heads must be between" "$MTP" train --data builtin:arith --out x.ckpt "${FLAGS[@]}" --heads 65
flags_without
expect_fail 2 "--head-type must be" "$MTP" train --data builtin:arith --out x.ckpt "${FLAGS[@]}" --head-type foo
flags_without --precision
expect_fail 2 "--precision must be auto, fp32 or bf16 (got 'fp16')" "$MTP" train --data builtin:arith --out x.ckpt "${FLAGS[@]}" --precision fp16
expect_fail 2 "--precision must be auto, fp32 or bf16 (got 'AUTO')" "$MTP" train --data builtin:arith --out x.ckpt "${FLAGS[@]}" --precision AUTO
flags_without
expect_fail 2 "--steps must be between" "$MTP" train --data builtin:arith --out x.ckpt "${FLAGS[@]}" --steps 0
expect_fail 2 "is not a valid number" "$MTP" train --data builtin:arith --out x.ckpt "${FLAGS[@]}" --lr nan
expect_fail 2 "is not a valid number" "$MTP" train --data builtin:arith --out x.ckpt "${FLAGS[@]}" --lr inf
expect_fail 2 "--lr must be between" "$MTP" train --data builtin:arith --out x.ckpt "${FLAGS[@]}" --lr -0.1
expect_fail 2 "not a valid non-negative integer" "$MTP" train --data builtin:arith --out x.ckpt "${FLAGS[@]}" --seed -1
expect_fail 2 "--val-frac must be between" "$MTP" train --data builtin:arith --out x.ckpt "${FLAGS[@]}" --val-frac 1
expect_fail 2 "--difficulty must be between" "$MTP" train --data builtin:arith --out x.ckpt "${FLAGS[@]}" --difficulty 9
expect_fail 2 "--data needs a non-empty value" "$MTP" train --data "" --out x.ckpt "${FLAGS[@]}"
mkdir -p outdir
expect_fail 2 "is a directory" "$MTP" train --data builtin:arith --out outdir "${FLAGS[@]}"
expect_fail 2 "--precision must be fp32 or bf16 (got 'auto')" "$MTP" eval --model x.ckpt --precision auto
check "no checkpoint is left by failed command lines" test ! -e x.ckpt

expect_help "$MTP" --help
expect_help "$MTP" -h
expect_help "$MTP" help
expect_help "$MTP" train --help
expect_help "$MTP" train -h
expect_help "$MTP" train --dim 32 --help
expect_help "$MTP" eval --help
expect_help "$MTP" info --help
check "train --help lists --save-every" grep -q -- '--save-every' <("$MTP" train --help)
check "eval --help lists --json" grep -q -- '--json' <("$MTP" eval --help)
for cmd in train generate bench; do
    check "$cmd --help: --precision auto is the default" grep -qE -- '--precision P +auto \(default\), fp32 or bf16' <("$MTP" $cmd --help)
done

# ---- data ----------------------------------------------------------------------------------------

mkdir -p adir
: >empty.txt
printf 'only ten b' >short.txt # 10 bytes: fewer than ctx+1 = 17 tokens in a split
printf 'x%.0s' {1..60} >small.txt # 60 bytes: a train split of 55, a validation split of 6 tokens
expect_fail 1 "no-such-file.txt: no such file" "$MTP" train --data no-such-file.txt --out x.ckpt "${FLAGS[@]}"
expect_fail 1 "is a directory" "$MTP" train --data adir --out x.ckpt "${FLAGS[@]}"
expect_fail 1 "empty file" "$MTP" train --data empty.txt --out x.ckpt "${FLAGS[@]}"
expect_fail 1 "fewer than the 17" "$MTP" train --data short.txt --out x.ckpt "${FLAGS[@]}"
expect_fail 1 "validation split" "$MTP" train --data small.txt --out x.ckpt "${FLAGS[@]}"
expect_fail 1 "unknown builtin corpus" "$MTP" train --data builtin:nope --out x.ckpt "${FLAGS[@]}"
check "no checkpoint is left by runs with bad data" test ! -e x.ckpt

# ---- a good checkpoint, and model files that are not ---------------------------------------------

expect_ok "$MTP" train --data builtin:arith --out good.ckpt "${FLAGS[@]}" --steps 3
cp good.ckpt good.bak
flags_without --heads
expect_ok "$MTP" train --data builtin:arith --out lin3.ckpt "${FLAGS[@]}" --heads 3 --head-type linear --steps 2

SIZE=$(stat -c %s good.ckpt)
head -c $((SIZE / 2)) good.ckpt >trunc.ckpt
head -c 1 good.ckpt >trunc1.ckpt
printf 'this is not a checkpoint\n' >text.ckpt
: >empty.ckpt
mkdir -p dir.ckpt
if "${PY[@]}" flip good.ckpt trunk.0.wq flipped.ckpt 2>err.txt && ! cmp -s good.ckpt flipped.ckpt; then pass; else
    fail "could not make a flipped checkpoint"
    cat err.txt
fi
"${PY[@]}" poison good.ckpt nan.ckpt || fail "could not make a NaN checkpoint"

for sub in info eval; do
    if [[ $sub == info ]]; then pre=("$MTP" info); else pre=("$MTP" eval --data builtin:arith --threads 1 --model); fi
    expect_fail 1 "no-such.ckpt" "${pre[@]}" no-such.ckpt
    expect_fail 1 "directory" "${pre[@]}" dir.ckpt
    expect_fail 1 "not an mtp checkpoint" "${pre[@]}" text.ckpt
    expect_fail 1 "empty" "${pre[@]}" empty.ckpt
    expect_fail 1 "trunc.ckpt: byte offset" "${pre[@]}" trunc.ckpt
    expect_fail 1 "trunc1.ckpt" "${pre[@]}" trunc1.ckpt
    expect_fail 1 "checksum" "${pre[@]}" flipped.ckpt
    expect_fail 1 "trunk.0.wq" "${pre[@]}" flipped.ckpt
done
expect_fail 1 "no-such-file.txt" "$MTP" eval --model good.ckpt --data no-such-file.txt --threads 1
expect_fail 1 "fewer than the 17" "$MTP" eval --model good.ckpt --data short.txt --threads 1

# ---- a failed run never damages an existing --out ------------------------------------------------

unchanged() { # the good checkpoint is byte-identical to its copy
    if cmp -s good.ckpt good.bak; then pass; else
        fail "good.ckpt was changed by: $CMD"
        cp good.bak good.ckpt
    fi
}
expect_fail 1 "no such file" "$MTP" train --data no-such-file.txt --out good.ckpt "${FLAGS[@]}"
unchanged
flags_without --dim
expect_fail 2 "not a valid integer" "$MTP" train --data builtin:arith --out good.ckpt "${FLAGS[@]}" --dim abc
unchanged
flags_without
expect_fail 1 "checksum" "$MTP" train --resume flipped.ckpt --out good.ckpt --threads 1
unchanged
expect_fail 1 "trunc.ckpt" "$MTP" train --resume trunc.ckpt --out good.ckpt --threads 1
unchanged
expect_fail 1 "text.ckpt" "$MTP" train --resume text.ckpt --out good.ckpt --threads 1
unchanged
expect_fail 2 "--dim 64 differs from the run being resumed" "$MTP" train --resume good.ckpt --dim 64 --threads 1
unchanged
expect_fail 2 "--head-type linear differs from the run being resumed" "$MTP" train --resume good.ckpt --head-type linear --threads 1
unchanged
expect_fail 2 "--lr 0.1 differs from the run being resumed" "$MTP" train --resume good.ckpt --lr 0.1 --threads 1
unchanged
expect_fail 1 "no-such-file.txt" "$MTP" train --resume good.ckpt --data no-such-file.txt --threads 1
unchanged
expect_fail 1 "cannot open --log" "$MTP" train --data builtin:arith --out good.ckpt "${FLAGS[@]}" --log adir
unchanged
# a diverging run: weight decay 10 at learning rate 10 multiplies the weights by -99 every step; the
# learning rate is constant so the run is the same whatever --steps is. Its loss is finite up to
# step 8 and NaN at step 9, but the gradient of step 8 is already NaN.
DIVERGE=(--lr 10 --min-lr 10 --weight-decay 10 --warmup 0 --grad-clip 0)
expect_fail_late 1 "not finite" "$MTP" train --data builtin:arith --out good.ckpt "${FLAGS[@]}" "${DIVERGE[@]}" \
    --steps 30 --log diverge.jsonl
unchanged
# the log of that run must still be JSON lines (NaN is not JSON)
if "${PY[@]}" jsonl diverge.jsonl 2>err.txt; then pass; else
    fail "--log of a diverged run is not JSON lines: $(tail -n 1 err.txt)"
    grep -i nan diverge.jsonl | head -2 | cut -c1-120 | sed 's/^/      | /'
fi
# stopping at step 8: the loss of the last step is finite, but its update made every weight NaN;
# the run must fail rather than save non-finite weights over the good checkpoint
expect_fail_late 1 "not finite" "$MTP" train --data builtin:arith --out good.ckpt "${FLAGS[@]}" "${DIVERGE[@]}" --steps 8
unchanged
# with --save-every 1 the good checkpoint is replaced by design, but never by non-finite weights
expect_fail_late 1 "not finite" "$MTP" train --data builtin:arith --out good.ckpt "${FLAGS[@]}" "${DIVERGE[@]}" \
    --steps 30 --save-every 1
NONFINITE=$("${PY[@]}" nonfinite good.ckpt)
if [[ $NONFINITE == 0 ]]; then pass; else
    fail "--save-every 1 saved a checkpoint with $NONFINITE non-finite weights before reporting the divergence"
fi
cp good.bak good.ckpt
# --out in a folder that does not exist: refused before training starts
expect_fail 2 "cannot write to directory" "$MTP" train --data builtin:arith --out no-such-dir/x.ckpt "${FLAGS[@]}" --steps 2
check "no temp files left behind" no_temp_files

# ---- info and eval on good checkpoints -----------------------------------------------------------

expect_ok "$MTP" info good.ckpt
check "info names the file, config and step" grep -q 'step 3 of 3' out.txt
check "info shows dim 32" grep -q 'dim 32' out.txt
expect_ok "$MTP" info good.ckpt --json
cp out.txt info.json
if python3 - info.json <<'EOF'; then pass; else fail "info --json: wrong JSON"; fi
import json, sys
j = json.load(open(sys.argv[1]))
c, p = j['config'], j['params']
assert j['format'] == 'mtp-checkpoint' and j['version'] == 1, j
assert c == {'vocab': 259, 'dim': 32, 'layers': 1, 'attn_heads': 2, 'ffn': 64, 'ctx': 16, 'heads': 2,
             'head_type': 'transformer'}, c
assert p['total'] == p['embedding'] + p['trunk'] + p['heads'] + p['final_norm'] + p['unembedding'], p
assert p['embedding'] == 259 * 32 and p['unembedding'] == 259 * 32 and p['final_norm'] == 32, p
assert j['train'] == {'step': 3, 'steps': 3}, j['train']
assert j['calibration'] is None, j
import os
assert j['file_bytes'] == os.path.getsize('good.ckpt')
EOF

# a decoding calibration (README, "Checkpoint format") added to good.ckpt by hand: info shows it;
# a rate of 1.5 is refused
add_calibration() { # add_calibration OUT RATE0
    python3 - good.ckpt "$1" "$2" <<'EOF'
import struct, sys
def pk(v):
    if isinstance(v, float): return b'\xcb' + struct.pack('>d', v)
    if isinstance(v, int): return struct.pack('b', v) if -32 <= v < 128 else b'\xd3' + struct.pack('>q', v)
    if isinstance(v, str): return bytes([0xa0 | len(v)]) + v.encode()
    if isinstance(v, list): return bytes([0x90 | len(v)]) + b''.join(pk(x) for x in v)
    return bytes([0x80 | len(v)]) + b''.join(pk(k) + pk(x) for k, x in v.items())
b = bytearray(open(sys.argv[1], 'rb').read())
assert b[0] & 0xf0 == 0x80 and b[0] < 0x8f, b[0]
b[0] += 1  # one more top-level key, at the end of the map
trees = [([-1], [0], 1.0), ([-1, 0], [0, 0], 1.71), ([-1, 0, 0], [0, 0, 1], 1.8), ([-1, 0, 0, 0], [0, 0, 1, 2], 1.85)]
cal = {'version': 1, 'heads': 2, 'positions': 12345, 'ranks': 8,
       'rates': [[float(sys.argv[3]), 0.05, 0.02, 0.01, 0.0, 0.0, 0.0, 0.0]],
       'trees': [{'parent': p, 'rank': r, 'expected': e} for p, r, e in trees]}
open(sys.argv[2], 'wb').write(bytes(b) + pk('calibration') + pk(cal))
EOF
}
add_calibration cal.ckpt 0.9
expect_ok "$MTP" info cal.ckpt
check "info shows the calibration" \
    grep -q 'calibration: 12345 positions; tokens per pass by tree size: 1:1.00 2:1.71 4:1.85' out.txt
check "info shows the first candidates' rates" grep -q 'first candidate right, head 2: 90%' out.txt
expect_ok "$MTP" info cal.ckpt --json
if python3 - out.txt <<'EOF'; then pass; else fail "info --json: wrong calibration"; fi
import json, sys
j = json.load(open(sys.argv[1]))
assert j['calibration'] == {'positions': 12345, 'expected': [1.0, 1.71, 1.8, 1.85]}, j['calibration']
EOF
add_calibration cal.ckpt 1.5
expect_fail 1 "rate of head 2's candidate 0 is 1.5" "$MTP" info cal.ckpt

eval_json() { # eval_json FILE HEADS: checks the documented shape of `mtp eval --json`
    python3 - "$1" "$2" <<'EOF'
import json, math, sys
def bad_const(s): raise ValueError('not JSON: ' + s)
j = json.loads(open(sys.argv[1]).read(), parse_constant=bad_const)
assert set(j) == {'heads', 'tokens'}, j
assert isinstance(j['tokens'], int) and j['tokens'] > 0, j
assert [h['head'] for h in j['heads']] == list(range(1, int(sys.argv[2]) + 1)), j
for h in j['heads']:
    assert set(h) == {'head', 'loss', 'accuracy'}, h
    assert math.isfinite(h['loss']) and h['loss'] > 0 and 0 <= h['accuracy'] <= 1, h
EOF
}
expect_ok "$MTP" eval --model good.ckpt --data builtin:arith --batches 2 --json --threads 1
cp out.txt eval2.json
if eval_json eval2.json 2; then pass; else fail "eval --json (2 heads): wrong JSON: $(cat eval2.json)"; fi
expect_ok "$MTP" eval --model lin3.ckpt --data builtin:arith --batches 2 --batch 3 --json --threads 1
cp out.txt eval3.json
if eval_json eval3.json 3; then pass; else fail "eval --json (3 heads): wrong JSON: $(cat eval3.json)"; fi
# the data defaults to the one the model was trained on
expect_ok "$MTP" eval --model good.ckpt --batches 2 --json --threads 1
check "eval without --data evaluates the training data" cmp -s out.txt eval2.json
# a checkpoint whose weights are NaN (valid checksums): --json must still print JSON (or fail cleanly)
run "$MTP" eval --model nan.ckpt --data builtin:arith --batches 2 --json --threads 1
if [[ $RC -ge 128 ]]; then fail "eval of a NaN model killed by a signal"
elif [[ $RC -ne 0 ]]; then pass # a clean refusal is fine
elif "${PY[@]}" json out.txt 2>/dev/null; then pass
else fail "eval --json of a model with NaN weights prints invalid JSON: $(cat out.txt)"; fi

# ---- generate: lossless lookahead, and bad input
flags_without --heads
run "$MTP" train --data builtin:arith --out gen.ckpt "${FLAGS[@]}" --heads 3 --steps 40
check "a 3-head model to generate with" test "$RC" -eq 0
for K in 1 2 3; do # in one precision: auto may pick another one per lookahead
    "$MTP" generate --model gen.ckpt --prompt "Compute 12 + 5." --lookahead "$K" --max-tokens 40 --threads 1 \
        --precision fp32 >"gen.$K.txt" 2>/dev/null
done
check "generate prints the continuation" test -s gen.1.txt
check "generate --lookahead 2 gives the --lookahead 1 output" cmp -s gen.1.txt gen.2.txt
check "generate --lookahead 3 gives the --lookahead 1 output" cmp -s gen.1.txt gen.3.txt
run "$MTP" generate --model gen.ckpt --prompt "$(printf '\xff\xfe bytes')" --max-tokens 5 --threads 1
check "a prompt that is not UTF-8 is just bytes to a byte model" test "$RC" -eq 0
run "$MTP" generate --model gen.ckpt --prompt "Compute 12 + 5." --temperature 0.8 --top-k 20 --top-p 0.9 --seed 7 \
    --lookahead 3 --max-tokens 30 --threads 1 --precision fp32
check "generate samples with --temperature" test "$RC" -eq 0 -a -s out.txt
cp out.txt sample1.txt
run "$MTP" generate --model gen.ckpt --prompt "Compute 12 + 5." --temperature 0.8 --top-k 20 --top-p 0.9 --seed 7 \
    --lookahead 3 --max-tokens 30 --threads 1 --precision fp32
check "sampling is deterministic for a seed" cmp -s out.txt sample1.txt
for prec in bf16 auto; do
    "$MTP" generate --model gen.ckpt --prompt "Compute 12 + 5." --lookahead 3 --max-tokens 40 --threads 1 \
        --precision "$prec" >"gen.$prec.txt" 2>/dev/null
done
check "generate --precision bf16 runs" test -s gen.bf16.txt
check "generate --precision auto gives the output of the precision it picks" eval \
    'cmp -s gen.auto.txt gen.3.txt || cmp -s gen.auto.txt gen.bf16.txt'
# auto is the default; --stats says what it picked, and why, on stderr
expect_ok "$MTP" generate --model gen.ckpt --prompt "Compute 12 + 5." --lookahead 2 --max-tokens 10 --threads 1 --stats
check "generate: auto by default, its pick in --stats" \
    grep -qE '^  precision auto: (bf16|fp32) \((2-row pass [0-9.]+ ms bf16, [0-9.]+ ms fp32|no bf16 products on this CPU)' err.txt
check "generate: stdout carries the text alone" test "$(grep -c precision out.txt)" = 0
expect_fail 2 "--precision must be auto, fp32 or bf16 (got 'fp16')" "$MTP" generate --model gen.ckpt --prompt x --precision fp16
expect_fail 2 "--temperature must be between" "$MTP" generate --model gen.ckpt --prompt x --temperature -1
expect_fail 2 "--top-p must be between" "$MTP" generate --model gen.ckpt --prompt x --temperature 1 --top-p 0
expect_fail 2 "give --temperature > 0 too" "$MTP" generate --model gen.ckpt --prompt x --top-k 5
expect_fail 2 "--lookahead must be between" "$MTP" generate --model gen.ckpt --prompt x --lookahead 0
expect_fail 2 "more than the model's 3 heads" "$MTP" generate --model gen.ckpt --prompt x --lookahead 4
expect_fail 2 "the prompt is empty" "$MTP" generate --model gen.ckpt --prompt-file empty.txt
expect_fail 2 "the model's context is 16" "$MTP" generate --model gen.ckpt --prompt "0123456789abcdefgh"
expect_fail 1 "longer than the model's context" "$MTP" generate --model gen.ckpt --prompt-file gen.ckpt
expect_fail 2 "exactly one of --prompt" "$MTP" generate --model gen.ckpt
expect_fail 2 "--model FILE is required" "$MTP" generate --prompt x
expect_fail 1 "cannot open missing.ckpt" "$MTP" generate --model missing.ckpt --prompt x
expect_fail 1 "empty.txt: file is empty" "$MTP" generate --model empty.txt --prompt x

# ---- bench
run "$MTP" bench --model gen.ckpt --max-tokens 30 --repeats 1 --threads 1 --json bench.json
check "bench runs" test "$RC" -eq 0
# the default precision, auto, picks per lookahead: identical compares with lookahead 1 in the same one
check "bench --json: one run per lookahead, identical outputs, the documented keys, auto's picks" python3 -c '
import json, sys
runs = json.load(open("bench.json"))["runs"]
assert [r["lookahead"] for r in runs] == [1, 2, 3]
for r in runs:
    assert r["identical"] is True and len(r["head_acceptance"]) == r["lookahead"] - 1
    for k in ("tokens_per_s", "speedup", "tokens_per_forward", "bound"): assert r[k] > 0
    assert r["precision"] in ("fp32", "bf16") and r["precision_auto"] is True, r
    if "pass_ms" in r: assert r["pass_ms"]["fp32"] > 0 and r["pass_ms"]["bf16"] > 0, r
assert runs[0]["speedup"] == 1.0
'
check "bench: a line per lookahead says what auto picked" test "$(grep -cE '^precision auto, lookahead [123]: (fp32|bf16) ' out.txt)" = 3
run "$MTP" bench --model gen.ckpt --max-tokens 10 --repeats 1 --threads 1 --lookahead 2 --precision bf16 --json bench16.json
check "bench --precision bf16: the runs say so, not auto" python3 -c '
import json
runs = json.load(open("bench16.json"))["runs"]
assert [(r["precision"], r["precision_auto"], "pass_ms" in r) for r in runs] == [("bf16", False, False)] * 2, runs
'
check "bench --precision bf16: no auto lines" test "$(grep -c "precision auto" out.txt)" = 0
printf 'Compute 1 + 2.\n{"question": "Compute 3 * 4.\\n"}\n{"prompt": 7}\n' >prompts.txt
expect_fail 1 "prompts.txt: line 3: byte 12: field \"prompt\" is not a string" "$MTP" bench --model gen.ckpt --prompts prompts.txt
printf '{"question": "Compute 1 + 2.\\n", "meta": {"id": [1, 2]}}\n{"question": "truncated\n' >prompts.txt
expect_fail 1 "prompts.txt: line 2: byte 24: unterminated string" "$MTP" bench --model gen.ckpt --prompts prompts.txt
printf '{"prompt": "caf\\u00e9 \\ud83d\\ude00"}\n' >prompts.txt
run "$MTP" bench --model gen.ckpt --prompts prompts.txt --max-tokens 5 --repeats 1 --threads 1 --lookahead 2
check "bench reads JSON prompts with unicode escapes" test "$RC" -eq 0
printf '{"answer": "x"}\n' >prompts.txt
expect_fail 1 "line 1: no \"question\" or \"prompt\" field" "$MTP" bench --model gen.ckpt --prompts prompts.txt
expect_fail 2 "--lookahead '1,5'" "$MTP" bench --model gen.ckpt --lookahead 1,5
expect_fail 1 "--prompts nope.txt" "$MTP" bench --model gen.ckpt --prompts nope.txt
expect_fail 2 "--precision must be auto, fp32 or bf16 (got 'int8')" "$MTP" bench --model gen.ckpt --precision int8

# ---- a model wider than its tokenizer (--vocab): trains, saves, decodes
flags_without --heads
run "$MTP" train --data builtin:arith --out wide.ckpt "${FLAGS[@]}" --heads 2 --vocab 300 --steps 5
check "train --vocab 300 with the byte tokenizer" test "$RC" -eq 0
run "$MTP" info wide.ckpt
check "info shows the wider vocab" grep -q "vocab 300" out.txt
run "$MTP" generate --model wide.ckpt --prompt "Compute 1 + 2." --lookahead 2 --max-tokens 10 --threads 1
check "generate with a wider vocab" test "$RC" -eq 0
expect_fail 2 "--vocab 301 differs from the run being resumed (300)" "$MTP" train --resume wide.ckpt --steps 6 --vocab 301

echo "cli_badinput: $PASS passed, $FAIL failed"
[[ $FAIL -eq 0 ]]
