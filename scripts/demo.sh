#!/usr/bin/env bash
# The demo on a fresh Debian/Ubuntu machine: installs what is missing,
# builds, then lets the bundled 6.5 M-parameter Llama model continue a
# State of the Union speech twice — with the full KV cache and with
# Keyformer keeping 50 % of it — and prints both continuations and stats.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

build=${BUILD_DIR:-build}
[ -f "$build/build.ninja" ] || meson setup "$build" --buildtype=release >/dev/null
ninja -C "$build" examples/kf-generate >/dev/null

prompt_file=examples/prompts/sotu-1793-washington.txt
prompt=$(cat "$prompt_file")
steps=${STEPS:-120}
export OMP_WAIT_POLICY=passive

echo "Prompt: George Washington, 1793 ($(wc -w < "$prompt_file") words), ending:"
echo "  ...${prompt: -240}"
run() {
    local title=$1
    shift
    echo
    echo "== $title =="
    local out
    out=$("$build"/examples/kf-generate --prompt-file "$prompt_file" --steps "$steps" \
        --temperature 0 --seed 1 "$@" 2>/tmp/kf-demo-stats.$$)
    # the program echoes the prompt first; show what it generated
    printf '%s\n' "${out:${#prompt}}" | fold -s -w 100
    echo "-- $(tail -n 1 /tmp/kf-demo-stats.$$)"
    rm -f /tmp/kf-demo-stats.$$
}
run "full KV cache" --policy full
run "Keyformer, 50 % of the KV cache" --policy keyformer --budget 0.5
