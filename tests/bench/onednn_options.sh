#!/usr/bin/env bash
# Every oneDNN way of computing a decoding product against the own small-row kernel (issue 10;
# reports, does not assert): build/bin/mtp_onednn_options on the default shapes (the arith4 5M
# model and the 25M shape of passes_bench.sh), 1 thread, fp32 and bf16, rows 1..16, weights from
# memory and in cache. Builds nothing (cmake --build build first); takes about 2 minutes.
#
#   tests/bench/onednn_options.sh [--build DIR] [-- OPTIONS FOR mtp_onednn_options]
#
# Options after -- go to the program (--shape N,K, --rows LIST, --repeats R, --precision P,
# --where memory|cache|both, --pool-mb MB, --target-ms MS; see its --help). A Markdown report goes
# to stdout, progress to stderr. Figures are medians of blocks timed round-robin in one process,
# but they are only as good as the machine is quiet: the load average is in the report.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$ROOT/build
while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD=$2; shift ;;
    --) shift; break ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "onednn_options.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
BIN=$BUILD/bin/mtp_onednn_options
[ -x "$BIN" ] || { echo "build first (needs $BIN)" >&2; exit 1; }
export OMP_WAIT_POLICY=passive
echo "[onednn_options $(date +%H:%M:%S)] load $(cut -d' ' -f1 /proc/loadavg) | $BIN --precision both $*" >&2
"$BIN" --precision both "$@"
echo
echo "- git: $(cd "$ROOT" && git rev-parse --short HEAD)$(cd "$ROOT" && git diff --quiet HEAD -- mtp || echo ' (mtp/ modified)'); CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) logical CPUs"
