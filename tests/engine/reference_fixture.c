#include "reference_fixture.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

const char *model_path, *reference_path;

int reference_fixture_setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    FILE *f = fopen(reference_path, "rb");
    int32_t header[3];
    if (!fx || !f || fread(header, sizeof header, 1, f) != 1
        || header[0] != REFERENCE_IDS
        || fread(fx->ids, sizeof(int32_t), REFERENCE_IDS, f) != REFERENCE_IDS
        || eng_model_open(&fx->model, model_path, NULL) != ENG_OK) {
        if (f)
            fclose(f);
        free(fx);
        return -1;
    }
    fclose(f);
    *state = fx;
    return 0;
}

int reference_fixture_teardown(void **state)
{
    fixture *fx = *state;
    eng_model_close(&fx->model);
    free(fx);
    return 0;
}

int reference_argmax(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}
