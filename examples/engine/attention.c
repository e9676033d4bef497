#include "attention.h"

#include <math.h>
#include <omp.h>
#include <string.h>

static float dot(const float *a, const float *b, int n)
{
    float sum = 0.0f;
    /* Lets the compiler vectorise the reduction without -ffast-math. */
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < n; i++)
        sum += a[i] * b[i];
    return sum;
}

/* One (head, row): logits over every slot, softmax over the visible ones,
 * then the weighted sum of values. */
static void attend_row(const eng_attention_block *a, int head, int row, float *weights)
{
    const int hs = a->head_size;
    const int group = a->n_heads / a->n_kv_heads;
    const int kv_head = head / group;
    const int n_slots = a->n_old_slots + a->n_rows;
    const int n_visible = a->n_old_slots + row + 1;
    const float *q = a->queries + (long)row * a->n_heads * hs + (long)head * hs;
    const float *keys = a->keys + (long)kv_head * a->capacity * hs;
    const float *values = a->values + (long)kv_head * a->capacity * hs;
    float *logits = a->logits + ((long)head * a->n_rows + row) * n_slots;
    const float scale = 1.0f / sqrtf((float)hs);

    float max_logit = -INFINITY;
    for (int j = 0; j < n_visible; j++) {
        logits[j] = dot(q, keys + (long)j * hs, hs) * scale;
        max_logit = logits[j] > max_logit ? logits[j] : max_logit;
    }
    for (int j = n_visible; j < n_slots; j++)
        logits[j] = -INFINITY;

    float sum = 0.0f;
    for (int j = 0; j < n_visible; j++) {
        weights[j] = expf(logits[j] - max_logit);
        sum += weights[j];
    }
    float *out = a->output + (long)row * a->n_heads * hs + (long)head * hs;
    memset(out, 0, (size_t)hs * sizeof *out);
    for (int j = 0; j < n_visible; j++) {
        const float w = weights[j];
        const float *v = values + (long)j * hs;
#pragma omp simd
        for (int d = 0; d < hs; d++)
            out[d] += w * v[d];
    }
    const float inv_sum = 1.0f / sum;
    for (int d = 0; d < hs; d++)
        out[d] *= inv_sum;
}

void eng_attention_run(const eng_attention_block *a)
{
    const int n_pairs = a->n_heads * a->n_rows;
    /* Interleaved rows balance the causal triangle across threads. */
#pragma omp parallel for schedule(static, 1) num_threads(a->n_threads) if (n_pairs > 1)
    for (int pair = 0; pair < n_pairs; pair++) {
        float *weights = a->scratch + (long)omp_get_thread_num() * a->capacity;
        attend_row(a, pair / a->n_rows, pair % a->n_rows, weights);
    }
}
