#!/usr/bin/python3
"""Markdown tables and gnuplot data from the benchmark scripts' JSON lines.

  summarize.py DIR            tables on stdout
  summarize.py DIR --dat OUT  also the .dat files plot.gp reads

DIR holds any of: defaults-*.jsonl (defaults.sh, one file per CPU and
instruction set; medians over its rounds), decode.jsonl,
decode-settings.jsonl, decode-policies.jsonl, prefill.jsonl,
decode-alone.jsonl, torch.jsonl (run.sh) and kernels.jsonl (kf-bench
--json). Figures are per token over all layers and KV heads of the shape.
"""
import glob
import json
import os
import statistics
import sys


def read(path):
    if not os.path.exists(path):
        return []
    return [json.loads(l) for l in open(path) if l.startswith("{")]


def ms(s):
    return "%.3g" % (1e3 * s) if s < 1 else "%.0f" % (1e3 * s)


def med_range(values, fmt):
    return "%s [%s–%s]" % (fmt % statistics.median(values), fmt % min(values),
                           fmt % max(values))


def isa_label(r):
    return {"avx512": "AVX-512", "avx2": "AVX2", "neon": "NEON"}.get(r.get("isa"), r.get("isa", "?"))


def defaults_tables(d, dat):
    for path in sorted(glob.glob(os.path.join(d, "defaults-*.jsonl"))):
        rows = [r for r in read(path) if r["budget"] != 1]
        if not rows:
            continue
        print("\n%s: %s, %s (%s); median [range] of %d rounds\n" % (
            os.path.basename(path), rows[0]["cpu"], isa_label(rows[0]),
            rows[0].get("clock", "?"),
            max(sum(1 for r in rows if r["config"] == "defaults"
                    and r["context"] == c) for c in {r["context"] for r in rows})))
        print("| context | config | library share | step vs full | observe | select | compact (ms per step) |")
        print("|---:|---|---:|---:|---:|---:|---:|")
        groups = {}
        for r in rows:
            groups.setdefault((r["context"], r["config"]), []).append(r)
        order = ["defaults", "spec-exact", "exact-noise", "every16"]
        for (ctx, cfg) in sorted(groups, key=lambda k: (k[0], order.index(k[1]) if k[1] in order else 9)):
            g = groups[(ctx, cfg)]
            print("| %dK | %s | %s | %s | %s | %s | %s |" % (
                ctx // 1024, cfg,
                med_range([100 * r["overhead_share"] for r in g], "%.1f") + " %",
                med_range([r["speedup_vs_full"] for r in g], "%.2f") + "×",
                ms(statistics.median(r["observe_s"] for r in g)),
                ms(statistics.median(r["select_s"] for r in g)),
                ms(statistics.median(r["compact_s"] for r in g))))
        if dat:
            name = os.path.basename(path)[len("defaults-"):-len(".jsonl")]
            for cfg in ("defaults", "spec-exact"):
                with open(os.path.join(dat, "defaults-%s-%s.dat" % (name, cfg)), "w") as f:
                    for ctx in sorted({c for (c, k) in groups if k == cfg}):
                        g = groups[(ctx, cfg)]
                        f.write("%d %.4f %.4f\n" % (
                            ctx, statistics.median(100 * r["overhead_share"] for r in g),
                            statistics.median(r["speedup_vs_full"] for r in g)))


def decode_tables(d, dat):
    dec = read(os.path.join(d, "decode.jsonl"))
    groups = {}
    for r in dec:
        groups.setdefault((r["shape"], r["dtype"], r["threads"]), {}) \
              .setdefault(r["context"], {})[r["budget"]] = r
    for (shape, dt, thr), by_ctx in groups.items():
        any_r = next(iter(next(iter(by_ctx.values())).values()))
        print("\n%s, %s cache, %d thread(s), %s; step ms (speedup vs full, "
              "library share)\n" % (shape, dt, thr, isa_label(any_r)))
        print("| context | full | 0.7 | 0.5 | 0.3 | attention alone, 0.5 |")
        print("|---:|---:|---:|---:|---:|---:|")
        for ctx in sorted(by_ctx):
            c = by_ctx[ctx]
            cells = [ms(c[1]["step_s"])]
            for b in (0.7, 0.5, 0.3):
                r = c.get(b)
                cells.append("%s (%.2f×, %.1f%%)" % (
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


def settings_table(d):
    rows = [r for r in read(os.path.join(d, "decode-settings.jsonl")) if r["budget"] == 0.5]
    rows += [r for r in read(os.path.join(d, "decode.jsonl"))
             if r["budget"] == 0.5 and r["shape"] == "llama3-8b" and r["dtype"] == "f32"]
    if not rows:
        return
    print("\nSettings at budget 0.5, llama3-8b, f32: step ms (speedup, library share); observe / select / compact ms\n")
    print("| threads | context | settings | step | vs full | share | observe | select | compact |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|")

    def name(r):
        if r["order"] == "position" and r["noise"] == "exact":
            return "spec-exact"
        extra = []
        if r["evict_every"] > 1:
            extra.append("evict every %d" % r["evict_every"])
        if r["observe"] == "kv-head":
            extra.append("per KV head")
        return "defaults" + (" + " + ", ".join(extra) if extra else "")
    for r in sorted(rows, key=lambda r: (r["threads"], r["context"], name(r))):
        print("| %d | %dK | %s | %s | %.2f× | %.1f %% | %s | %s | %s |" % (
            r["threads"], r["context"] // 1024, name(r), ms(r["step_s"]),
            r["speedup_vs_full"], 100 * r["overhead_share"], ms(r["observe_s"]),
            ms(r["select_s"]), ms(r["compact_s"])))


def policies_table(d, dat):
    rows = [r for r in read(os.path.join(d, "decode-policies.jsonl")) if r["budget"] == 0.5]
    if not rows:
        return
    by = {}
    for r in rows:
        by.setdefault(r["context"], {})[r["policy"]] = r
    pols = ("keyformer", "h2o", "window", "sinks")
    print("\nEvery policy at the defaults, budget 0.5, llama3-8b, f32, 1 thread: speedup (library share)\n")
    print("| context | " + " | ".join(pols) + " |")
    print("|---:|" + "---:|" * len(pols))
    for ctx in sorted(by):
        print("| %dK | %s |" % (ctx // 1024, " | ".join(
            "%.2f× (%.1f%%)" % (by[ctx][p]["speedup_vs_full"], 100 * by[ctx][p]["overhead_share"])
            if p in by[ctx] else "" for p in pols)))
    if dat:
        with open(os.path.join(dat, "decode-policies.dat"), "w") as f:
            for ctx in sorted(by):
                f.write("%d %s\n" % (ctx, " ".join(
                    "%.4f" % by[ctx][p]["speedup_vs_full"] if p in by[ctx] else "nan"
                    for p in pols)))


def prefill_table(d):
    pre = read(os.path.join(d, "prefill.jsonl"))
    if not pre:
        return
    print("\nPrefill, budget 0.5: library time / attention time\n")
    prompts = sorted({r["prompt"] for r in pre})
    print("| shape | threads | " + " | ".join(str(p) for p in prompts) + " |")
    print("|---|---:|" + "---:|" * len(prompts))
    by = {}
    for r in pre:
        by.setdefault((r["shape"], r["threads"]), {})[r["prompt"]] = r
    for (shape, thr), c in sorted(by.items()):
        print("| %s | %d | %s |" % (shape, thr, " | ".join(
            "%.1f%%" % (100 * c[p]["library_vs_attention"]) if p in c else "" for p in prompts)))


def torch_table(d):
    tor = [r for r in read(os.path.join(d, "torch.jsonl")) if r["mode"] == "decode"]
    alone = read(os.path.join(d, "decode-alone.jsonl"))
    if not tor or not alone:
        return
    lib = {}
    for r in alone:
        if r["budget"] == 0.5:
            key = "spec-exact" if r["order"] == "position" and r["noise"] == "exact" else "defaults"
            lib[(r["context"], r["threads"], key)] = r
    print("\nScoring + selection of one decode step, llama3-8b (all layers), budget 0.5: "
          "PyTorch (torch %s) vs the library alone (no attention)\n" % tor[0].get("torch", "?"))
    print("| context | threads | PyTorch ms | library, defaults ms | × | library, spec-exact ms | × |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for t in tor:
        if t["shape"] != "llama3-8b":
            continue
        a = lib.get((t["context"], t["threads"], "defaults"))
        s = lib.get((t["context"], t["threads"], "spec-exact"))
        if not a or not s:
            continue
        print("| %dK | %d | %s | %s | %.0f× | %s | %.0f× |" % (
            t["context"] // 1024, t["threads"], ms(t["seconds"]),
            ms(a["library_s"]), t["seconds"] / a["library_s"],
            ms(s["library_s"]), t["seconds"] / s["library_s"]))


def kernels_table(d):
    ker = read(os.path.join(d, "kernels.jsonl"))
    if not ker:
        return
    print("\nKernels, one core (items/s; speedup vs C)\n")
    isas = [i for i in ("c", "avx2", "avx512", "neon") if any(r["isa"] == i for r in ker)]
    print("| kernel | n | " + " | ".join(isas) + " |")
    print("|---|---:|" + "---:|" * len(isas))
    by = {}
    for r in ker:
        by.setdefault((r["kernel"], r["n"]), {})[r["isa"]] = r
    for (k, n), c in by.items():
        cells = []
        for i in isas:
            r = c.get(i)
            if not r:
                cells.append("")
            elif k.startswith("select"):
                cells.append("%.3g µs (%.1f×)" % (1e6 * r["seconds"], r["speedup_vs_c"]))
            elif k.startswith("compact"):
                cells.append("%.3g GB/s (%.1f×)" % (r["bytes_per_s"] / 1e9, r["speedup_vs_c"]))
            else:
                v = r["items_per_s"]
                cells.append(("%.3g G/s" % (v / 1e9) if v >= 1e9 else "%.3g M/s" % (v / 1e6))
                             + " (%.1f×)" % r["speedup_vs_c"])
        print("| %s | %d | %s |" % (k, n, " | ".join(cells)))


def main():
    d = sys.argv[1]
    dat = sys.argv[sys.argv.index("--dat") + 1] if "--dat" in sys.argv else None
    if dat:
        os.makedirs(dat, exist_ok=True)
    defaults_tables(d, dat)
    decode_tables(d, dat)
    settings_table(d)
    policies_table(d, dat)
    prefill_table(d)
    torch_table(d)
    kernels_table(d)


if __name__ == "__main__":
    main()
