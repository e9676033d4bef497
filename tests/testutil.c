#include <math.h>
#include <string.h>

#include "testutil.h"

void test_rng_seed(test_rng *r, uint64_t seed)
{
    r->s = seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;
    if (!r->s)
        r->s = 1;
}

uint32_t test_rng_u32(test_rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return (uint32_t)((r->s * 0x2545f4914f6cdd1dull) >> 32);
}

float test_rng_float(test_rng *r, float lo, float hi)
{
    return lo + (hi - lo) * (float)(test_rng_u32(r) >> 8) * 0x1p-24f;
}

kf_config test_config(uint32_t layers, uint32_t heads, uint32_t kv_heads,
                      uint32_t head_dim, uint32_t capacity)
{
    kf_config cfg;
    kf_config_spec_exact(&cfg); /* the spec: the reference model's order and noise */
    cfg.n_layers = layers;
    cfg.n_heads = heads;
    cfg.n_kv_heads = kv_heads;
    cfg.head_dim = head_dim;
    cfg.capacity = capacity;
    cfg.n_threads = 1;
    return cfg;
}

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

uint64_t test_cache_digest(const kf_cache *c)
{
    uint64_t h = 0xcbf29ce484222325ull;
    kf_config cfg;
    kf_cache_config(c, &cfg);
    uint32_t k = 0, w = 0;
    int st = kf_budget(c, &k, &w);
    h = mix(h, &st, sizeof st);
    h = mix(h, &k, sizeof k);
    h = mix(h, &w, sizeof w);
    for (int l = 0; l < (int)cfg.n_layers; l++) {
        uint32_t steps;
        int32_t next;
        float tau;
        kf_layer_progress(c, l, &steps, &next);
        kf_current_tau(c, l, &tau);
        h = mix(h, &steps, sizeof steps);
        h = mix(h, &next, sizeof next);
        h = mix(h, &tau, sizeof tau);
        for (int g = 0; g < (int)cfg.n_kv_heads; g++) {
            const int32_t *pos;
            const float *sc;
            const uint32_t *keep;
            uint32_t n, nk = 0;
            kf_slot_positions(c, l, g, &pos, &n);
            h = mix(h, &n, sizeof n);
            h = mix(h, pos, n * sizeof *pos);
            kf_slot_scores(c, l, g, &sc, &n);
            h = mix(h, sc, n * sizeof *sc);
            st = kf_kept_slots(c, l, g, &keep, &nk);
            h = mix(h, &st, sizeof st);
            if (!st)
                h = mix(h, keep, nk * sizeof *keep);
        }
    }
    const int32_t *removed;
    uint32_t nr = 0;
    st = kf_removed_positions(c, &removed, &nr);
    h = mix(h, &st, sizeof st);
    if (!st)
        h = mix(h, removed, nr * sizeof *removed);
    return h;
}

void test_fill_logits(float *x, uint32_t heads, uint32_t rows, uint32_t slots,
                      int causal, test_rng *r)
{
    uint32_t n_old = slots - rows;
    for (uint32_t h = 0; h < heads; h++)
        for (uint32_t i = 0; i < rows; i++)
            for (uint32_t j = 0; j < slots; j++)
                x[((size_t)h * rows + i) * slots + j] =
                    causal && j > n_old + i ? -INFINITY
                                            : test_rng_float(r, -4.0f, 4.0f);
}

int test_observe(kf_cache *c, int layer, float *buf, uint32_t rows,
                 int causal, test_rng *r)
{
    kf_config cfg;
    kf_cache_config(c, &cfg);
    uint32_t n = 0;
    kf_slot_count(c, layer, 0, &n);
    uint32_t slots = n + rows;
    test_fill_logits(buf, cfg.n_heads, rows, slots, causal, r);
    kf_logits_view v = { buf, rows, slots, slots, (size_t)rows * slots,
                         causal ? KF_LOGITS_CAUSAL : 0u, 0 };
    return kf_observe_logits(c, layer, &v);
}

void test_compact_sources(const uint32_t *keep, uint32_t n_keep,
                          kf_slot_order order, uint32_t *src)
{
    uint32_t below = 0;
    while (below < n_keep && keep[below] < n_keep)
        below++;
    for (uint32_t i = 0, a = 0, next = below; i < n_keep; i++) {
        if (order != KF_ORDER_ANY)
            src[i] = keep[i];
        else if (a < below && keep[a] == i)
            src[i] = keep[a++];
        else
            src[i] = keep[next++];
    }
}

int test_same_kept_slots(const kf_cache *a, const kf_cache *b, int layer,
                         uint32_t kv_heads)
{
    for (uint32_t g = 0; g < kv_heads; g++) {
        const uint32_t *ka, *kb;
        uint32_t na, nb;
        if (kf_kept_slots(a, layer, (int)g, &ka, &na) != KF_OK
            || kf_kept_slots(b, layer, (int)g, &kb, &nb) != KF_OK || na != nb
            || memcmp(ka, kb, na * sizeof *ka) != 0)
            return 0;
    }
    return 1;
}

int test_copy_state_status(const kf_config *a, const kf_config *b)
{
    kf_cache *ca = NULL, *cb = NULL;
    int status = kf_cache_create(&ca, a);
    if (status == KF_OK)
        status = kf_cache_create(&cb, b);
    if (status == KF_OK)
        status = kf_cache_copy_state(cb, ca);
    kf_cache_destroy(&ca);
    kf_cache_destroy(&cb);
    return status;
}

int test_holds_position(const int32_t *pos, uint32_t n, int32_t p)
{
    for (uint32_t j = 0; j < n; j++)
        if (pos[j] == p)
            return 1;
    return 0;
}
