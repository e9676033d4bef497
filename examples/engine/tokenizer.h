/* The llama2.c tokenizer.bin format: a sentencepiece BPE vocabulary with
 * merge scores and byte fallback.
 *
 * Encoding follows sentencepiece: add a leading space (the "dummy prefix"),
 * split into UTF-8 characters, then repeatedly merge the adjacent pair whose
 * merged string is a vocabulary piece with the highest score (leftmost pair
 * on ties); a character missing from the vocabulary is emitted as its UTF-8
 * bytes, byte b being id b + 3 ("<0xNN>"). Merges use a priority queue, so a
 * long speech encodes in O(n log n). */
#ifndef ENG_TOKENIZER_H
#define ENG_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>

#include "status.h"

enum {
    ENG_TOKEN_UNK = 0,
    ENG_TOKEN_BOS = 1,
    ENG_TOKEN_EOS = 2,
    ENG_TOKEN_FIRST_BYTE = 3, /* ids 3..258 are the bytes 0x00..0xFF */
};

typedef struct eng_tokenizer {
    int vocab_size;
    int max_piece_length;
    char *piece_bytes;         /* all pieces, each NUL-terminated */
    size_t *piece_offsets;     /* [vocab] into piece_bytes */
    int *piece_lengths;        /* [vocab] */
    float *scores;             /* [vocab] merge scores */
    int *ids_by_piece;         /* [vocab] ids sorted by piece bytes, for lookup */
    bool has_byte_fallback;    /* ids 3..258 spell <0x00>..<0xFF> */
    unsigned char byte_values[256]; /* decode target of the byte tokens */
} eng_tokenizer;

/* Reads and validates a tokenizer.bin holding exactly vocab_size entries
 * (the model's vocabulary size). On failure *tok is zeroed. */
int eng_tokenizer_load(eng_tokenizer *tok, const char *path, int vocab_size,
                       eng_error *err);

void eng_tokenizer_free(eng_tokenizer *tok);

/* Id of the piece spelled by the len bytes at text, or -1. */
int eng_tokenizer_lookup(const eng_tokenizer *tok, const char *text, size_t len);

/* Encodes text_len bytes of text. On success *ids_out is a malloc'd array of
 * *n_out ids that the caller frees. An empty text yields just the optional
 * BOS/EOS. */
int eng_tokenizer_encode(const eng_tokenizer *tok, const char *text,
                         size_t text_len, bool add_bos, bool add_eos,
                         int **ids_out, int *n_out, eng_error *err);

/* Bytes to print for id when it follows prev_id: the piece, with the leading
 * space dropped right after BOS, a byte token as its raw byte, BOS and EOS as
 * nothing. The pointer stays valid while tok lives. */
const char *eng_tokenizer_decode(const eng_tokenizer *tok, int prev_id, int id,
                                 size_t *len_out);

#endif
