#!/bin/sh
# End-to-end sweep of doc/performance.md ("End to end"): kf-bench-decode
# decode and prefill, and the PyTorch baseline, at 1 and 2 threads. JSON
# lines go to $OUT (default /tmp/kf-e2e), one file per part.
#   examples/tools/bench/run.sh BUILD_DIR [OUT]
# The settings are run 4's (0.1's defaults, now kf_config_spec_exact():
# position order and exact noise unless a line says otherwise); the 0.2
# defaults are measured by defaults.sh.
set -eu
B=${1:?usage: run.sh BUILD_DIR [OUT]}
OUT=${2:-/tmp/kf-e2e}
TOOL=$B/examples/tools/kf-bench-decode
HERE=$(dirname "$0")
PY=/usr/bin/python3
export OMP_WAIT_POLICY=passive
mkdir -p "$OUT"
uptime > "$OUT/uptime-start.txt"
for thr in 1 2; do
  for dt in f32 f16; do
    # all 6 layers of the bundled shape up to 4K; 1 layer (x6) beyond
    "$TOOL" decode --noise exact --order position --shape bundled --context 1024,4096 --dtype $dt --threads $thr --json
    "$TOOL" decode --noise exact --order position --shape bundled --context 16384,32768 --layers 1 --dtype $dt --threads $thr --json
    # llama3-8b: 1 of 32 layers; 8 KV heads up to 4K, 2 of 8 beyond
    "$TOOL" decode --noise exact --order position --shape llama3-8b --context 1024,4096 --dtype $dt --threads $thr --json
    "$TOOL" decode --noise exact --order position --shape llama3-8b --context 16384,32768 --kv-heads 2 --dtype $dt --threads $thr --json
  done
done > "$OUT/decode.jsonl"
# kf_config.evict_interval = 16: 4 timed rounds of 16 tokens each
for thr in 1 2; do
  "$TOOL" decode --noise exact --order position --shape llama3-8b --context 4096 --evict-every 16 --steps 64 --threads $thr --json
  "$TOOL" decode --noise exact --order position --shape llama3-8b --context 32768 --kv-heads 2 --evict-every 16 --steps 64 --threads $thr --json
done > "$OUT/decode-every16.jsonl"
# KF_ORDER_ANY: one row moved per eviction; alone and with evict_interval 16
for thr in 1 2; do
  "$TOOL" decode --noise exact --shape bundled --context 1024,4096 --order any --threads $thr --json
  "$TOOL" decode --noise exact --shape llama3-8b --context 1024,4096 --order any --threads $thr --json
  "$TOOL" decode --noise exact --shape llama3-8b --context 16384,32768 --kv-heads 2 --order any --threads $thr --json
  "$TOOL" decode --noise exact --shape llama3-8b --context 4096 --order any --evict-every 16 --steps 64 --threads $thr --json
done > "$OUT/decode-any.jsonl"
# a layer's logits one KV head at a time from inside the attention loop
# (--observe kv-head: kf_observe_begin / kv_head / end) next to one
# kf_observe_logits per layer after it, both speed settings on
for thr in 1 2; do
  for ob in layer kv-head; do
    "$TOOL" decode --noise exact --shape llama3-8b --context 1024,4096 --order any --evict-every 16 --steps 64 --observe $ob --threads $thr --json
    "$TOOL" decode --noise exact --shape llama3-8b --context 16384,32768 --kv-heads 2 --order any --evict-every 16 --steps 64 --observe $ob --threads $thr --json
    "$TOOL" decode --noise exact --order position --shape llama3-8b --context 4096,16384 --kv-heads 8 --budgets 0.5 --observe $ob --threads $thr --json
  done
done > "$OUT/decode-kvhead.jsonl"
# every policy at budget 0.5 (llama3-8b, f32, 1 thread), both slot orders:
# the score function's cost, and where each policy evicts
for order in position any; do
  for pol in keyformer h2o window sinks; do
    "$TOOL" decode --noise exact --shape llama3-8b --context 1024,4096 --budgets 0.5 --policy $pol --order $order --json
    "$TOOL" decode --noise exact --shape llama3-8b --context 16384,32768 --kv-heads 2 --budgets 0.5 --policy $pol --order $order --json
  done
done > "$OUT/decode-policies.jsonl"
for thr in 1 2; do
  "$TOOL" prefill --noise exact --prompt 1024,2048,4096,8192 --threads $thr --reps 3 --json
  # llama3-8b head size 128: one of 32 layers (the ratio is per layer)
  "$TOOL" prefill --noise exact --shape llama3-8b --layers 1 --prompt 1024,2048,4096,8192 --threads $thr --reps 2 --json
done > "$OUT/prefill.jsonl"
# the library alone on logits left in place (no host attention between
# steps), the conditions of the PyTorch baseline below
for thr in 1 2; do
  "$TOOL" decode --noise exact --order position --shape bundled --context 1024,4096,16384,32768 --layers 6 --budgets 0.5 --no-attention --threads $thr --json
  "$TOOL" decode --noise exact --order position --shape llama3-8b --context 1024,4096,16384,32768 --kv-heads 8 --budgets 0.5 --no-attention --threads $thr --json
done > "$OUT/decode-alone.jsonl"
for thr in 1 2; do
  for ctx in 1024 4096 16384 32768; do
    $PY "$HERE/../torch_baseline.py" decode --shape bundled --context $ctx --threads $thr
    $PY "$HERE/../torch_baseline.py" decode --shape llama3-8b --context $ctx --threads $thr --layers-timed 1
  done
  for s in 1024 2048 4096; do  # 8192 takes minutes in PyTorch
    $PY "$HERE/../torch_baseline.py" prefill --prompt $s --threads $thr --reps 1
  done
done > "$OUT/torch.jsonl"
uptime > "$OUT/uptime-end.txt"
