/* The cmocka group fixture of the engine tests that generate from the
 * bundled model: the model and the 512 token ids at the head of its
 * reference-logits.bin. main() sets the two paths before running. */
#ifndef KF_TEST_REFERENCE_FIXTURE_H
#define KF_TEST_REFERENCE_FIXTURE_H

#include "model.h"

enum { REFERENCE_IDS = 512 };

typedef struct fixture {
    eng_model model;
    int ids[REFERENCE_IDS];
} fixture;

extern const char *model_path, *reference_path;

/* Opens the model and reads the ids into a new fixture; -1 on failure. */
int reference_fixture_setup(void **state);
int reference_fixture_teardown(void **state);

/* Index of the largest of x[0 .. n), the first one on ties. */
int reference_argmax(const float *x, int n);

#endif
