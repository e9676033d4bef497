/* The noise table of KF_NOISE_TABLE: KF_GUMBEL_TABLE_SIZE equiprobable
 * values of the Gumbel(0, 1) quantile function, one per bin of u.
 *
 * Entry i is G_i = -ln(-ln u_i) at the centre u_i = (i + 1/2) / N of the
 * i-th of N = 4096 equal bins of (0, 1), computed with the library's own
 * kf_ln_f32 (fused multiply-adds, fp32; within 6e-7 of the exact value,
 * see lib/fastmath.h): the same bits on every machine whose fmaf rounds
 * correctly, as the kernels already require. An element whose 32 noise
 * bits are h gets G_(h >> 20): the exact path's u with its low bits
 * replaced by the centre of their bin, so both paths draw from the same
 * uniform and differ only by that rounding of u. G_0 = -2.1985 and
 * G_4095 = 9.0109 bound the noise (the exact path's reaches -2.80 and
 * 16.64). The table is filled once per process (pthread_once) and never
 * changes after. */
#include <pthread.h>

#include "dsp.h"
#include "fastmath.h"

static float gumbel_table[KF_GUMBEL_TABLE_SIZE];
static pthread_once_t gumbel_once = PTHREAD_ONCE_INIT;

static void build_table(void)
{
    for (uint32_t i = 0; i < KF_GUMBEL_TABLE_SIZE; i++) {
        /* (2i + 1) / 2N: an odd integer below 2^13 times a power of two,
         * exact in fp32 */
        float u = (float)(2 * i + 1) * (0.5f / (float)KF_GUMBEL_TABLE_SIZE);
        gumbel_table[i] = -kf_ln_f32(-kf_ln_f32(u));
    }
}

const float *kf_gumbel_table(void)
{
    pthread_once(&gumbel_once, build_table);
    return gumbel_table;
}
