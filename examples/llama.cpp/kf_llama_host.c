/* Copyright (c) 2026 the libkeyformer developers. BSD-2-Clause, see COPYING. */
/* kf_llama_host: see kf_llama_host.h. What this relies on in llama.cpp
 * (checked against its source, commit de3ff815ea7d, and the 2025-02 API):
 *
 * - ggml_backend_sched calls cb_eval(t, true, ud) for each node of a split
 *   in graph order, computes up to the first node we accept, then calls
 *   cb_eval(t, false, ud): t's data is valid during that call only. A false
 *   return then stops the graph, so the data call always returns true.
 *   Calls come on the thread that called llama_decode, one at a time.
 * - The llama-family graphs name each layer's RoPE output "Qcur-<il>" and
 *   "Kcur-<il>" ([head_dim, n_head(_kv), n_tokens], f32); the plain matmul
 *   outputs carry the same names, so the op (GGML_OP_ROPE) tells them apart.
 *   With flash attention on or off these nodes are the same.
 * - The attention scale is 1/sqrt(head_dim) unless the model sets
 *   "<arch>.attention.scale"; such models are refused, as are softcapped
 *   ones ("<arch>.attn_logit_softcapping") and graphs with a "Qcur_normed"
 *   node (QK-norm after RoPE): the logits we would compute differ there.
 * - A ubatch split of a long batch is one graph evaluation per ubatch, so
 *   each layer's rows arrive in several observe calls, in order.
 * - llama_memory_seq_rm(mem, seq, p0, p1) removes [p0, p1) and returns
 *   false only for a partial removal that the memory cannot do (recurrent);
 *   a later batch must start at the sequence's largest position + 1, which
 *   the recent window (>= 1) keeps.
 */
#include "kf_llama_host.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ggml-backend.h>
#include <ggml.h>

#include "kf_llama_config.h"

struct kf_llama_host {
    int status; /* first failure, sticky */
    char message[768];

    kf_cache *cache;
    kf_config cfg;
    int32_t seq_id;
    int n_layers, n_head, n_head_kv, head_dim;
    uint32_t capacity;
    char q_name[32], k_name[32], q_normed[48];
    size_t q_len, k_len; /* strlen of the names */

    float *k_copy;       /* [layer][slot][kv_head][head_dim] */
    size_t k_layer_floats;
    float *q_buf;        /* one ubatch of one layer's queries */
    size_t q_buf_floats;

    /* during one kf_llama_host_decode */
    bool active;
    int q_layer;         /* layer whose queries wait in q_buf, or -1 */
    uint32_t q_rows;
    uint32_t *k_rows;    /* per layer: rows appended to k_copy, not yet observed */
    uint32_t *decoded;   /* per layer: rows observed during this decode */
    bool saw_normed;

    /* One stop per layer instead of two. Every graph stop is a separate
     * compute call (a thread-pool barrier), so the adapter's cost at one
     * token is mostly its stops. When a layer's Qcur node comes before its
     * Kcur node and nothing reads Qcur in between, Qcur's memory still
     * holds it when Kcur is computed (ggml's allocator reuses a tensor's
     * memory only after its consumers ran), and both are read at the Kcur
     * stop. The first decode stops at both and checks that order for every
     * layer (pair_checked); later decodes stop at Kcur only (paired), and
     * should a consumer of Qcur turn up before Kcur after all, they stop at
     * that consumer and read Q there, unless it computes in place over Q. */
    bool paired;
    bool pair_broken;                /* the first decode saw another order */
    struct ggml_tensor *q_node;      /* Qcur seen, not yet read */
    int q_node_layer;

    bool prompt_done;
    int32_t next_pos;
    uint32_t kept;
    struct llama_batch batch;
    int32_t batch_cap;

    uint64_t bytes_copied;
    double callback_s, evict_s;
};

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int fail(kf_llama_host *h, int status, const char *format, ...)
{
    if (h->status == KF_LLAMA_OK) { /* keep the first reason */
        va_list ap;
        va_start(ap, format);
        vsnprintf(h->message, sizeof h->message, format, ap);
        va_end(ap);
        h->status = status;
    }
    return status;
}

int kf_llama_host_stops_per_layer(const kf_llama_host *h) { return h && h->paired ? 1 : 2; }

const char *kf_llama_host_api(void)
{
#if KF_LLAMA_MEMORY_API
    return "llama_memory_seq_rm";
#else
    return "llama_kv_cache_seq_rm";
#endif
}

void kf_llama_host_params_default(kf_llama_host_params *p)
{
    memset(p, 0, sizeof *p);
    kf_config_default(&p->library);
    p->library.granularity = KF_GRANULARITY_UNIFORM;
    p->q_name = "Qcur";
    p->k_name = "Kcur";
}

/* A metadata value of the model as a number; false when the key is absent. */
static bool meta_number(const struct llama_model *model, const char *arch, const char *suffix,
                        double *value)
{
    char key[160], buf[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    const int32_t n = llama_model_meta_val_str(model, key, buf, sizeof buf);
    if (n < 0)
        return false;
    char *end;
    *value = strtod(buf, &end);
    return end != buf;
}

int32_t kf_llama_model_n_head_kv(const struct llama_model *model)
{
#if KF_LLAMA_HAVE_N_HEAD_KV
    return llama_model_n_head_kv(model);
#else
    /* the 2025-02 API has no call for it: the GGUF key, else MHA */
    char arch[64];
    double v;
    if (llama_model_meta_val_str(model, "general.architecture", arch, sizeof arch) >= 0 &&
        meta_number(model, arch, "attention.head_count_kv", &v) && v >= 1 && v <= 65536)
        return (int32_t)v;
    return llama_model_n_head(model);
#endif
}

/* The refusals that can be decided from the model alone. */
static int check_model(kf_llama_host *h, const struct llama_model *model, char *arch,
                       size_t arch_size)
{
    if (llama_model_meta_val_str(model, "general.architecture", arch, arch_size) < 0)
        snprintf(arch, arch_size, "unknown");
    if (llama_model_is_recurrent(model))
        return fail(h, KF_LLAMA_EREFUSED,
                    "refused: %s is a recurrent model; its state is not a cache of positions, "
                    "and llama.cpp cannot remove part of a sequence from it", arch);
#if KF_LLAMA_HAVE_IS_HYBRID
    if (llama_model_is_hybrid(model))
        return fail(h, KF_LLAMA_EREFUSED,
                    "refused: %s is a hybrid (attention + recurrent) model; its recurrent "
                    "layers cannot drop positions", arch);
#endif
    double v;
    int32_t n_swa = 0;
#if KF_LLAMA_HAVE_N_SWA
    n_swa = llama_model_n_swa(model);
#endif
    if (n_swa > 0 || (meta_number(model, arch, "attention.sliding_window", &v) && v > 0))
        return fail(h, KF_LLAMA_EREFUSED,
                    "refused: %s uses sliding-window attention (window %g); one selection for "
                    "the whole model would be wrong for its windowed layers",
                    arch, n_swa > 0 ? (double)n_swa : v);
    if (meta_number(model, arch, "attention.scale", &v) && v != 0.0)
        return fail(h, KF_LLAMA_EREFUSED,
                    "refused: %s sets its own attention scale (%s.attention.scale = %g); the "
                    "adapter scores with 1/sqrt(head_dim)", arch, arch, v);
    if (meta_number(model, arch, "attn_logit_softcapping", &v) && v != 0.0)
        return fail(h, KF_LLAMA_EREFUSED,
                    "refused: %s softcaps its attention logits (%s.attn_logit_softcapping = %g); "
                    "the adapter's scores would differ from the model's attention",
                    arch, arch, v);
    return KF_LLAMA_OK;
}

int kf_llama_host_create(kf_llama_host **out, const struct llama_model *model,
                         const kf_llama_host_params *params)
{
    if (!out)
        return KF_LLAMA_EINVAL;
    kf_llama_host *h = calloc(1, sizeof *h);
    *out = h;
    if (!h)
        return KF_LLAMA_ENOMEM;
    h->q_layer = -1;
    if (!model || !params)
        return fail(h, KF_LLAMA_EINVAL, "kf_llama_host_create: NULL model or parameters");
    const char *qn = params->q_name ? params->q_name : "Qcur";
    const char *kn = params->k_name ? params->k_name : "Kcur";
    if (strlen(qn) + 1 > sizeof h->q_name || strlen(kn) + 1 > sizeof h->k_name || !*qn || !*kn)
        return fail(h, KF_LLAMA_EINVAL, "node names must have 1 to %zu characters",
                    sizeof h->q_name - 1);
    snprintf(h->q_name, sizeof h->q_name, "%s", qn);
    snprintf(h->k_name, sizeof h->k_name, "%s", kn);
    snprintf(h->q_normed, sizeof h->q_normed, "%s_normed-", qn);
    h->q_len = strlen(h->q_name);
    h->k_len = strlen(h->k_name);

    char arch[64];
    int rc = check_model(h, model, arch, sizeof arch);
    if (rc)
        return rc;

    const int32_t n_layers = llama_model_n_layer(model);
    const int32_t n_head = llama_model_n_head(model);
    const int32_t n_head_kv = kf_llama_model_n_head_kv(model);
    const int32_t n_embd = llama_model_n_embd(model);
    double key_length = 0;
    int32_t head_dim = n_head > 0 ? n_embd / n_head : 0;
    if (meta_number(model, arch, "attention.key_length", &key_length) && key_length >= 1 &&
        key_length <= 65536)
        head_dim = (int32_t)key_length;
    if (n_layers < 1 || n_head < 1 || n_head_kv < 1 || head_dim < 1 || n_head % n_head_kv)
        return fail(h, KF_LLAMA_EREFUSED,
                    "refused: %s has a shape the adapter cannot use (%d layers, %d heads, %d KV "
                    "heads, head size %d)", arch, n_layers, n_head, n_head_kv, head_dim);
    h->n_layers = n_layers;
    h->n_head = n_head;
    h->n_head_kv = n_head_kv;
    h->head_dim = head_dim;
    h->seq_id = params->seq_id;

    if (params->capacity < 2)
        return fail(h, KF_LLAMA_EINVAL, "capacity %u: the adapter needs at least 2 positions",
                    params->capacity);
    h->capacity = params->capacity;
    h->cfg = params->library;
    h->cfg.n_layers = (uint32_t)n_layers;
    h->cfg.n_heads = (uint32_t)n_head;
    h->cfg.n_kv_heads = (uint32_t)n_head_kv;
    h->cfg.head_dim = (uint32_t)head_dim;
    h->cfg.capacity = params->capacity;
    h->cfg.granularity = KF_GRANULARITY_UNIFORM;
    h->cfg.n_threads = 1;
    if (h->cfg.evict_interval > 1)
        return fail(h, KF_LLAMA_EINVAL, "the adapter evicts every step (evict_interval 1)");
    h->cfg.evict_interval = 1;
    if (h->cfg.head_budget != KF_HEAD_BUDGET_EVEN)
        return fail(h, KF_LLAMA_EINVAL, "per-KV-head budgets (--head-budget adaptive) need a "
                    "cache per KV head; llama.cpp holds one cell per position for all heads");
    if (h->cfg.policy == KF_POLICY_FULL) { /* FULL takes no budget */
        h->cfg.budget_tokens = 0;
        h->cfg.budget_ratio = 0;
    }
    rc = kf_cache_create(&h->cache, &h->cfg);
    if (rc != KF_OK)
        return fail(h, KF_LLAMA_ELIBRARY, "kf_cache_create: %s (capacity %u, budget %s %g)",
                    kf_strerror(rc), params->capacity,
                    h->cfg.budget_tokens ? "tokens" : "ratio",
                    h->cfg.budget_tokens ? (double)h->cfg.budget_tokens : h->cfg.budget_ratio);

    const size_t row = (size_t)n_head_kv * (size_t)head_dim;
    if (row > SIZE_MAX / sizeof(float) / params->capacity / (size_t)n_layers)
        return fail(h, KF_LLAMA_ENOMEM, "the K copy's size overflows");
    h->k_layer_floats = row * params->capacity;
    h->k_copy = malloc(h->k_layer_floats * (size_t)n_layers * sizeof(float));
    h->k_rows = calloc((size_t)n_layers, sizeof *h->k_rows);
    h->decoded = calloc((size_t)n_layers, sizeof *h->decoded);
    if (!h->k_copy || !h->k_rows || !h->decoded)
        return fail(h, KF_LLAMA_ENOMEM,
                    "out of memory for the K copy (%d layers x %u positions x %zu floats)",
                    n_layers, params->capacity, row);
    return KF_LLAMA_OK;
}

void kf_llama_host_destroy(kf_llama_host **hp)
{
    if (!hp || !*hp)
        return;
    kf_llama_host *h = *hp;
    kf_cache_destroy(&h->cache);
    free(h->k_copy);
    free(h->q_buf);
    free(h->k_rows);
    free(h->decoded);
    if (h->batch_cap > 0)
        llama_batch_free(h->batch);
    free(h);
    *hp = NULL;
}

const char *kf_llama_host_message(const kf_llama_host *h) { return h ? h->message : "out of memory"; }
const kf_cache *kf_llama_host_cache(const kf_llama_host *h) { return h ? h->cache : NULL; }
uint32_t kf_llama_host_kept(const kf_llama_host *h) { return h ? h->kept : 0; }
int32_t kf_llama_host_next_position(const kf_llama_host *h) { return h ? h->next_pos : 0; }

void kf_llama_host_costs(const kf_llama_host *h, uint64_t *bytes, double *callback_s,
                         double *evict_s)
{
    if (bytes)
        *bytes = h ? h->bytes_copied : 0;
    if (callback_s)
        *callback_s = h ? h->callback_s : 0;
    if (evict_s)
        *evict_s = h ? h->evict_s : 0;
}

/* ---- the eval callback ---- */

/* The layer of "<prefix>-<digits>", or -1. */
static int layer_of(const char *name, const char *prefix, size_t len, int n_layers)
{
    if (strncmp(name, prefix, len) || name[len] != '-')
        return -1;
    const char *p = name + len + 1;
    if (*p < '0' || *p > '9')
        return -1;
    long v = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        v = v * 10 + (*p - '0');
        if (v >= n_layers)
            return -1;
    }
    return *p ? -1 : (int)v;
}

static bool wanted(const kf_llama_host *h, const struct ggml_tensor *t, bool *is_q, int *layer)
{
    if (t->op != GGML_OP_ROPE)
        return false;
    int l = layer_of(t->name, h->q_name, h->q_len, h->n_layers);
    if (l >= 0) {
        *is_q = true;
        *layer = l;
        return true;
    }
    l = layer_of(t->name, h->k_name, h->k_len, h->n_layers);
    if (l >= 0) {
        *is_q = false;
        *layer = l;
        return true;
    }
    return false;
}

static int observe_layer(kf_llama_host *h, int layer)
{
    uint32_t slots = 0;
    kf_slot_count(h->cache, layer, 0, &slots);
    const uint32_t rows = h->q_rows;
    const size_t row = (size_t)h->n_head_kv * (size_t)h->head_dim;
    const kf_query_view q = {
        .data = h->q_buf, .n_rows = rows,
        .row_stride = (size_t)h->n_head * (size_t)h->head_dim,
        .head_stride = (size_t)h->head_dim, .scale = 0.0f, .flags = KF_LOGITS_CAUSAL,
        .bytes = (size_t)rows * (size_t)h->n_head * (size_t)h->head_dim * sizeof(float)};
    const kf_kv_view k = {
        .data = h->k_copy + (size_t)layer * h->k_layer_floats, .dtype = KF_DTYPE_F32,
        .n_slots = slots + rows, .token_stride = row, .head_stride = (size_t)h->head_dim,
        .bytes = h->k_layer_floats * sizeof(float)};
    const int rc = kf_observe_qk(h->cache, layer, &q, &k);
    if (rc != KF_OK)
        return fail(h, KF_LLAMA_ELIBRARY, "kf_observe_qk failed on layer %d (%u rows onto %u "
                    "slots): %s", layer, rows, slots, kf_strerror(rc));
    h->decoded[layer] += rows;
    h->k_rows[layer] = 0;
    h->q_layer = -1;
    h->q_rows = 0;
    return KF_LLAMA_OK;
}

/* The refusal of a graph without the nodes the adapter reads. */
static int missing_nodes(kf_llama_host *h, int layer, int n)
{
    return fail(h, KF_LLAMA_ENODES,
                "refused: layer %d's queries and keys were not found (%u of %d rows seen%s): the "
                "adapter looks for the RoPE nodes named \"%s-<layer>\" and \"%s-<layer>\" "
                "(f32 [%d, heads, tokens]) for layers 0 to %d, which llama.cpp's llama-family "
                "graphs have; this model's graph does not", layer, h->decoded[layer], n,
                n == 0 ? ", keys without queries" : "",
                h->q_name, h->k_name, h->head_dim, h->n_layers - 1);
}

/* Copies a node's data; checks its type and shape first. */
static int take_node(kf_llama_host *h, struct ggml_tensor *t, bool is_q, int layer)
{
    const int64_t heads = is_q ? h->n_head : h->n_head_kv;
    if (t->type != GGML_TYPE_F32 || !ggml_is_contiguous(t) || t->ne[0] != h->head_dim ||
        t->ne[1] != heads || t->ne[3] != 1 || t->ne[2] < 1)
        return fail(h, KF_LLAMA_ENODES,
                    "node %s is not the expected contiguous f32 [%d, %" PRId64 ", n_tokens] "
                    "tensor (type %s, shape [%" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64
                    "]); the adapter cannot read this model's queries and keys",
                    t->name, h->head_dim, heads, ggml_type_name(t->type), t->ne[0], t->ne[1],
                    t->ne[2], t->ne[3]);
    const uint32_t rows = (uint32_t)t->ne[2];
    const size_t bytes = ggml_nbytes(t);
    if (is_q) {
        if (h->q_layer >= 0)
            return fail(h, KF_LLAMA_ENODES, "%s arrived while layer %d's keys were still "
                        "missing: unexpected graph order", t->name, h->q_layer);
        if ((size_t)rows * (size_t)h->n_head * (size_t)h->head_dim > h->q_buf_floats)
            return fail(h, KF_LLAMA_ENODES, "%s has %u rows, more than the ubatch", t->name,
                        rows);
        ggml_backend_tensor_get(t, h->q_buf, 0, bytes);
        h->q_layer = layer;
        h->q_rows = rows;
    } else {
        uint32_t slots = 0;
        kf_slot_count(h->cache, layer, 0, &slots);
        if (h->k_rows[layer] != 0) /* the last ubatch's keys never met their queries */
            return missing_nodes(h, layer, 0);
        if ((uint64_t)slots + rows > h->capacity)
            return fail(h, KF_LLAMA_EINVAL, "layer %d would hold %u + %u positions, more than "
                        "the capacity %u", layer, slots, rows, h->capacity);
        const size_t row = (size_t)h->n_head_kv * (size_t)h->head_dim;
        ggml_backend_tensor_get(t, h->k_copy + (size_t)layer * h->k_layer_floats + slots * row,
                                0, bytes);
        h->k_rows[layer] = rows;
    }
    h->bytes_copied += bytes;
    if (h->q_layer == layer && h->k_rows[layer] > 0) {
        if (h->k_rows[layer] != h->q_rows)
            return fail(h, KF_LLAMA_ENODES, "layer %d: %u query rows but %u key rows", layer,
                        h->q_rows, h->k_rows[layer]);
        return observe_layer(h, layer);
    }
    return KF_LLAMA_OK;
}

/* Whether node t computes from q (directly or through views of it). */
static bool reads(const struct ggml_tensor *t, const struct ggml_tensor *q)
{
    if (t->op == GGML_OP_VIEW || t->op == GGML_OP_PERMUTE || t->op == GGML_OP_RESHAPE ||
        t->op == GGML_OP_TRANSPOSE || t->op == GGML_OP_NONE)
        return false; /* computes nothing; its consumers are checked */
    for (int i = 0; i < GGML_MAX_SRC; i++) {
        const struct ggml_tensor *s = t->src[i];
        if (s && (s == q || s->view_src == q))
            return true;
    }
    return false;
}

static bool overlaps(const struct ggml_tensor *a, const struct ggml_tensor *b)
{
    const char *pa = a->data, *pb = b->data;
    return pa && pb && pa < pb + ggml_nbytes(b) && pb < pa + ggml_nbytes(a);
}

/* ask: which nodes to stop at. */
static bool ask_node(kf_llama_host *h, struct ggml_tensor *t)
{
    if (!strncmp(t->name, h->q_normed, strlen(h->q_normed)))
        h->saw_normed = true;
    bool is_q = false;
    int layer = -1;
    if (wanted(h, t, &is_q, &layer)) {
        if (is_q) {
            if (h->q_node && !h->paired)
                h->pair_broken = true; /* two Qcur before a Kcur */
            h->q_node = t;
            h->q_node_layer = layer;
            return !h->paired;
        }
        if (!h->paired && (!h->q_node || h->q_node_layer != layer))
            h->pair_broken = true; /* Kcur before its Qcur */
        return true;
    }
    if (h->q_node && reads(t, h->q_node)) {
        if (!h->paired) {
            h->pair_broken = true;
            h->q_node = NULL;
            return false;
        }
        return true; /* read Q here, before anything can reuse its memory */
    }
    return false;
}

static bool eval_callback(struct ggml_tensor *t, bool ask, void *user_data)
{
    kf_llama_host *h = user_data;
    if (!h->active || h->status != KF_LLAMA_OK)
        return false; /* not ours (warm-up), or already failed: watch nothing */
    if (ask)
        return ask_node(h, t);
    const double start = seconds();
    bool is_q = false;
    int layer = -1;
    const bool node = wanted(h, t, &is_q, &layer);
    if (h->q_node && (!node || !is_q) && h->paired) {
        /* the queries waiting in Qcur's memory: at Kcur, or at an early
         * consumer that did not compute over them */
        struct ggml_tensor *q = h->q_node;
        h->q_node = NULL;
        if (!node && overlaps(t, q))
            fail(h, KF_LLAMA_ENODES, "%s computed in place over %s before the adapter read "
                 "it", t->name, q->name);
        else
            take_node(h, q, true, h->q_node_layer);
    } else if (node && !h->paired) {
        if (!is_q)
            h->q_node = NULL;
    }
    if (node && h->status == KF_LLAMA_OK)
        take_node(h, t, is_q, layer);
    h->callback_s += seconds() - start;
    return true; /* false would stop the graph */
}

void kf_llama_host_attach(kf_llama_host *h, struct llama_context_params *cp)
{
    if (!h || !cp)
        return;
    cp->cb_eval = eval_callback;
    cp->cb_eval_user_data = h;
}

/* ---- after each decode ---- */

static bool remove_positions(struct llama_context *ctx, int32_t seq, int32_t p0, int32_t p1)
{
#if KF_LLAMA_MEMORY_API
    return llama_memory_seq_rm(llama_get_memory(ctx), seq, p0, p1);
#else
    return llama_kv_cache_seq_rm(ctx, seq, p0, p1);
#endif
}

static int evict(kf_llama_host *h, struct llama_context *ctx)
{
    int rc = kf_select(h->cache, KF_ALL_LAYERS);
    if (rc != KF_OK)
        return fail(h, KF_LLAMA_ELIBRARY, "kf_select: %s", kf_strerror(rc));
    const int32_t *removed = NULL;
    uint32_t n_removed = 0;
    if ((rc = kf_removed_positions(h->cache, &removed, &n_removed)) != KF_OK)
        return fail(h, KF_LLAMA_ELIBRARY, "kf_removed_positions: %s", kf_strerror(rc));
    for (uint32_t i = 0; i < n_removed;) {
        uint32_t j = i + 1;
        while (j < n_removed && removed[j] == removed[j - 1] + 1)
            j++;
        if (removed[j - 1] >= h->next_pos - 1)
            return fail(h, KF_LLAMA_EREFUSED, "the selection evicts the newest position %d; "
                        "llama.cpp could not continue the sequence", (int)removed[j - 1]);
        if (!remove_positions(ctx, h->seq_id, removed[i], removed[j - 1] + 1))
            return fail(h, KF_LLAMA_EMEMORY, "%s(seq %d, %d, %d) refused to remove the "
                        "positions", kf_llama_host_api(), (int)h->seq_id, (int)removed[i],
                        (int)removed[j - 1] + 1);
        i = j;
    }
    const size_t row = (size_t)h->n_head_kv * (size_t)h->head_dim;
    for (int l = 0; l < h->n_layers; l++) {
        uint32_t slots = 0;
        kf_slot_count(h->cache, l, 0, &slots);
        const kf_kv_view k = {
            .data = h->k_copy + (size_t)l * h->k_layer_floats, .dtype = KF_DTYPE_F32,
            .n_slots = slots, .token_stride = row, .head_stride = (size_t)h->head_dim,
            .bytes = h->k_layer_floats * sizeof(float)};
        if ((rc = kf_compact(h->cache, l, &k, NULL)) != KF_OK)
            return fail(h, KF_LLAMA_ELIBRARY, "kf_compact of layer %d: %s", l, kf_strerror(rc));
    }
    uint32_t kept = 0;
    kf_slot_count(h->cache, 0, 0, &kept);
    h->kept = kept;
    return KF_LLAMA_OK;
}

/* Refuses a prompt whose budget leaves no recent window: KEYFORMER and H2O
 * could then evict the newest position. */
static int check_budget(kf_llama_host *h, int32_t n_prompt)
{
    const kf_config *c = &h->cfg;
    if (c->policy == KF_POLICY_FULL)
        return KF_LLAMA_OK;
    const double k = c->budget_tokens > 0 ? (double)c->budget_tokens
                                          : floor(c->budget_ratio * (double)n_prompt);
    if (k < 1)
        return fail(h, KF_LLAMA_EREFUSED, "refused: the budget keeps no position (ratio %g of "
                    "a %d-token prompt)", c->budget_ratio, (int)n_prompt);
    if (k + 1 > (double)h->capacity)
        return fail(h, KF_LLAMA_EINVAL, "capacity %u is below the budget %.0f + 1",
                    h->capacity, k);
    if ((c->policy == KF_POLICY_KEYFORMER || c->policy == KF_POLICY_H2O) &&
        floor(c->recent_ratio * k) < 1)
        return fail(h, KF_LLAMA_EREFUSED,
                    "refused: recent window floor(%g x %.0f) = 0; without a window of at least "
                    "one position the selection may evict the newest token, and llama.cpp "
                    "continues a sequence only from its newest cached position (raise "
                    "--recent or the budget)", c->recent_ratio, k);
    return KF_LLAMA_OK;
}

static int ensure_buffers(kf_llama_host *h, struct llama_context *ctx, int32_t n)
{
    const size_t ubatch = llama_n_ubatch(ctx);
    const size_t need_q = (ubatch < (size_t)n ? ubatch : (size_t)n) * (size_t)h->n_head *
                          (size_t)h->head_dim;
    if (need_q > h->q_buf_floats) {
        float *q = realloc(h->q_buf, need_q * sizeof(float));
        if (!q)
            return fail(h, KF_LLAMA_ENOMEM, "out of memory for %zu query floats", need_q);
        h->q_buf = q;
        h->q_buf_floats = need_q;
    }
    if (n > h->batch_cap) {
        if (h->batch_cap > 0)
            llama_batch_free(h->batch);
        h->batch_cap = 0;
        h->batch = llama_batch_init(n, 0, 1);
        if (!h->batch.token)
            return fail(h, KF_LLAMA_ENOMEM, "out of memory for a batch of %d tokens", (int)n);
        h->batch_cap = n;
    }
    return KF_LLAMA_OK;
}

int kf_llama_host_decode(kf_llama_host *h, struct llama_context *ctx, const llama_token *tokens,
                         int32_t n, bool all_logits)
{
    if (!h)
        return KF_LLAMA_EINVAL;
    if (h->status != KF_LLAMA_OK)
        return h->status;
    if (!ctx || !tokens || n < 1)
        return fail(h, KF_LLAMA_EINVAL, "kf_llama_host_decode: no context or no tokens");
    if ((uint64_t)h->kept + (uint64_t)n > h->capacity)
        return fail(h, KF_LLAMA_EINVAL, "%u kept + %d new positions exceed the capacity %u",
                    h->kept, (int)n, h->capacity);
    if ((uint32_t)n > llama_n_batch(ctx))
        return fail(h, KF_LLAMA_EINVAL, "%d tokens exceed the context's n_batch %u: the "
                    "adapter needs the prompt in one llama_decode", (int)n, llama_n_batch(ctx));
    if ((int64_t)h->next_pos + n > INT32_MAX)
        return fail(h, KF_LLAMA_EINVAL, "positions past 2^31");
    int rc;
    if (!h->prompt_done && (rc = check_budget(h, n)))
        return rc;
    if ((rc = ensure_buffers(h, ctx, n)))
        return rc;
    h->batch.n_tokens = n;
    for (int32_t i = 0; i < n; i++) {
        h->batch.token[i] = tokens[i];
        h->batch.pos[i] = h->next_pos + i;
        h->batch.n_seq_id[i] = 1;
        h->batch.seq_id[i][0] = h->seq_id;
        h->batch.logits[i] = all_logits || i == n - 1;
    }
    for (int l = 0; l < h->n_layers; l++)
        h->decoded[l] = h->k_rows[l] = 0;
    h->q_layer = -1;
    h->q_rows = 0;
    h->saw_normed = false;
    h->q_node = NULL;
    h->active = true;
    const int32_t decoded = llama_decode(ctx, h->batch);
    h->active = false;
    if (h->status != KF_LLAMA_OK)
        return h->status; /* the callback failed (llama.cpp stored the tokens) */
    if (decoded != 0)
        return fail(h, KF_LLAMA_EDECODE, "llama_decode returned %d for %d tokens at position "
                    "%d", (int)decoded, (int)n, (int)h->next_pos);
    if (h->saw_normed)
        return fail(h, KF_LLAMA_EREFUSED, "refused: the graph normalises the queries after "
                    "RoPE (%s<layer> nodes); the adapter's logits would differ from the "
                    "model's attention", h->q_normed);
    for (int l = 0; l < h->n_layers; l++) {
        if (h->decoded[l] != (uint32_t)n)
            return missing_nodes(h, l, (int)n);
    }
    if (!h->paired && !h->pair_broken && !getenv("KF_LLAMA_TWO_STOPS"))
        h->paired = true; /* every layer had Qcur, then Kcur, nothing between */
    h->next_pos += n;
    const double start = seconds();
    rc = evict(h, ctx);
    h->evict_s += seconds() - start;
    h->prompt_done = true;
    return rc;
}

/* ---- checking llama.cpp's cells ----
 * The public API answers pos_min and pos_max only, and promises that every
 * position between them is present, which eviction makes untrue. The
 * sequence's state (llama_state_seq_get_data) does list its cells: a
 * header (u32 magic 0xaf143cd8, i32 seq id), then the memory's part: u32
 * streams, and per stream a u32 cell count followed, per cell, by its i32
 * position, a u32 count of sequence ids and those ids (then the K/V
 * data). That layout is llama.cpp's, not a promise: it is checked field by
 * field, and anything unexpected fails the check with a message. */
static int compare_i32(const void *a, const void *b)
{
    const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

int kf_llama_host_check_cells(kf_llama_host *h, struct llama_context *ctx)
{
    if (!h || !ctx)
        return KF_LLAMA_EINVAL;
    if (h->status != KF_LLAMA_OK)
        return h->status;
#if !KF_LLAMA_MEMORY_API
    snprintf(h->message, sizeof h->message, "the cell check needs the llama_memory API");
    return KF_LLAMA_ECHECK;
#else
    const size_t size = llama_state_seq_get_size(ctx, h->seq_id);
    uint8_t *buf = malloc(size ? size : 1);
    const int32_t *kept = NULL;
    uint32_t n_kept = 0;
    kf_slot_positions(h->cache, 0, 0, &kept, &n_kept);
    int32_t *want = malloc(((size_t)n_kept + 1) * sizeof *want);
    int32_t *have = malloc(((size_t)n_kept + 1) * sizeof *have);
    int rc = KF_LLAMA_OK;
    if (!buf || !want || !have) {
        snprintf(h->message, sizeof h->message, "out of memory for the cell check");
        rc = KF_LLAMA_ENOMEM;
        goto out;
    }
    const size_t got = llama_state_seq_get_data(ctx, buf, size, h->seq_id);
    size_t at = 0;
    uint32_t u[3];
#define KF_TAKE(dst, bytes)                                                           \
    do {                                                                              \
        if (at + (bytes) > got) {                                                     \
            snprintf(h->message, sizeof h->message,                                   \
                     "cell check: the sequence state ends early (%zu bytes)", got);  \
            rc = KF_LLAMA_ECHECK;                                                     \
            goto out;                                                                 \
        }                                                                             \
        memcpy((dst), buf + at, (bytes));                                             \
        at += (bytes);                                                                \
    } while (0)
    KF_TAKE(u, 3 * sizeof(uint32_t)); /* magic, seq id, streams */
    if (u[0] != 0xaf143cd8u || (int32_t)u[1] != h->seq_id || u[2] != 1) {
        snprintf(h->message, sizeof h->message, "cell check: unexpected sequence state header "
                 "(magic %08x, seq %d, %u streams); this llama.cpp writes another layout",
                 u[0], (int)u[1], u[2]);
        rc = KF_LLAMA_ECHECK;
        goto out;
    }
    uint32_t cells = 0;
    KF_TAKE(&cells, sizeof cells);
    if (cells != n_kept) {
        snprintf(h->message, sizeof h->message, "cell check: llama.cpp holds %u cells for "
                 "sequence %d, the library keeps %u positions", cells, (int)h->seq_id, n_kept);
        rc = KF_LLAMA_ECHECK;
        goto out;
    }
    for (uint32_t i = 0; i < cells; i++) {
        int32_t pos;
        uint32_t n_seq;
        KF_TAKE(&pos, sizeof pos);
        KF_TAKE(&n_seq, sizeof n_seq);
        if (n_seq > 64) {
            snprintf(h->message, sizeof h->message, "cell check: cell %u lists %u sequences",
                     i, n_seq);
            rc = KF_LLAMA_ECHECK;
            goto out;
        }
        for (uint32_t s = 0; s < n_seq; s++) {
            int32_t id;
            KF_TAKE(&id, sizeof id);
        }
        have[i] = pos;
    }
#undef KF_TAKE
    memcpy(want, kept, (size_t)n_kept * sizeof *want);
    qsort(want, n_kept, sizeof *want, compare_i32);
    qsort(have, cells, sizeof *have, compare_i32);
    for (uint32_t i = 0; i < cells; i++) {
        if (have[i] != want[i]) {
            snprintf(h->message, sizeof h->message, "cell check: %u-th smallest position: "
                     "llama.cpp holds %d, the library keeps %d", i, (int)have[i],
                     (int)want[i]);
            rc = KF_LLAMA_ECHECK;
            goto out;
        }
    }
out:
    free(buf);
    free(want);
    free(have);
    return rc;
#endif
}
