#!/bin/sh
# The code model's sweeps of doc/quality.md: the paper's policies and the
# successor options on pycode-llama-12m's dev set (Python files), both
# tasks, then the recommended configuration against window on
# sotu-llama-6m.
#
#   examples/eval/code-sweeps.sh BUILD_DIR OUT_DIR
#
# DOCS (default 25: the whole dev set) limits the documents; THREADS the
# jobs at once (default: all cores). At the library's defaults. About 40
# minutes of one core per task and 25 documents.
set -eu

build=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)
eval_bin=$build/examples/kf-eval
DOCS=${DOCS:-25}
THREADS=${THREADS:-$(nproc)}
BUDGETS=${BUDGETS:-0.05,0.1,0.2,0.3,0.5,0.7}
# The successor configuration this page recommends (see doc/quality.md).
BEST=${BEST:---obs-window 32 --pool 7:max}
mkdir -p "$out"

run() { # name, then kf-eval options; an existing result is kept
    name=$1
    shift
    if [ -s "$out/$name.csv" ]; then
        echo "== $name: kept" >&2
        return
    fi
    echo "== $name: kf-eval $*" >&2
    "$eval_bin" --max-docs "$DOCS" --threads "$THREADS" --budgets "$BUDGETS" \
        --rouge-tokens 0 "$@" --csv "$out/$name.csv" > "$out/$name.md" 2> "$out/$name.log"
    tail -n 1 "$out/$name.log" >&2
}

for task in continue recall; do
    # the paper's comparison: Keyformer (both rules, 3 seeds), H2O, window, sinks
    run "code-$task" --bundled pycode --task "$task" --seeds 3 \
        --policies full,keyformer,h2o,window,sinks
    run "code-$task-reference" --bundled pycode --task "$task" --seeds 3 \
        --rule reference --policies full,keyformer
    # the successor options, on H2O's deterministic scores and on Keyformer's
    # shellcheck disable=SC2086
    run "code-$task-best" --bundled pycode --task "$task" --seeds 3 \
        --policies full,keyformer,h2o $BEST
done
# never worse than window on the speeches?
for task in continue recall; do
    # shellcheck disable=SC2086
    run "sotu-$task-best" --bundled sotu --task "$task" --seeds 3 \
        --policies full,keyformer,h2o,window $BEST
done
