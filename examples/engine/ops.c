#include "ops.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>

void eng_rmsnorm_rows(float *out, const float *x, const float *weight, int n_rows,
                      int dim)
{
    for (int r = 0; r < n_rows; r++) {
        const float *in = x + (long)r * dim;
        float *dst = out + (long)r * dim;
        float sum_squares = 0.0f;
        for (int i = 0; i < dim; i++)
            sum_squares += in[i] * in[i];
        const float inv_rms = 1.0f / sqrtf(sum_squares / (float)dim + ENG_RMS_EPSILON);
        for (int i = 0; i < dim; i++)
            dst[i] = in[i] * inv_rms * weight[i];
    }
}

static void matmul_columns(const float *x, int n_rows, int in_dim, const eng_matmul *p,
                           int first, int end)
{
    const float beta = p->accumulate ? 1.0f : 0.0f;
    const float *w = p->w + (long)first * in_dim;
    if (n_rows == 1) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, end - first, in_dim, 1.0f, w, in_dim, x, 1,
                    beta, p->out + first, 1);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n_rows, end - first, in_dim, 1.0f,
                x, in_dim, w, in_dim, beta, p->out + first, p->out_dim);
}

/* Shares start on multiples of 16 columns so that threads never write the
 * same cache line of out. */
enum { COLUMN_ALIGNMENT = 16 };

void eng_matmul_group(const float *x, int n_rows, int in_dim, const eng_matmul *products,
                      int n_products, int n_threads)
{
#pragma omp parallel num_threads(n_threads)
    {
        const int thread = omp_get_thread_num(), team = omp_get_num_threads();
        for (int i = 0; i < n_products; i++) {
            const int blocks = (products[i].out_dim + COLUMN_ALIGNMENT - 1) / COLUMN_ALIGNMENT;
            int first = (int)((long)blocks * thread / team) * COLUMN_ALIGNMENT;
            int end = (int)((long)blocks * (thread + 1) / team) * COLUMN_ALIGNMENT;
            end = end < products[i].out_dim ? end : products[i].out_dim;
            if (first < end)
                matmul_columns(x, n_rows, in_dim, &products[i], first, end);
        }
    }
}

void eng_blas_use_caller_thread(void)
{
    openblas_set_num_threads(1);
}

void eng_swiglu(float *gate, const float *up, long n)
{
    for (long i = 0; i < n; i++) {
        const float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void eng_rope_tables(float *cos_table, float *sin_table, int first_position,
                     int n_rows, int head_size)
{
    const int half = head_size / 2;
    for (int r = 0; r < n_rows; r++) {
        /* fp32 angles, as the training framework computed them. */
        const float position = (float)(first_position + r);
        for (int i = 0; i < half; i++) {
            const float frequency =
                1.0f / powf(ENG_ROPE_THETA, (float)(2 * i) / (float)head_size);
            const float angle = position * frequency;
            cos_table[(long)r * half + i] = cosf(angle);
            sin_table[(long)r * half + i] = sinf(angle);
        }
    }
}

void eng_rope_rotate(float *x, int row_stride, int n_rows, int n_heads, int head_size,
                     const float *cos_table, const float *sin_table)
{
    const int half = head_size / 2;
    for (int r = 0; r < n_rows; r++) {
        const float *c = cos_table + (long)r * half;
        const float *s = sin_table + (long)r * half;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (long)r * row_stride + (long)h * head_size;
            for (int i = 0; i < half; i++) {
                const float a = v[2 * i], b = v[2 * i + 1];
                v[2 * i] = a * c[i] - b * s[i];
                v[2 * i + 1] = a * s[i] + b * c[i];
            }
        }
    }
}
