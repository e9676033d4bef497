/* The transformer forward pass over a slot-based KV cache.
 *
 * eng_forward() runs a list of tokens: a prompt is processed in blocks of up
 * to max_block_rows rows with matrix-matrix products; a single token is a
 * decode step with matrix-vector products. Each token is placed at its true
 * position (the count of tokens seen so far), which keeps growing even when
 * a hook has removed slots from the cache.
 *
 * The cache of each layer is [n_kv_heads][capacity][head_size] fp32 for keys
 * (rotated by RoPE at their true position when written) and for values, plus
 * the layer's slot count, shared by its KV heads. New tokens are appended
 * after the layer's current slots.
 *
 * The hook: for every layer of every block, after the attention logits of the
 * block's rows and the attention output are computed, the engine calls the
 * hook with those logits and the layer's K/V buffers. The hook may compact
 * the buffers in place and returns how many slots the layer keeps. Without a
 * hook the cache is never compacted, so slots are positions and the capacity
 * bounds the sequence length.
 *
 * Hooks per KV head (optional): for hosts that hand logits over as the
 * attention produces them, the begin hook runs before each layer's
 * attention of a block, and the KV-head hook runs once per KV head from the
 * attention's own threads, as soon as every query head of that KV head has
 * its logits (concurrently for different KV heads). The layer hook, if any,
 * runs after the attention as before.
 *
 * Threads: the engine parallelises matrix products and attention with
 * OpenMP and runs OpenBLAS single-threaded inside those threads
 * (eng_state_create sets OpenBLAS to one thread for the whole process). */
#ifndef ENG_FORWARD_H
#define ENG_FORWARD_H

#include <stdbool.h>
#include <stddef.h>

#include "model.h"
#include "status.h"

typedef struct eng_state eng_state;

typedef struct eng_layer_event {
    eng_state *state;     /* the engine, for hooks that act on other layers */
    int layer;
    int n_rows;           /* query rows of this block */
    int first_position;   /* true position of row 0 */
    int n_slots;          /* slots attended; the block's rows are the last n_rows */
    bool more_rows_follow; /* further blocks of the same eng_forward call follow */
    /* [n_heads][n_rows][n_slots], q·k/sqrt(head_size), -INFINITY where causally
     * masked. Valid only during the call. */
    const float *logits;
    float *keys;          /* [n_kv_heads][capacity][head_size] */
    float *values;        /* same layout */
    int capacity;
    int n_heads;
    int n_kv_heads;
    int head_size;
} eng_layer_event;

/* Returns the number of slots the layer keeps (0..n_slots, the kept slots
 * moved to the front of every KV head), or a negative value to abort. */
typedef int (*eng_layer_hook)(void *user_data, const eng_layer_event *event);

/* One KV head's share of a block's logits, for an eng_kv_head_hook. */
typedef struct eng_kv_head_event {
    int layer;
    int kv_head;
    int n_rows;           /* query rows of this block */
    int n_slots;          /* as eng_layer_event: the block's rows are the last n_rows */
    int group_size;       /* query heads per KV head */
    /* [group_size][n_rows][n_slots]: query heads kv_head * group_size + m,
     * laid out as eng_layer_event.logits. Valid only during the call. */
    const float *logits;
} eng_kv_head_event;

/* Called from an attention thread; returns 0, or negative to abort. */
typedef int (*eng_kv_head_hook)(void *user_data, const eng_kv_head_event *event);

typedef struct eng_kv_head_hooks {
    /* Before each layer's attention of a block; the event's logits are NULL
     * and its n_slots already count the block's rows. 0, or negative to
     * abort (the attention does not run). */
    eng_layer_hook begin;
    /* Once per KV head of the block, from the attention's threads. After a
     * failure the attention still completes, the layer hook still runs (to
     * close what begin opened) and eng_forward returns ENG_EHOOK. */
    eng_kv_head_hook kv_head;
    void *user_data;
} eng_kv_head_hooks;

typedef struct eng_state_options {
    int kv_capacity;     /* slots per layer and KV head; 0 = the model's seq_len */
    int max_block_rows;  /* rows per prefill block; 0 = chosen from the capacity */
    int n_threads;       /* OpenMP threads; 0 = OMP_NUM_THREADS or the CPUs;
                            eng_thread_count() clamps it (threads.h) and
                            the first clamp of a process is told on stderr */
    eng_layer_hook hook; /* NULL = full cache */
    void *hook_user_data;
    eng_kv_head_hooks kv_head_hooks; /* all NULL = none */
} eng_state_options;

int eng_state_create(eng_state **out, const eng_model *model,
                     const eng_state_options *options, eng_error *err);

/* Frees the state; accepts NULL and *state == NULL, and sets *state = NULL. */
void eng_state_destroy(eng_state **state);

/* Forgets every token, so the next call starts at position 0. */
void eng_state_reset(eng_state *state);

/* Makes dst continue src's sequence: position, slot counts and the K/V of
 * every occupied slot (the first n_slots rows of each layer and KV head).
 * For branching after a shared prefill (beams, several samples); the
 * host's library cache, if any, is copied separately
 * (kf_cache_copy_state). dst keeps its own hook, threads and scratch, and
 * must share src's model and capacity. Nothing is allocated. Returns
 * ENG_OK, or ENG_EINVAL (the same state, another model or capacity),
 * leaving dst unchanged. */
int eng_state_copy(eng_state *dst, const eng_state *src, eng_error *err);

/* Replaces the hook (for example once a library cache exists). */
void eng_state_set_hook(eng_state *state, eng_layer_hook hook, void *user_data);
/* Replaces the per-KV-head hooks; NULL removes them. */
void eng_state_set_kv_head_hooks(eng_state *state, const eng_kv_head_hooks *hooks);

/* Runs n_tokens tokens. If logits is not NULL, writes the output logits of
 * the last n_logit_rows tokens to it, [n_logit_rows][vocab_size].
 * Returns ENG_EFULL, leaving the state unchanged, when a layer has no free
 * slot; after ENG_EHOOK the state is inconsistent and must be reset. */
int eng_forward(eng_state *state, const int *tokens, int n_tokens, float *logits,
                int n_logit_rows, eng_error *err);

int eng_state_position(const eng_state *state);      /* tokens seen so far */
int eng_state_capacity(const eng_state *state);      /* slots per layer */
int eng_state_max_block_rows(const eng_state *state);
int eng_state_slot_count(const eng_state *state, int layer);
/* Keys and values of a layer, [n_kv_heads][capacity][head_size] each. */
void eng_state_layer_kv(eng_state *state, int layer, float **keys, float **values);
/* For hooks that select over every layer at once (one set of positions for
 * the whole model): the layer now holds its first n_slots slots, n_slots no
 * more than it held. Returns 0, or -1 for a bad layer or count. */
int eng_state_shrink_layer(eng_state *state, int layer, int n_slots);
/* Slots the attention must skip (holes of per-head budgets, whose rows
 * hold no token): [n_kv_heads][capacity] bytes, 1 = skip, for the caller
 * to write; slots appended later must read 0. From this call until
 * eng_state_reset the layer's attention reads it (a logit of -inf for
 * its old slots). NULL for a layer out of range. */
unsigned char *eng_state_layer_mask(eng_state *state, int layer);
/* Bytes of K and V held in occupied slots, over all layers. */
size_t eng_state_kv_bytes_in_use(const eng_state *state);
/* Bytes a never-compacted cache would need for every token seen. */
size_t eng_state_kv_bytes_full(const eng_state *state);

#endif
