/* The library's own noise and math: Gumbel moments, the Gumbel-max
 * property, uniformity and independence of the counter-based bits, and the
 * documented error bounds of the ln/exp approximations. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>

#include <cmocka.h>

#include "dsp.h"
#include "fastmath.h"
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
    };
    return cmocka_run_group_tests_name("gumbel", tests, NULL, NULL);
}
