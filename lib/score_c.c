/* Reference score kernels, and the dot products of kf_observe_qk's
 * logits: the specification every SIMD variant matches bit for bit. Row
 * sums and dot products use 16 interleaved partial sums (element j goes to
 * lane j % 16) folded by halves (8, 4, 2, 1), which vector code of any
 * width reproduces exactly. */
#include <math.h>

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

/* acc[j] += scratch[j] / sum (one fused multiply-add each by 1 / sum),
 * sum being the lanes folded */
static void add_normalised(float *acc, const float *scratch, uint32_t n,
                           float lanes[SUM_LANES])
{
    float inv_sum = 1.0f / fold_lanes(lanes);
    for (uint32_t j = 0; j < n; j++)
        acc[j] = fmaf(scratch[j], inv_sum, acc[j]);
}

/* scratch[j] holds t_j; turns it into e^((t_j - max) * inv_tau) and adds
 * the normalised values to acc. */
static void normalise_into(float *acc, float *scratch, uint32_t n, float max,
                           float inv_tau)
{
    float lanes[SUM_LANES] = { 0 };
    for (uint32_t j = 0; j < n; j++) {
        float e = kf_exp_f32((scratch[j] - max) * inv_tau);
        scratch[j] = e;
        lanes[j % SUM_LANES] += e;
    }
    add_normalised(acc, scratch, n, lanes);
}

/* tau = 1, the prompt's temperature by default: e^(x + g) with
 * g = -ln E is e^x / E, so one ln per logit instead of two, and a
 * division (IEEE in every instruction set, so the bits stay common).
 * Shifting by max x instead of max (x + g) is safe: the largest term is
 * at least 1 / 16.7, and none exceeds 1.7e7. */
static int score_unit_tau(float *acc, const float *x, const int32_t *pos,
                          uint32_t n, kf_noise_key key, float *scratch)
{
    float max = -INFINITY;
    int bad = 0;
    for (uint32_t j = 0; j < n; j++) {
        float xj = x[j];
        bad |= (xj != xj) | (xj == INFINITY);
        max = xj > max ? xj : max;
    }
    if (bad)
        return KF_ROW_NAN;
    if (max == -INFINITY)
        return KF_ROW_EMPTY;
    float lanes[SUM_LANES] = { 0 };
    for (uint32_t j = 0; j < n; j++) {
        float e = kf_exp_f32(x[j] - max) / kf_exponential_f32(key, pos[j]);
        scratch[j] = e;
        lanes[j % SUM_LANES] += e;
    }
    add_normalised(acc, scratch, n, lanes);
    return KF_ROW_OK;
}

KF_SCORE_GUMBEL_FN(kf_score_gumbel_c)
{
    if (inv_tau == 1.0f)
        return score_unit_tau(acc, x, pos, n, key, scratch);
    float max = -INFINITY;
    int bad = 0;
    for (uint32_t j = 0; j < n; j++) {
        float xj = x[j];
        bad |= (xj != xj) | (xj == INFINITY);
        float t = xj + kf_gumbel_f32(key, pos[j]);
        scratch[j] = t;
        max = t > max ? t : max;
    }
    if (bad)
        return KF_ROW_NAN;
    if (max == -INFINITY)
        return KF_ROW_EMPTY;
    normalise_into(acc, scratch, n, max, inv_tau);
    return KF_ROW_OK;
}

KF_SCORE_SOFTMAX_FN(kf_score_softmax_c)
{
    float max = -INFINITY;
    int bad = 0;
    for (uint32_t j = 0; j < n; j++) {
        float xj = x[j];
        bad |= (xj != xj) | (xj == INFINITY);
        scratch[j] = xj;
        max = xj > max ? xj : max;
    }
    if (bad)
        return KF_ROW_NAN;
    if (max == -INFINITY)
        return KF_ROW_EMPTY;
    normalise_into(acc, scratch, n, max, 1.0f);
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
