#!/usr/bin/env python3
"""Paired per-document differences between two policies of a kf-eval CSV.

usage: paired_difference.py CSV POLICY_A POLICY_B [--metric dnll|top1|rougeL]
                            [--csv-b CSV_B]

POLICY_B comes from CSV_B when given (two runs of the same documents, for
example two recent ratios, whose policies carry the same name).

For each budget: the per-document difference A - B of the metric (each
policy's seeds averaged first), its mean over documents, the standard error
of that mean (sample standard deviation / sqrt(documents)), and on how many
documents A is better (lower ΔNLL, higher top-1 or ROUGE-L). A mean more
than about two standard errors from zero is unlikely to be document noise.
Only the standard library is used.
"""
import argparse
import csv
import math
import statistics


def per_doc(path, policy, metric):
    """{budget: {doc: mean over seeds}}"""
    values = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["policy"] == policy and row[metric] != "":
                values.setdefault(float(row["budget"]), {}).setdefault(row["doc"], []).append(
                    float(row[metric]))
    return {b: {d: statistics.fmean(v) for d, v in docs.items()} for b, docs in values.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("csv")
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--metric", default="dnll", choices=["dnll", "top1", "rougeL"])
    parser.add_argument("--csv-b", help="the file of POLICY_B (default: CSV)")
    args = parser.parse_args()
    a = per_doc(args.csv, args.a, args.metric)
    b = per_doc(args.csv_b or args.csv, args.b, args.metric)
    lower_is_better = args.metric == "dnll"
    print(f"| budget | {args.a} − {args.b} ({args.metric}) | standard error | "
          f"documents where {args.a} is better |")
    print("|---:|---:|---:|---:|")
    for budget in sorted(set(a) & set(b)):
        docs = sorted(set(a[budget]) & set(b[budget]))
        diffs = [a[budget][d] - b[budget][d] for d in docs]
        mean = statistics.fmean(diffs)
        se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else 0.0
        better = sum(1 for x in diffs if (x < 0 if lower_is_better else x > 0))
        print(f"| {budget:g} | {mean:+.4f} | {se:.4f} | {better} of {len(docs)} |")


if __name__ == "__main__":
    main()
