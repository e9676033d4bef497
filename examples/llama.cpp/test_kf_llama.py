#!/usr/bin/env python3
# Copyright (c) 2026 the libkeyformer developers. BSD-2-Clause, see COPYING.
"""The llama.cpp host's tests (meson suite 'llama'), one case per run:

  full, keyformer, h2o, window, sinks   kf-llama's text == kf-generate's, greedy,
                                        64 tokens after the 1793 Washington prompt;
                                        the library policies at budget 0.5,
                                        uniform granularity, seed 1; every step
                                        also checks llama.cpp's cells against the
                                        library's kept positions (--check-cells)
  ubatch                                the same with the prompt split into
                                        ubatches of 100 tokens (full, keyformer)
  two-stops                             keyformer with the graph stopped at Qcur and
                                        Kcur on every step (KF_LLAMA_TWO_STOPS=1)
                                        instead of at Kcur alone after the prompt
  defaults                              full and keyformer with llama.cpp's default
                                        f16 cache and flash attention (the other
                                        cases use f32 and no flash attention: EXACT)
  refuse-*                              each refusal of the adapter, with its message
  cli                                   kf-llama's command-line and file errors

Exits 77 (skipped) when llama.cpp was not found at configure time (--skip).
"""
import argparse
import os
import struct
import subprocess
import sys

SKIP = 77
STEPS = "64"


def run(cmd, env=None, timeout=240):
    merged = dict(os.environ)
    merged.update(env or {})
    merged.setdefault("OMP_NUM_THREADS", "2")
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=merged,
                       timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def stats(stderr):
    lines = [l for l in stderr.splitlines() if l.startswith("prompt tokens:")]
    return lines[-1] if lines else "(no statistics line)"


def convert(a):
    """The bundled model as GGUF, made by our kf-convert-gguf (once per build)."""
    out = os.path.join(a.work_dir, "sotu-llama-6m.gguf")
    model = os.path.join(a.model_dir, "model.bin")
    tok = os.path.join(a.model_dir, "tokenizer.bin")
    if os.path.exists(out) and os.path.getmtime(out) >= max(
            os.path.getmtime(model), os.path.getmtime(tok), os.path.getmtime(a.convert)):
        return out
    rc, _, err = run([a.convert, "--model", model, "--tokenizer", tok, "--out", out])
    if rc != 0:
        print("kf-convert-gguf failed (%d):\n%s" % (rc, err))
        sys.exit(1)
    return out


def library_args(policy):
    if policy == "full":
        return ["--policy", "full"]
    return ["--policy", policy, "--budget-ratio", "0.5", "--granularity", "uniform"]


# kf-generate's engine keeps K and V in f32 and computes softmax attention
# unfused; llama.cpp's defaults round K and V to f16 and, on the CPU, use
# flash attention. Greedy decoding follows the arithmetic into near ties:
# with the defaults, the window run picks another token at its 50th step.
# So parity runs use --cache-type f32 --flash-attn off, the arithmetic
# closest to kf-generate's; the 'defaults' case runs them.
EXACT = ["--cache-type", "f32", "--flash-attn", "off"]


def parity(a, gguf, policy, extra=EXACT, env=None):
    common = ["--prompt-file", a.prompt_file, "--steps", STEPS, "--temperature", "0",
              "--seed", "1", "--threads", "2"]
    rc, want, err = run([a.kf_generate] + common + library_args(policy))
    if rc != 0:
        print("kf-generate failed (%d): %s" % (rc, err))
        return False
    g_stats = stats(err)
    cmd = [a.kf_llama, "--model", gguf, "--check-cells", "on"] + common + \
        library_args(policy) + list(extra)
    rc, got, err = run(cmd, env=env)
    l_stats = stats(err)
    label = "%s %s" % (policy, " ".join(extra))
    print("kf-generate: %s\nkf-llama:    %s" % (g_stats, l_stats))
    if rc != 0:
        print("FAIL %s: kf-llama exited %d: %s" % (label, rc, err.strip()[-600:]))
        return False
    g_prompt = g_stats.split("|")[0]
    l_prompt = l_stats.split("|")[0]
    if g_prompt != l_prompt:
        print("FAIL %s: the tokenizers disagree on the prompt (%s vs %s)" %
              (label, g_prompt.strip(), l_prompt.strip()))
        return False
    if got != want:
        i = next((k for k in range(min(len(got), len(want))) if got[k] != want[k]),
                 min(len(got), len(want)))
        print("FAIL %s: the texts differ from character %d\n  kf-generate: %r\n  kf-llama:    %r"
              % (label, i, want[max(0, i - 60):i + 60], got[max(0, i - 60):i + 60]))
        return False
    print("ok %s: identical text (%d characters), cells checked after every step" %
          (label, len(got)))
    return True


def refused(a, cmd, expect, env=None, code=1):
    rc, out, err = run(cmd, env=env)
    msg = err.strip().splitlines()[-1] if err.strip() else ""
    if rc != code or expect not in err:
        print("FAIL: %s\n  exit %d (want %d), stderr: %s\n  (wanted %r)" %
              (" ".join(cmd), rc, code, err.strip()[-800:], expect))
        return False
    print("ok refused (exit %d): %s" % (rc, msg))
    return True


# ---- GGUF editing for the refusal tests ----
# GGUF v2/v3: magic, u32 version, u64 tensors, u64 kv count, the kvs, the
# tensor infos, padding to general.alignment (default 32), the data. Tensor
# offsets are relative to the data, so adding a kv only moves the data.

GGUF_SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
GGUF_STRING, GGUF_ARRAY, GGUF_U32 = 8, 9, 4


def skip_value(b, at, t):
    if t in GGUF_SCALAR:
        return at + GGUF_SCALAR[t]
    if t == GGUF_STRING:
        (n,) = struct.unpack_from("<Q", b, at)
        return at + 8 + n
    if t == GGUF_ARRAY:
        et, n = struct.unpack_from("<IQ", b, at)
        at += 12
        if et in GGUF_SCALAR:
            return at + n * GGUF_SCALAR[et]
        for _ in range(n):
            at = skip_value(b, at, et)
        return at
    raise ValueError("GGUF value type %d" % t)


def gguf_add_u32(src, dst, key, value):
    b = open(src, "rb").read()
    magic, version, n_tensors, n_kv = struct.unpack_from("<4sIQQ", b, 0)
    if magic != b"GGUF" or version < 2:
        raise ValueError("not a GGUF v2+ file")
    at = 24
    alignment = 32
    for _ in range(n_kv):
        (klen,) = struct.unpack_from("<Q", b, at)
        name = b[at + 8:at + 8 + klen].decode()
        at += 8 + klen
        (t,) = struct.unpack_from("<I", b, at)
        at += 4
        if name == "general.alignment" and t == GGUF_U32:
            (alignment,) = struct.unpack_from("<I", b, at)
        at = skip_value(b, at, t)
    kv_end = at
    for _ in range(n_tensors):
        (nlen,) = struct.unpack_from("<Q", b, at)
        at += 8 + nlen
        (nd,) = struct.unpack_from("<I", b, at)
        at += 4 + 8 * nd + 4 + 8
    infos_end = at
    data_start = (infos_end + alignment - 1) // alignment * alignment
    k = key.encode()
    new_kv = struct.pack("<Q", len(k)) + k + struct.pack("<II", GGUF_U32, value)
    head = struct.pack("<4sIQQ", magic, version, n_tensors, n_kv + 1) + b[24:kv_end] + new_kv \
        + b[kv_end:infos_end]
    pad = (-len(head)) % alignment
    with open(dst, "wb") as f:
        f.write(head + b"\0" * pad + b[data_start:])


def gguf_kvs(path):
    """(key, raw bytes of the whole kv entry) of a GGUF file, in order."""
    b = open(path, "rb").read()
    magic, version, _, n_kv = struct.unpack_from("<4sIQQ", b, 0)
    if magic != b"GGUF" or version < 2:
        raise ValueError("not a GGUF v2+ file")
    at, out = 24, []
    for _ in range(n_kv):
        start = at
        (klen,) = struct.unpack_from("<Q", b, at)
        name = b[at + 8:at + 8 + klen].decode()
        at += 8 + klen
        (t,) = struct.unpack_from("<I", b, at)
        at = skip_value(b, at + 4, t)
        out.append((name, b[start:at]))
    return out


def gguf_str(s):
    s = s.encode()
    return struct.pack("<Q", len(s)) + s


def gguf_u32(key, value):
    return gguf_str(key) + struct.pack("<II", GGUF_U32, value)


def gguf_f32(key, value):
    return gguf_str(key) + struct.pack("<If", 6, value)


def gguf_u32_array(key, values):
    return gguf_str(key) + struct.pack("<IIQ", GGUF_ARRAY, GGUF_U32, len(values)) + \
        b"".join(struct.pack("<I", v) for v in values)


def tiny_vocab(vocab_from):
    """The tokenizer kvs of the bundled model's GGUF and its vocabulary size."""
    kvs, n_vocab = [], None
    for name, raw in gguf_kvs(vocab_from):
        if name.startswith("tokenizer."):
            kvs.append(raw)
        if name == "tokenizer.ggml.tokens":
            klen = struct.unpack_from("<Q", raw, 0)[0]
            n_vocab = struct.unpack_from("<Q", raw, 8 + klen + 8)[0]
    return kvs, n_vocab


def write_tiny_gguf(dst, arch, kvs, tensors):
    """A GGUF v3 file of architecture arch with the kvs (raw entries) and
    all-zero f32 tensors [(name, dims)], each aligned to 32 bytes."""
    kvs = [gguf_str("general.architecture") + struct.pack("<I", GGUF_STRING) +
           gguf_str(arch)] + kvs
    infos, size = b"", 0
    for name, dims in tensors:
        n = 1
        for d in dims:
            n *= d
        infos += gguf_str(name) + struct.pack("<I", len(dims)) + \
            b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", 0, size)
        size += 4 * n
        size += (-size) % 32
    head = struct.pack("<4sIQQ", b"GGUF", 3, len(tensors), len(kvs)) + b"".join(kvs) + infos
    with open(dst, "wb") as f:
        f.write(head + b"\0" * ((-len(head)) % 32) + b"\0" * size)


def write_tiny_mamba(vocab_from, dst):
    """A one-layer Mamba (recurrent) model with zero weights and the bundled
    model's vocabulary: enough for llama.cpp to load it."""
    kvs, n_vocab = tiny_vocab(vocab_from)
    embd, inner, conv, state, rank = 8, 16, 4, 4, 1
    kvs += [gguf_u32("mamba.context_length", 128), gguf_u32("mamba.embedding_length", embd),
            gguf_u32("mamba.block_count", 1), gguf_u32("mamba.ssm.conv_kernel", conv),
            gguf_u32("mamba.ssm.inner_size", inner), gguf_u32("mamba.ssm.state_size", state),
            gguf_u32("mamba.ssm.time_step_rank", rank),
            gguf_f32("mamba.attention.layer_norm_rms_epsilon", 1e-5)]
    tensors = [("token_embd.weight", [embd, n_vocab]), ("output_norm.weight", [embd]),
               ("blk.0.attn_norm.weight", [embd]), ("blk.0.ssm_in.weight", [embd, 2 * inner]),
               ("blk.0.ssm_conv1d.weight", [conv, inner]), ("blk.0.ssm_conv1d.bias", [inner]),
               ("blk.0.ssm_x.weight", [inner, rank + 2 * state]),
               ("blk.0.ssm_dt.weight", [rank, inner]), ("blk.0.ssm_dt.bias", [inner]),
               ("blk.0.ssm_a", [state, inner]), ("blk.0.ssm_d", [inner]),
               ("blk.0.ssm_out.weight", [inner, embd])]
    write_tiny_gguf(dst, "mamba", kvs, tensors)


def write_tiny_jamba(vocab_from, dst):
    """A two-layer Jamba (hybrid) model with zero weights and the bundled
    model's vocabulary: layer 0 a Mamba block (head_count_kv 0), layer 1
    attention (2 heads of 4, 1 KV head), each with a dense SiLU FFN. Jamba
    wants ssm.inner_size = 2 x embedding_length."""
    kvs, n_vocab = tiny_vocab(vocab_from)
    embd, inner, conv, state, rank, ff, heads, kv_heads = 8, 16, 4, 4, 1, 16, 2, 1
    kvs += [gguf_u32("jamba.context_length", 128), gguf_u32("jamba.embedding_length", embd),
            gguf_u32("jamba.block_count", 2), gguf_u32("jamba.feed_forward_length", ff),
            gguf_u32("jamba.attention.head_count", heads),
            gguf_u32_array("jamba.attention.head_count_kv", [0, kv_heads]),
            gguf_u32("jamba.ssm.conv_kernel", conv), gguf_u32("jamba.ssm.inner_size", inner),
            gguf_u32("jamba.ssm.state_size", state), gguf_u32("jamba.ssm.time_step_rank", rank),
            gguf_f32("jamba.attention.layer_norm_rms_epsilon", 1e-5)]
    head_dim = embd // heads
    tensors = [("token_embd.weight", [embd, n_vocab]), ("output_norm.weight", [embd])]
    for i in range(2):
        b = "blk.%d." % i
        tensors.append((b + "attn_norm.weight", [embd]))
        if i == 0:  # Mamba
            tensors += [(b + "ssm_in.weight", [embd, 2 * inner]),
                        (b + "ssm_conv1d.weight", [conv, inner]), (b + "ssm_conv1d.bias", [inner]),
                        (b + "ssm_x.weight", [inner, rank + 2 * state]),
                        (b + "ssm_dt_norm.weight", [rank]),
                        (b + "ssm_dt.weight", [rank, inner]), (b + "ssm_dt.bias", [inner]),
                        (b + "ssm_b_norm.weight", [state]), (b + "ssm_c_norm.weight", [state]),
                        (b + "ssm_a", [state, inner]), (b + "ssm_d", [inner]),
                        (b + "ssm_out.weight", [inner, embd])]
        else:  # attention
            tensors += [(b + "attn_q.weight", [embd, embd]),
                        (b + "attn_k.weight", [embd, kv_heads * head_dim]),
                        (b + "attn_v.weight", [embd, kv_heads * head_dim]),
                        (b + "attn_output.weight", [embd, embd])]
        tensors += [(b + "ffn_norm.weight", [embd]), (b + "ffn_gate.weight", [embd, ff]),
                    (b + "ffn_down.weight", [ff, embd]), (b + "ffn_up.weight", [embd, ff])]
    write_tiny_gguf(dst, "jamba", kvs, tensors)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--case", required=True)
    p.add_argument("--skip")
    p.add_argument("--kf-llama")
    p.add_argument("--kf-generate")
    p.add_argument("--convert")
    p.add_argument("--model-dir")
    p.add_argument("--prompt-file")
    p.add_argument("--work-dir")
    a = p.parse_args()
    if a.skip:
        print("skipped: llama.cpp %s" % a.skip)
        return SKIP
    gguf = convert(a)
    c = a.case
    if c in ("full", "keyformer", "h2o", "window", "sinks"):
        return 0 if parity(a, gguf, c) else 1
    if c == "ubatch":
        ok = parity(a, gguf, "full", EXACT + ["--ubatch", "100"])
        ok = parity(a, gguf, "keyformer", EXACT + ["--ubatch", "100"]) and ok
        return 0 if ok else 1
    if c == "two-stops":  # the adapter's first-decode mode on every step
        return 0 if parity(a, gguf, "keyformer", env={"KF_LLAMA_TWO_STOPS": "1"}) else 1
    if c == "defaults":  # f16 cache, flash attention as llama.cpp picks it
        ok = parity(a, gguf, "full", [])
        ok = parity(a, gguf, "keyformer", []) and ok
        return 0 if ok else 1
    base = [a.kf_llama, "--model", gguf, "--prompt-file", a.prompt_file, "--steps", "8",
            "--temperature", "0", "--threads", "2"]
    if c == "refuse-recent":
        return 0 if refused(a, base + ["--policy", "keyformer", "--recent", "0"],
                            "recent window") else 1
    if c == "refuse-nodes":
        return 0 if refused(a, base + ["--policy", "keyformer"], "were not found",
                            env={"KF_LLAMA_TEST_Q_NAME": "Qnone"}) else 1
    if c == "refuse-swa":
        swa = os.path.join(a.work_dir, "sotu-llama-6m-swa.gguf")
        gguf_add_u32(gguf, swa, "llama.attention.sliding_window", 64)
        return 0 if refused(a, [a.kf_llama, "--model", swa, "--prompt", "Fellow citizens",
                                "--steps", "4", "--temperature", "0", "--policy", "keyformer"],
                            "sliding-window") else 1
    if c == "refuse-recurrent":
        mamba = os.path.join(a.work_dir, "tiny-mamba.gguf")
        write_tiny_mamba(gguf, mamba)
        return 0 if refused(a, [a.kf_llama, "--model", mamba, "--prompt", "Fellow citizens",
                                "--steps", "4", "--temperature", "0", "--policy", "keyformer"],
                            "recurrent") else 1
    if c == "refuse-hybrid":
        jamba = os.path.join(a.work_dir, "tiny-jamba.gguf")
        write_tiny_jamba(gguf, jamba)
        return 0 if refused(a, [a.kf_llama, "--model", jamba, "--prompt", "Fellow citizens",
                                "--steps", "4", "--temperature", "0", "--policy", "keyformer"],
                            "is a hybrid (attention + recurrent) model") else 1
    if c == "cli":
        ok = refused(a, [a.kf_llama, "--prompt", "x"], "--model is required", code=2)
        ok = refused(a, [a.kf_llama, "--model", gguf, "--granularity", "layer"],
                     "only uniform", code=2) and ok
        ok = refused(a, [a.kf_llama, "--model", gguf, "--budget-ratio", "0.5"],
                     "needs a --policy other than full", code=2) and ok
        ok = refused(a, [a.kf_llama, "--model", gguf, "--budget-ratio", "0",
                         "--policy", "h2o"], "fraction", code=2) and ok
        ok = refused(a, [a.kf_llama, "--model", "/nonexistent.gguf"], "nonexistent") and ok
        ok = refused(a, [a.kf_llama, "--model", a.prompt_file, "--steps", "1"],
                     "could not load") and ok
        ok = refused(a, [a.kf_llama, "--model", gguf, "--prompt-file", a.work_dir],
                     "a directory") and ok
        ok = refused(a, [a.kf_llama, "--model", gguf, "--adapter", "off", "--policy", "window"],
                     "--adapter off", code=2) and ok
        return 0 if ok else 1
    print("unknown case %s" % c)
    return 1


if __name__ == "__main__":
    sys.exit(main())
