/* fuzz_loaders: the example engine's checkpoint and tokenizer loaders on
 * corrupt files (truncated, absurd header values, wrong sizes, garbage), in
 * each checkpoint format (llama2.c versions 0, 1 and 2).
 * A loader must return a clean error with a message, or succeed on a file
 * that really is consistent; never crash, leak or read past the file.
 *
 * Input: byte 0 picks the loader (bit 0: model / tokenizer), bytes 1-2
 * the vocabulary size handed to the tokenizer loader, the rest is the file.
 * The engine reads files by path, so the bytes go to one temporary file per
 * process (unlinked at once, reached through /proc/self/fd when it can). */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_check.h"
#include "model.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_failed(const char *what, int line)
{
    fprintf(stderr, "fuzz_loaders: line %d: check failed: %s\n", line, what);
    abort();
}

static int file_fd = -1;
static char file_path[4096];
static char named_path[4096];

static void remove_named(void)
{
    if (named_path[0])
        unlink(named_path);
}

static void open_temp_file(void)
{
    const char *dir = getenv("TMPDIR");
    char templ[4096];
    snprintf(templ, sizeof templ, "%s/kf-fuzz-loaders-XXXXXX",
             dir && dir[0] ? dir : "/tmp");
    file_fd = mkstemp(templ);
    CHECK(file_fd >= 0);
    snprintf(file_path, sizeof file_path, "/proc/self/fd/%d", file_fd);
    if (access(file_path, R_OK) == 0) {
        unlink(templ); /* nothing left behind, even after a crash */
    } else {
        /* no /proc: keep the name, remove it at exit */
        snprintf(file_path, sizeof file_path, "%s", templ);
        snprintf(named_path, sizeof named_path, "%s", templ);
        atexit(remove_named);
    }
}

static void write_file(const uint8_t *data, size_t size)
{
    if (file_fd < 0)
        open_temp_file();
    CHECK(ftruncate(file_fd, 0) == 0);
    size_t done = 0;
    while (done < size) {
        ssize_t n = pwrite(file_fd, data + done, size - done, (off_t)done);
        CHECK(n > 0);
        done += (size_t)n;
    }
}

static void fuzz_model(const uint8_t *file, size_t size)
{
    /* the pure header checks on whatever the first 28 bytes say */
    if (size >= ENG_MODEL_HEADER_BYTES) {
        int header[7];
        memcpy(header, file, sizeof header);
        eng_model_config cfg;
        eng_error err = { { 0 } };
        if (eng_model_config_from_header(&cfg, header, &err) == ENG_OK) {
            size_t bytes = 0;
            CHECK(cfg.version == 0);
            CHECK(cfg.head_size * cfg.n_heads == cfg.dim);
            CHECK(cfg.kv_dim == cfg.n_kv_heads * cfg.head_size);
            if (eng_model_expected_file_size(&cfg, &bytes, &err) == ENG_OK)
                CHECK(bytes > ENG_MODEL_HEADER_BYTES);
        } else {
            CHECK(err.message[0] != '\0');
        }
    }
    /* the header of whichever version the file says it is */
    eng_model_config file_cfg;
    eng_error header_err = { { 0 } };
    const int header_rc = eng_model_config_from_file(&file_cfg, file, size, &header_err);
    if (header_rc == ENG_OK) {
        CHECK(file_cfg.version >= 0 && file_cfg.version <= 2);
        CHECK(file_cfg.head_size * file_cfg.n_heads == file_cfg.dim);
        CHECK((file_cfg.version == 2) == (file_cfg.group_size > 0));
        if (file_cfg.version == 2)
            CHECK(file_cfg.dim % file_cfg.group_size == 0);
        size_t bytes = 0;
        if (eng_model_expected_file_size(&file_cfg, &bytes, &header_err) == ENG_OK)
            CHECK(bytes > (file_cfg.version ? ENG_MODEL_V1_HEADER_BYTES
                                            : ENG_MODEL_HEADER_BYTES));
    } else {
        CHECK(header_rc == ENG_EFORMAT && header_err.message[0] != '\0');
    }

    write_file(file, size);
    eng_model model;
    eng_error err = { { 0 } };
    int rc = eng_model_open(&model, file_path, &err);
    if (rc != ENG_OK) {
        CHECK(rc < 0);
        CHECK(err.message[0] != '\0');
        CHECK(model.mapping == NULL); /* nothing to close */
        eng_model_close(&model);
        return;
    }
    /* a success means the file is exactly what the header describes */
    CHECK(header_rc == ENG_OK && file_cfg.version == model.config.version);
    size_t expected = 0;
    CHECK(eng_model_expected_file_size(&model.config, &expected, NULL) == ENG_OK);
    CHECK(expected == size && model.file_size == size);
    /* fp32 files (versions 0 and 1) are mapped; fp16 (version 0, by its
     * size) and version 2 files hold the converted weights */
    CHECK((model.config.weight_type == ENG_WEIGHTS_F16) <=
          (model.config.version == 0));
    if (model.config.weight_type == ENG_WEIGHTS_F32)
        CHECK(model.mapping_size == size);
    const eng_model_weights *w = &model.weights;
    const float *begin = (const float *)model.mapping;
    const float *end = (const float *)((const char *)model.mapping + model.mapping_size);
    const float *tensors[] = { w->token_embedding, w->rms_att, w->wq, w->wk, w->wv,
                               w->wo, w->rms_ffn, w->w1, w->w2, w->w3,
                               w->rms_final, w->wcls };
    for (size_t i = 0; i < sizeof tensors / sizeof tensors[0]; i++)
        CHECK(tensors[i] && tensors[i] >= begin && tensors[i] < end);
    CHECK(w->rms_final + model.config.dim <= end);
    volatile float sink = 0; /* every byte of the weights is readable */
    for (const float *p = begin; p < end; p++)
        sink += *p;
    (void)sink;
    eng_model_close(&model);
    eng_model_close(&model); /* closing twice is safe */
}

static void fuzz_tokenizer(const uint8_t *file, size_t size, int vocab)
{
    write_file(file, size);
    eng_tokenizer tok;
    eng_error err = { { 0 } };
    int rc = eng_tokenizer_load(&tok, file_path, vocab, &err);
    if (rc != ENG_OK) {
        CHECK(rc < 0);
        CHECK(err.message[0] != '\0');
        CHECK(tok.piece_bytes == NULL && tok.scores == NULL);
        eng_tokenizer_free(&tok);
        return;
    }
    CHECK(tok.vocab_size == vocab);
    /* the loaded vocabulary must be usable: encode, look up, decode */
    static const char *const texts[] = {
        "", " ", "the State of the Union", "aaaaaaaaaaaaaaaa", "<0x41>",
        "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", "\xff\xfe\xc3", "\n<s>\n",
    };
    size_t n_texts = sizeof texts / sizeof texts[0];
    for (size_t t = 0; t <= n_texts; t++) {
        /* the last text: the file's own first bytes, any of them */
        const char *text = t < n_texts ? texts[t] : (const char *)file;
        size_t len = t < n_texts ? strlen(texts[t]) : (size < 64 ? size : 64);
        int *ids = NULL, n = 0;
        rc = eng_tokenizer_encode(&tok, text, len, t & 1, t & 2, &ids, &n, &err);
        CHECK(rc == ENG_OK);
        CHECK(n >= 0 && (size_t)n <= len + 3);
        int prev = ENG_TOKEN_BOS;
        for (int i = 0; i < n; i++) {
            CHECK(ids[i] >= 0 && ids[i] < vocab);
            size_t out_len = 0;
            const char *piece = eng_tokenizer_decode(&tok, prev, ids[i], &out_len);
            CHECK(piece != NULL);
            volatile char sink = 0;
            for (size_t b = 0; b < out_len; b++)
                sink ^= piece[b];
            (void)sink;
            prev = ids[i];
        }
        free(ids);
    }
    static const int odd_ids[] = { -1, 0, 1, 2, 3, 258, 259, -2147483647 - 1, 2147483647 };
    for (size_t i = 0; i < sizeof odd_ids / sizeof odd_ids[0]; i++) {
        size_t out_len = 0;
        const char *piece = eng_tokenizer_decode(&tok, ENG_TOKEN_BOS, odd_ids[i], &out_len);
        CHECK(piece != NULL);
        if (odd_ids[i] < 0 || odd_ids[i] >= vocab)
            CHECK(out_len == 0);
    }
    for (int id = 0; id < vocab && id < 300; id++) {
        const char *p = tok.piece_bytes + tok.piece_offsets[id];
        int found = eng_tokenizer_lookup(&tok, p, (size_t)tok.piece_lengths[id]);
        CHECK(found >= 0 && found <= id); /* duplicates resolve to the lowest */
    }
    eng_tokenizer_free(&tok);
    eng_tokenizer_free(&tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    int which = data[0] & 1;
    int vocab = data[1] | data[2] << 8;
    if (data[0] & 2)
        vocab = -vocab; /* absurd sizes are rejected before any read */
    else if (vocab == 0)
        vocab = 1;
    if (which == 0)
        fuzz_model(data + 3, size - 3);
    else
        fuzz_tokenizer(data + 3, size - 3, vocab);
    return 0;
}
