#!/usr/bin/env bash
# tests/fuzz/run.sh [SECONDS] [TARGET...]   fuzz every target (or those named) for SECONDS each
#                                            (default 60), one after the other
# tests/fuzz/run.sh --replay [TARGET...]     run the inputs of tests/fuzz/regressions/<target>/,
#                                            the committed seeds and those made (if any) once each
#
# Builds the fuzzers into build-fuzz (clang, -DMTP_FUZZ=ON: ASan + UBSan + libFuzzer), makes the
# seeds (tests/fuzz/seeds.sh, which needs the Release executable build/bin/mtp and builds it when
# missing), then runs each target with libFuzzer on its working corpus build-fuzz/corpus/<target>
# (kept between runs, so each run starts where the last one stopped) and the seeds. It prints per
# target the executions, the coverage libFuzzer reports at the end (cov: edges, ft: features),
# the executions per second and the result. Any crash, leak, UBSan report, timeout (10 s for one
# input) or out-of-memory (2 GB) is a failure: libFuzzer writes the input under
# build-fuzz/artifacts/<target>/ (crash-*, leak-*, timeout-*, oom-*), the log is
# build-fuzz/logs/<target>.log, and the exit status is 1. Copy a crashing input into
# tests/fuzz/regressions/<target>/ to keep it as a regression test (--replay runs those).
#
# Environment: BUILD (default build-fuzz), FUZZ_FLAGS (more libFuzzer flags, e.g. -jobs=2
# -workers=2), MTP_FUZZ_TOKCACHE_DIR (fuzz_tokcache's folder, see fuzz_tokcache.c).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
FUZZ=$ROOT/tests/fuzz
BUILD=${BUILD:-$ROOT/build-fuzz}
ALL=(checkpoint tokenizer tokcache jsonl bpe_merges prompts data_spec)

replay=0
seconds=60
if [[ ${1:-} == --replay ]]; then replay=1; shift
elif [[ ${1:-} =~ ^[0-9]+$ ]]; then seconds=$1; shift; fi
if [[ ${1:-} == -h || ${1:-} == --help ]]; then sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0; fi
targets=("$@")
((${#targets[@]})) || targets=("${ALL[@]}")
for t in "${targets[@]}"; do
    [[ " ${ALL[*]} " == *" $t "* ]] || { echo "run.sh: unknown target '$t' (targets: ${ALL[*]})"; exit 2; }
done

if [[ -z ${MTP_FUZZ_TOKCACHE_DIR:-} ]]; then
    if [[ -d /dev/shm && -w /dev/shm ]]; then MTP_FUZZ_TOKCACHE_DIR=/dev/shm/mtp-fuzz-tokcache
    else MTP_FUZZ_TOKCACHE_DIR=/tmp/mtp-fuzz-tokcache; fi
fi
export MTP_FUZZ_TOKCACHE_DIR
# one thread (the token cache check is an OpenMP loop); every sanitizer report is fatal
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# ---- build ----
command -v clang >/dev/null || { echo "run.sh: clang is needed (apt-get install clang)"; exit 2; }
mkdir -p "$BUILD/logs"
echo "run.sh: building the fuzzers in $BUILD (log: $BUILD/logs/build.log)"
if ! { CC=clang cmake -S "$ROOT" -B "$BUILD" -DMTP_FUZZ=ON && cmake --build "$BUILD" -j2 --target fuzzers; } \
    >"$BUILD/logs/build.log" 2>&1; then
    tail -30 "$BUILD/logs/build.log"
    echo "run.sh: the build failed"
    exit 2
fi

dict_of() {
    case $1 in
    checkpoint | tokenizer | tokcache) echo "$FUZZ/msgpack.dict" ;;
    jsonl | prompts) echo "$FUZZ/json.dict" ;;
    data_spec) echo "$FUZZ/data_spec.dict" ;;
    esac
}

# ---- replay ----
if ((replay)); then
    status=0
    for t in "${targets[@]}"; do
        files=()
        for d in "$FUZZ/regressions/$t" "$FUZZ/seeds/$t" "$BUILD/seeds/$t"; do
            [[ -d $d ]] && while IFS= read -r f; do files+=("$f"); done < <(find "$d" -type f | sort)
        done
        if ((${#files[@]} == 0)); then
            printf '%-11s no inputs\n' "$t"
            continue
        fi
        log=$BUILD/logs/replay-$t.log
        # shellcheck disable=SC2086
        if "$BUILD/bin/fuzz_$t" -runs=1 -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 ${FUZZ_FLAGS:-} \
            "${files[@]}" >"$log" 2>&1; then
            printf '%-11s %4d inputs  ok\n' "$t" "${#files[@]}"
        else
            printf '%-11s %4d inputs  FAILED (log: %s)\n' "$t" "${#files[@]}" "$log"
            grep -E "^Running: " "$log" | tail -1
            grep -m3 -E "ERROR: |runtime error|fuzz check failed" "$log"
            status=1
        fi
    done
    exit $status
fi

# ---- fuzz ----
echo "run.sh: making the seeds (log: $BUILD/logs/seeds.log)"
if ! FUZZ_BIN=$BUILD/bin bash "$FUZZ/seeds.sh" "$BUILD/seeds" >"$BUILD/logs/seeds.log" 2>&1; then
    cat "$BUILD/logs/seeds.log"
    echo "run.sh: making the seeds failed"
    exit 2
fi
echo "run.sh: fuzzing ${targets[*]} for $seconds s each"
printf '%-11s %12s %7s %7s %9s  %s\n' target executions cov ft exec/s result
status=0
for t in "${targets[@]}"; do
    corpus=$BUILD/corpus/$t art=$BUILD/artifacts/$t log=$BUILD/logs/$t.log
    mkdir -p "$corpus"
    rm -rf "$art" && mkdir -p "$art"
    seeds=()
    for d in "$BUILD/seeds/$t" "$FUZZ/seeds/$t"; do [[ -d $d ]] && seeds+=("$d"); done
    dict=$(dict_of "$t")
    # shellcheck disable=SC2086
    "$BUILD/bin/fuzz_$t" -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$art/" -timeout=10 \
        -rss_limit_mb=2048 -malloc_limit_mb=2048 ${dict:+-dict="$dict"} ${FUZZ_FLAGS:-} "$corpus" "${seeds[@]}" \
        >"$log" 2>&1
    rc=$?
    execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | awk '{s += $2} END {print s + 0}')
    speed=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" | awk '{s += $2} END {print s + 0}')
    last=$(grep -E '^#[0-9]+.* cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)
    cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
    ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
    found=$(find "$art" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | sort)
    if [[ $rc -eq 0 && -z $found ]]; then result="ok: no crash, leak or UBSan report"
    else
        status=1
        result="FAILED (exit $rc; log $log)"
    fi
    printf '%-11s %12s %7s %7s %9s  %s\n' "$t" "$execs" "${cov:-?}" "${ft:-?}" "$speed" "$result"
    if [[ -n $found ]]; then
        while IFS= read -r f; do echo "            reproducer: $f"; done <<<"$found"
    fi
    if ((rc != 0)); then
        grep -m3 -E "ERROR: |runtime error|fuzz check failed|SUMMARY" "$log" | sed 's/^/            /'
    fi
done
exit $status
