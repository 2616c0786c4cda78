# lib_cli.sh - what the command-line tests share; sourced by tests/cli_*.sh with their arguments
# MTP_EXE SCRATCH_DIR: sets MTP (absolute path of the executable), moves into a fresh SCRATCH_DIR,
# and defines the pass/fail bookkeeping (PASS, FAIL, pass, fail, check) and python3.
set -u
MTP=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
DIR=$2
rm -rf "${DIR:?}"
mkdir -p "$DIR"
cd "$DIR" || exit 2
# Threads that wait sleep instead of spinning: the results are the same (static schedules), and on
# a machine shared with other work spinning threads make a multi-threaded run many times slower.
export OMP_WAIT_POLICY=passive
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
