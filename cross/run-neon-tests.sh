#!/bin/sh
# Cross-builds libkeyformer for AArch64 (NEON kernels) and runs its test
# suite under qemu-aarch64, twice: with the NEON kernels (the default) and
# with KF_CPU_MASK=0 (portable C), then prints the cmocka summaries of the
# variant-vs-C tests (tests/simd). On first use it adds the arm64 dpkg
# architecture and installs the packages below, through sudo when not root.
#
# usage: cross/run-neon-tests.sh [build-dir]     (default ./build-neon)
# Takes about 5 minutes on 2 cores from scratch (build included) once the
# packages are installed.
set -eu

SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$SRC/build-neon}
CROSS="$SRC/cross/aarch64-linux-gnu.ini"
QEMU="qemu-aarch64 -L /"

# --- packages: the cross compiler, qemu, and arm64 multiarch libraries
# (cmocka for the tests, libgomp and libc at run time under qemu -L /).
have_pkg() {
    dpkg-query -W -f '${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}
missing=""
for p in gcc-aarch64-linux-gnu qemu-user libcmocka-dev:arm64 libgomp1:arm64; do
    have_pkg "$p" || missing="$missing $p"
done
as_root=""
[ "$(id -u)" -eq 0 ] || as_root=sudo
if [ -n "$missing" ]; then
    echo "== installing:$missing"
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        echo "== adding the arm64 dpkg architecture"
        $as_root dpkg --add-architecture arm64
    fi
    $as_root apt-get update
    $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user \
        libcmocka-dev:arm64 libgomp1:arm64
fi

# --- configure and build; the examples need OpenBLAS and are not part of
# this run
cd "$SRC"
if [ -f "$BUILD/build.ninja" ]; then
    meson setup --reconfigure "$BUILD" --cross-file "$CROSS" -Dexamples=disabled
else
    meson setup "$BUILD" --cross-file "$CROSS" -Dexamples=disabled
fi
ninja -C "$BUILD"

# --- the variant the library picks (must be NEON)
$QEMU "$BUILD/tests/simd/test_simd_dispatch" >"$BUILD/dispatch.out" 2>&1 || {
    cat "$BUILD/dispatch.out"
    exit 1
}
grep 'detected' "$BUILD/dispatch.out"

status=0
echo "== meson test (NEON kernels)"
meson test -C "$BUILD" --no-rebuild --print-errorlogs || status=1
echo "== KF_CPU_MASK=0 meson test (portable C kernels)"
KF_CPU_MASK=0 meson test -C "$BUILD" --no-rebuild --print-errorlogs || status=1

echo "== cmocka summaries of the NEON-vs-C tests"
for t in score dot select compact dispatch; do
    printf -- '-- test_simd_%s\n' "$t"
    $QEMU "$BUILD/tests/simd/test_simd_$t" 2>&1 \
        | grep -E '^\[ *(PASSED|FAILED|SKIPPED) *\]|test\(s\) run|cases compared|detected|ERROR' || status=1
done
exit $status
