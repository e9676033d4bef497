#!/usr/bin/env bash
# The long stages, after scripts/test.sh (about 20-30 minutes on 2 cores):
#   1. the whole meson suite once per lower instruction-set level,
#   2. fuzzing, ASan/UBSan, valgrind and ThreadSanitizer (robustness.sh,
#      FUZZ_SECONDS per fuzz target, default 60), in ./build-robustness,
#   3. the AArch64 build with its NEON kernels under qemu, in ./build-neon,
#   4. on x86-64, the AVX-512 kernels against C through SIMDe's portable
#      AVX-512, so they are checked on CPUs without it (./build-avx512-emu),
#   5. llama.cpp as a host (scripts/stage-llama-cpp.sh): llama.cpp's source
#      from the npm package node-llama-cpp, built into ./build-llama-prefix;
#      kf-llama and kf-eval-llama against kf-generate and kf-eval (./build-llama).
# System changes beyond scripts/test.sh: apt installs clang, valgrind,
# libomp-dev and libclang-rt-<version>-dev; on x86-64 it also adds the
# arm64 dpkg architecture and installs gcc-aarch64-linux-gnu,
# libc6-dev-arm64-cross, qemu-user, libcmocka-dev:arm64, libgomp1:arm64
# and libsimde-dev; the llama.cpp stage installs npm, git and cmake when
# missing (npm's cache goes to ~/.npm). LLAMA_CPP_PREFIX=DIR uses an
# installed llama.cpp instead of building one.
# Environment: BUILD_DIR (build-test), FUZZ_SECONDS (60).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/stages.sh

scripts/install-deps.sh
build=${BUILD_DIR:-build-test}
configure_build "$build"

if [ "$(uname -m)" = x86_64 ]; then
    stage "meson test, KF_CPU_MASK=1 (AVX2)" \
        env KF_CPU_MASK=1 meson test -C "$build" --no-rebuild --print-errorlogs -v
fi
stage "meson test, KF_CPU_MASK=0 (portable C)" \
    env KF_CPU_MASK=0 meson test -C "$build" --no-rebuild --print-errorlogs -v
stage "robustness" env FUZZ_SECONDS="${FUZZ_SECONDS:-60}" scripts/robustness.sh
if [ "$(uname -m)" = x86_64 ]; then
    stage "aarch64 NEON under qemu" cross/run-neon-tests.sh
    stage "AVX-512 kernels under emulation (SIMDe)" cross/run-avx512-emulated.sh
fi
if [ -n "${LLAMA_CPP_PREFIX:-}" ]; then
    stage "llama.cpp host" scripts/stage-llama-cpp.sh --prefix "$LLAMA_CPP_PREFIX"
else
    stage "llama.cpp host" scripts/stage-llama-cpp.sh
fi

stages_summary test-long
