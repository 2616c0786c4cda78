#!/usr/bin/env bash
# The decoding pass against its floor (reports, does not assert): `mtp bench --passes` on the
# bench models, 1 thread, fp32 and bf16, three processes each; min / median / max of their figures.
#
#   tests/bench/passes_bench.sh [--models DIR] [--runs N] [--build DIR]
#
# Models in --models DIR (default /tmp/mtp_compare_models): arith4.mtp and arith8.mtp (5M
# parameters, 4 and 8 linear heads; tests/bench/decode_bench.sh trains them), speed.mtp (the
# 6.3M single-head shape of decode_bench.sh) and big.mtp, a 25M-parameter shape whose weights no longer stay in the cache
# (dim 512, 8 blocks, ffn 1376, 4 linear heads, vocab 512; one training step: random weights do for
# timing), made here when missing. A Markdown report goes to stdout.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$ROOT/build
MODELS=/tmp/mtp_compare_models
RUNS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --models) MODELS=$2; shift ;;
    --runs) RUNS=$2; shift ;;
    --build) BUILD=$2; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "passes_bench.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
MTP=$BUILD/bin/mtp
PY=/usr/bin/python3
[ -x "$MTP" ] || { echo "build first (needs $MTP)" >&2; exit 1; }
mkdir -p "$MODELS"
export OMP_WAIT_POLICY=passive
log() { echo "[passes_bench $(date +%H:%M:%S)] load $(cut -d' ' -f1 /proc/loadavg) | $*" >&2; }
BIG_ARGS="--data builtin:arith --vocab 512 --dim 512 --layers 8 --attn-heads 8 --ffn 1376 --heads 4 --head-type linear --ctx 256 --batch 1 --steps 1 --eval-every 0 --eval-batches 1 --token-cache none"
if [ ! -f "$MODELS/big.mtp" ]; then
  log "making big.mtp"
  # shellcheck disable=SC2086
  "$MTP" train $BIG_ARGS --out "$MODELS/big.mtp" >"$MODELS/big.train.log" 2>&1
fi
SCRATCH=$(mktemp -d /tmp/mtp_passes.XXXXXX)

echo "# mtp bench --passes"
echo
echo "- date: $(date -Is); CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) logical CPUs"
echo "- git: $(cd "$ROOT" && git rev-parse --short HEAD); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- each figure: min / median / max over $RUNS processes of \`mtp bench --passes --model M --threads 1 --precision P --json F\`"
echo "  (each the median of 30 passes); big.mtp: \`mtp train $BIG_ARGS\`"
echo
for m in arith4 arith8 speed big; do
  [ -f "$MODELS/$m.mtp" ] || { echo "($m.mtp missing in $MODELS: skipped)"; echo; continue; }
  for prec in fp32 bf16; do
    for r in $(seq "$RUNS"); do
      log "$m $prec run $r"
      "$MTP" bench --passes --model "$MODELS/$m.mtp" --threads 1 --precision "$prec" --json "$SCRATCH/$m.$prec.$r.json" >/dev/null
    done
    echo "## $m, $prec"
    echo
    $PY - "$SCRATCH" "$m" "$prec" <<'EOF'
import glob, json, statistics, sys
scratch, m, prec = sys.argv[1:]
runs = [json.load(open(f)) for f in sorted(glob.glob(f"{scratch}/{m}.{prec}.*.json"))]
f = lambda v: " / ".join(f"{x:.3f}" for x in (min(v), statistics.median(v), max(v)))
print(f"peak {statistics.median(r['peak_gflops'] for r in runs):.0f} GFLOP/s (median); products of 1-16 rows: "
      f"{', '.join(sorted({r.get('kernel', '?') for r in runs}))} kernel")
print()
print("| cache | rows | ms | floor ms | vs_floor | pass_ratio | products / attention / rest / drafts ms (median) | read GB/s |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for i, p in enumerate(runs[0]["passes"]):
    pts = [r["passes"][i] for r in runs]
    med = lambda k: statistics.median(q[k] for q in pts)
    parts = " / ".join(f"{med(k):.3f}" for k in ("products_ms", "attention_ms", "rest_ms", "drafts_ms"))
    print(f"| {p['cache_len']} | {p['rows']} | {f([q['ms'] for q in pts])} | {f([q['floor_ms'] for q in pts])} | "
          f"{f([q['vs_floor'] for q in pts])} | {f([q['pass_ratio'] for q in pts])} | {parts} | {med('read_gbs'):.1f} |")
print()
# the issue's targets, from the medians: vs_floor up to 8 rows; pass ratios at 4, 8 and 16 rows
for c in sorted({p["cache_len"] for p in runs[0]["passes"]}):
    med = {p["rows"]: (statistics.median(r["passes"][i]["vs_floor"] for r in runs),
                       statistics.median(r["passes"][i]["pass_ratio"] for r in runs))
           for i, p in enumerate(runs[0]["passes"]) if p["cache_len"] == c}
    worst = max(v for rows, (v, _) in med.items() if rows <= 8)
    ratios = ", ".join(f"{rows} rows {med[rows][1]:.2f}" for rows in (4, 8, 16) if rows in med)
    print(f"- cache {c}: worst vs_floor up to 8 rows {worst:.2f} (target 1.15); pass ratio {ratios} "
          "(targets 1.10, 1.25, 1.6 where the floor allows)")
print()
EOF
  done
done
log "done (scratch: $SCRATCH)"
