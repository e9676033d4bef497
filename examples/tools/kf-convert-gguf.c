/* kf-convert-gguf: a llama2.c checkpoint and its tokenizer.bin to one GGUF
 * file that llama.cpp loads as a "llama" model.
 *
 *   kf-convert-gguf --out OUT.gguf [--model CKPT] [--tokenizer tokenizer.bin]
 *                   [--name NAME] [--outtype f32|f16]
 *
 * The checkpoint is read by the example engine's loader, so every format the
 * engine runs converts (llama2.c version 0 in fp32 or fp16, 1, and 2, whose
 * Q8_0 is written dequantized). Unlike llama.cpp's own llama2.c converter it writes
 * the checkpoint's context length (not 128) and RoPE over the whole head
 * (not min(64, head size)).
 *
 * Why no Q/K permutation: the engine rotates adjacent pairs (2i, 2i+1) of a
 * head by position * theta^(-2i / head_size) (engine/ops.c), which is
 * llama.cpp's "normal" RoPE, the one its llama architecture uses, with
 * rope.dimension_count = head_size and rope.freq_base = theta.
 *
 * Files are untrusted: the loaders check every size; the output is written
 * to a temporary file beside it and renamed only when complete, so a failure
 * (or an interrupt) leaves no partial OUT behind. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "gguf_write.h"
#include "model.h"
#include "ops.h"
#include "tokenizer.h"

#define PROGRAM_NAME "kf-convert-gguf"

/* llama.cpp's token types and file types (llama.h). */
enum { TOKEN_NORMAL = 1, TOKEN_UNKNOWN = 2, TOKEN_CONTROL = 3, TOKEN_BYTE = 6 };
enum { FILE_TYPE_ALL_F32 = 0, FILE_TYPE_MOSTLY_F16 = 1 };
enum { MAX_NAME_BYTES = 256 };

typedef struct convert_options {
    cli_common common; /* first: the setters receive a pointer to it */
    const char *out_path;
    const char *name;
    enum kf_ggml_type matrix_type;
} convert_options;

static convert_options *opts(cli_common *c) { return (convert_options *)c; }

static int set_out(cli_common *c, const char *v)
{
    if (!v[0])
        return cli_reject(c, "an output file name");
    opts(c)->out_path = v;
    return 0;
}

static int set_name(cli_common *c, const char *v)
{
    if (!v[0] || strlen(v) > MAX_NAME_BYTES)
        return cli_reject(c, "a name of 1 to %d bytes", MAX_NAME_BYTES);
    opts(c)->name = v;
    return 0;
}

static int set_outtype(cli_common *c, const char *v)
{
    if (!strcmp(v, "f32"))
        opts(c)->matrix_type = KF_GGML_F32;
    else if (!strcmp(v, "f16"))
        opts(c)->matrix_type = KF_GGML_F16;
    else
        return cli_reject(c, "f32 or f16");
    return 0;
}

static const cli_option OPTIONS[] = {
    {"--model", "FILE", "llama2.c checkpoint, version 0, 1 or 2 (default: the bundled model)",
     cli_set_model, 0},
    {"--tokenizer", "FILE", "llama2.c tokenizer.bin (default: the bundled model's)",
     cli_set_tokenizer, 0},
    {"--out", "FILE", "the GGUF file to write (required; replaced if it exists)", set_out, 0},
    {"--name", "NAME", "general.name (default: the checkpoint's folder or file name)",
     set_name, 0},
    {"--outtype", "TYPE", "f32 (default, exact) or f16 for the matrices; norms stay f32",
     set_outtype, 0},
};

static const cli_program PROGRAM = {
    .name = PROGRAM_NAME,
    .synopsis = PROGRAM_NAME " --out OUT.gguf [options]\n"
                "Converts a llama2.c checkpoint and its tokenizer to GGUF for llama.cpp.",
    .value_width = 4, .options = OPTIONS, .n_options = CLI_N_OPTIONS(OPTIONS)};

/* ---- the vocabulary ---- */

static bool piece_is(const eng_tokenizer *tok, int id, const char *text)
{
    return (size_t)tok->piece_lengths[id] == strlen(text) &&
           !memcmp(tok->piece_bytes + tok->piece_offsets[id], text, strlen(text));
}

static bool is_byte_piece(const char *p, int len)
{
    static const char hex[] = "0123456789ABCDEF";
    return len == 6 && !memcmp(p, "<0x", 3) && p[5] == '>' && p[3] && p[4] &&
           strchr(hex, p[3]) && strchr(hex, p[4]);
}

/* GGUF's spelling of the vocabulary: what sentencepiece stores, so spaces
 * become U+2581 ("▁", which tokenizer.bin had replaced by a space) and the
 * special tokens lose llama2.c's surrounding newlines. */
typedef struct gguf_vocab {
    char **texts;
    size_t *lengths;
    float *scores;
    int32_t *types;
} gguf_vocab;

static void vocab_free(gguf_vocab *v, int n)
{
    if (v->texts)
        for (int i = 0; i < n; i++)
            free(v->texts[i]);
    free(v->texts), free(v->lengths), free(v->scores), free(v->types);
    memset(v, 0, sizeof *v);
}

static int vocab_build(gguf_vocab *v, const eng_tokenizer *tok, eng_error *err)
{
    const int n = tok->vocab_size;
    static const struct {
        int id;
        const char *text, *llama2c_text;
    } specials[] = {{ENG_TOKEN_UNK, "<unk>", "<unk>"},
                    {ENG_TOKEN_BOS, "<s>", "\n<s>\n"},
                    {ENG_TOKEN_EOS, "</s>", "\n</s>\n"}};
    for (size_t s = 0; s < sizeof specials / sizeof specials[0]; s++)
        if (!piece_is(tok, specials[s].id, specials[s].text) &&
            !piece_is(tok, specials[s].id, specials[s].llama2c_text))
            return eng_fail(err, ENG_EFORMAT,
                            "tokenizer: token %d should be %s, as in every llama2.c "
                            "sentencepiece vocabulary (the engine assumes ids 0, 1, 2 = "
                            "<unk>, <s>, </s>)", specials[s].id, specials[s].text);
    memset(v, 0, sizeof *v);
    v->texts = calloc((size_t)n, sizeof *v->texts);
    v->lengths = calloc((size_t)n, sizeof *v->lengths);
    v->scores = calloc((size_t)n, sizeof *v->scores);
    v->types = calloc((size_t)n, sizeof *v->types);
    if (!v->texts || !v->lengths || !v->scores || !v->types) {
        vocab_free(v, n);
        return eng_fail(err, ENG_ENOMEM, "out of memory for the vocabulary");
    }
    for (int id = 0; id < n; id++) {
        const char *piece = tok->piece_bytes + tok->piece_offsets[id];
        const int len = tok->piece_lengths[id];
        v->scores[id] = tok->scores[id];
        if (id <= ENG_TOKEN_EOS) {
            const char *text = specials[id].text;
            v->texts[id] = strdup(text);
            v->lengths[id] = strlen(text);
            v->types[id] = id == ENG_TOKEN_UNK ? TOKEN_UNKNOWN : TOKEN_CONTROL;
        } else {
            size_t spaces = 0;
            for (int i = 0; i < len; i++)
                spaces += piece[i] == ' ';
            /* len <= 2^16 (the tokenizer's bound): no overflow */
            char *text = malloc((size_t)len + 2 * spaces + 1);
            size_t out = 0;
            for (int i = 0; text && i < len; i++) {
                if (piece[i] == ' ') {
                    memcpy(text + out, "\xe2\x96\x81", 3);
                    out += 3;
                } else {
                    text[out++] = piece[i];
                }
            }
            v->texts[id] = text;
            v->lengths[id] = out;
            v->types[id] = is_byte_piece(piece, len) ? TOKEN_BYTE : TOKEN_NORMAL;
        }
        if (!v->texts[id]) {
            vocab_free(v, n);
            return eng_fail(err, ENG_ENOMEM, "out of memory for the vocabulary");
        }
    }
    return ENG_OK;
}

/* ---- the GGUF contents ---- */

/* The folder of a checkpoint whose file name starts with "model" (as the
 * bundled model.bin and model-f16.bin do), else the file name without its
 * extension. */
static void default_name(const char *path, char *name, size_t size)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (!strncmp(base, "model", 5) && slash) {
        const char *end = slash;
        while (end > path && end[-1] == '/')
            end--;
        const char *start = end;
        while (start > path && start[-1] != '/')
            start--;
        if (end > start && !(end - start == 1 && *start == '.') &&
            !(end - start == 2 && !memcmp(start, "..", 2))) {
            snprintf(name, size, "%.*s", (int)(end - start), start);
            return;
        }
    }
    const char *dot = strrchr(base, '.');
    const size_t len = dot && dot > base ? (size_t)(dot - base) : strlen(base);
    snprintf(name, size, "%.*s", (int)len, base);
    if (!name[0])
        snprintf(name, size, "llama2c");
}

#define TRY(call)                       \
    do {                                \
        if ((rc = (call)) != KF_GGUF_OK) \
            goto done;                  \
    } while (0)

static int add_metadata(kf_gguf_writer *w, const eng_model_config *c, const gguf_vocab *v,
                        const char *name, enum kf_ggml_type matrix_type)
{
    int rc;
    const uint64_t n = (uint64_t)c->vocab_size;
    TRY(kf_gguf_set_string(w, "general.architecture", "llama", 5));
    TRY(kf_gguf_set_string(w, "general.name", name, strlen(name)));
    TRY(kf_gguf_set_u32(w, "general.file_type", matrix_type == KF_GGML_F16
                                                    ? FILE_TYPE_MOSTLY_F16
                                                    : FILE_TYPE_ALL_F32));
    TRY(kf_gguf_set_u32(w, "general.alignment", KF_GGUF_DEFAULT_ALIGNMENT));
    TRY(kf_gguf_set_u32(w, "llama.vocab_size", (uint32_t)c->vocab_size));
    TRY(kf_gguf_set_u32(w, "llama.context_length", (uint32_t)c->seq_len));
    TRY(kf_gguf_set_u32(w, "llama.embedding_length", (uint32_t)c->dim));
    TRY(kf_gguf_set_u32(w, "llama.block_count", (uint32_t)c->n_layers));
    TRY(kf_gguf_set_u32(w, "llama.feed_forward_length", (uint32_t)c->hidden_dim));
    TRY(kf_gguf_set_u32(w, "llama.attention.head_count", (uint32_t)c->n_heads));
    TRY(kf_gguf_set_u32(w, "llama.attention.head_count_kv", (uint32_t)c->n_kv_heads));
    TRY(kf_gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", ENG_RMS_EPSILON));
    TRY(kf_gguf_set_u32(w, "llama.rope.dimension_count", (uint32_t)c->head_size));
    TRY(kf_gguf_set_f32(w, "llama.rope.freq_base", ENG_ROPE_THETA));
    TRY(kf_gguf_set_string(w, "tokenizer.ggml.model", "llama", 5));
    TRY(kf_gguf_set_string_array(w, "tokenizer.ggml.tokens", (const char *const *)v->texts,
                                 v->lengths, n));
    TRY(kf_gguf_set_f32_array(w, "tokenizer.ggml.scores", v->scores, n));
    TRY(kf_gguf_set_i32_array(w, "tokenizer.ggml.token_type", v->types, n));
    TRY(kf_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", ENG_TOKEN_BOS));
    TRY(kf_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", ENG_TOKEN_EOS));
    TRY(kf_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", ENG_TOKEN_UNK));
    /* The engine's encoder starts with BOS and adds sentencepiece's dummy
     * prefix (a leading space); it never appends EOS. */
    TRY(kf_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", true));
    TRY(kf_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", false));
    TRY(kf_gguf_set_bool(w, "tokenizer.ggml.add_space_prefix", true));
done:
    return rc;
}

static int add_matrix(kf_gguf_writer *w, const char *name, const float *data, int rows,
                      int cols, enum kf_ggml_type type)
{
    /* [rows][cols] row-major is ggml's ne = {cols, rows}: same bytes. */
    const uint64_t ne[2] = {(uint64_t)cols, (uint64_t)rows};
    return kf_gguf_add_tensor(w, name, 2, ne, type, data);
}

static int add_vector(kf_gguf_writer *w, const char *name, const float *data, int n)
{
    const uint64_t ne[1] = {(uint64_t)n};
    return kf_gguf_add_tensor(w, name, 1, ne, KF_GGML_F32, data);
}

static int add_tensors(kf_gguf_writer *w, const eng_model *m, enum kf_ggml_type type)
{
    const eng_model_config *c = &m->config;
    const eng_model_weights *wt = &m->weights;
    const size_t dim = (size_t)c->dim, kv_dim = (size_t)c->kv_dim,
                 hidden = (size_t)c->hidden_dim;
    int rc;
    char name[64];
    TRY(add_matrix(w, "token_embd.weight", wt->token_embedding, c->vocab_size, c->dim, type));
    for (int l = 0; l < c->n_layers; l++) {
        const size_t i = (size_t)l;
#define LAYER_TENSOR(suffix) (snprintf(name, sizeof name, "blk.%d." suffix ".weight", l), name)
        TRY(add_vector(w, LAYER_TENSOR("attn_norm"), wt->rms_att + i * dim, c->dim));
        TRY(add_matrix(w, LAYER_TENSOR("attn_q"), wt->wq + i * dim * dim, c->dim, c->dim, type));
        TRY(add_matrix(w, LAYER_TENSOR("attn_k"), wt->wk + i * kv_dim * dim, c->kv_dim, c->dim,
                       type));
        TRY(add_matrix(w, LAYER_TENSOR("attn_v"), wt->wv + i * kv_dim * dim, c->kv_dim, c->dim,
                       type));
        TRY(add_matrix(w, LAYER_TENSOR("attn_output"), wt->wo + i * dim * dim, c->dim, c->dim,
                       type));
        TRY(add_vector(w, LAYER_TENSOR("ffn_norm"), wt->rms_ffn + i * dim, c->dim));
        TRY(add_matrix(w, LAYER_TENSOR("ffn_gate"), wt->w1 + i * hidden * dim, c->hidden_dim,
                       c->dim, type));
        TRY(add_matrix(w, LAYER_TENSOR("ffn_down"), wt->w2 + i * dim * hidden, c->dim,
                       c->hidden_dim, type));
        TRY(add_matrix(w, LAYER_TENSOR("ffn_up"), wt->w3 + i * hidden * dim, c->hidden_dim,
                       c->dim, type));
#undef LAYER_TENSOR
    }
    TRY(add_vector(w, "output_norm.weight", wt->rms_final, c->dim));
    /* Without "output", llama.cpp's llama architecture uses token_embd. */
    if (!c->shared_classifier)
        TRY(add_matrix(w, "output.weight", wt->wcls, c->vocab_size, c->dim, type));
done:
    return rc;
}

/* Count of values that f16 turns into infinities (|x| >= 65520). */
static size_t count_f16_overflows(const float *x, size_t n)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        count += isfinite(x[i]) && fabsf(x[i]) >= 65520.0f;
    return count;
}

static size_t model_f16_overflows(const eng_model *m)
{
    const eng_model_config *c = &m->config;
    const eng_model_weights *w = &m->weights;
    const size_t l = (size_t)c->n_layers, dim = (size_t)c->dim, kv = (size_t)c->kv_dim,
                 hid = (size_t)c->hidden_dim, vocab = (size_t)c->vocab_size;
    size_t n = count_f16_overflows(w->token_embedding, vocab * dim) +
               count_f16_overflows(w->wq, l * dim * dim) +
               count_f16_overflows(w->wk, l * kv * dim) +
               count_f16_overflows(w->wv, l * kv * dim) +
               count_f16_overflows(w->wo, l * dim * dim) +
               count_f16_overflows(w->w1, l * hid * dim) +
               count_f16_overflows(w->w2, l * dim * hid) +
               count_f16_overflows(w->w3, l * hid * dim);
    if (!c->shared_classifier)
        n += count_f16_overflows(w->wcls, vocab * dim);
    return n;
}

static const char *gguf_status_text(int rc)
{
    return rc == KF_GGUF_ENOMEM ? "out of memory"
           : rc == KF_GGUF_EINVAL ? "a value GGUF cannot hold"
                                  : strerror(errno);
}

/* ---- writing the file ---- */

/* The temporary file being written, removed by the signal handler too. */
static char temp_path[PATH_MAX + 16];
static volatile sig_atomic_t temp_exists;

static void remove_temp_and_die(int sig)
{
    if (temp_exists)
        unlink(temp_path);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void catch_signals(void)
{
    const int signals[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++) {
        struct sigaction sa = {.sa_handler = remove_temp_and_die};
        sigemptyset(&sa.sa_mask);
        sigaction(signals[i], &sa, NULL);
    }
}

static void block_signals(bool block)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT), sigaddset(&set, SIGTERM), sigaddset(&set, SIGHUP);
    sigprocmask(block ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
}

/* Refuses an output that is not a regular file, or that is one of the
 * inputs (renaming over it would destroy the source). */
static int check_output_path(const convert_options *o, eng_error *err)
{
    struct stat out, in;
    if (strlen(o->out_path) > PATH_MAX)
        return eng_fail(err, ENG_EINVAL, "--out: the path is longer than %d bytes", PATH_MAX);
    if (stat(o->out_path, &out) != 0)
        return errno == ENOENT ? ENG_OK
                               : eng_fail(err, ENG_EIO, "--out %s: %s", o->out_path,
                                          strerror(errno));
    if (!S_ISREG(out.st_mode))
        return eng_fail(err, ENG_EINVAL, "--out %s: exists and is not a regular file",
                        o->out_path);
    const char *inputs[2][2] = {{"--model", o->common.model_path},
                                {"--tokenizer", o->common.tokenizer_path}};
    for (int i = 0; i < 2; i++)
        if (stat(inputs[i][1], &in) == 0 && in.st_dev == out.st_dev && in.st_ino == out.st_ino)
            return eng_fail(err, ENG_EINVAL, "--out %s is the %s file", o->out_path,
                            inputs[i][0]);
    return ENG_OK;
}

static int write_file(const char *out_path, const kf_gguf_writer *w, eng_error *err)
{
    snprintf(temp_path, sizeof temp_path, "%s.XXXXXX", out_path);
    block_signals(true);
    const int fd = mkstemp(temp_path);
    if (fd >= 0)
        temp_exists = 1;
    block_signals(false);
    if (fd < 0)
        return eng_fail(err, ENG_EIO, "--out %s: cannot create a file beside it: %s", out_path,
                        strerror(errno));
    /* mkstemp makes it 0600; give it the mode a new file would get. */
    const mode_t mask = umask(0);
    umask(mask);
    int rc = ENG_OK;
    if (fchmod(fd, 0666 & ~mask) != 0)
        rc = eng_fail(err, ENG_EIO, "%s: %s", temp_path, strerror(errno));
    FILE *f = rc == ENG_OK ? fdopen(fd, "wb") : NULL;
    if (rc == ENG_OK && !f)
        rc = eng_fail(err, ENG_EIO, "%s: %s", temp_path, strerror(errno));
    if (rc == ENG_OK) {
        const int wr = kf_gguf_write(w, f);
        if (wr != KF_GGUF_OK)
            rc = eng_fail(err, wr == KF_GGUF_ENOMEM ? ENG_ENOMEM : ENG_EIO,
                          "writing %s: %s", out_path, gguf_status_text(wr));
        else if (fflush(f) != 0 || fsync(fileno(f)) != 0)
            rc = eng_fail(err, ENG_EIO, "writing %s: %s", out_path, strerror(errno));
        else if (ftello(f) < 0 || (uint64_t)ftello(f) != kf_gguf_file_size(w))
            rc = eng_fail(err, ENG_EIO, "writing %s: wrote %lld bytes, expected %llu",
                          out_path, (long long)ftello(f),
                          (unsigned long long)kf_gguf_file_size(w));
    }
    if (f ? fclose(f) != 0 : close(fd) != 0)
        if (rc == ENG_OK)
            rc = eng_fail(err, ENG_EIO, "writing %s: %s", out_path, strerror(errno));
    block_signals(true);
    if (rc == ENG_OK && rename(temp_path, out_path) != 0)
        rc = eng_fail(err, ENG_EIO, "renaming %s to %s: %s", temp_path, out_path,
                      strerror(errno));
    if (rc != ENG_OK)
        unlink(temp_path);
    temp_exists = 0;
    block_signals(false);
    return rc;
}

static int convert(const convert_options *o)
{
    eng_error err = {{0}};
    eng_model model = {0};
    eng_tokenizer tok = {0};
    gguf_vocab vocab = {0};
    kf_gguf_writer *w = NULL;
    char name[MAX_NAME_BYTES + 1];

    int rc = check_output_path(o, &err);
    if (rc == ENG_OK)
        rc = cli_load_model(&o->common, &model, &tok, &err);
    if (rc == ENG_OK)
        rc = vocab_build(&vocab, &tok, &err);
    const eng_model_config *c = &model.config;
    if (rc == ENG_OK && o->matrix_type == KF_GGML_F16) {
        const size_t overflows = model_f16_overflows(&model);
        if (overflows)
            fprintf(stderr, "%s: warning: %zu weights exceed the f16 range and become "
                    "infinite; use --outtype f32\n", PROGRAM_NAME, overflows);
    }
    if (rc == ENG_OK) {
        if (o->name)
            snprintf(name, sizeof name, "%s", o->name);
        else
            default_name(o->common.model_path, name, sizeof name);
        int g = kf_gguf_writer_create(&w, KF_GGUF_DEFAULT_ALIGNMENT);
        if (g == KF_GGUF_OK)
            g = add_metadata(w, c, &vocab, name, o->matrix_type);
        if (g == KF_GGUF_OK)
            g = add_tensors(w, &model, o->matrix_type);
        if (g != KF_GGUF_OK)
            rc = eng_fail(&err, g == KF_GGUF_ENOMEM ? ENG_ENOMEM : ENG_EINVAL,
                          "building the GGUF contents: %s", gguf_status_text(g));
    }
    if (rc == ENG_OK)
        rc = write_file(o->out_path, w, &err);
    if (rc == ENG_OK)
        printf("%s: wrote %s: %.1f MB, %s, \"%s\": llama2.c v%d, %d layers, dim %d, "
               "%d heads (%d KV) of %d, FFN %d, vocab %d, context %d, %s classifier\n",
               PROGRAM_NAME, o->out_path, (double)kf_gguf_file_size(w) / 1e6,
               o->matrix_type == KF_GGML_F16 ? "f16" : "f32", name, c->version,
               c->n_layers, c->dim, c->n_heads, c->n_kv_heads, c->head_size, c->hidden_dim,
               c->vocab_size, c->seq_len, c->shared_classifier ? "tied" : "separate");
    else
        fprintf(stderr, "%s: %s\n", PROGRAM_NAME, err.message);
    kf_gguf_writer_destroy(&w);
    vocab_free(&vocab, tok.vocab_size);
    eng_tokenizer_free(&tok);
    eng_model_close(&model);
    return rc;
}

int main(int argc, char **argv)
{
    convert_options o = {.matrix_type = KF_GGML_F32};
    cli_common_init(&o.common);
    const int parsed = cli_parse(&PROGRAM, &o.common, argc, argv);
    if (parsed != 0)
        return parsed > 0 ? 0 : 2;
    if (!o.out_path) {
        fprintf(stderr, "%s: --out is required (the GGUF file to write)\n", PROGRAM_NAME);
        cli_print_usage(&PROGRAM, stderr);
        return 2;
    }
    catch_signals();
    return convert(&o) == ENG_OK ? 0 : 1;
}
