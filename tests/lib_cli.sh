# lib_cli.sh - what the command-line tests share; sourced by tests/cli_*.sh with their arguments
# MTP_EXE SCRATCH_DIR: sets MTP (absolute path of the executable), moves into a fresh SCRATCH_DIR
# (XDG_CACHE_HOME inside it), and defines the pass/fail bookkeeping (PASS, FAIL, pass, fail,
# check), running commands (run, show, expect_fail, expect_ok), losses (per-step losses of a --log
# file) and python3.
set -u
MTP=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
DIR=$2
rm -rf "${DIR:?}"
mkdir -p "$DIR"
cd "$DIR" || exit 2
# Threads that wait sleep instead of spinning: the results are the same (static schedules), and on
# a machine shared with other work spinning threads make a multi-threaded run many times slower.
export OMP_WAIT_POLICY=passive
# mtp train's shared token cache folder inside the scratch folder, never the user's ~/.cache
# (hidden, so that listings of the scratch folder do not see it)
export XDG_CACHE_HOME=$PWD/.xdg-cache
# python3 for JSON; resolved once (a version-manager shim can take half a second per start)
PYTHON=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null)
if [[ -z $PYTHON ]]; then
    echo "python3 is required"
    exit 2
fi
python3() { "$PYTHON" "$@"; }

PASS=0
FAIL=0
pass() { PASS=$((PASS + 1)); }
no_temp_files() { ! compgen -G '*.tmp.*' >/dev/null; } # atomic saves leave none behind
fail() {
    FAIL=$((FAIL + 1))
    echo "FAIL: $*"
}
# check DESCRIPTION CMD...: a plain assertion
check() {
    local what=$1
    shift
    if "$@"; then pass; else fail "$what"; fi
}

# run CMD...: runs a command, stdout to out.txt, stderr to err.txt, status in RC, command in CMD
run() {
    CMD="$*"
    "$@" >out.txt 2>err.txt
    RC=$?
}

show() { # context for a failure
    echo "    command: $CMD"
    echo "    status $RC; stderr:"
    sed 's/^/      | /' err.txt | head -20
}

# expect_fail STATUS SUBSTRING CMD...: exits with STATUS ("1,2": either; a signal only when listed,
# as 130 for an interrupted run), nothing on stdout, stderr is exactly one line with SUBSTRING.
expect_fail() {
    local want=$1 sub=$2
    shift 2
    run "$@"
    local lines
    lines=$(wc -l <err.txt)
    if [[ $RC -ge 128 && ",$want," != *",$RC,"* ]]; then
        fail "killed by a signal ($((RC - 128))): $CMD"
        show
    elif [[ ",$want," != *",$RC,"* ]]; then
        fail "status $RC, expected $want: $CMD"
        show
    elif [[ $lines -ne 1 || -n $(tail -c 1 err.txt) ]]; then
        fail "stderr is not exactly one line ($lines): $CMD"
        show
    elif ! grep -qF -- "$sub" err.txt; then
        fail "stderr lacks '$sub': $CMD"
        show
    elif [[ -s out.txt ]]; then
        fail "something on stdout: $CMD"
        show
    else
        pass
    fi
}

# expect_ok CMD...: status 0 (stdout in out.txt, stderr in err.txt); returns 1 otherwise
expect_ok() {
    run "$@"
    if [[ $RC -ne 0 ]]; then
        fail "status $RC, expected 0: $CMD"
        show
        return 1
    fi
    pass
}

# losses LOG FIRST LAST: "step loss-array" for each step FIRST..LAST of a --log file, the arrays as the
# exact strings printed ("missing" for a step not logged; a step logged twice is an error)
losses() {
    python3 - "$@" <<'EOF'
import json, re, sys
path, first, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
seen = {}
for line in open(path):
    j = json.loads(line)
    if j.get('type') != 'step': continue
    if j['step'] in seen: sys.exit('step %d logged twice' % j['step'])
    seen[j['step']] = re.search(r'"loss":(\[[^\]]*\])', line).group(1)
for s in range(first, last + 1):
    print(s, seen.get(s, 'missing'))
EOF
}
