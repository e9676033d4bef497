/* doc/recipes.md, "Fused attention": a host whose attention kernel never
 * writes the logits hands the library its queries and its bf16 K cache,
 * token-major ([slot][KV head][dim], as many engines lay it out), and
 * kf_observe_qk computes the logits inside the library. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <keyformer.h>

enum { LAYERS = 2, HEADS = 8, KV_HEADS = 2, DIM = 16, CAPACITY = 64 };
enum { PROMPT = 40 };

typedef uint16_t bf16;

/* One layer's cache: [slot][KV head][dim], bf16 keys and values. */
typedef struct layer_cache {
    bf16 k[CAPACITY][KV_HEADS][DIM];
    bf16 v[CAPACITY][KV_HEADS][DIM];
} layer_cache;

static layer_cache model[LAYERS];
static float q_rows[PROMPT][HEADS][DIM]; /* queries, [row][head][dim] */
static unsigned rng = 11;

static float rnd(void)
{
    rng = rng * 1103515245u + 12345u;
    return (float)((rng >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static bf16 to_bf16(float f) /* round to nearest even; inputs are finite */
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (bf16)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* Stand-in for the fused forward pass of one layer: writes the keys and
 * values of n_rows new tokens at slots n_old.., and leaves their rotated
 * queries in q_rows. */
static void forward_layer(layer_cache *lc, uint32_t n_old, uint32_t n_rows)
{
    for (uint32_t i = 0; i < n_rows; i++) {
        for (int h = 0; h < HEADS; h++)
            for (int d = 0; d < DIM; d++)
                q_rows[i][h][d] = rnd();
        for (int g = 0; g < KV_HEADS; g++)
            for (int d = 0; d < DIM; d++) {
                lc->k[n_old + i][g][d] = to_bf16(rnd());
                lc->v[n_old + i][g][d] = to_bf16(rnd());
            }
    }
}

/* After the layer's attention: observe, select, compact. n_old slots were
 * held before the call; the K cache already holds the n_rows new keys. */
static int keyformer_step(kf_cache *cache, int layer, layer_cache *lc,
                          uint32_t n_old, uint32_t n_rows)
{
    kf_query_view q = { .data = &q_rows[0][0][0], .n_rows = n_rows,
                        .row_stride = HEADS * DIM, .head_stride = DIM,
                        .scale = 0.0f, /* 1/sqrt(DIM), as the kernel used */
                        .flags = KF_LOGITS_CAUSAL };
    kf_kv_view k = { .data = lc->k, .dtype = KF_DTYPE_BF16,
                     .n_slots = n_old + n_rows,
                     .token_stride = KV_HEADS * DIM, .head_stride = DIM };
    kf_kv_view v = k;
    v.data = lc->v;

    int rc = kf_observe_qk(cache, layer, &q, &k);
    if (rc == KF_OK)
        rc = kf_select(cache, layer);
    if (rc == KF_OK)
        rc = kf_compact(cache, layer, &k, &v);
    return rc;
}

int main(void)
{
    kf_config cfg;
    kf_config_default(&cfg);
    cfg.n_layers = LAYERS;
    cfg.n_heads = HEADS;
    cfg.n_kv_heads = KV_HEADS;
    cfg.head_dim = DIM;
    cfg.capacity = CAPACITY;
    kf_cache *cache = NULL;
    if (kf_cache_create(&cache, &cfg) != KF_OK)
        return 1;

    int rc = KF_OK;
    for (int l = 0; l < LAYERS && rc == KF_OK; l++) { /* prefill */
        forward_layer(&model[l], 0, PROMPT);
        rc = keyformer_step(cache, l, &model[l], 0, PROMPT);
    }
    for (int t = 0; t < 3 && rc == KF_OK; t++) /* three decode steps */
        for (int l = 0; l < LAYERS && rc == KF_OK; l++) {
            uint32_t n;
            kf_slot_count(cache, l, 0, &n);
            forward_layer(&model[l], n, 1);
            rc = keyformer_step(cache, l, &model[l], n, 1);
        }

    size_t bytes = 0;
    uint32_t n = 0;
    kf_cache_memory(cache, &bytes);
    kf_slot_count(cache, 0, 0, &n);
    printf("%s: %u slots per KV head kept, cache state %zu bytes\n",
           kf_strerror(rc), n, bytes);
    kf_cache_destroy(&cache);
    return rc == KF_OK && n == PROMPT / 2 ? 0 : 1;
}
