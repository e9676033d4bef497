/* doc/walkthrough.md as a program: a host that owns a two-layer model's
 * K/V cache runs one prefill of 12 tokens and one decode step with
 * libkeyformer. The "model" is random queries and keys; everything the
 * library sees is what a real engine would hand it. Built and run by
 * `meson test` (doc-walkthrough). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keyformer.h>

enum { LAYERS = 2, HEADS = 4, KV_HEADS = 2, DIM = 8, CAPACITY = 16 };
enum { PROMPT = 12 };

/* The host's cache of one layer: [KV head][slot][dim], fp32. */
typedef struct layer_cache {
    float k[KV_HEADS][CAPACITY][DIM];
    float v[KV_HEADS][CAPACITY][DIM];
    float q[HEADS][PROMPT][DIM]; /* queries of the current call */
} layer_cache;

static layer_cache model[LAYERS];
static float logits[HEADS * PROMPT * CAPACITY];
static unsigned rng = 7;

static float rnd(void)
{
    rng = rng * 1103515245u + 12345u;
    return (float)((rng >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* Stand-in for the forward pass: queries of n_rows new tokens, and their
 * keys and values written at slots n_old .. n_old + n_rows - 1. */
static void forward_layer(layer_cache *lc, uint32_t n_old, uint32_t n_rows)
{
    for (uint32_t i = 0; i < n_rows; i++) {
        for (int h = 0; h < HEADS; h++)
            for (int d = 0; d < DIM; d++)
                lc->q[h][i][d] = rnd();
        for (int g = 0; g < KV_HEADS; g++)
            for (int d = 0; d < DIM; d++) {
                lc->k[g][n_old + i][d] = rnd();
                lc->v[g][n_old + i][d] = rnd();
            }
    }
}

/* The attention logits the host computes anyway:
 * logits[h][i][j] = q_i . k_j / sqrt(DIM), -inf where row i may not look. */
static void attention_logits(const layer_cache *lc, uint32_t n_old,
                             uint32_t n_rows)
{
    uint32_t n_slots = n_old + n_rows;
    for (int h = 0; h < HEADS; h++) {
        int g = h / (HEADS / KV_HEADS); /* the query head's KV head */
        for (uint32_t i = 0; i < n_rows; i++)
            for (uint32_t j = 0; j < n_slots; j++) {
                float dot = 0.0f;
                for (int d = 0; d < DIM; d++)
                    dot += lc->q[h][i][d] * lc->k[g][j][d];
                logits[((size_t)h * n_rows + i) * n_slots + j] =
                    j > n_old + i ? -INFINITY : dot / sqrtf((float)DIM);
            }
    }
}

static kf_cache *create_cache(void)
{
    kf_config cfg;
    kf_config_default(&cfg); /* Keyformer: budget 0.5 of the prompt, window 0.3 */
    cfg.n_layers = LAYERS;
    cfg.n_heads = HEADS;
    cfg.n_kv_heads = KV_HEADS;
    cfg.head_dim = DIM;
    cfg.capacity = CAPACITY; /* >= the prompt, and >= k + 1 for decoding */
    cfg.seed = 1;

    kf_cache *cache = NULL;
    int rc = kf_cache_create(&cache, &cfg);
    if (rc != KF_OK)
        fprintf(stderr, "kf_cache_create: %s\n", kf_strerror(rc));
    return cache;
}

/* Views of one layer's K and V buffers holding n_slots rows per KV head. */
static void kv_views(layer_cache *lc, uint32_t n_slots, kf_kv_view *k,
                     kf_kv_view *v)
{
    *k = (kf_kv_view){ .data = lc->k, .dtype = KF_DTYPE_F32,
                       .n_slots = n_slots, .token_stride = DIM,
                       .head_stride = (size_t)CAPACITY * DIM };
    *v = *k;
    v->data = lc->v;
}

static int prefill(kf_cache *cache)
{
    for (int l = 0; l < LAYERS; l++) {
        forward_layer(&model[l], 0, PROMPT);
        attention_logits(&model[l], 0, PROMPT);

        kf_logits_view lv = { .data = logits, .n_rows = PROMPT,
                              .n_slots = PROMPT, .row_stride = PROMPT,
                              .head_stride = (size_t)PROMPT * PROMPT,
                              .flags = KF_LOGITS_CAUSAL };
        int rc = kf_observe_logits(cache, l, &lv);
        if (rc == KF_OK)
            rc = kf_select(cache, l); /* fixes k = floor(0.5 * 12) = 6 */
        kf_kv_view k, v;
        kv_views(&model[l], PROMPT, &k, &v);
        if (rc == KF_OK)
            rc = kf_compact(cache, l, &k, &v); /* 12 rows -> 6, in place */
        if (rc != KF_OK) {
            fprintf(stderr, "prefill, layer %d: %s\n", l, kf_strerror(rc));
            return rc;
        }
    }
    return KF_OK;
}

static int decode_step(kf_cache *cache)
{
    for (int l = 0; l < LAYERS; l++) {
        uint32_t n;     /* slots the layer holds: k after the prefill */
        uint32_t steps; /* generation steps so far */
        int32_t pos;    /* true position of the new token (RoPE uses it) */
        kf_slot_count(cache, l, 0, &n);
        kf_layer_progress(cache, l, &steps, &pos);

        forward_layer(&model[l], n, 1); /* its K/V go to slot n */
        attention_logits(&model[l], n, 1);

        kf_logits_view lv = { .data = logits, .n_rows = 1,
                              .n_slots = n + 1, .row_stride = n + 1,
                              .head_stride = n + 1 };
        int rc = kf_observe_logits(cache, l, &lv);
        if (rc == KF_OK)
            rc = kf_select(cache, l); /* evicts one slot: k remain */
        kf_kv_view k, v;
        kv_views(&model[l], n + 1, &k, &v);
        if (rc == KF_OK)
            rc = kf_compact(cache, l, &k, &v);
        if (rc != KF_OK) {
            fprintf(stderr, "decode, layer %d: %s\n", l, kf_strerror(rc));
            return rc;
        }
        printf("layer %d: token at position %d, %u -> %u slots\n", l, pos,
               n + 1, n);
    }
    return KF_OK;
}

static void print_slots(const kf_cache *cache)
{
    for (int l = 0; l < LAYERS; l++)
        for (int g = 0; g < KV_HEADS; g++) {
            const int32_t *pos;
            const float *score;
            uint32_t n;
            kf_slot_positions(cache, l, g, &pos, &n);
            kf_slot_scores(cache, l, g, &score, &n);
            printf("layer %d KV head %d:", l, g);
            for (uint32_t j = 0; j < n; j++)
                printf(" %d(%.2f)", pos[j], score[j]);
            printf("\n");
        }
}

int main(void)
{
    kf_cache *cache = create_cache();
    if (!cache)
        return 1;
    int rc = prefill(cache);
    uint32_t k = 0, w = 0;
    kf_budget(cache, &k, &w);
    printf("budget k = %u, window w = %u\n", k, w);
    print_slots(cache);
    if (rc == KF_OK)
        rc = decode_step(cache);
    print_slots(cache);
    kf_cache_destroy(&cache);
    return rc == KF_OK && k == 6 && w == 1 ? 0 : 1;
}
