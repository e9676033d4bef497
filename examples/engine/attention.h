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

/* Called once per KV head g of a block, on the thread that finished the last
 * of its query heads, as soon as the logits of all of them are complete:
 * logits points at query head g * group_size, [group_size][n_rows][n_slots]
 * (eng_attention_block.logits from that head on), valid until the run ends.
 * Calls for different KV heads may run concurrently. Returns 0, or nonzero
 * to make eng_attention_run() report it (the run still completes). */
typedef int (*eng_attention_kv_head_fn)(void *user_data, int kv_head, const float *logits);

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
    eng_attention_kv_head_fn kv_head_done; /* NULL: no per-KV-head callback */
    void *kv_head_user_data;
    int *kv_head_pending; /* with kv_head_done: n_kv_heads ints of scratch */
    /* [n_kv_heads][capacity], 1 = an old slot to skip (logit -inf); NULL:
     * none */
    const unsigned char *masked;
} eng_attention_block;

/* Runs in parallel over heads (and row chunks of a prompt block) with
 * OpenMP. A single row is two single-threaded sgemv calls per head; a block
 * of rows is cut into chunks whose logits and weighted sums are two sgemm
 * calls each, several times faster than a dot product per slot. With
 * kv_head_done set, each KV head is called back as soon as its query heads
 * are done (the same schedule: in a decode step a thread's static block of
 * consecutive heads covers whole KV heads where the counts allow). Returns
 * 0, or the first nonzero value a kv_head_done call returned (every KV head
 * is still computed and called back). */
int eng_attention_run(const eng_attention_block *block);

/* Scratch size for eng_attention_block.scratch. */
size_t eng_attention_scratch_floats(int capacity, int n_threads);

#endif
