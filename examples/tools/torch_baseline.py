#!/usr/bin/python3
"""Keyformer scoring and selection as a PyTorch CPU user would write it.

The same work libkeyformer's kf_observe_logits + kf_select do, timed on the
shapes of kf-bench-decode, one JSON object per line:

  decode:  per layer and step, logits [H, n] of one new query over n slots:
           y = softmax((x + gumbel) / tau), gumbel = -log(-log(u));
           score[Hkv, n] += y summed over each KV head's query-head group;
           keep the last w slots + topk(k - w) of the others.
  prefill: per layer, a prompt of S tokens in blocks of 512 query rows,
           causal logits [H, rows, S]; the same noised softmax, summed over
           rows and the group; one topk at the end.

Logits are random (time does not depend on their values). Times are
time.thread_time() with one thread (CPU time, as kf-bench-decode), else
time.perf_counter(), of whole steps (decode: all layers timed on
--layers-timed layers and scaled; prefill: every layer), best of --reps.

  /usr/bin/python3 examples/tools/torch_baseline.py decode --shape llama3-8b \
      --context 4096 --budget 0.5 --threads 1
  /usr/bin/python3 examples/tools/torch_baseline.py prefill --prompt 2048
"""
import argparse
import json
import math
import os
import time

import torch

clock = time.perf_counter

SHAPES = {"bundled": (6, 6, 2, 48), "llama3-8b": (32, 32, 8, 128)}


def load1():
    try:
        return os.getloadavg()[0]
    except OSError:
        return -1.0


def noised_softmax(x, tau):
    u = torch.rand_like(x).clamp_(min=1e-20, max=1.0 - 1e-7)
    g = -torch.log(-torch.log(u))
    return torch.softmax((x + g) / tau, dim=-1)


def select(score, k, w):
    """score [Hkv, n]: indices kept per KV head (last w + top k - w)."""
    n = score.shape[-1]
    if n <= k:
        return None
    top = torch.topk(score[:, : n - w], k - w, dim=-1).indices
    recent = torch.arange(n - w, n).expand(score.shape[0], w)
    return torch.sort(torch.cat([top, recent], dim=-1), dim=-1).values


def decode(a):
    L, H, Hk, d = SHAPES[a.shape]
    G = H // Hk
    Lt = min(a.layers_timed or L, L)
    k = int(math.floor(a.budget * a.context))
    w = int(math.floor(0.3 * k))
    n = k + 1
    logits = [torch.randn(H, n) * 2 for _ in range(Lt)]
    scores = [torch.rand(Hk, n) for _ in range(Lt)]
    tau = 1.5
    best = math.inf
    for rep in range(a.reps + 2):
        t0 = clock()
        for l in range(Lt):
            y = noised_softmax(logits[l], tau)
            scores[l] += y.view(Hk, G, n).sum(dim=1)
            keep = select(scores[l], k, w)
        t = clock() - t0
        if rep >= 2:
            best = min(best, t)
    best *= L / Lt
    n_logits = L * H * n
    print(json.dumps({
        "mode": "decode", "impl": "torch", "torch": torch.__version__,
        "shape": a.shape, "context": a.context, "budget": a.budget, "k": k,
        "threads": torch.get_num_threads(), "layers_timed": Lt,
        "seconds": best, "logits_per_s": n_logits / best,
        "reps": a.reps, "load1": load1()}))


def prefill(a):
    L, H, Hk, d = SHAPES[a.shape]
    G = H // Hk
    S, B = a.prompt, 512
    k = int(math.floor(a.budget * S))
    w = int(math.floor(0.3 * k))
    x = torch.randn(H, B, S) * 2
    rows_idx = torch.arange(B).view(B, 1)
    cols = torch.arange(S).view(1, S)
    tau = 1.0
    best = math.inf
    for rep in range(a.reps):
        t0 = clock()
        for l in range(L):
            score = torch.zeros(Hk, S)
            for r0 in range(0, S, B):
                rows = min(B, S - r0)
                seen = r0 + rows
                xb = x[:, :rows, :seen]
                mask = cols[:, :seen] > (rows_idx[:rows] + r0)
                xb = xb.masked_fill(mask, -math.inf)
                y = noised_softmax(xb, tau)
                score[:, :seen] += y.view(Hk, G, rows, seen).sum(dim=(1, 2))
            keep = select(score, k, w)
        best = min(best, clock() - t0)
    n_logits = L * H * S * (S + 1) / 2
    print(json.dumps({
        "mode": "prefill", "impl": "torch", "torch": torch.__version__,
        "shape": a.shape, "prompt": S, "budget": a.budget,
        "threads": torch.get_num_threads(), "seconds": best,
        "logits_per_s": n_logits / best, "reps": a.reps, "load1": load1()}))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("mode", choices=["decode", "prefill"])
    p.add_argument("--shape", default="bundled", choices=sorted(SHAPES))
    p.add_argument("--context", type=int, default=4096)
    p.add_argument("--prompt", type=int, default=2048)
    p.add_argument("--budget", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--layers-timed", type=int, default=0)
    p.add_argument("--reps", type=int, default=5)
    a = p.parse_args()
    global clock
    torch.set_num_threads(a.threads)
    if a.threads == 1:
        clock = time.thread_time
    torch.manual_seed(0)
    decode(a) if a.mode == "decode" else prefill(a)


if __name__ == "__main__":
    main()
