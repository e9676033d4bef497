/* Glue between the example engine's per-layer hook and libkeyformer.
 *
 * For each layer of each block the engine reports its attention logits; the
 * glue hands them to kf_observe_logits() and, once the block ends the
 * engine's call (the whole prompt, or one decode token), lets the library
 * select and compact the layer's K/V buffers in place. Only the public API
 * of keyformer.h is used. */
#ifndef ENGINE_KEYFORMER_H
#define ENGINE_KEYFORMER_H

#include <keyformer.h>

#include "forward.h"

typedef struct engine_keyformer {
    kf_cache *cache;
    /* Set when the hook fails, for the caller's message. */
    int failed_status;        /* a KF_E* code */
    const char *failed_call;  /* name of the library call */
    int failed_layer;
} engine_keyformer;

/* An eng_layer_hook; user_data is an engine_keyformer. Returns the slots the
 * layer keeps, or -1 after recording the failure. */
int engine_keyformer_hook(void *user_data, const eng_layer_event *event);

#endif
