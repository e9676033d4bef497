/* The library's own noise and math: Gumbel moments, the Gumbel-max
 * property, uniformity and independence of the counter-based bits, and the
 * documented error bounds of the ln/exp approximations. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dsp.h"
#include "fastmath.h"
#include "keyformer.h"
#include "rng.h"

#define EULER_GAMMA 0.5772156649015329
#define PI2_OVER_6 1.6449340668482264

/* 1 M samples over many rows and slots: mean and variance within ~5
 * standard errors (SE 0.0013 and 0.0045). */
static void test_moments(void **state)
{
    (void)state;
    double sum = 0, sum2 = 0;
    long n = 0;
    for (int32_t q = 0; q < 1000; q++) {
        kf_noise_key key = kf_noise_row_key(42, (uint32_t)q % 7, (uint32_t)q % 5, q);
        for (int32_t j = 0; j < 1000; j++) {
            double g = kf_gumbel_f32(key, j);
            sum += g;
            sum2 += g * g;
            n++;
        }
    }
    double mean = sum / n, var = sum2 / n - mean * mean;
    assert_true(fabs(mean - EULER_GAMMA) < 0.0065);
    assert_true(fabs(var - PI2_OVER_6) < 0.023);
}

/* argmax(x + g) ~ softmax(x): chi-square over 8 categories, 200k draws;
 * the 0.1% critical value with 7 degrees of freedom is 24.3. */
static void test_gumbel_max(void **state)
{
    (void)state;
    const double x[8] = { 0.0, 1.0, -1.0, 2.0, 0.5, -2.0, 1.5, 0.25 };
    double p[8], z = 0;
    for (int i = 0; i < 8; i++)
        z += p[i] = exp(x[i]);
    long count[8] = { 0 };
    const int draws = 200000;
    for (int32_t d = 0; d < draws; d++) {
        kf_noise_key key = kf_noise_row_key(7, 1, 2, d);
        int best = 0;
        float bestv = -INFINITY;
        for (int32_t i = 0; i < 8; i++) {
            float v = (float)x[i] + kf_gumbel_f32(key, i);
            if (v > bestv) {
                bestv = v;
                best = i;
            }
        }
        count[best]++;
    }
    double chi2 = 0;
    for (int i = 0; i < 8; i++) {
        double e = draws * p[i] / z;
        chi2 += (count[i] - e) * (count[i] - e) / e;
    }
    print_message("gumbel-max chi2 = %.2f (df 7)\n", chi2);
    assert_true(chi2 < 24.3);
}

/* Top byte of the bits: 256 buckets, 1 M draws; 0.1% critical value for
 * 255 degrees of freedom is 330.5. u stays strictly inside (0, 1). */
static void test_uniform_bits(void **state)
{
    (void)state;
    long bucket[256] = { 0 };
    const long draws = 1 << 20;
    for (long d = 0; d < draws; d++) {
        kf_noise_key key = kf_noise_row_key(1, 0, 0, (int32_t)(d >> 10));
        uint32_t bits = kf_noise_bits(key, (int32_t)(d & 1023));
        bucket[bits >> 24]++;
        float u = kf_bits_to_unit(bits);
        assert_true(u > 0.0f && u < 1.0f);
    }
    double e = draws / 256.0, chi2 = 0;
    for (int i = 0; i < 256; i++)
        chi2 += (bucket[i] - e) * (bucket[i] - e) / e;
    print_message("bits chi2 = %.1f (df 255)\n", chi2);
    assert_true(chi2 < 330.5);
    assert_true(kf_bits_to_unit(0) > 0.0f);
    assert_true(kf_bits_to_unit(0xffffffffu) < 1.0f);
}

/* Neighbouring rows, slots, heads, layers and seeds are uncorrelated:
 * |r| < 0.006 over 1 M pairs (SE 0.001). */
static double correlation(int dq, int dj, int dh, int dl, uint64_t dseed)
{
    double sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
    long n = 0;
    for (int32_t q = 0; q < 1000; q++) {
        kf_noise_key a = kf_noise_row_key(5, 3, 2, q);
        kf_noise_key b = kf_noise_row_key(5 + dseed, 3 + (uint32_t)dl,
                                          2 + (uint32_t)dh, q + dq);
        for (int32_t j = 0; j < 1000; j++) {
            double x = kf_bits_to_unit(kf_noise_bits(a, j));
            double y = kf_bits_to_unit(kf_noise_bits(b, j + dj));
            sx += x, sy += y, sxx += x * x, syy += y * y, sxy += x * y;
            n++;
        }
    }
    double cov = sxy / n - sx / n * sy / n;
    return cov / sqrt((sxx / n - sx / n * sx / n) * (syy / n - sy / n * sy / n));
}

static void test_independence(void **state)
{
    (void)state;
    assert_true(fabs(correlation(1, 0, 0, 0, 0)) < 0.006);
    assert_true(fabs(correlation(0, 1, 0, 0, 0)) < 0.006);
    assert_true(fabs(correlation(1, 1, 0, 0, 0)) < 0.006);
    assert_true(fabs(correlation(0, 0, 1, 0, 0)) < 0.006);
    assert_true(fabs(correlation(0, 0, 0, 1, 0)) < 0.006);
    assert_true(fabs(correlation(0, 0, 0, 0, 1)) < 0.006);
}

/* The bounds written in fastmath.h: a sample of every binade, and all of
 * [1, 2), where the bound is absolute. */
static void test_ln_bound(void **state)
{
    (void)state;
    double worst_below = 0, worst_near = 0, worst_above = 0;
    for (uint32_t bits = 0x00800000u; bits < 0x7f800000u; bits += 97) {
        float x = kf_bits_f32(bits);
        double want = log((double)x), err = fabs(kf_ln_f32(x) - want);
        if (x < 1.0f)
            worst_below = fmax(worst_below, err / fabs(want));
        else if (x >= 2.0f)
            worst_above = fmax(worst_above, err / want);
    }
    for (uint32_t bits = 0x3f800000u; bits < 0x40000000u; bits++) {
        float x = kf_bits_f32(bits);
        worst_near = fmax(worst_near, fabs(kf_ln_f32(x) - log((double)x)));
    }
    print_message("ln: rel %.3g (x < 1), abs %.3g ([1, 2)), rel %.3g (x >= 2)\n",
                  worst_below, worst_near, worst_above);
    assert_true(worst_below <= 1.5e-7);
    assert_true(worst_near <= 6.1e-8);
    assert_true(worst_above <= 8.4e-8);
}

/* Every uniform the noise can draw, (2m + 1) / 2^24: the sample
 * -ln(-ln u) against the exact value, as fastmath.h states. */
static void test_gumbel_sample_bound(void **state)
{
    (void)state;
    double worst = 0;
    for (uint32_t m = 0; m < (1u << 23); m++) {
        float u = kf_bits_to_unit(m << 9);
        double want = -log(-log((double)u));
        double got = -kf_ln_f32(-kf_ln_f32(u));
        worst = fmax(worst, fabs(got - want));
    }
    print_message("gumbel sample: abs %.3g\n", worst);
    assert_true(worst <= 6e-7);
}

/* The Exp(1) sample E = -ln u behind the tau = 1 path, over every
 * uniform, relative to the exact value. */
static void test_exponential_bound(void **state)
{
    (void)state;
    double worst = 0;
    for (uint32_t m = 0; m < (1u << 23); m++) {
        float u = kf_bits_to_unit(m << 9);
        double want = -log((double)u), got = -kf_ln_f32(u);
        worst = fmax(worst, fabs(got - want) / want);
    }
    print_message("exponential sample: rel %.3g\n", worst);
    assert_true(worst <= 1.6e-7);
}

/* The score kernel at tau = 1 (e^x / E) and just off it (e^((x + g) /
 * tau)) against softmax((x + g) / tau) in double from the same noise
 * bits: rows with masked slots, a wide range and a dominant logit. */
static void test_score_paths(void **state)
{
    (void)state;
    enum { N = 1000 };
    static float x[N], acc[N], scratch[N];
    static int32_t pos[N];
    static double want[N];
    const float taus[] = { 1.0f, 0.99999994f, 1.0f / 1.5f };
    double worst[3] = { 0, 0, 0 };
    srand(7);
    for (int row = 0; row < 60; row++) {
        kf_noise_key key = kf_noise_row_key(42, (uint32_t)row, 3, row);
        float spread = row % 3 == 0 ? 2.0f : row % 3 == 1 ? 20.0f : 80.0f;
        for (int j = 0; j < N; j++) {
            x[j] = spread * ((float)rand() / RAND_MAX - 0.5f);
            x[j] = rand() % 17 == 0 ? -INFINITY : x[j];
            pos[j] = 5 * j + row;
        }
        x[row] = spread; /* a dominant logit */
        for (int t = 0; t < 3; t++) {
            double max = -INFINITY, sum = 0;
            for (int j = 0; j < N; j++) {
                double u = kf_bits_to_unit(kf_noise_bits(key, pos[j]));
                want[j] = ((double)x[j] - log(-log(u))) * (double)taus[t];
                max = fmax(max, want[j]);
            }
            for (int j = 0; j < N; j++)
                sum += want[j] = exp(want[j] - max);
            for (int j = 0; j < N; j++)
                acc[j] = 0.0f;
            uint32_t failed;
            assert_int_equal(kf_score_gumbel_c(acc, x, 0, 1, pos, N, &key,
                                               taus[t], scratch, &failed,
                                               NULL),
                             KF_ROW_OK);
            for (int j = 0; j < N; j++) {
                double y = want[j] / sum;
                if (x[j] == -INFINITY)
                    assert_true(acc[j] == 0.0f);
                else if (y > 1e-30) /* far from fp32's subnormals */
                    worst[t] = fmax(worst[t], fabs(acc[j] - y) / y);
            }
        }
    }
    print_message("score rel error: tau 1 %.3g, just off 1 %.3g, 1.5 %.3g\n",
                  worst[0], worst[1], worst[2]);
    /* the logit's own rounding dominates: x + g with |x| up to 80 is
     * off by up to ~4e-6, and e^t turns that into a relative error;
     * tau = 1 never adds g to x */
    assert_true(worst[0] <= 6e-6);
    for (int t = 1; t < 3; t++)
        assert_true(worst[t] <= 2e-5);
}

/* ---- KF_NOISE_TABLE: the discretised Gumbel ---- */

#define TABLE_N KF_GUMBEL_TABLE_SIZE

static float table_noise(kf_noise_key key, int32_t kpos)
{
    return kf_gumbel_table()[kf_noise_bits(key, kpos) >> KF_GUMBEL_TABLE_SHIFT];
}

/* Entry i against -ln(-ln((i + 1/2) / N)) in double: within the bound of
 * the exact sample (6e-7), increasing, the documented ends; one table per
 * process. */
static void test_table_values(void **state)
{
    (void)state;
    const float *t = kf_gumbel_table();
    assert_true(t == kf_gumbel_table());
    double worst = 0;
    for (uint32_t i = 0; i < TABLE_N; i++) {
        double want = -log(-log((i + 0.5) / TABLE_N));
        worst = fmax(worst, fabs(t[i] - want));
        if (i)
            assert_true(t[i] > t[i - 1]);
    }
    print_message("table: abs %.3g against double, G[0] %.6f, G[N-1] %.6f\n",
                  worst, (double)t[0], (double)t[TABLE_N - 1]);
    assert_true(worst <= 6e-7);
    assert_true(fabs(t[0] - -2.1984364) < 1e-6);
    assert_true(fabs(t[TABLE_N - 1] - 9.0108523) < 1e-6);
}

/* The distribution itself (every value has probability 1/N): mean and
 * variance against the Gumbel's, with the gaps the binning leaves
 * (0.57714 vs 0.57722, 1.6432 vs 1.6449); then 1 M draws through the hash
 * against the table's own moments (SE 0.0013 and 0.0045), and the
 * probability of each half of the table (P(G > median)). */
static void test_table_moments(void **state)
{
    (void)state;
    const float *t = kf_gumbel_table();
    double m = 0, v = 0;
    for (uint32_t i = 0; i < TABLE_N; i++)
        m += t[i];
    m /= TABLE_N;
    for (uint32_t i = 0; i < TABLE_N; i++)
        v += (t[i] - m) * (t[i] - m);
    v /= TABLE_N;
    print_message("table: mean %.6f (Gumbel %.6f), variance %.5f (%.5f)\n", m,
                  EULER_GAMMA, v, PI2_OVER_6);
    assert_true(fabs(m - EULER_GAMMA) < 1e-4);
    assert_true(fabs(v - PI2_OVER_6) < 2.5e-3);

    double sum = 0, sum2 = 0;
    long n = 0, above = 0;
    for (int32_t q = 0; q < 1000; q++) {
        kf_noise_key key = kf_noise_row_key(42, (uint32_t)q % 7, (uint32_t)q % 5, q);
        for (int32_t j = 0; j < 1000; j++) {
            double g = table_noise(key, j);
            sum += g;
            sum2 += g * g;
            above += g > -log(log(2.0)); /* the median */
            n++;
        }
    }
    double mean = sum / n, var = sum2 / n - mean * mean;
    print_message("table draws: mean %.5f, variance %.5f, P(> median) %.5f\n",
                  mean, var, (double)above / n);
    assert_true(fabs(mean - m) < 0.0065);
    assert_true(fabs(var - v) < 0.023);
    assert_true(fabs((double)above / n - 0.5) < 0.0025); /* 5 SE */
}

/* Every bin equally likely: 4 M draws over the N bins; the 0.1% critical
 * value of chi-square with 4095 degrees of freedom is about 4387. */
static void test_table_bins_uniform(void **state)
{
    (void)state;
    static long bucket[TABLE_N];
    const long draws = 1L << 22;
    for (long d = 0; d < draws; d++) {
        kf_noise_key key = kf_noise_row_key(3, 1, 0, (int32_t)(d >> 12));
        bucket[kf_noise_bits(key, (int32_t)(d & 4095)) >> KF_GUMBEL_TABLE_SHIFT]++;
    }
    double e = (double)draws / TABLE_N, chi2 = 0;
    for (uint32_t i = 0; i < TABLE_N; i++)
        chi2 += (bucket[i] - e) * (bucket[i] - e) / e;
    print_message("table bins chi2 = %.1f (df 4095)\n", chi2);
    assert_true(chi2 < 4387.0);
}

/* The Gumbel-max trick with the table's noise: argmax(x + G) against
 * softmax(x). 200k draws, chi-square over 8 categories (0.1% critical
 * value 24.3), as for the exact sample; then 2 M draws of a wide row
 * (logits 0 .. -7) where the truncated tail matters most, whose total
 * variation distance from softmax(x) must stay within the sampling noise
 * (about 0.001). Ties (probability 1/N for two slots) go to the lower
 * index. */
static double table_argmax_tv(const double *x, int k, long draws,
                              uint64_t seed, double *chi2_out)
{
    double p[16], z = 0;
    for (int i = 0; i < k; i++)
        z += p[i] = exp(x[i]);
    long count[16] = { 0 };
    for (long d = 0; d < draws; d++) {
        kf_noise_key key = kf_noise_row_key(seed, 1, 2, (int32_t)d);
        int best = 0;
        float bestv = -INFINITY;
        for (int32_t i = 0; i < k; i++) {
            float v = (float)x[i] + table_noise(key, i);
            if (v > bestv) {
                bestv = v;
                best = i;
            }
        }
        count[best]++;
    }
    double chi2 = 0, tv = 0;
    for (int i = 0; i < k; i++) {
        double e = (double)draws * p[i] / z;
        chi2 += (count[i] - e) * (count[i] - e) / e;
        tv += 0.5 * fabs((double)count[i] / draws - p[i] / z);
    }
    *chi2_out = chi2;
    return tv;
}

static void test_table_gumbel_max(void **state)
{
    (void)state;
    const double x[8] = { 0.0, 1.0, -1.0, 2.0, 0.5, -2.0, 1.5, 0.25 };
    double chi2;
    double tv = table_argmax_tv(x, 8, 200000, 7, &chi2);
    print_message("table gumbel-max chi2 = %.2f (df 7), TV %.5f\n", chi2, tv);
    assert_true(chi2 < 24.3);
    double wide[8];
    for (int i = 0; i < 8; i++)
        wide[i] = -(double)i;
    tv = table_argmax_tv(wide, 8, 2000000, 9, &chi2);
    print_message("table gumbel-max, logits 0..-7: chi2 = %.2f, TV %.5f\n",
                  chi2, tv);
    assert_true(chi2 < 24.3);
    assert_true(tv < 0.002);
}

/* Neighbouring slots, rows, heads, layers and seeds: the table's noise is
 * uncorrelated too (|r| < 0.006 over 1 M pairs, SE 0.001). */
static double table_correlation(int dq, int dj, int dh, int dl, uint64_t dseed)
{
    double sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
    long n = 0;
    for (int32_t q = 0; q < 1000; q++) {
        kf_noise_key a = kf_noise_row_key(5, 3, 2, q);
        kf_noise_key b = kf_noise_row_key(5 + dseed, 3 + (uint32_t)dl,
                                          2 + (uint32_t)dh, q + dq);
        for (int32_t j = 0; j < 1000; j++) {
            double x = table_noise(a, j), y = table_noise(b, j + dj);
            sx += x, sy += y, sxx += x * x, syy += y * y, sxy += x * y;
            n++;
        }
    }
    double cov = sxy / n - sx / n * sy / n;
    return cov / sqrt((sxx / n - sx / n * sx / n) * (syy / n - sy / n * sy / n));
}

static void test_table_independence(void **state)
{
    (void)state;
    assert_true(fabs(table_correlation(1, 0, 0, 0, 0)) < 0.006);
    assert_true(fabs(table_correlation(0, 1, 0, 0, 0)) < 0.006);
    assert_true(fabs(table_correlation(1, 1, 0, 0, 0)) < 0.006);
    assert_true(fabs(table_correlation(0, 0, 1, 0, 0)) < 0.006);
    assert_true(fabs(table_correlation(0, 0, 0, 1, 0)) < 0.006);
    assert_true(fabs(table_correlation(0, 0, 0, 0, 1)) < 0.006);
}

/* The table's noise is the exact sample with u moved to the centre of
 * its bin: below the top bin the two differ by less than the bin's width
 * in g (at most 0.43, next to the top), and on average by about 0.001. */
static void test_table_vs_exact_sample(void **state)
{
    (void)state;
    double worst = 0, sum = 0;
    long n = 0;
    for (int32_t q = 0; q < 300; q++) {
        kf_noise_key key = kf_noise_row_key(11, 0, 1, q);
        for (int32_t j = 0; j < 1000; j++) {
            uint32_t bits = kf_noise_bits(key, j);
            double d = fabs(table_noise(key, j) - kf_gumbel_f32(key, j));
            sum += d;
            n++;
            if (bits >> KF_GUMBEL_TABLE_SHIFT < TABLE_N - 1)
                worst = fmax(worst, d);
        }
    }
    print_message("table vs exact sample: mean |diff| %.5f, max below the top "
                  "bin %.4f\n", sum / n, worst);
    assert_true(worst < 0.45);
    assert_true(sum / n < 0.002);
}

/* kf_score_table_c against softmax((x + G) / tau) in double with the same
 * table entries: the same bounds as the exact path's general case, for
 * every term above the one-pass flush point: the shift s = max x + G_last
 * sits at most (G_last - G_0) * inv_tau = 11.21 * inv_tau above the
 * largest exponent, so a term y flushes to 0 only below
 * e^(-87.34 + 11.21 * inv_tau) (inv_tau <= 4; above, the exact maximum
 * as in the exact path). inv_tau 8 takes the two-pass path. */
static void test_table_score_path(void **state)
{
    (void)state;
    enum { N = 1000 };
    static float x[N], acc[N], scratch[N];
    static int32_t pos[N];
    static double want[N];
    const float inv_taus[] = { 1.0f, 1.0f / 1.5f, 0.5f, 4.0f, 8.0f };
    const int n_taus = (int)(sizeof inv_taus / sizeof *inv_taus);
    const float *table = kf_gumbel_table();
    double spread_g = (double)table[TABLE_N - 1] - table[0];
    double worst = 0;
    srand(9);
    for (int row = 0; row < 40; row++) {
        kf_noise_key key = kf_noise_row_key(42, (uint32_t)row, 3, row);
        float spread = row % 3 == 0 ? 2.0f : row % 3 == 1 ? 20.0f : 80.0f;
        for (int j = 0; j < N; j++) {
            x[j] = spread * ((float)rand() / RAND_MAX - 0.5f);
            x[j] = rand() % 17 == 0 ? -INFINITY : x[j];
            pos[j] = 5 * j + row;
        }
        x[row] = spread;
        for (int t = 0; t < n_taus; t++) {
            double max = -INFINITY, sum = 0;
            double flush = inv_taus[t] <= KF_TABLE_ONE_PASS_INV_TAU
                               ? 2.0 * exp(-87.34 + spread_g * inv_taus[t])
                               : 1e-30;
            for (int j = 0; j < N; j++) {
                want[j] = ((double)x[j] + table_noise(key, pos[j])) * inv_taus[t];
                max = fmax(max, want[j]);
            }
            for (int j = 0; j < N; j++)
                sum += want[j] = exp(want[j] - max);
            for (int j = 0; j < N; j++)
                acc[j] = 0.0f;
            uint32_t failed;
            assert_int_equal(kf_score_table_c(acc, x, 0, 1, pos, N, &key,
                                              inv_taus[t], table, scratch,
                                              &failed, NULL),
                             KF_ROW_OK);
            for (int j = 0; j < N; j++) {
                double y = want[j] / sum;
                if (x[j] == -INFINITY)
                    assert_true(acc[j] == 0.0f);
                else if (y > flush)
                    worst = fmax(worst, fabs(acc[j] - y) / y);
                else if (acc[j] == 0.0f) /* flushed: only below the point */
                    assert_true(y < flush);
            }
        }
    }
    print_message("table score rel error %.3g\n", worst);
    assert_true(worst <= 2e-5);
}

/* What the binning changes where it matters, the kept tokens: whole
 * caches (prompt 512, budget 0.5, 96 decode steps, logits with a few
 * heavy tokens) with the exact noise and with the table's, same seed, and
 * the exact noise with another seed as the yardstick of how much the
 * noise alone moves a selection. Agreement = |kept A & kept B| / k over
 * every (layer, KV head). */
enum { AG_LAYERS = 2, AG_HEADS = 8, AG_KV = 2, AG_PROMPT = 512,
       AG_STEPS = 96, AG_CAP = AG_PROMPT + 1 };

static void agreement_run(kf_noise noise, uint64_t seed, float spread,
                          uint32_t tau_steps, int32_t kept[AG_LAYERS][AG_KV][AG_CAP],
                          uint32_t n_kept[AG_LAYERS][AG_KV])
{
    kf_config cfg;
    kf_config_spec_exact(&cfg);
    cfg.n_layers = AG_LAYERS;
    cfg.n_heads = AG_HEADS;
    cfg.n_kv_heads = AG_KV;
    cfg.head_dim = 8;
    cfg.capacity = AG_CAP;
    cfg.n_threads = 1;
    cfg.seed = seed;
    cfg.noise = noise;
    cfg.tau_steps = tau_steps;
    kf_cache *c;
    assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
    float *x = malloc((size_t)AG_HEADS * AG_PROMPT * AG_CAP * sizeof *x);
    assert_non_null(x);
    uint64_t st = 0x9e3779b97f4a7c15ull; /* the same logits for every run */
    for (uint32_t t = 0; t <= AG_STEPS; t++)
        for (int l = 0; l < AG_LAYERS; l++) {
            uint32_t n_old;
            kf_slot_count(c, l, 0, &n_old);
            uint32_t rows = t ? 1 : AG_PROMPT, n = n_old + rows;
            for (uint32_t h = 0; h < AG_HEADS; h++)
                for (uint32_t i = 0; i < rows; i++)
                    for (uint32_t j = 0; j < n; j++) {
                        st ^= st << 13, st ^= st >> 7, st ^= st << 17;
                        float u = (float)(st >> 40) * 0x1p-24f;
                        /* heavy tokens: every 37th slot of the prompt */
                        float v = spread * (u - 0.5f) + (j % 37 == 3 ? 3.0f : 0.0f);
                        x[((size_t)h * rows + i) * n + j] =
                            j > n_old + i ? -INFINITY : v;
                    }
            kf_logits_view lv = { x, rows, n, n, (size_t)rows * n,
                                  KF_LOGITS_CAUSAL, 0 };
            assert_int_equal(kf_observe_logits(c, l, &lv), KF_OK);
            assert_int_equal(kf_select(c, l), KF_OK);
            assert_int_equal(kf_compact(c, l, NULL, NULL), KF_OK);
        }
    for (int l = 0; l < AG_LAYERS; l++)
        for (int g = 0; g < AG_KV; g++) {
            const int32_t *pos;
            kf_slot_positions(c, l, g, &pos, &n_kept[l][g]);
            memcpy(kept[l][g], pos, n_kept[l][g] * sizeof *pos);
        }
    free(x);
    kf_cache_destroy(&c);
}

static double agreement(int32_t a[AG_LAYERS][AG_KV][AG_CAP],
                        uint32_t na[AG_LAYERS][AG_KV],
                        int32_t b[AG_LAYERS][AG_KV][AG_CAP],
                        uint32_t nb[AG_LAYERS][AG_KV])
{
    double common = 0, total = 0;
    for (int l = 0; l < AG_LAYERS; l++)
        for (int g = 0; g < AG_KV; g++) {
            uint32_t i = 0, j = 0;
            while (i < na[l][g] && j < nb[l][g]) /* ascending positions */
                if (a[l][g][i] == b[l][g][j])
                    common++, i++, j++;
                else if (a[l][g][i] < b[l][g][j])
                    i++;
                else
                    j++;
            total += na[l][g];
        }
    return common / total;
}

static void test_table_selection_agreement(void **state)
{
    (void)state;
    static int32_t exact[AG_LAYERS][AG_KV][AG_CAP], table[AG_LAYERS][AG_KV][AG_CAP],
        other[AG_LAYERS][AG_KV][AG_CAP];
    uint32_t ne[AG_LAYERS][AG_KV], nt[AG_LAYERS][AG_KV], no[AG_LAYERS][AG_KV];
    const float spreads[] = { 2.0f, 8.0f };
    const uint32_t tau_steps[] = { 128, 8 }; /* tau 1 -> 2 slow and fast */
    for (int s = 0; s < 2; s++)
        for (int t = 0; t < 2; t++) {
            agreement_run(KF_NOISE_EXACT, 5, spreads[s], tau_steps[t], exact, ne);
            agreement_run(KF_NOISE_TABLE, 5, spreads[s], tau_steps[t], table, nt);
            agreement_run(KF_NOISE_EXACT, 6, spreads[s], tau_steps[t], other, no);
            double same_seed = agreement(exact, ne, table, nt);
            double seeds = agreement(exact, ne, other, no);
            print_message("kept tokens, logits spread %.0f, tau_steps %u: table vs "
                          "exact (same seed) %.4f, exact seed 5 vs 6 %.4f\n",
                          (double)spreads[s], tau_steps[t], same_seed, seeds);
            /* the binning moves far fewer tokens than a new seed does */
            assert_true(1.0 - same_seed < 0.5 * (1.0 - seeds));
        }
}

static void test_exp_bound(void **state)
{
    (void)state;
    double worst = 0;
    for (float x = 0.0f; x > -87.33f; x -= 0.0007f) {
        double want = exp((double)x), got = kf_exp_f32(x);
        worst = fmax(worst, fabs(got - want) / want);
    }
    print_message("exp: rel %.3g\n", worst);
    assert_true(worst <= 8.9e-8);
    assert_true(kf_exp_f32(0.0f) == 1.0f);
    assert_true(kf_exp_f32(-INFINITY) == 0.0f);
    assert_true(kf_exp_f32(-88.0f) == 0.0f);
    assert_true(kf_exp_f32(-87.3f) > 0.0f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_moments),
        cmocka_unit_test(test_gumbel_max),
        cmocka_unit_test(test_uniform_bits),
        cmocka_unit_test(test_independence),
        cmocka_unit_test(test_ln_bound),
        cmocka_unit_test(test_gumbel_sample_bound),
        cmocka_unit_test(test_exponential_bound),
        cmocka_unit_test(test_score_paths),
        cmocka_unit_test(test_exp_bound),
        cmocka_unit_test(test_table_values),
        cmocka_unit_test(test_table_moments),
        cmocka_unit_test(test_table_bins_uniform),
        cmocka_unit_test(test_table_gumbel_max),
        cmocka_unit_test(test_table_independence),
        cmocka_unit_test(test_table_vs_exact_sample),
        cmocka_unit_test(test_table_score_path),
        cmocka_unit_test(test_table_selection_agreement),
    };
    return cmocka_run_group_tests_name("gumbel", tests, NULL, NULL);
}
