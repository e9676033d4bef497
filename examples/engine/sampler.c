#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct eng_sampler_entry {
    float probability;
    int id;
} eng_sampler_entry;

int eng_sampler_init(eng_sampler *s, int vocab_size, float temperature, float top_p,
                     uint64_t seed, eng_error *err)
{
    memset(s, 0, sizeof *s);
    if (vocab_size < 1 || !(temperature >= 0.0f) || isinf(temperature) || isnan(top_p))
        return eng_fail(err, ENG_EINVAL, "invalid sampler settings (temperature %g, top-p %g)",
                        (double)temperature, (double)top_p);
    s->heap = malloc((size_t)vocab_size * sizeof *s->heap);
    if (!s->heap)
        return eng_fail(err, ENG_ENOMEM, "out of memory for the sampler");
    s->vocab_size = vocab_size;
    s->temperature = temperature;
    s->top_p = top_p;
    s->rng_state = seed;
    return ENG_OK;
}

void eng_sampler_free(eng_sampler *s)
{
    free(s->heap);
    memset(s, 0, sizeof *s);
}

/* splitmix64: tiny, seedable with any value, good enough for sampling. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static float next_uniform(uint64_t *state)
{
    return (float)(next_random(state) >> 40) * (1.0f / 16777216.0f);
}

int eng_argmax(const float *values, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (values[i] > values[best])
            best = i;
    return best;
}

static void softmax_in_place(float *x, int n, float temperature)
{
    const float max = x[eng_argmax(x, n)];
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf((x[i] - max) / temperature);
        sum += x[i];
    }
    for (int i = 0; i < n; i++)
        x[i] /= sum;
}

static int sample_all(const float *probabilities, int n, float r)
{
    float cumulative = 0.0f;
    for (int i = 0; i < n; i++) {
        cumulative += probabilities[i];
        if (r < cumulative)
            return i;
    }
    return n - 1; /* rounding left r above the total */
}

static void sift_down(eng_sampler_entry *heap, int n, int i)
{
    const eng_sampler_entry moving = heap[i];
    for (;;) {
        int child = 2 * i + 1;
        if (child >= n)
            break;
        if (child + 1 < n && heap[child + 1].probability > heap[child].probability)
            child++;
        if (heap[child].probability <= moving.probability)
            break;
        heap[i] = heap[child];
        i = child;
    }
    heap[i] = moving;
}

/* The nucleus is usually a few dozen tokens, so popping a max-heap (linear
 * build, then log n per token) beats sorting the whole vocabulary. The
 * popped entries collect at the end of the array, most probable last. */
static int sample_nucleus(eng_sampler *s, const float *probabilities, float r)
{
    const int n = s->vocab_size;
    eng_sampler_entry *heap = s->heap;
    for (int i = 0; i < n; i++)
        heap[i] = (eng_sampler_entry){probabilities[i], i};
    for (int i = n / 2 - 1; i >= 0; i--)
        sift_down(heap, n, i);
    float mass = 0.0f;
    int size = n;
    while (size > 0 && mass < s->top_p) {
        const eng_sampler_entry top = heap[0];
        heap[0] = heap[--size];
        sift_down(heap, size, 0);
        heap[size] = top;
        mass += top.probability;
    }
    const float target = r * mass;
    float cumulative = 0.0f;
    for (int i = n - 1; i >= size; i--) {
        cumulative += heap[i].probability;
        if (target < cumulative)
            return heap[i].id;
    }
    return heap[size].id;
}

int eng_sampler_next(eng_sampler *s, float *logits)
{
    if (s->temperature == 0.0f)
        return eng_argmax(logits, s->vocab_size);
    softmax_in_place(logits, s->vocab_size, s->temperature);
    const float r = next_uniform(&s->rng_state);
    if (s->top_p > 0.0f && s->top_p < 1.0f)
        return sample_nucleus(s, logits, r);
    return sample_all(logits, s->vocab_size, r);
}
