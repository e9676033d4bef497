/* Attention of a block of new query rows over one layer's cached slots.
 *
 * The cache of a layer is [n_kv_heads][capacity][head_size]; the block's own
 * keys and values must already be stored in slots n_old_slots ..
 * n_old_slots + n_rows - 1. Slots are not positions: RoPE was applied when
 * each key was written, so this code only needs slot order for the causal
 * mask (row i sees slots 0 .. n_old_slots + i). */
#ifndef ENG_ATTENTION_H
#define ENG_ATTENTION_H

#include <stddef.h>

typedef struct eng_attention_block {
    const float *queries; /* [n_rows][n_heads * head_size], already rotated */
    const float *keys;    /* layer cache, [n_kv_heads][capacity][head_size] */
    const float *values;  /* same layout */
    int capacity;
    int n_heads;
    int n_kv_heads;
    int head_size;
    int n_old_slots;
    int n_rows;
    float *logits;        /* out: [n_heads][n_rows][n_old_slots + n_rows];
                             q·k/sqrt(head_size), -INFINITY where masked */
    float *output;        /* out: [n_rows][n_heads * head_size] */
    float *scratch;       /* eng_attention_scratch_floats() floats */
    int n_threads;
} eng_attention_block;

/* Runs in parallel over heads (and row chunks of a prompt block) with
 * OpenMP. A single row is two single-threaded sgemv calls per head; a block
 * of rows is cut into chunks whose logits and weighted sums are two sgemm
 * calls each, several times faster than a dot product per slot. */
void eng_attention_run(const eng_attention_block *block);

/* Scratch size for eng_attention_block.scratch. */
size_t eng_attention_scratch_floats(int capacity, int n_threads);

#endif
