#!/usr/bin/env bash
# The whole test suite on a fresh Debian/Ubuntu machine: installs what is
# missing, configures, builds with warnings as errors, and runs
#   1. every meson test on the best instruction set of this CPU,
#   2. the same suite again on each lower level (KF_CPU_MASK: AVX2, then
#      portable C), since every SIMD kernel must match the C reference,
#   3. the install + pkg-config consumer check,
#   4. fuzzing, ASan/UBSan, valgrind and ThreadSanitizer (robustness.sh),
#   5. the AArch64 build under qemu, so NEON is tested on every run.
# cmocka's own summaries reach the output. Set QUICK=1 to stop after 1.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

build=${BUILD_DIR:-build-test}
if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" --buildtype=release -Dwerror=true
fi
ninja -C "$build"

stages_passed=0
stages_failed=0
stage() {
    local name=$1
    shift
    echo
    echo "== $name =="
    local start=$SECONDS
    if "$@"; then
        stages_passed=$((stages_passed + 1))
        echo "== $name: passed in $((SECONDS - start)) s =="
    else
        stages_failed=$((stages_failed + 1))
        echo "== $name: FAILED after $((SECONDS - start)) s =="
    fi
}

"$build"/examples/tools/kf-info 2>/dev/null || true
stage "unit tests, best instruction set" \
    meson test -C "$build" --print-errorlogs -v

if [ -z "${QUICK:-}" ]; then
    if [ "$(uname -m)" = x86_64 ]; then
        stage "unit tests, KF_CPU_MASK=1 (AVX2)" \
            env KF_CPU_MASK=1 meson test -C "$build" --print-errorlogs -v
    fi
    stage "unit tests, KF_CPU_MASK=0 (portable C)" \
        env KF_CPU_MASK=0 meson test -C "$build" --print-errorlogs -v
    stage "install and pkg-config consumer" scripts/install-check.sh "$build"
    stage "robustness" env FUZZ_SECONDS="${FUZZ_SECONDS:-60}" scripts/robustness.sh
    if [ "$(uname -m)" = x86_64 ]; then
        stage "aarch64 NEON under qemu" cross/run-neon-tests.sh
    fi
fi

echo
echo "test-all: $stages_passed passed, $stages_failed failed"
[ "$stages_failed" -eq 0 ]
