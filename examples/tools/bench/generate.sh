#!/bin/sh
# kf-generate on the bundled model: prompts of the first WORDS words of the
# first dev speech (default 750 and 1500 words, about 1K and 2K tokens), 256
# greedy tokens, full cache vs Keyformer at budget 0.5 with the logits
# handed over one KV head at a time (--observe kv-head, the default) or a
# whole layer at once (--observe layer), and with each speed setting;
# 3 interleaved rounds, 1 and 2 threads. One line per run, then the CPU, the
# load average before and after, and per prompt, threads and setting the
# median and range of decode tokens/s (and prefill ms).
#   examples/tools/bench/generate.sh [BUILD_DIR [WORDS ...]]   (default build)
# CONFIGS (';'-separated policy + options) and ROUNDS override the settings
# and the round count, e.g. CONFIGS="full;keyformer;keyformer --observe layer".
set -eu
G=${1:-build}/examples/kf-generate
[ $# -gt 0 ] && shift
WORDS=${*:-750 1500}
ROUNDS=${ROUNDS:-3}
CONFIGS=${CONFIGS:-full;keyformer;keyformer --observe layer;keyformer --evict-every 16;keyformer --slot-order position}
DATA=$(dirname "$0")/../../data/sotu-dev.jsonl
LOG=${TMPDIR:-/tmp}/kf-generate-bench.$$.txt
export OMP_WAIT_POLICY=passive
for w in $WORDS; do
  /usr/bin/python3 -c "import json, sys; t = json.loads(open(sys.argv[1]).readline())['text']; open(sys.argv[2], 'w').write(' '.join(t.split()[:int(sys.argv[3])]))" \
    "$DATA" "${TMPDIR:-/tmp}/kf-prompt-$w.txt" "$w"
done
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
: > "$LOG"
for rep in $(seq "$ROUNDS"); do
  for w in $WORDS; do
    for T in 1 2; do
      old_ifs=$IFS
      IFS=';'
      for cfg in $CONFIGS; do
        IFS=$old_ifs
        # shellcheck disable=SC2086
        set -- $cfg
        pol=$1; shift
        # the full cache takes no budget (kf-generate refuses one)
        [ "$pol" = full ] || set -- --budget-ratio 0.5 "$@"
        line=$("$G" --prompt-file "${TMPDIR:-/tmp}/kf-prompt-$w.txt" --steps 256 --temperature 0 \
               --seed 1 --threads "$T" --policy "$pol" "$@" 2>&1 >/dev/null | tail -n 1)
        echo "words=$w T=$T cfg=[$cfg] $line" | tee -a "$LOG"
        IFS=';'
      done
      IFS=$old_ifs
    done
  done
done
echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)," \
     "avx512f: $(grep -qw avx512f /proc/cpuinfo && echo yes || echo no)," \
     "$(nproc) cores; load average before: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/python3 - "$LOG" <<'EOF'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    m = re.match(r"words=(\d+) T=(\d+) cfg=\[(.*?)\] prompt tokens: (\d+) .*prefill: ([0-9.]+) ms"
                 r" \| decode: ([0-9.]+) tokens/s", line)
    if m:
        r = runs.setdefault((int(m[1]), int(m[4]), int(m[2]), m[3]), ([], []))
        r[0].append(float(m[6]))
        r[1].append(float(m[5]))
print("| prompt tokens | threads | setting | decode tokens/s: median (range) | prefill ms: median (range) |")
print("|---:|---:|---|---:|---:|")
for (words, tokens, threads, cfg), (decode, prefill) in sorted(runs.items()):
    print("| %d | %d | %s | %.1f (%.1f-%.1f) | %.0f (%.0f-%.0f) |" % (
        tokens, threads, cfg, statistics.median(decode), min(decode), max(decode),
        statistics.median(prefill), min(prefill), max(prefill)))
EOF
rm -f "$LOG"
