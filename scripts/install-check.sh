#!/usr/bin/env bash
# Installs libkeyformer to a temporary prefix and builds a program outside
# the tree against it the way users do, with pkg-config: against the shared
# library (pkg-config --cflags --libs), and against the static archive the
# two ways README.md gives, since pkg-config --static alone still says
# -lkeyformer and the linker then takes libkeyformer.so: -lkeyformer
# between -Wl,-Bstatic and -Wl,-Bdynamic, and the archive's path, each with
# the private dependencies pkg-config --static lists. Checks the installed
# header, libraries and keyformer.pc, runs every program, and ends with one
# summary line "install-check: N passed, N failed[, N skipped]".
#
#   scripts/install-check.sh [BUILD_DIR]
#
# With BUILD_DIR (an existing meson build directory) it installs that build
# with --destdir into a temporary directory and points pkg-config at it
# (PKG_CONFIG_SYSROOT_DIR); without it, it configures and builds its own
# copy with a temporary --prefix. Environment: CC (default cc), PKG_CONFIG
# (default pkg-config), KEEP_TMP=1 keeps the temporary directory.
set -uo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
cc=${CC:-cc}
pkgconf=${PKG_CONFIG:-pkg-config}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kf-install-check.XXXXXX")
cleanup() { [ "${KEEP_TMP:-0}" = 1 ] && echo "kept $tmp" || rm -rf "$tmp"; }
trap cleanup EXIT

passed=0 failed=0 skipped=0
pass() { passed=$((passed + 1)); echo "ok      $1"; }
fail() { failed=$((failed + 1)); echo "FAIL    $1"; [ $# -gt 1 ] && echo "        $2"; }
skip() { skipped=$((skipped + 1)); echo "skip    $1 ($2)"; }
# check NAME COMMAND...: one test; its output goes to the log, shown on failure
check() {
    local name=$1 log="$tmp/log.$((passed + failed + skipped))"
    shift
    if "$@" >"$log" 2>&1; then
        pass "$name"
    else
        fail "$name" "$*"
        sed 's/^/        | /' "$log" | tail -20
    fi
}
summary() {
    local line="install-check: $passed passed, $failed failed"
    [ "$skipped" -gt 0 ] && line="$line, $skipped skipped"
    echo "$line"
    [ "$failed" -eq 0 ]
    exit $?
}

# ---- build and install ----
introspect() { # build dir, option name -> value
    meson introspect "$1" --buildoptions | python3 -c '
import json, sys
want = sys.argv[1]
for o in json.load(sys.stdin):
    if o["name"] == want:
        print(o["value"])' "$2"
}

if [ $# -ge 1 ]; then
    build=$(cd "$1" 2>/dev/null && pwd) || { fail "build directory $1 exists"; summary; }
    check "build directory is up to date" meson compile -C "$build"
    check "meson install --destdir" meson install -C "$build" --destdir "$tmp/stage"
    sysroot=$tmp/stage
else
    build=$tmp/build
    check "meson setup (temporary prefix)" \
        meson setup "$build" "$src" --prefix "$tmp/prefix" --buildtype=release
    check "meson compile" meson compile -C "$build"
    check "meson install" meson install -C "$build"
    sysroot=
fi
[ "$failed" -eq 0 ] || summary

prefix=$(introspect "$build" prefix)
libdir=$(introspect "$build" libdir)
includedir=$(introspect "$build" includedir)
default_library=$(introspect "$build" default_library)
case $libdir in /*) ;; *) libdir=$prefix/$libdir ;; esac
case $includedir in /*) ;; *) includedir=$prefix/$includedir ;; esac
root_lib=$sysroot$libdir
root_inc=$sysroot$includedir

# ---- what was installed ----
version=$(for p in MAJOR MINOR PATCH; do
    sed -n "s/^#define KF_VERSION_$p *//p" "$src/include/keyformer.h"
done | paste -sd. -)
major=${version%%.*}

check "header installed as in the source tree" \
    cmp "$src/include/keyformer.h" "$root_inc/keyformer.h"
check "keyformer.pc installed" test -f "$root_lib/pkgconfig/keyformer.pc"
if [ "$default_library" != static ]; then
    if [ "$(uname -s)" = Darwin ]; then # meson: libX.0.dylib, libX.dylib -> it
        real=libkeyformer.$major.dylib so_major=$real link=libkeyformer.dylib
    else
        real=libkeyformer.so.$version so_major=libkeyformer.so.$major link=libkeyformer.so
    fi
    check "shared library $real" test -f "$root_lib/$real" -a ! -L "$root_lib/$real"
    [ "$so_major" != "$real" ] &&
        check "$so_major -> $real" test "$(readlink "$root_lib/$so_major")" = "$real"
    check "$link -> $so_major" test "$(readlink "$root_lib/$link")" = "$so_major"
else
    skip "shared library" "default_library=static"
fi
if [ "$default_library" != shared ]; then
    check "static library libkeyformer.a" test -f "$root_lib/libkeyformer.a"
else
    skip "static library" "default_library=shared"
fi

# ---- pkg-config ----
export PKG_CONFIG_PATH=$root_lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
[ -n "$sysroot" ] && export PKG_CONFIG_SYSROOT_DIR=$sysroot
pc() { "$pkgconf" "$@" keyformer; }

check "pkg-config finds the installed keyformer.pc" \
    test "$(pc --variable=pcfiledir)" = "$root_lib/pkgconfig"
if "$pkgconf" --help 2>&1 | grep -q -- --validate; then
    check "pkg-config --validate" pc --validate
fi
check "pkg-config --modversion = header version $version" \
    test "$(pc --modversion)" = "$version"
cflags_find_header() { # the first -I of --cflags holds keyformer.h
    local inc
    inc=$(pc --cflags-only-I)
    inc=${inc#-I}
    test -f "${inc%% *}/keyformer.h"
}
libs_name_library() { case " $(pc --libs) " in *" -lkeyformer "*) ;; *) return 1 ;; esac; }
check "pkg-config --cflags points at the installed header" cflags_find_header
check "pkg-config --libs names -lkeyformer" libs_name_library
libdir_var() { # README.md's rpath advice; pkgconf prefixes the sysroot
    local got
    got=$(pc --variable=libdir)
    test "$got" = "$libdir" || test "$got" = "$root_lib"
}
check "pkg-config --variable=libdir is the installed libdir" libdir_var
private_once() { # no flag twice in Libs.private
    local words
    words=$(pc --static --libs-only-other --libs-only-l | tr ' ' '\n' | grep -v '^$')
    test "$(printf '%s\n' "$words" | sort | uniq -d)" = ""
}
check "pkg-config --static lists each private flag once" private_once

# ---- an out-of-tree consumer ----
work=$tmp/consumer
mkdir -p "$work"
cp "$src/tests/consumer/consumer.c" "$work/"
cd "$work" || summary
needs_library() { readelf -d "$1" | grep -q "NEEDED.*\[$2"; }
not() { ! "$@"; }
loads_installed() {
    LD_LIBRARY_PATH="$root_lib" ldd ./consumer-shared | grep "libkeyformer" | grep -qF "$root_lib/"
}
cflags="-std=c11 -Wall -Wextra -pedantic -Werror -O2"

if [ "$default_library" != static ]; then
    # shellcheck disable=SC2046
    check "consumer builds with pkg-config --cflags --libs (shared)" \
        $cc $cflags consumer.c -o consumer-shared $(pc --cflags --libs) -lm
    if [ -x consumer-shared ]; then
        if command -v readelf >/dev/null; then
            check "consumer-shared needs $so_major" needs_library consumer-shared "$so_major"
        fi
        check "consumer-shared runs" \
            env LD_LIBRARY_PATH="$root_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
            DYLD_LIBRARY_PATH="$root_lib" ./consumer-shared
        if command -v ldd >/dev/null; then
            check "consumer-shared loads the installed library" loads_installed
        fi
    fi
fi

if [ "$default_library" != shared ]; then
    # pkg-config --static adds Libs.private (OpenMP, libm) but keeps
    # -lkeyformer, which finds libkeyformer.so first when both are
    # installed: the archive is asked for by name between -Bstatic and
    # -Bdynamic, or by path. -lkeyformer appears once, so the .so is never
    # named; the private -l flags other than it follow the archive.
    private_l=
    for word in $(pc --static --libs-only-l); do
        [ "$word" = -lkeyformer ] || private_l="$private_l $word"
    done
    private="$(pc --static --libs-only-L --libs-only-other) $private_l"
    static_consumer() { # name, how the archive is named; builds and checks
        local exe=consumer-$1
        shift
        # shellcheck disable=SC2086
        check "$exe: static libkeyformer ($*) + pkg-config --static private libs" \
            $cc $cflags consumer.c -o "$exe" $(pc --cflags) "$@" $private
        [ -x "$exe" ] || return
        if command -v readelf >/dev/null; then
            check "$exe does not need libkeyformer.so" \
                not needs_library "$exe" libkeyformer
        fi
        check "$exe runs without the prefix on any path" \
            env -u LD_LIBRARY_PATH "./$exe"
    }
    if [ "$(uname -s)" = Darwin ]; then # Apple's ld has no -Bstatic
        skip "consumer-static-bstatic" "no -Bstatic on Darwin"
    else
        static_consumer static-bstatic -Wl,-Bstatic -lkeyformer -Wl,-Bdynamic
    fi
    static_consumer static-path "$root_lib/libkeyformer.a"
    [ -x consumer-static-path ] &&
        ./consumer-static-path 2>/dev/null | sed -n 's/^/        /; /keeps/p'
    # what README.md warns about: plain pkg-config --static links the .so
    if [ "$default_library" = both ] && command -v readelf >/dev/null; then
        # shellcheck disable=SC2046
        if $cc $cflags consumer.c -o consumer-static-plain \
            $(pc --cflags) $(pc --static --libs) -lm 2>/dev/null &&
            needs_library consumer-static-plain libkeyformer; then
            echo "note    pkg-config --static --libs alone links libkeyformer.so (README.md)"
        fi
    fi
fi

summary
