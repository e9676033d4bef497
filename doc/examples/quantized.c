/* doc/recipes.md, "Quantized caches": a host that stores K as q8_0 (per
 * block of 32 values an f16 scale and 32 int8, 34 bytes) and V as f16
 * hands kf_compact a KF_DTYPE_ROW_BYTES view of its keys. The library
 * never reads them; the host scores from its own logits. Each kept row
 * must come out byte for byte where its position's row was. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <keyformer.h>

enum { HEADS = 4, KV_HEADS = 2, DIM = 64, CAPACITY = 48, PROMPT = 40,
       STEPS = 6 };
enum { Q8_BLOCK = 34, ROW_BYTES = DIM / 32 * Q8_BLOCK }; /* 68 */

/* [KV head][row] of opaque q8_0 rows; [row][KV head][dim] f16 values; one
 * byte past each buffer start, to show no alignment is needed */
static uint8_t k_mem[1 + KV_HEADS * CAPACITY * ROW_BYTES];
static uint16_t v_mem[CAPACITY][KV_HEADS][DIM];
static float logits[HEADS * PROMPT * PROMPT];
static unsigned rng = 11;

static unsigned rnd(void)
{
    rng = rng * 1103515245u + 12345u;
    return rng >> 8;
}

/* The host's rows of position p: any bytes will do, as long as they can
 * be recognised after the compaction. */
static void write_rows(uint8_t *k_row, uint16_t *v_row, int32_t p)
{
    for (int b = 0; b < ROW_BYTES; b++)
        k_row[b] = (uint8_t)(p * 31 + b * 7);
    for (int d = 0; d < DIM; d++)
        v_row[d] = (uint16_t)(p * 1000 + d);
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
    cfg.budget_tokens = 16;
    cfg.budget_ratio = 0.0;
    kf_cache *cache = NULL;
    if (kf_cache_create(&cache, &cfg) != KF_OK)
        return 1;
    uint8_t *k_cache = k_mem + 1;

    uint32_t n_old = 0;
    int32_t next_pos = 0;
    for (int step = 0; step <= STEPS; step++) {
        uint32_t n_rows = step ? 1 : PROMPT, n_slots = n_old + n_rows;
        for (uint32_t j = n_old; j < n_slots; j++, next_pos++)
            for (int g = 0; g < KV_HEADS; g++)
                write_rows(k_cache + ((size_t)g * CAPACITY + j) * ROW_BYTES,
                           v_mem[j][g], next_pos);
        for (size_t i = 0; i < (size_t)HEADS * n_rows * n_slots; i++)
            logits[i] = (float)(rnd() % 1000) / 250.0f;
        kf_logits_view lv = { .data = logits, .n_rows = n_rows,
                              .n_slots = n_slots, .row_stride = n_slots,
                              .head_stride = (size_t)n_rows * n_slots };
        /* q8_0 keys: opaque rows, strides in bytes */
        kf_kv_view k = { .data = k_cache, .dtype = KF_DTYPE_ROW_BYTES,
                         .n_slots = n_slots, .row_bytes = ROW_BYTES,
                         .token_stride = ROW_BYTES,
                         .head_stride = (size_t)CAPACITY * ROW_BYTES,
                         .bytes = sizeof k_mem - 1 };
        kf_kv_view v = { .data = v_mem, .dtype = KF_DTYPE_F16,
                         .n_slots = n_slots, .token_stride = KV_HEADS * DIM,
                         .head_stride = DIM, .bytes = sizeof v_mem };
        int rc = kf_observe_logits(cache, 0, &lv);
        if (rc == KF_OK)
            rc = kf_select(cache, 0);
        if (rc == KF_OK)
            rc = kf_compact(cache, 0, &k, &v);
        if (rc != KF_OK) {
            fprintf(stderr, "step %d: %s\n", step, kf_strerror(rc));
            return 1;
        }
        /* slot j of each KV head holds the rows written for pos[j] */
        for (int g = 0; g < KV_HEADS; g++) {
            const int32_t *pos;
            kf_slot_positions(cache, 0, g, &pos, &n_old);
            for (uint32_t j = 0; j < n_old; j++) {
                uint8_t want_k[ROW_BYTES];
                uint16_t want_v[DIM];
                write_rows(want_k, want_v, pos[j]);
                if (memcmp(k_cache + ((size_t)g * CAPACITY + j) * ROW_BYTES,
                           want_k, ROW_BYTES)
                    || memcmp(v_mem[j][g], want_v, sizeof want_v)) {
                    fprintf(stderr, "step %d head %d slot %u: wrong row\n",
                            step, g, j);
                    return 1;
                }
            }
        }
    }
    printf("q8_0 K (%d-byte rows) and f16 V: %u slots kept per KV head, "
           "every row where its position's row was\n", ROW_BYTES, n_old);
    kf_cache_destroy(&cache);
    return 0;
}
