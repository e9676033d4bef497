/* Loader for llama2.c "version 0" checkpoints (see
 * examples/models/sotu-llama-6m/README.md for the byte layout).
 *
 * The file is memory-mapped read-only; the weight pointers point into the
 * mapping and stay valid until eng_model_close(). Every header value and the
 * exact file size are checked first, so a truncated or corrupt file yields
 * ENG_EFORMAT and a message instead of a crash. */
#ifndef ENG_MODEL_H
#define ENG_MODEL_H

#include <stdbool.h>
#include <stddef.h>

#include "status.h"

typedef struct eng_model_config {
    int dim;          /* model width */
    int hidden_dim;   /* FFN width */
    int n_layers;
    int n_heads;      /* query heads */
    int n_kv_heads;   /* key/value heads (GQA when fewer than n_heads) */
    int vocab_size;   /* always positive here; see shared_classifier */
    int seq_len;      /* trained context length (informative only) */
    int head_size;    /* dim / n_heads */
    int kv_dim;       /* n_kv_heads * head_size */
    bool shared_classifier; /* true: output head = token embedding */
} eng_model_config;

/* Row-major fp32 tensors, [out][in], stacked over layers where noted. */
typedef struct eng_model_weights {
    const float *token_embedding; /* [vocab][dim] */
    const float *rms_att;         /* [layers][dim] */
    const float *wq;              /* [layers][dim][dim] */
    const float *wk;              /* [layers][kv_dim][dim] */
    const float *wv;              /* [layers][kv_dim][dim] */
    const float *wo;              /* [layers][dim][dim] */
    const float *rms_ffn;         /* [layers][dim] */
    const float *w1;              /* [layers][hidden][dim] (gate) */
    const float *w2;              /* [layers][dim][hidden] (down) */
    const float *w3;              /* [layers][hidden][dim] (up) */
    const float *rms_final;       /* [dim] */
    const float *wcls;            /* [vocab][dim]; the embedding when tied */
} eng_model_weights;

typedef struct eng_model {
    eng_model_config config;
    eng_model_weights weights;
    void *mapping;       /* whole file, owned */
    size_t mapping_size;
} eng_model;

/* Size in bytes of the fixed header (seven little-endian int32). */
#define ENG_MODEL_HEADER_BYTES 28

/* Checks a header's seven values (in file order) and fills config.
 * Returns ENG_OK or ENG_EFORMAT. */
int eng_model_config_from_header(eng_model_config *config, const int header[7],
                                 eng_error *err);

/* Exact file size implied by config, or ENG_EFORMAT if it does not fit in
 * size_t. */
int eng_model_expected_file_size(const eng_model_config *config, size_t *bytes,
                                 eng_error *err);

/* Opens and validates path. On failure *model is left zeroed and nothing
 * needs closing. */
int eng_model_open(eng_model *model, const char *path, eng_error *err);

/* Releases the mapping; safe on a zeroed or already-closed model. */
void eng_model_close(eng_model *model);

#endif
