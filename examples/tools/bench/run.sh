#!/bin/sh
# The end-to-end sweep behind doc/performance.md: decode steps at the
# library's defaults and at the spec-exact settings, every policy, the
# prefill, the library alone and the same scoring in PyTorch. Writes JSON
# lines into OUT (default /tmp/kf-e2e); summarize.py turns them into the
# doc's tables, plot.gp into its plots. About 6 minutes on one core.
#
#   run.sh BUILD_DIR [OUT]
#
# Every line gets the CPU's name and the instruction set in force
# (KF_CPU_MASK=1 measures the AVX2 path on an AVX-512 CPU). PyTorch
# runs when /usr/bin/python3 (or $PY) imports torch; its lines are then
# in torch.jsonl, else that file is empty.
set -eu
B=${1:?usage: run.sh BUILD_DIR [OUT]}
OUT=${2:-/tmp/kf-e2e}
TOOL=$B/examples/tools/kf-bench-decode
HERE=$(dirname "$0")
PY=${PY:-/usr/bin/python3}
export OMP_WAIT_POLICY=passive
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
isa=$("$B"/examples/tools/kf-info 2>/dev/null | sed -n 's/^detected & mask: *\([a-z0-9]*\).*/\1/p' | head -n 1)
tag() { sed "s/^{/{\"cpu\":\"$cpu\",\"isa\":\"${isa:-?}\",/"; }
dec() { "$TOOL" decode --json "$@" | tag; }
mkdir -p "$OUT"
uptime > "$OUT/uptime.txt"
SPEC="--order position --noise exact"
# llama3-8b: 1 of 32 layers timed (x32); 8 KV heads up to 4K, 2 of 8 beyond
for thr in 1 2; do
  for dt in f32 f16; do
    dec --shape llama3-8b --context 1024,4096 --dtype $dt --threads $thr
    dec --shape llama3-8b --context 16384,32768 --kv-heads 2 --dtype $dt --threads $thr
  done
  dec --shape bundled --context 1024,4096 --threads $thr
  dec --shape bundled --context 16384,32768 --layers 1 --threads $thr
done > "$OUT/decode.jsonl"
for thr in 1 2; do
  # shellcheck disable=SC2086
  {
    dec --shape llama3-8b --context 1024,4096 --budgets 0.5 --threads $thr $SPEC
    dec --shape llama3-8b --context 16384,32768 --kv-heads 2 --budgets 0.5 --threads $thr $SPEC
    dec --shape llama3-8b --context 4096 --budgets 0.5 --evict-every 16 --steps 64 --threads $thr
    dec --shape llama3-8b --context 4096 --budgets 0.5 --observe kv-head --threads $thr
    dec --shape llama3-8b --context 32768 --kv-heads 2 --budgets 0.5 --observe kv-head --threads $thr
  }
done > "$OUT/decode-settings.jsonl"
for pol in keyformer h2o window sinks; do
  dec --shape llama3-8b --context 1024,4096 --budgets 0.5 --policy $pol
  dec --shape llama3-8b --context 16384,32768 --kv-heads 2 --budgets 0.5 --policy $pol
done > "$OUT/decode-policies.jsonl"
for thr in 1 2; do
  "$TOOL" prefill --prompt 1024,2048,4096,8192 --threads $thr --reps 3 --json | tag
  # head size 128: one of 32 layers (the ratio is per layer)
  "$TOOL" prefill --shape llama3-8b --layers 1 --prompt 1024,2048,4096,8192 --threads $thr --reps 2 --json | tag
done > "$OUT/prefill.jsonl"
for thr in 1 2; do
  dec --shape llama3-8b --context 1024,4096,16384,32768 --kv-heads 8 --budgets 0.5 --no-attention --threads $thr
  # shellcheck disable=SC2086
  dec --shape llama3-8b --context 1024,4096,16384,32768 --kv-heads 8 --budgets 0.5 --no-attention --threads $thr $SPEC
done > "$OUT/decode-alone.jsonl"
: > "$OUT/torch.jsonl"
if "$PY" -c 'import torch' 2>/dev/null; then
  for thr in 1 2; do
    for ctx in 1024 4096 16384 32768; do
      "$PY" "$HERE/../torch_baseline.py" decode --shape llama3-8b --context $ctx --threads $thr --layers-timed 1
    done
    for s in 1024 2048 4096; do
      "$PY" "$HERE/../torch_baseline.py" prefill --prompt $s --threads $thr --reps 1
    done
  done | tag > "$OUT/torch.jsonl"
fi
uptime >> "$OUT/uptime.txt"
