/* A program outside the libkeyformer tree, built only with
 * `pkg-config --cflags --libs keyformer` (scripts/install-check.sh): one
 * sequence through a tiny two-layer model's K/V buffers of its own, a
 * prefill and a few decode steps with real kf_compact calls, checking after
 * every compaction that each kept row is the row of the position the
 * library reports. Prints what was kept; exits 1 on any failure. */
#include <keyformer.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { LAYERS = 2, HEADS = 4, KV_HEADS = 2, DIM = 16, CAPACITY = 40 };
enum { PROMPT = 24, BUDGET = 12, STEPS = 4 };

/* One layer's cache, [KV head][slot][dim]. Element 0 of every V row holds
 * the row's original position, so a misplaced row is visible. */
typedef struct layer_kv {
    float k[KV_HEADS][CAPACITY][DIM];
    float v[KV_HEADS][CAPACITY][DIM];
} layer_kv;

static int failures;

static void fail(const char *what, int status)
{
    fprintf(stderr, "consumer: %s failed: %d (%s)\n", what, status,
            kf_strerror(status));
    failures++;
}

#define CALL(expr)                                \
    do {                                          \
        int status_ = (expr);                     \
        if (status_ != KF_OK) {                   \
            fail(#expr, status_);                 \
            return status_;                       \
        }                                         \
    } while (0)

static float noise(unsigned *state)
{
    *state = *state * 1103515245u + 12345u;
    return (float)((*state >> 9) & 0xffff) / 65536.0f - 0.5f;
}

/* Appends the K/V rows of `n` tokens at slots first .. first + n - 1. */
static void append_rows(layer_kv *kv, uint32_t first, uint32_t n,
                        int32_t position, unsigned *rng)
{
    for (int g = 0; g < KV_HEADS; g++)
        for (uint32_t t = 0; t < n; t++) {
            for (int d = 0; d < DIM; d++) {
                kv->k[g][first + t][d] = noise(rng);
                kv->v[g][first + t][d] = noise(rng);
            }
            kv->v[g][first + t][0] = (float)(position + (int32_t)t);
        }
}

static kf_kv_view view_of(float (*rows)[CAPACITY][DIM], uint32_t n_slots)
{
    kf_kv_view v;
    v.data = rows;
    v.dtype = KF_DTYPE_F32;
    v.n_slots = n_slots;
    v.token_stride = DIM;
    v.head_stride = (size_t)CAPACITY * DIM; /* the buffer's rows per head */
    v.bytes = sizeof(float[KV_HEADS][CAPACITY][DIM]); /* checked */
    return v;
}

/* Layer 0 hands over logits it computed; layer 1 lets the library compute
 * them from the queries (kf_observe_qk). n_rows new tokens, causal. */
static int observe(kf_cache *cache, int layer, layer_kv *kv, uint32_t n_old,
                   uint32_t n_rows, unsigned *rng)
{
    static float q[HEADS][PROMPT][DIM];
    static float logits[HEADS][PROMPT][CAPACITY];
    uint32_t n_slots = n_old + n_rows;
    for (int h = 0; h < HEADS; h++)
        for (uint32_t i = 0; i < n_rows; i++)
            for (int d = 0; d < DIM; d++)
                q[h][i][d] = noise(rng);
    kf_kv_view keys = view_of(kv->k, n_slots);
    if (layer == 1) {
        kf_query_view qv = { &q[0][0][0], n_rows, DIM,
                             (size_t)PROMPT * DIM, 0.0f, KF_LOGITS_CAUSAL,
                             sizeof q };
        CALL(kf_observe_qk(cache, layer, &qv, &keys));
        return KF_OK;
    }
    int group = HEADS / KV_HEADS;
    for (int h = 0; h < HEADS; h++)
        for (uint32_t i = 0; i < n_rows; i++)
            for (uint32_t j = 0; j < n_slots; j++) {
                float dot = 0.0f;
                for (int d = 0; d < DIM; d++)
                    dot += q[h][i][d] * kv->k[h / group][j][d];
                logits[h][i][j] = j > n_old + i ? -INFINITY
                                                : dot / sqrtf((float)DIM);
            }
    kf_logits_view lv = { &logits[0][0][0], n_rows, n_slots, CAPACITY,
                          (size_t)PROMPT * CAPACITY, KF_LOGITS_CAUSAL,
                          sizeof logits };
    CALL(kf_observe_logits(cache, layer, &lv));
    return KF_OK;
}

/* Select, compact both buffers, and check every kept row. */
static int select_and_compact(kf_cache *cache, int layer, layer_kv *kv)
{
    uint32_t n = 0;
    CALL(kf_slot_count(cache, layer, 0, &n));
    CALL(kf_select(cache, layer));
    kf_kv_view keys = view_of(kv->k, n), values = view_of(kv->v, n);
    CALL(kf_compact(cache, layer, &keys, &values));
    for (int g = 0; g < KV_HEADS; g++) {
        const int32_t *pos;
        uint32_t kept;
        CALL(kf_slot_positions(cache, layer, g, &pos, &kept));
        if (kept > BUDGET) {
            fprintf(stderr, "consumer: layer %d keeps %u > %d slots\n",
                    layer, kept, BUDGET);
            failures++;
        }
        for (uint32_t j = 0; j < kept; j++)
            if (kv->v[g][j][0] != (float)pos[j]) {
                fprintf(stderr,
                        "consumer: layer %d head %d slot %u holds position "
                        "%g, the library says %d\n",
                        layer, g, j, kv->v[g][j][0], pos[j]);
                failures++;
            }
    }
    return KF_OK;
}

static void print_kept(const kf_cache *cache, int layer, int kv_head)
{
    const int32_t *pos;
    uint32_t n;
    if (kf_slot_positions(cache, layer, kv_head, &pos, &n) != KF_OK)
        return;
    printf("layer %d KV head %d keeps %u positions:", layer, kv_head, n);
    for (uint32_t j = 0; j < n; j++)
        printf(" %d", pos[j]);
    printf("\n");
}

static int run(kf_cache *cache, layer_kv *kv)
{
    unsigned rng = 12345u;
    /* prefill: the whole prompt, then the first selection */
    for (int l = 0; l < LAYERS; l++) {
        append_rows(&kv[l], 0, PROMPT, 0, &rng);
        if (observe(cache, l, &kv[l], 0, PROMPT, &rng) != KF_OK)
            return 1;
        if (select_and_compact(cache, l, &kv[l]) != KF_OK)
            return 1;
    }
    /* decode: one token per step at its true position */
    for (int step = 0; step < STEPS; step++)
        for (int l = 0; l < LAYERS; l++) {
            uint32_t n;
            int32_t next;
            uint32_t steps;
            CALL(kf_slot_count(cache, l, 0, &n));
            CALL(kf_layer_progress(cache, l, &steps, &next));
            append_rows(&kv[l], n, 1, next, &rng);
            if (observe(cache, l, &kv[l], n, 1, &rng) != KF_OK)
                return 1;
            if (select_and_compact(cache, l, &kv[l]) != KF_OK)
                return 1;
        }
    return 0;
}

int main(void)
{
    printf("libkeyformer %s (header %d.%d.%d)\n", kf_version(),
           KF_VERSION_MAJOR, KF_VERSION_MINOR, KF_VERSION_PATCH);
    if (kf_version_number() != KF_VERSION_NUMBER) {
        fprintf(stderr, "consumer: library %u, header %d\n",
                kf_version_number(), KF_VERSION_NUMBER);
        return 1;
    }
    kf_config cfg;
    kf_config_default(&cfg);
    cfg.n_layers = LAYERS;
    cfg.n_heads = HEADS;
    cfg.n_kv_heads = KV_HEADS;
    cfg.head_dim = DIM;
    cfg.capacity = CAPACITY;
    cfg.budget_ratio = 0.0;
    cfg.budget_tokens = BUDGET;
    cfg.seed = 42;
    kf_cache *cache = NULL;
    int status = kf_cache_create(&cache, &cfg);
    if (status != KF_OK) {
        fail("kf_cache_create", status);
        return 1;
    }
    layer_kv *kv = calloc(LAYERS, sizeof *kv);
    if (!kv) {
        kf_cache_destroy(&cache);
        return 1;
    }
    int rc = run(cache, kv);
    for (int l = 0; l < LAYERS; l++)
        print_kept(cache, l, 0);
    uint32_t k = 0, w = 0;
    if (kf_budget(cache, &k, &w) == KF_OK)
        printf("budget %u slots, recent window %u\n", k, w);
    kf_cache_destroy(&cache);
    free(kv);
    if (rc || failures) {
        fprintf(stderr, "consumer: FAILED (%d problems)\n", failures + rc);
        return 1;
    }
    printf("consumer: OK\n");
    return 0;
}
