/* Glue between the example engine's per-layer hook and libkeyformer.
 *
 * For each layer of each block the engine reports its attention logits; the
 * glue hands them to the library and, once the block ends the engine's call
 * (the whole prompt, or one decode token), lets the library select and
 * compact the layer's K/V buffers in place. Only the public API of
 * keyformer.h is used.
 *
 * Two ways to hand the logits over, with the same results bit for bit:
 * - whole layer: engine_keyformer_hook alone calls kf_observe_logits() after
 *   the layer's attention;
 * - one KV head at a time: with engine_keyformer_kv_head_hooks() installed
 *   too, kf_observe_begin() runs before the layer's attention, each KV
 *   head's logits go to kf_observe_kv_head() from the attention thread that
 *   finished them, and engine_keyformer_hook calls kf_observe_end() instead
 *   (doc/recipes.md, "Logits one KV head at a time"). */
#ifndef ENGINE_KEYFORMER_H
#define ENGINE_KEYFORMER_H

#include <stdatomic.h>
#include <stdbool.h>

#include <keyformer.h>

#include "forward.h"

typedef struct engine_keyformer {
    kf_cache *cache;
    /* Set when the hook fails, for the caller's message. */
    int failed_status;        /* a KF_E* code */
    const char *failed_call;  /* name of the library call */
    int failed_layer;
    /* Internal: a kf_observe_begin round is open, and how many of its
     * KV heads failed (the first one is the recorded failure). */
    bool round_open;
    atomic_int kv_head_failures;
} engine_keyformer;

/* An eng_layer_hook; user_data is an engine_keyformer. Returns the slots the
 * layer keeps, or -1 after recording the failure. */
int engine_keyformer_hook(void *user_data, const eng_layer_event *event);

/* The per-KV-head hooks (begin: kf_observe_begin; kv_head:
 * kf_observe_kv_head) for eng_state_options.kv_head_hooks or
 * eng_state_set_kv_head_hooks, with engine_keyformer_hook as the layer hook.
 * glue must outlive their use. */
eng_kv_head_hooks engine_keyformer_kv_head_hooks(engine_keyformer *glue);

#endif
