#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "refmodel.h"
#include "rng.h"

static ref_lane *lane(ref_model *m, uint32_t l, uint32_t g)
{
    return &m->lanes[l * m->cfg.n_kv_heads + g];
}

void ref_init(ref_model *m, const kf_config *cfg)
{
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    uint32_t nl = cfg->n_layers * cfg->n_kv_heads;
    m->lanes = calloc(nl, sizeof *m->lanes);
    for (uint32_t i = 0; i < nl; i++) {
        m->lanes[i].pos = calloc(cfg->capacity, sizeof(int32_t));
        m->lanes[i].score = calloc(cfg->capacity, sizeof(double));
    }
    m->next_pos = calloc(cfg->n_layers, sizeof(int32_t));
    m->steps = calloc(cfg->n_layers, sizeof(uint32_t));
    m->in_prompt = calloc(cfg->n_layers, sizeof(int));
    for (uint32_t l = 0; l < cfg->n_layers; l++)
        m->in_prompt[l] = 1;
    if (cfg->policy == KF_POLICY_FULL) {
        m->k = cfg->capacity;
        m->fixed = 1;
    } else if (cfg->budget_tokens) {
        m->k = cfg->budget_tokens;
        m->w = (uint32_t)(cfg->recent_ratio * m->k);
        m->fixed = 1;
    }
}

void ref_free(ref_model *m)
{
    for (uint32_t i = 0; i < m->cfg.n_layers * m->cfg.n_kv_heads; i++) {
        free(m->lanes[i].pos);
        free(m->lanes[i].score);
    }
    free(m->lanes);
    free(m->next_pos);
    free(m->steps);
    free(m->in_prompt);
}

static double tau_of(const kf_config *c, uint32_t t)
{
    if (t >= c->tau_steps)
        return c->tau_end;
    return c->tau_init + (double)t * ((double)c->tau_end - c->tau_init) / c->tau_steps;
}

void ref_observe(ref_model *m, uint32_t layer, const float *x, uint32_t rows,
                 int causal)
{
    const kf_config *c = &m->cfg;
    uint32_t group = c->n_heads / c->n_kv_heads;
    uint32_t n_old = lane(m, layer, 0)->n, n = n_old + rows;
    for (uint32_t g = 0; g < c->n_kv_heads; g++) {
        ref_lane *ln = lane(m, layer, g);
        for (uint32_t i = 0; i < rows; i++) {
            ln->pos[n_old + i] = m->next_pos[layer] + (int32_t)i;
            ln->score[n_old + i] = 0.0;
        }
        ln->n = n;
    }
    int scores = c->policy == KF_POLICY_KEYFORMER || c->policy == KF_POLICY_H2O;
    double *y = malloc(n * sizeof *y);
    for (uint32_t h = 0; scores && h < c->n_heads; h++) {
        ref_lane *ln = lane(m, layer, h / group);
        for (uint32_t i = 0; i < rows; i++) {
            const float *row = x + ((size_t)h * rows + i) * n;
            uint32_t vis = causal ? n_old + i + 1 : n;
            uint32_t t = m->in_prompt[layer] ? 0 : m->steps[layer] + 1 + i;
            double tau = c->policy == KF_POLICY_KEYFORMER ? tau_of(c, t) : 1.0;
            int32_t qpos = m->next_pos[layer] + (int32_t)i;
            kf_noise_key key = kf_noise_row_key(c->seed, layer, h, qpos);
            double mx = -INFINITY, sum = 0.0;
            for (uint32_t j = 0; j < vis; j++) {
                double z = row[j];
                if (c->policy == KF_POLICY_KEYFORMER) {
                    uint32_t bits = kf_noise_bits(key, ln->pos[j]);
                    double u = (double)((bits >> 8) | 1u) / 16777216.0;
                    z = (z - log(-log(u))) / tau;
                }
                y[j] = z;
                mx = z > mx ? z : mx;
            }
            for (uint32_t j = 0; j < vis; j++)
                sum += (y[j] = exp(y[j] - mx));
            for (uint32_t j = 0; j < vis; j++)
                ln->score[j] += y[j] / sum;
        }
    }
    free(y);
    m->next_pos[layer] += (int32_t)rows;
    if (!m->in_prompt[layer])
        m->steps[layer] += rows;
}

/* keep[j] = 1 for the top `need` of score[0..n), ties to lower index;
 * plain O(n^2) ranking. */
static void top_by_rank(const double *score, uint32_t n, uint32_t need,
                        char *keep)
{
    for (uint32_t j = 0; j < n; j++) {
        uint32_t better = 0;
        for (uint32_t o = 0; o < n; o++)
            better += score[o] > score[j] || (score[o] == score[j] && o < j);
        keep[j] = better < need;
    }
}

static void choose(ref_model *m, const double *score, uint32_t n,
                   int in_prompt, char *keep)
{
    const kf_config *c = &m->cfg;
    uint32_t k = m->k, w = m->w;
    memset(keep, 0, n);
    /* evict_interval B: decode steps keep all below k + B slots */
    uint32_t slack = !in_prompt && c->evict_interval > 1 ? c->evict_interval - 1 : 0;
    if (n <= k + slack) {
        memset(keep, 1, n);
        return;
    }
    switch (c->policy) {
    case KF_POLICY_WINDOW:
        memset(keep + n - k, 1, k);
        return;
    case KF_POLICY_SINKS:
        memset(keep, 1, c->n_sinks);
        memset(keep + n - (k - c->n_sinks), 1, k - c->n_sinks);
        return;
    default:
        memset(keep + n - w, 1, w);
        if (c->rule == KF_RULE_REFERENCE && !in_prompt)
            memset(keep, 1, k - w);
        else
            top_by_rank(score, n - w, k - w, keep);
    }
}

static void apply(ref_lane *ln, const char *keep)
{
    uint32_t out = 0;
    for (uint32_t j = 0; j < ln->n; j++)
        if (keep[j]) {
            ln->pos[out] = ln->pos[j];
            ln->score[out++] = ln->score[j];
        }
    ln->n = out;
}

void ref_select_compact(ref_model *m, uint32_t l0, uint32_t l1)
{
    const kf_config *c = &m->cfg;
    uint32_t n = lane(m, l0, 0)->n;
    if (!m->fixed) {
        m->k = (uint32_t)(c->budget_ratio * n);
        m->w = (uint32_t)(c->recent_ratio * m->k);
        m->fixed = 1;
    }
    char *keep = malloc(n);
    double *sum = calloc(n, sizeof *sum);
    int in_prompt = m->in_prompt[l0];
    if (c->granularity == KF_GRANULARITY_KV_HEAD) {
        for (uint32_t l = l0; l < l1; l++)
            for (uint32_t g = 0; g < c->n_kv_heads; g++) {
                choose(m, lane(m, l, g)->score, n, in_prompt, keep);
                apply(lane(m, l, g), keep);
            }
    } else {
        for (uint32_t l = l0; l < l1; l++)
            for (uint32_t g = 0; g < c->n_kv_heads; g++)
                for (uint32_t j = 0; j < n; j++)
                    sum[j] += lane(m, l, g)->score[j];
        choose(m, sum, n, in_prompt, keep);
        for (uint32_t l = l0; l < l1; l++)
            for (uint32_t g = 0; g < c->n_kv_heads; g++)
                apply(lane(m, l, g), keep);
    }
    for (uint32_t l = l0; l < l1; l++)
        m->in_prompt[l] = 0;
    free(keep);
    free(sum);
}
