/* kf-eval: how much quality each KV-cache policy keeps at a given budget, on
 * the bundled model and real text (doc/quality.md).
 *
 *   kf-eval --tokens FILE | --text FILE [--model PATH] [--tokenizer PATH]
 *           [--prompt-tokens P] [--gen-tokens M] [--rouge-tokens G]
 *           [--policies full,keyformer,h2o,window,sinks] [--budgets 0.1,0.2,...]
 *           [--task continue|recall] [--recent R] [--rule dynamic|reference]
 *           [--granularity kv-head|layer|uniform] [--sinks N] [--evict-every B]
 *           [--slot-order position|any]
 *           [--tau-init T] [--tau-end T] [--tau-steps N]
 *           [--seeds N] [--seed S] [--max-docs N] [--threads N]
 *           [--mass-share S] [--csv OUT] [--plot OUT.png]
 *
 * Protocol, per document of at least P + M + 1 ids (BOS first): prefill
 * ids[0:P] with full attention, the library observing every prompt row;
 * select down to k = floor(budget * P) slots per (layer, KV head) with a
 * window of floor(recent * k); then feed ids[P+t] for t = 0 .. M-1 at
 * position P+t, recording -ln p(ids[P+t+1]) and the argmax, evicting back to
 * k slots after each step. The recall task scores ids[0:P] + ids[64:64+M+1]
 * instead (the continuation repeats an early passage). Separately, G greedy
 * tokens follow the same prompt under each policy and are compared with the
 * full cache's by ROUGE-L. Keyformer runs once per seed; the other policies
 * are deterministic and run once (CSV seed 0).
 *
 * Outputs: a Markdown summary on stdout, progress on stderr, the optional
 * CSV (one row per document x policy x budget x seed) and PNG figure. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <keyformer.h>

#include "cli.h"
#include "eval/docs.h"
#include "eval/report.h"
#include "eval/runner.h"
#include "model.h"
#include "tokenizer.h"

enum { MAX_BUDGETS = 32, MAX_SEEDS = 1000 };

/* --policies full is the full cache, EVAL_FULL in the runner. */
_Static_assert((int)EVAL_FULL == (int)CLI_POLICY_FULL, "EVAL_FULL differs from CLI_POLICY_FULL");

typedef struct options {
    cli_common common; /* first: the option table's setters receive it */
    const char *tokens_path, *text_path;
    const char *csv_path, *plot_path;
    int prompt_tokens, gen_tokens, rouge_tokens;
    bool policy_wanted[5];   /* indexed by policy + 1 (full = 0) */
    int policy_order[5], n_policies;
    double budgets[MAX_BUDGETS];
    int n_budgets;
    eval_task task;
    int seeds;
    unsigned long long first_seed;
    int max_docs;
    double mass_share;
} options;

/* ---- parsing: one table row per option (cli.h) ---- */

/* The whole options struct of a setter's cli_common (its first member). */
static options *opts(cli_common *c) { return (options *)c; }

static int set_policies(cli_common *c, const char *v)
{
    options *o = opts(c);
    memset(o->policy_wanted, 0, sizeof o->policy_wanted);
    o->n_policies = 0;
    for (const char *p = v;;) {
        const char *comma = strchr(p, ',');
        const size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const int policy = cli_policy_from_name(p, len);
        if (policy < EVAL_FULL)
            return -1;
        if (!o->policy_wanted[policy + 1]) {
            o->policy_wanted[policy + 1] = true;
            o->policy_order[o->n_policies++] = policy;
        }
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

static int set_budgets(cli_common *c, const char *v)
{
    options *o = opts(c);
    o->n_budgets = 0;
    char buffer[64];
    for (const char *p = v;;) {
        const char *comma = strchr(p, ',');
        const size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0 || len >= sizeof buffer || o->n_budgets == MAX_BUDGETS)
            return -1;
        memcpy(buffer, p, len);
        buffer[len] = '\0';
        double b;
        if (cli_parse_double(buffer, 0.0, 1.0, &b) || b <= 0.0)
            return -1;
        o->budgets[o->n_budgets++] = b;
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

static int set_tokens(cli_common *c, const char *v) { opts(c)->tokens_path = v; return 0; }
static int set_text(cli_common *c, const char *v) { opts(c)->text_path = v; return 0; }
static int set_csv(cli_common *c, const char *v) { opts(c)->csv_path = v; return 0; }
static int set_plot(cli_common *c, const char *v) { opts(c)->plot_path = v; return 0; }
static int set_prompt(cli_common *c, const char *v)
{
    return cli_parse_int(v, 2, &opts(c)->prompt_tokens);
}
static int set_gen(cli_common *c, const char *v)
{
    return cli_parse_int(v, 1, &opts(c)->gen_tokens);
}
static int set_rouge(cli_common *c, const char *v)
{
    return cli_parse_int(v, 0, &opts(c)->rouge_tokens);
}
static int set_max_docs(cli_common *c, const char *v)
{
    return cli_parse_int(v, 1, &opts(c)->max_docs);
}

static int set_seeds(cli_common *c, const char *v)
{
    return cli_parse_int(v, 1, &opts(c)->seeds) || opts(c)->seeds > MAX_SEEDS ? -1 : 0;
}

/* Unlike kf-generate, kf-eval refuses a negative seed. */
static int set_seed(cli_common *c, const char *v)
{
    return cli_parse_seed(v, &opts(c)->first_seed) || *v == '-' ? -1 : 0;
}

static int set_task(cli_common *c, const char *v)
{
    if (!strcmp(v, "continue"))
        opts(c)->task = EVAL_TASK_CONTINUE;
    else if (!strcmp(v, "recall"))
        opts(c)->task = EVAL_TASK_RECALL;
    else
        return -1;
    return 0;
}

/* Ratios and temperatures are read as doubles, as kf-eval always has. */
static int set_recent(cli_common *c, const char *v)
{
    return cli_parse_double(v, 0.0, 1.0, &c->library.recent_ratio);
}

static int set_tau(const char *v, float *out)
{
    double t;
    if (cli_parse_double(v, 1e-6, 1e6, &t))
        return -1;
    *out = (float)t;
    return 0;
}

static int set_tau_init(cli_common *c, const char *v) { return set_tau(v, &c->library.tau_init); }
static int set_tau_end(cli_common *c, const char *v) { return set_tau(v, &c->library.tau_end); }

static int set_mass_share(cli_common *c, const char *v)
{
    return cli_parse_double(v, 0.0, 1.0, &opts(c)->mass_share);
}

static const cli_option OPTIONS[] = {
    {"--tokens", "FILE", "JSON lines {\"name\", \"ids\"} (reference ids, BOS first)", set_tokens},
    {"--text", "FILE", "JSON lines {\"name\", \"text\"}, tokenized here", set_text},
    {"--model", "PATH", "llama2.c checkpoint (default: bundled sotu-llama-6m)", cli_set_model},
    {"--tokenizer", "PATH", "tokenizer.bin for --text (default: bundled)", cli_set_tokenizer},
    {"--prompt-tokens", "P", "prompt ids, prefilled with full attention (1024)", set_prompt},
    {"--gen-tokens", "M", "teacher-forced predictions per document (256)", set_gen},
    {"--rouge-tokens", "G", "greedy tokens compared by ROUGE-L (128; 0 skips)", set_rouge},
    {"--policies", "LIST", "of full,keyformer,h2o,window,sinks (all)", set_policies},
    {"--budgets", "LIST", "fractions of the prompt (0.1,0.2,0.3,0.5,0.7,0.9)", set_budgets},
    {"--task", "NAME", "continue (default) or recall", set_task},
    {"--recent", "R", "recent window as a fraction of the budget (0.3)", set_recent},
    {"--rule", "NAME", "decode eviction: dynamic (default) or reference", cli_set_rule},
    {"--granularity", "NAME", "kv-head (default), layer or uniform", cli_set_granularity},
    {"--sinks", "N", "first tokens kept by the sinks policy (4)", cli_set_sinks},
    {"--evict-every", "B", "evict B tokens at once every B decode steps (1)",
     cli_set_evict_every},
    {"--slot-order", "O", "position or any: refill evicted slots from the end (position)",
     cli_set_slot_order},
    {"--tau-init", "T", "Keyformer temperature at the prompt (1)", set_tau_init},
    {"--tau-end", "T", "Keyformer temperature after --tau-steps (2)", set_tau_end},
    {"--tau-steps", "N", "steps from tau-init to tau-end (default M)", cli_set_tau_steps},
    {"--seeds", "N", "Keyformer runs per budget, seeds S .. S+N-1 (1)", set_seeds},
    {"--seed", "S", "first Keyformer seed (1)", set_seed},
    {"--max-docs", "N", "evaluate the first N usable documents (all)", set_max_docs},
    {"--threads", "N", "jobs at once, one core each (all cores)", cli_set_threads},
    {"--mass-share", "S", "attention share for the concentration table (0.9; 0 skips)",
     set_mass_share},
    {"--csv", "OUT", "per-document CSV", set_csv},
    {"--plot", "OUT.png", "figure through gnuplot", set_plot},
};

static const cli_program PROGRAM = {.name = "kf-eval",
                                    .synopsis = "kf-eval --tokens FILE | --text FILE [options]",
                                    .value_width = 8, .options = OPTIONS,
                                    .n_options = CLI_N_OPTIONS(OPTIONS)};

/* Returns 0 to run, 1 after --help, -1 on a bad command line. */
static int parse_command_line(options *o, int argc, char **argv)
{
    const long cores = sysconf(_SC_NPROCESSORS_ONLN);
    *o = (options){
        .prompt_tokens = 1024, .gen_tokens = 256, .rouge_tokens = 128,
        .seeds = 1, .first_seed = 1, .max_docs = INT_MAX, .mass_share = 0.9,
    };
    cli_common_init(&o->common);
    o->common.threads = cores > 0 ? (int)cores : 1;
    set_policies(&o->common, "full,keyformer,h2o,window,sinks");
    set_budgets(&o->common, "0.1,0.2,0.3,0.5,0.7,0.9");
    const int parsed = cli_parse(&PROGRAM, &o->common, argc, argv);
    if (parsed != 0)
        return parsed;
    kf_config *library = &o->common.library;
    if (!o->tokens_path == !o->text_path) {
        fprintf(stderr, "kf-eval: give exactly one of --tokens FILE and --text FILE\n");
        return -1;
    }
    if (!o->common.tau_steps_given)
        library->tau_steps = (uint32_t)o->gen_tokens;
    if (o->task == EVAL_TASK_RECALL &&
        o->prompt_tokens < EVAL_RECALL_OFFSET + o->gen_tokens + 1) {
        fprintf(stderr, "kf-eval: the recall task repeats ids[%d:%d], which must lie inside "
                        "the prompt: use --prompt-tokens >= %d\n", EVAL_RECALL_OFFSET,
                EVAL_RECALL_OFFSET + o->gen_tokens + 1, EVAL_RECALL_OFFSET + o->gen_tokens + 1);
        return -1;
    }
    for (int b = 0; b < o->n_budgets; b++) {
        const long k = (long)floor(o->budgets[b] * o->prompt_tokens);
        if (k < 1 || (o->policy_wanted[KF_POLICY_SINKS + 1] && k <= (long)library->n_sinks)) {
            fprintf(stderr, "kf-eval: budget %g of a %d-id prompt keeps %ld slots: too few%s\n",
                    o->budgets[b], o->prompt_tokens, k,
                    o->policy_wanted[KF_POLICY_SINKS + 1] ? " (sinks needs more than --sinks)"
                                                         : "");
            return -1;
        }
    }
    return 0;
}

/* Run 0 is the full cache (the reference of every metric, always run);
 * then each policy, budget and (Keyformer only) seed. */
static eval_run *make_runs(const options *o, int *n_runs)
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

int main(int argc, char **argv)
{
    options o;
    const int parsed = parse_command_line(&o, argc, argv);
    if (parsed != 0)
        return parsed > 0 ? 0 : 2;

    eng_model model = {0};
    eng_tokenizer tokenizer = {0};
    eval_corpus corpus = {0};
    eval_results results = {0};
    eval_doc *usable = NULL;
    eval_run *runs = NULL;
    eng_error err = {{0}};
    char message[512] = "";
    int status = 1;
    /* The tokenizer only for --text. */
    if (cli_load_model(&o.common, &model, o.text_path ? &tokenizer : NULL, &err) != ENG_OK) {
        fprintf(stderr, "kf-eval: %s\n", err.message);
        goto done;
    }
    /* Failing only costs speed. */
    eval_model_to_anonymous_memory(&model);
    if (eval_corpus_read(&corpus, o.text_path ? o.text_path : o.tokens_path,
                         o.text_path ? &tokenizer : NULL, message, sizeof message)) {
        fprintf(stderr, "kf-eval: %s\n", message);
        goto done;
    }
    usable = malloc(((size_t)corpus.n_docs + 1) * sizeof *usable);
    if (!usable)
        goto done;
    int n_usable = 0;
    const int needed = o.prompt_tokens + o.gen_tokens + 1;
    for (int d = 0; d < corpus.n_docs && n_usable < o.max_docs; d++) {
        const eval_doc *doc = &corpus.docs[d];
        bool bad_id = false;
        for (int i = 0; i < doc->n_ids && i < needed; i++)
            bad_id |= doc->ids[i] >= model.config.vocab_size;
        if (bad_id) {
            fprintf(stderr, "kf-eval: %s: token id outside the vocabulary\n", doc->name);
            goto done;
        }
        if (doc->n_ids < needed)
            fprintf(stderr, "kf-eval: skipping %s: %d ids, fewer than %d\n", doc->name,
                    doc->n_ids, needed);
        else
            usable[n_usable++] = *doc;
    }
    if (n_usable == 0) {
        fprintf(stderr, "kf-eval: no document has %d ids\n", needed);
        goto done;
    }
    int n_runs;
    if (!(runs = make_runs(&o, &n_runs)))
        goto done;
    const eval_sweep sweep = {
        .model = &model, .docs = usable, .n_docs = n_usable, .runs = runs, .n_runs = n_runs,
        .prompt_tokens = o.prompt_tokens, .gen_tokens = o.gen_tokens,
        .rouge_tokens = o.rouge_tokens, .task = o.task, .library = o.common.library,
        .threads = o.common.threads, .attention_mass = o.mass_share > 0.0,
        .mass_share = o.mass_share, .progress = true,
    };
    fprintf(stderr, "kf-eval: %d documents x %d runs (%s task) on %d job(s) at a time\n",
            n_usable, n_runs, o.task == EVAL_TASK_RECALL ? "recall" : "continue",
            o.common.threads);
    if (eval_sweep_run(&sweep, &results))
        goto done;
    fprintf(stderr, "kf-eval: done in %.1f s\n", results.elapsed_s);
    const bool include_full = o.policy_wanted[0];
    eval_print_summary(stdout, &sweep, &results, include_full);
    fflush(stdout);
    status = 0;
    if (o.csv_path && eval_write_csv(o.csv_path, &sweep, &results, include_full))
        status = 1;
    if (o.plot_path && eval_plot(o.plot_path, &sweep, &results))
        status = 1;
done:
    eval_results_free(&results);
    free(runs);
    free(usable);
    eval_corpus_free(&corpus);
    eng_tokenizer_free(&tokenizer);
    eng_model_close(&model);
    return status;
}
