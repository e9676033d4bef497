#!/usr/bin/env bash
# The whole test suite on a fresh Debian/Ubuntu machine: installs what is
# missing, configures, builds with warnings as errors, and runs every test
# with cmocka's own summaries in the output.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

build=${BUILD_DIR:-build-test}
if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" --buildtype=release -Dwerror=true
fi
ninja -C "$build"

echo "== unit tests (best instruction set of this CPU) =="
meson test -C "$build" --print-errorlogs -v
