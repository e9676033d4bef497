/* Kernel table: every hot loop of the library goes through these pointers.
 * kf_dsp_init() fills the table with the portable C versions (the
 * specification), then lets each instruction set override what it does
 * better. The table is copied into each cache, so nothing global changes
 * after start-up. */
#ifndef KF_DSP_H
#define KF_DSP_H

#include <stddef.h>
#include <stdint.h>

#include "keyformer.h"
#include "rng.h"

/* Status of a scoring kernel: the row is fine, or why not. */
enum { KF_ROW_OK = 0, KF_ROW_NAN = 1, KF_ROW_EMPTY = 2 };

/* SIMD score kernels prefetch the logits this many floats (4 KiB) ahead
 * of their first pass. A prompt's logits come from memory, and the
 * hardware prefetcher stops at every 4 KiB page: without this the
 * AVX-512 kernel reading a 256 MiB buffer ran at 0.78 ns per logit,
 * with it 0.55 (0.52 with the row already in cache). Prefetches never
 * fault, so reading past the row is harmless. At tau = 1 the first pass
 * is light (the row's maximum) and would wait for memory, so the kernels
 * also prefetch the caller's next row during the heavy pass (the `next`
 * hint): a 4096-wide causal prompt streamed from memory, 0.58 -> 0.49 ns
 * per logit (0.43 in cache). */
#define KF_PREFETCH_AHEAD 1024

/* Rows per score_gumbel call: the query heads of one KV head (larger
 * groups take several calls). */
#define KF_SCORE_ROWS_MAX 16

/* For rows r = 0 .. rows-1 in order, x_r = x + r * x_stride:
 *     acc[j] += softmax_j((x_r[j] + gumbel(keys[r], pos[j])) * inv_tau),
 * j < n: one row (rows = 1), or the rows of a KV head's query heads at
 * one position, which share pos and inv_tau. The same bits as `rows`
 * one-row calls in order; running each pass over all the rows lets one
 * row's work hide another's reductions. 1 <= rows <= KF_SCORE_ROWS_MAX,
 * scratch holds rows * n floats. next (may be NULL) is the row the
 * caller scores after these, n + 1 floats or fewer: a hint, prefetched
 * during the last row's heaviest pass; it never changes a result.
 * Returns KF_ROW_OK, or the KF_ROW_* of the first failing row with its
 * index in *failed_row; on failure acc is untouched. */
#define KF_SCORE_GUMBEL_FN(name)                                              \
    int name(float *acc, const float *x, size_t x_stride, uint32_t rows,     \
             const int32_t *pos, uint32_t n, const kf_noise_key *keys,       \
             float inv_tau, float *scratch, uint32_t *failed_row,            \
             const float *next)

/* The noise table of KF_NOISE_TABLE (lib/gumbel_table.c): entry i is the
 * Gumbel sample of kf_gumbel_f32 at the centre of the i-th of
 * KF_GUMBEL_TABLE_SIZE equal bins of u, and an element's entry is chosen
 * by the top KF_GUMBEL_TABLE_BITS bits of its kf_noise_bits. */
#define KF_GUMBEL_TABLE_BITS 12
#define KF_GUMBEL_TABLE_SIZE (1u << KF_GUMBEL_TABLE_BITS)
#define KF_GUMBEL_TABLE_SHIFT (32 - KF_GUMBEL_TABLE_BITS)

/* kf_score_gumbel with the table's noise: for rows r in order,
 *     t_r[j] = x_r[j] + table[kf_noise_bits(keys[r], pos[j]) >> 20],
 *     acc[j] += e_r[j] * (1 / sum_r),  e_r[j] = e^((t_r[j] - s_r) * inv_tau)
 * with the same arguments, status, failed row, scratch and prefetch hint
 * as KF_SCORE_GUMBEL_FN, plus the table (KF_GUMBEL_TABLE_SIZE increasing
 * floats). The shift s_r: for inv_tau <= KF_TABLE_ONE_PASS_INV_TAU,
 * max_j x_r[j] + table[last] (fp32 add), known before the noise, so one
 * pass computes noise, exp and sum; else max_j t_r[j] (a pass of its own
 * stores t). Both keep every exponent <= 0; the one-pass shift is at most
 * (table[last] - table[0]) * inv_tau = 11.21 * 4 above the largest term,
 * so terms below e^-42 of the row's largest flush to 0 instead of below
 * e^-87. */
#define KF_TABLE_ONE_PASS_INV_TAU 4.0f
#define KF_SCORE_TABLE_FN(name)                                               \
    int name(float *acc, const float *x, size_t x_stride, uint32_t rows,     \
             const int32_t *pos, uint32_t n, const kf_noise_key *keys,       \
             float inv_tau, const float *table, float *scratch,              \
             uint32_t *failed_row, const float *next)

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

/* out[t] = (q . k_t) * scale for the n key rows k_t = k + t * k_stride,
 * dim >= 1 elements each (kf_observe_qk's logits): element e of a product
 * is added, in increasing e, to lane e % 16 of 16 partial sums that start
 * at +0, the lanes are folded by halves (lane l += lane l + 8, then + 4,
 * + 2, + 1), and lane 0 is multiplied by scale. Variants match C bit for
 * bit except in the sign and payload of a NaN result (a NaN logit fails
 * the call with KF_ENAN whatever its bits). */
#define KF_DOT_ROWS_FN(name)                                                  \
    void name(float *out, const float *q, const float *k, size_t k_stride,    \
              uint32_t n, uint32_t dim, float scale)

typedef KF_SCORE_GUMBEL_FN((*kf_score_gumbel_fn));
typedef KF_SCORE_SOFTMAX_FN((*kf_score_softmax_fn));
typedef KF_SCORE_TABLE_FN((*kf_score_table_fn));
typedef KF_SELECT_TOP_FN((*kf_select_top_fn));
typedef KF_COMPACT_ROWS_FN((*kf_compact_rows_fn));
typedef KF_DOT_ROWS_FN((*kf_dot_rows_fn));

/* Kernel numbers, in the order of the kf_dsp pointers. */
enum {
    KF_KERNEL_SCORE_GUMBEL = 0,
    KF_KERNEL_SCORE_SOFTMAX = 1,
    KF_KERNEL_SELECT_TOP = 2,
    KF_KERNEL_COMPACT_ROWS = 3,
    KF_KERNEL_DOT_ROWS = 4,
    KF_KERNEL_SCORE_TABLE = 5,
    KF_KERNEL_COUNT = 6
};

typedef struct kf_dsp {
    kf_score_gumbel_fn score_gumbel;
    kf_score_softmax_fn score_softmax;
    kf_select_top_fn select_top;
    kf_compact_rows_fn compact_rows;
    kf_dot_rows_fn dot_rows;
    kf_score_table_fn score_table;
    /* KF_CPU_* bit of the variant behind each pointer (0 = C), indexed by
     * KF_KERNEL_* */
    uint32_t isa[KF_KERNEL_COUNT];
} kf_dsp;

KF_SCORE_GUMBEL_FN(kf_score_gumbel_c);
KF_SCORE_SOFTMAX_FN(kf_score_softmax_c);
KF_SELECT_TOP_FN(kf_select_top_c);
KF_COMPACT_ROWS_FN(kf_compact_rows_c);
KF_DOT_ROWS_FN(kf_dot_rows_c);
KF_SCORE_TABLE_FN(kf_score_table_c);

/* SIMD variants (simd/), built when the compiler supports them (KF_HAVE_*)
 * and called only when kf_cpu_detect() reports the instruction set. */
KF_SCORE_GUMBEL_FN(kf_score_gumbel_avx2);
KF_SCORE_SOFTMAX_FN(kf_score_softmax_avx2);
KF_SELECT_TOP_FN(kf_select_top_avx2);
KF_COMPACT_ROWS_FN(kf_compact_rows_avx2);
KF_DOT_ROWS_FN(kf_dot_rows_avx2);
KF_SCORE_TABLE_FN(kf_score_table_avx2);
KF_SCORE_GUMBEL_FN(kf_score_gumbel_avx512);
KF_SCORE_SOFTMAX_FN(kf_score_softmax_avx512);
KF_SELECT_TOP_FN(kf_select_top_avx512);
KF_COMPACT_ROWS_FN(kf_compact_rows_avx512);
KF_DOT_ROWS_FN(kf_dot_rows_avx512);
KF_SCORE_TABLE_FN(kf_score_table_avx512);
KF_SCORE_GUMBEL_FN(kf_score_gumbel_neon);
KF_SCORE_SOFTMAX_FN(kf_score_softmax_neon);
KF_SELECT_TOP_FN(kf_select_top_neon);
KF_COMPACT_ROWS_FN(kf_compact_rows_neon);
KF_DOT_ROWS_FN(kf_dot_rows_neon);
KF_SCORE_TABLE_FN(kf_score_table_neon);

/* The C table, then the best variants that kf_cpu_detect() & mask allow:
 * AVX2 first, AVX-512 over it (NEON on AArch64). mask 0 = C only; a single
 * bit gives that instruction set's variants over C (what tests compare). */
void kf_dsp_init(kf_dsp *dsp, uint32_t mask);

/* Static names: "score_gumbel" ... for KF_KERNEL_*, NULL past the end;
 * "c", "avx2", "avx512", "neon" for 0 and the KF_CPU_* bits. */
const char *kf_dsp_kernel_name(unsigned kernel);
const char *kf_dsp_isa_name(uint32_t isa);

/* The noise table of KF_NOISE_TABLE (KF_GUMBEL_TABLE_SIZE floats), built
 * once per process on the first call (pthread_once; thread-safe) and
 * never changed after: the same bits on every machine. */
const float *kf_gumbel_table(void);

#endif
