/* Kernel table: every hot loop of the library goes through these pointers.
 * kf_dsp_init() fills the table with the portable C versions (the
 * specification), then lets each instruction set override what it does
 * better. The table is copied into each cache, so nothing global changes
 * after start-up. */
#ifndef KF_DSP_H
#define KF_DSP_H

#include <stddef.h>
#include <stdint.h>

#include "rng.h"

/* Status of a scoring kernel: the row is fine, or why not. */
enum { KF_ROW_OK = 0, KF_ROW_NAN = 1, KF_ROW_EMPTY = 2 };

/* acc[j] += softmax_j((x[j] + gumbel(key, pos[j])) * inv_tau) for j < n.
 * scratch holds n floats. Returns KF_ROW_*; on failure acc is untouched. */
#define KF_SCORE_GUMBEL_FN(name)                                              \
    int name(float *acc, const float *x, const int32_t *pos, uint32_t n,      \
             kf_noise_key key, float inv_tau, float *scratch)

/* acc[j] += softmax_j(x[j]) for j < n (the H2O score). */
#define KF_SCORE_SOFTMAX_FN(name)                                             \
    int name(float *acc, const float *x, uint32_t n, float *scratch)

/* Writes to out[], ascending, the `need` indices in [0, n) whose scores are
 * largest, the lower index winning ties; need <= n. keys holds n uint32. */
#define KF_SELECT_TOP_FN(name)                                                \
    void name(uint32_t *out, const float *scores, uint32_t n, uint32_t need,  \
              uint32_t *keys)

/* Row i of n_keep moves from byte offset keep[i] * stride to i * stride,
 * row_bytes each, in place; keep is ascending so rows only move down. */
#define KF_COMPACT_ROWS_FN(name)                                              \
    void name(uint8_t *base, size_t stride, const uint32_t *keep,             \
              uint32_t n_keep, size_t row_bytes)

typedef KF_SCORE_GUMBEL_FN((*kf_score_gumbel_fn));
typedef KF_SCORE_SOFTMAX_FN((*kf_score_softmax_fn));
typedef KF_SELECT_TOP_FN((*kf_select_top_fn));
typedef KF_COMPACT_ROWS_FN((*kf_compact_rows_fn));

typedef struct kf_dsp {
    kf_score_gumbel_fn score_gumbel;
    kf_score_softmax_fn score_softmax;
    kf_select_top_fn select_top;
    kf_compact_rows_fn compact_rows;
} kf_dsp;

KF_SCORE_GUMBEL_FN(kf_score_gumbel_c);
KF_SCORE_SOFTMAX_FN(kf_score_softmax_c);
KF_SELECT_TOP_FN(kf_select_top_c);
KF_COMPACT_ROWS_FN(kf_compact_rows_c);

/* The C table, then the best variants the CPU and the mask allow. */
void kf_dsp_init(kf_dsp *dsp);

#endif
