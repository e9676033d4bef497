#!/usr/bin/env python3
"""Markdown tables from kf-eval CSV files, one column per setting.

usage: ablation_table.py [--policy NAME] [--metric dnll|top1|rougeL|nll] [--budgets LIST]
                         [--with-top1]
                         LABEL=FILE[,FILE...][@POLICY] [LABEL=FILE ...]

For the chosen policy (default keyformer) and metric (default dnll), each
cell is the mean over documents, then mean ± sample standard deviation over
the seeds found in that setting's files (several files of one setting are
pooled, e.g. runs with different --seed); "@POLICY" after a setting's
files picks another policy for that column. Rows are budgets. A last row gives
the mean over budgets. --with-top1 adds each cell's top-1 agreement in
brackets. Only the standard library is used.
"""
import argparse
import csv
import math
import statistics


def load(files, policy, metric):
    """{budget: {seed: {doc: value}}} for one setting."""
    table = {}
    for path in files:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if row["policy"] != policy or row[metric] == "":
                    continue
                budget = float(row["budget"])
                seed = row["seed"]
                table.setdefault(budget, {}).setdefault(seed, {})[row["doc"]] = float(row[metric])
    return table


def cell(by_seed):
    means = [statistics.fmean(docs.values()) for docs in by_seed.values()]
    mean = statistics.fmean(means)
    spread = statistics.stdev(means) if len(means) > 1 else 0.0
    return mean, spread, len(means), len(next(iter(by_seed.values())))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--policy", default="keyformer")
    parser.add_argument("--metric", default="dnll", choices=["dnll", "top1", "rougeL", "nll"])
    parser.add_argument("--budgets", help="comma-separated budgets to show (default: all)")
    parser.add_argument("--with-top1", action="store_true",
                        help="add top-1 agreement in brackets to every cell")
    parser.add_argument("settings", nargs="+", metavar="LABEL=FILE[,FILE...][@POLICY]")
    args = parser.parse_args()

    settings = []
    for spec in args.settings:
        label, _, files = spec.partition("=")
        files, _, policy = files.partition("@")
        files = files.split(",")
        top1 = load(files, policy or args.policy, "top1") if args.with_top1 else None
        settings.append((label, load(files, policy or args.policy, args.metric), top1))
    budgets = sorted({b for _, t, _ in settings for b in t})
    if args.budgets:
        wanted = {round(float(b), 6) for b in args.budgets.split(",")}
        budgets = [b for b in budgets if round(b, 6) in wanted]
    signed = args.metric == "dnll"
    fmt = "{:+.4f}" if signed else "{:.4f}"

    print(f"| budget | " + " | ".join(label for label, _, _ in settings) + " |")
    print("|---:|" + "---:|" * len(settings))
    sums = [[] for _ in settings]
    for budget in budgets:
        cells = []
        for i, (_, table, top1) in enumerate(settings):
            if budget not in table:
                cells.append("–")
                continue
            mean, spread, n_seeds, n_docs = cell(table[budget])
            sums[i].append(mean)
            text = fmt.format(mean)
            if n_seeds > 1:
                text += f" ± {spread:.4f}"
            if top1 and budget in top1:
                text += f" ({cell(top1[budget])[0]:.3f})"
            cells.append(text)
        print(f"| {budget:g} | " + " | ".join(cells) + " |")
    means = [fmt.format(statistics.fmean(s)) if s and len(s) == len(budgets) else "–"
             for s in sums]
    print("| **mean** | " + " | ".join(means) + " |")


if __name__ == "__main__":
    main()
