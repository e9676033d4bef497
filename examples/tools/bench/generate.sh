#!/bin/sh
# kf-generate on the bundled model: a 1,555-token prompt (the first 1,150
# words of the first dev speech), 256 greedy tokens, full cache vs Keyformer
# at 0.5 with each speed setting, 3 interleaved rounds, 1 and 2 threads.
#   examples/tools/bench/generate.sh [BUILD_DIR]   (default build)
G=${1:-build}/examples/kf-generate
P=${TMPDIR:-/tmp}/kf-prompt-1536.txt
/usr/bin/python3 -c "import json; t = json.loads(open('$(dirname "$0")/../../data/sotu-dev.jsonl').readline())['text']; open('$P', 'w').write(' '.join(t.split()[:1150]))"
export OMP_WAIT_POLICY=passive
for T in 1 2; do
  for rep in 1 2 3; do
    for cfg in "full" "keyformer" "keyformer --slot-order any" "keyformer --evict-every 16" "keyformer --slot-order any --evict-every 16"; do
      set -- $cfg
      pol=$1; shift
      # the full cache takes no budget (kf-generate refuses one)
      [ "$pol" = full ] || set -- --budget-ratio 0.5 "$@"
      line=$($G --prompt-file $P --steps 256 --temperature 0 --seed 1 --threads $T --policy $pol "$@" 2>&1 >/dev/null | tail -n 1)
      echo "T=$T cfg=[$cfg] $line"
    done
  done
done
