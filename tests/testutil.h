/* Shared helpers for the unit tests. */
#ifndef KF_TESTUTIL_H
#define KF_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "keyformer.h"

/* Deterministic test random numbers (xorshift64*). */
typedef struct test_rng {
    uint64_t s;
} test_rng;

void test_rng_seed(test_rng *r, uint64_t seed);
uint32_t test_rng_u32(test_rng *r);
float test_rng_float(test_rng *r, float lo, float hi); /* [lo, hi) */

/* A small valid configuration: the given shape, Keyformer defaults. */
kf_config test_config(uint32_t layers, uint32_t heads, uint32_t kv_heads,
                      uint32_t head_dim, uint32_t capacity);

/* Everything observable about a cache, hashed: slot counts, positions,
 * scores, kept lists, progress, tau, budget, removed positions. Two equal
 * digests mean no query can tell the states apart. */
uint64_t test_cache_digest(const kf_cache *c);

/* Fills logits [heads][rows][slots] (dense, strides rows*slots, slots) with
 * random values in [-4, 4); causal rows get -inf past their diagonal. */
void test_fill_logits(float *x, uint32_t heads, uint32_t rows, uint32_t slots,
                      int causal, test_rng *r);

/* The model of kf_compact's moves: src[i] is the old slot that slot i
 * holds afterwards, for a keep list of n_keep ascending slots. In position
 * order src = keep; under KF_ORDER_ANY kept slots below n_keep stay and
 * the others below n_keep take, in ascending order, the kept slots from
 * n_keep up, ascending. */
void test_compact_sources(const uint32_t *keep, uint32_t n_keep,
                          kf_slot_order order, uint32_t *src);

/* Observes `rows` new rows (dense logits as above) on `layer`; returns the
 * status. The caller passes a buffer of heads*rows*slots floats. */
int test_observe(kf_cache *c, int layer, float *buf, uint32_t rows,
                 int causal, test_rng *r);

/* 1 if one of the n slot positions is p. */
int test_holds_position(const int32_t *pos, uint32_t n, int32_t p);

/* kf_cache_copy_state into a cache of configuration b from one of a (both
 * created here and destroyed); a failed create returns its status. */
int test_copy_state_status(const kf_config *a, const kf_config *b);

/* 1 if caches a and b keep the same slots in every KV head of a layer. */
int test_same_kept_slots(const kf_cache *a, const kf_cache *b, int layer,
                         uint32_t kv_heads);

#endif
