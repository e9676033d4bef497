#include "metrics.h"

#include <math.h>
#include <stdlib.h>

double eval_nll(const float *logits, int n, int target)
{
    double max = -INFINITY;
    for (int i = 0; i < n; i++)
        max = logits[i] > max ? logits[i] : max;
    double sum = 0.0;
    for (int i = 0; i < n; i++)
        sum += exp((double)logits[i] - max);
    return log(sum) + max - (double)logits[target];
}

double eval_top1_agreement(const int *a, const int *b, int n)
{
    if (n <= 0)
        return 1.0;
    int same = 0;
    for (int i = 0; i < n; i++)
        same += a[i] == b[i];
    return (double)same / n;
}

int eval_lcs_length(const int *a, int na, const int *b, int nb)
{
    if (na <= 0 || nb <= 0)
        return 0;
    if (nb > na) { /* keep the row over the shorter sequence */
        const int *t = a;
        a = b, b = t;
        const int tn = na;
        na = nb, nb = tn;
    }
    /* row[j] = LCS(a[0..i), b[0..j)), updated in place for each i. */
    int *row = calloc((size_t)nb + 1, sizeof *row);
    if (!row)
        return -1;
    for (int i = 0; i < na; i++) {
        int diagonal = 0; /* LCS(a[0..i), b[0..j)) before row[j + 1] is overwritten */
        for (int j = 0; j < nb; j++) {
            const int above = row[j + 1];
            row[j + 1] = a[i] == b[j] ? diagonal + 1
                                      : (above > row[j] ? above : row[j]);
            diagonal = above;
        }
    }
    const int length = row[nb];
    free(row);
    return length;
}

double eval_rouge_l_f1(const int *candidate, int n_candidate, const int *reference,
                       int n_reference)
{
    if (n_candidate <= 0 && n_reference <= 0)
        return 1.0;
    if (n_candidate <= 0 || n_reference <= 0)
        return 0.0;
    const int lcs = eval_lcs_length(candidate, n_candidate, reference, n_reference);
    if (lcs < 0)
        return -1.0;
    return 2.0 * lcs / ((double)n_candidate + n_reference);
}

static void swap(double *w, int i, int j)
{
    const double t = w[i];
    w[i] = w[j];
    w[j] = t;
}

static double median_of_three(double a, double b, double c)
{
    if (a > b) {
        const double t = a;
        a = b, b = t;
    }
    /* a <= b */
    return c <= a ? a : c >= b ? b : c;
}

/* Quickselect on the mass: w[0..lo) always holds the lo largest weights
 * (mass acc < target); the answer lies in w[lo..hi), whose weights are no
 * larger than those before lo and no smaller than those from hi on. Each
 * round splits w[lo..hi) around a pivot into > | == | < and keeps the part
 * in which the target mass is reached. Expected linear time. */
int eval_mass_count(double *w, int n, double share)
{
    double total = 0.0;
    for (int i = 0; i < n; i++)
        total += w[i];
    const double target = share * total;
    if (n <= 0 || !(target > 0.0))
        return 0;
    int lo = 0, hi = n;
    double acc = 0.0;
    while (lo < hi) {
        const double pivot = median_of_three(w[lo], w[lo + (hi - lo) / 2], w[hi - 1]);
        /* Dutch flag: [lo, gt) > pivot, [gt, i) == pivot, (lt, hi) < pivot. */
        int gt = lo, i = lo, lt = hi - 1;
        while (i <= lt) {
            if (w[i] > pivot)
                swap(w, gt++, i++);
            else if (w[i] < pivot)
                swap(w, i, lt--);
            else
                i++;
        }
        double greater = 0.0;
        for (int k = lo; k < gt; k++)
            greater += w[k];
        if (acc + greater >= target) {
            hi = gt; /* the pivot itself is outside: the range shrinks */
            continue;
        }
        acc += greater;
        const int n_equal = i - gt;
        if (acc + n_equal * pivot >= target) {
            /* pivot > 0 here, since acc < target <= acc + n_equal * pivot */
            int m = (int)ceil((target - acc) / pivot);
            m = m < 1 ? 1 : m > n_equal ? n_equal : m;
            while (m > 1 && acc + (m - 1) * pivot >= target)
                m--;
            while (m < n_equal && acc + m * pivot < target)
                m++;
            return gt + m;
        }
        acc += n_equal * pivot;
        lo = i;
    }
    return lo; /* every weight was needed (rounding kept acc just short) */
}

void eval_softmax(const float *x, int n, double *w)
{
    double max = -INFINITY;
    for (int i = 0; i < n; i++)
        max = x[i] > max ? x[i] : max;
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        w[i] = exp((double)x[i] - max);
        sum += w[i];
    }
    for (int i = 0; i < n; i++)
        w[i] /= sum;
}

void eval_head_mass(const float *const *rows, int n, double share, double *weights,
                    double *columns, double *row_mean, double *accumulated)
{
    double fractions = 0.0;
    for (int j = 0; j < n; j++)
        columns[j] = 0.0;
    for (int i = 0; i < n; i++) {
        eval_softmax(rows[i], i + 1, weights);
        for (int j = 0; j <= i; j++)
            columns[j] += weights[j];
        fractions += (double)eval_mass_count(weights, i + 1, share) / (i + 1);
    }
    *row_mean = n > 0 ? fractions / n : 0.0;
    *accumulated = n > 0 ? (double)eval_mass_count(columns, n, share) / n : 0.0;
}

void eval_stat_add(eval_stat *s, double x)
{
    if (s->n == 0 || x < s->min)
        s->min = x;
    if (s->n == 0 || x > s->max)
        s->max = x;
    s->n++;
    s->sum += x;
    s->sum_sq += x * x;
}

double eval_stat_mean(const eval_stat *s)
{
    return s->n > 0 ? s->sum / s->n : NAN;
}

double eval_stat_sd(const eval_stat *s)
{
    if (s->n < 2)
        return 0.0;
    const double mean = s->sum / s->n;
    const double var = (s->sum_sq - s->n * mean * mean) / (s->n - 1);
    return var > 0.0 ? sqrt(var) : 0.0;
}
