#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_cli (fuzz/corpus/fuzz_cli/): command lines
of kf-generate (byte 0 = 0) and kf-eval (byte 0 = 1), NUL-separated, and
JSON-lines documents for kf-eval's reader (byte 0 = 2, byte 1 = byte cap
/ 64). The regress-* seeds are the inputs of the command-line defects of
doc/robustness.md ("Example programs").

usage: fuzz/gen_cli_seeds.py [OUT_DIR]
"""
import os
import sys

GENERATE = {
    "gen-keyformer": ["--prompt", "Fellow citizens", "--policy", "keyformer",
                      "--budget-tokens", "6", "--seed", "7"],
    "gen-ratio": ["--policy", "h2o", "--budget-ratio", "0.5", "--recent", "0.2",
                  "--granularity", "head", "--evict-every", "4"],
    "gen-help": ["--steps", "3", "--help"],
    "gen-version": ["--version"],
    "gen-missing-value": ["--policy"],
    "regress-budget-full-policy": ["--budget-ratio", "0.5"],
    "regress-budget-ambiguous": ["--policy", "keyformer", "--budget", "1"],
    "regress-both-budgets": ["--policy", "keyformer", "--budget-tokens", "8",
                             "--budget-ratio", "0.5"],
    "regress-sinks-budget": ["--policy", "sinks", "--budget-tokens", "3"],
    "regress-top-p-zero": ["--top-p", "0"],
    "regress-threads-2000": ["--threads", "2000", "--policy", "keyformer"],
    "regress-threads-intmax": ["--threads", "2147483647"],
    "regress-evict-intmax": ["--policy", "window", "--evict-every", "2147483647"],
    "regress-capacity-below-budget": ["--policy", "window", "--budget-tokens", "8",
                                      "--capacity", "8"],
}
EVAL = {
    "eval-small": ["--max-docs", "1", "--prompt-tokens", "160", "--gen-tokens", "24",
                   "--budgets", "0.25,0.5", "--seeds", "2", "--seed", "7"],
    "eval-recall": ["--task", "recall", "--prompt-tokens", "400", "--policies",
                    "window,h2o", "--granularity", "uniform"],
    "eval-text": ["--text", "docs.jsonl", "--tokenizer", "tok.bin", "--csv", "o.csv"],
    "eval-help": ["--help"],
    "regress-budgets-bad-item": ["--budgets", "0.5,abc"],
    "regress-budgets-empty-item": ["--budgets", "0.1,,0.5"],
    "regress-policies-bad-item": ["--policies", "full,lru"],
    "regress-granularity-head": ["--granularity", "head"],
    "regress-prompt-intmax": ["--prompt-tokens", "2147483647", "--gen-tokens", "1"],
    "regress-rouge-intmax": ["--rouge-tokens", "2147483647"],
    "regress-evict-intmax": ["--evict-every", "2147483647"],
    "regress-recall-overflow": ["--task", "recall", "--gen-tokens", "1048576",
                                "--prompt-tokens", "1048576"],
    "regress-sinks-budget": ["--prompt-tokens", "40", "--budgets", "0.1"],
    "regress-full-only-recent": ["--policies", "full", "--recent", "0.5"],
}
DOCS = {
    "docs-ids": (0, b'{"name": "a", "ids": [1, 2, 3]}\n\n{"name": "b", "ids": []}\n'),
    "docs-text": (0, b'{"name": "a,\\"b\\"\\nc", "text": "x\\u00e9\\ud83d\\ude00", '
                     b'"ids": [1], "other": {"k": [1, {"z": null}]}}\n'),
    "docs-negative-id": (0, b'{"name": "a", "ids": [1, -2]}\n'),
    "docs-huge-id": (0, b'{"name": "a", "ids": [99999999999999999999]}\n'),
    "docs-no-name": (0, b'{"ids": [1]}\n'),
    "docs-bad-escape": (0, b'{"name": "\\ud800", "ids": [1]}\n'),
    "docs-deep": (0, b'{"name": "a", "x": ' + b"[" * 100 + b"]" * 100 + b', "ids": [1]}\n'),
    "regress-docs-over-cap": (1, b'{"name": "a", "ids": [' + b"1, " * 40 + b'1]}\n'),
}


def write(out, name, data):
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "corpus", "fuzz_cli")
    os.makedirs(out, exist_ok=True)
    for name, args in GENERATE.items():
        write(out, "generate-" + name, b"\x00" + b"\x00".join(a.encode() for a in args))
    for name, args in EVAL.items():
        write(out, "eval-" + name, b"\x01" + b"\x00".join(a.encode() for a in args))
    for name, (cap, text) in DOCS.items():
        write(out, name, bytes([2, cap]) + text)


if __name__ == "__main__":
    main()
