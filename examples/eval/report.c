#include "report.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "metrics.h"

static void print_passage_kept(FILE *out, const eval_sweep *sw, const eval_results *res);

/* Keyformer's and H2O's names with the options beyond the paper that the
 * sweep turns on (eval_set_policy_variant), e.g. "h2o_obs32_maxpool7". */
static char keyformer_name[96] = "keyformer", h2o_name[96] = "h2o";
static char window_name[96] = "window", sinks_name[96] = "sinks";

static void variant_name(char *out, size_t size, const char *base, const kf_config *cfg)
{
    int n = snprintf(out, size, "%s", base);
    if (cfg->obs_window && n > 0 && (size_t)n < size)
        n += snprintf(out + n, size - (size_t)n, "_obs%u", (unsigned)cfg->obs_window);
    if (cfg->pool_kernel > 1 && n > 0 && (size_t)n < size)
        n += snprintf(out + n, size - (size_t)n, "_%spool%u",
                      cfg->pool_mode == KF_POOL_AVG ? "avg" : "max", (unsigned)cfg->pool_kernel);
    if (cfg->score_norm == KF_SCORE_NORM_SEEN && n > 0 && (size_t)n < size)
        n += snprintf(out + n, size - (size_t)n, "_norm");
    if (cfg->sink_tokens && n > 0 && (size_t)n < size)
        n += snprintf(out + n, size - (size_t)n, "_sinks%u", (unsigned)cfg->sink_tokens);
    if (cfg->head_budget == KF_HEAD_BUDGET_ADAPTIVE && n > 0 && (size_t)n < size)
        n += snprintf(out + n, size - (size_t)n, "_ada%d",
                      (int)lround(cfg->head_floor * 100.0));
    if (cfg->layer_slope != 0.0f && n > 0 && (size_t)n < size)
        snprintf(out + n, size - (size_t)n, "_slope%s%d", cfg->layer_slope < 0.0f ? "m" : "",
                 abs((int)lround(cfg->layer_slope * 100.0)));
}

void eval_set_policy_variant(const kf_config *cfg)
{
    variant_name(keyformer_name, sizeof keyformer_name, "keyformer", cfg);
    variant_name(h2o_name, sizeof h2o_name, "h2o", cfg);
    /* the scoring options do not reach WINDOW and SINKS; the slope does */
    kf_config slope_only;
    kf_config_default(&slope_only);
    slope_only.layer_slope = cfg->layer_slope;
    variant_name(window_name, sizeof window_name, "window", &slope_only);
    variant_name(sinks_name, sizeof sinks_name, "sinks", &slope_only);
}

const char *eval_policy_name(int policy)
{
    switch (policy) {
    case EVAL_FULL: return "full";
    case KF_POLICY_KEYFORMER: return keyformer_name;
    case KF_POLICY_H2O: return h2o_name;
    case KF_POLICY_WINDOW: return window_name;
    case KF_POLICY_SINKS: return sinks_name;
    default: return "?";
    }
}

int eval_doc_metrics_of(const eval_sweep *sw, const eval_results *res, int doc, int run,
                        eval_doc_metrics *out)
{
    const int M = res->n_steps, G = res->n_rouge;
    const size_t at = (size_t)doc * res->n_runs + (size_t)run;
    const size_t full = (size_t)doc * res->n_runs;
    const double *nll = res->nll + at * M, *full_nll = res->nll + full * M;
    double sum = 0.0, full_sum = 0.0;
    for (int t = 0; t < M; t++) {
        sum += nll[t];
        full_sum += full_nll[t];
    }
    if (isnan(sum) || isnan(full_sum))
        return -1;
    out->nll = sum / M;
    out->full_nll = full_sum / M;
    out->dnll = out->nll - out->full_nll;
    out->top1 = eval_top1_agreement(res->argmax + at * M, res->argmax + full * M, M);
    out->rouge_l = NAN;
    if (sw->rouge_tokens > 0) {
        if (res->n_generated[at] < 0 || res->n_generated[full] < 0)
            return -1;
        out->rouge_l = eval_rouge_l_f1(res->generated + at * G, res->n_generated[at],
                                       res->generated + full * G, res->n_generated[full]);
    }
    return 0;
}

/* One CSV field per RFC 4180: quoted, with quotes doubled, when it holds a
 * comma, a quote or a line break (document names come from the input). */
static void write_csv_field(FILE *f, const char *text)
{
    if (!strpbrk(text, ",\"\r\n")) {
        fputs(text, f);
        return;
    }
    fputc('"', f);
    for (const char *p = text; *p; p++) {
        if (*p == '"')
            fputc('"', f);
        fputc(*p, f);
    }
    fputc('"', f);
}

int eval_write_csv(const char *path, const eval_sweep *sw, const eval_results *res,
                   bool include_full)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "kf-eval: %s: %s\n", path, strerror(errno));
        return -1;
    }
    fprintf(f, "doc,policy,budget,seed,nll,full_nll,dnll,top1,rougeL\n");
    int rc = 0;
    for (int d = 0; d < sw->n_docs && rc == 0; d++)
        for (int r = include_full ? 0 : 1; r < sw->n_runs && rc == 0; r++) {
            eval_doc_metrics m;
            if ((rc = eval_doc_metrics_of(sw, res, d, r, &m)))
                break;
            const eval_run *run = &sw->runs[r];
            write_csv_field(f, sw->docs[d].name);
            fprintf(f, ",%s,%g,%llu,%.6f,%.6f,%.6f,%.6f,", eval_policy_name(run->policy), run->budget, (unsigned long long)run->seed,
                    m.nll, m.full_nll, m.dnll, m.top1);
            if (isnan(m.rouge_l))
                fprintf(f, "\n");
            else
                fprintf(f, "%.6f\n", m.rouge_l);
        }
    if (fclose(f) != 0 || rc != 0) {
        fprintf(stderr, "kf-eval: %s: %s\n", path, rc ? "missing results" : "write error");
        return -1;
    }
    return 0;
}

/* ---- summaries: runs grouped by (policy, budget), seeds inside ---- */

typedef struct group {
    int policy;
    double budget;
    eval_stat nll, dnll, top1, rouge; /* over seeds, of the means over docs */
} group;

/* Groups in run order; returns the count (groups has n_runs entries). */
static int group_runs(const eval_sweep *sw, const eval_results *res, group *groups)
{
    int n = 0;
    for (int r = 0; r < sw->n_runs; r++) {
        const eval_run *run = &sw->runs[r];
        int g = 0;
        while (g < n && !(groups[g].policy == run->policy && groups[g].budget == run->budget))
            g++;
        if (g == n)
            groups[n++] = (group){.policy = run->policy, .budget = run->budget};
        double nll = 0, dnll = 0, top1 = 0, rouge = 0;
        for (int d = 0; d < sw->n_docs; d++) {
            eval_doc_metrics m;
            if (eval_doc_metrics_of(sw, res, d, r, &m))
                m = (eval_doc_metrics){NAN, NAN, NAN, NAN, NAN};
            nll += m.nll, dnll += m.dnll, top1 += m.top1, rouge += m.rouge_l;
        }
        eval_stat_add(&groups[g].nll, nll / sw->n_docs);
        eval_stat_add(&groups[g].dnll, dnll / sw->n_docs);
        eval_stat_add(&groups[g].top1, top1 / sw->n_docs);
        eval_stat_add(&groups[g].rouge, rouge / sw->n_docs);
    }
    return n;
}

static void print_stat(FILE *out, const eval_stat *s, const char *format, bool sign)
{
    const double mean = eval_stat_mean(s);
    if (isnan(mean)) {
        fprintf(out, " – |");
        return;
    }
    fprintf(out, " ");
    if (sign && mean >= 0)
        fprintf(out, "+");
    fprintf(out, format, mean);
    if (s->n > 1) {
        fprintf(out, " ± ");
        fprintf(out, format, eval_stat_sd(s));
    }
    fprintf(out, " |");
}

static const char *rule_name(kf_rule rule)
{
    return rule == KF_RULE_REFERENCE ? "reference" : "dynamic";
}

static const char *granularity_name(kf_granularity g)
{
    return g == KF_GRANULARITY_LAYER ? "layer" : g == KF_GRANULARITY_UNIFORM ? "uniform"
                                                                             : "kv-head";
}

static int seeds_per_group(const eval_sweep *sw)
{
    int most = 1;
    for (int r = 0; r < sw->n_runs; r++) {
        int n = 0;
        for (int q = 0; q < sw->n_runs; q++)
            n += sw->runs[q].policy == sw->runs[r].policy &&
                 sw->runs[q].budget == sw->runs[r].budget;
        most = n > most ? n : most;
    }
    return most;
}

/* A pivot table: one row per budget, one column per policy. */
static void print_pivot(FILE *out, const char *title, const group *groups, int n_groups,
                        const eval_sweep *sw, int metric)
{
    int policies[8], n_policies = 0;
    double budgets[64];
    int n_budgets = 0;
    for (int g = 0; g < n_groups; g++) {
        if (groups[g].policy == EVAL_FULL)
            continue;
        int p = 0;
        while (p < n_policies && policies[p] != groups[g].policy)
            p++;
        if (p == n_policies && n_policies < 8)
            policies[n_policies++] = groups[g].policy;
        int b = 0;
        while (b < n_budgets && budgets[b] != groups[g].budget)
            b++;
        if (b == n_budgets && n_budgets < 64)
            budgets[n_budgets++] = groups[g].budget;
    }
    if (n_policies == 0)
        return;
    fprintf(out, "\n%s\n\n| budget | k |", title);
    for (int p = 0; p < n_policies; p++)
        fprintf(out, " %s |", eval_policy_name(policies[p]));
    fprintf(out, "\n|---:|---:|");
    for (int p = 0; p < n_policies; p++)
        fprintf(out, "---:|");
    fprintf(out, "\n");
    for (int b = 0; b < n_budgets; b++) {
        fprintf(out, "| %g | %d |", budgets[b], (int)floor(budgets[b] * sw->prompt_tokens));
        for (int p = 0; p < n_policies; p++) {
            const group *found = NULL;
            for (int g = 0; g < n_groups && !found; g++)
                if (groups[g].policy == policies[p] && groups[g].budget == budgets[b])
                    found = &groups[g];
            if (!found)
                fprintf(out, " – |");
            else if (metric == 0)
                print_stat(out, &found->dnll, "%.4f", true);
            else if (metric == 1)
                print_stat(out, &found->top1, "%.3f", false);
            else
                print_stat(out, &found->rouge, "%.3f", false);
        }
        fprintf(out, "\n");
    }
}

void eval_print_summary(FILE *out, const eval_sweep *sw, const eval_results *res,
                        bool include_full)
{
    const kf_config *lib = &sw->library;
    fprintf(out, "## kf-eval: task %s, %d documents\n\n",
            sw->task == EVAL_TASK_RECALL ? "recall" : "continue", sw->n_docs);
    fprintf(out, "P = %d prompt ids, M = %d teacher-forced predictions per document, "
                 "G = %d greedy tokens; recent ratio %g, rule %s, granularity %s, "
                 "%u sinks, tau %g -> %g over %u steps; %d seed(s) per random policy; "
                 "%.0f s on %d job(s) at a time.\n",
            sw->prompt_tokens, sw->gen_tokens, sw->rouge_tokens, lib->recent_ratio,
            rule_name(lib->rule), granularity_name(lib->granularity), lib->n_sinks,
            lib->tau_init, lib->tau_end, lib->tau_steps, seeds_per_group(sw), res->elapsed_s,
            sw->threads);
    if (lib->evict_interval > 1)
        fprintf(out, "Batched eviction: %u tokens at once every %u decode steps.\n",
                lib->evict_interval, lib->evict_interval);

    group *groups = calloc((size_t)sw->n_runs, sizeof *groups);
    if (!groups)
        return;
    const int n_groups = group_runs(sw, res, groups);
    fprintf(out, "\nMeans over documents (± sample standard deviation over seeds). "
                 "ΔNLL in nats against the full cache; top-1: agreement with the full "
                 "cache's argmax; ROUGE-L: F1 of the greedy continuation against the full "
                 "cache's.\n\n");
    fprintf(out, "| policy | budget | k | NLL | ΔNLL | top-1 | ROUGE-L |\n");
    fprintf(out, "|---|---:|---:|---:|---:|---:|---:|\n");
    for (int g = 0; g < n_groups; g++) {
        const group *gr = &groups[g];
        if (gr->policy == EVAL_FULL && !include_full)
            continue;
        const int k = gr->policy == EVAL_FULL ? sw->prompt_tokens
                                              : (int)floor(gr->budget * sw->prompt_tokens);
        fprintf(out, "| %s | %g | %d |", eval_policy_name(gr->policy), gr->budget, k);
        print_stat(out, &gr->nll, "%.4f", false);
        print_stat(out, &gr->dnll, "%.4f", true);
        print_stat(out, &gr->top1, "%.3f", false);
        print_stat(out, &gr->rouge, "%.3f", false);
        fprintf(out, "\n");
    }
    print_pivot(out, "ΔNLL (nats) by budget:", groups, n_groups, sw, 0);
    print_pivot(out, "Top-1 agreement by budget:", groups, n_groups, sw, 1);
    if (sw->rouge_tokens > 0)
        print_pivot(out, "ROUGE-L F1 by budget:", groups, n_groups, sw, 2);
    free(groups);

    if (sw->task == EVAL_TASK_RECALL) {
        fprintf(out, "\nFull-cache NLL of the recall task's %d predictions (the passage "
                     "ids[%d:%d] again after the prompt) against the continue task's "
                     "(drop: what any policy can lose on the repeat relative to fresh "
                     "text), and against the same %d predictions at the passage's first "
                     "occurrence in the prompt (copy gain: how much the model uses the "
                     "repeat).\n\n| doc | continue | recall | drop | first occurrence | "
                     "copy gain |\n|---|---:|---:|---:|---:|---:|\n",
                sw->gen_tokens, EVAL_RECALL_OFFSET + 1, EVAL_RECALL_OFFSET + 1 + sw->gen_tokens,
                sw->gen_tokens);
        double c_sum = 0, r_sum = 0, f_sum = 0;
        for (int d = 0; d < sw->n_docs; d++) {
            eval_doc_metrics m;
            const double recall = eval_doc_metrics_of(sw, res, d, 0, &m) ? NAN : m.nll;
            const double cont = res->continue_full_nll[d], first = res->passage_first_nll[d];
            c_sum += cont, r_sum += recall, f_sum += first;
            fprintf(out, "| %s | %.4f | %.4f | %+.4f | %.4f | %+.4f |\n", sw->docs[d].name, cont,
                    recall, cont - recall, first, first - recall);
        }
        const double n = sw->n_docs;
        fprintf(out, "| **mean** | %.4f | %.4f | %+.4f | %.4f | %+.4f |\n", c_sum / n, r_sum / n,
                (c_sum - r_sum) / n, f_sum / n, (f_sum - r_sum) / n);
        print_passage_kept(out, sw, res);
    }

    if (sw->attention_mass) {
        fprintf(out, "\nAttention concentration at prefill (full cache, %d prompt rows): per "
                     "layer, the mean over heads and rows of the fraction of a row's visible "
                     "tokens whose largest softmax weights carry %g%% of its mass; and the "
                     "fraction of the prompt that carries %g%% of the attention accumulated "
                     "over all rows (the H2O score).\n\n| layer | per row | accumulated |\n"
                     "|---:|---:|---:|\n",
                sw->prompt_tokens, 100 * sw->mass_share, 100 * sw->mass_share);
        double row_all = 0, acc_all = 0;
        for (int l = 0; l < res->n_layers; l++) {
            double row = 0, acc = 0;
            for (int d = 0; d < sw->n_docs; d++) {
                row += res->mass_row[(size_t)d * res->n_layers + l];
                acc += res->mass_accumulated[(size_t)d * res->n_layers + l];
            }
            row /= sw->n_docs, acc /= sw->n_docs;
            row_all += row, acc_all += acc;
            fprintf(out, "| %d | %.3f | %.3f |\n", l, row, acc);
        }
        fprintf(out, "| all | %.3f | %.3f |\n", row_all / res->n_layers,
                acc_all / res->n_layers);
    }
}

/* Recall: the share of the repeated passage (prompt positions 64 .. 64 +
 * M) each policy's cache holds after the prompt and after the last step,
 * mean over documents and seeds; runs of one policy and budget pooled. */
static void print_passage_kept(FILE *out, const eval_sweep *sw, const eval_results *res)
{
    bool any = false;
    for (int i = 0; i < sw->n_runs * sw->n_docs && !any; i++)
        any = !isnan(res->passage_kept[2 * (size_t)i]);
    if (!any) /* full cache only, or a back end that does not measure it */
        return;
    fprintf(out, "\nThe share of the passage's positions %d .. %d that the cache holds, over "
                 "layers and KV heads: after the prompt's selection, and after the last of the "
                 "%d steps (mean over documents and seeds).\n\n| policy | budget | after the "
                 "prompt | after %d steps |\n|---|---:|---:|---:|\n",
            EVAL_RECALL_OFFSET, EVAL_RECALL_OFFSET + sw->gen_tokens, sw->gen_tokens,
            sw->gen_tokens);
    for (int run = 0; run < sw->n_runs; run++) {
        const eval_run *x = &sw->runs[run];
        bool first = true; /* print each (policy, budget) once, at its first run */
        for (int o = 0; o < run && first; o++)
            first = sw->runs[o].policy != x->policy || sw->runs[o].budget != x->budget;
        if (!first || x->policy == EVAL_FULL)
            continue;
        double sum[2] = {0, 0};
        int count = 0;
        for (int o = run; o < sw->n_runs; o++) {
            if (sw->runs[o].policy != x->policy || sw->runs[o].budget != x->budget)
                continue;
            for (int d = 0; d < sw->n_docs; d++) {
                const double *kept = res->passage_kept + 2 * ((size_t)d * sw->n_runs + o);
                if (isnan(kept[0]) || isnan(kept[1]))
                    continue;
                sum[0] += kept[0], sum[1] += kept[1], count++;
            }
        }
        if (count)
            fprintf(out, "| %s | %g | %.3f | %.3f |\n", eval_policy_name(x->policy), x->budget,
                    sum[0] / count, sum[1] / count);
    }
}

/* ---- the figure ---- */

/* gnuplot reading its script from a pipe, with the output path as ARG1 of
 * `gnuplot -c /dev/stdin PATH`: a call argument is a string value, never
 * parsed as gnuplot code, and no shell runs, so any bytes in the path
 * (quotes, newlines, backslashes) only name the file. */
typedef struct gnuplot {
    pid_t pid;
    FILE *script;
} gnuplot;

static int gnuplot_start(gnuplot *gp, const char *png_path)
{
    int fds[2];
    if (pipe(fds) != 0) {
        fprintf(stderr, "kf-eval: cannot run gnuplot: %s\n", strerror(errno));
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    gp->pid = fork();
    if (gp->pid == 0) {
        close(fds[1]);
        if (dup2(fds[0], STDIN_FILENO) < 0)
            _exit(127);
        close(fds[0]);
        char *const argv[] = {"gnuplot", "-c", "/dev/stdin", (char *)png_path, NULL};
        execvp("gnuplot", argv);
        _exit(127);
    }
    close(fds[0]);
    gp->script = gp->pid > 0 ? fdopen(fds[1], "w") : NULL;
    if (!gp->script) {
        fprintf(stderr, "kf-eval: cannot run gnuplot: %s\n", strerror(errno));
        close(fds[1]);
        if (gp->pid > 0)
            waitpid(gp->pid, NULL, 0);
        return -1;
    }
    return 0;
}

/* Closes the script and waits; 0 if gnuplot succeeded. */
static int gnuplot_finish(gnuplot *gp)
{
    const int write_failed = fclose(gp->script) != 0;
    int status;
    pid_t got;
    do
        got = waitpid(gp->pid, &status, 0);
    while (got < 0 && errno == EINTR);
    if (got != gp->pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0 || write_failed) {
        const int code = got == gp->pid && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        fprintf(stderr, "kf-eval: gnuplot failed (exit status %d)%s\n", code,
                code == 127 ? ": is gnuplot installed?" : "");
        return -1;
    }
    return 0;
}

/* The data blocks: per policy, budget then mean/min/max of each metric
 * over seeds. */
static void write_plot_data(FILE *gp, const group *groups, int n_groups, const int *policies,
                            int n_policies)
{
    for (int p = 0; p < n_policies; p++) {
        fprintf(gp, "$%s << EOD\n", eval_policy_name(policies[p]));
        for (int g = 0; g < n_groups; g++) {
            const group *gr = &groups[g];
            if (gr->policy != policies[p])
                continue;
            fprintf(gp, "%g %.6f %.6f %.6f %.6f %.6f %.6f %.6f %.6f %.6f\n", gr->budget,
                    eval_stat_mean(&gr->dnll), gr->dnll.min, gr->dnll.max,
                    eval_stat_mean(&gr->top1), gr->top1.min, gr->top1.max,
                    eval_stat_mean(&gr->rouge), gr->rouge.min, gr->rouge.max);
        }
        fprintf(gp, "EOD\n");
    }
}

/* The plot commands; only numbers and fixed names, never input text. */
static void write_plot_commands(FILE *gp, const eval_sweep *sw, const int *policies,
                                int n_policies)
{
    const int panels = sw->rouge_tokens > 0 ? 3 : 2;
    fprintf(gp,
            "set terminal pngcairo size %d,520 font 'sans,10'\n"
            "set output ARG1\n"
            "set multiplot layout 1,%d title 'kf-eval, task %s: %d documents, prompt %d, "
            "%d teacher-forced, %d greedy; recent %g, rule %s' font 'sans,11'\n"
            "set grid\nset key below horizontal maxrows 3 spacing 1.2\nset bmargin 9\n"
            "set xlabel 'KV budget (fraction of the prompt)'\n"
            "set xrange [0:1]\nset linetype 1 lc rgb '#d62728' lw 2 pt 7\n"
            "set linetype 2 lc rgb '#1f77b4' lw 2 pt 5\nset linetype 3 lc rgb '#2ca02c' lw 2 pt 9\n"
            "set linetype 4 lc rgb '#9467bd' lw 2 pt 11\n",
            520 * panels, panels, sw->task == EVAL_TASK_RECALL ? "recall" : "continue",
            sw->n_docs, sw->prompt_tokens, sw->gen_tokens, sw->rouge_tokens,
            sw->library.recent_ratio, rule_name(sw->library.rule));
    static const char *titles[] = {"ΔNLL vs full cache (nats, lower is better)",
                                   "top-1 agreement with the full cache",
                                   "ROUGE-L F1 of greedy tokens vs the full cache"};
    static const char *references[] = {"0", "1", "1"};
    for (int panel = 0; panel < panels; panel++) {
        const int col = 2 + 3 * panel;
        fprintf(gp, "set title \"%s\"\nset ylabel ''\nplot %s with lines dt 2 lc rgb 'black' "
                    "title 'full'", titles[panel], references[panel]);
        for (int p = 0; p < n_policies; p++)
            fprintf(gp, ", $%s using 1:%d:%d:%d with yerrorlines lt %d title '%s'",
                    eval_policy_name(policies[p]), col, col + 1, col + 2,
                    policies[p] == KF_POLICY_KEYFORMER ? 1 : policies[p] == KF_POLICY_H2O ? 2
                    : policies[p] == KF_POLICY_WINDOW ? 3 : 4,
                    eval_policy_name(policies[p]));
        fprintf(gp, "\n");
    }
    fprintf(gp, "unset multiplot\n");
}

int eval_plot(const char *png_path, const eval_sweep *sw, const eval_results *res)
{
    group *groups = calloc((size_t)sw->n_runs, sizeof *groups);
    if (!groups)
        return -1;
    const int n_groups = group_runs(sw, res, groups);
    int policies[8], n_policies = 0;
    for (int g = 0; g < n_groups; g++) {
        int p = 0;
        while (p < n_policies && policies[p] != groups[g].policy)
            p++;
        if (p == n_policies && n_policies < 8 && groups[g].policy != EVAL_FULL)
            policies[n_policies++] = groups[g].policy;
    }
    gnuplot gp;
    if (gnuplot_start(&gp, png_path)) {
        free(groups);
        return -1;
    }
    /* A gnuplot that dies early must not kill kf-eval through SIGPIPE. */
    struct sigaction ignore = {.sa_handler = SIG_IGN}, previous;
    sigaction(SIGPIPE, &ignore, &previous);
    write_plot_data(gp.script, groups, n_groups, policies, n_policies);
    write_plot_commands(gp.script, sw, policies, n_policies);
    free(groups);
    const int rc = gnuplot_finish(&gp);
    sigaction(SIGPIPE, &previous, NULL);
    return rc;
}
