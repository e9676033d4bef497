#!/usr/bin/env python3
"""kf-eval's figure from CSV files, to combine or redraw runs.

usage: plot_csv.py OUT.png [--title TEXT] [--policies LIST] [--budgets LIST]
                   [--metrics dnll,top1,rougeL] [LABEL=]CSV ...

One line per (file, policy): ΔNLL, top-1 agreement and (when the files have
it) ROUGE-L against the budget, each point the mean over documents, with
error bars from the lowest to the highest seed. With one file the lines are
named by policy; with several, by "LABEL policy" (and coloured by file when
they all show one policy). Needs gnuplot (pngcairo);
only the standard library otherwise.
"""
import argparse
import csv
import statistics
import subprocess
import sys

COLOURS = {"keyformer": "#d62728", "h2o": "#1f77b4", "window": "#2ca02c", "sinks": "#9467bd"}
# per file, when every line is one policy
PALETTE = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d"]
DASHES = [1, 2, 4, 5]


def groups(path, wanted, budgets):
    """{policy: {budget: {metric: [mean over docs per seed]}}}"""
    rows = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["policy"] == "full" or (wanted and row["policy"] not in wanted):
                continue
            if budgets and round(float(row["budget"]), 6) not in budgets:
                continue
            key = (row["policy"], float(row["budget"]), row["seed"])
            rows.setdefault(key, []).append(row)
    out = {}
    for (policy, budget, _), docs in rows.items():
        cell = out.setdefault(policy, {}).setdefault(budget, {"dnll": [], "top1": [], "rougeL": []})
        for metric in cell:
            values = [float(r[metric]) for r in docs if r[metric] != ""]
            if values:
                cell[metric].append(statistics.fmean(values))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out")
    parser.add_argument("files", nargs="+", metavar="[LABEL=]CSV")
    parser.add_argument("--title", default="kf-eval")
    parser.add_argument("--policies", help="comma-separated policies (default: all)")
    parser.add_argument("--budgets", help="comma-separated budgets (default: all)")
    parser.add_argument("--metrics", default="dnll,top1,rougeL",
                        help="panels, of dnll,top1,rougeL (rougeL only if present)")
    args = parser.parse_args()
    wanted = set(args.policies.split(",")) if args.policies else None
    budgets = {round(float(b), 6) for b in args.budgets.split(",")} if args.budgets else None
    metrics = args.metrics.split(",")

    series = []  # (title, colour, dash, {budget: cell})
    for index, spec in enumerate(args.files):
        label, _, path = spec.rpartition("=")
        for policy, cells in sorted(groups(path, wanted, budgets).items(),
                                    key=lambda kv: list(COLOURS).index(kv[0])
                                    if kv[0] in COLOURS else 99):
            name = f"{label} {policy}".strip() if len(args.files) > 1 else policy
            if label and policy not in COLOURS: # a variant (h2o_obs32_maxpool7): its label
                name = label
            series.append((name, COLOURS.get(policy, "#7f7f7f"), DASHES[index % len(DASHES)],
                           cells))
    if not series:
        sys.exit("plot_csv.py: nothing to plot")
    if len(args.files) > 1 and len({name.split()[-1] for name, _, _, _ in series}) == 1:
        series = [(name, PALETTE[i % len(PALETTE)], 1, cells)
                  for i, (name, _, _, cells) in enumerate(series)]
    has_rouge = any(cell["rougeL"] for _, _, _, cells in series for cell in cells.values())
    panels = [p for p in [("dnll", "ΔNLL vs full cache (nats, lower is better)", 0),
                          ("top1", "top-1 agreement with the full cache", 1),
                          ("rougeL", "ROUGE-L F1 of greedy tokens vs the full cache", 1)]
              if p[0] in metrics and (p[0] != "rougeL" or has_rouge)]

    script = []
    for i, (_, _, _, cells) in enumerate(series):
        script.append(f"$s{i} << EOD")
        for budget in sorted(cells):
            values = []
            for metric, _, _ in panels:
                seeds = cells[budget][metric] or [float("nan")]
                values += [statistics.fmean(seeds), min(seeds), max(seeds)]
            script.append(f"{budget:g} " + " ".join(f"{v:.6f}" for v in values))
        script.append("EOD")
    script += [
        f"set terminal pngcairo size {520 * len(panels)},520 font 'sans,10'",
        f"set output '{args.out}'",
        f"set multiplot layout 1,{len(panels)} title '{args.title}' font 'sans,11'",
        # the key below, two entries a row, and room for it
        "set grid", "set key below horizontal maxcols 2 spacing 1.2",
        f"set bmargin {5 + 1.3 * ((len(series) + 2) // 2):.1f}",
        "set xlabel 'KV budget (fraction of the prompt)'", "set xrange [0:1]",
    ]
    for p, (metric, title, reference) in enumerate(panels):
        col = 2 + 3 * p
        plots = [f"{reference} with lines dt 2 lc rgb 'black' title 'full'"]
        for i, (name, colour, dash, _) in enumerate(series):
            plots.append(f"$s{i} using 1:{col}:{col + 1}:{col + 2} with yerrorlines "
                         f"lc rgb '{colour}' dt {dash} lw 2 pt {(5, 7, 9, 11, 13, 4, 6)[i % 7]} title '{name}' noenhanced")
        script.append(f'set title "{title}"')
        script.append("plot " + ", ".join(plots))
    script.append("unset multiplot")
    subprocess.run(["gnuplot"], input="\n".join(script) + "\n", text=True, check=True)


if __name__ == "__main__":
    main()
