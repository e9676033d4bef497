#!/bin/sh
# The AVX-512 kernels on a CPU without AVX-512: simd/x86/avx512_*.c built
# against SIMDe's portable AVX-512 (cross/avx512-emulation/immintrin.h adds
# exact fused multiply-adds, vscalefps, vgetmantps and vgetexpps, and what
# this SIMDe lacks), linked with the library's C sources and the real AVX2
# kernels, and the variant-vs-C tests of tests/simd run with AVX-512
# reported as present. Bit-identical to C here means the kernels'
# operation sequence is right; their speed needs a real AVX-512 CPU.
# Installs libsimde-dev (apt, through sudo when not root) on first use;
# builds in ./build-avx512-emu.
#   cross/run-avx512-emulated.sh
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
OUT=$SRC/build-avx512-emu
EMU=$SRC/cross/avx512-emulation
[ "$(uname -m)" = x86_64 ] || { echo "x86-64 only"; exit 77; }
if ! dpkg-query -W -f '${Status}' libsimde-dev 2>/dev/null | grep -q 'install ok installed'; then
    as_root=""
    [ "$(id -u)" -eq 0 ] || as_root=sudo
    $as_root apt-get update -qq
    $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libsimde-dev >/dev/null
fi
mkdir -p "$OUT/obj"
cd "$SRC"
CF="-O2 -std=c11 -D_POSIX_C_SOURCE=200809L -ffp-contract=off -fopenmp -Ilib -Iinclude -Itests/simd -DKF_HAVE_AVX2 -DKF_HAVE_AVX512"
for f in lib/*.c; do
    extra=""
    [ "$f" = lib/cpu.c ] && extra="-Dkf_cpu_detect=kf_cpu_detect_real"
    # shellcheck disable=SC2086
    gcc $CF $extra -c "$f" -o "$OUT/obj/$(basename "$f" .c).o"
done
# shellcheck disable=SC2086
gcc $CF -c "$EMU/cpu_emulated.c" -o "$OUT/obj/cpu_emulated.o"
for f in simd/x86/avx2_*.c; do
    # shellcheck disable=SC2086
    gcc $CF -mavx2 -mfma -mpopcnt -c "$f" -o "$OUT/obj/$(basename "$f" .c).o"
done
for f in simd/x86/avx512_*.c; do
    gcc -O2 -std=gnu11 -D_POSIX_C_SOURCE=200809L -ffp-contract=off -w \
        -I"$EMU" -Ilib -Iinclude -c "$f" -o "$OUT/obj/$(basename "$f" .c).o"
done
status=0
for t in score select compact dot dispatch; do
    # shellcheck disable=SC2086
    gcc $CF "tests/simd/test_$t.c" tests/simd/harness.c "$OUT"/obj/*.o \
        -lcmocka -lm -lpthread -o "$OUT/test_simd_$t"
    printf -- '-- test_simd_%s (AVX-512 emulated)\n' "$t"
    "$OUT/test_simd_$t" >"$OUT/test_simd_$t.log" 2>&1 || status=1
    grep -E '^\[ *(PASSED|FAILED) *\]|cases compared|ERROR' "$OUT/test_simd_$t.log" | grep -v avx2 || true
done
exit $status
