#!/usr/bin/env python3
"""kf-generate --observe kv-head|layer: the same greedy output either way.

The logits reach the library one KV head at a time (kf_observe_begin /
kf_observe_kv_head / kf_observe_end, the default) or a whole layer at once
(kf_observe_logits); the results are the same bit for bit, so the greedy
text and the statistics line (less its timings) must be too. A prompt file
of more than 512 tokens, so the prompt reaches the library in several
blocks; Keyformer and H2O, 1 and 2 threads.

usage: check_observe.py KF_GENERATE PROMPT_FILE
"""
import re
import subprocess
import sys

TIMINGS = re.compile(r"prefill: [0-9.]+ ms \| decode: [0-9.]+ tokens/s \| ")


def run(exe, args):
    done = subprocess.run([exe] + args, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        sys.exit("%s %s failed (%d):\n%s"
                 % (exe, " ".join(args), done.returncode, done.stderr))
    stats = done.stderr.strip().split("\n")[-1]
    if "prompt tokens:" not in stats:
        sys.exit("no statistics line in:\n" + done.stderr)
    return done.stdout, TIMINGS.sub("", stats)


def main():
    exe, prompt = sys.argv[1], sys.argv[2]
    for policy in (["--policy", "keyformer", "--budget-ratio", "0.5"],
                   ["--policy", "h2o", "--budget-tokens", "64"]):
        for threads in ("1", "2"):
            common = ["--prompt-file", prompt, "--steps", "32", "--temperature", "0",
                      "--seed", "5", "--threads", threads] + policy
            by_kv_head = run(exe, common)  # the default
            by_layer = run(exe, common + ["--observe", "layer"])
            explicit = run(exe, common + ["--observe", "kv-head"])
            if by_kv_head != by_layer or by_kv_head != explicit:
                sys.exit("%s, %s thread(s): --observe kv-head gave\n%r\nlayer gave\n%r"
                         % (" ".join(policy), threads, by_kv_head, by_layer))
    print("ok")


if __name__ == "__main__":
    main()
