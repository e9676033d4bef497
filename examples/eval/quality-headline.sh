#!/bin/sh
# The headline tables and figures of doc/quality.md, both bundled models:
# the paper's four policies and the successor options on pycode-llama-12m's
# dev set (25 Python files), the paper's four on sotu-llama-6m's 23
# speeches, and the configuration the page recommends for code against the
# window on the speeches. Both tasks, at the library's defaults otherwise.
# (examples/eval/quality-sweeps.sh has the speech model's ablations.)
#
#   examples/eval/quality-headline.sh BUILD_DIR OUT_DIR
#
# DOCS (default 25: the whole code dev set) limits the code documents;
# THREADS the jobs at once (default: all cores). About 2 hours on 2 cores;
# an existing CSV is kept, so a rerun resumes. Tables (Markdown) and
# figures are drawn from the CSV files at the end, with
# ablation_table.py, paired_difference.py and plot_csv.py.
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
    run "code-$task-norm" 0.1,0.5 $c --policies full,h2o --score-norm seen
    run "code-$task-slope" 0.1,0.5 $c --policies full,h2o --layer-slope 0.5
done
# what was evicted: the share of the recall passage held (kf-eval's recall
# summary prints it), one seed, four budgets
p="--bundled pycode --max-docs $DOCS --task recall --mass-share 0"
run passage 0.1,0.3,0.5,0.7 $p --policies full,keyformer,h2o,window,sinks
run passage-reference 0.1,0.3,0.5,0.7 $p --rule reference --policies full,keyformer
run passage-snap 0.1,0.3,0.5,0.7 $p --policies full,h2o --obs-window 32 --pool 7
# the speeches: the paper's four, and the recommended code configuration
# (H2O, recent 0.5) against the window
for task in continue recall; do
    run "sotu-$task" 0.1,0.2,0.3,0.5,0.7,0.9 --bundled sotu --task "$task" --seeds 3 \
        --policies full,keyformer,h2o,window,sinks
    run "sotu-$task-r50" 0.1,0.2,0.3,0.5,0.7,0.9 --bundled sotu --task "$task" \
        --policies full,h2o,window --recent 0.5
done
# the successor options on the speeches: continue task, two budgets
s="--bundled sotu --task continue --policies full,h2o"
run sotu-continue-snap 0.1,0.5 $s --obs-window 32 --pool 7
run sotu-continue-ada 0.1,0.5 $s --head-budget adaptive:0.2
run sotu-continue-sinks4 0.1,0.5 $s --sink-tokens 4
run sotu-continue-norm 0.1,0.5 $s --score-norm seen
run sotu-continue-slope 0.1,0.5 $s --layer-slope 0.5

# tables and figures
py=/usr/bin/python3
for task in continue recall; do
    f=$out/code-$task.csv
    {
        # ΔNLL (top-1): the paper's four, then the successor options
        $py "$here/ablation_table.py" --with-top1 "Keyformer=$f" "H2O=$f@h2o" \
            "window=$f@window" "sinks=$f@sinks" "H2O recent 0.5=$out/code-$task-r50.csv@h2o"
        $py "$here/ablation_table.py" --with-top1 "H2O obs32 pool7=$out/code-$task-snap.csv@h2o_obs32_maxpool7" \
            "H2O Ada-KV 0.2=$out/code-$task-ada.csv@h2o_ada20" \
            "H2O sinks 4=$out/code-$task-sinks4.csv@h2o_sinks4" \
            "H2O score/seen=$out/code-$task-norm.csv@h2o_norm" \
            "H2O slope 0.5=$out/code-$task-slope.csv@h2o_slope50" \
            "Keyformer reference rule=$out/code-$task-reference.csv"
        # paired per-document differences
        for pair in "keyformer h2o" "keyformer window" "sinks window" "h2o window"; do
            # shellcheck disable=SC2086
            $py "$here/paired_difference.py" "$f" $pair
        done
        for other in r50:h2o snap:h2o_obs32_maxpool7 ada:h2o_ada20 sinks4:h2o_sinks4 \
            norm:h2o_norm slope:h2o_slope50; do
            o=$out/code-$task-${other%%:*}.csv
            for b in h2o sinks keyformer; do
                $py "$here/paired_difference.py" "$o" "${other#*:}" $b --csv-b "$f"
            done
        done
        $py "$here/paired_difference.py" "$out/code-$task-reference.csv" keyformer keyformer \
            --csv-b "$f"
    } > "$out/code-$task-tables.md"
    $py "$here/plot_csv.py" "$out/quality-code-$task.png" --metrics dnll,top1 \
        --title "pycode-llama-12m, $task task, $DOCS files" \
        --policies keyformer,h2o,window,sinks,h2o_obs32_maxpool7 \
        "paper=$f" "recent 0.5=$out/code-$task-r50.csv" "obs32 pool7=$out/code-$task-snap.csv"
done
for task in continue recall; do
    f=$out/sotu-$task.csv
    r=$out/sotu-$task-r50.csv
    $py "$here/ablation_table.py" --with-top1 "Keyformer=$f" "H2O=$f@h2o" "window=$f@window" \
        "sinks=$f@sinks" "H2O recent 0.5=$r@h2o"
    for pair in "keyformer h2o" "keyformer window" "sinks window"; do
        # shellcheck disable=SC2086
        $py "$here/paired_difference.py" "$f" $pair
    done
    $py "$here/paired_difference.py" "$r" h2o window
done > "$out/sotu-tables.md"
f=$out/sotu-continue.csv
o=$out/sotu-continue
$py "$here/ablation_table.py" --with-top1 --budgets 0.1,0.5 "H2O=$f@h2o" \
    "obs32 pool7=$o-snap.csv@h2o_obs32_maxpool7" "Ada-KV 0.2=$o-ada.csv@h2o_ada20" \
    "sinks 4=$o-sinks4.csv@h2o_sinks4" "score/seen=$o-norm.csv@h2o_norm" \
    "slope 0.5=$o-slope.csv@h2o_slope50" "window=$f@window" "sinks=$f@sinks" >> "$out/sotu-tables.md"
for task in continue recall; do
    $py "$here/plot_csv.py" "$out/quality-sotu-$task.png" --metrics dnll,top1 \
        --title "sotu-llama-6m, $task task, 23 speeches" --policies keyformer,h2o,window,sinks \
        "paper=$out/sotu-$task.csv" "recent 0.5=$out/sotu-$task-r50.csv"
done
