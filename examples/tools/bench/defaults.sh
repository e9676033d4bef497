#!/bin/sh
# The decode step at the library's defaults against the spec-exact settings
# (doc/performance.md, "Defaults"): kf-bench-decode decode, Llama-3-8B
# layer shapes, f32, 1 thread, budget 0.5, 4K (all 8 KV heads of one
# layer) and 16K/32K (2 KV heads), REPS interleaved rounds of
#   defaults      (KF_ORDER_ANY, KF_NOISE_TABLE, evict_interval 1)
#   spec-exact    (--order position --noise exact)
#   exact noise   (--noise exact: the defaults' order, the spec's noise)
#   + every 16    (the defaults with --evict-every 16)
# Each figure is the best of 48 decode steps (64 with --evict-every 16):
# on a shared 2-vCPU VM the default 16 left the attention's own
# full/half ratio anywhere in 1.88-2.07 at 16K, and the step speedup with
# it. JSON lines on stdout, each with the CPU's model name and ISA.
#   examples/tools/bench/defaults.sh BUILD_DIR [REPS] > defaults.jsonl
set -eu
B=${1:?usage: defaults.sh BUILD_DIR [REPS]}
REPS=${2:-3}
TOOL=$B/examples/tools/kf-bench-decode
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
isa=$("$B"/examples/tools/kf-info 2>/dev/null | sed -n 's/^detected & mask: *\([a-z0-9]*\).*/\1/p' | head -n 1)
export OMP_WAIT_POLICY=passive
run() { # label, then kf-bench-decode options
    label=$1
    shift
    "$TOOL" decode --shape llama3-8b --budgets 0.5 --threads 1 --json "$@" |
        sed "s/^{/{\"config\":\"$label\",\"cpu\":\"$cpu\",\"isa\":\"${isa:-?}\",/"
}
for rep in $(seq "$REPS"); do
    for ctx in 4096 16384 32768; do
        heads=""
        [ "$ctx" -gt 4096 ] && heads="--kv-heads 2"
        # shellcheck disable=SC2086
        {
            run defaults --context "$ctx" $heads --steps 48
            run spec-exact --context "$ctx" $heads --steps 48 --order position --noise exact
            run exact-noise --context "$ctx" $heads --steps 48 --noise exact
            run every16 --context "$ctx" $heads --evict-every 16 --steps 64
        }
    done
done
