/* Loading, lookup and decoding for the llama2.c tokenizer (encoding lives in
 * tokenizer_encode.c). */
#include "tokenizer.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "file.h"

/* Sentencepiece pieces are short; anything longer is a corrupt length. */
enum { MAX_PIECE_LENGTH = 1 << 16, MAX_VOCAB = 1 << 22 };

static int compare_pieces(const char *a, size_t a_len, const char *b, size_t b_len)
{
    const size_t common = a_len < b_len ? a_len : b_len;
    const int c = memcmp(a, b, common);
    if (c != 0)
        return c;
    return (a_len > b_len) - (a_len < b_len);
}

static const char *piece_of(const eng_tokenizer *tok, int id)
{
    return tok->piece_bytes + tok->piece_offsets[id];
}

/* A piece with its id, so qsort can order pieces without a context pointer. */
typedef struct sortable_piece {
    const char *bytes;
    size_t len;
    int id;
} sortable_piece;

static int compare_sortable_pieces(const void *pa, const void *pb)
{
    const sortable_piece *a = pa, *b = pb;
    const int c = compare_pieces(a->bytes, a->len, b->bytes, b->len);
    /* Ties by id make duplicate pieces resolve to the lowest id. */
    return c != 0 ? c : (a->id > b->id) - (a->id < b->id);
}

static int build_lookup_index(eng_tokenizer *tok, eng_error *err)
{
    const size_t n = (size_t)tok->vocab_size;
    sortable_piece *entries = malloc(n * sizeof *entries);
    if (!entries)
        return eng_fail(err, ENG_ENOMEM, "out of memory sorting the vocabulary");
    for (int id = 0; id < tok->vocab_size; id++)
        entries[id] = (sortable_piece){piece_of(tok, id), (size_t)tok->piece_lengths[id], id};
    qsort(entries, n, sizeof *entries, compare_sortable_pieces);
    for (size_t i = 0; i < n; i++)
        tok->ids_by_piece[i] = entries[i].id;
    free(entries);
    return ENG_OK;
}

int eng_tokenizer_lookup(const eng_tokenizer *tok, const char *text, size_t len)
{
    int lo = 0, hi = tok->vocab_size; /* lower bound over ids_by_piece */
    while (lo < hi) {
        const int mid = lo + (hi - lo) / 2;
        const int id = tok->ids_by_piece[mid];
        if (compare_pieces(piece_of(tok, id), (size_t)tok->piece_lengths[id], text, len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == tok->vocab_size)
        return -1;
    const int id = tok->ids_by_piece[lo];
    return compare_pieces(piece_of(tok, id), (size_t)tok->piece_lengths[id], text, len) == 0
               ? id : -1;
}

static bool spells_byte_tokens(const eng_tokenizer *tok)
{
    if (tok->vocab_size < ENG_TOKEN_FIRST_BYTE + 256)
        return false;
    for (int b = 0; b < 256; b++) {
        char expected[8];
        snprintf(expected, sizeof expected, "<0x%02X>", b);
        const int id = ENG_TOKEN_FIRST_BYTE + b;
        if (compare_pieces(piece_of(tok, id), (size_t)tok->piece_lengths[id],
                           expected, strlen(expected)) != 0)
            return false;
    }
    return true;
}

static int read_exact(FILE *f, void *dst, size_t n, const char *path, const char *what,
                      int id, eng_error *err)
{
    if (fread(dst, 1, n, f) == n)
        return ENG_OK;
    if (ferror(f))
        return eng_fail(err, ENG_EIO, "%s: read error: %s", path, strerror(errno));
    return eng_fail(err, ENG_EFORMAT, "%s: truncated in the %s of token %d", path, what, id);
}

static int allocate_tables(eng_tokenizer *tok, int vocab_size, eng_error *err)
{
    const size_t n = (size_t)vocab_size;
    tok->vocab_size = vocab_size;
    tok->piece_offsets = malloc(n * sizeof *tok->piece_offsets);
    tok->piece_lengths = malloc(n * sizeof *tok->piece_lengths);
    tok->scores = malloc(n * sizeof *tok->scores);
    tok->ids_by_piece = malloc(n * sizeof *tok->ids_by_piece);
    if (!tok->piece_offsets || !tok->piece_lengths || !tok->scores || !tok->ids_by_piece)
        return eng_fail(err, ENG_ENOMEM, "out of memory for a %d-token vocabulary", vocab_size);
    return ENG_OK;
}

/* Appends len bytes plus a NUL to the piece arena, growing it geometrically. */
static int append_piece(eng_tokenizer *tok, size_t *used, size_t *capacity, FILE *f,
                        int len, const char *path, int id, eng_error *err)
{
    const size_t need = *used + (size_t)len + 1;
    if (need > *capacity) {
        size_t grown = *capacity ? *capacity * 2 : 4096;
        while (grown < need)
            grown *= 2;
        char *bigger = realloc(tok->piece_bytes, grown);
        if (!bigger)
            return eng_fail(err, ENG_ENOMEM, "out of memory reading %s", path);
        tok->piece_bytes = bigger;
        *capacity = grown;
    }
    int rc = read_exact(f, tok->piece_bytes + *used, (size_t)len, path, "bytes", id, err);
    if (rc)
        return rc;
    tok->piece_offsets[id] = *used;
    tok->piece_bytes[*used + (size_t)len] = '\0';
    *used = need;
    return ENG_OK;
}

static int read_entries(eng_tokenizer *tok, FILE *f, const char *path, eng_error *err)
{
    uint32_t max_length;
    int rc = read_exact(f, &max_length, sizeof max_length, path, "header", 0, err);
    if (rc)
        return eng_fail(err, ENG_EFORMAT, "%s: truncated header", path);
    if (max_length < 1 || max_length > MAX_PIECE_LENGTH)
        return eng_fail(err, ENG_EFORMAT, "%s: max token length %u is outside 1..%d",
                        path, max_length, MAX_PIECE_LENGTH);
    tok->max_piece_length = (int)max_length;

    size_t used = 0, capacity = 0;
    for (int id = 0; id < tok->vocab_size; id++) {
        float score;
        int32_t len;
        if ((rc = read_exact(f, &score, sizeof score, path, "score", id, err)) ||
            (rc = read_exact(f, &len, sizeof len, path, "length", id, err)))
            return rc;
        if (isnan(score))
            return eng_fail(err, ENG_EFORMAT, "%s: token %d has a NaN score", path, id);
        if (len < 1 || len > (int32_t)max_length)
            return eng_fail(err, ENG_EFORMAT,
                            "%s: token %d has length %d, outside 1..%u", path, id,
                            (int)len, max_length);
        tok->scores[id] = score;
        tok->piece_lengths[id] = (int)len;
        if ((rc = append_piece(tok, &used, &capacity, f, (int)len, path, id, err)))
            return rc;
    }
    if (fgetc(f) != EOF)
        return eng_fail(err, ENG_EFORMAT,
                        "%s: trailing data after %d tokens (vocabulary size mismatch?)",
                        path, tok->vocab_size);
    return ENG_OK;
}

int eng_tokenizer_load(eng_tokenizer *tok, const char *path, int vocab_size,
                       eng_error *err)
{
    memset(tok, 0, sizeof *tok);
    if (!path)
        return eng_fail(err, ENG_EINVAL, "no tokenizer path given");
    /* ids 0..2 are unk, BOS and EOS: encode emits BOS and EOS by id */
    if (vocab_size < ENG_TOKEN_EOS + 1 || vocab_size > MAX_VOCAB)
        return eng_fail(err, ENG_EINVAL, "vocabulary size %d is outside %d..%d",
                        vocab_size, ENG_TOKEN_EOS + 1, MAX_VOCAB);
    const int fd = eng_open_regular_file(path, err);
    if (fd < 0)
        return fd;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return eng_fail(err, ENG_ENOMEM, "%s: cannot open a stream: %s", path,
                        strerror(errno));
    }
    int rc = allocate_tables(tok, vocab_size, err);
    if (rc == ENG_OK)
        rc = read_entries(tok, f, path, err);
    fclose(f);
    if (rc == ENG_OK)
        rc = build_lookup_index(tok, err);
    if (rc != ENG_OK) {
        eng_tokenizer_free(tok);
        return rc;
    }
    tok->has_byte_fallback = spells_byte_tokens(tok);
    for (int b = 0; b < 256; b++)
        tok->byte_values[b] = (unsigned char)b;
    return ENG_OK;
}

void eng_tokenizer_free(eng_tokenizer *tok)
{
    free(tok->piece_bytes);
    free(tok->piece_offsets);
    free(tok->piece_lengths);
    free(tok->scores);
    free(tok->ids_by_piece);
    memset(tok, 0, sizeof *tok);
}

const char *eng_tokenizer_decode(const eng_tokenizer *tok, int prev_id, int id,
                                 size_t *len_out)
{
    *len_out = 0;
    if (id < 0 || id >= tok->vocab_size || id == ENG_TOKEN_BOS || id == ENG_TOKEN_EOS)
        return "";
    if (tok->has_byte_fallback && id >= ENG_TOKEN_FIRST_BYTE &&
        id < ENG_TOKEN_FIRST_BYTE + 256) {
        *len_out = 1;
        return (const char *)&tok->byte_values[id - ENG_TOKEN_FIRST_BYTE];
    }
    const char *piece = piece_of(tok, id);
    size_t len = (size_t)tok->piece_lengths[id];
    /* The dummy prefix added at encoding is not part of the text. */
    if (prev_id == ENG_TOKEN_BOS && piece[0] == ' ') {
        piece++;
        len--;
    }
    *len_out = len;
    return piece;
}
