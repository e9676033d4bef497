#!/usr/bin/env python3
"""Writes the hand-made seeds of fuzz/corpus/fuzz_loaders: tiny valid
llama2.c checkpoints (format versions 0, 1 and 2 of llama2.c's export.py)
and tokenizers, and the ways such files go wrong (truncation, trailing
bytes, absurd or inconsistent header values, unknown versions, bad Q8_0
group sizes, NaN weights or scales, bad piece lengths). The fuzz_api and fuzz_kernels corpora come
from short fuzzing runs instead (scripts/robustness.sh --refresh-corpus).

Input layout of fuzz_loaders: byte 0 = 0 model / 1 tokenizer, bytes 1-2 =
vocabulary size for the tokenizer loader (little-endian), then the file.

    python3 fuzz/gen_seeds.py fuzz/corpus/fuzz_loaders
"""
import math
import os
import struct
import sys


def model_file(dim, hidden, layers, heads, kv_heads, vocab, seq_len,
               fill=0.01, extra=b"", cut=0, poison=None, value="f"):
    head_size = dim // heads if heads else 0
    kv_dim = kv_heads * head_size
    v = abs(vocab)
    counts = [v * dim, layers * dim, layers * dim * dim, layers * kv_dim * dim,
              layers * kv_dim * dim, layers * dim * dim, layers * dim,
              layers * hidden * dim, layers * dim * hidden,
              layers * hidden * dim, dim, seq_len * (head_size // 2),
              seq_len * (head_size // 2)]
    if vocab < 0:
        counts.append(v * dim)
    n = sum(counts)
    weights = [fill * ((i % 7) - 3) for i in range(n)]
    if poison is not None and n:
        weights[poison % n] = float("nan")
    body = struct.pack("<7i", dim, hidden, layers, heads, kv_heads, vocab, seq_len)
    # value "e": fp16 weights, told apart from fp32 by the file's size
    body += struct.pack("<%d%s" % (n, value), *weights) + extra
    return body[:len(body) - cut] if cut else body


MAGIC = 0x616b3432  # "ak42"


def versioned_model_file(version, dim, hidden, layers, heads, kv_heads, vocab,
                         seq_len, tied=True, group=None, fill=0.01, extra=b"",
                         cut=0, flag=None, poison_scale=False):
    """The same tensors as model_file in the order of export.py's
    version1_export (fp32) or version2_export (Q8_0 matrices, fp32 norms)."""
    head_size = dim // heads if heads else 0
    kv_dim = kv_heads * head_size
    v = abs(vocab)
    # (name, elements, separately quantized pieces)
    norms = [("rms_att", layers * dim, 1), ("rms_ffn", layers * dim, 1),
             ("rms_final", dim, 1)]
    mats = [("emb", v * dim, 1), ("wq", layers * dim * dim, layers),
            ("wk", layers * kv_dim * dim, layers),
            ("wv", layers * kv_dim * dim, layers),
            ("wo", layers * dim * dim, layers),
            ("w1", layers * hidden * dim, layers),
            ("w2", layers * dim * hidden, layers),
            ("w3", layers * hidden * dim, layers)]
    if not tied:
        mats.append(("wcls", v * dim, 1))
    head = struct.pack("<Ii7i", MAGIC, version, dim, hidden, layers, heads,
                       kv_heads, vocab, seq_len)
    head += struct.pack("<B", int(tied) if flag is None else flag)
    if version == 2:
        head += struct.pack("<i", group if group is not None else dim)
    head += b"\0" * (256 - len(head))
    body = b""
    i = 0
    for name, n, _ in norms + (mats if version != 2 else []):
        body += struct.pack("<%df" % n, *[fill * (((i + k) % 7) - 3) for k in range(n)])
        i += n
    if version == 2:
        g = group if group and group > 0 else 1
        for name, n, pieces in mats:
            per = n // pieces if pieces else 0
            for p in range(pieces):
                q = [((i + k) % 7) - 3 for k in range(per)]
                scales = [float("nan") if poison_scale else fill] * (per // g)
                body += struct.pack("<%db" % per, *q)
                body += struct.pack("<%df" % len(scales), *scales)
                i += per
    out = head + body + extra
    return out[:len(out) - cut] if cut else out


def model_seed(data):
    return bytes([0, 0, 0]) + data


def tokenizer_file(pieces, max_len=None, scores=None, extra=b"", cut=0,
                   lengths=None):
    if max_len is None:
        max_len = max(len(p) for p in pieces)
    out = struct.pack("<I", max_len)
    for i, p in enumerate(pieces):
        score = scores[i] if scores else -float(i)
        length = lengths[i] if lengths and i in lengths else len(p)
        out += struct.pack("<fi", score, length) + p
    out += extra
    return out[:len(out) - cut] if cut else out


def tokenizer_seed(vocab, data):
    return bytes([1, vocab & 0xff, (vocab >> 8) & 0xff]) + data


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "fuzz/corpus/fuzz_loaders"
    os.makedirs(out_dir, exist_ok=True)
    seeds = {}

    # checkpoints: valid ones, then one defect each
    seeds["model-tiny"] = model_file(2, 2, 1, 1, 1, 4, 2)
    seeds["model-gqa"] = model_file(8, 4, 2, 2, 1, 5, 3)
    seeds["model-untied"] = model_file(4, 3, 1, 2, 2, -3, 2)
    seeds["model-truncated"] = model_file(2, 2, 1, 1, 1, 4, 2, cut=1)
    seeds["model-trailing"] = model_file(2, 2, 1, 1, 1, 4, 2, extra=b"\0")
    seeds["model-nan"] = model_file(4, 2, 1, 1, 1, 3, 2, poison=17)
    seeds["model-header-only"] = model_file(2, 2, 1, 1, 1, 4, 2)[:28]
    seeds["model-short-header"] = model_file(2, 2, 1, 1, 1, 4, 2)[:27]
    seeds["model-empty"] = b""
    seeds["model-odd-head"] = model_file(3, 2, 1, 1, 1, 4, 2)
    seeds["model-heads-not-multiple"] = model_file(6, 2, 1, 3, 2, 4, 2)
    seeds["model-zero-dim"] = struct.pack("<7i", 0, 2, 1, 1, 1, 4, 2)
    seeds["model-huge"] = struct.pack("<7i", 65536, 1 << 20, 1024, 1024, 1024,
                                      1 << 22, 1 << 24)
    seeds["model-int-min-vocab"] = struct.pack("<7i", 2, 2, 1, 1, 1,
                                               -2**31, 2)
    seeds["model-negative"] = struct.pack("<7i", -2, -2, -1, -1, -1, -4, -2)
    seeds["model-overflow"] = struct.pack("<7i", 2**31 - 1, 2**31 - 1,
                                          2**31 - 1, 1, 1, 2**31 - 1, 2**31 - 1)
    # version 0 with fp16 weights
    seeds["model-f16-tiny"] = model_file(2, 2, 1, 1, 1, 4, 2, value="e")
    seeds["model-f16-untied-gqa"] = model_file(8, 4, 2, 2, 1, -5, 3, value="e")
    seeds["model-f16-inf"] = model_file(4, 2, 1, 1, 1, 3, 2, poison=17, value="e")
    seeds["model-f16-trailing"] = model_file(2, 2, 1, 1, 1, 4, 2, value="e", extra=b"\0")
    seeds["model-f16-truncated"] = model_file(2, 2, 1, 1, 1, 4, 2, value="e", cut=1)
    seeds["model-f32-cut-to-f16"] = model_file(2, 2, 1, 1, 1, 4, 2)[:28 + 2 * 42]
    # format versions 1 and 2 (the "ak42" header)
    seeds["model-v1-tiny"] = versioned_model_file(1, 2, 2, 1, 1, 1, 4, 2)
    seeds["model-v1-untied"] = versioned_model_file(1, 4, 3, 1, 2, 2, 3, 2, tied=False)
    seeds["model-v1-gqa"] = versioned_model_file(1, 8, 4, 2, 2, 1, 5, 3)
    seeds["model-v2-tiny"] = versioned_model_file(2, 2, 2, 1, 1, 1, 4, 2, group=2)
    seeds["model-v2-group1"] = versioned_model_file(2, 4, 2, 1, 1, 1, 3, 2, group=1)
    seeds["model-v2-untied-gqa"] = versioned_model_file(2, 8, 4, 2, 2, 1, 5, 3,
                                                        tied=False, group=4)
    seeds["model-v1-truncated"] = versioned_model_file(1, 2, 2, 1, 1, 1, 4, 2, cut=1)
    seeds["model-v2-truncated"] = versioned_model_file(2, 4, 2, 1, 1, 1, 3, 2,
                                                       group=2, cut=3)
    seeds["model-v1-trailing"] = versioned_model_file(1, 2, 2, 1, 1, 1, 4, 2, extra=b"\0")
    seeds["model-v1-header-cut"] = versioned_model_file(1, 2, 2, 1, 1, 1, 4, 2)[:100]
    seeds["model-v2-header-only"] = versioned_model_file(2, 2, 2, 1, 1, 1, 4, 2)[:256]
    seeds["model-magic-only"] = struct.pack("<I", MAGIC)
    seeds["model-magic-version"] = struct.pack("<Ii", MAGIC, 1)
    seeds["model-v3"] = versioned_model_file(1, 2, 2, 1, 1, 1, 4, 2)
    seeds["model-v3"] = seeds["model-v3"][:4] + struct.pack("<i", 3) + seeds["model-v3"][8:]
    seeds["model-v-negative"] = seeds["model-v3"][:4] + struct.pack("<i", -1) + \
        seeds["model-v3"][8:]
    seeds["model-v1-bad-flag"] = versioned_model_file(1, 2, 2, 1, 1, 1, 4, 2, flag=7)
    seeds["model-v1-negative-vocab"] = versioned_model_file(1, 2, 2, 1, 1, 1, -4, 2)
    seeds["model-v2-group-zero"] = versioned_model_file(2, 2, 2, 1, 1, 1, 4, 2, group=0)
    seeds["model-v2-group-negative"] = versioned_model_file(2, 2, 2, 1, 1, 1, 4, 2,
                                                            group=-2)
    seeds["model-v2-group-not-dividing"] = versioned_model_file(2, 4, 2, 1, 1, 1, 3, 2,
                                                                group=3)
    seeds["model-v2-nan-scale"] = versioned_model_file(2, 2, 2, 1, 1, 1, 4, 2, group=2,
                                                       poison_scale=True)
    # 1024 layers of 32 heads, every other field at its bound: only the
    # header, whose sizes must be computed without overflow
    for version in (1, 2):
        huge = struct.pack("<Ii7i", MAGIC, version, 65536, 1 << 20, 1024, 32, 32,
                           1 << 22, 1 << 24) + b"\0" + struct.pack("<i", 1)
        seeds["model-v%d-huge" % version] = huge + b"\0" * (256 - len(huge))
    for name in [n for n in seeds if n.startswith("model")]:
        seeds[name] = model_seed(seeds[name])

    # tokenizers
    small = [b"<unk>", b"\n<s>\n", b"\n</s>\n", b" ", b"a", b"b", b" a",
             b"ab", b" ab", b"the"]
    byte_tokens = [("<0x%02X>" % b).encode() for b in range(256)]
    fallback = [b"<unk>", b"\n<s>\n", b"\n</s>\n"] + byte_tokens + \
        [b" ", b"t", b"h", b"e", b"th", b" the", b"\xc3\xa9", b"\xe2\x82\xac"]
    seeds["tok-small"] = tokenizer_seed(len(small), tokenizer_file(small))
    seeds["tok-fallback"] = tokenizer_seed(len(fallback), tokenizer_file(fallback))
    seeds["tok-duplicates"] = tokenizer_seed(6, tokenizer_file(
        [b"<unk>", b"a", b"a", b"b", b"ab", b"ab"]))
    seeds["tok-inf-scores"] = tokenizer_seed(4, tokenizer_file(
        [b"<unk>", b"a", b"b", b"ab"], scores=[0.0, math.inf, -math.inf, 1e38]))
    seeds["tok-nan-score"] = tokenizer_seed(3, tokenizer_file(
        [b"<unk>", b"a", b"b"], scores=[0.0, math.nan, 1.0]))
    seeds["tok-truncated"] = tokenizer_seed(len(small), tokenizer_file(small, cut=2))
    seeds["tok-trailing"] = tokenizer_seed(len(small), tokenizer_file(small, extra=b"x"))
    seeds["tok-vocab-too-big"] = tokenizer_seed(len(small) + 1, tokenizer_file(small))
    seeds["tok-vocab-too-small"] = tokenizer_seed(len(small) - 1, tokenizer_file(small))
    seeds["tok-max-len-zero"] = tokenizer_seed(3, tokenizer_file(
        [b"a", b"b", b"c"], max_len=0))
    seeds["tok-max-len-huge"] = tokenizer_seed(3, tokenizer_file(
        [b"a", b"b", b"c"], max_len=0xffffffff))
    seeds["tok-piece-longer-than-max"] = tokenizer_seed(3, tokenizer_file(
        [b"a", b"bbbb", b"c"], max_len=2))
    seeds["tok-zero-length"] = tokenizer_seed(3, tokenizer_file(
        [b"a", b"b", b"c"], lengths={1: 0}))
    seeds["tok-negative-length"] = tokenizer_seed(3, tokenizer_file(
        [b"a", b"b", b"c"], lengths={1: -5}))
    seeds["tok-length-past-end"] = tokenizer_seed(3, tokenizer_file(
        [b"a", b"b", b"c"], lengths={2: 1000}))
    seeds["tok-header-only"] = tokenizer_seed(3, struct.pack("<I", 8))
    seeds["tok-empty"] = tokenizer_seed(3, b"")
    seeds["tok-vocab-zero"] = bytes([1, 0, 0]) + tokenizer_file(small)
    seeds["tok-vocab-negative"] = bytes([3, 5, 0]) + tokenizer_file(small)
    seeds["tok-nul-bytes"] = tokenizer_seed(4, tokenizer_file(
        [b"\0", b"a\0b", b"\0\0", b"\xff"]))

    for name, data in sorted(seeds.items()):
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(data)
    print("%d seeds in %s" % (len(seeds), out_dir))


if __name__ == "__main__":
    main()
