/* kf-eval's metrics on tiny synthetic cases with known answers: NLL,
 * top-1 agreement, LCS and ROUGE-L, the attention-mass count and its
 * per-head measure, the seed statistics, and the per-document averaging
 * and CSV rows built from raw per-step results. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "metrics.h"
#include "report.h"
#include "runner.h"

#define EPS 1e-12

static void test_nll(void **state)
{
    (void)state;
    const float uniform[4] = {0, 0, 0, 0};
    assert_float_equal(eval_nll(uniform, 4, 2), log(4.0), EPS);
    /* p = (1/4, 3/4) */
    const float two[2] = {0.0f, (float)log(3.0)};
    assert_float_equal(eval_nll(two, 2, 1), -log(0.75), 1e-7);
    assert_float_equal(eval_nll(two, 2, 0), -log(0.25), 1e-7);
    /* large logits: no overflow */
    const float big[3] = {1000.0f, 0.0f, -1000.0f};
    assert_float_equal(eval_nll(big, 3, 0), 0.0, 1e-300);
    assert_float_equal(eval_nll(big, 3, 1), 1000.0, 1e-9);
    assert_float_equal(eval_nll(big, 3, 2), 2000.0, 1e-9);
}

static void test_top1(void **state)
{
    (void)state;
    const int a[4] = {1, 2, 3, 4}, b[4] = {1, 2, 0, 4};
    assert_float_equal(eval_top1_agreement(a, b, 4), 0.75, EPS);
    assert_float_equal(eval_top1_agreement(a, a, 4), 1.0, EPS);
    assert_float_equal(eval_top1_agreement(a, b, 0), 1.0, EPS);
}

static void test_lcs_and_rouge(void **state)
{
    (void)state;
    /* The textbook pair ABCBDAB / BDCABA has an LCS of 4 (BCBA). */
    const int x[7] = {'A', 'B', 'C', 'B', 'D', 'A', 'B'}, y[6] = {'B', 'D', 'C', 'A', 'B', 'A'};
    assert_int_equal(eval_lcs_length(x, 7, y, 6), 4);
    assert_int_equal(eval_lcs_length(y, 6, x, 7), 4);
    assert_int_equal(eval_lcs_length(x, 7, x, 7), 7);
    assert_int_equal(eval_lcs_length(x, 7, y, 0), 0);
    const int none[3] = {9, 9, 9};
    assert_int_equal(eval_lcs_length(x, 7, none, 3), 0);
    /* F1 = 2 * LCS / (|c| + |r|) */
    const int c[4] = {1, 2, 3, 4}, r[5] = {1, 3, 4, 5, 6};
    assert_float_equal(eval_rouge_l_f1(c, 4, r, 5), 6.0 / 9.0, EPS);
    assert_float_equal(eval_rouge_l_f1(c, 4, c, 4), 1.0, EPS);
    assert_float_equal(eval_rouge_l_f1(c, 0, r, 0), 1.0, EPS);
    assert_float_equal(eval_rouge_l_f1(c, 4, r, 0), 0.0, EPS);
    assert_float_equal(eval_rouge_l_f1(c, 0, r, 5), 0.0, EPS);
    assert_float_equal(eval_rouge_l_f1(none, 3, c, 4), 0.0, EPS);
    /* a reversed sequence shares only one token in order */
    const int fwd[5] = {1, 2, 3, 4, 5}, rev[5] = {5, 4, 3, 2, 1};
    assert_float_equal(eval_rouge_l_f1(fwd, 5, rev, 5), 0.2, EPS);
}

static void test_mass_count_known(void **state)
{
    (void)state;
    double w[4];
    const double halves[4] = {0.125, 0.5, 0.125, 0.25};
    memcpy(w, halves, sizeof w);
    assert_int_equal(eval_mass_count(w, 4, 0.9), 4); /* 0.5+0.25+0.125 = 0.875 < 0.9 */
    memcpy(w, halves, sizeof w);
    assert_int_equal(eval_mass_count(w, 4, 0.875), 3); /* reaching the share is enough */
    memcpy(w, halves, sizeof w);
    assert_int_equal(eval_mass_count(w, 4, 0.75), 2);
    memcpy(w, halves, sizeof w);
    assert_int_equal(eval_mass_count(w, 4, 0.5), 1);
    memcpy(w, halves, sizeof w);
    assert_int_equal(eval_mass_count(w, 4, 1.0), 4);
    /* unnormalised weights: the share is of their total */
    double scaled[4] = {1, 4, 1, 2};
    assert_int_equal(eval_mass_count(scaled, 4, 0.75), 2);
    /* ten equal weights: 90% needs nine */
    double ten[10];
    for (int i = 0; i < 10; i++)
        ten[i] = 0.1;
    assert_int_equal(eval_mass_count(ten, 10, 0.9), 9);
    double one = 1.0;
    assert_int_equal(eval_mass_count(&one, 1, 0.9), 1);
    assert_int_equal(eval_mass_count(NULL, 0, 0.9), 0);
    double zeros[3] = {0, 0, 0};
    assert_int_equal(eval_mass_count(zeros, 3, 0.9), 0);
}

static int descending(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

/* Against sorting, on dyadic weights (every partial sum is exact) with many
 * ties. */
static void test_mass_count_random(void **state)
{
    (void)state;
    srand(12345);
    double w[300], sorted[300];
    for (int round = 0; round < 500; round++) {
        const int n = 1 + rand() % 300;
        const int levels = 1 + rand() % 16;
        double total = 0.0;
        for (int i = 0; i < n; i++) {
            w[i] = (double)(rand() % levels) / 1024.0;
            total += w[i];
            sorted[i] = w[i];
        }
        const double shares[3] = {0.5, 0.9, 1.0};
        const double share = shares[round % 3];
        qsort(sorted, (size_t)n, sizeof *sorted, descending);
        int expected = 0;
        double acc = 0.0;
        if (total > 0)
            while (acc < share * total)
                acc += sorted[expected++];
        assert_int_equal(eval_mass_count(w, n, share), expected);
    }
}

static void test_head_mass(void **state)
{
    (void)state;
    enum { N = 4 };
    double weights[N], columns[N], row_mean, accumulated;
    float logits[N][N];
    const float *rows[N];
    for (int i = 0; i < N; i++)
        rows[i] = logits[i];
    /* Every row attends only to token 0: one token carries each row
     * (fractions 1, 1/2, 1/3, 1/4) and all the accumulated mass. */
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++)
            logits[i][j] = j == 0 ? 0.0f : -INFINITY;
    eval_head_mass(rows, N, 0.9, weights, columns, &row_mean, &accumulated);
    assert_float_equal(row_mean, (1.0 + 1.0 / 2 + 1.0 / 3 + 1.0 / 4) / 4, EPS);
    assert_float_equal(accumulated, 0.25, EPS);
    /* Uniform rows need every token (0.9 > (i)/(i+1) for i + 1 <= 4); the
     * column sums 25/12, 13/12, 7/12, 3/12 reach 90% of 4 with three. */
    memset(logits, 0, sizeof logits);
    eval_head_mass(rows, N, 0.9, weights, columns, &row_mean, &accumulated);
    assert_float_equal(row_mean, 1.0, EPS);
    assert_float_equal(accumulated, 0.75, EPS);
    /* One dominant token per row (e^10 against at most three e^0): one
     * token suffices, and the dominant token may be any visible one. */
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++)
            logits[i][j] = j == i ? 10.0f : 0.0f;
    eval_head_mass(rows, N, 0.9, weights, columns, &row_mean, &accumulated);
    assert_float_equal(row_mean, (1.0 + 1.0 / 2 + 1.0 / 3 + 1.0 / 4) / 4, EPS);
}

static void test_stat(void **state)
{
    (void)state;
    eval_stat s = {0};
    assert_true(isnan(eval_stat_mean(&s)));
    eval_stat_add(&s, 3.0);
    assert_float_equal(eval_stat_sd(&s), 0.0, EPS);
    eval_stat_add(&s, 1.0);
    eval_stat_add(&s, 2.0);
    assert_float_equal(eval_stat_mean(&s), 2.0, EPS);
    assert_float_equal(eval_stat_sd(&s), 1.0, EPS);
    assert_float_equal(s.min, 1.0, EPS);
    assert_float_equal(s.max, 3.0, EPS);
}

/* Two documents, the full cache and one policy, M = 4 steps, G = 3. */
enum { DOCS = 2, RUNS = 2, M = 4, G = 3 };

typedef struct fake {
    eval_doc docs[DOCS];
    eval_run runs[RUNS];
    eval_sweep sweep;
    eval_results res;
    double nll[DOCS * RUNS * M];
    int argmax[DOCS * RUNS * M];
    int generated[DOCS * RUNS * G];
    int n_generated[DOCS * RUNS];
} fake;

static void make_fake(fake *f)
{
    memset(f, 0, sizeof *f);
    f->docs[0].name = "first";
    f->docs[1].name = "second";
    f->runs[0] = (eval_run){EVAL_FULL, 1.0, 0};
    f->runs[1] = (eval_run){KF_POLICY_WINDOW, 0.5, 0};
    f->sweep = (eval_sweep){.docs = f->docs, .n_docs = DOCS, .runs = f->runs, .n_runs = RUNS,
                            .prompt_tokens = 8, .gen_tokens = M, .rouge_tokens = G};
    f->res = (eval_results){.n_docs = DOCS, .n_runs = RUNS, .n_steps = M, .n_rouge = G,
                            .n_layers = 1, .nll = f->nll, .argmax = f->argmax,
                            .generated = f->generated, .n_generated = f->n_generated};
    /* doc 0: full NLL 1, 2, 3, 4 (mean 2.5); window 2, 2, 4, 4 (mean 3) */
    const double nll[DOCS][RUNS][M] = {{{1, 2, 3, 4}, {2, 2, 4, 4}},
                                       {{1, 1, 1, 1}, {0.5, 1, 1, 1.5}}};
    const int argmax[DOCS][RUNS][M] = {{{5, 6, 7, 8}, {5, 0, 7, 8}},
                                       {{1, 2, 3, 4}, {4, 3, 2, 1}}};
    const int generated[DOCS][RUNS][G] = {{{10, 11, 12}, {10, 12, 0}},
                                          {{7, 8, 9}, {7, 8, 9}}};
    const int n_generated[DOCS][RUNS] = {{3, 2}, {3, 3}};
    memcpy(f->nll, nll, sizeof nll);
    memcpy(f->argmax, argmax, sizeof argmax);
    memcpy(f->generated, generated, sizeof generated);
    memcpy(f->n_generated, n_generated, sizeof n_generated);
}

static void test_document_metrics(void **state)
{
    (void)state;
    fake f;
    make_fake(&f);
    eval_doc_metrics m;
    assert_int_equal(eval_doc_metrics_of(&f.sweep, &f.res, 0, 1, &m), 0);
    assert_float_equal(m.nll, 3.0, EPS);
    assert_float_equal(m.full_nll, 2.5, EPS);
    assert_float_equal(m.dnll, 0.5, EPS);
    assert_float_equal(m.top1, 0.75, EPS);
    assert_float_equal(m.rouge_l, 2.0 * 2 / (2 + 3), EPS); /* LCS(10 12, 10 11 12) = 2 */
    assert_int_equal(eval_doc_metrics_of(&f.sweep, &f.res, 1, 1, &m), 0);
    assert_float_equal(m.nll, 1.0, EPS);
    assert_float_equal(m.dnll, 0.0, EPS);
    assert_float_equal(m.top1, 0.0, EPS);
    assert_float_equal(m.rouge_l, 1.0, EPS);
    assert_int_equal(eval_doc_metrics_of(&f.sweep, &f.res, 1, 0, &m), 0);
    assert_float_equal(m.dnll, 0.0, EPS);
    assert_float_equal(m.top1, 1.0, EPS);
    /* a step no job wrote */
    f.nll[M + 2] = NAN;
    assert_int_equal(eval_doc_metrics_of(&f.sweep, &f.res, 0, 1, &m), -1);
}

static void test_csv_rows(void **state)
{
    (void)state;
    fake f;
    make_fake(&f);
    char path[] = "/tmp/kf-eval-test-XXXXXX";
    const int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(eval_write_csv(path, &f.sweep, &f.res, true), 0);
    FILE *in = fopen(path, "r");
    assert_non_null(in);
    char text[2048] = "";
    const size_t got = fread(text, 1, sizeof text - 1, in);
    text[got] = '\0';
    fclose(in);
    unlink(path);
    assert_string_equal(text,
                        "doc,policy,budget,seed,nll,full_nll,dnll,top1,rougeL\n"
                        "first,full,1,0,2.500000,2.500000,0.000000,1.000000,1.000000\n"
                        "first,window,0.5,0,3.000000,2.500000,0.500000,0.750000,0.800000\n"
                        "second,full,1,0,1.000000,1.000000,0.000000,1.000000,1.000000\n"
                        "second,window,0.5,0,1.000000,1.000000,0.000000,0.000000,1.000000\n");
}

static void test_task_sequences(void **state)
{
    (void)state;
    int ids[200], out[111];
    for (int i = 0; i < 200; i++)
        ids[i] = 1000 + i;
    const eval_doc doc = {"doc", ids, 200};
    eval_task_sequence(EVAL_TASK_CONTINUE, &doc, 100, 10, out);
    for (int i = 0; i < 111; i++)
        assert_int_equal(out[i], 1000 + i);
    /* recall: the prompt, then ids[64 : 64 + M + 1] again */
    eval_task_sequence(EVAL_TASK_RECALL, &doc, 100, 10, out);
    for (int i = 0; i < 100; i++)
        assert_int_equal(out[i], 1000 + i);
    for (int t = 0; t <= 10; t++)
        assert_int_equal(out[100 + t], 1000 + EVAL_RECALL_OFFSET + t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nll),
        cmocka_unit_test(test_top1),
        cmocka_unit_test(test_lcs_and_rouge),
        cmocka_unit_test(test_mass_count_known),
        cmocka_unit_test(test_mass_count_random),
        cmocka_unit_test(test_head_mass),
        cmocka_unit_test(test_stat),
        cmocka_unit_test(test_document_metrics),
        cmocka_unit_test(test_csv_rows),
        cmocka_unit_test(test_task_sequences),
    };
    return cmocka_run_group_tests_name("kf-eval metrics", tests, NULL, NULL);
}
