#!/bin/sh
# The code model's sweeps of doc/quality.md: the paper's four policies and
# the successor options on pycode-llama-12m's dev set (25 Python files),
# both tasks, then the configuration the page recommends for code against
# the window on sotu-llama-6m.
#
#   examples/eval/code-sweeps.sh BUILD_DIR OUT_DIR
#
# DOCS (default 25: the whole dev set) limits the documents; THREADS the
# jobs at once (default: all cores). At the library's defaults otherwise.
# About 100 minutes on 2 cores; an existing CSV is kept, so a rerun
# resumes. The page's tables come from these CSV files through
# ablation_table.py and paired_difference.py, its figures through
# plot_csv.py (the commands are at the end of this script).
set -eu

build=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)
eval_bin=$build/examples/kf-eval
DOCS=${DOCS:-25}
THREADS=${THREADS:-$(nproc)}
mkdir -p "$out"

run() { # name, budgets, then kf-eval options; an existing result is kept
    name=$1
    budgets=$2
    shift 2
    if [ -s "$out/$name.csv" ]; then
        echo "== $name: kept" >&2
        return
    fi
    echo "== $name: kf-eval $*" >&2
    "$eval_bin" --threads "$THREADS" --budgets "$budgets" --rouge-tokens 0 "$@" \
        --csv "$out/$name.csv" > "$out/$name.md" 2> "$out/$name.log"
    tail -n 1 "$out/$name.log" >&2
}

code=0.05,0.1,0.2,0.3,0.5,0.7
for task in continue recall; do
    c="--bundled pycode --max-docs $DOCS --task $task"
    # the paper's comparison: Keyformer (3 seeds), H2O, window, sinks
    run "code-$task" $code $c --seeds 3 --policies full,keyformer,h2o,window,sinks
    # the authors' eviction rule
    run "code-$task-reference" $code $c --seeds 3 --rule reference --policies full,keyformer
    # the successor options, one at a time on H2O's deterministic scores
    run "code-$task-snap" $code $c --policies full,h2o --obs-window 32 --pool 7
    run "code-$task-r50" $code $c --policies full,h2o --recent 0.5
    run "code-$task-ada" $code $c --policies full,h2o --head-budget adaptive:0.2
    run "code-$task-sinks4" $code $c --policies full,h2o --sink-tokens 4
done
# the recommended code configuration (H2O, recent 0.5) on the speeches
for task in continue recall; do
    run "sotu-$task-r50" 0.1,0.2,0.3,0.5,0.7,0.9 --bundled sotu --task "$task" \
        --policies full,h2o,window --recent 0.5
done

# tables and figures
py=/usr/bin/python3
for task in continue recall; do
    f=$out/code-$task.csv
    for metric in dnll top1; do
        $py "$here/ablation_table.py" --metric $metric "Keyformer=$f" "H2O=$f@h2o" \
            "window=$f@window" "sinks=$f@sinks" "H2O obs32 pool7=$out/code-$task-snap.csv@h2o" \
            "H2O recent 0.5=$out/code-$task-r50.csv@h2o" \
            "H2O Ada-KV=$out/code-$task-ada.csv@h2o" \
            "H2O sinks 4=$out/code-$task-sinks4.csv@h2o" \
            "Keyformer reference rule=$out/code-$task-reference.csv"
    done > "$out/code-$task-tables.md"
    $py "$here/plot_csv.py" "$out/quality-code-$task.png" --metrics dnll,top1 \
        --title "pycode-llama-12m, $task task, $DOCS files" --policies keyformer,h2o,window,sinks \
        "paper=$f" "recent 0.5=$out/code-$task-r50.csv" "obs32 pool7=$out/code-$task-snap.csv"
done
