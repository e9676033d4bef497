#!/usr/bin/python3
"""Markdown tables and gnuplot data from examples/tools/bench/run.sh output.

  summarize.py DIR            tables on stdout
  summarize.py DIR --dat OUT  also OUT/decode-SHAPE-DTYPE-THREADS.dat
                              (context, step ms per budget) for plot.gp
"""
import json
import os
import sys


def read(path):
    if not os.path.exists(path):
        return []
    return [json.loads(l) for l in open(path) if l.startswith("{")]


def ms(s):
    return "%.3g" % (1e3 * s) if s < 1 else "%.0f" % (1e3 * s)


def main():
    d = sys.argv[1]
    dat = sys.argv[sys.argv.index("--dat") + 1] if "--dat" in sys.argv else None
    dec = read(os.path.join(d, "decode.jsonl"))
    groups = {}
    for r in dec:
        groups.setdefault((r["shape"], r["dtype"], r["threads"]), {}) \
              .setdefault(r["context"], {})[r["budget"]] = r
    for (shape, dt, thr), by_ctx in groups.items():
        loads = [r["load1"] for c in by_ctx.values() for r in c.values()]
        print("\n%s, %s cache, %d thread(s) (load %.1f-%.1f); step ms "
              "(speedup vs full, library share)\n" %
              (shape, dt, thr, min(loads), max(loads)))
        print("| context | full | 0.7 | 0.5 | 0.3 | attention-only speedup at 0.5 |")
        print("|---:|---:|---:|---:|---:|---:|")
        for ctx in sorted(by_ctx):
            c = by_ctx[ctx]
            cells = [ms(c[1]["step_s"])]
            for b in (0.7, 0.5, 0.3):
                r = c.get(b)
                cells.append("%s (%.2f×, %.0f%%)" % (
                    ms(r["step_s"]), r["speedup_vs_full"],
                    100 * r["overhead_share"]) if r else "")
            att = c[1]["attention_s"] / c[0.5]["attention_s"] if 0.5 in c else 0
            print("| %dK | %s | %.2f× |" % (ctx // 1024, " | ".join(cells), att))
        if dat:
            with open(os.path.join(dat, "decode-%s-%s-%d.dat" % (shape, dt, thr)), "w") as f:
                for ctx in sorted(by_ctx):
                    c = by_ctx[ctx]
                    f.write("%d %s\n" % (ctx, " ".join(
                        "%.6g" % (1e3 * c[b]["step_s"]) if b in c else "nan"
                        for b in (1, 0.7, 0.5, 0.3))))
    # library breakdown at 0.5
    print("\nLibrary per step at budget 0.5 (ms): observe / select / compact\n")
    print("| shape | dtype | threads | context | observe | select | compact | library | attention |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in dec:
        if r["budget"] == 0.5:
            print("| %s | %s | %d | %dK | %s | %s | %s | %s | %s |" % (
                r["shape"], r["dtype"], r["threads"], r["context"] // 1024,
                ms(r["observe_s"]), ms(r["select_s"]), ms(r["compact_s"]),
                ms(r["library_s"]), ms(r["attention_s"])))
    ev = read(os.path.join(d, "decode-every16.jsonl"))
    if ev:
        print("\nSelect + compact once per 16 tokens (llama3-8b, f32)\n")
        print("| threads | context | budget | step ms | speedup | library share | observe | select | compact |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in ev:
            print("| %d | %dK | %g | %s | %.2f× | %.1f%% | %s | %s | %s |" % (
                r["threads"], r["context"] // 1024, r["budget"],
                ms(r["step_s"]), r["speedup_vs_full"],
                100 * r["overhead_share"], ms(r["observe_s"]),
                ms(r["select_s"]), ms(r["compact_s"])))
    anyo = read(os.path.join(d, "decode-any.jsonl"))
    if anyo:
        print("\nKF_ORDER_ANY (f32): step ms (speedup vs full, library share); "
              "library at 0.5 = observe / select / compact ms\n")
        print("| shape | threads | evict every | context | 0.7 | 0.5 | 0.3 | library at 0.5 |")
        print("|---|---:|---:|---:|---:|---:|---:|---|")
        rows = {}
        for r in anyo:
            rows.setdefault((r["shape"], r["threads"], r["evict_every"], r["context"]), {})[r["budget"]] = r
        for (shape, thr, ev, ctx), c in rows.items():
            cells = []
            for b in (0.7, 0.5, 0.3):
                r = c.get(b)
                cells.append("%s (%.2f×, %.0f%%)" % (
                    ms(r["step_s"]), r["speedup_vs_full"],
                    100 * r["overhead_share"]) if r else "")
            h = c.get(0.5)
            libc = "%s / %s / %s" % (ms(h["observe_s"]), ms(h["select_s"]),
                                     ms(h["compact_s"])) if h else ""
            print("| %s | %d | %d | %dK | %s | %s |" % (
                shape, thr, ev, ctx // 1024, " | ".join(cells), libc))
    kvh = read(os.path.join(d, "decode-kvhead.jsonl"))
    if kvh:
        print("\nObserve per layer (kf_observe_logits after the attention loop) "
              "or per KV head (kf_observe_kv_head inside it), llama3-8b, f32, "
              "budget 0.5: step ms (speedup vs full, library share), observe ms\n")
        print("| threads | settings | context | per layer | per KV head | observe: per layer / per KV head |")
        print("|---:|---|---:|---:|---:|---:|")
        rows = {}
        for r in kvh:
            if r["budget"] != 0.5:
                continue
            setting = "%s order, evict every %d" % (r["order"], r["evict_every"])
            rows.setdefault((r["threads"], setting, r["context"]), {})[r.get("observe", "layer")] = r
        for (thr, setting, ctx), c in sorted(rows.items()):
            cells = []
            for ob in ("layer", "kv-head"):
                r = c.get(ob)
                cells.append("%s (%.2f×, %.1f%%)" % (
                    ms(r["step_s"]), r["speedup_vs_full"],
                    100 * r["overhead_share"]) if r else "")
            obs = " / ".join(ms(c[ob]["observe_s"]) if ob in c else "" for ob in ("layer", "kv-head"))
            print("| %d | %s | %dK | %s | %s |" % (thr, setting, ctx // 1024, " | ".join(cells), obs))
    pol = read(os.path.join(d, "decode-policies.jsonl"))
    if pol:
        print("\nEvery policy at budget 0.5 (llama3-8b, f32, 1 thread): speedup "
              "of the step vs the full cache of the same run (library share)\n")
        names = ["keyformer", "h2o", "window", "sinks"]
        print("| context | slot order | " + " | ".join(names) + " |")
        print("|---:|---|" + "---:|" * len(names))
        by = {}
        for r in pol:
            by.setdefault((r["context"], r.get("order", "position")), {})[r["policy"]] = r
        for (ctx, order) in sorted(by, key=lambda x: (x[1] != "position", x[0])):
            c = by[(ctx, order)]
            cells = []
            for n in names:
                r = c.get(n)
                cells.append("%.2f× (%.0f%%)" % (
                    r["speedup_vs_full"], 100 * r["overhead_share"]) if r else "")
            print("| %dK | %s | %s |" % (ctx // 1024, order, " | ".join(cells)))
        if dat:
            for order in ("position", "any"):
                with open(os.path.join(dat, "decode-policies-%s.dat" % order), "w") as f:
                    for ctx in sorted(k[0] for k in by if k[1] == order):
                        c = by[(ctx, order)]
                        f.write("%d %s\n" % (ctx, " ".join(
                            "%.4f" % c[n]["speedup_vs_full"] if n in c else "nan"
                            for n in names)))
    pre = read(os.path.join(d, "prefill.jsonl"))
    tor = read(os.path.join(d, "torch.jsonl"))
    tp = {(r["prompt"], r["threads"]): r for r in tor if r["mode"] == "prefill"}
    if pre:
        print("\nPrefill (budget 0.5; llama3-8b: 1 of 32 layers timed)\n")
        print("| shape | prompt | threads | attention ms | library ms | library / attention | PyTorch ms | PyTorch / library | load |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in pre:
            t = tp.get((r["prompt"], r["threads"])) if r["shape"] == "bundled" else None
            print("| %s | %d | %d | %s | %s | %.1f%% | %s | %s | %.1f |" % (
                r["shape"], r["prompt"], r["threads"], ms(r["attention_s"]),
                ms(r["library_s"]), 100 * r["library_vs_attention"],
                ms(t["seconds"]) if t else "", "%.0f×" % (t["seconds"] / r["library_s"]) if t else "",
                r["load1"]))
    td = [r for r in tor if r["mode"] == "decode"]
    alone = {(r["shape"], r["threads"], r["context"]): r
             for r in read(os.path.join(d, "decode-alone.jsonl")) if r["budget"] == 0.5}
    if td:
        print("\nDecode scoring + selection at budget 0.5, default settings: "
              "PyTorch vs the library (observe + select, f32), the library "
              "alone on logits left in place as PyTorch runs, and in the "
              "decode step after the host's attention\n")
        print("| shape | context | threads | PyTorch ms | M logits/s | library alone ms | PyTorch / alone | library in the step ms | PyTorch / in the step |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in td:
            g = groups.get((r["shape"], "f32", r["threads"]), {}).get(r["context"], {}).get(0.5)
            lib = g["observe_s"] + g["select_s"] if g else None
            a = alone.get((r["shape"], r["threads"], r["context"]))
            la = a["observe_s"] + a["select_s"] if a else None
            print("| %s | %dK | %d | %s | %.1f | %s | %s | %s | %s |" % (
                r["shape"], r["context"] // 1024, r["threads"], ms(r["seconds"]),
                r["logits_per_s"] / 1e6, ms(la) if la else "",
                "%.0f×" % (r["seconds"] / la) if la else "",
                ms(lib) if lib else "",
                "%.0f×" % (r["seconds"] / lib) if lib else ""))


if __name__ == "__main__":
    main()
