/* Copyright (c) 2026 the libkeyformer developers. BSD-2-Clause, see COPYING. */
/* The options kf-eval and kf-eval-llama share (options.h). */
#include "eval/options.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <keyformer.h>

#include "eval/report.h"

/* The eval_options of a setter's cli_common (its first member). */
static eval_options *opts(cli_common *c) { return (eval_options *)c; }

void eval_options_init(eval_options *o)
{
    const long cores = sysconf(_SC_NPROCESSORS_ONLN);
    *o = (eval_options){
        .prompt_tokens = 1024, .gen_tokens = 256, .rouge_tokens = 128,
        .seeds = 1, .first_seed = 1, .max_docs = INT_MAX,
    };
    cli_common_init(&o->common);
    o->common.threads = cores < 1 ? 1 : cores > CLI_MAX_THREADS ? CLI_MAX_THREADS : (int)cores;
    eval_set_policies(&o->common, "full,keyformer,h2o,window,sinks");
    eval_set_budgets(&o->common, "0.1,0.2,0.3,0.5,0.7,0.9");
}

/* The item of a comma-separated list starting at p, copied into item
 * (NUL-terminated, cut to fit); returns the text after its comma, or NULL
 * after the last item. */
static const char *next_item(const char *p, char *item, size_t size, size_t *len)
{
    const char *comma = strchr(p, ',');
    *len = comma ? (size_t)(comma - p) : strlen(p);
    const size_t kept = *len < size - 1 ? *len : size - 1;
    memcpy(item, p, kept);
    item[kept] = '\0';
    return comma ? comma + 1 : NULL;
}

int eval_set_policies(cli_common *c, const char *v)
{
    eval_options *o = opts(c);
    memset(o->policy_wanted, 0, sizeof o->policy_wanted);
    o->n_policies = 0;
    for (int n = 1;; n++) {
        char item[64];
        size_t len;
        const char *rest = next_item(v, item, sizeof item, &len);
        const int policy = cli_policy_from_name(v, len);
        if (policy < EVAL_FULL)
            return cli_reject(c, "item %d '%s' is not one of " CLI_POLICY_NAMES, n, item);
        if (!o->policy_wanted[policy + 1]) {
            o->policy_wanted[policy + 1] = true;
            o->policy_order[o->n_policies++] = policy;
        }
        if (!rest)
            return 0;
        v = rest;
    }
}

int eval_set_budgets(cli_common *c, const char *v)
{
    eval_options *o = opts(c);
    o->n_budgets = 0;
    for (int n = 1;; n++) {
        char item[64];
        size_t len;
        const char *rest = next_item(v, item, sizeof item, &len);
        if (n > EVAL_MAX_BUDGETS)
            return cli_reject(c, "more than %d budgets", EVAL_MAX_BUDGETS);
        double b;
        if (len >= sizeof item || cli_parse_double(item, 0.0, 1.0, &b) || b <= 0.0)
            return cli_reject(c, "item %d '%s' is not a fraction of the prompt in (0, 1]", n,
                              item);
        o->budgets[o->n_budgets++] = b;
        if (!rest)
            return 0;
        v = rest;
    }
}

int eval_set_tokens(cli_common *c, const char *v) { opts(c)->tokens_path = v; return 0; }
int eval_set_text(cli_common *c, const char *v) { opts(c)->text_path = v; return 0; }
int eval_set_csv(cli_common *c, const char *v) { opts(c)->csv_path = v; return 0; }
int eval_set_plot(cli_common *c, const char *v) { opts(c)->plot_path = v; return 0; }

int eval_set_count(cli_common *c, const char *v, int min, int *out)
{
    if (cli_parse_int(v, min, CLI_MAX_TOKENS, out))
        return cli_reject(c, "a token count from %d to %d", min, CLI_MAX_TOKENS);
    return 0;
}
int eval_set_prompt(cli_common *c, const char *v)
{
    return eval_set_count(c, v, 2, &opts(c)->prompt_tokens);
}
int eval_set_gen(cli_common *c, const char *v)
{
    return eval_set_count(c, v, 1, &opts(c)->gen_tokens);
}
int eval_set_rouge(cli_common *c, const char *v)
{
    return eval_set_count(c, v, 0, &opts(c)->rouge_tokens);
}

int eval_set_max_docs(cli_common *c, const char *v)
{
    if (cli_parse_int(v, 1, INT_MAX, &opts(c)->max_docs))
        return cli_reject(c, "a document count of at least 1");
    return 0;
}

int eval_set_seeds(cli_common *c, const char *v)
{
    if (cli_parse_int(v, 1, EVAL_MAX_SEEDS, &opts(c)->seeds))
        return cli_reject(c, "a run count from 1 to %d", EVAL_MAX_SEEDS);
    return 0;
}

/* Unlike kf-generate, the eval programs refuse a negative seed. */
int eval_set_seed(cli_common *c, const char *v)
{
    if (cli_parse_seed(v, &opts(c)->first_seed) || *v == '-')
        return cli_reject(c, "a seed from 0 to %llu", ULLONG_MAX);
    return 0;
}

int eval_set_task(cli_common *c, const char *v)
{
    if (!strcmp(v, "continue"))
        opts(c)->task = EVAL_TASK_CONTINUE;
    else if (!strcmp(v, "recall"))
        opts(c)->task = EVAL_TASK_RECALL;
    else
        return cli_reject(c, "continue or recall");
    return 0;
}

/* Ratios and temperatures are read as doubles, as kf-eval always has. */
int eval_set_recent(cli_common *c, const char *v)
{
    if (cli_parse_double(v, 0.0, 1.0, &c->library.recent_ratio))
        return cli_reject(c, "a fraction of the budget in [0, 1]");
    return 0;
}

static int set_tau(cli_common *c, const char *v, float *out)
{
    double t;
    if (cli_parse_double(v, 1e-6, 1e6, &t))
        return cli_reject(c, "a temperature from 1e-6 to 1e6");
    *out = (float)t;
    return 0;
}
int eval_set_tau_init(cli_common *c, const char *v)
{
    return set_tau(c, v, &c->library.tau_init);
}
int eval_set_tau_end(cli_common *c, const char *v) { return set_tau(c, v, &c->library.tau_end); }

bool eval_options_wants_library_policy(const eval_options *o)
{
    for (int p = 0; p < o->n_policies; p++)
        if (o->policy_order[p] != EVAL_FULL)
            return true;
    return false;
}

int eval_options_check_combinations(const eval_options *o, const char *program)
{
    if (!eval_options_wants_library_policy(o) && o->common.library_option) {
        fprintf(stderr, "%s: %s needs a policy other than full in --policies\n", program,
                o->common.library_option);
        return -1;
    }
    const int64_t recall_end = (int64_t)EVAL_RECALL_OFFSET + o->gen_tokens + 1;
    if (o->task == EVAL_TASK_RECALL && o->prompt_tokens < recall_end) {
        fprintf(stderr, "%s: the recall task repeats ids[%d:%" PRId64 "], which must lie "
                        "inside the prompt: use --prompt-tokens >= %" PRId64 "\n",
                program, EVAL_RECALL_OFFSET, recall_end, recall_end);
        return -1;
    }
    return 0;
}

int eval_options_check_paths(const eval_options *o, const char *program, const char *model_path)
{
    char why[600];
    const bool text = o->text_path != NULL;
    if ((model_path && cli_check_input("--model", model_path, 0, why, sizeof why)) ||
        cli_check_input(text ? "--text" : "--tokens", text ? o->text_path : o->tokens_path,
                        CLI_MAX_DOCUMENT_BYTES, why, sizeof why) ||
        (o->csv_path && cli_check_output("--csv", o->csv_path, why, sizeof why)) ||
        (o->plot_path && cli_check_output("--plot", o->plot_path, why, sizeof why))) {
        fprintf(stderr, "%s: %s\n", program, why);
        return -1;
    }
    return 0;
}

FILE *eval_options_open_documents(const eval_options *o, char *message, size_t message_size)
{
    const bool text = o->text_path != NULL;
    const char *path = text ? o->text_path : o->tokens_path;
    const int fd = cli_open_input(text ? "--text" : "--tokens", path, CLI_MAX_DOCUMENT_BYTES,
                                  message, message_size);
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
    if (fd >= 0 && !f) {
        close(fd);
        snprintf(message, message_size, "%s: cannot read", path);
    }
    return f;
}

eval_run *eval_options_make_runs(const eval_options *o, int *n_runs)
{
    eval_run *runs = malloc(((size_t)o->n_policies * o->n_budgets * o->seeds + 1) * sizeof *runs);
    if (!runs)
        return NULL;
    int n = 0;
    runs[n++] = (eval_run){EVAL_FULL, 1.0, 0};
    for (int p = 0; p < o->n_policies; p++) {
        const int policy = o->policy_order[p];
        if (policy == EVAL_FULL)
            continue;
        for (int b = 0; b < o->n_budgets; b++) {
            const int seeds = policy == KF_POLICY_KEYFORMER ? o->seeds : 1;
            for (int s = 0; s < seeds; s++)
                runs[n++] = (eval_run){policy, o->budgets[b],
                                       policy == KF_POLICY_KEYFORMER ? o->first_seed + s : 0};
        }
    }
    *n_runs = n;
    return runs;
}

int eval_options_select_documents(const eval_options *o, const char *program,
                                  const eval_corpus *corpus, int vocab_size, eval_doc *usable)
{
    const int64_t needed = (int64_t)o->prompt_tokens + o->gen_tokens + 1;
    int n_usable = 0, longest = 0;
    for (int d = 0; d < corpus->n_docs && n_usable < o->max_docs; d++) {
        const eval_doc *doc = &corpus->docs[d];
        for (int i = 0; i < doc->n_ids && i < needed; i++)
            if (doc->ids[i] < 0 || doc->ids[i] >= vocab_size) {
                fprintf(stderr, "%s: %s: token id %d at %d is outside the model's "
                                "%d-token vocabulary\n",
                        program, doc->name, doc->ids[i], i, vocab_size);
                return -1;
            }
        longest = doc->n_ids > longest ? doc->n_ids : longest;
        if (doc->n_ids < needed)
            fprintf(stderr, "%s: skipping %s: %d ids, fewer than %" PRId64 "\n", program,
                    doc->name, doc->n_ids, needed);
        else
            usable[n_usable++] = *doc;
    }
    if (n_usable == 0) {
        fprintf(stderr, "%s: no document has the %" PRId64 " ids a run needs "
                        "(--prompt-tokens %d + --gen-tokens %d + 1); the longest of %d has %d: "
                        "lower --prompt-tokens or --gen-tokens\n",
                program, needed, o->prompt_tokens, o->gen_tokens, corpus->n_docs, longest);
        return -1;
    }
    return n_usable;
}

void eval_options_warn_past_context(const eval_options *o, const char *program, int64_t context)
{
    const int64_t positions = (int64_t)o->prompt_tokens +
                              (o->gen_tokens > o->rouge_tokens ? o->gen_tokens : o->rouge_tokens);
    if (context > 0 && positions > context)
        fprintf(stderr, "%s: warning: --prompt-tokens %d and %d more tokens make %" PRId64
                        " positions, more than the model's trained context of %" PRId64 "\n",
                program, o->prompt_tokens, (int)(positions - o->prompt_tokens), positions,
                context);
}

int eval_options_report(const eval_options *o, const eval_sweep *sweep,
                        const eval_results *results)
{
    const bool include_full = o->policy_wanted[0];
    eval_print_summary(stdout, sweep, results, include_full);
    fflush(stdout);
    int status = 0;
    if (o->csv_path && eval_write_csv(o->csv_path, sweep, results, include_full))
        status = 1;
    if (o->plot_path && eval_plot(o->plot_path, sweep, results))
        status = 1;
    return status;
}
