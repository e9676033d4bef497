/* doc/recipes.md, "Positions": an ALiBi host adds -slope * distance to its
 * logits, and after a compaction the distance is between original
 * positions, not slots. kf_slot_positions gives each slot's position, per
 * KV head (each KV head keeps its own tokens). */
#include <math.h>
#include <stdio.h>

#include <keyformer.h>

enum { HEADS = 4, KV_HEADS = 2, DIM = 8, CAPACITY = 32, PROMPT = 20 };

static float keys[KV_HEADS][CAPACITY][DIM];
static float query[HEADS][DIM];
static float logits[HEADS * PROMPT * CAPACITY];
static unsigned rng = 5;

static float rnd(void)
{
    rng = rng * 1103515245u + 12345u;
    return (float)((rng >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static float alibi_slope(int h) /* 2^(-8 (h + 1) / HEADS) */
{
    return exp2f(-8.0f * (float)(h + 1) / HEADS);
}

/* Logits of one decode row of layer `layer` over its n slots (the new
 * token's key is already in slot n - 1). */
static void alibi_decode_logits(const kf_cache *cache, int layer, uint32_t n,
                                int32_t query_pos)
{
    for (int h = 0; h < HEADS; h++) {
        int g = h / (HEADS / KV_HEADS);
        const int32_t *pos;
        uint32_t n_pos;
        kf_slot_positions(cache, layer, g, &pos, &n_pos); /* n_pos = n - 1 */
        for (uint32_t j = 0; j < n; j++) {
            /* the new token is not a slot yet: its position is query_pos */
            int32_t key_pos = j < n_pos ? pos[j] : query_pos;
            float dot = 0.0f;
            for (int d = 0; d < DIM; d++)
                dot += query[h][d] * keys[g][j][d];
            logits[(size_t)h * n + j] = dot / sqrtf((float)DIM)
                - alibi_slope(h) * (float)(query_pos - key_pos);
        }
    }
}

int main(void)
{
    kf_config cfg;
    kf_config_default(&cfg);
    cfg.n_layers = 1;
    cfg.n_heads = HEADS;
    cfg.n_kv_heads = KV_HEADS;
    cfg.head_dim = DIM;
    cfg.capacity = CAPACITY;
    kf_cache *cache = NULL;
    if (kf_cache_create(&cache, &cfg) != KF_OK)
        return 1;

    /* prefill: slots are still positions 0 .. PROMPT - 1 */
    for (int g = 0; g < KV_HEADS; g++)
        for (int j = 0; j < PROMPT; j++)
            for (int d = 0; d < DIM; d++)
                keys[g][j][d] = rnd();
    for (int h = 0; h < HEADS; h++)
        for (int i = 0; i < PROMPT; i++)
            for (int j = 0; j < PROMPT; j++)
                logits[(h * PROMPT + i) * PROMPT + j] =
                    j > i ? -INFINITY
                          : rnd() - alibi_slope(h) * (float)(i - j);
    kf_logits_view lv = { logits, PROMPT, PROMPT, PROMPT, PROMPT * PROMPT,
                          KF_LOGITS_CAUSAL, 0 };
    kf_kv_view kv = { keys, KF_DTYPE_F32, PROMPT, DIM, CAPACITY * DIM, 0, 0 };
    int rc = kf_observe_logits(cache, 0, &lv);
    if (rc == KF_OK)
        rc = kf_select(cache, 0);
    if (rc == KF_OK)
        rc = kf_compact(cache, 0, &kv, NULL);

    for (int t = 0; t < 4 && rc == KF_OK; t++) { /* decode */
        uint32_t n, steps;
        int32_t query_pos;
        kf_slot_count(cache, 0, 0, &n);
        kf_layer_progress(cache, 0, &steps, &query_pos);
        for (int g = 0; g < KV_HEADS; g++)
            for (int d = 0; d < DIM; d++)
                keys[g][n][d] = rnd();
        for (int h = 0; h < HEADS; h++)
            for (int d = 0; d < DIM; d++)
                query[h][d] = rnd();
        alibi_decode_logits(cache, 0, n + 1, query_pos);
        kf_logits_view row = { logits, 1, n + 1, n + 1, n + 1, 0, 0 };
        kv.n_slots = n + 1;
        rc = kf_observe_logits(cache, 0, &row);
        if (rc == KF_OK)
            rc = kf_select(cache, 0);
        if (rc == KF_OK)
            rc = kf_compact(cache, 0, &kv, NULL);
        printf("token at position %d: %s\n", query_pos, kf_strerror(rc));
    }
    kf_cache_destroy(&cache);
    return rc == KF_OK ? 0 : 1;
}
