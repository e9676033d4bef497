/* Picks the next token from output logits: greedy (temperature 0), or a draw
 * from softmax(logits / temperature), optionally restricted to the nucleus:
 * the most probable tokens whose probabilities add up to top_p. */
#ifndef ENG_SAMPLER_H
#define ENG_SAMPLER_H

#include <stdint.h>

#include "status.h"

typedef struct eng_sampler {
    int vocab_size;
    float temperature;
    float top_p;
    uint64_t rng_state;
    struct eng_sampler_entry *heap; /* [vocab] nucleus workspace */
} eng_sampler;

/* temperature >= 0; top_p in (0, 1) enables nucleus sampling, anything else
 * disables it. The same seed gives the same draws. */
int eng_sampler_init(eng_sampler *sampler, int vocab_size, float temperature,
                     float top_p, uint64_t seed, eng_error *err);
void eng_sampler_free(eng_sampler *sampler);

/* Returns the chosen id; overwrites logits with probabilities when sampling. */
int eng_sampler_next(eng_sampler *sampler, float *logits);

/* Index of the largest value (the first on ties). */
int eng_argmax(const float *values, int n);

#endif
