#include "attention.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

/* Query rows per chunk of a prompt block: large enough for sgemm to run at
 * full speed, small enough that the causal triangle wastes little work. */
enum { CHUNK_ROWS = 64 };

size_t eng_attention_scratch_floats(int capacity, int n_threads)
{
    return (size_t)n_threads * CHUNK_ROWS * (size_t)capacity;
}

/* Softmax weights of the first n_visible logits; returns their sum (the
 * weights are left unnormalised so the division happens once per output). */
static float softmax_weights(const float *logits, int n_visible, float *weights)
{
    float max = -INFINITY;
    for (int j = 0; j < n_visible; j++)
        max = logits[j] > max ? logits[j] : max;
    float sum = 0.0f;
    for (int j = 0; j < n_visible; j++) {
        weights[j] = expf(logits[j] - max);
        sum += weights[j];
    }
    return sum;
}

/* Holes among the first n_old logits of a row of query head `head`. */
static void mask_row(const eng_attention_block *a, int head, float *row)
{
    if (!a->masked)
        return;
    const int kv_head = head / (a->n_heads / a->n_kv_heads);
    const unsigned char *m = a->masked + (long)kv_head * a->capacity;
    for (int j = 0; j < a->n_old_slots; j++)
        if (m[j])
            row[j] = -INFINITY;
}

static const float *head_keys(const eng_attention_block *a, int head)
{
    const int kv_head = head / (a->n_heads / a->n_kv_heads);
    return a->keys + (long)kv_head * a->capacity * a->head_size;
}

static const float *head_values(const eng_attention_block *a, int head)
{
    const int kv_head = head / (a->n_heads / a->n_kv_heads);
    return a->values + (long)kv_head * a->capacity * a->head_size;
}

/* A decode step: one query row of one head, as two matrix-vector products
 * (OpenBLAS's kernels use the widest vectors the CPU has). */
static void attend_one_row(const eng_attention_block *a, int head, float *weights)
{
    const int hs = a->head_size;
    const int n_slots = a->n_old_slots + 1;
    float *logits = a->logits + (long)head * n_slots;
    cblas_sgemv(CblasRowMajor, CblasNoTrans, n_slots, hs, 1.0f / sqrtf((float)hs),
                head_keys(a, head), hs, a->queries + (long)head * hs, 1, 0.0f, logits, 1);
    mask_row(a, head, logits);
    const float inv_sum = 1.0f / softmax_weights(logits, n_slots, weights);
    cblas_sgemv(CblasRowMajor, CblasTrans, n_slots, hs, inv_sum, head_values(a, head), hs,
                weights, 1, 0.0f, a->output + (long)head * hs, 1);
}

/* Rows first_row .. first_row + n - 1 of one head of a prompt block. Only
 * the slots the chunk's last row can see take part in the products. */
static void attend_chunk(const eng_attention_block *a, int head, int first_row, int n,
                         float *weights)
{
    const int hs = a->head_size, stride = a->n_heads * hs;
    const int n_slots = a->n_old_slots + a->n_rows;
    const int n_seen = a->n_old_slots + first_row + n; /* visible to the last row */
    const float *q = a->queries + (long)first_row * stride + (long)head * hs;
    float *logits = a->logits + ((long)head * a->n_rows + first_row) * n_slots;
    float *out = a->output + (long)first_row * stride + (long)head * hs;

    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n_seen, hs,
                1.0f / sqrtf((float)hs), q, stride, head_keys(a, head), hs, 0.0f, logits,
                n_slots);
    for (int i = 0; i < n; i++) {
        const int n_visible = a->n_old_slots + first_row + i + 1;
        float *row = logits + (long)i * n_slots;
        for (int j = n_visible; j < n_slots; j++)
            row[j] = -INFINITY; /* the causal mask */
        mask_row(a, head, row);
        float *w = weights + (long)i * n_seen;
        const float inv_sum = 1.0f / softmax_weights(row, n_visible, w);
        for (int j = 0; j < n_visible; j++)
            w[j] *= inv_sum;
        memset(w + n_visible, 0, (size_t)(n_seen - n_visible) * sizeof *w);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, hs, n_seen, 1.0f, weights,
                n_seen, head_values(a, head), hs, 0.0f, out, stride);
}

/* Before a run with a callback: each KV head waits for this many tasks. */
static void arm_kv_heads(const eng_attention_block *a, int tasks_per_head)
{
    for (int g = 0; g < a->n_kv_heads; g++)
        a->kv_head_pending[g] = tasks_per_head;
}

/* One task of query head `head` is done; the thread that finishes the last
 * task of its KV head hands that KV head's logits over. The atomic is
 * seq_cst, so that thread sees the logits the others wrote. */
static void finish_task(const eng_attention_block *a, int head, int *failed)
{
    const int group = a->n_heads / a->n_kv_heads, kv_head = head / group;
    int left;
#pragma omp atomic capture seq_cst
    left = --a->kv_head_pending[kv_head];
    if (left != 0)
        return;
    const long per_head = (long)a->n_rows * (a->n_old_slots + a->n_rows);
    const int rc = a->kv_head_done(a->kv_head_user_data, kv_head,
                                   a->logits + (long)kv_head * group * per_head);
    if (rc != 0) {
#pragma omp critical(eng_attention_kv_head_failure)
        if (*failed == 0)
            *failed = rc;
    }
}

int eng_attention_run(const eng_attention_block *a)
{
    int failed = 0;
    const int group = a->n_heads / a->n_kv_heads;
    if (a->n_rows == 1) {
        /* Static blocks of consecutive heads: a thread finishes the query
         * heads of one KV head before it starts the next KV head's. */
        if (a->kv_head_done)
            arm_kv_heads(a, group);
#pragma omp parallel for schedule(static) num_threads(a->n_threads)
        for (int head = 0; head < a->n_heads; head++) {
            attend_one_row(a, head, a->scratch + (long)omp_get_thread_num() * a->capacity);
            if (a->kv_head_done)
                finish_task(a, head, &failed);
        }
        return failed;
    }
    const int n_chunks = (a->n_rows + CHUNK_ROWS - 1) / CHUNK_ROWS;
    const int n_tasks = a->n_heads * n_chunks;
    if (a->kv_head_done)
        arm_kv_heads(a, group * n_chunks);
    /* Later chunks see more slots, so hand them out first. */
#pragma omp parallel for schedule(dynamic, 1) num_threads(a->n_threads)
    for (int task = 0; task < n_tasks; task++) {
        const int chunk = n_chunks - 1 - task / a->n_heads, head = task % a->n_heads;
        const int first_row = chunk * CHUNK_ROWS;
        const int n = a->n_rows - first_row < CHUNK_ROWS ? a->n_rows - first_row : CHUNK_ROWS;
        float *weights = a->scratch + (long)omp_get_thread_num() * CHUNK_ROWS * a->capacity;
        attend_chunk(a, head, first_row, n, weights);
        if (a->kv_head_done)
            finish_task(a, head, &failed);
    }
    return failed;
}
