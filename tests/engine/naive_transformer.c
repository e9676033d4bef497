#include "naive_transformer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int naive_init(naive_transformer *nt, const eng_model *model, int max_positions)
{
    const eng_model_config *c = &model->config;
    const size_t n = (size_t)c->n_layers * (size_t)max_positions * (size_t)c->kv_dim;
    *nt = (naive_transformer){.model = model, .max_positions = max_positions};
    nt->keys = calloc(n, sizeof(double));
    nt->values = calloc(n, sizeof(double));
    return nt->keys && nt->values ? 0 : -1;
}

void naive_free(naive_transformer *nt)
{
    free(nt->keys);
    free(nt->values);
}

static void rmsnorm(double *out, const double *x, const float *w, int n)
{
    double ss = 0.0;
    for (int i = 0; i < n; i++)
        ss += x[i] * x[i];
    const double scale = 1.0 / sqrt(ss / n + 1e-5);
    for (int i = 0; i < n; i++)
        out[i] = x[i] * scale * w[i];
}

/* out[r] = sum_c w[r][c] * x[c] */
static void matvec(double *out, const float *w, const double *x, int rows, int cols)
{
    for (int r = 0; r < rows; r++) {
        double sum = 0.0;
        for (int c = 0; c < cols; c++)
            sum += (double)w[(size_t)r * cols + c] * x[c];
        out[r] = sum;
    }
}

static void rotate(double *v, int n_heads, int head_size, int position)
{
    for (int h = 0; h < n_heads; h++)
        for (int i = 0; i < head_size / 2; i++) {
            const double angle = position * pow(10000.0, -2.0 * i / head_size);
            double *pair = v + h * head_size + 2 * i;
            const double a = pair[0], b = pair[1];
            pair[0] = a * cos(angle) - b * sin(angle);
            pair[1] = a * sin(angle) + b * cos(angle);
        }
}

static void attend(const naive_transformer *nt, int layer, const double *q, int position,
                   int first_visible, double *out)
{
    const eng_model_config *c = &nt->model->config;
    const int hs = c->head_size, group = c->n_heads / c->n_kv_heads;
    const size_t layer_base = (size_t)layer * nt->max_positions * c->kv_dim;
    double *weights = malloc((size_t)(position + 1) * sizeof *weights);
    for (int h = 0; h < c->n_heads; h++) {
        const int g = h / group;
        double max = -INFINITY, sum = 0.0;
        for (int j = first_visible; j <= position; j++) {
            const double *k = nt->keys + layer_base + (size_t)j * c->kv_dim + g * hs;
            double dot = 0.0;
            for (int d = 0; d < hs; d++)
                dot += q[h * hs + d] * k[d];
            weights[j] = dot / sqrt((double)hs);
            max = weights[j] > max ? weights[j] : max;
        }
        for (int j = first_visible; j <= position; j++)
            sum += weights[j] = exp(weights[j] - max);
        for (int d = 0; d < hs; d++) {
            double acc = 0.0;
            for (int j = first_visible; j <= position; j++)
                acc += weights[j] * nt->values[layer_base + (size_t)j * c->kv_dim + g * hs + d];
            out[h * hs + d] = acc / sum;
        }
    }
    free(weights);
}

void naive_step(naive_transformer *nt, int token, int first_visible, double *logits)
{
    const eng_model_config *c = &nt->model->config;
    const eng_model_weights *w = &nt->model->weights;
    const int dim = c->dim, kv = c->kv_dim, hidden = c->hidden_dim;
    const int pos = nt->n_positions++;
    double *x = malloc((size_t)dim * sizeof *x), *xb = malloc((size_t)dim * sizeof *xb);
    double *q = malloc((size_t)dim * sizeof *q), *att = malloc((size_t)dim * sizeof *att);
    double *tmp = malloc((size_t)dim * sizeof *tmp);
    double *h1 = malloc((size_t)hidden * sizeof *h1), *h3 = malloc((size_t)hidden * sizeof *h3);
    for (int i = 0; i < dim; i++)
        x[i] = w->token_embedding[(size_t)token * dim + i];
    for (int l = 0; l < c->n_layers; l++) {
        const size_t L = (size_t)l;
        double *k = nt->keys + (L * nt->max_positions + pos) * kv;
        double *v = nt->values + (L * nt->max_positions + pos) * kv;
        rmsnorm(xb, x, w->rms_att + L * dim, dim);
        matvec(q, w->wq + L * dim * dim, xb, dim, dim);
        matvec(k, w->wk + L * kv * dim, xb, kv, dim);
        matvec(v, w->wv + L * kv * dim, xb, kv, dim);
        rotate(q, c->n_heads, c->head_size, pos);
        rotate(k, c->n_kv_heads, c->head_size, pos);
        attend(nt, l, q, pos, first_visible, att);
        matvec(tmp, w->wo + L * dim * dim, att, dim, dim);
        for (int i = 0; i < dim; i++)
            x[i] += tmp[i];
        rmsnorm(xb, x, w->rms_ffn + L * dim, dim);
        matvec(h1, w->w1 + L * hidden * dim, xb, hidden, dim);
        matvec(h3, w->w3 + L * hidden * dim, xb, hidden, dim);
        for (int i = 0; i < hidden; i++)
            h1[i] = h1[i] / (1.0 + exp(-h1[i])) * h3[i];
        matvec(tmp, w->w2 + L * dim * hidden, h1, dim, hidden);
        for (int i = 0; i < dim; i++)
            x[i] += tmp[i];
    }
    rmsnorm(xb, x, w->rms_final, dim);
    matvec(logits, w->wcls, xb, c->vocab_size, dim);
    free(x), free(xb), free(q), free(att), free(tmp), free(h1), free(h3);
}
