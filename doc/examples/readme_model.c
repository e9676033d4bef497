/* The fake host model behind README.md's integration snippet (see
 * readme_model.h). K and V rows hold tags instead of numbers: element 0 is
 * the token's position, element 1 its KV head, so a row that lands in the
 * wrong slot or the wrong head's block is seen at once. The library moves
 * rows bit for bit and never reads them for kf_observe_logits. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "readme_model.h"

uint16_t *k_cache[L], *v_cache[L];
float *logits;
const size_t logits_bytes = sizeof(float) * H * PROMPT * ROWS;

static int32_t next_pos[L]; /* position of each layer's next token */
static unsigned rng = 12345u;

static float noise(void)
{
    rng = rng * 1103515245u + 12345u;
    return (float)((rng >> 9) & 0xffff) / 8192.0f - 4.0f;
}

int model_init(void)
{
    size_t elems = (size_t)HKV * ROWS * D;
    logits = malloc(logits_bytes);
    if (!logits)
        return 0;
    for (int l = 0; l < L; l++) {
        k_cache[l] = calloc(elems, sizeof(uint16_t));
        v_cache[l] = calloc(elems, sizeof(uint16_t));
        if (!k_cache[l] || !v_cache[l])
            return 0;
    }
    return 1;
}

static uint16_t *row_of(uint16_t *buf, uint32_t g, uint32_t slot)
{
    return buf + ((size_t)g * ROWS + slot) * D;
}

void attention(int l, uint32_t n_old, uint32_t n_rows, float *out)
{
    uint32_t n_slots = n_old + n_rows;
    for (uint32_t g = 0; g < HKV; g++)
        for (uint32_t i = 0; i < n_rows; i++) {
            uint16_t *k = row_of(k_cache[l], g, n_old + i);
            uint16_t *v = row_of(v_cache[l], g, n_old + i);
            for (int d = 0; d < D; d++)
                k[d] = v[d] = (uint16_t)(d == 0   ? next_pos[l] + (int32_t)i
                                         : d == 1 ? (int32_t)g
                                                  : l);
        }
    for (uint32_t h = 0; h < H; h++)
        for (uint32_t i = 0; i < n_rows; i++)
            for (uint32_t j = 0; j < n_slots; j++)
                out[((size_t)h * n_rows + i) * n_slots + j] =
                    j > n_old + i ? -INFINITY : noise();
    next_pos[l] += (int32_t)n_rows;
}

int model_check(const kf_cache *kc, int l)
{
    uint32_t k = 0, w = 0;
    if (kf_budget(kc, &k, &w) != KF_OK) {
        fprintf(stderr, "readme snippet: no budget after a selection\n");
        return 0;
    }
    for (uint32_t g = 0; g < HKV; g++) {
        const int32_t *pos;
        uint32_t n;
        if (kf_slot_positions(kc, l, (int)g, &pos, &n) != KF_OK || n > k) {
            fprintf(stderr, "readme snippet: layer %d holds too many slots\n",
                    l);
            return 0;
        }
        for (uint32_t j = 0; j < n; j++) {
            const uint16_t *kr = row_of(k_cache[l], g, j);
            const uint16_t *vr = row_of(v_cache[l], g, j);
            if (kr[0] != pos[j] || vr[0] != pos[j] || kr[1] != g || vr[1] != g) {
                fprintf(stderr,
                        "readme snippet: layer %d KV head %u slot %u holds "
                        "position %u of KV head %u, the library says %d\n",
                        l, g, j, kr[0], kr[1], pos[j]);
                return 0;
            }
        }
    }
    return 1;
}

int model_finish(int failed)
{
    for (int l = 0; l < L; l++) {
        free(k_cache[l]);
        free(v_cache[l]);
    }
    free(logits);
    if (failed) {
        fprintf(stderr, "readme snippet: FAILED\n");
        return 1;
    }
    printf("readme snippet: %d-token prompt and %d decode steps, every K/V "
           "row where the library says\n", PROMPT, STEPS);
    return 0;
}
