/* kf_compact: apply a layer's selection to the host's K/V buffers and to
 * the library's own scores and positions. */
#include <string.h>

#include "internal.h"

/* A view's rows as kf_check_rows sees them: `elem` bytes per unit (the
 * unit of its strides and of the alignment it needs) and `len` units per
 * row. Quantized rows (KF_DTYPE_ROW_BYTES) are row_bytes units of one
 * byte; the others head_dim elements. Returns 0 for a bad dtype. */
static size_t view_units(const kf_cache *c, const kf_kv_view *v, size_t *len)
{
    *len = c->cfg.head_dim;
    switch (v->dtype) {
    case KF_DTYPE_F32: return 4;
    case KF_DTYPE_F16: return 2;
    case KF_DTYPE_BF16: return 2;
    case KF_DTYPE_ROW_BYTES: *len = v->row_bytes; return 1;
    }
    return 0;
}

static int check_kv_view(const kf_cache *c, const kf_layer *l,
                         const kf_kv_view *v)
{
    if (!v)
        return KF_OK;
    size_t len, elem = view_units(c, v, &len);
    if (!v->data || !elem)
        return KF_EINVAL;
    if (len == 0) /* KF_DTYPE_ROW_BYTES with row_bytes 0 */
        return KF_ERANGE;
    if (v->n_slots != l->n_slots)
        return KF_EMISMATCH;
    size_t bytes;
    return kf_check_rows(v->data, elem, len, v->token_stride, v->n_slots,
                         v->head_stride, c->cfg.n_kv_heads, v->bytes, &bytes);
}

/* K and V must not share memory: a move in one would corrupt the other. */
static int views_overlap(const kf_kv_view *k, const kf_kv_view *v,
                         size_t k_bytes, size_t v_bytes)
{
    uintptr_t k0 = (uintptr_t)k->data, v0 = (uintptr_t)v->data;
    return k0 < v0 + v_bytes && v0 < k0 + k_bytes;
}

static size_t view_bytes(const kf_cache *c, const kf_kv_view *v)
{
    size_t bytes = 0, len, elem = view_units(c, v, &len);
    kf_check_rows(v->data, elem, len, v->token_stride, v->n_slots,
                  v->head_stride, c->cfg.n_kv_heads, 0, &bytes);
    return bytes;
}

/* Bytes of one row of a (validated) view. */
static size_t row_size(const kf_cache *c, const kf_kv_view *v)
{
    size_t len, elem = view_units(c, v, &len);
    return elem * len;
}

static void compact_view(const kf_cache *c, uint32_t layer, uint32_t g,
                         const kf_kv_view *v)
{
    if (!v)
        return;
    size_t len, elem = view_units(c, v, &len);
    uint8_t *head = (uint8_t *)v->data + g * v->head_stride * elem;
    c->dsp.compact_rows(head, v->token_stride * elem,
                        c->keep + kf_lane(c, layer, g),
                        c->layers[layer].n_keep, len * elem);
}

/* The library's own per-slot arrays follow the host's rows. */
static void compact_lane(kf_cache *c, uint32_t layer, uint32_t g)
{
    const uint32_t *keep = c->keep + kf_lane(c, layer, g);
    float *s = c->scores + kf_lane(c, layer, g);
    int32_t *pos = c->positions + kf_lane(c, layer, g);
    for (uint32_t i = 0, n = c->layers[layer].n_keep; i < n; i++) {
        s[i] = s[keep[i]];
        pos[i] = pos[keep[i]];
    }
}

/* One row of a view, slot src to slot dst (KF_ORDER_ANY). */
static void move_row(const kf_cache *c, uint32_t g, const kf_kv_view *v,
                     uint32_t dst, uint32_t src)
{
    if (!v)
        return;
    size_t len, elem = view_units(c, v, &len);
    uint8_t *head = (uint8_t *)v->data + g * v->head_stride * elem;
    size_t stride = v->token_stride * elem;
    memcpy(head + dst * stride, head + src * stride, len * elem);
}

/* First index a in [lo, hi) of the ascending keep list with
 * keep[a] - slope * a >= bound (slope 0 or 1: both sides grow with a, as
 * keep[a] - a counts the evicted slots below keep[a]); hi if none. */
static uint32_t first_at_least(const uint32_t *keep, uint32_t lo, uint32_t hi,
                               uint32_t slope, uint32_t bound)
{
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (keep[mid] - slope * mid >= bound)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* KF_ORDER_ANY: the h-th evicted slot below n_keep (ascending) takes the
 * h-th kept slot at or above n_keep: one row moved per eviction, none of
 * them overlapping (sources are all above the destinations). Holes are
 * found by binary search, so a step that evicts one slot costs O(log k). */
static void fill_lane(kf_cache *c, uint32_t layer, uint32_t g,
                      const kf_kv_view *k, const kf_kv_view *v)
{
    const uint32_t *keep = c->keep + kf_lane(c, layer, g);
    float *s = c->scores + kf_lane(c, layer, g);
    int32_t *pos = c->positions + kf_lane(c, layer, g);
    uint32_t n_keep = c->layers[layer].n_keep;
    /* kept slots below n_keep stay: keep[0 .. below) */
    uint32_t below = first_at_least(keep, 0, n_keep, 0, n_keep), a = 0;
    for (uint32_t h = 0; below + h < n_keep; h++) {
        /* the h-th hole: after the first kept slot with h + 1 below it */
        a = first_at_least(keep, a, below, 1, h + 1);
        uint32_t hole = a + h, src = keep[below + h];
        move_row(c, g, k, hole, src);
        move_row(c, g, v, hole, src);
        s[hole] = s[src];
        pos[hole] = pos[src];
    }
}

/* One KV head's rows of K and V, and its slot metadata. */
static void compact_kv_head(kf_cache *c, uint32_t layer, uint32_t g,
                            const kf_kv_view *k, const kf_kv_view *v)
{
    if (c->cfg.slot_order == KF_ORDER_ANY) {
        fill_lane(c, layer, g, k, v);
        return;
    }
    compact_view(c, layer, g, k);
    compact_view(c, layer, g, v);
    compact_lane(c, layer, g);
}

/* Rows of K and V the compaction of `layer` moves: one per eviction
 * (KF_ORDER_ANY), or every kept row after the first hole (position
 * order; keep[i] - i counts the evicted slots below keep[i]). */
static size_t moved_rows(const kf_cache *c, uint32_t layer)
{
    const kf_layer *l = &c->layers[layer];
    if (c->cfg.slot_order == KF_ORDER_ANY)
        return (size_t)(l->n_slots - l->n_keep) * c->cfg.n_kv_heads;
    size_t rows = 0;
    for (uint32_t g = 0; g < c->cfg.n_kv_heads; g++)
        rows += l->n_keep - first_at_least(c->keep + kf_lane(c, layer, g), 0,
                                           l->n_keep, 1, 1);
    return rows;
}

static void compact_layer(kf_cache *c, uint32_t layer, const kf_kv_view *k,
                          const kf_kv_view *v)
{
    /* nothing evicted (keep lists are ascending, so they are 0 .. n - 1):
     * no row moves, which batched eviction relies on between evictions */
    int moves = c->layers[layer].n_keep != c->layers[layer].n_slots;
    uint32_t n_kv = moves ? c->cfg.n_kv_heads : 0;
    /* bytes of K and V moved (as fp32 without views): a second thread
     * pays off from about 1 MiB, since waking it costs tens of
     * microseconds (with OMP_WAIT_POLICY=passive on this VM, the bundled
     * model's 4K step compacted in 0.07-0.08 ms on one thread and
     * 0.15-0.20 ms on two) */
    size_t row_bytes = (size_t)c->cfg.head_dim * 4 * 2;
    if (k || v) /* quantized rows may be much smaller */
        row_bytes = (k ? row_size(c, k) : 0) + (v ? row_size(c, v) : 0);
    size_t bytes = n_kv ? moved_rows(c, layer) * row_bytes : 0;
    if (bytes > ((size_t)1 << 20) && n_kv > 1 && c->n_threads > 1) {
#pragma omp parallel for num_threads(c->n_threads) schedule(static)
        for (uint32_t g = 0; g < n_kv; g++)
            compact_kv_head(c, layer, g, k, v);
    } else { /* no OpenMP region: see kf_score_heads */
        for (uint32_t g = 0; g < n_kv; g++)
            compact_kv_head(c, layer, g, k, v);
    }
    c->layers[layer].n_slots = c->layers[layer].n_keep;
    c->layers[layer].state = KF_LAYER_IDLE;
}

int kf_compact(kf_cache *c, int layer, const kf_kv_view *k_view,
               const kf_kv_view *v_view)
{
    if (!c)
        return KF_EINVAL;
    if (layer == KF_ALL_LAYERS) {
        if (k_view || v_view)
            return KF_EINVAL;
        if (kf_round_open(c))
            return KF_ESTATE;
        for (uint32_t l = 0; l < c->cfg.n_layers; l++)
            if (c->layers[l].state != KF_LAYER_SELECTED)
                return KF_ESTATE;
        for (uint32_t l = 0; l < c->cfg.n_layers; l++)
            compact_layer(c, l, NULL, NULL);
        return KF_OK;
    }
    if (!kf_layer_ok(c, layer))
        return KF_ERANGE;
    const kf_layer *l = &c->layers[layer];
    if (l->state != KF_LAYER_SELECTED || kf_round_open(c))
        return KF_ESTATE;
    int status = check_kv_view(c, l, k_view);
    if (!status)
        status = check_kv_view(c, l, v_view);
    if (status)
        return status;
    if (k_view && v_view
        && views_overlap(k_view, v_view, view_bytes(c, k_view),
                         view_bytes(c, v_view)))
        return KF_ELAYOUT;
    compact_layer(c, (uint32_t)layer, k_view, v_view);
    return KF_OK;
}
