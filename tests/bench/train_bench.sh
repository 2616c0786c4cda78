#!/usr/bin/env bash
# Training benchmark of mtp (reports, does not assert).
#
#   tests/bench/train_bench.sh [--quick] [--quality] [--quality-lr LR] [--quality-seconds S]
#                              [--build DIR] [--scratch DIR]
#
# Runs, for the reference model (the trainer's defaults: vocab 259, dim 256, 4 layers, 8 attention
# heads, ffn 688, ctx 256, batch 16, n=4 transformer heads, on builtin:arith):
#   1. tokens/s (median over the steps after the first 2, plus min/max) and peak RSS
#      (/usr/bin/time -f %M, whole process) at 1 and 2 threads, fp32 and bf16;
#   2. MFU = median(matmul_flops/step_s) / oneDNN peak measured here by mtp_peak at the same
#      thread count and precision;
#   3. peak RSS of n=4 / n=1 (--heads 1), bf16, 1 thread, and the same ratio for the PyTorch peer;
#   4. the PyTorch peer (tests/bench/torch_peer.py, bf16 autocast, vocab 259) at 1 and 2 threads:
#      mtp tokens/s / torch tokens/s.
#   --quality also runs 5.: the reference model on tinyshakespeare, bf16, 2 threads, for about
#      --quality-seconds (default 600) of training; steps computed from the measured 2-thread bf16
#      tokens/s; final head-1..4 validation loss over the whole validation split (mtp eval).
#
# A Markdown report goes to stdout, progress to stderr; logs stay in the scratch folder
# (default /tmp/mtp_train_bench.<date>). Every command is printed so it can be rerun.
# Timings are only meaningful on an otherwise idle machine: the 1-minute load average and the
# busiest other processes are printed at the start and before every measurement.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$ROOT/build
QUICK=0
QUALITY=0
QLR=2e-3
QSECONDS=600
SCRATCH=/tmp/mtp_train_bench.$(date +%Y%m%d-%H%M%S)
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --quality) QUALITY=1 ;;
    --quality-lr) QLR=$2; shift ;;
    --quality-seconds) QSECONDS=$2; shift ;;
    --build) BUILD=$2; shift ;;
    --scratch) SCRATCH=$2; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "train_bench.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

MTP=$BUILD/bin/mtp
PEAK=$BUILD/bin/mtp_peak
PY=/usr/bin/python3
TORCH_PEER=$ROOT/tests/bench/torch_peer.py
DATA_TXT=$ROOT/../shared/data/tinyshakespeare.txt
[ -x "$MTP" ] && [ -x "$PEAK" ] || { echo "build first: cmake -S . -B build && cmake --build build -j2 (needs $MTP and $PEAK)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install -y time)" >&2; exit 1; }

if [ $QUICK = 1 ]; then MTP_TIMED=4; TORCH_TIMED=3; PEAK_S=1.0; else MTP_TIMED=8; TORCH_TIMED=6; PEAK_S=2.5; fi
WARM=2
mkdir -p "$SCRATCH"
REPORT=$SCRATCH/report.md
CMDS=$SCRATCH/commands.txt
: >"$REPORT"; : >"$CMDS"

log() { echo "[train_bench $(date +%H:%M:%S)] $*" >&2; }
load1() { cut -d' ' -f1 /proc/loadavg; }
# processes using > 5% of a CPU right now (top, 0.5 s sample)
busy() { top -b -n2 -d0.5 -w 200 2>/dev/null | awk '/^top -/{n++} n==2 && $1 ~ /^[0-9]+$/ && $9>5 && $12!="top" {printf "%s(%s%%) ", $12, $9}' | head -c 300; }
run_cmd() { # run_cmd NAME CMD...: prints and records the command; peak RSS (KiB) -> NAME.rss, CPU% -> NAME.cpu
  local name=$1; shift
  echo "$*" >>"$CMDS"
  log "load1 $(load1) | + $*"
  echo "$(load1)" >"$SCRATCH/$name.load"
  /usr/bin/time -o "$SCRATCH/$name.time" -f '%M %e %U %S' "$@" >"$SCRATCH/$name.out" 2>"$SCRATCH/$name.err" || {
    echo "FAILED: $* (see $SCRATCH/$name.err)" >&2; tail -5 "$SCRATCH/$name.err" >&2; return 1; }
  # the CPU the process got: (user + sys) / wall; ~100% x threads on an idle machine
  tail -1 "$SCRATCH/$name.time" | awk '{print $1}' >"$SCRATCH/$name.rss"
  tail -1 "$SCRATCH/$name.time" | awk '{printf "%.0f\n", ($2 > 0 ? 100 * ($3 + $4) / $2 : 0)}' >"$SCRATCH/$name.cpu"
}

# ---- header ---------------------------------------------------------------------------------------
CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
FLAGS=$(grep -o -w 'avx512f\|avx512_bf16\|amx_bf16\|avx512_vnni' /proc/cpuinfo | sort -u | tr '\n' ' ')
L1=$(load1)
NCPU=$(nproc)
{
  echo "# mtp training benchmark"
  echo
  echo "- date: $(date -Is)"
  echo "- host: $(hostname), CPU: $CPU, $NCPU logical CPUs; flags: $FLAGS"
  echo "- git: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$ROOT" && [ -n "$(git status --porcelain 2>/dev/null)" ] && echo ' (dirty tree)')"
  echo "- mode: $([ $QUICK = 1 ] && echo quick || echo full): mtp $WARM warm-up + $MTP_TIMED timed steps, torch $WARM + $TORCH_TIMED"
  echo "- scratch (logs): $SCRATCH"
  echo "- load average at start: $(cat /proc/loadavg)"
  if awk -v l="$L1" 'BEGIN{exit !(l > 0.3)}'; then
    echo
    echo "**WARNING: the machine is busy (1-minute load $L1 on $NCPU CPUs before the benchmark started; busiest: $(busy)). Timings are noisy and likely low, 2-thread figures most of all.**"
  fi
} >>"$REPORT"
cat "$REPORT" >&2

# ---- 1+2: oneDNN peak and mtp training speed / RSS ------------------------------------------------
mtp_stats() { # mtp_stats LOG PEAK_GFLOPS -> "median min max mfu achieved_gflops nsteps"
  $PY - "$1" "$2" "$WARM" <<'EOF'
import json, statistics, sys
log, peak, warm = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
st = [json.loads(l) for l in open(log) if l.strip()]
st = [s for s in st if s.get("type") == "step"][warm:]
tps = [s["tokens"] / s["step_s"] for s in st]
fl = [s["matmul_flops"] / s["step_s"] / 1e9 for s in st]
med = statistics.median(tps); g = statistics.median(fl)
print(f"{med:.0f} {min(tps):.0f} {max(tps):.0f} {100*g/peak:.1f} {g:.1f} {len(st)}")
EOF
}
declare -A TPS PEAKG IMPL RSS
ROWS=()
STEPS=$((WARM + MTP_TIMED))
for prec in fp32 bf16; do
  for p in 1 2; do
    k=$prec.$p
    run_cmd peak.$k "$PEAK" --threads $p --precision $prec --seconds $PEAK_S
    IMPL[$k]=$(tail -1 "$SCRATCH/peak.$k.out" | $PY -c 'import json,sys; d=json.load(sys.stdin); print(d["impl"] if d["impl"]==d["impl_model"] else d["impl"]+"/"+d["impl_model"])')
    rm -f "$SCRATCH/mtp.$k.jsonl"
    run_cmd mtp.$k "$MTP" train --data builtin:arith --out "$SCRATCH/mtp.$k.mpk" --steps $STEPS --threads $p \
      --precision $prec --eval-every 0 --eval-batches 1 --log "$SCRATCH/mtp.$k.jsonl"
    # peak again right after the run; the larger of the two is the denominator (a busy machine only lowers it)
    run_cmd peak2.$k "$PEAK" --threads $p --precision $prec --seconds $PEAK_S
    pk1=$(tail -1 "$SCRATCH/peak.$k.out" | $PY -c 'import json,sys; print(json.load(sys.stdin)["peak_gflops"])')
    pk2=$(tail -1 "$SCRATCH/peak2.$k.out" | $PY -c 'import json,sys; print(json.load(sys.stdin)["peak_gflops"])')
    PEAKG[$k]=$($PY -c "print(max($pk1, $pk2))")
    read -r med mn mx mfu ach n < <(mtp_stats "$SCRATCH/mtp.$k.jsonl" "${PEAKG[$k]}")
    TPS[$k]=$med; RSS[$k]=$(cat "$SCRATCH/mtp.$k.rss")
    ROWS+=("| $prec | $p | $med | $mn / $mx | $ach | ${PEAKG[$k]} ($pk1 / $pk2) | ${IMPL[$k]} | **$mfu%** | $((RSS[$k] / 1024)) | $(cat "$SCRATCH/mtp.$k.load") | $(cat "$SCRATCH/mtp.$k.cpu")% |")
  done
done
{
  echo
  echo "## 1-2. mtp tokens/s, peak RSS, MFU (reference model, n=4, builtin:arith)"
  echo
  echo "tokens/s: median (min / max) over $MTP_TIMED steps after $WARM warm-up steps, from the log's step_s."
  echo "MFU = median(matmul_flops / step_s) / mtp_peak GFLOP/s (best of 2048^3 and 4096x1376x256, same threads and"
  echo "precision, measured just before and just after the training run; the larger is used). matmul_flops counts"
  echo "the products as executed (causal attention skips the blocks above the diagonal, so those are not counted)."
  echo "RSS: /usr/bin/time %M of the whole mtp process. load1 = 1-minute load average just before the run;"
  echo "CPU = (user + sys) / wall of the whole process (incl. start-up and the final save), about 100% x threads when"
  echo "the process had its cores to itself: much less means other work took them and the tokens/s are low."
  echo
  echo "| precision | threads | tokens/s (median) | min / max | matmul GFLOP/s | oneDNN peak GFLOP/s (before / after) | impl | MFU | peak RSS MiB | load1 | CPU |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
} >>"$REPORT"

# ---- 3: RSS n=4 / n=1 -----------------------------------------------------------------------------
rm -f "$SCRATCH/mtp.bf16.1.h1.jsonl"
run_cmd mtp.bf16.1.h1 "$MTP" train --data builtin:arith --out "$SCRATCH/mtp.bf16.1.h1.mpk" --steps $STEPS --threads 1 \
  --precision bf16 --heads 1 --eval-every 0 --eval-batches 1 --log "$SCRATCH/mtp.bf16.1.h1.jsonl"
read -r h1med _ _ _ _ _ < <(mtp_stats "$SCRATCH/mtp.bf16.1.h1.jsonl" 1)
RSS_H1=$(cat "$SCRATCH/mtp.bf16.1.h1.rss")

# ---- 4: PyTorch peer ------------------------------------------------------------------------------
torch_field() { tail -1 "$SCRATCH/$1.out" | $PY -c "import json,sys; d=json.load(sys.stdin); v=d.get('$2'); print(round(v) if isinstance(v,(int,float)) else '?')"; }
declare -A TT TTMIN TTMAX TRSS 
for cfg in "1 4" "2 4" "1 1"; do
  read -r p h <<<"$cfg"
  k=torch.$p.h$h
  run_cmd $k timeout 900 $PY "$TORCH_PEER" --threads $p --precision bf16 --heads $h --vocab 259 \
    --steps $TORCH_TIMED --warmup-steps $WARM
  TT[$k]=$(torch_field $k tokens_per_s)
  TTMIN[$k]=$(torch_field $k tokens_per_s_min)
  TTMAX[$k]=$(torch_field $k tokens_per_s_max)
  TRSS[$k]=$(cat "$SCRATCH/$k.rss")
done
ratio() { $PY -c "print(f'{$1/$2:.2f}')"; }
{
  echo
  echo "## 3. peak RSS with n=4 heads / n=1 (same trunk, bf16, 1 thread)"
  echo
  echo "| | n=4 peak RSS MiB | n=1 peak RSS MiB | ratio (target <= 1.15) |"
  echo "|---|---|---|---|"
  echo "| mtp | $((RSS[bf16.1] / 1024)) | $((RSS_H1 / 1024)) | **$(ratio "${RSS[bf16.1]}" "$RSS_H1")** |"
  echo "| PyTorch peer | $((TRSS[torch.1.h4] / 1024)) | $((TRSS[torch.1.h1] / 1024)) | $(ratio "${TRSS[torch.1.h4]}" "${TRSS[torch.1.h1]}") |"
  echo
  echo "(mtp n=1 runs at $h1med tokens/s; torch n=1 at ${TT[torch.1.h1]} tokens/s.)"
  echo
  echo "## 4. mtp vs the PyTorch peer (bf16: torch autocast, same model with vocab 259, random tokens)"
  echo
  echo "| threads | mtp tokens/s | torch tokens/s (median, min / max) | torch peak RSS MiB | torch CPU | mtp / torch (target >= 2) |"
  echo "|---|---|---|---|---|---|"
  for p in 1 2; do
    k=torch.$p.h4
    echo "| $p | ${TPS[bf16.$p]} | ${TT[$k]} (${TTMIN[$k]} / ${TTMAX[$k]}) | $((TRSS[$k] / 1024)) | $(cat "$SCRATCH/$k.cpu")% | **$(ratio "${TPS[bf16.$p]}" "${TT[$k]}")** |"
  done
} >>"$REPORT"

# ---- 5: quality (optional) ------------------------------------------------------------------------
if [ $QUALITY = 1 ]; then
  # training time ~ QSECONDS: steps at the measured 2-thread bf16 speed, ~5% of it left for evaluations
  QSTEPS=$($PY -c "print(int(0.95 * $QSECONDS * ${TPS[bf16.2]} / 4096))")
  QWARM=$(( (QSTEPS + 10) / 20 ))
  QEVAL=$(( (QSTEPS + 4) / 5 ))
  rm -f "$SCRATCH/quality.jsonl"
  T0=$(date +%s)
  run_cmd quality "$MTP" train --data "$DATA_TXT" --out "$SCRATCH/quality.mpk" --steps $QSTEPS --warmup $QWARM \
    --lr $QLR --threads 2 --precision bf16 --eval-every $QEVAL --eval-batches 16 --log "$SCRATCH/quality.jsonl"
  T1=$(date +%s)
  run_cmd quality.eval "$MTP" eval --model "$SCRATCH/quality.mpk" --data "$DATA_TXT" --batches 0 --threads 2 --json
  {
    echo
    echo "## 5. quality: tinyshakespeare, bf16, 2 threads, lr $QLR, $QSTEPS steps (warmup $QWARM), $((T1 - T0)) s wall"
    echo
    echo "Validation curve (head-1..4 loss, nats/byte, --eval-batches 16):"
    echo
    echo '```'
    $PY - "$SCRATCH/quality.jsonl" <<'EOF'
import json, sys
for l in open(sys.argv[1]):
    d = json.loads(l)
    if d.get("type") != "step":
        print(" ".join(f"{k}={v}" for k, v in d.items()))
EOF
    echo '```'
    echo
    echo "Final, whole validation split (mtp eval --batches 0):"
    echo
    echo "| head | loss (nats/byte) | top-1 accuracy |"
    echo "|---|---|---|"
    $PY - "$SCRATCH/quality.eval.out" <<'EOF'
import json, sys
d = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
for h in d["heads"]:
    print("| %d | %.4f | %.1f%% |" % (h["head"], h["loss"], 100 * h["accuracy"]))
print("\n(%d tokens; target: head-1 <= 2.0)" % d["tokens"])
EOF
  } >>"$REPORT"
fi

{
  echo
  echo "## Commands (each ran under /usr/bin/time -f '%M %e %U %S')"
  echo
  echo '```'
  cat "$CMDS"
  echo '```'
  echo
  echo "- load average at the end: $(cat /proc/loadavg)"
} >>"$REPORT"
cat "$REPORT"
