#!/usr/bin/env python3
# Copyright (c) 2026 the libkeyformer developers. BSD-2-Clause, see COPYING.
"""Decode speed and KV memory inside llama.cpp, side by side:

  llama-simple           llama.cpp's own generator (its fixed thread count)
  kf-llama adapter off   llama.cpp alone through kf-llama (same threads)
  kf-llama full          the adapter with the full cache: its overhead
  kf-llama keyformer     Keyformer at budget 0.5

on prompts of about 1K and 2K tokens cut from the bundled dev set, greedy,
--steps tokens. Rounds are interleaved (every configuration once per round)
so that a machine's drift hits all alike; prints the median and the range
of decode tokens/s per configuration, and the KV cells and bytes in use.

  bench_kf_llama.py --kf-llama K --llama-simple S --model M.gguf --data sotu-dev.jsonl
                    [--rounds 5] [--steps 64] [--threads 2]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile


def prompt_text(data, chars):
    texts = [json.loads(l)["text"] for l in open(data, encoding="utf-8") if l.strip()]
    text = max(texts, key=len)
    if len(text) < chars:
        text = " ".join(texts)
    cut = text[:chars]
    return cut[:cut.rfind(" ")] if " " in cut else cut


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
    return p.returncode, p.stderr.decode("utf-8", "replace")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kf-llama", required=True)
    ap.add_argument("--llama-simple")
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="kf-llama-bench-")
    steps = str(a.steps)
    for label, chars in (("1K", 4650), ("2K", 9000)):
        path = os.path.join(tmp, "prompt-%s.txt" % label)
        with open(path, "w", encoding="utf-8") as f:
            f.write(prompt_text(a.data, chars))
        base = [a.kf_llama, "--model", a.model, "--prompt-file", path, "--steps", steps,
                "--temperature", "0", "--seed", "1", "--threads", str(a.threads)]
        configs = [("kf-llama adapter off", base + ["--adapter", "off"]),
                   ("kf-llama full", base + ["--policy", "full"]),
                   ("kf-llama keyformer 0.5", base + ["--policy", "keyformer",
                                                      "--budget-ratio", "0.5"])]
        if a.llama_simple:
            text = open(path, encoding="utf-8").read()
            configs.insert(0, ("llama-simple", [a.llama_simple, "-m", a.model, "-n", steps,
                                                text]))
        speeds = {name: [] for name, _ in configs}
        info = {}
        for _ in range(a.rounds):
            for name, cmd in configs:
                rc, err = run(cmd)
                if rc != 0:
                    print("%s failed (%d): %s" % (name, rc, err[-500:]))
                    return 1
                if name == "llama-simple":
                    m = re.search(r"decoded (\d+) tokens in [\d.]+ s, speed: ([\d.]+) t/s", err)
                    speeds[name].append(float(m.group(2)) if m else float("nan"))
                    continue
                line = [l for l in err.splitlines() if l.startswith("prompt tokens:")][-1]
                speeds[name].append(float(re.search(r"decode: ([\d.]+) tokens/s", line).group(1)))
                cells = re.search(r"KV cells in use: (\d+) \(peak (\d+)\) of (\d+) positions",
                                  line)
                kvb = re.search(r"KV bytes in use: (\d+) vs full cache: (\d+)", line)
                info[name] = (re.search(r"prompt tokens: (\d+)", line).group(1), cells.groups(),
                              kvb.groups())
        print("\nprompt %s (%s tokens), %s steps, %d threads (llama-simple: its default), "
              "%d interleaved rounds" % (label, info[configs[-1][0]][0], steps, a.threads,
                                         a.rounds))
        print("%-24s %26s  %s" % ("configuration", "decode tokens/s med [min-max]",
                                  "KV cells after / peak / positions, bytes in use vs full"))
        for name, _ in configs:
            v = speeds[name]
            kv = ""
            if name in info:
                (_, (cells, peak, pos), (used, full)) = info[name]
                kv = "%s / %s / %s, %.2f MB vs %.2f MB (%.1f %%)" % (
                    cells, peak, pos, int(used) / 1e6, int(full) / 1e6,
                    100.0 * int(used) / int(full))
            print("%-24s %10.1f [%.1f-%.1f]  %s" % (name, statistics.median(v), min(v), max(v),
                                                   kv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
