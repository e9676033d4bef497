/* Copyright (c) 2026 the libkeyformer developers. BSD-2-Clause, see COPYING. */
/* kf_llama_host: libkeyformer inside a llama.cpp program.
 *
 * The adapter watches llama.cpp's graph through the eval callback, hands
 * each layer's RoPE'd queries and keys to kf_observe_qk (granularity
 * UNIFORM: one set of positions for the whole model, which is what
 * llama.cpp's position cells can drop), and after each decode removes the
 * positions the library evicted from llama.cpp's memory with one seq_rm per
 * run of consecutive positions. The cells that stay keep their positions
 * and their rotated keys, so RoPE stays right and nothing is recomputed.
 *
 *     kf_llama_host_params p;
 *     kf_llama_host_params_default(&p);     // then p.library.policy, budget, ...
 *     p.capacity = n_prompt + 1;            // >= prompt, >= budget + 1
 *     kf_llama_host *h;
 *     if (kf_llama_host_create(&h, model, &p)) { puts(kf_llama_host_message(h)); ... }
 *     struct llama_context_params cp = llama_context_default_params();
 *     kf_llama_host_attach(h, &cp);          // installs cb_eval
 *     struct llama_context *ctx = llama_init_from_model(model, cp);
 *     kf_llama_host_decode(h, ctx, prompt, n_prompt, false);   // the whole prompt at once
 *     ... sample from llama_get_logits_ith(ctx, -1) ...
 *     kf_llama_host_decode(h, ctx, &token, 1, false);          // each step
 *
 * Calls happen on one thread; the library runs single-threaded inside the
 * callback (ggml's thread pool owns the cores). CPU backend only: the
 * callback reads Q and K with ggml_backend_tensor_get, which works for any
 * backend, but llama.cpp's own memory is what seq_rm edits, and only the
 * CPU path has been tested.
 *
 * Refused, with a message naming the reason (kf_llama_host_message):
 * recurrent and hybrid models, sliding-window attention, models with
 * softcapped or QK-normalised attention, and after the first decode,
 * models whose graph has no "Qcur-<layer>" / "Kcur-<layer>" RoPE nodes; a
 * KEYFORMER or H2O budget whose recent window is empty (it could evict the
 * newest position, which llama.cpp then refuses to continue from). */
#ifndef KF_LLAMA_HOST_H
#define KF_LLAMA_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <keyformer.h>
#include <llama.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kf_llama_host kf_llama_host;

/* Status codes of the adapter (the message says more). */
enum {
    KF_LLAMA_OK = 0,
    KF_LLAMA_EREFUSED = -1, /* the model or settings cannot be run right */
    KF_LLAMA_ENODES = -2,   /* Q/K nodes missing or shaped unexpectedly */
    KF_LLAMA_ELIBRARY = -3, /* a libkeyformer call failed */
    KF_LLAMA_EDECODE = -4,  /* llama_decode failed */
    KF_LLAMA_EMEMORY = -5,  /* llama.cpp refused a seq_rm */
    KF_LLAMA_ENOMEM = -6,
    KF_LLAMA_EINVAL = -7,   /* bad argument or call order */
    KF_LLAMA_ECHECK = -8    /* kf_llama_host_check_cells: cells differ */
};

typedef struct kf_llama_host_params {
    /* The library's settings: policy, budget, recent window, rule, tau,
     * sinks, seed. The adapter sets the shape (n_layers, n_heads,
     * n_kv_heads, head_dim from the model), granularity UNIFORM,
     * n_threads 1, evict_interval 1 and capacity (below). */
    kf_config library;
    /* Most positions the sequence holds at once: at least the prompt and
     * the budget + 1. The host K copy holds this many rows per layer. */
    uint32_t capacity;
    /* The sequence this adapter manages (0). */
    int32_t seq_id;
    /* Node names to look for ("Qcur", "Kcur"); other values exist for the
     * test of the missing-node refusal. */
    const char *q_name;
    const char *k_name;
} kf_llama_host_params;

/* kf_config_default() with KF_GRANULARITY_UNIFORM, capacity 0, seq 0. */
void kf_llama_host_params_default(kf_llama_host_params *p);

/* Checks the model (refusals above) and allocates the library cache and the
 * K copy. On failure *out still receives a handle that only carries the
 * message (kf_llama_host_message), or NULL when even that could not be
 * allocated; destroy it either way. */
int kf_llama_host_create(kf_llama_host **out, const struct llama_model *model,
                         const kf_llama_host_params *params);

void kf_llama_host_destroy(kf_llama_host **h);

/* Installs the eval callback in the context parameters, before
 * llama_init_from_model. The callback ignores every graph evaluation that
 * does not come from kf_llama_host_decode (llama.cpp's or the host's own
 * warm-up runs). */
void kf_llama_host_attach(kf_llama_host *h, struct llama_context_params *cp);

/* Decodes n tokens of the sequence at the next positions (the first call is
 * the prompt, all of it: the ratio budget is taken from it), observing
 * every layer; then selects, removes the evicted positions from llama.cpp's
 * memory and compacts the K copy. Logits of every token when all_logits,
 * else of the last one (llama_get_logits_ith(ctx, -1)). Returns KF_LLAMA_OK
 * or a negative status; after a failure the adapter refuses further calls. */
int kf_llama_host_decode(kf_llama_host *h, struct llama_context *ctx, const llama_token *tokens,
                         int32_t n, bool all_logits);

/* Compares llama.cpp's cells for the sequence with the library's kept
 * positions, exactly (see the .c file for how it reads the cells). */
int kf_llama_host_check_cells(kf_llama_host *h, struct llama_context *ctx);

/* The last message ("" when none). */
const char *kf_llama_host_message(const kf_llama_host *h);

/* The library cache (queries only: kf_slot_count, kf_budget, ...). */
const kf_cache *kf_llama_host_cache(const kf_llama_host *h);

/* Positions held now (= llama.cpp's cells for the sequence) and the next
 * position to decode. */
uint32_t kf_llama_host_kept(const kf_llama_host *h);
int32_t kf_llama_host_next_position(const kf_llama_host *h);

/* Bytes copied out of the graph so far (Q and K), and the time spent in the
 * callback and in select + seq_rm + compact, in seconds. */
void kf_llama_host_costs(const kf_llama_host *h, uint64_t *bytes_copied, double *callback_s,
                         double *evict_s);

/* Graph stops per layer and ubatch: 2 (at Qcur and Kcur) for the first
 * decode, 1 (at Kcur, reading Qcur's memory there) once the first decode
 * showed that nothing reads Qcur before Kcur (see the .c file).
 * KF_LLAMA_TWO_STOPS=1 in the environment keeps 2. */
int kf_llama_host_stops_per_layer(const kf_llama_host *h);

/* The model's KV heads (llama_model_n_head_kv where the API has it). */
int32_t kf_llama_model_n_head_kv(const struct llama_model *model);

/* Which memory call this build uses: "llama_memory_seq_rm" or
 * "llama_kv_cache_seq_rm". */
const char *kf_llama_host_api(void);

#ifdef __cplusplus
}
#endif

#endif
