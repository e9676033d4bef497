#!/usr/bin/env python3
"""Compare kf-eval CSV output with an independent simulation's figures.

usage: compare_reference.py REFERENCE_JSON DYNAMIC_CSV [REFERENCE_RULE_CSV]
                            [--markdown | --compact | --per-document]
                            [--tolerance-deterministic X]
                            [--tolerance-keyformer Y]

REFERENCE_JSON is examples/data/reference-eval-dev.json: rows of
{doc, policy, budget, nll, full_nll, dnll, top1} for the policies window,
sinks, h2o, keyformer (dynamic eviction rule) and h2o-frozen,
keyformer-reference-rule (the authors' rule). DYNAMIC_CSV is a kf-eval run
with --rule dynamic; REFERENCE_RULE_CSV, if given, one with --rule reference,
whose h2o and keyformer rows are matched to h2o-frozen and
keyformer-reference-rule.

Prints one line (or Markdown table row) per document, policy and budget with
both NLLs and the difference, then the largest difference per policy.
--compact prints one Markdown row per document and policy instead, with the
NLL difference (kf-eval minus reference) at each budget. --per-document
prints two Markdown tables: per document, the largest |difference| over the
budgets of each policy; and the Keyformer differences per document and
budget for both rules. Keyformer rows of several seeds are averaged. The
exit status is 1 if a deterministic policy (window, sinks, h2o, h2o-frozen)
differs by more than its tolerance (default 1e-3 nats) or a Keyformer row by
more than its tolerance (default 0.05 nats: a different random draw), 0
otherwise. Only the standard library is used.
"""
import argparse
import csv
import json
import sys

DETERMINISTIC = {"window", "sinks", "h2o", "h2o-frozen"}


def read_csv(path, rename):
    """{(doc, policy, budget): [rows over seeds]} with policies renamed."""
    table = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            policy = rename.get(row["policy"], row["policy"])
            key = (row["doc"], policy, round(float(row["budget"]), 6))
            table.setdefault(key, []).append(row)
    return table


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("reference")
    parser.add_argument("dynamic_csv")
    parser.add_argument("reference_rule_csv", nargs="?")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--compact", action="store_true")
    parser.add_argument("--per-document", action="store_true")
    parser.add_argument("--tolerance-deterministic", type=float, default=1e-3)
    parser.add_argument("--tolerance-keyformer", type=float, default=0.05)
    args = parser.parse_args()

    with open(args.reference) as f:
        reference = json.load(f)["rows"]
    ours = read_csv(args.dynamic_csv, {})
    if args.reference_rule_csv:
        frozen = read_csv(args.reference_rule_csv,
                          {"h2o": "h2o-frozen", "keyformer": "keyformer-reference-rule"})
        ours.update({k: v for k, v in frozen.items()
                     if k[1] in ("h2o-frozen", "keyformer-reference-rule")})

    if args.compact or args.per_document:
        pass
    elif args.markdown:
        print("| doc | policy | budget | NLL (reference) | NLL (kf-eval) | difference "
              "| full NLL difference | top-1 (reference) | top-1 (kf-eval) |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    budgets = sorted({round(float(r["budget"]), 6) for r in reference})
    compact = {}
    worst = {}
    failed = False
    missing = 0
    for ref in reference:
        key = (ref["doc"], ref["policy"], round(float(ref["budget"]), 6))
        rows = ours.get(key)
        if not rows:
            missing += 1
            continue
        nll = sum(float(r["nll"]) for r in rows) / len(rows)
        full = float(rows[0]["full_nll"])
        top1 = sum(float(r["top1"]) for r in rows) / len(rows)
        diff = nll - ref["nll"]
        full_diff = full - ref["full_nll"]
        policy = ref["policy"]
        tolerance = (args.tolerance_deterministic if policy in DETERMINISTIC
                     else args.tolerance_keyformer)
        if abs(diff) > tolerance or abs(full_diff) > args.tolerance_deterministic:
            failed = True
        w = worst.setdefault(policy, [0.0, 0.0, 0])
        w[0] = max(w[0], abs(diff))
        w[1] += diff
        w[2] += 1
        compact.setdefault((ref["doc"], policy), {})[key[2]] = diff
        if args.compact or args.per_document:
            pass
        elif args.markdown:
            print(f"| {ref['doc']} | {policy} | {ref['budget']:g} | {ref['nll']:.6f} | "
                  f"{nll:.6f} | {diff:+.6f} | {full_diff:+.6f} | {ref['top1']:.4f} | "
                  f"{top1:.4f} |")
        else:
            print(f"{ref['doc']:28s} {policy:25s} {ref['budget']:4g} ref {ref['nll']:.6f} "
                  f"ours {nll:.6f} diff {diff:+.6f} (full {full_diff:+.6f}) "
                  f"top1 {ref['top1']:.4f} vs {top1:.4f}")
    if args.compact:
        print("| doc | policy | " + " | ".join(f"{b:g}" for b in budgets) + " |")
        print("|---|---|" + "---:|" * len(budgets))
        for (doc, policy), diffs in compact.items():
            cells = [f"{diffs[b]:+.1e}" if b in diffs else "–" for b in budgets]
            print(f"| {doc} | {policy} | " + " | ".join(cells) + " |")
    if args.per_document:
        docs = list(dict.fromkeys(doc for doc, _ in compact))
        policies = list(dict.fromkeys(policy for _, policy in compact))
        print("| doc | " + " | ".join(policies) + " |")
        print("|---|" + "---:|" * len(policies))
        for doc in docs:
            cells = []
            for policy in policies:
                diffs = compact.get((doc, policy), {})
                cells.append(f"{max(abs(d) for d in diffs.values()):.1e}" if diffs else "–")
            print(f"| {doc} | " + " | ".join(cells) + " |")
        print()
        keyformer = [p for p in policies if p.startswith("keyformer")]
        print("| doc | rule | " + " | ".join(f"{b:g}" for b in budgets) + " |")
        print("|---|---|" + "---:|" * len(budgets))
        for doc in docs:
            for policy in keyformer:
                diffs = compact.get((doc, policy), {})
                rule = "reference" if "reference" in policy else "dynamic"
                cells = [f"{diffs[b]:+.4f}" if b in diffs else "–" for b in budgets]
                print(f"| {doc} | {rule} | " + " | ".join(cells) + " |")
    print()
    if args.markdown or args.compact or args.per_document:
        print("| policy | rows | largest abs. difference | mean difference |")
        print("|---|---:|---:|---:|")
    for policy, (largest, total, n) in sorted(worst.items()):
        if args.markdown or args.compact or args.per_document:
            print(f"| {policy} | {n} | {largest:.2e} | {total / n:+.2e} |")
        else:
            print(f"{policy:25s} rows {n:3d} largest |diff| {largest:.2e} "
                  f"mean diff {total / n:+.2e}")
    if missing:
        print(f"\n{missing} reference rows have no kf-eval counterpart", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
