/* kf-eval's outputs: the per-document CSV, the Markdown summary and the
 * gnuplot figure, all from the raw results of a sweep. */
#ifndef KF_EVAL_REPORT_H
#define KF_EVAL_REPORT_H

#include <stdbool.h>
#include <stdio.h>

#include "runner.h"

/* kf-eval's name of a policy (EVAL_FULL or a kf_policy). */
const char *eval_policy_name(int policy);
/* Names Keyformer and H2O after the scoring options of cfg that are on
 * (obs_window, pool_kernel, score_norm, layer_slope), e.g.
 * "keyformer_obs32_maxpool7" ("_slope50" for a slope of 0.5, "_slopem50"
 * for -0.5); window and
 * sinks after layer_slope only,
 * so that CSVs of sweeps with different options can be compared. Call
 * before any thread reads the names. */
void eval_set_policy_variant(const kf_config *cfg);

/* The metrics of one document under one run. rouge_l is NAN without
 * greedy tokens. */
typedef struct eval_doc_metrics {
    double nll;      /* mean over the M predictions */
    double full_nll; /* the same with the full cache */
    double dnll;     /* nll - full_nll */
    double top1;     /* agreement with the full cache's argmax */
    double rouge_l;  /* ROUGE-L F1 of the greedy tokens vs the full cache's */
} eval_doc_metrics;

/* Returns 0, or -1 if a job left its outputs unwritten. */
int eval_doc_metrics_of(const eval_sweep *sw, const eval_results *res, int doc, int run,
                        eval_doc_metrics *out);

/* One CSV row per document x run (the full cache once per document, with
 * budget 1, when include_full). Returns 0 or -1. */
int eval_write_csv(const char *path, const eval_sweep *sw, const eval_results *res,
                   bool include_full);

/* The Markdown summary (tables of means over documents; mean ± sample
 * standard deviation over seeds where there are several). */
void eval_print_summary(FILE *out, const eval_sweep *sw, const eval_results *res,
                        bool include_full);

/* ΔNLL, top-1 and ROUGE-L against the budget, one line per policy, through
 * gnuplot's pngcairo terminal. Returns 0, or -1 if gnuplot failed. */
int eval_plot(const char *png_path, const eval_sweep *sw, const eval_results *res);

#endif
