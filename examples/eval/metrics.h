/* The quality metrics of kf-eval, free of any model or engine so that they
 * can be tested on tiny synthetic cases (tests/eval/test_metrics.c).
 *
 * Definitions (doc/quality.md states them with the results):
 * - NLL of a prediction: -ln softmax(logits)[target], in double precision.
 * - top-1 agreement: the fraction of positions whose argmax equals the
 *   full cache's argmax at the same position.
 * - ROUGE-L F1 over token ids: with l = LCS(candidate, reference),
 *   P = l/|candidate|, R = l/|reference|, F1 = 2PR/(P+R) = 2l/(|c|+|r|);
 *   1 when both are empty, 0 when only one is.
 * - Attention mass: the smallest number of entries of a softmax row whose
 *   largest weights add up to at least a given share of the row's mass. */
#ifndef KF_EVAL_METRICS_H
#define KF_EVAL_METRICS_H

#include <stddef.h>

/* -ln softmax(logits)[target] over n logits, by log-sum-exp in double. */
double eval_nll(const float *logits, int n, int target);

/* Fraction of the n positions where a[i] == b[i]; 1 for n == 0. */
double eval_top1_agreement(const int *a, const int *b, int n);

/* Length of the longest common subsequence of a[0..na) and b[0..nb).
 * Uses O(min(na, nb)) memory; returns -1 if that allocation fails. */
int eval_lcs_length(const int *a, int na, const int *b, int nb);

/* ROUGE-L F1 of a candidate against a reference (see above); -1 on
 * allocation failure. */
double eval_rouge_l_f1(const int *candidate, int n_candidate, const int *reference,
                       int n_reference);

/* Smallest count c such that the c largest of the n non-negative weights
 * add up to at least share * (their total), share in (0, 1]. 0 for n == 0.
 * Reorders w (a partial sort in place). */
int eval_mass_count(double *w, int n, double share);

/* Attention concentration of one head over a causal prompt of n rows:
 * rows[i] points at the logits of row i, whose columns 0..i are visible.
 * With w_i = softmax(row i) and c_i = eval_mass_count(w_i, i + 1, share):
 * *row_mean = mean over rows of c_i / (i + 1), and *accumulated =
 * eval_mass_count(A, n, share) / n for the attention each token received
 * over all rows, A_j = sum_i w_i[j] (the H2O score). weights and columns
 * are scratch of n doubles each. */
void eval_head_mass(const float *const *rows, int n, double share, double *weights,
                    double *columns, double *row_mean, double *accumulated);

/* softmax of the n logits x (-INFINITY allowed, at least one finite) into
 * w, in double. */
void eval_softmax(const float *x, int n, double *w);

/* Running mean and spread of a few values (seeds). */
typedef struct eval_stat {
    int n;
    double sum, sum_sq, min, max;
} eval_stat;

void eval_stat_add(eval_stat *s, double x);
double eval_stat_mean(const eval_stat *s);
/* Sample standard deviation (n - 1 in the denominator); 0 for n < 2. */
double eval_stat_sd(const eval_stat *s);

#endif
