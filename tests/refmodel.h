/* An independent, deliberately plain model of the Keyformer spec
 * (doc/algorithm.md) in double precision with libm, used to
 * check the library's scores and selections. Shares only the noise bits
 * (rng.h) with the library. */
#ifndef KF_REFMODEL_H
#define KF_REFMODEL_H

#include <stdint.h>

#include "keyformer.h"

typedef struct ref_lane {
    int32_t *pos;
    double *score;
    uint32_t n;
} ref_lane;

typedef struct ref_model {
    kf_config cfg;
    ref_lane *lanes; /* [layer][kv head] */
    int32_t *next_pos;
    uint32_t *steps;
    int *in_prompt;
    uint32_t k, w;
    int fixed;
} ref_model;

void ref_init(ref_model *m, const kf_config *cfg);
void ref_free(ref_model *m);

/* logits [head][row][slot], dense (row stride = slots). */
void ref_observe(ref_model *m, uint32_t layer, const float *x, uint32_t rows,
                 int causal);

/* Selection + compaction of layers [l0, l1) (all layers for UNIFORM). */
void ref_select_compact(ref_model *m, uint32_t l0, uint32_t l1);

#endif
