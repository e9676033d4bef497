#!/usr/bin/env bash
# The llama.cpp stage: kf-llama and its tests (parity with kf-generate,
# llama.cpp's cells against the library's, the adapter's refusals) against
# a llama.cpp built here.
#
#   scripts/stage-llama-cpp.sh [--source DIR | --prefix DIR]
#
# Default: gets llama.cpp's source with scripts/get-llama-cpp.sh into
# ./build-llama-src (unless already there), builds and installs it with
# scripts/build-llama-cpp.sh into ./build-llama-prefix (unless the prefix
# already holds that commit's build), configures ./build-llama with
# -Dllama_cpp=<prefix>, builds kf-llama, kf-eval-llama, kf-generate, kf-eval and kf-convert-gguf,
# and runs the meson suite 'llama'. --source DIR uses an existing source
# tree; --prefix DIR an existing install prefix (nothing is built).
# The last line is "stage-llama-cpp: N passed, N failed, N skipped".
#
# System changes: those of get-llama-cpp.sh (npm, git via apt when
# missing) and build-llama-cpp.sh (cmake via apt when missing). Everything
# else stays inside the checkout (build-llama*, ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

src=$root/build-llama-src
prefix=$root/build-llama-prefix
given_prefix=
case "${1:-}" in
    --source) src=$(cd "$2" && pwd) ;;
    --prefix) prefix=$(cd "$2" && pwd); given_prefix=yes ;;
    "") ;;
    *) echo "usage: $0 [--source DIR | --prefix DIR]" >&2; exit 2 ;;
esac
build=$root/build-llama

if [ -z "$given_prefix" ]; then
    if [ "${1:-}" != --source ] && ! scripts/get-llama-cpp.sh "$src"; then
        # no source (no npm registry here): nothing to test, said as skipped
        echo "stage-llama-cpp: 0 passed, 0 failed, 1 skipped (llama.cpp's source could not be fetched)"
        exit 0
    fi
    commit=$(git -C "$src" rev-parse HEAD 2>/dev/null || echo unknown)
    if [ -f "$prefix/.kf-llama-commit" ] && [ "$(cat "$prefix/.kf-llama-commit")" = "$commit" ] &&
       [ -f "$prefix/include/llama.h" ]; then
        echo "stage-llama-cpp: $prefix already holds llama.cpp $commit"
    else
        scripts/build-llama-cpp.sh "$src" "$prefix" "$root/build-llama-cmake"
        echo "$commit" > "$prefix/.kf-llama-commit"
    fi
fi

scripts/install-deps.sh
if [ -f "$build/build.ninja" ]; then
    meson configure "$build" -Dllama_cpp="$prefix" >/dev/null
else
    meson setup "$build" --buildtype=release -Dwerror=true -Dllama_cpp="$prefix" >/dev/null
fi
meson compile -C "$build" -j "${JOBS:-2}" kf-llama kf-eval-llama kf-generate kf-eval kf-convert-gguf
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
meson test -C "$build" --no-rebuild --suite llama --print-errorlogs 2>&1 | tee "$log" || status=1
count() { sed -n "s/^$1: *\([0-9]*\).*/\1/p" "$log" | tail -1; }
passed=$(count Ok)
failed=$(( $(count Fail || echo 0) + $(count Timeout || echo 0) + $(count 'Unexpected Pass' || echo 0) ))
skipped=$(count Skipped)
echo "stage-llama-cpp: ${passed:-0} passed, $failed failed, ${skipped:-0} skipped (llama.cpp in $prefix)"
exit $status
