/* A deliberately plain double-precision transformer used as the reference
 * for the engine: one token at a time, every position's K/V kept, and an
 * optional lower bound on the positions each query may see (to model a
 * cache that has dropped old tokens). Independent of the engine's code. */
#ifndef ENGINE_TEST_NAIVE_TRANSFORMER_H
#define ENGINE_TEST_NAIVE_TRANSFORMER_H

#include "model.h"

typedef struct naive_transformer {
    const eng_model *model;
    int max_positions;
    int n_positions;
    double *keys;   /* [layer][position][kv_dim], rotated */
    double *values; /* [layer][position][kv_dim] */
} naive_transformer;

int naive_init(naive_transformer *nt, const eng_model *model, int max_positions);
void naive_free(naive_transformer *nt);

/* Runs token at the next position; its queries attend positions
 * first_visible .. itself. Writes vocab_size logits. */
void naive_step(naive_transformer *nt, int token, int first_visible, double *logits);

#endif
