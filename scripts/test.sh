#!/usr/bin/env bash
# The README's test command: about 5 minutes on 2 cores. Installs what is
# missing (scripts/install-deps.sh: apt packages only), configures and
# builds in ./build-test with warnings as errors, then runs
#   1. every meson test (unit, SIMD variant vs C for each instruction set
#      this CPU has, engine parity with the reference logits, the bundled
#      dev set against its reference figures, docs and snippets) on the
#      best instruction set of this CPU,
#   2. the library's own suites again on each lower level (KF_CPU_MASK:
#      AVX2, then portable C), so every dispatch path runs,
#   3. the install + pkg-config consumer check (into a temporary prefix).
# cmocka's own summaries reach the output. The long stages (fuzzing,
# sanitizers, valgrind, TSan, NEON under qemu) are scripts/test-long.sh.
# Environment: BUILD_DIR (build-test).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/stages.sh

scripts/install-deps.sh
build=${BUILD_DIR:-build-test}
configure_build "$build"

"$build"/examples/tools/kf-info 2>/dev/null || true
stage "meson test, best instruction set" \
    meson test -C "$build" --no-rebuild --print-errorlogs -v

# the model-running suites do not depend on the dispatch level beyond what
# stage 1 and the SIMD tests cover; the library's suites run at every level
library_suites=(--no-suite engine --no-suite eval)
if [ "$(uname -m)" = x86_64 ]; then
    stage "library suites, KF_CPU_MASK=1 (AVX2)" env KF_CPU_MASK=1 \
        meson test -C "$build" --no-rebuild --print-errorlogs "${library_suites[@]}"
fi
stage "library suites, KF_CPU_MASK=0 (portable C)" env KF_CPU_MASK=0 \
    meson test -C "$build" --no-rebuild --print-errorlogs "${library_suites[@]}"
stage "install and pkg-config consumer" scripts/install-check.sh "$build"

stages_summary test
