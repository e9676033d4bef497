/* The fake host model around README.md's "Integration in 20 lines"
 * snippet: doc/check_snippets.py --readme places the snippet's parts in a
 * main() (built as C11 and as C++11, meson test readme-snippet-*), and
 * this model provides what the snippet calls "yours". It includes nothing
 * beyond keyformer.h, so the snippet's own includes must be complete. */
#ifndef README_MODEL_H
#define README_MODEL_H

#include <keyformer.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The model's shape; ROWS rows per KV head in each K/V buffer. */
enum { L = 2, H = 4, HKV = 2, D = 8, ROWS = 40, PROMPT = 24, STEPS = 20 };

/* Per layer: f16 K and V, [KV head][row][dim], ROWS rows per KV head. */
extern uint16_t *k_cache[L], *v_cache[L];
/* One call's logits, [head][row][slot]; logits_bytes bytes. */
extern float *logits;
extern const size_t logits_bytes;

/* Allocates the buffers; 0 on failure. */
int model_init(void);

/* The host's attention for layer l: writes the K/V rows of n_rows new
 * tokens at rows n_old .. n_old + n_rows - 1 of every KV head (each row
 * tagged with its token's position), then their logits over the
 * n_old + n_rows slots, causal. */
void attention(int l, uint32_t n_old, uint32_t n_rows, float *out);

/* After a compaction of layer l: every kept row of every KV head holds
 * the token kf_slot_positions() reports, and no more than k rows are
 * held. 1 if so, else 0 with a message. */
int model_check(const kf_cache *kc, int l);

/* Frees the buffers; prints a summary. Returns the exit status. */
int model_finish(int failed);

#ifdef __cplusplus
}
#endif

#endif
