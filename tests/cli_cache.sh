#!/usr/bin/env bash
# cli_cache.sh MTP_EXE SCRATCH_DIR - mtp train's shared token cache folder and `mtp cache`:
#  - without --token-cache a run's cache is $XDG_CACHE_HOME/mtp/tokens/<16 hex>.tokens (else
#    $HOME/.cache/...), the folder private; no OUT.tokens beside the checkpoint;
#  - models on the same corpus and tokenizer share the file, whatever path names the source
#    (relative, from another folder, absolute), without rebuilding it; another tokenizer or split
#    gets another file; a changed source rebuilds the file in place;
#  - two runs building the same cache at once both succeed and leave one good file;
#  - no folder to use is a one-line error; a relative XDG_CACHE_HOME is ignored;
#  - mtp cache list (text and --json): every cache with its state (current, stale, damaged, not a
#    cache) and temp files; mtp cache clean: stale and damaged caches and dead builds' temp files,
#    --unused-days, --all, --dry-run; it never removes a file that is not a cache, nor a live
#    build's temp file.
source "$(dirname "$0")/lib_cli.sh"

TINY=(--dim 32 --layers 1 --attn-heads 2 --ffn 64 --ctx 32 --batch 2 --heads 2 --head-type linear --threads 1
    --eval-every 0 --eval-batches 2 --precision fp32 --steps 2)
SHARED=$XDG_CACHE_HOME/mtp/tokens
caches() { compgen -G "$SHARED/*.tokens" | sort; } # the cache files of the folder, one a line
n_caches() { caches | grep -c . ; }
fstat() { stat -c '%i %s %y' "$1" 2>/dev/null; } # inode, size, mtime (ns): changes when a file is replaced
train() { expect_ok "$MTP" train "${TINY[@]}" "$@"; }
# json_get FILE EXPR: evaluates the python expression EXPR on j = the JSON object in FILE
json_get() { python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }

python3 -c '
import random
random.seed(3)
w = "the a cat dog sat ran on under mat log far away quick brown fox".split()
for name, n in (("words.txt", 6000), ("other.txt", 4000)):
    with open(name, "w") as f:
        for i in range(n): f.write(" ".join(random.choice(w) for _ in range(8)) + "\n")
'
"$MTP" tokenize --learn bpe:300 --data words.txt --out tok.file >/dev/null 2>&1 || { echo "tokenize --learn failed"; exit 2; }

# ---- the default path --------------------------------------------------------------------------
train --data words.txt --out a.ckpt
C=$(caches)
check "the default cache: one file in \$XDG_CACHE_HOME/mtp/tokens" test "$(n_caches)" = 1
check "... named by 16 hex digits" eval '[[ $(basename "$C") =~ ^[0-9a-f]{16}\.tokens$ ]]'
check "... a token cache (MTPTOKS1)" test "$(head -c 8 "$C")" = MTPTOKS1
check "... no OUT.tokens beside the checkpoint" test ! -e a.ckpt.tokens
check "... the folder is private (0700)" test "$(stat -c %a "$SHARED")" = 700
S0=$(fstat "$C")
sleep 0.05
train --data words.txt --out b.ckpt
check "a second model on the same corpus shares the file" test "$(n_caches)" = 1
check "... without rebuilding it" test "$(fstat "$C")" = "$S0"
mkdir -p sub
(cd sub && train --data ../words.txt --out ../c.ckpt)
train --data "$PWD/words.txt" --out d.ckpt
check "the same file named from another folder or by its absolute path: the same cache, not rebuilt" \
    test "$(n_caches) $(fstat "$C")" = "1 $S0"

train --data words.txt --out t.ckpt --tokenizer tok.file
check "another tokenizer: another file" test "$(n_caches)" = 2
train --data words.txt --out v.ckpt --val-frac 0.2
check "another validation fraction: another file" test "$(n_caches)" = 3
train --data other.txt --out o.ckpt
check "another corpus: another file" test "$(n_caches)" = 4
O=$(comm -13 <(echo "$C") <(caches) | while read -r f; do grep -l other.txt "$f"; done | head -1)

echo "the cat ran far away" >>words.txt
train --data words.txt --out a.ckpt
check "a changed source rebuilds the file in place (same name)" test "$(n_caches)" = 4 -a -f "$C"
check "... a new file" test "$(fstat "$C")" != "$S0"
check "no temp files left in the folder" eval '! compgen -G "$SHARED/*.tmp.*" >/dev/null'

# two runs building the same cache at once: both succeed, one good file, no temp file
echo "the dog sat" >>other.txt
"$MTP" train "${TINY[@]}" --data other.txt --out p1.ckpt >p1.out 2>p1.err &
P1=$!
"$MTP" train "${TINY[@]}" --data other.txt --out p2.ckpt >p2.out 2>p2.err &
P2=$!
wait $P1 && wait $P2
check "two runs building one cache at once: both succeed" test $? = 0 -a -s p1.ckpt -a -s p2.ckpt
run "$MTP" cache list --json
cp out.txt par.json
check "... and the cache is current" test "$(json_get par.json '[e["status"] for e in j["entries"] if e["file"] == "'"$O"'"]')" = "['current']"
check "... no temp files left" eval '! compgen -G "$SHARED/*.tmp.*" >/dev/null'

# ---- where the folder is -------------------------------------------------------------------------
expect_ok env HOME="$PWD/home" XDG_CACHE_HOME= "$MTP" cache dir
check "no XDG_CACHE_HOME: \$HOME/.cache/mtp/tokens" test "$(cat out.txt)" = "$PWD/home/.cache/mtp/tokens"
expect_ok env HOME="$PWD/home" XDG_CACHE_HOME=relative/dir "$MTP" cache dir
check "a relative XDG_CACHE_HOME is ignored" test "$(cat out.txt)" = "$PWD/home/.cache/mtp/tokens"
expect_fail 1 "no folder for the token cache" env -u HOME -u XDG_CACHE_HOME "$MTP" train "${TINY[@]}" --data words.txt --out h.ckpt
check "... and no checkpoint" test ! -e h.ckpt
expect_ok env -u HOME -u XDG_CACHE_HOME "$MTP" train "${TINY[@]}" --data words.txt --out h.ckpt --token-cache none
echo "a file, not a folder" >notdir
expect_fail 1 "token cache folder $PWD/notdir: Not a directory" env XDG_CACHE_HOME="$PWD/notdir" "$MTP" train "${TINY[@]}" \
    --data words.txt --out h2.ckpt
check "... and the file is unchanged" test "$(cat notdir)" = "a file, not a folder"

# ---- mtp cache list --------------------------------------------------------------------------
echo "the end" >>words.txt # the words.txt caches are stale now (1 rebuilt above, t, v); other.txt's current
printf 'MTPTOKS1\377\377\377\377\0\020\0\0' >"$SHARED/0000000000000000.tokens" # a damaged header
echo "not a cache at all, keep me" >"$SHARED/1111111111111111.tokens"        # named like one, but foreign
echo "keep me too" >"$SHARED/README"                                           # not named like one
sh -c 'exit 0' &
DEAD=$!
wait $DEAD
: >"$SHARED/2222222222222222.tokens.tmp.$DEAD"     # a build that died
: >"$SHARED/2222222222222222.tokens.val.tmp.$DEAD"
: >"$SHARED/3333333333333333.tokens.tmp.$$"        # a build still running (this shell)
expect_ok "$MTP" cache list --json
cp out.txt list.json
status_of() { json_get list.json "[e['status'] for e in j['entries'] if e['file'].endswith('/$1')]"; }
check "list --json: the folder" test "$(json_get list.json 'j["dir"]')" = "$SHARED"
check "list --json: 4 caches, 1 damaged, 1 foreign, 3 temp files" \
    test "$(json_get list.json 'sorted(e["status"] for e in j["entries"])')" = \
    "['current', 'damaged', 'foreign', 'stale', 'stale', 'stale', 'temp', 'temp', 'temp']"
check "list --json: the damaged header" test "$(status_of 0000000000000000.tokens)" = "['damaged']"
check "list --json: a file named like a cache that is not one" test "$(status_of 1111111111111111.tokens)" = "['foreign']"
check "list --json: a stale cache says which source changed" \
    test "$(json_get list.json "[e['reason'] for e in j['entries'] if e['file'] == '$C']")" = "['$PWD/words.txt changed since the cache was built']"
check "list --json: a cache's sources, tokens and tokenizer" \
    test "$(json_get list.json "[(e['sources'], e['vocab'], e['train_tokens'] > 0, e['val_tokens'] > 0) for e in j['entries'] if e['file'] == '$O']")" = "[(['other.txt'], 259, True, True)]"
check "list --json: the live and dead builds' temp files" \
    test "$(json_get list.json "sorted(e['writer_alive'] for e in j['entries'] if e['status'] == 'temp')")" = "[False, False, True]"
check "list --json: the other file is counted, not listed" test "$(json_get list.json 'j["other_files"]')" = 1
check "list --json: bytes is the sum" test "$(json_get list.json 'j["bytes"] == sum(e["bytes"] for e in j["entries"])')" = True
expect_ok "$MTP" cache list
check "list: a line per entry and a total" test "$(grep -c . out.txt)" = 11
check "list: the stale cache's reason" grep -q "$(basename "$C").*stale (.*words.txt changed since the cache was built)" out.txt
check "list: the current cache with its source" grep -q "$(basename "$O").*current  other.txt | vocab 259" out.txt

# ---- mtp cache clean -------------------------------------------------------------------------
ls -l --time-style=full-iso "$SHARED" >before.ls
expect_ok "$MTP" cache clean --dry-run
check "clean --dry-run: says 6 files" grep -q "would remove 6 files" out.txt
check "... and removes nothing" eval 'cmp -s before.ls <(ls -l --time-style=full-iso "$SHARED")'
expect_ok "$MTP" cache clean
check "clean: 3 stale caches, 1 damaged one and 2 dead temp files" grep -q "removed 6 files" out.txt
check "... what is left: the current cache, the foreign file, the live temp file, the README" \
    test "$(ls "$SHARED" | sort)" = "$(printf '%s\n' 1111111111111111.tokens 3333333333333333.tokens.tmp.$$ README "$(basename "$O")" | sort)"
check "... the foreign file is unchanged" test "$(cat "$SHARED/1111111111111111.tokens")" = "not a cache at all, keep me"
train --data words.txt --out a.ckpt
train --data words.txt --out t.ckpt --tokenizer tok.file
touch -a -d '2001-01-01' "$O"
expect_ok "$MTP" cache clean --unused-days 30
check "clean --unused-days 30: the cache not read since 2001, only" \
    test "$(grep -c '^removed .*unused' out.txt) $(n_caches) $(test -e "$O" && echo kept)" = "1 3 "
expect_ok "$MTP" cache clean --all
check "clean --all: every cache but the foreign file" test "$(n_caches)" = 1 -a -f "$SHARED/1111111111111111.tokens"
check "... the README and the live build's temp file stay" test -f "$SHARED/README" -a -f "$SHARED/3333333333333333.tokens.tmp.$$"
expect_ok "$MTP" cache list --dir "$PWD/sub"
check "list --dir: another folder (empty)" grep -q "no token caches in $PWD/sub" out.txt
expect_ok env XDG_CACHE_HOME="$PWD/never" "$MTP" cache list
check "list: a folder that does not exist yet has no caches" grep -q "no token caches" out.txt

# ---- bad command lines ------------------------------------------------------------------------
expect_fail 2 "missing action" "$MTP" cache
expect_fail 2 "unknown action 'purge'" "$MTP" cache purge
expect_fail 2 "options of mtp cache clean" "$MTP" cache list --all
expect_fail 2 "drop --unused-days" "$MTP" cache clean --all --unused-days 3
expect_fail 2 "--unused-days must be between" "$MTP" cache clean --unused-days 0
expect_fail 1 "sub/none" "$MTP" cache list --dir sub/none/x

echo "cli_cache: $PASS passed, $FAIL failed"
((FAIL == 0))
