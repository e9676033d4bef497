/* Loader for llama2.c checkpoints as its export.py writes them:
 *
 *   version 0 (legacy_export): seven int32 (the header below), then fp32
 *     tensors (see examples/models/sotu-llama-6m/README.md for the order);
 *     a negative vocab_size marks an untied classifier.
 *   version 0 with fp16 weights (examples/models/pycode-llama-12m/
 *     model-f16.bin): the same header and tensor order, every value a
 *     little-endian IEEE binary16. The header has no field to say so; the
 *     file's exact size does (eng_model_check_file_size): for a given header
 *     the fp32 file has 28 + 4n bytes and the fp16 one 28 + 2n (n > 0 values),
 *     so an intact file is never ambiguous, and any other size is refused
 *     with both expected sizes named. The one damaged file that passes the
 *     size check, an fp32 file cut to exactly 28 + 2n bytes, reads the low
 *     halves of fp32 values as fp16, about 1 in 32 of them inf or NaN, and is
 *     refused by the finiteness check below. The loader converts the values
 *     to fp32 exactly (eng_model_half_to_float: portable C, subnormals
 *     included), so the engine runs as on the fp32 file of the same values.
 *   version 1 (version1_export): a 256-byte header: uint32 magic "ak42"
 *     (0x616b3432), int32 version, the same seven int32, a byte that is 1
 *     when the classifier is tied to the embedding, zero padding; then fp32
 *     tensors in the order rms_att, rms_ffn, rms_final, embedding, wq, wk,
 *     wv, wo, w1, w2, w3 [, classifier]; no RoPE tables.
 *   version 2 (version2_export): the version 1 header plus an int32 group
 *     size at byte 37; the three norms in fp32, then every matrix (the
 *     embedding, each layer's wq, ..., each layer's w3 [, classifier]) as
 *     Q8_0: its int8 values, then one fp32 scale per group of group-size
 *     values. The loader dequantizes them to fp32 (value * scale).
 *
 * Versions 0 and 1 are memory-mapped read-only and the weight pointers point
 * into the mapping; version 2 is dequantized into anonymous memory, which
 * then is the mapping. Either way the pointers stay valid until
 * eng_model_close(). Every header value and the exact file size are checked
 * (in 64-bit arithmetic that cannot overflow) before anything is mapped or
 * allocated, so a truncated or corrupt file yields ENG_EFORMAT and a
 * message instead of a crash. */
#ifndef ENG_MODEL_H
#define ENG_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* How a file stores its weights. */
typedef enum eng_weight_type {
    ENG_WEIGHTS_F32 = 0,  /* versions 0 and 1 */
    ENG_WEIGHTS_F16 = 1,  /* version 0 whose size says fp16 (see above) */
    ENG_WEIGHTS_Q8_0 = 2, /* version 2 (norms in fp32) */
} eng_weight_type;

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
    int version;      /* file format: 0, 1 or 2 (see above) */
    int group_size;   /* Q8_0 group of version 2; 0 otherwise */
    /* Storage of the weights in the file (the engine always gets fp32).
     * The header alone gives F32 for version 0: eng_model_check_file_size
     * then tells fp16 by the file's size. */
    eng_weight_type weight_type;
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
    void *mapping;       /* owned: the whole file (fp32 versions 0, 1) or the
                            converted weights (fp16, version 2) */
    size_t mapping_size;
    size_t file_size;    /* bytes of the checkpoint file */
} eng_model;

/* Size in bytes of the version 0 header (seven little-endian int32). */
#define ENG_MODEL_HEADER_BYTES 28
/* Size in bytes of the version 1 and 2 headers, and their magic number
 * (the bytes "24ka" read as a little-endian uint32). */
#define ENG_MODEL_V1_HEADER_BYTES 256
#define ENG_MODEL_MAGIC 0x616b3432u

/* Checks a version 0 header's seven values (in file order) and fills
 * config (version 0). Returns ENG_OK or ENG_EFORMAT. */
int eng_model_config_from_header(eng_model_config *config, const int header[7],
                                 eng_error *err);

/* Reads the header of any version from the first size bytes of a file
 * (size may be less than the header; it is then reported truncated) and
 * fills config. Returns ENG_OK or ENG_EFORMAT; the message names the format
 * version when the file has the magic number. */
int eng_model_config_from_file(eng_model_config *config, const void *file, size_t size,
                               eng_error *err);

/* Exact file size implied by config (of its version and weight_type), or
 * ENG_EFORMAT if it does not fit in size_t. */
int eng_model_expected_file_size(const eng_model_config *config, size_t *bytes,
                                 eng_error *err);

/* Checks a file of file_size bytes against config (from the header): for
 * version 0 it must be exactly the fp32 or the fp16 size, and
 * config->weight_type is set to the one it is; other versions must have
 * their one size. Returns ENG_OK, or ENG_EFORMAT with a message that says
 * "truncated" or "trailing data" (both for a version 0 size between its
 * fp16 and fp32 sizes) and gives the expected sizes. */
int eng_model_check_file_size(eng_model_config *config, size_t file_size, eng_error *err);

/* The IEEE binary16 value with these bits, exactly, as a float: every
 * half is a float (subnormals become normal floats, infinities stay
 * infinite, NaNs keep their sign and payload). Portable C, no F16C. */
float eng_model_half_to_float(uint16_t bits);

/* Opens and validates path. On failure *model is left zeroed and nothing
 * needs closing. */
int eng_model_open(eng_model *model, const char *path, eng_error *err);

/* Releases the mapping; safe on a zeroed or already-closed model. */
void eng_model_close(eng_model *model);

#endif
