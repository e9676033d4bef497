#!/usr/bin/env python3
"""The command lines of kf-bench, kf-bench-decode and kf-info: --help
(usage on stdout, exit 0), --version, and bad values (a message on stderr
naming the bad item and the valid choices, exit 2; an ISA this CPU or
build lacks exits non-zero too). Nothing may crash or hang.

  check_tool_cli.py KF_BENCH KF_BENCH_DECODE KF_INFO
"""
import subprocess
import sys


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if p.returncode < 0:
        sys.exit("%s: killed by signal %d" % (" ".join(cmd), -p.returncode))
    return p


def expect(cmd, code, out=(), err=()):
    p = run(cmd)
    where = " ".join(cmd)
    if code is None:
        if p.returncode == 0:
            sys.exit("%s: exit 0, expected a failure\n%s" % (where, p.stderr))
    elif p.returncode != code:
        sys.exit("%s: exit %d, expected %d\nstdout: %s\nstderr: %s"
                 % (where, p.returncode, code, p.stdout[:500], p.stderr[:500]))
    for part in out:
        if part not in p.stdout:
            sys.exit("%s: stdout lacks %r:\n%s" % (where, part, p.stdout))
    for part in err:
        if part not in p.stderr:
            sys.exit("%s: stderr lacks %r:\n%s" % (where, part, p.stderr))
    return p


def main():
    bench, decode, info = sys.argv[1:4]
    version = expect([info, "--version"], 0).stdout.split()[-1]
    if version.count(".") != 2:
        sys.exit("kf-info --version: %r is not MAJOR.MINOR.PATCH" % version)
    for tool in (bench, decode, info):
        expect([tool, "--help"], 0, out=["usage:"])
        expect([tool, "--version"], 0, out=[version])
        expect([tool, "--no-such-option"], 2, err=["--no-such-option"])

    # kf-bench: kernels and ISAs by name
    expect([bench, "--help"], 0, out=["--kernel", "--isa", "score_prompt"])
    expect([bench, "--kernel", "nope"], 2, err=["nope", "score", "compact"])
    expect([bench, "--isa", "sse9"], 2, err=["sse9", "avx2", "avx512", "neon"])
    expect([bench, "--kernel"], 2, err=["needs a value"])
    info_text = run([info]).stdout
    detected = next(l for l in info_text.splitlines() if l.startswith("detected:"))
    for isa in ("avx2", "avx512", "neon"):
        if isa not in detected.split():
            expect([bench, "--isa", isa, "--quick"], None, err=[isa])
    expect([bench, "--quick", "--kernel", "select", "--isa", "c"], 0, out=["select"])

    # kf-bench-decode and kf-bench decode|prefill: usage and values
    for prefix in ([decode], [bench]):
        expect(prefix + ["decode", "--help"], 0, out=["--context", "--budgets"])
        expect(prefix + ["prefill", "--help"], 0, out=["--prompt"])
    expect([decode], 2, err=["decode or prefill"])
    bad_decode = [
        (["--budgets", "nan,-1"], ["'nan'", "finite"]),
        (["--budgets", "0.5,-1"], ["-1", "(0, 1)"]),
        (["--budgets", "0.5,inf"], ["'inf'"]),
        (["--budgets", "1"], ["1 is outside"]),
        (["--budgets", "0.5,,0.3"], ["empty item"]),
        (["--budgets", "0.001"], ["keeps no slot"]),
        (["--threads", "0"], ["--threads", "'0'"]),
        (["--threads", "100000"], ["--threads"]),
        (["--steps", "4x"], ["--steps", "'4x'"]),
        (["--dtype", "f64"], ["f64", "f32", "f16"]),
        (["--shape", "gpt5"], ["gpt5", "bundled", "llama3-8b"]),
        (["--policy", "lru"], ["lru", "keyformer", "sinks"]),
        (["--order", "random"], ["random", "position"]),
        (["--observe", "head"], ["head", "kv-head"]),
        (["--rule", "magic"], ["magic", "reference"]),
    ]
    for extra, parts in bad_decode:
        expect([decode, "decode", "--context", "256"] + extra, 2, err=parts)
    expect([decode, "decode", "--context", "256,abc"], 2, err=["'abc'"])
    expect([decode, "decode", "--context", "99999999999999999999"], 2,
           err=["99999999999999999999"])
    expect([decode, "decode", "--budgets", "0.5"], 2, err=["--context"])
    expect([decode, "prefill", "--prompt", "0"], 2, err=["'0'"])
    expect([decode, "prefill", "--prompt", "256", "--budget", "nan"], 2, err=["'nan'"])
    expect([decode, "prefill", "--prompt", "256", "--reps", "-3"], 2, err=["'-3'"])
    expect([decode, "prefill"], 2, err=["--prompt"])

    # kf-info --mask: whole numbers of 32 bits only
    for bad in ("99999999999999999999", "0x100000000", "abc", "-1", "3x", ""):
        expect([info, "--mask", bad], 2, err=["--mask", "0xffffffff"])
    expect([info, "--mask"], 2, err=["needs a value"])
    expect([info, "--mask", "0"], 0, out=["none (portable C)"])
    expect([info, "--mask", "0xffffffff"], 0, out=["kernels:"])
    print("kf-bench, kf-bench-decode, kf-info command lines: ok")


if __name__ == "__main__":
    main()
