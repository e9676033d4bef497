#!/usr/bin/env python3
"""kf-convert-gguf round trip, read back by a GGUF parser of its own (the
Python standard library only, no llama.cpp):

- the bundled model (llama2.c version 0, tied classifier) in f32 and f16,
  and small made-up checkpoints of versions 0 (untied), 1 (tied, untied)
  and 2 (Q8_0): the magic and version, every metadata key with its type and
  value (context length = seq_len, RoPE dimensions = head size, head counts,
  the vocabulary with its scores and token types), every tensor's name,
  shape, type and aligned offset, and its bytes against the checkpoint's
  weights read here independently (Q8_0 dequantized here too);
- bad inputs: a truncated checkpoint, a tokenizer of another vocabulary
  size, a tokenizer without <s>, an output that cannot be written (missing
  folder, a folder, the input itself, a write that fails half-way): a
  clear message, a non-zero exit, and no output file left behind (an
  existing one unchanged);
- the command line: --help, --version, missing --out, bad values.

  check_convert_gguf.py KF_CONVERT_GGUF MODEL_DIR
"""
import os
import random
import resource
import signal
import struct
import subprocess
import sys
import tempfile

ALIGNMENT = 32
U32, I32, F32, BOOL, STRING, ARRAY = 4, 5, 6, 7, 8, 9
GGML_F32, GGML_F16 = 0, 1
SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f",
                  7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
NORMAL, UNKNOWN, CONTROL, BYTE = 1, 2, 3, 6


def as_f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def fail(message):
    sys.exit("check_convert_gguf: " + message)


# ---- a GGUF reader ----

class Cursor:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, fmt):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            fail("GGUF truncated at byte %d" % self.pos)
        value = struct.unpack_from(fmt, self.data, self.pos)[0]
        self.pos += size
        return value

    def string(self):
        n = self.take("<Q")
        if self.pos + n > len(self.data):
            fail("GGUF string runs past the end at byte %d" % self.pos)
        s = self.data[self.pos:self.pos + n]
        self.pos += n
        return s

    def value(self, vtype):
        if vtype == STRING:
            return self.string()
        if vtype == ARRAY:
            etype, n = self.take("<I"), self.take("<Q")
            return (etype, [self.value(etype) for _ in range(n)])
        if vtype not in SCALAR_FORMATS:
            fail("unknown GGUF value type %d" % vtype)
        return self.take(SCALAR_FORMATS[vtype])


def read_gguf(path):
    data = open(path, "rb").read()
    c = Cursor(data)
    if data[:4] != b"GGUF":
        fail("%s: magic %r, not GGUF" % (path, data[:4]))
    c.pos = 4
    version, n_tensors, n_kv = c.take("<I"), c.take("<Q"), c.take("<Q")
    kv = {}
    for _ in range(n_kv):
        key = c.string().decode()
        if key in kv:
            fail("key %s appears twice" % key)
        vtype = c.take("<I")
        kv[key] = (vtype, c.value(vtype))
    tensors = []
    for _ in range(n_tensors):
        name = c.string().decode()
        n_dims = c.take("<I")
        ne = [c.take("<Q") for _ in range(n_dims)]
        tensors.append((name, ne, c.take("<I"), c.take("<Q")))
    alignment = kv.get("general.alignment", (U32, 32))[1]
    start = (c.pos + alignment - 1) // alignment * alignment
    if any(b != 0 for b in data[c.pos:start]):
        fail("non-zero padding before the data")
    return version, kv, tensors, start, data


# ---- llama2.c files, read independently ----

def read_tokenizer(path):
    data = open(path, "rb").read()
    pos, pieces = 4, []
    while pos < len(data):
        score, n = struct.unpack_from("<fi", data, pos)
        pieces.append((data[pos + 8:pos + 8 + n], score))
        pos += 8 + n
    return pieces


def gguf_vocab(pieces):
    """The tokens, scores and types the GGUF should hold."""
    tokens, types = [], []
    for i, (piece, _) in enumerate(pieces):
        if i < 3:
            tokens.append([b"<unk>", b"<s>", b"</s>"][i])
            types.append(UNKNOWN if i == 0 else CONTROL)
            continue
        tokens.append(piece.replace(b" ", "\u2581".encode()))
        is_byte = (len(piece) == 6 and piece[:3] == b"<0x" and piece[5:] == b">" and
                   all(ch in b"0123456789ABCDEF" for ch in piece[3:5]))
        types.append(BYTE if is_byte else NORMAL)
    return tokens, [s for _, s in pieces], types


def read_checkpoint(path):
    """(config, {gguf tensor name: (ne, fp32 little-endian bytes)})."""
    data = open(path, "rb").read()
    if struct.unpack_from("<I", data, 0)[0] == 0x616B3432:
        version = struct.unpack_from("<i", data, 4)[0]
        dim, hidden, layers, heads, kv_heads, vocab, seq_len = struct.unpack_from("<7i", data, 8)
        shared = data[36] == 1
        group = struct.unpack_from("<i", data, 37)[0] if version == 2 else 0
        pos = 256
    else:
        version, group = 0, 0
        dim, hidden, layers, heads, kv_heads, vocab, seq_len = struct.unpack_from("<7i", data, 0)
        shared = vocab > 0
        vocab = abs(vocab)
        pos = 28
    head = dim // heads
    kv_dim = kv_heads * head
    # version 0 stores fp32 or, by its size, fp16 values
    n_values = (vocab * dim * (1 if shared else 2) + layers * (2 * dim + 2 * dim * dim +
                2 * kv_dim * dim + 3 * hidden * dim) + dim + seq_len * head)
    half = version == 0 and len(data) == 28 + 2 * n_values
    config = dict(version=version, dim=dim, hidden=hidden, layers=layers, heads=heads,
                  kv_heads=kv_heads, vocab=vocab, seq_len=seq_len, head=head, shared=shared)

    def f32(count):
        nonlocal pos
        if half:
            pos += 2 * count
            return struct.pack("<%df" % count,
                               *struct.unpack_from("<%de" % count, data, pos - 2 * count))
        out = data[pos:pos + 4 * count]
        pos += 4 * count
        return out

    def q8(count):  # one separately quantized piece, dequantized here
        nonlocal pos
        q = struct.unpack_from("<%db" % count, data, pos)
        pos += count
        scales = struct.unpack_from("<%df" % (count // group), data, pos)
        pos += 4 * (count // group)
        return struct.pack("<%df" % count, *[q[i] * scales[i // group] for i in range(count)])

    matrix = q8 if version == 2 else f32
    shapes = {"attn_q": (dim, dim), "attn_k": (dim, kv_dim), "attn_v": (dim, kv_dim),
              "attn_output": (dim, dim), "ffn_gate": (dim, hidden),
              "ffn_down": (hidden, dim), "ffn_up": (dim, hidden)}
    order = ["attn_q", "attn_k", "attn_v", "attn_output"]
    t = {}

    def per_layer(kind, read, ne):
        for l in range(layers):
            t["blk.%d.%s.weight" % (l, kind)] = (list(ne), read(ne[0] * ne[1]))

    if version == 0:
        t["token_embd.weight"] = ([dim, vocab], f32(vocab * dim))
        per_layer("attn_norm", f32, (dim, 1))
        for kind in order:
            per_layer(kind, f32, shapes[kind])
        per_layer("ffn_norm", f32, (dim, 1))
        for kind in ("ffn_gate", "ffn_down", "ffn_up"):
            per_layer(kind, f32, shapes[kind])
        t["output_norm.weight"] = ([dim], f32(dim))
        pos += (2 if half else 4) * seq_len * head
    else:
        per_layer("attn_norm", f32, (dim, 1))
        per_layer("ffn_norm", f32, (dim, 1))
        t["output_norm.weight"] = ([dim], f32(dim))
        t["token_embd.weight"] = ([dim, vocab], matrix(vocab * dim))
        for kind in order + ["ffn_gate", "ffn_down", "ffn_up"]:
            per_layer(kind, matrix, shapes[kind])
    if not shared:
        t["output.weight"] = ([dim, vocab], matrix(vocab * dim))
    if pos != len(data):
        fail("%s: read %d of %d bytes" % (path, pos, len(data)))
    for name, (ne, _) in t.items():
        if "norm" in name:
            ne[:] = ne[:1]
    return config, t


# ---- the round trip ----

def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)
    if p.returncode < 0:
        fail("%s: killed by signal %d\n%s" % (" ".join(cmd), -p.returncode, p.stderr))
    return p


def convert(tool, model, tokenizer, out, *extra):
    p = run([tool, "--model", model, "--tokenizer", tokenizer, "--out", out] + list(extra))
    if p.returncode != 0:
        fail("converting %s: exit %d\n%s" % (model, p.returncode, p.stderr))
    return p


def check_gguf(path, model, tokenizer, outtype, name):
    config, weights = read_checkpoint(model)
    version, kv, tensors, data_start, data = read_gguf(path)
    where = "%s (%s, %s)" % (path, os.path.basename(model), outtype)
    if version != 3:
        fail("%s: GGUF version %d, expected 3" % (where, version))
    tokens, scores, types = gguf_vocab(read_tokenizer(tokenizer))
    if len(tokens) != config["vocab"]:
        fail("test setup: tokenizer and model disagree")
    c = config
    expected = {
        "general.architecture": (STRING, b"llama"),
        "general.name": (STRING, name.encode()),
        "general.file_type": (U32, 1 if outtype == "f16" else 0),
        "general.alignment": (U32, ALIGNMENT),
        "llama.vocab_size": (U32, c["vocab"]),
        "llama.context_length": (U32, c["seq_len"]),
        "llama.embedding_length": (U32, c["dim"]),
        "llama.block_count": (U32, c["layers"]),
        "llama.feed_forward_length": (U32, c["hidden"]),
        "llama.attention.head_count": (U32, c["heads"]),
        "llama.attention.head_count_kv": (U32, c["kv_heads"]),
        "llama.attention.layer_norm_rms_epsilon": (F32, as_f32(1e-5)),
        "llama.rope.dimension_count": (U32, c["head"]),
        "llama.rope.freq_base": (F32, 10000.0),
        "tokenizer.ggml.model": (STRING, b"llama"),
        "tokenizer.ggml.tokens": (ARRAY, (STRING, tokens)),
        "tokenizer.ggml.scores": (ARRAY, (F32, scores)),
        "tokenizer.ggml.token_type": (ARRAY, (I32, types)),
        "tokenizer.ggml.bos_token_id": (U32, 1),
        "tokenizer.ggml.eos_token_id": (U32, 2),
        "tokenizer.ggml.unknown_token_id": (U32, 0),
        "tokenizer.ggml.add_bos_token": (BOOL, True),
        "tokenizer.ggml.add_eos_token": (BOOL, False),
        "tokenizer.ggml.add_space_prefix": (BOOL, True),
    }
    if set(kv) != set(expected):
        fail("%s: keys differ: extra %s, missing %s" % (where, sorted(set(kv) - set(expected)),
                                                       sorted(set(expected) - set(kv))))
    for key, want in expected.items():
        if kv[key] != want:
            got = kv[key]
            if got[0] == ARRAY and want[0] == ARRAY and got[1][0] == want[1][0]:
                diff = next(i for i, (a, b) in enumerate(zip(got[1][1], want[1][1])) if a != b) \
                    if len(got[1][1]) == len(want[1][1]) else "length"
                fail("%s: %s differs (first at %s)" % (where, key, diff))
            fail("%s: %s = %r, expected %r" % (where, key, got, want))

    names = [t[0] for t in tensors]
    if sorted(names) != sorted(weights) or len(set(names)) != len(names):
        fail("%s: tensors %s, expected %s" % (where, sorted(names), sorted(weights)))
    end = data_start
    for name, ne, ttype, offset in tensors:
        want_ne, fp32 = weights[name]
        if ne != want_ne:
            fail("%s: %s has shape %s, expected %s" % (where, name, ne, want_ne))
        want_type = GGML_F16 if outtype == "f16" and len(ne) == 2 else GGML_F32
        if ttype != want_type:
            fail("%s: %s has type %d, expected %d" % (where, name, ttype, want_type))
        if offset % ALIGNMENT:
            fail("%s: %s at offset %d, not aligned" % (where, name, offset))
        n = len(fp32) // 4
        if want_type == GGML_F16:
            want = struct.pack("<%de" % n, *struct.unpack("<%df" % n, fp32))
        else:
            want = fp32
        start = data_start + offset
        if start < end:
            fail("%s: %s overlaps the tensor before it" % (where, name))
        got = data[start:start + len(want)]
        if got != want:
            at = next((i for i in range(len(got)) if got[i:i + 1] != want[i:i + 1]), len(got))
            fail("%s: %s differs from the checkpoint at byte %d of %d" % (where, name, at,
                                                                          len(want)))
        end = start + len(want)
    if len(data) != (end + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT:
        fail("%s: %d bytes, the last tensor ends at %d" % (where, len(data), end))
    return config


# ---- made-up checkpoints ----

def write_tokenizer(path, n_vocab, specials=(b"<unk>", b"\n<s>\n", b"\n</s>\n")):
    pieces = list(specials) + [b"<0x%02X>" % b for b in range(256)]
    words = [b" the", b"he", b" a", b"in", b" of", b"re", b" s", b"nd", b" w", b"on",
             b"\xe2\x80\xa2", b"  ", b" ", b"<0x4g>"]
    k = 0
    while len(pieces) < n_vocab:
        pieces.append(words[k % len(words)] + (b"" if k < len(words) else b"%d" % k))
        k += 1
    with open(path, "wb") as f:
        f.write(struct.pack("<I", max(len(p) for p in pieces)))
        for i, p in enumerate(pieces[:n_vocab]):
            f.write(struct.pack("<fi", 0.0 if i < 259 else -float(i - 259), len(p)) + p)


def write_checkpoint(path, version, shared, rng, half=False, dim=16, hidden=24, layers=2,
                     heads=4, kv_heads=2, vocab=300, seq_len=40, group=8):
    head = dim // heads
    kv_dim = kv_heads * head

    def floats(n):
        return struct.pack("<%d%s" % (n, "e" if half else "f"),
                           *[rng.uniform(-1, 1) for _ in range(n)])

    def q8(n):
        return (struct.pack("<%db" % n, *[rng.randint(-127, 127) for _ in range(n)]) +
                struct.pack("<%df" % (n // group), *[rng.uniform(1e-3, 2e-2)
                                                     for _ in range(n // group)]))

    mats = [dim * dim, kv_dim * dim, kv_dim * dim, dim * dim]
    ffn = [hidden * dim, dim * hidden, hidden * dim]
    with open(path, "wb") as f:
        if version == 0:
            f.write(struct.pack("<7i", dim, hidden, layers, heads, kv_heads,
                                vocab if shared else -vocab, seq_len))
            f.write(floats(vocab * dim) + floats(layers * dim))
            for m in mats:
                f.write(floats(layers * m))
            f.write(floats(layers * dim))
            for m in ffn:
                f.write(floats(layers * m))
            f.write(floats(dim) + floats(seq_len * head))
            if not shared:
                f.write(floats(vocab * dim))
            return
        header = struct.pack("<Ii7iB", 0x616B3432, version, dim, hidden, layers, heads,
                             kv_heads, vocab, seq_len, 1 if shared else 0)
        if version == 2:
            header += struct.pack("<i", group)
        f.write(header + bytes(256 - len(header)))
        f.write(floats(layers * dim) + floats(layers * dim) + floats(dim))
        matrix = q8 if version == 2 else floats
        f.write(matrix(vocab * dim))
        for m in mats + ffn:
            for _ in range(layers):
                f.write(matrix(m))
        if not shared:
            f.write(matrix(vocab * dim))


# ---- failures ----

def expect_failure(tool, args, parts, folder, code=1, keep=None, preexec=None):
    before = sorted(os.listdir(folder))
    p = subprocess.run([tool] + args, capture_output=True, text=True, timeout=120,
                       preexec_fn=preexec)
    where = " ".join([os.path.basename(tool)] + args)
    if p.returncode < 0:
        fail("%s: killed by signal %d" % (where, -p.returncode))
    if p.returncode != code:
        fail("%s: exit %d, expected %d\n%s" % (where, p.returncode, code, p.stderr))
    for part in parts:
        if part not in p.stderr:
            fail("%s: stderr lacks %r:\n%s" % (where, part, p.stderr))
    after = sorted(os.listdir(folder))
    if after != before:
        fail("%s: left files behind: %s" % (where, sorted(set(after) - set(before))))
    if keep:
        path, content = keep
        if open(path, "rb").read() != content:
            fail("%s: changed the existing %s" % (where, path))


def limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100000, 100000))


def main():
    tool, model_dir = sys.argv[1:3]
    model = os.path.join(model_dir, "model.bin")
    tokenizer = os.path.join(model_dir, "tokenizer.bin")
    rng = random.Random(17)
    with tempfile.TemporaryDirectory() as tmp:
        # the bundled model
        out = os.path.join(tmp, "sotu.gguf")
        p = convert(tool, model, tokenizer, out)
        if "context 2048" not in p.stdout:
            fail("the summary lacks the context length:\n" + p.stdout)
        c = check_gguf(out, model, tokenizer, "f32", "sotu-llama-6m")
        if (c["seq_len"], c["head"]) != (2048, 48):
            fail("the bundled model's header is not the one documented")
        out16 = os.path.join(tmp, "sotu-f16.gguf")
        convert(tool, model, tokenizer, out16, "--outtype", "f16", "--name", "sotu f16")
        check_gguf(out16, model, tokenizer, "f16", "sotu f16")
        if os.stat(out).st_mode & 0o777 != 0o666 & ~current_umask():
            fail("the output's mode is %o" % (os.stat(out).st_mode & 0o777))
        print("bundled model: f32 and f16 round trips ok (%d tensors)"
              % len(read_gguf(out)[2]))

        # made-up checkpoints of every version
        small_tok = os.path.join(tmp, "tok300.bin")
        write_tokenizer(small_tok, 300)
        for version, shared, half in ((0, False, False), (0, True, True), (0, False, True),
                                      (1, True, False), (1, False, False), (2, False, False),
                                      (2, True, False)):
            ckpt = os.path.join(tmp, "v%d-%s%s.bin" % (version, "tied" if shared else "untied",
                                                      "-f16" if half else ""))
            write_checkpoint(ckpt, version, shared, rng, half)
            for outtype in ("f32", "f16"):
                gguf = ckpt + "." + outtype + ".gguf"
                convert(tool, ckpt, small_tok, gguf, "--outtype", outtype)
                check_gguf(gguf, ckpt, small_tok, outtype, os.path.basename(ckpt)[:-4])
        print("llama2.c versions 0 (fp32, fp16), 1, 2, tied and untied: round trips ok")

        # f16 rounding at its edges (ties to even, subnormals, the largest
        # half) against Python's binary16 packing; then an overflow warns
        edges = [65504.0, 65519.99, -65519.0, 1e-8, 2.0 ** -24, 2.0 ** -25,
                 3 * 2.0 ** -25, 2.0 ** -14, 2.0 ** -14 - 2.0 ** -25, 6.1e-5,
                 1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11, -0.0, 0.0, -(1 + 2.0 ** -11),
                 0.1, 1 / 3.0, 2049.0, 2051.0, -4097.0, 2.0 ** -24 * 1.5]
        ckpt = os.path.join(tmp, "v1-tied.bin")
        edge = os.path.join(tmp, "edges.bin")
        blob = bytearray(open(ckpt, "rb").read())
        embedding = 256 + 4 * (2 * 2 * 16 + 16)  # after the norms of write_checkpoint
        struct.pack_into("<%df" % len(edges), blob, embedding, *edges)
        open(edge, "wb").write(blob)
        convert(tool, edge, small_tok, edge + ".gguf", "--outtype", "f16")
        check_gguf(edge + ".gguf", edge, small_tok, "f16", "edges")
        struct.pack_into("<f", blob, embedding, 70000.0)
        open(edge, "wb").write(blob)
        p = convert(tool, edge, small_tok, edge + ".gguf", "--outtype", "f16")
        if "1 weights exceed the f16 range" not in p.stderr:
            fail("no warning for a weight beyond f16:\n" + p.stderr)
        print("f16 rounding edges: ok")

        # bad inputs: each fails clearly and leaves nothing behind
        bad = os.path.join(tmp, "bad")
        os.mkdir(bad)
        target = os.path.join(bad, "out.gguf")
        data = open(model, "rb").read()
        truncated = os.path.join(tmp, "truncated.bin")
        open(truncated, "wb").write(data[:len(data) - 1000])
        expect_failure(tool, ["--model", truncated, "--tokenizer", tokenizer, "--out", target],
                       ["truncated"], bad)
        tok_more = os.path.join(tmp, "tok4097.bin")
        write_tokenizer(tok_more, 4097)
        expect_failure(tool, ["--model", model, "--tokenizer", tok_more, "--out", target],
                       ["vocabulary size mismatch"], bad)
        tok_less = os.path.join(tmp, "tok4000.bin")
        write_tokenizer(tok_less, 4000)
        expect_failure(tool, ["--model", model, "--tokenizer", tok_less, "--out", target],
                       ["truncated"], bad)
        tok_nobos = os.path.join(tmp, "tok-nobos.bin")
        write_tokenizer(tok_nobos, 300, specials=(b"<unk>", b"hello", b"</s>"))
        ckpt = os.path.join(tmp, "v1-tied.bin")
        expect_failure(tool, ["--model", ckpt, "--tokenizer", tok_nobos, "--out", target],
                       ["token 1", "<s>"], bad)
        expect_failure(tool, ["--model", model, "--tokenizer", tokenizer, "--out",
                              os.path.join(bad, "no-such-folder", "x.gguf")],
                       ["no-such-folder", "No such file"], bad)
        expect_failure(tool, ["--model", model, "--tokenizer", tokenizer, "--out", bad],
                       ["not a regular file"], bad)
        copy = os.path.join(bad, "model-copy.bin")
        open(copy, "wb").write(open(ckpt, "rb").read())
        expect_failure(tool, ["--model", copy, "--tokenizer", small_tok, "--out", copy],
                       ["--model file"], bad)
        os.remove(copy)
        # a write failing half-way (file size limit): no partial file, and an
        # existing output stays as it was
        old = b"an older file"
        open(target, "wb").write(old)
        expect_failure(tool, ["--model", model, "--tokenizer", tokenizer, "--out", target],
                       ["writing", target], bad, keep=(target, old), preexec=limit_file_size)
        expect_failure(tool, ["--model", truncated, "--tokenizer", tokenizer, "--out", target],
                       ["truncated"], bad, keep=(target, old))
        print("bad inputs and unwritable outputs: clear errors, nothing left behind")

        # the command line
        for args, code, stream, parts in (
                (["--help"], 0, "stdout", ["usage:", "--outtype", "--out"]),
                (["--version"], 0, "stdout", ["kf-convert-gguf", "libkeyformer"]),
                ([], 2, "stderr", ["--out is required"]),
                (["--out", target, "--outtype", "q4"], 2, "stderr", ["q4", "f32 or f16"]),
                (["--out"], 2, "stderr", ["needs a value"]),
                (["--out", target, "--name", ""], 2, "stderr", ["--name"]),
                (["--frobnicate"], 2, "stderr", ["--frobnicate"])):
            p = run([tool] + args)
            if p.returncode != code or not all(s in getattr(p, stream) for s in parts):
                fail("%s: exit %d, expected %d with %s in %s\n%s%s" % (
                    " ".join(args), p.returncode, code, parts, stream, p.stdout, p.stderr))
    print("kf-convert-gguf: ok")


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


if __name__ == "__main__":
    main()
