#!/usr/bin/env python3
"""kf-generate --samples N: N continuations after one shared prefill.

Greedy samples (--temperature 0) must be identical to each other and to a
single run; sampled ones (--temperature 1) must each equal a single run
with that sample's seed (S + i), for the full cache and H2O (Keyformer's
noise keeps seed S in every sample: the samples share the prompt's cache,
so a single run with seed S + i differs from sample i). Each continuation
follows a header line.

usage: check_samples.py KF_GENERATE
"""
import re
import subprocess
import sys

PROMPT = "Fellow citizens of the Senate and of the House of Representatives"
HEADER = re.compile(r"^--- sample (\d+) of (\d+) \(seed (\d+)\) ---$")


def run(exe, extra):
    args = [exe, "--prompt", PROMPT, "--steps", "24", "--threads", "1"] + extra
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        sys.exit("%s failed (%d):\n%s" % (" ".join(args), done.returncode, done.stderr))
    return done.stdout, done.stderr


def samples(exe, extra, n):
    out, err = run(exe, extra + ["--samples", str(n)])
    lines = out.split("\n")
    found, text = [], None
    for line in lines[1:]:  # the prompt comes first
        m = HEADER.match(line)
        if m:
            found.append((int(m.group(1)), int(m.group(3))))
            text = None
        elif found and text is None:
            text = line
            found[-1] = found[-1] + (line,)
    if [f[0] for f in found] != list(range(1, n + 1)) or any(len(f) != 3 for f in found):
        sys.exit("bad sample headers in:\n" + out)
    if err.count("prompt tokens:") != n:
        sys.exit("wanted %d statistics lines:\n%s" % (n, err))
    return [(seed, text) for _, seed, text in found]


def single(exe, extra, seed):
    out, _ = run(exe, extra + ["--seed", str(seed)])
    first = out.split("\n")[0]
    if not first.startswith(PROMPT):
        sys.exit("no prompt echo in:\n" + out)
    return first[len(PROMPT):]


def main():
    exe = sys.argv[1]
    for policy in (["--policy", "full"],
                   ["--policy", "keyformer", "--budget-tokens", "8"],
                   ["--policy", "h2o", "--budget-tokens", "8", "--slot-order", "any"]):
        greedy = policy + ["--temperature", "0", "--seed", "11"]
        got = samples(exe, greedy, 3)
        want = single(exe, policy + ["--temperature", "0"], 11)
        for seed, text in got:
            if text != want:
                sys.exit("%s: greedy sample (seed %d) %r differs from the single run %r"
                         % (" ".join(policy), seed, text, want))
        if "keyformer" in policy:
            continue  # its noise is seeded with S in every sample (one cache)
        sampled = policy + ["--temperature", "1", "--seed", "20"]
        got = samples(exe, sampled, 3)
        for i, (seed, text) in enumerate(got):
            want = single(exe, policy + ["--temperature", "1"], 20 + i)
            if seed != 20 + i or text != want:
                sys.exit("%s: sample %d (seed %d) %r differs from a single run %r"
                         % (" ".join(policy), i + 1, seed, text, want))
    print("ok")


if __name__ == "__main__":
    main()
