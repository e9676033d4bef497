#!/usr/bin/env bash
# Robustness checks (doc/robustness.md): a library linked into someone
# else's inference server must never crash it, leak, race or corrupt its
# cache. Four stages, each in its own build directory:
#   fuzz      clang + libFuzzer + ASan/UBSan: replay the committed corpus,
#             then fuzz each target for FUZZ_SECONDS (default 60)
#   asan      gcc + ASan/UBSan: the whole `meson test` suite
#   valgrind  plain gcc build: memcheck over the library's compiled tests
#             and the corpus replays; definite leaks and memory errors fail
#   tsan      clang + ThreadSanitizer: tests/test_tsan (caches in pthreads,
#             concurrent queries, OpenMP inside one cache), with LLVM's
#             libomp and its Archer tool so OpenMP synchronisation is seen
# Exits non-zero if any stage fails; the last line is "N passed, N failed".
#
# Usage: scripts/robustness.sh [STAGE...]       (default: all four)
# Environment: FUZZ_SECONDS (60), ROBUSTNESS_DIR (build-robustness),
#              FUZZ_REFRESH_CORPUS=1 merges what the fuzzers found into
#              fuzz/corpus/ (then review and commit, keep it small).
set -uo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-60}
OUT=${ROBUSTNESS_DIR:-build-robustness}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(fuzz asan valgrind tsan)
fuzz_targets=(fuzz_api fuzz_kernels fuzz_loaders fuzz_cli)

passed=0
failed=0
failures=()
pass() { passed=$((passed + 1)); echo "PASS: $1"; }
fail() { failed=$((failed + 1)); failures+=("$1"); echo "FAIL: $1"; }
now() { date +%s; }

# ---- dependencies, installed only when missing ----
scripts/install-deps.sh clang valgrind libomp-dev || { echo "dependency install failed" >&2; exit 1; }
# libFuzzer and the sanitizer runtimes ship apart from clang on Debian
probe=$(mktemp -d)
printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' >"$probe/f.c"
if ! clang -fsanitize=fuzzer,address,undefined "$probe/f.c" -o "$probe/f" 2>/dev/null; then
    ver=$(clang -dumpversion | cut -d. -f1)
    scripts/install-deps.sh "libclang-rt-$ver-dev" || { echo "cannot install libclang-rt-$ver-dev" >&2; exit 1; }
fi
rm -rf "$probe"

# setup DIR ARGS...: configure once, reconfigure when the options differ
setup() {
    local dir=$1
    shift
    if [ -f "$dir/build.ninja" ]; then
        meson configure "$dir" "$@" >/dev/null
    else
        meson setup "$dir" "$@" >"$dir.setup.log" 2>&1 || { tail -20 "$dir.setup.log"; return 1; }
    fi
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

# ---- (a) libFuzzer ----
stage_fuzz() {
    local dir=$OUT/fuzz t0
    t0=$(now)
    echo "== fuzz: clang + libFuzzer + ASan/UBSan, ${FUZZ_SECONDS}s per target =="
    CC=clang setup "$dir" --buildtype=debugoptimized -Dfuzzing_engine=libfuzzer \
        -Db_sanitize=address,undefined -Db_lundef=false -Dwerror=false \
        "-Dc_args=-fsanitize=fuzzer-no-link -fno-sanitize-recover=all -fno-omit-frame-pointer" \
        || { fail "fuzz: configure"; return; }
    ninja -C "$dir" "${fuzz_targets[@]/#/fuzz/}" >"$dir.build.log" 2>&1 \
        || { tail -30 "$dir.build.log"; fail "fuzz: build"; return; }
    mkdir -p "$dir/artifacts"
    for t in "${fuzz_targets[@]}"; do
        local exe=$dir/fuzz/$t work=$dir/corpus/$t log=$dir/$t.log
        # the committed corpus first, unchanged
        if "$exe" -runs=0 "fuzz/corpus/$t" >"$log.replay" 2>&1; then
            pass "fuzz: $t corpus replay ($(ls "fuzz/corpus/$t" | wc -l) inputs)"
        else
            tail -40 "$log.replay"
            fail "fuzz: $t corpus replay"
            continue
        fi
        # then fuzz from a scratch copy of it
        mkdir -p "$work"
        cp -n "fuzz/corpus/$t"/* "$work"/ 2>/dev/null
        local max_len=4096 quiet=()
        [ "$t" = fuzz_loaders ] && max_len=8192
        # the example programs print usage and errors: keep the log readable
        [ "$t" = fuzz_cli ] && quiet=(-close_fd_mask=3)
        "$exe" "$work" -max_total_time="$FUZZ_SECONDS" -max_len=$max_len "${quiet[@]}" \
            -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
            -artifact_prefix="$dir/artifacts/$t-" >"$log" 2>&1
        local rc=$? runs
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        if [ $rc -eq 0 ]; then
            pass "fuzz: $t ${runs:-?} executions in ${FUZZ_SECONDS}s"
        else
            grep -E "ERROR|check failed|runtime error|SUMMARY" "$log" | head -20
            echo "reproduce: $exe $(ls -t "$dir/artifacts/$t-"* 2>/dev/null | head -1)"
            fail "fuzz: $t (see $log)"
        fi
        if [ "${FUZZ_REFRESH_CORPUS:-0}" = 1 ]; then
            "$exe" -merge=1 "fuzz/corpus/$t" "$work" >"$log.merge" 2>&1
        fi
    done
    echo "fuzz stage: $(($(now) - t0))s"
}

# ---- (b) gcc ASan + UBSan over the whole suite ----
stage_asan() {
    local dir=$OUT/asan t0
    t0=$(now)
    echo "== asan: gcc + ASan/UBSan, meson test =="
    CC=gcc setup "$dir" --buildtype=debugoptimized -Db_sanitize=address,undefined \
        -Db_lundef=false -Dwerror=false \
        || { fail "asan: configure"; return; }
    ninja -C "$dir" >"$dir.build.log" 2>&1 || { tail -30 "$dir.build.log"; fail "asan: build"; return; }
    if meson test -C "$dir" --no-rebuild --print-errorlogs --timeout-multiplier 4 \
        >"$dir.test.log" 2>&1; then
        pass "asan: meson test ($(grep -E '^Ok:' "$dir.test.log" | tr -s ' '))"
    else
        tail -60 "$dir.test.log"
        fail "asan: meson test"
    fi
    grep -E '^(Ok|Fail|Skipped|Timeout):' "$dir.test.log"
    echo "asan stage: $(($(now) - t0))s"
}

# ---- (c) valgrind memcheck over the unit tests and corpus replays ----
stage_valgrind() {
    local dir=$OUT/plain t0
    t0=$(now)
    echo "== valgrind: memcheck, definite leaks fail =="
    CC=gcc setup "$dir" --buildtype=debugoptimized -Dwerror=false \
        || { fail "valgrind: configure"; return; }
    ninja -C "$dir" >"$dir.build.log" 2>&1 || { tail -30 "$dir.build.log"; fail "valgrind: build"; return; }
    # the library's compiled tests and the fuzz corpus replays: not the
    # scripts (python, doxygen), not the example engine's and evaluator's
    # model runs (minutes each under valgrind), not test_tsan (a threading
    # test, serialised by valgrind; the tsan and asan stages run it)
    local names
    names=$(meson introspect --tests "$dir" | python3 -c '
import json, os, sys
build = os.path.realpath(sys.argv[1])
for t in json.load(sys.stdin):
    exe = os.path.realpath(t["cmd"][0])
    suites = " ".join(t["suite"])
    if exe.startswith(build + "/") and "engine" not in suites \
            and "eval" not in suites and t["name"] != "tsan":
        print(t["name"])' "$dir")
    local vg="valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite -q"
    # shellcheck disable=SC2086
    if meson test -C "$dir" --no-rebuild --print-errorlogs --timeout-multiplier 20 \
        --wrapper "$vg" $names >"$dir.valgrind.log" 2>&1; then
        pass "valgrind: $(echo $names | wc -w) test programs"
    else
        tail -60 "$dir.valgrind.log"
        fail "valgrind"
    fi
    grep -E '^(Ok|Fail|Skipped|Timeout):' "$dir.valgrind.log"
    echo "valgrind stage: $(($(now) - t0))s"
}

# ---- (d) ThreadSanitizer ----
stage_tsan() {
    local dir=$OUT/tsan t0
    t0=$(now)
    echo "== tsan: clang + ThreadSanitizer + libomp/Archer =="
    CC=clang setup "$dir" --buildtype=debugoptimized -Db_sanitize=thread \
        -Db_lundef=false -Dwerror=false \
        || { fail "tsan: configure"; return; }
    ninja -C "$dir" tests/test_tsan tests/test_properties >"$dir.build.log" 2>&1 \
        || { tail -30 "$dir.build.log"; fail "tsan: build"; return; }
    # libomp is not instrumented: Archer (LLVM's OpenMP tool for TSan)
    # tells TSan about OpenMP's barriers and tasks, and TSan ignores the
    # runtime's own internals. Without Archer, OpenMP stays single-threaded
    # (OMP_THREAD_LIMIT=1) and only the pthread part is meaningful.
    local archer omp_env
    archer=$(ls /usr/lib/llvm-*/lib/libarcher.so 2>/dev/null | sort -V | tail -1)
    if [ -n "$archer" ]; then
        omp_env=(OMP_TOOL_LIBRARIES="$archer")
    else
        echo "warning: no libarcher.so: OpenMP limited to one thread under TSan"
        omp_env=(OMP_THREAD_LIMIT=1)
    fi
    local t
    for t in test_tsan test_properties; do
        if env "${omp_env[@]}" TSAN_OPTIONS="halt_on_error=1 ignore_noninstrumented_modules=1 second_deadlock_stack=1" \
            "$dir/tests/$t" >"$dir/$t.log" 2>&1; then
            pass "tsan: $t ($(grep -E 'PASSED' "$dir/$t.log" | tr -s ' '))"
        else
            grep -v '^    #' "$dir/$t.log" | tail -40
            fail "tsan: $t"
        fi
    done
    echo "tsan stage: $(($(now) - t0))s"
}

start=$(now)
for s in "${stages[@]}"; do
    case $s in
    fuzz) stage_fuzz ;;
    asan) stage_asan ;;
    valgrind) stage_valgrind ;;
    tsan) stage_tsan ;;
    *) echo "unknown stage: $s (fuzz, asan, valgrind, tsan)" >&2; exit 2 ;;
    esac
done
echo "robustness: $(($(now) - start))s"
for f in "${failures[@]}"; do echo "  failed: $f"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
