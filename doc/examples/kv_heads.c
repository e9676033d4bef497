/* doc/recipes.md, "Logits one KV head at a time": a host whose attention
 * runs KV head by KV head on its own OpenMP threads hands each head's
 * logits over right after computing them (kf_observe_kv_head), before its
 * softmax overwrites them in place, inside one kf_observe_begin / end
 * round per layer and step. A second cache, fed the same logits a whole
 * layer at a time with kf_observe_logits, must keep the same slots. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <keyformer.h>

enum { HEADS = 8, KV_HEADS = 4, GROUP = HEADS / KV_HEADS, CAPACITY = 64 };
enum { PROMPT = 40, STEPS = 12 };

/* the host's attention scores of query head h over n slots, step t */
static void head_logits(float *row, int h, uint32_t n, int t)
{
    for (uint32_t j = 0; j < n; j++)
        row[j] = sinf(0.37f * (float)(j * (h + 3)) + 0.11f * (float)t)
                 * 3.0f;
}

/* softmax in place, as many hosts do: the raw logits are gone after it */
static void softmax_in_place(float *row, uint32_t n)
{
    float max = -INFINITY, sum = 0.0f;
    for (uint32_t j = 0; j < n; j++)
        max = row[j] > max ? row[j] : max;
    for (uint32_t j = 0; j < n; j++)
        sum += row[j] = expf(row[j] - max);
    for (uint32_t j = 0; j < n; j++)
        row[j] /= sum;
}

/* One decode step of one layer of the host: the round around its own
 * parallel loop over KV heads. scores holds HEADS rows of CAPACITY. */
static int attend_layer(kf_cache *cache, int layer, uint32_t n_slots,
                        float *scores, int t)
{
    int rc = kf_observe_begin(cache, layer, 1);
    if (rc != KF_OK)
        return rc;
    int failed = KF_OK;
#pragma omp parallel for schedule(static)
    for (int g = 0; g < KV_HEADS; g++) {
        float *rows = scores + (size_t)g * GROUP * CAPACITY;
        for (int m = 0; m < GROUP; m++)
            head_logits(rows + m * CAPACITY, g * GROUP + m, n_slots, t);
        kf_logits_view view = { rows, 1, n_slots, n_slots, CAPACITY, 0,
                                sizeof(float) * GROUP * CAPACITY };
        int status = kf_observe_kv_head(cache, layer, g, &view);
        if (status != KF_OK) {
#pragma omp critical
            failed = status;
        }
        for (int m = 0; m < GROUP; m++)
            softmax_in_place(rows + m * CAPACITY, n_slots);
        /* ... then P.V with this KV head's values ... */
    }
    rc = kf_observe_end(cache, layer); /* the new row becomes a slot here */
    return failed != KF_OK ? failed : rc;
}

static kf_cache *create(void)
{
    kf_config cfg;
    kf_config_default(&cfg);
    cfg.n_layers = 1;
    cfg.n_heads = HEADS;
    cfg.n_kv_heads = KV_HEADS;
    cfg.head_dim = 16;
    cfg.capacity = CAPACITY;
    cfg.n_threads = 1; /* the host's threads call in; none of our own */
    kf_cache *c = NULL;
    return kf_cache_create(&c, &cfg) == KF_OK ? c : NULL;
}

int main(void)
{
    static float prompt[HEADS * PROMPT * PROMPT], scores[HEADS * CAPACITY];
    kf_cache *by_head = create(), *by_layer = create();
    if (!by_head || !by_layer)
        return 1;
    /* the prompt, causal, whole layer for both (a prompt works in rounds
     * too, KF_LOGITS_CAUSAL and all) */
    for (uint32_t h = 0; h < HEADS; h++)
        for (uint32_t i = 0; i < PROMPT; i++) {
            float *row = prompt + (h * PROMPT + i) * PROMPT;
            head_logits(row, (int)h, PROMPT, -(int)i);
            for (uint32_t j = i + 1; j < PROMPT; j++)
                row[j] = -INFINITY;
        }
    kf_logits_view pv = { prompt, PROMPT, PROMPT, PROMPT, PROMPT * PROMPT,
                          KF_LOGITS_CAUSAL, 0 };
    kf_cache *both[2] = { by_head, by_layer };
    for (int k = 0; k < 2; k++)
        if (kf_observe_logits(both[k], 0, &pv) || kf_select(both[k], 0)
            || kf_compact(both[k], 0, NULL, NULL))
            return 1;

    for (int t = 1; t <= STEPS; t++) {
        uint32_t n = 0;
        kf_slot_count(by_head, 0, 0, &n);
        n += 1; /* the new token's row */
        int rc = attend_layer(by_head, 0, n, scores, t);
        if (rc != KF_OK) {
            fprintf(stderr, "round: %s\n", kf_strerror(rc));
            return 1;
        }
        for (int h = 0; h < HEADS; h++) /* the same logits, whole layer */
            head_logits(scores + h * CAPACITY, h, n, t);
        kf_logits_view lv = { scores, 1, n, n, CAPACITY, 0, 0 };
        if (kf_observe_logits(by_layer, 0, &lv))
            return 1;
        for (int k = 0; k < 2; k++)
            if (kf_select(both[k], 0) || kf_compact(both[k], 0, NULL, NULL))
                return 1;
    }
    for (int g = 0; g < KV_HEADS; g++) {
        const int32_t *a, *b;
        const float *sa, *sb;
        uint32_t na, nb;
        kf_slot_positions(by_head, 0, g, &a, &na);
        kf_slot_positions(by_layer, 0, g, &b, &nb);
        kf_slot_scores(by_head, 0, g, &sa, &na);
        kf_slot_scores(by_layer, 0, g, &sb, &nb);
        if (na != nb || memcmp(a, b, na * sizeof *a)
            || memcmp(sa, sb, na * sizeof *sa)) {
            fprintf(stderr, "KV head %d: the two caches differ\n", g);
            return 1;
        }
    }
    printf("per-KV-head rounds and whole-layer calls: same slots, same scores\n");
    kf_cache_destroy(&by_head);
    kf_cache_destroy(&by_layer);
    return 0;
}
