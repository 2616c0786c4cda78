#!/usr/bin/env bash
# tests/crash/disk_full.sh - saves onto a full disk: every case must fail with status 1 and one
# clear error line ("mtp train: error: ... No space left on device"), leave the previous checkpoint
# (or token cache) byte for byte as it was, or none where there was none, and leave no temp file.
#
# Two ways to fill a disk:
#  - a small tmpfs (needs root and mount; skipped, and said so, where it cannot be mounted):
#    a checkpoint that fits once but not twice, at the final save and at a --save-every save; a
#    new run's first save; a token cache build; and a disk filled by a killed save's temp file,
#    which the next save removes first (it must then succeed);
#  - tests/crash/enospc.c, an LD_PRELOAD shim (no root): writes to temp files fail with ENOSPC after
#    K bytes, K spread over the whole checkpoint (0, 1, 4 KiB, ... , size - 1), and fsync fails with
#    ENOSPC; the same for the token cache.
#
# Environment: MTP (default build/bin/mtp), CC (default cc), CRASH_DIR (scratch, default a new
# /tmp folder removed at the end unless KEEP=1). Exits 1 if any case fails.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/tests/crash
MTP=${MTP:-$ROOT/build/bin/mtp}
MTP=$(cd "$(dirname "$MTP")" && pwd)/$(basename "$MTP")
DIR=${CRASH_DIR:-$(mktemp -d /tmp/mtp-diskfull.XXXXXX)}
mkdir -p "$DIR" && cd "$DIR" || exit 2
export OMP_WAIT_POLICY=passive OMP_NUM_THREADS=1
[[ -x $MTP ]] || { echo "no executable $MTP (build first, or set MTP)"; exit 2; }

CASES=0 OK=0 ONE_LINE=0 INTACT=0 NO_TEMP=0 FAILS=0
fail() {
    FAILS=$((FAILS + 1))
    echo "FAIL: $*"
}
TINY=(--dim 32 --layers 1 --attn-heads 2 --ffn 64 --ctx 16 --batch 2 --heads 2 --eval-every 0 --eval-batches 2
    --precision fp32 --threads 1)

# expect_full NAME TARGET BEFORE CMD...: CMD must exit 1 with exactly one "error:" line on stderr that
# names TARGET and says "No space left on device"; TARGET must then be byte-identical to BEFORE (a
# copy; "none": TARGET must not exist), and no TARGET*.tmp.* file may be there.
expect_full() {
    local name=$1 target=$2 before=$3
    shift 3
    CASES=$((CASES + 1))
    "$@" >case.out 2>case.err
    local rc=$? good=1
    local errs
    errs=$(grep -c 'error:' case.err)
    if [[ $rc -eq 1 ]]; then OK=$((OK + 1)); else
        good=0
        fail "$name: status $rc, expected 1"
    fi
    if [[ $errs -eq 1 ]] && grep 'error:' case.err | grep -q 'No space left on device' &&
        grep 'error:' case.err | grep -qF "$target"; then ONE_LINE=$((ONE_LINE + 1)); else
        good=0
        fail "$name: not one clear error line naming $target and 'No space left on device'"
    fi
    if [[ $before == none && ! -e $target ]] || { [[ $before != none ]] && cmp -s "$target" "$before"; }; then
        INTACT=$((INTACT + 1))
    else
        good=0
        fail "$name: $target is not as it was"
    fi
    if ! compgen -G "$target*.tmp.*" >/dev/null; then NO_TEMP=$((NO_TEMP + 1)); else
        good=0
        fail "$name: temp files left: $(compgen -G "$target*.tmp.*" | tr '\n' ' ')"
    fi
    if [[ $good -eq 1 ]]; then
        printf '  ok   %-58s %s\n' "$name" "$(grep 'error:' case.err | sed 's/.*error: //' | cut -c1-110)"
    else
        sed 's/^/    | /' case.err | tail -4
    fi
}

# the base checkpoint (step 2), its token cache outside any full disk
"$MTP" train --data builtin:arith "${TINY[@]}" --steps 2 --out base.mtp --token-cache arith.tokens >/dev/null 2>setup.err ||
    { echo "setup failed:"; cat setup.err; exit 2; }
CK=$(stat -c %s base.mtp)
echo "checkpoint: $CK bytes"

# ---- tmpfs -------------------------------------------------------------------------------------

MNT=$DIR/mnt
TMPFS="no"
STALE="skipped"
mkdir -p "$MNT"
trap 'umount "$MNT" 2>/dev/null' EXIT
kib_pages() { # kib_pages BYTES: KiB of the whole 4 KiB pages that hold BYTES
    local pages=$((($1 + 4095) / 4096))
    echo $((pages * 4))
}
mount_tmpfs() { # mount_tmpfs KIB: a fresh tmpfs of that size at $MNT
    umount "$MNT" 2>/dev/null
    mount -t tmpfs -o size="$1"k tmpfs "$MNT" 2>/dev/null
}
if mount_tmpfs 64; then
    TMPFS="yes"
    fits_once=$(kib_pages $((CK * 3 / 2))) # room for 1.5 checkpoints
    echo "tmpfs of $fits_once KiB: one checkpoint fits, two do not"

    mount_tmpfs "$fits_once"
    cp base.mtp "$MNT/ck.mtp"
    expect_full "tmpfs: final save, second copy does not fit" "$MNT/ck.mtp" base.mtp \
        "$MTP" train --resume "$MNT/ck.mtp" --steps 4 --threads 1 --token-cache arith.tokens
    if "$MTP" train --resume "$MNT/ck.mtp" --steps 3 --threads 1 --token-cache arith.tokens --out step3.mtp >/dev/null 2>&1; then
        echo "  ok   ... and the checkpoint left there resumes (elsewhere)"
    else fail "the checkpoint left on the full tmpfs does not resume"; fi

    mount_tmpfs "$fits_once"
    cp base.mtp "$MNT/ck.mtp"
    expect_full "tmpfs: --save-every 1, first periodic save" "$MNT/ck.mtp" base.mtp \
        "$MTP" train --resume "$MNT/ck.mtp" --steps 10 --save-every 1 --threads 1 --token-cache arith.tokens

    mount_tmpfs $((CK / 2 / 1024))
    expect_full "tmpfs: a new run's first save" "$MNT/new.mtp" none \
        "$MTP" train --data builtin:arith "${TINY[@]}" --steps 2 --out "$MNT/new.mtp" --token-cache arith.tokens

    mount_tmpfs 4096
    expect_full "tmpfs: token cache build (35 MB onto 4 MiB)" "$MNT/c.tokens" none \
        "$MTP" train --data builtin:arith "${TINY[@]}" --steps 2 --out c.mtp --token-cache "$MNT/c.tokens"

    # a killed save's temp file (as large as a checkpoint) fills the disk: without it the disk holds
    # two checkpoints, with it the next save does not fit unless it removes the temp file first
    mount_tmpfs "$(kib_pages $((CK * 5 / 2)))"
    cp base.mtp "$MNT/ck.mtp"
    true &
    dead=$!
    wait $dead
    cp base.mtp "$MNT/ck.mtp.tmp.$dead"
    STALE="FAILED"
    if "$MTP" train --resume "$MNT/ck.mtp" --steps 3 --threads 1 --token-cache arith.tokens >case.out 2>case.err &&
        [[ ! -e $MNT/ck.mtp.tmp.$dead ]] && ! compgen -G "$MNT/ck.mtp.tmp.*" >/dev/null; then
        STALE="passed"
        echo "  ok   tmpfs: disk filled by a killed save's temp file: removed, the save succeeds"
    else
        fail "a stale temp file on a full disk: the save failed or the file is still there"
        sed 's/^/    | /' case.err | tail -3
    fi
    umount "$MNT"
else
    echo "tmpfs: cannot mount one here (not root?): tmpfs cases skipped"
fi

# ---- LD_PRELOAD shim ---------------------------------------------------------------------------

${CC:-cc} -shared -fPIC -O2 -o enospc.so "$HERE/enospc.c" -ldl || { echo "cannot build enospc.so"; exit 2; }
SHIM=$DIR/enospc.so
for k in 0 1 4096 65536 $((CK / 2)) $((CK - 4096)) $((CK - 1)); do
    cp base.mtp ck.mtp
    expect_full "shim: ENOSPC after $k of $CK bytes" ck.mtp base.mtp \
        env ENOSPC_AFTER=$k LD_PRELOAD="$SHIM" "$MTP" train --resume ck.mtp --steps 3 --threads 1 --token-cache arith.tokens
done
cp base.mtp ck.mtp
expect_full "shim: fsync fails with ENOSPC" ck.mtp base.mtp \
    env ENOSPC_FSYNC=1 LD_PRELOAD="$SHIM" "$MTP" train --resume ck.mtp --steps 3 --threads 1 --token-cache arith.tokens
TOK=$(stat -c %s arith.tokens)
for k in 0 4096 $((TOK / 2)) $((TOK - 1)); do
    rm -f c2.tokens
    expect_full "shim: token cache, ENOSPC after $k of $TOK bytes" c2.tokens none \
        env ENOSPC_AFTER=$k LD_PRELOAD="$SHIM" "$MTP" train --data builtin:arith "${TINY[@]}" --steps 2 --out c.mtp --token-cache c2.tokens
done
expect_full "shim: token cache, fsync fails with ENOSPC" c2.tokens none \
    env ENOSPC_FSYNC=1 LD_PRELOAD="$SHIM" "$MTP" train --data builtin:arith "${TINY[@]}" --steps 2 --out c.mtp --token-cache c2.tokens
# a stale cache (another --val-frac) being rebuilt: it stays as it was
"$MTP" train --data builtin:arith "${TINY[@]}" --steps 1 --out c.mtp --token-cache stale.tokens --val-frac 0.2 >/dev/null 2>&1 ||
    fail "building a stale cache"
for k in $((TOK / 2)) fsync; do
    cp stale.tokens c2.tokens
    how=("ENOSPC_AFTER=$k") && [[ $k == fsync ]] && how=(ENOSPC_FSYNC=1)
    expect_full "shim: rebuilding a stale cache, ${how[0]}" c2.tokens stale.tokens \
        env "${how[@]}" LD_PRELOAD="$SHIM" "$MTP" train --data builtin:arith "${TINY[@]}" --steps 2 --out c.mtp --token-cache c2.tokens
done

echo
echo "Disk full (tmpfs: $TMPFS): $CASES failing saves; status 1: $OK; one clear error line: $ONE_LINE;" \
    "previous file intact (or none): $INTACT; no temp file left: $NO_TEMP." \
    "Disk filled by a killed save's temp file: $STALE"
if [[ $FAILS -eq 0 ]]; then echo "disk_full: all checks passed"; else echo "disk_full: $FAILS FAILED"; fi
cd / && [[ -z ${CRASH_DIR:-} && ${KEEP:-0} != 1 ]] && rm -rf "$DIR"
[[ $FAILS -eq 0 ]]
