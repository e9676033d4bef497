/* Reference score kernels, and the dot products of kf_observe_qk's
 * logits: the specification every SIMD variant matches bit for bit. Row
 * sums and dot products use 16 interleaved partial sums (element j goes to
 * lane j % 16) folded by halves (8, 4, 2, 1), which vector code of any
 * width reproduces exactly. */
#include <math.h>
#include <string.h>

#include "dsp.h"
#include "fastmath.h"

#define SUM_LANES 16

static float fold_lanes(float lanes[SUM_LANES])
{
    for (int width = SUM_LANES / 2; width >= 1; width /= 2)
        for (int l = 0; l < width; l++)
            lanes[l] = lanes[l] + lanes[l + width];
    return lanes[0];
}

/* acc[j] += e_r[j] * (1 / sum_r) for rows r in order, e_r = scratch +
 * r * n and sum_r its lanes folded: one fused multiply-add per row. */
static void add_normalised(float *acc, const float *scratch, uint32_t n,
                           uint32_t rows, float lanes[][SUM_LANES])
{
    float inv_sum[KF_SCORE_ROWS_MAX];
    for (uint32_t r = 0; r < rows; r++)
        inv_sum[r] = 1.0f / fold_lanes(lanes[r]);
    for (uint32_t j = 0; j < n; j++) {
        float a = acc[j];
        for (uint32_t r = 0; r < rows; r++)
            a = fmaf(scratch[r * n + j], inv_sum[r], a);
        acc[j] = a;
    }
}

/* scratch[j] holds t_j; turns it into e^((t_j - max) * inv_tau), summed
 * into lanes. */
static void exp_pass(float *scratch, uint32_t n, float max, float inv_tau,
                     float lanes[SUM_LANES])
{
    for (uint32_t j = 0; j < n; j++) {
        float e = kf_exp_f32((scratch[j] - max) * inv_tau);
        scratch[j] = e;
        lanes[j % SUM_LANES] += e;
    }
}

/* The maximum of x (noise NULL) or of t = x + noise(key, pos) stored in
 * scratch, with the NaN / +inf check of x. Returns KF_ROW_*. */
static int max_pass(const float *x, const int32_t *pos, uint32_t n,
                    const kf_noise_key *noise, float *scratch, float *max)
{
    float m = -INFINITY;
    int bad = 0;
    for (uint32_t j = 0; j < n; j++) {
        float t = x[j];
        bad |= (t != t) | (t == INFINITY);
        if (noise)
            t = scratch[j] = t + kf_gumbel_f32(*noise, pos[j]);
        m = t > m ? t : m;
    }
    *max = m;
    return bad ? KF_ROW_NAN : m == -INFINITY ? KF_ROW_EMPTY : KF_ROW_OK;
}

/* tau = 1, the prompt's temperature by default: e^(x + g) with
 * g = -ln E is e^x / E, so one ln per logit instead of two, and a
 * division (IEEE in every instruction set, so the bits stay common).
 * Shifting by max x instead of max (x + g) is safe: the largest term is
 * at least 1 / 16.7, and none exceeds 1.7e7. */
static void unit_tau_pass(float *scratch, const float *x, const int32_t *pos,
                          uint32_t n, kf_noise_key key, float max,
                          float lanes[SUM_LANES])
{
    for (uint32_t j = 0; j < n; j++) {
        float e = kf_exp_f32(x[j] - max) / kf_exponential_f32(key, pos[j]);
        scratch[j] = e;
        lanes[j % SUM_LANES] += e;
    }
}

/* Row by row, pass by pass: the maximum (the noise too unless tau = 1),
 * then e and its sum, then one pass adding every row to acc. */
KF_SCORE_GUMBEL_FN(kf_score_gumbel_c)
{
    (void)next; /* a prefetch hint */
    float max[KF_SCORE_ROWS_MAX], lanes[KF_SCORE_ROWS_MAX][SUM_LANES] = { { 0 } };
    int unit_tau = inv_tau == 1.0f;
    for (uint32_t r = 0; r < rows; r++) {
        int status = max_pass(x + r * x_stride, pos, n,
                              unit_tau ? NULL : &keys[r], scratch + r * n,
                              &max[r]);
        if (status) {
            *failed_row = r;
            return status;
        }
    }
    for (uint32_t r = 0; r < rows; r++) {
        if (unit_tau)
            unit_tau_pass(scratch + r * n, x + r * x_stride, pos, n, keys[r],
                          max[r], lanes[r]);
        else
            exp_pass(scratch + r * n, n, max[r], inv_tau, lanes[r]);
    }
    add_normalised(acc, scratch, n, rows, lanes);
    return KF_ROW_OK;
}

/* The table's noise (KF_NOISE_TABLE): t = x + table[bits >> 20] into
 * scratch, its maximum, and the NaN / +inf check of x. Returns KF_ROW_*. */
static int table_max_pass(const float *x, const int32_t *pos, uint32_t n,
                          kf_noise_key key, const float *table,
                          float *scratch, float *max)
{
    float m = -INFINITY;
    int bad = 0;
    for (uint32_t j = 0; j < n; j++) {
        float t = x[j];
        bad |= (t != t) | (t == INFINITY);
        t = scratch[j] = t + table[kf_noise_bits(key, pos[j])
                                   >> KF_GUMBEL_TABLE_SHIFT];
        m = t > m ? t : m;
    }
    *max = m;
    return bad ? KF_ROW_NAN : m == -INFINITY ? KF_ROW_EMPTY : KF_ROW_OK;
}

/* One pass: e = e^((x + noise - shift) * inv_tau) with shift = max x +
 * the largest noise, so no exponent is positive; summed into lanes. */
static void table_pass(float *scratch, const float *x, const int32_t *pos,
                       uint32_t n, kf_noise_key key, const float *table,
                       float shift, float inv_tau, float lanes[SUM_LANES])
{
    for (uint32_t j = 0; j < n; j++) {
        float t = x[j] + table[kf_noise_bits(key, pos[j]) >> KF_GUMBEL_TABLE_SHIFT];
        float e = kf_exp_f32((t - shift) * inv_tau);
        scratch[j] = e;
        lanes[j % SUM_LANES] += e;
    }
}

/* Per row: the maximum of x, then one pass of noise, exp and sum (a
 * hash and a lookup per logit, where the exact noise costs a hash and
 * two ln); or, for inv_tau above KF_TABLE_ONE_PASS_INV_TAU, the general
 * path's two passes with the table's noise. Then the update. */
KF_SCORE_TABLE_FN(kf_score_table_c)
{
    (void)next; /* a prefetch hint */
    float max[KF_SCORE_ROWS_MAX], lanes[KF_SCORE_ROWS_MAX][SUM_LANES] = { { 0 } };
    int one_pass = inv_tau <= KF_TABLE_ONE_PASS_INV_TAU;
    for (uint32_t r = 0; r < rows; r++) {
        int status = one_pass ? max_pass(x + r * x_stride, NULL, n, NULL, NULL,
                                         &max[r])
                              : table_max_pass(x + r * x_stride, pos, n, keys[r],
                                               table, scratch + r * n, &max[r]);
        if (status) {
            *failed_row = r;
            return status;
        }
    }
    for (uint32_t r = 0; r < rows; r++) {
        if (one_pass)
            table_pass(scratch + r * n, x + r * x_stride, pos, n, keys[r], table,
                       max[r] + table[KF_GUMBEL_TABLE_SIZE - 1], inv_tau,
                       lanes[r]);
        else
            exp_pass(scratch + r * n, n, max[r], inv_tau, lanes[r]);
    }
    add_normalised(acc, scratch, n, rows, lanes);
    return KF_ROW_OK;
}

KF_SCORE_SOFTMAX_FN(kf_score_softmax_c)
{
    float max, lanes[1][SUM_LANES] = { { 0 } };
    int status = max_pass(x, NULL, n, NULL, NULL, &max);
    if (status)
        return status;
    memcpy(scratch, x, n * sizeof *scratch);
    exp_pass(scratch, n, max, 1.0f, lanes[0]);
    add_normalised(acc, scratch, n, 1, lanes);
    return KF_ROW_OK;
}

/* One key row: lane e % 16 += q[e] * k[e], e ascending (written as whole
 * blocks of 16, which the compiler vectorises, then the tail). */
static float dot_one(const float *q, const float *k, uint32_t dim)
{
    float lanes[SUM_LANES] = { 0 };
    uint32_t full = dim - dim % SUM_LANES;
    for (uint32_t e = 0; e < full; e += SUM_LANES)
        for (int l = 0; l < SUM_LANES; l++)
            lanes[l] += q[e + l] * k[e + l];
    for (uint32_t e = full; e < dim; e++)
        lanes[e - full] += q[e] * k[e];
    return fold_lanes(lanes);
}

KF_DOT_ROWS_FN(kf_dot_rows_c)
{
    for (uint32_t t = 0; t < n; t++)
        out[t] = dot_one(q, k + t * k_stride, dim) * scale;
}
