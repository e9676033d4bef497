#!/usr/bin/env python3
"""Runs `kf-bench decode ...` and `kf-bench prefill ...` on small shapes and
checks the JSON lines issue 6 specifies: one object per (shape, context,
budget, dtype, threads) with context, budget, attention_s, library_s,
step_s, speedup_vs_full and overhead_share (= library_s / step_s).

  check_bench_json.py KF_BENCH
"""
import json
import subprocess
import sys

DECODE_KEYS = ("shape", "context", "budget", "dtype", "threads", "attention_s",
               "library_s", "observe_s", "select_s", "compact_s", "step_s",
               "speedup_vs_full", "overhead_share")


def run(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    if not rows:
        sys.exit("no JSON lines from %s" % " ".join(cmd))
    return rows


def check_decode(rows, contexts, budgets):
    seen = set()
    for r in rows:
        for k in DECODE_KEYS:
            if k not in r:
                sys.exit("decode line without %s: %s" % (k, r))
        seen.add((r["context"], r["budget"]))
        if not (r["attention_s"] > 0 and r["step_s"] > 0 and r["speedup_vs_full"] > 0):
            sys.exit("non-positive time: %s" % r)
        if abs(r["step_s"] - r["attention_s"] - r["library_s"]) > 1e-9 + 1e-6 * r["step_s"]:
            sys.exit("step_s != attention_s + library_s: %s" % r)
        if abs(r["overhead_share"] - r["library_s"] / r["step_s"]) > 1e-3:
            sys.exit("overhead_share != library_s / step_s: %s" % r)
        if r["budget"] == 1 and (r["library_s"] != 0 or r["speedup_vs_full"] != 1):
            sys.exit("the full cache calls no library: %s" % r)
        # a cheap policy's library time can round to 0 once the clock's own
        # cost is subtracted: check that the budget applied, not a timing
        if r["budget"] < 1 and not (r["library_s"] >= 0 and r["k"] < r["context"]):
            sys.exit("a budget below 1 runs the library: %s" % r)
    want = {(c, b) for c in contexts for b in budgets + [1]}
    if seen != want:
        sys.exit("decode lines for %s, expected %s" % (sorted(seen), sorted(want)))


def main():
    bench = sys.argv[1]
    for extra in ([], ["--order", "any"], ["--evict-every", "4", "--steps", "8"],
                  ["--dtype", "f16", "--threads", "2"], ["--policy", "h2o"],
                  ["--policy", "window"], ["--policy", "sinks"]):
        rows = run([bench, "decode", "--shape", "bundled", "--context", "256,512",
                    "--budgets", "0.3,0.5", "--steps", "4", "--json"] + extra)
        check_decode(rows, [256, 512], [0.3, 0.5])
    rows = run([bench, "decode", "--shape", "llama3-8b", "--context", "256",
                "--budgets", "0.5", "--steps", "2", "--json"])
    check_decode(rows, [256], [0.5])
    pre = run([bench, "prefill", "--prompt", "256,600", "--reps", "1", "--json"])
    for r in pre:
        if not (r["attention_s"] > 0 and r["library_s"] > 0
                and abs(r["library_vs_attention"] - r["library_s"] / r["attention_s"]) < 1e-3):
            sys.exit("bad prefill line: %s" % r)
    if sorted(r["prompt"] for r in pre) != [256, 600]:
        sys.exit("prefill lines: %s" % pre)
    print("kf-bench decode/prefill JSON: ok")


if __name__ == "__main__":
    main()
