#!/usr/bin/env bash
# Builds llama.cpp from a source tree and installs it into a prefix, for
# kf-llama and the llama.cpp tests (meson -Dllama_cpp=PREFIX).
#
#   scripts/build-llama-cpp.sh SRC PREFIX [BUILD_DIR]
#
# SRC is a llama.cpp checkout (scripts/get-llama-cpp.sh makes one); JOBS
# (default 2) parallel compile jobs, about 4 minutes of CPU time for the
# libraries and llama-simple (commit de3ff815ea7d). The build
# happens in BUILD_DIR (default: PREFIX/../<prefix name>-cmake-build, outside
# the source tree, which is never written to); PREFIX receives:
#   lib/      libllama.so, libggml.so, libggml-base.so, libggml-cpu.so
#   include/  llama.h, ggml*.h, gguf.h
#   lib/pkgconfig/llama.pc
#   bin/      llama-simple (llama.cpp's own generator, for comparing speed);
#             with LLAMA_BENCH=1 also llama-bench (it needs llama.cpp's
#             common library: about 65 more files, 10+ minutes on 2 cores)
#
# Choices:
# - Shared libraries. llama.cpp's llama.pc lists "-lggml -lggml-base -lllama"
#   and nothing else: right for shared libraries, wrong for static ones (link
#   order, and libggml-cpu, libstdc++ and OpenMP missing). With shared
#   libraries a plain `pkg-config llama` consumer links; binaries carry an
#   RPATH to PREFIX/lib, so nothing needs LD_LIBRARY_PATH.
# - GGML_NATIVE=ON by default: the prefix is built on the machine that runs
#   it (it is never shipped), and the decode-speed figures compare against
#   llama.cpp at its best on this CPU. GGML_NATIVE=OFF in the environment
#   gives a portable build instead.
# - CPU backend only (no CUDA/Metal/Vulkan), no HTTPS/curl, no server, no
#   tests, no web UI: only what kf-llama and the measurements need.
#
# System changes: when cmake (or the compilers) are missing it runs
# scripts/install-deps.sh cmake, which apt-get installs them (through sudo
# when not root) together with the project's usual build packages.
# Nothing else outside PREFIX and BUILD_DIR is written.
set -euo pipefail

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
    echo "usage: $0 SRC PREFIX [BUILD_DIR]" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$1" && pwd)
mkdir -p "$2"
prefix=$(cd "$2" && pwd)
build=${3:-$(dirname "$prefix")/$(basename "$prefix")-cmake-build}
jobs=${JOBS:-2}
native=${GGML_NATIVE:-ON}

[ -f "$src/include/llama.h" ] && [ -f "$src/CMakeLists.txt" ] || {
    echo "$0: $src does not look like a llama.cpp source tree (no include/llama.h)" >&2
    exit 2
}
if ! command -v cmake >/dev/null || ! command -v g++ >/dev/null; then
    echo "build-llama-cpp: installing cmake (scripts/install-deps.sh cmake)"
    "$here/install-deps.sh" cmake
fi

echo "build-llama-cpp: source $src ($(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo 'not a git tree'))"
echo "build-llama-cpp: build dir $build, prefix $prefix, GGML_NATIVE=$native, $jobs jobs"

common=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON
        -DCMAKE_INSTALL_PREFIX="$prefix" -DCMAKE_INSTALL_LIBDIR=lib
        -DCMAKE_INSTALL_RPATH="$prefix/lib" -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON
        -DGGML_NATIVE="$native" -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF
        -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_APP=OFF
        -DLLAMA_BUILD_UI=OFF -DLLAMA_TOOLS_INSTALL=OFF -DLLAMA_BUILD_IS_DEV=OFF)

# Pass 1: the libraries alone, so that `cmake --install` installs exactly
# libllama + ggml + headers + llama.pc (with examples configured it would
# try to install every example).
cmake -S "$src" -B "$build" -G Ninja "${common[@]}" \
      -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF >/dev/null
cmake --build "$build" -j "$jobs"
cmake --install "$build" >/dev/null
echo "build-llama-cpp: installed libllama, ggml, headers and llama.pc into $prefix"

# Pass 2: llama.cpp's own tools used for measuring, built as targets and
# copied (their RPATH already points at PREFIX/lib). llama-simple needs only
# libllama; llama-bench needs the common library.
tools=(llama-simple)
[ "${LLAMA_BENCH:-0}" = 1 ] && tools+=(llama-bench)
cmake -S "$src" -B "$build" "${common[@]}" \
      -DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_TOOLS=ON >/dev/null
cmake --build "$build" -j "$jobs" --target "${tools[@]}"
mkdir -p "$prefix/bin"
for t in "${tools[@]}"; do
    install -m 755 "$build/bin/$t" "$prefix/bin/$t"
done
echo "build-llama-cpp: installed ${tools[*]} into $prefix/bin"
echo "build-llama-cpp: done; use meson setup ... -Dllama_cpp=$prefix"
