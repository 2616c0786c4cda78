#!/usr/bin/env bash
# Data-parallel training benchmark (reports, does not assert).
#
#   tests/bench/mpi_bench.sh [--runs R] [--steps S] [--precision fp32|bf16] [--build DIR] [--scratch DIR]
#
# On the reference model (the trainer's defaults, builtin:arith) with a global batch of 32 rows
# (--batch 16 x 2), each configuration run R times (default 5), interleaved:
#   1r1t  one process, 1 thread, --accum 2
#   2r1t  mpirun -np 2 --bind-to core, 1 thread each, --accum 1 (gradient sum overlapped, the default)
#   2r1tb the same with MTP_ALLREDUCE=blocking (one MPI_Allreduce after the backward)
#   1r2t  one process, 2 threads, --accum 2
# tokens/s of a run = the median over its S timed steps (after 2 warm-up steps) of tokens/step_s;
# reported: min / median / max over the R runs, and the ratios of the medians. Allreduce share =
# rank 0's median allreduce_s / step_s. Peak RSS of each rank (/usr/bin/time %M). The losses of
# 1r1t and 2r1t are compared step by step (same global batch: equal within 1e-6 relative).
# Then: MPI_Allreduce latency and bandwidth over loopback (2 ranks, mtp_allreduce_bench) up to
# the gradients of the reference model and of a 100M-parameter config, that config's tokens/s on
# this machine (1 process, all cores), and the scaling model of README (compute / N + allreduce(N)).
# Timings mean something only on an idle machine: the load and busy processes are printed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$ROOT/build
RUNS=5
TIMED=6
PREC=fp32
SCRATCH=/tmp/mtp_mpi_bench.$(date +%Y%m%d-%H%M%S)
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift ;;
    --steps) TIMED=$2; shift ;;
    --precision) PREC=$2; shift ;;
    --build) BUILD=$2; shift ;;
    --scratch) SCRATCH=$2; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "mpi_bench.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
MTP=$BUILD/bin/mtp
ARB=$BUILD/bin/mtp_allreduce_bench
[ -x "$MTP" ] && [ -x "$ARB" ] || { echo "build with MPI first (needs $MTP and $ARB)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install -y time)" >&2; exit 1; }
PY=/usr/bin/python3
WARM=2
STEPS=$((WARM + TIMED))
mkdir -p "$SCRATCH"
export OMP_WAIT_POLICY=passive
MPI=(mpirun --allow-run-as-root --bind-to core -x OMP_NUM_THREADS=1 -x OMP_WAIT_POLICY -x MTP_ALLREDUCE)
REF=(--data builtin:arith --batch 16 --precision "$PREC" --eval-every 0 --eval-batches 1 --steps "$STEPS"
  --token-cache "$SCRATCH/arith.tokens")
BIG=(--dim 768 --layers 10 --attn-heads 12 --ffn 2048)
log() { echo "[mpi_bench $(date +%H:%M:%S)] $*" >&2; }
busy() { top -b -n2 -d0.5 -w 200 2>/dev/null | awk '/^top -/{n++} n==2 && $1 ~ /^[0-9]+$/ && $9>5 && $12!="top" {printf "%s(%s%%) ", $12, $9}' | head -c 300; }
# one run: NAME CMD... ; each rank's peak RSS in NAME.rss.RANK
run() {
  local name=$1; shift
  log "load $(cut -d' ' -f1 /proc/loadavg) | $*"
  echo "$*" >>"$SCRATCH/commands.txt"
  rm -f "$SCRATCH/$name.jsonl"
  "$@" >"$SCRATCH/$name.out" 2>"$SCRATCH/$name.err" || { echo "FAILED: $* (see $SCRATCH/$name.err)" >&2; tail -5 "$SCRATCH/$name.err" >&2; exit 1; }
}
T="/usr/bin/time -f %M -o"
for r in $(seq 1 "$RUNS"); do
  n=1r1t.$r; run $n $T "$SCRATCH/$n.rss.0" "$MTP" train "${REF[@]}" --threads 1 --accum 2 --out "$SCRATCH/$n.mpk" --log "$SCRATCH/$n.jsonl"
  for mode in overlap blocking; do
    n=2r1t.$r; [ $mode = blocking ] && n=2r1tb.$r
    MTP_ALLREDUCE=$mode run $n "${MPI[@]}" -np 2 bash -c "exec $T $SCRATCH/$n.rss.\$OMPI_COMM_WORLD_RANK $MTP train ${REF[*]} --threads 1 --out $SCRATCH/$n.mpk --log $SCRATCH/$n.jsonl"
  done
  n=1r2t.$r; run $n $T "$SCRATCH/$n.rss.0" "$MTP" train "${REF[@]}" --threads 2 --accum 2 --out "$SCRATCH/$n.mpk" --log "$SCRATCH/$n.jsonl"
done
log "allreduce microbenchmark"
NREF=$("$MTP" info "$SCRATCH/1r1t.1.mpk" --json | $PY -c 'import json,sys; print(json.load(sys.stdin)["params"]["total"])')
run big $T "$SCRATCH/big.rss.0" "$MTP" train --data builtin:arith "${BIG[@]}" --batch 2 --precision "$PREC" --eval-every 0 \
  --eval-batches 1 --steps 4 --threads "$(nproc)" --token-cache "$SCRATCH/arith.tokens" --out "$SCRATCH/big.mpk" \
  --log "$SCRATCH/big.jsonl"
NBIG=$("$MTP" info "$SCRATCH/big.mpk" --json | $PY -c 'import json,sys; print(json.load(sys.stdin)["params"]["total"])')
run allreduce mpirun --allow-run-as-root --bind-to core -np 2 "$ARB" 1 16 256 4096 65536 1048576 "$NREF" "$NBIG"

$PY - "$SCRATCH" "$RUNS" "$WARM" "$PREC" "$NREF" "$NBIG" <<'PYEOF'
import json, statistics as st, sys, glob, os, subprocess
S, R, W, prec, nref, nbig = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
def steps(p): return [j for j in map(json.loads, open(p)) if j.get("type") == "step"]
def run_stats(name):
    s = steps(f"{S}/{name}.jsonl")[W:]
    tps = st.median(x["tokens"] / x["step_s"] for x in s)
    ar = st.median(x.get("allreduce_s", 0) / x["step_s"] for x in s)
    rss = [int(open(f).read().split()[-1]) for f in sorted(glob.glob(f"{S}/{name}.rss.*"))]
    return tps, ar, rss
cfgs = [("1r1t", "1 rank x 1 thread (--accum 2)"), ("2r1t", "2 ranks x 1 thread, overlapped sum"),
        ("2r1tb", "2 ranks x 1 thread, blocking sum"), ("1r2t", "1 rank x 2 threads (--accum 2)")]
res = {c: [run_stats(f"{c}.{r}") for r in range(1, R + 1)] for c, _ in cfgs}
med = {c: st.median(t for t, _, _ in res[c]) for c, _ in cfgs}
cpu = subprocess.run("lscpu | sed -n 's/^Model name: *//p'", shell=True, capture_output=True, text=True).stdout.strip()
print(f"# mtp data-parallel (MPI) benchmark\n\n- CPU: {cpu}, {os.cpu_count()} logical CPUs; precision {prec}; "
      f"reference model ({nref} parameters), global batch 32 rows x 256 tokens; {R} runs per configuration, "
      f"tokens/s of a run = median of its timed steps\n")
print("| configuration | tokens/s min / median / max | vs 1x1 (median) | allreduce share of a step (median of runs) | peak RSS per rank MiB |")
print("|---|---|---|---|---|")
for c, label in cfgs:
    t = sorted(x[0] for x in res[c])
    ar = st.median(x[1] for x in res[c])
    rss = res[c][0][2]
    print(f"| {label} | {t[0]:.0f} / {med[c]:.0f} / {t[-1]:.0f} | {med[c] / med['1r1t']:.2f}x | "
          f"{100 * ar:.2f}% | {' + '.join(str(r // 1024) for r in rss)} |")
print()
for a, b in (("2r1t", "1r2t"), ("2r1t", "2r1tb")):
    ra = sorted(x[0] for x in res[a]); rb = sorted(x[0] for x in res[b])
    print(f"- {a} / {b}: median {med[a] / med[b]:.2f}x (per-run min/max ratio {ra[0] / rb[-1]:.2f}..{ra[-1] / rb[0]:.2f})")
# identical results
def losses(name): return {j["step"]: j["loss"] for j in steps(f"{S}/{name}.jsonl")}
a, b, c = losses("1r1t.1"), losses("2r1t.1"), losses("2r1tb.1")
worst = max(abs(x - y) / abs(x) for s in a for x, y in zip(a[s], b[s]))
same = all(losses(f"2r1t.{r}") == b for r in range(1, R + 1)) and c == b
print(f"- losses, 2 ranks vs 1 process --accum 2: largest relative difference {worst:.2g} over {len(a)} steps x heads; "
      f"2-rank runs (overlapped and blocking, {R} each) identical to each other: {same}")
mv = 2 * 4 * nref
print(f"- ZeRO-1 would save (P-1)/P of the AdamW moments per rank: {mv / 2 / 2**20:.1f} MiB of {mv / 2**20:.1f} MiB at P=2 "
      f"(against a peak RSS of {res['2r1t'][0][2][0] // 1024} MiB per rank): not worth its all-gather here\n")
# allreduce
print("## MPI_Allreduce over loopback (2 ranks, shared memory, in place, float sum)\n")
print("| floats | bytes | median s | best s | algbw GB/s | busbw GB/s |\n|---|---|---|---|---|---|")
ar = [json.loads(l) for l in open(f"{S}/allreduce.out") if l.startswith("{")]
for x in ar:
    print(f"| {x['floats']} | {x['bytes']} | {x['median_s']:.6f} | {x['best_s']:.6f} | {x['algbw_GBps']:.2f} | {x['busbw_GBps']:.2f} |")
big = steps(f"{S}/big.jsonl")[1:]
tbig = st.median(x["tokens"] / x["step_s"] for x in big)
tref = max(med["1r2t"], med["2r1t"])
print(f"\n- one machine (this one, all {os.cpu_count()} CPUs): reference model {tref:.0f} tokens/s (best of 1r2t and 2r1t "
      f"medians), 100M config ({nbig} parameters, {' '.join(sys.argv[7:]) or 'dim 768, 10 layers, 12 attention heads, ffn 2048, 4 heads'}) "
      f"{tbig:.0f} tokens/s (--batch 2, median of 3 steps)\n")
# scaling model
lat = 50e-6  # per message of a ring step over TCP between machines (assumed; loopback is far lower)
G = 64 * 256  # the smallest global batch 64 machines can share: one row each
print(f"## Scaling model: step = compute / N + allreduce(N), global batch {G} tokens (64 rows x 256: one row a machine at N = 64)\n")
print(f"allreduce(N) = 2 (N-1)/N x gradient bytes / link bandwidth + 2 (N-1) x {lat * 1e6:.0f} us (ring; latency per "
      f"message assumed for TCP); compute = {G} tokens / one machine's tokens/s; no overlap counted.\n")
print("| model | link | N | compute / N s | allreduce s | step s | tokens/s | speedup | efficiency |\n|---|---|---|---|---|---|---|---|---|")
for mname, n, tps in (("reference 6.46M", nref, tref), ("100M", nbig, tbig)):
    for gbps in (10, 100):
        for N in (1, 2, 8, 64):
            comp = G / tps / N
            arr = 0.0 if N == 1 else 2 * (N - 1) / N * 4 * n / (gbps / 8 * 1e9) + 2 * (N - 1) * lat
            step = comp + arr
            sp = (G / tps) / step
            print(f"| {mname} | {gbps} Gb/s | {N} | {comp:.3f} | {arr:.4f} | {step:.3f} | {G / step:.0f} | {sp:.1f}x | {100 * sp / N:.0f}% |")
PYEOF
echo
echo "(scratch: $SCRATCH; load at end: $(cat /proc/loadavg))"
