#include "forward.h"

#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "ops.h"
#include "threads.h"

/* Automatic block size: keep the logits buffer near 64 MiB and blocks no
 * larger than the point where sgemm stops gaining. */
enum { AUTO_MAX_BLOCK_ROWS = 512, AUTO_LOGITS_FLOATS = 16 << 20 };

struct eng_state {
    const eng_model *model;
    int capacity;
    int max_block_rows;
    int n_threads;
    eng_layer_hook hook;
    void *hook_user_data;
    eng_kv_head_hooks kv_head_hooks;
    int position;     /* tokens seen */
    int *n_slots;     /* [n_layers] */
    float *keys;      /* [n_layers][n_kv_heads][capacity][head_size] */
    float *values;
    /* Activations of one block, [max_block_rows][width]. */
    float *x, *xb, *q, *k, *v, *att, *hb, *hb2;
    float *rope_cos, *rope_sin; /* [max_block_rows][head_size / 2] */
    float *attn_logits;         /* [n_heads][max_block_rows][capacity] */
    float *attn_scratch;        /* eng_attention_scratch_floats() */
    int *kv_head_pending;       /* [n_kv_heads], eng_attention_block's */
    /* [n_layers][n_kv_heads][capacity]: 1 = a hole the attention skips;
     * read only for layers whose flag is set (eng_state_layer_mask) */
    unsigned char *masked;
    bool *layer_masked;         /* [n_layers] */
};

static float *alloc_floats(size_t n)
{
    /* 64-byte alignment suits every SIMD width BLAS might use. */
    const size_t bytes = ((n * sizeof(float)) + 63) / 64 * 64;
    return aligned_alloc(64, bytes > 0 ? bytes : 64);
}

static size_t layer_cache_floats(const eng_state *s)
{
    const eng_model_config *c = &s->model->config;
    return (size_t)c->n_kv_heads * (size_t)s->capacity * (size_t)c->head_size;
}

static unsigned char *layer_mask(const eng_state *s, int layer)
{
    const eng_model_config *c = &s->model->config;
    return s->masked + (size_t)layer * (size_t)c->n_kv_heads * (size_t)s->capacity;
}

/* A clamped thread count is worth one line per process, not one per state. */
static void warn_once(const char *warning)
{
    static atomic_flag warned = ATOMIC_FLAG_INIT;
    if (warning[0] && !atomic_flag_test_and_set(&warned))
        fprintf(stderr, "engine: %s\n", warning);
}

static int resolve_options(eng_state *s, const eng_model_config *c,
                           const eng_state_options *o, eng_error *err)
{
    s->capacity = o->kv_capacity > 0 ? o->kv_capacity : c->seq_len;
    if (o->kv_capacity < 0 || o->max_block_rows < 0 || o->n_threads < 0)
        return eng_fail(err, ENG_EINVAL, "negative capacity, block size or thread count");
    char warning[160];
    s->n_threads = eng_thread_count(o->n_threads, warning, sizeof warning);
    warn_once(warning);
    long rows = o->max_block_rows;
    if (rows == 0) {
        rows = AUTO_LOGITS_FLOATS / ((long)c->n_heads * s->capacity);
        rows = rows < 1 ? 1 : rows > AUTO_MAX_BLOCK_ROWS ? AUTO_MAX_BLOCK_ROWS : rows;
    }
    s->max_block_rows = (int)(rows < s->capacity ? rows : s->capacity);
    /* Buffers below index with long; keep every one well inside its range. */
    const double logits = (double)c->n_heads * s->max_block_rows * s->capacity;
    const double cache = (double)c->n_layers * c->kv_dim * s->capacity;
    if (logits > (double)INT64_MAX / 8 || cache > (double)INT64_MAX / 8 ||
        logits * sizeof(float) > (double)SIZE_MAX || cache * sizeof(float) > (double)SIZE_MAX)
        return eng_fail(err, ENG_EINVAL, "capacity %d is too large for this host", s->capacity);
    s->hook = o->hook;
    s->hook_user_data = o->hook_user_data;
    s->kv_head_hooks = o->kv_head_hooks;
    return ENG_OK;
}

static int allocate_buffers(eng_state *s, eng_error *err)
{
    const eng_model_config *c = &s->model->config;
    const size_t rows = (size_t)s->max_block_rows;
    const size_t cache = (size_t)c->n_layers * layer_cache_floats(s);
    s->n_slots = calloc((size_t)c->n_layers, sizeof *s->n_slots);
    s->keys = alloc_floats(cache);
    s->values = alloc_floats(cache);
    s->x = alloc_floats(rows * (size_t)c->dim);
    s->xb = alloc_floats(rows * (size_t)c->dim);
    s->q = alloc_floats(rows * (size_t)c->dim);
    s->k = alloc_floats(rows * (size_t)c->kv_dim);
    s->v = alloc_floats(rows * (size_t)c->kv_dim);
    s->att = alloc_floats(rows * (size_t)c->dim);
    s->hb = alloc_floats(rows * (size_t)c->hidden_dim);
    s->hb2 = alloc_floats(rows * (size_t)c->hidden_dim);
    s->rope_cos = alloc_floats(rows * (size_t)(c->head_size / 2));
    s->rope_sin = alloc_floats(rows * (size_t)(c->head_size / 2));
    s->attn_logits = alloc_floats((size_t)c->n_heads * rows * (size_t)s->capacity);
    s->attn_scratch = alloc_floats(eng_attention_scratch_floats(s->capacity, s->n_threads));
    s->kv_head_pending = calloc((size_t)c->n_kv_heads, sizeof *s->kv_head_pending);
    s->masked = calloc((size_t)c->n_layers * (size_t)c->n_kv_heads, (size_t)s->capacity);
    s->layer_masked = calloc((size_t)c->n_layers, sizeof *s->layer_masked);
    if (!s->masked || !s->layer_masked || !s->n_slots || !s->keys || !s->values || !s->x || !s->xb || !s->q || !s->k ||
        !s->v || !s->att || !s->hb || !s->hb2 || !s->rope_cos || !s->rope_sin ||
        !s->attn_logits || !s->attn_scratch || !s->kv_head_pending)
        return eng_fail(err, ENG_ENOMEM, "out of memory for a %d-slot KV cache", s->capacity);
    return ENG_OK;
}

int eng_state_create(eng_state **out, const eng_model *model,
                     const eng_state_options *options, eng_error *err)
{
    *out = NULL;
    if (!model || !model->mapping)
        return eng_fail(err, ENG_EINVAL, "no model loaded");
    eng_state_options defaults = {0};
    eng_state *s = calloc(1, sizeof *s);
    if (!s)
        return eng_fail(err, ENG_ENOMEM, "out of memory");
    s->model = model;
    eng_blas_use_caller_thread();
    int rc = resolve_options(s, &model->config, options ? options : &defaults, err);
    if (rc == ENG_OK)
        rc = allocate_buffers(s, err);
    if (rc != ENG_OK) {
        eng_state_destroy(&s);
        return rc;
    }
    *out = s;
    return ENG_OK;
}

void eng_state_destroy(eng_state **state)
{
    if (!state || !*state)
        return;
    eng_state *s = *state;
    free(s->n_slots);
    free(s->keys), free(s->values);
    free(s->x), free(s->xb), free(s->q), free(s->k), free(s->v), free(s->att);
    free(s->hb), free(s->hb2), free(s->rope_cos), free(s->rope_sin);
    free(s->attn_logits), free(s->attn_scratch), free(s->kv_head_pending);
    free(s->masked), free(s->layer_masked);
    free(s);
    *state = NULL;
}

void eng_state_reset(eng_state *s)
{
    const eng_model_config *c = &s->model->config;
    s->position = 0;
    memset(s->n_slots, 0, (size_t)c->n_layers * sizeof *s->n_slots);
    memset(s->layer_masked, 0, (size_t)c->n_layers * sizeof *s->layer_masked);
}

int eng_state_copy(eng_state *dst, const eng_state *src, eng_error *err)
{
    if (dst == src || dst->model != src->model || dst->capacity != src->capacity)
        return eng_fail(err, ENG_EINVAL, "states of different models or capacities");
    const eng_model_config *c = &src->model->config;
    const size_t head = (size_t)src->capacity * (size_t)c->head_size;
    for (int l = 0; l < c->n_layers; l++) {
        const size_t used = (size_t)src->n_slots[l] * (size_t)c->head_size;
        for (int g = 0; g < c->n_kv_heads; g++) {
            const size_t at = (size_t)l * layer_cache_floats(src) + (size_t)g * head;
            memcpy(dst->keys + at, src->keys + at, used * sizeof *dst->keys);
            memcpy(dst->values + at, src->values + at, used * sizeof *dst->values);
        }
        dst->n_slots[l] = src->n_slots[l];
        dst->layer_masked[l] = src->layer_masked[l];
    }
    memcpy(dst->masked, src->masked,
           (size_t)c->n_layers * (size_t)c->n_kv_heads * (size_t)src->capacity);
    dst->position = src->position;
    return ENG_OK;
}

void eng_state_set_hook(eng_state *s, eng_layer_hook hook, void *user_data)
{
    s->hook = hook;
    s->hook_user_data = user_data;
}

void eng_state_set_kv_head_hooks(eng_state *s, const eng_kv_head_hooks *hooks)
{
    s->kv_head_hooks = hooks ? *hooks : (eng_kv_head_hooks){0};
}

/* Copies the block's rotated keys and values, [row][kv_dim], into the
 * layer's cache layout [kv_head][slot][head_size] after its current slots. */
static void append_to_cache(eng_state *s, int layer, int n_rows)
{
    const eng_model_config *c = &s->model->config;
    const size_t hs = (size_t)c->head_size;
    float *keys = s->keys + (size_t)layer * layer_cache_floats(s);
    float *values = s->values + (size_t)layer * layer_cache_floats(s);
    for (int g = 0; g < c->n_kv_heads; g++) {
        const size_t head_base = ((size_t)g * s->capacity + (size_t)s->n_slots[layer]) * hs;
        for (int r = 0; r < n_rows; r++) {
            const size_t src = (size_t)r * c->kv_dim + (size_t)g * hs;
            memcpy(keys + head_base + (size_t)r * hs, s->k + src, hs * sizeof(float));
            memcpy(values + head_base + (size_t)r * hs, s->v + src, hs * sizeof(float));
        }
    }
}

/* The event of a layer's block; logits NULL before the attention. */
static eng_layer_event layer_event(eng_state *s, int layer, int n_rows, int n_slots,
                                   bool more_rows_follow, const float *logits)
{
    const eng_model_config *c = &s->model->config;
    return (eng_layer_event){
        .state = s, .layer = layer, .n_rows = n_rows, .first_position = s->position,
        .n_slots = n_slots, .more_rows_follow = more_rows_follow, .logits = logits,
        .keys = s->keys + (size_t)layer * layer_cache_floats(s),
        .values = s->values + (size_t)layer * layer_cache_floats(s),
        .capacity = s->capacity, .n_heads = c->n_heads, .n_kv_heads = c->n_kv_heads,
        .head_size = c->head_size,
    };
}

static int call_hook(eng_state *s, int layer, int n_rows, bool more_rows_follow,
                     eng_error *err)
{
    const eng_layer_event event =
        layer_event(s, layer, n_rows, s->n_slots[layer], more_rows_follow, s->attn_logits);
    const int kept = s->hook(s->hook_user_data, &event);
    if (kept < 0 || kept > event.n_slots)
        return eng_fail(err, ENG_EHOOK, "layer %d hook returned %d (slots: %d)", layer,
                        kept, event.n_slots);
    s->n_slots[layer] = kept;
    return ENG_OK;
}

/* What the attention's per-KV-head callback needs to build the event. */
typedef struct kv_head_call {
    const eng_kv_head_hooks *hooks;
    int layer, n_rows, n_slots, group_size;
} kv_head_call;

static int kv_head_done(void *user_data, int kv_head, const float *logits)
{
    const kv_head_call *call = user_data;
    const eng_kv_head_event event = {
        .layer = call->layer, .kv_head = kv_head, .n_rows = call->n_rows,
        .n_slots = call->n_slots, .group_size = call->group_size, .logits = logits,
    };
    return call->hooks->kv_head(call->hooks->user_data, &event);
}

static int run_attention(eng_state *s, int layer, int n_rows, bool more_rows_follow,
                         eng_error *err)
{
    const eng_model_config *c = &s->model->config;
    eng_rope_rotate(s->q, c->dim, n_rows, c->n_heads, c->head_size, s->rope_cos, s->rope_sin);
    eng_rope_rotate(s->k, c->kv_dim, n_rows, c->n_kv_heads, c->head_size, s->rope_cos,
                    s->rope_sin);
    append_to_cache(s, layer, n_rows);
    const int n_slots = s->n_slots[layer] + n_rows;
    const eng_kv_head_hooks *hooks = &s->kv_head_hooks;
    if (hooks->begin) {
        const eng_layer_event event =
            layer_event(s, layer, n_rows, n_slots, more_rows_follow, NULL);
        const int rc = hooks->begin(hooks->user_data, &event);
        if (rc < 0)
            return eng_fail(err, ENG_EHOOK, "layer %d: the hook before attention returned %d",
                            layer, rc);
    }
    kv_head_call call = {hooks, layer, n_rows, n_slots, c->n_heads / c->n_kv_heads};
    const eng_attention_block block = {
        .queries = s->q,
        .keys = s->keys + (size_t)layer * layer_cache_floats(s),
        .values = s->values + (size_t)layer * layer_cache_floats(s),
        .capacity = s->capacity, .n_heads = c->n_heads, .n_kv_heads = c->n_kv_heads,
        .head_size = c->head_size, .n_old_slots = s->n_slots[layer], .n_rows = n_rows,
        .logits = s->attn_logits, .output = s->att, .scratch = s->attn_scratch,
        .n_threads = s->n_threads,
        .kv_head_done = hooks->kv_head ? kv_head_done : NULL,
        .kv_head_user_data = &call, .kv_head_pending = s->kv_head_pending,
        .masked = s->layer_masked[layer] ? layer_mask(s, layer) : NULL,
    };
    const int failed = eng_attention_run(&block);
    s->n_slots[layer] = n_slots;
    /* After a failed KV head the layer hook still runs, so that the host
     * can close what its begin hook opened. */
    const int rc = s->hook ? call_hook(s, layer, n_rows, more_rows_follow, err) : ENG_OK;
    if (failed)
        return eng_fail(err, ENG_EHOOK, "layer %d: a KV head hook returned %d", layer, failed);
    return rc;
}

static int run_layer(eng_state *s, int layer, int n_rows, bool more_rows_follow,
                     eng_error *err)
{
    const eng_model_config *c = &s->model->config;
    const eng_model_weights *w = &s->model->weights;
    const size_t l = (size_t)layer, dim = (size_t)c->dim, kv_dim = (size_t)c->kv_dim;
    const size_t hidden = (size_t)c->hidden_dim;

    const int threads = s->n_threads;
    eng_rmsnorm_rows(s->xb, s->x, w->rms_att + l * dim, n_rows, c->dim);
    const eng_matmul qkv[3] = {
        {s->q, w->wq + l * dim * dim, c->dim, false},
        {s->k, w->wk + l * kv_dim * dim, c->kv_dim, false},
        {s->v, w->wv + l * kv_dim * dim, c->kv_dim, false},
    };
    eng_matmul_group(s->xb, n_rows, c->dim, qkv, 3, threads);
    const int rc = run_attention(s, layer, n_rows, more_rows_follow, err);
    if (rc)
        return rc;
    /* accumulate = true folds the residual additions into the products. */
    const eng_matmul output = {s->x, w->wo + l * dim * dim, c->dim, true};
    eng_matmul_group(s->att, n_rows, c->dim, &output, 1, threads);

    eng_rmsnorm_rows(s->xb, s->x, w->rms_ffn + l * dim, n_rows, c->dim);
    const eng_matmul gate_up[2] = {
        {s->hb, w->w1 + l * hidden * dim, c->hidden_dim, false},
        {s->hb2, w->w3 + l * hidden * dim, c->hidden_dim, false},
    };
    eng_matmul_group(s->xb, n_rows, c->dim, gate_up, 2, threads);
    eng_swiglu(s->hb, s->hb2, (long)n_rows * c->hidden_dim);
    const eng_matmul down = {s->x, w->w2 + l * dim * hidden, c->dim, true};
    eng_matmul_group(s->hb, n_rows, c->hidden_dim, &down, 1, threads);
    return ENG_OK;
}

/* Output logits for block rows first_row..n_rows-1. */
static void classify_rows(eng_state *s, int first_row, int n_rows, float *logits)
{
    const eng_model_config *c = &s->model->config;
    const size_t offset = (size_t)first_row * (size_t)c->dim;
    const int count = n_rows - first_row;
    eng_rmsnorm_rows(s->xb + offset, s->x + offset, s->model->weights.rms_final, count,
                     c->dim);
    const eng_matmul classifier = {logits, s->model->weights.wcls, c->vocab_size, false};
    eng_matmul_group(s->xb + offset, count, c->dim, &classifier, 1, s->n_threads);
}

static int run_block(eng_state *s, const int *tokens, int n_rows, bool more_rows_follow,
                     eng_error *err)
{
    const eng_model_config *c = &s->model->config;
    for (int r = 0; r < n_rows; r++)
        memcpy(s->x + (size_t)r * c->dim,
               s->model->weights.token_embedding + (size_t)tokens[r] * c->dim,
               (size_t)c->dim * sizeof(float));
    eng_rope_tables(s->rope_cos, s->rope_sin, s->position, n_rows, c->head_size);
    for (int layer = 0; layer < c->n_layers; layer++) {
        const int rc = run_layer(s, layer, n_rows, more_rows_follow, err);
        if (rc)
            return rc;
    }
    s->position += n_rows;
    return ENG_OK;
}

static int free_slots(const eng_state *s)
{
    int most = 0;
    for (int l = 0; l < s->model->config.n_layers; l++)
        most = s->n_slots[l] > most ? s->n_slots[l] : most;
    return s->capacity - most;
}

static int check_call(const eng_state *s, const int *tokens, int n_tokens,
                      const float *logits, int n_logit_rows, eng_error *err)
{
    if (n_tokens < 1 || !tokens)
        return eng_fail(err, ENG_EINVAL, "no tokens to run");
    if (n_logit_rows < 0 || n_logit_rows > n_tokens || (n_logit_rows > 0 && !logits))
        return eng_fail(err, ENG_EINVAL, "cannot return logits for %d of %d tokens",
                        n_logit_rows, n_tokens);
    for (int i = 0; i < n_tokens; i++)
        if (tokens[i] < 0 || tokens[i] >= s->model->config.vocab_size)
            return eng_fail(err, ENG_EINVAL, "token %d at index %d is outside the vocabulary",
                            tokens[i], i);
    if (n_tokens > INT_MAX - s->position)
        return eng_fail(err, ENG_EINVAL, "position counter would overflow");
    if (!s->hook && n_tokens > free_slots(s))
        return eng_fail(err, ENG_EFULL, "%d tokens do not fit in the %d free KV slots",
                        n_tokens, free_slots(s));
    return ENG_OK;
}

int eng_forward(eng_state *s, const int *tokens, int n_tokens, float *logits,
                int n_logit_rows, eng_error *err)
{
    int rc = check_call(s, tokens, n_tokens, logits, n_logit_rows, err);
    if (rc)
        return rc;
    const int first_output = n_tokens - n_logit_rows;
    for (int done = 0; done < n_tokens;) {
        int rows = n_tokens - done;
        rows = rows < s->max_block_rows ? rows : s->max_block_rows;
        const int room = free_slots(s);
        if (room < 1)
            return eng_fail(err, ENG_EFULL, "KV cache full (%d slots) after %d of %d tokens",
                            s->capacity, done, n_tokens);
        rows = rows < room ? rows : room;
        const bool more = done + rows < n_tokens;
        if ((rc = run_block(s, tokens + done, rows, more, err)))
            return rc;
        if (done + rows > first_output) {
            const int first_row = first_output > done ? first_output - done : 0;
            classify_rows(s, first_row, rows,
                          logits + (size_t)(done + first_row - first_output) *
                                       (size_t)s->model->config.vocab_size);
        }
        done += rows;
    }
    return ENG_OK;
}

int eng_state_position(const eng_state *s) { return s->position; }
int eng_state_capacity(const eng_state *s) { return s->capacity; }
int eng_state_max_block_rows(const eng_state *s) { return s->max_block_rows; }

int eng_state_slot_count(const eng_state *s, int layer)
{
    return layer >= 0 && layer < s->model->config.n_layers ? s->n_slots[layer] : 0;
}

void eng_state_layer_kv(eng_state *s, int layer, float **keys, float **values)
{
    *keys = s->keys + (size_t)layer * layer_cache_floats(s);
    *values = s->values + (size_t)layer * layer_cache_floats(s);
}

unsigned char *eng_state_layer_mask(eng_state *s, int layer)
{
    if (layer < 0 || layer >= s->model->config.n_layers)
        return NULL;
    s->layer_masked[layer] = true;
    return layer_mask(s, layer);
}

int eng_state_shrink_layer(eng_state *s, int layer, int n_slots)
{
    if (layer < 0 || layer >= s->model->config.n_layers || n_slots < 0
        || n_slots > s->n_slots[layer])
        return -1;
    s->n_slots[layer] = n_slots;
    return 0;
}

size_t eng_state_kv_bytes_in_use(const eng_state *s)
{
    const eng_model_config *c = &s->model->config;
    size_t slots = 0;
    for (int l = 0; l < c->n_layers; l++)
        slots += (size_t)s->n_slots[l];
    return slots * 2 * (size_t)c->kv_dim * sizeof(float);
}

size_t eng_state_kv_bytes_full(const eng_state *s)
{
    const eng_model_config *c = &s->model->config;
    return (size_t)s->position * (size_t)c->n_layers * 2 * (size_t)c->kv_dim * sizeof(float);
}
