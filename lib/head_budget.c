/* Adaptive per-KV-head budgets (kf_config::head_budget, the Ada-KV idea):
 * at a layer's prompt selection the KV heads pool their ranked places and
 * the highest normalised scores win them, so a head whose attention is
 * concentrated gives places to one whose attention is spread. Heads then
 * hold different numbers of live slots; every head keeps the same number
 * of rows, padded with holes (position -1) the host masks. Scalar C, once
 * per prompt: every instruction set gives the same split. */
#include <math.h>
#include <string.h>

#include "internal.h"

/* Order of a finite key >= 0 as an integer (adding +0 turns -0 into +0). */
static uint32_t key_bits(float x)
{
    uint32_t u;
    x += 0.0f;
    memcpy(&u, &x, sizeof u);
    return u;
}

typedef struct split {
    uint32_t n_kv, n, first, end; /* rankable slots: [first, end) */
    uint32_t floor, ceil;         /* places per head */
    size_t stride;                /* floats between heads' keys */
    const float *keys;            /* [n_kv][stride]: normalised keys */
} split;

/* Places of head g at threshold t: its keys >= t, clamped to the floor
 * and the ceiling. */
static uint32_t places_at(const split *s, uint32_t g, uint32_t t)
{
    const float *a = s->keys + g * s->stride;
    uint32_t count = 0;
    for (uint32_t j = s->first; j < s->end; j++)
        count += key_bits(a[j]) >= t;
    return count < s->floor ? s->floor : count > s->ceil ? s->ceil : count;
}

static uint64_t total_at(const split *s, uint32_t t)
{
    uint64_t total = 0;
    for (uint32_t g = 0; g < s->n_kv; g++)
        total += places_at(s, g, t);
    return total;
}

/* The threshold of the split: m_g is head g's places at `hi`, plus the
 * ties at `lo` (places at lo minus places at hi) while `extra` lasts, the
 * lower heads first; the m_g sum to `want`. lo is the largest threshold
 * that leaves at least `want` places; the floor and ceiling make
 * total(0) >= want >= total(above every key). */
typedef struct threshold {
    uint32_t lo, hi;
    uint64_t extra;
} threshold;

static threshold find_threshold(const split *s, uint64_t want)
{
    threshold t = { 0x7F800001u, 0x7F800001u, 0 }; /* above every finite key */
    if (total_at(s, t.hi) >= want) /* every head at its floor */
        return t;
    t.lo = 0;
    while (t.hi - t.lo > 1) { /* total(lo) >= want > total(hi) */
        uint32_t mid = t.lo + (t.hi - t.lo) / 2;
        if (total_at(s, mid) >= want)
            t.lo = mid;
        else
            t.hi = mid;
    }
    t.extra = want - total_at(s, t.hi);
    return t;
}

/* m_g of the next head g (called for g = 0, 1, ... in order). */
static uint32_t next_places(const split *s, threshold *t, uint32_t g)
{
    uint32_t places = places_at(s, g, t->hi);
    uint32_t more = places_at(s, g, t->lo) - places;
    more = more < t->extra ? more : (uint32_t)t->extra;
    t->extra -= more;
    return places + more;
}

/* The keep list of one head: its k_g best (window and sinks ranked +inf),
 * then rows - k_g of its evicted slots, the lowest first, turned into
 * holes (position -1, score 0); ascending, into the keep lane. */
static void head_keep_list(kf_cache *c, uint32_t layer, uint32_t g,
                           const float *ranked, uint32_t k_g, uint32_t rows)
{
    size_t lane = kf_lane(c, layer, g);
    uint32_t *keep = c->keep + lane, *merged = c->sel_keys;
    uint32_t n = c->layers[layer].n_slots, holes = rows - k_g;
    c->dsp.select_top(keep, ranked, n, k_g, c->sel_keys);
    if (!holes)
        return;
    uint32_t next = 0, count = 0;
    for (uint32_t j = 0; j < n && count < rows; j++) {
        if (next < k_g && keep[next] == j) {
            next++;
        } else if (holes) {
            holes--;
            c->positions[lane + j] = -1;
            c->scores[lane + j] = 0.0f;
        } else {
            continue;
        }
        merged[count++] = j;
    }
    memcpy(keep, merged, rows * sizeof *keep);
}

uint32_t kf_select_adaptive(kf_cache *c, uint32_t layer)
{
    kf_layer *l = &c->layers[layer];
    uint32_t n = l->n_slots, n_kv = c->cfg.n_kv_heads, cap = c->cfg.capacity;
    uint32_t w = l->window, sinks = c->cfg.sink_tokens;
    uint32_t m = l->budget - w - sinks; /* >= 1: kf_budgets_fit */
    uint32_t slack = c->cfg.evict_interval > 1 ? c->cfg.evict_interval : 0;
    /* in the prompt slot j holds position j: the sinks are slots 0 ..
     * S - 1, the window the last w; k_l + B <= capacity and n > k_l, so
     * the ceiling is at least m */
    split s = { n_kv, n, sinks, n - w, 0, 0, c->scratch_stride, c->kv_scratch };
    double floor = ceil((double)c->cfg.head_floor * (double)m);
    s.floor = floor < 1.0 ? 1 : floor > (double)m ? m : (uint32_t)floor;
    s.ceil = 2 * m < cap - slack - w - sinks ? 2 * m : cap - slack - w - sinks;
    s.ceil = s.ceil < n - w - sinks ? s.ceil : n - w - sinks;

    /* each head's keys (score_norm applied) over their sum */
    for (uint32_t g = 0; g < n_kv; g++) {
        size_t lane = kf_lane(c, layer, g);
        float *a = c->kv_scratch + g * s.stride;
        const float *key = kf_rank_keys(c, l, c->scores + lane,
                                        c->positions + lane, n, a);
        if (key != a)
            memcpy(a, key, n * sizeof *a);
        float sum = 0.0f; /* in slot order */
        for (uint32_t j = sinks; j < n - w; j++)
            sum += a[j];
        for (uint32_t j = sinks; j < n - w && sum > 0.0f; j++)
            a[j] /= sum;
    }
    const threshold t = find_threshold(&s, (uint64_t)n_kv * m);
    threshold pass = t;
    uint32_t rows = 0;
    for (uint32_t g = 0; g < n_kv; g++) {
        uint32_t k_g = w + sinks + next_places(&s, &pass, g);
        rows = k_g > rows ? k_g : rows;
    }
    pass = t;
    for (uint32_t g = 0; g < n_kv; g++) {
        uint32_t k_g = w + sinks + next_places(&s, &pass, g);
        float *a = c->kv_scratch + g * s.stride;
        for (uint32_t j = 0; j < sinks; j++)
            a[j] = INFINITY;
        for (uint32_t j = n - w; j < n; j++)
            a[j] = INFINITY;
        head_keep_list(c, layer, g, a, k_g, rows);
    }
    l->rows = rows;
    return rows;
}

void kf_mask_holes(const kf_cache *c, uint32_t layer, uint32_t g, float *row,
                   uint32_t n)
{
    const kf_layer *l = &c->layers[layer];
    if (!l->rows)
        return;
    const int32_t *pos = c->positions + kf_lane(c, layer, g);
    n = n < l->n_slots ? n : l->n_slots;
    for (uint32_t j = 0; j < n; j++)
        if (pos[j] < 0)
            row[j] = -INFINITY;
}
