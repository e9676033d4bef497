/* kf-eval: how much quality each KV-cache policy keeps at a given budget, on
 * the bundled model and real text (doc/quality.md).
 *
 *   kf-eval [--tokens FILE | --text FILE] [--model PATH] [--tokenizer PATH]
 *           [--prompt-tokens P] [--gen-tokens M] [--rouge-tokens G]
 *           [--policies full,keyformer,h2o,window,sinks] [--budgets 0.1,0.2,...]
 *           [--task continue|recall] [--recent R] [--rule dynamic|reference]
 *           [--granularity kv-head|head|layer|uniform] [--sinks N] [--evict-every B]
 *           [--slot-order any|position] [--noise table|exact]
 *           [--obs-window W] [--pool K[:max|:avg]] [--score-norm none|seen]
 *           [--layer-slope B]
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
 * Without --tokens or --text it reads the bundled dev set
 * (examples/data/sotu-dev.tokens.jsonl).
 *
 * Outputs: a Markdown summary on stdout, progress on stderr, the optional
 * CSV (one row per document x policy x budget x seed) and PNG figure. Every
 * file is checked before the sweep starts, so a bad path fails at once. */
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <keyformer.h>

#include "cli.h"
#include "data_paths.h"
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

static int set_policies(cli_common *c, const char *v)
{
    options *o = opts(c);
    memset(o->policy_wanted, 0, sizeof o->policy_wanted);
    o->n_policies = 0;
    const char *p = v;
    for (int n = 1;; n++) {
        char item[64];
        size_t len;
        const char *rest = next_item(p, item, sizeof item, &len);
        const int policy = cli_policy_from_name(p, len);
        if (policy < EVAL_FULL)
            return cli_reject(c, "item %d '%s' is not one of " CLI_POLICY_NAMES, n, item);
        if (!o->policy_wanted[policy + 1]) {
            o->policy_wanted[policy + 1] = true;
            o->policy_order[o->n_policies++] = policy;
        }
        if (!rest)
            return 0;
        p = rest;
    }
}

static int set_budgets(cli_common *c, const char *v)
{
    options *o = opts(c);
    o->n_budgets = 0;
    const char *p = v;
    for (int n = 1;; n++) {
        char item[64];
        size_t len;
        const char *rest = next_item(p, item, sizeof item, &len);
        if (n > MAX_BUDGETS)
            return cli_reject(c, "more than %d budgets", MAX_BUDGETS);
        double b;
        if (len >= sizeof item || cli_parse_double(item, 0.0, 1.0, &b) || b <= 0.0)
            return cli_reject(c, "item %d '%s' is not a fraction of the prompt in (0, 1]", n,
                              item);
        o->budgets[o->n_budgets++] = b;
        if (!rest)
            return 0;
        p = rest;
    }
}

static int set_tokens(cli_common *c, const char *v) { opts(c)->tokens_path = v; return 0; }
static int set_text(cli_common *c, const char *v) { opts(c)->text_path = v; return 0; }
static int set_csv(cli_common *c, const char *v) { opts(c)->csv_path = v; return 0; }
static int set_plot(cli_common *c, const char *v) { opts(c)->plot_path = v; return 0; }
/* A token count within [min, CLI_MAX_TOKENS]. */
static int set_count(cli_common *c, const char *v, int min, int *out)
{
    if (cli_parse_int(v, min, CLI_MAX_TOKENS, out))
        return cli_reject(c, "a token count from %d to %d", min, CLI_MAX_TOKENS);
    return 0;
}
static int set_prompt(cli_common *c, const char *v)
{
    return set_count(c, v, 2, &opts(c)->prompt_tokens);
}
static int set_gen(cli_common *c, const char *v) { return set_count(c, v, 1, &opts(c)->gen_tokens); }
static int set_rouge(cli_common *c, const char *v)
{
    return set_count(c, v, 0, &opts(c)->rouge_tokens);
}
static int set_max_docs(cli_common *c, const char *v)
{
    if (cli_parse_int(v, 1, INT_MAX, &opts(c)->max_docs))
        return cli_reject(c, "a document count of at least 1");
    return 0;
}

static int set_seeds(cli_common *c, const char *v)
{
    if (cli_parse_int(v, 1, MAX_SEEDS, &opts(c)->seeds))
        return cli_reject(c, "a run count from 1 to %d", MAX_SEEDS);
    return 0;
}

/* Unlike kf-generate, kf-eval refuses a negative seed. */
static int set_seed(cli_common *c, const char *v)
{
    if (cli_parse_seed(v, &opts(c)->first_seed) || *v == '-')
        return cli_reject(c, "a seed from 0 to %llu", ULLONG_MAX);
    return 0;
}

static int set_task(cli_common *c, const char *v)
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
static int set_recent(cli_common *c, const char *v)
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

static int set_tau_init(cli_common *c, const char *v)
{
    return set_tau(c, v, &c->library.tau_init);
}
static int set_tau_end(cli_common *c, const char *v) { return set_tau(c, v, &c->library.tau_end); }

static int set_mass_share(cli_common *c, const char *v)
{
    if (cli_parse_double(v, 0.0, 1.0, &opts(c)->mass_share))
        return cli_reject(c, "a share of the attention mass in [0, 1]");
    return 0;
}

enum { LIB = CLI_LIBRARY_ONLY };

static const cli_option OPTIONS[] = {
    {"--tokens", "FILE", "JSON lines {\"name\", \"ids\"} (reference ids, BOS first; at most "
     "64 MiB; default: the bundled dev set)", set_tokens, 0},
    {"--text", "FILE", "JSON lines {\"name\", \"text\"}, tokenized here (at most 64 MiB)",
     set_text, 0},
    {"--model", "PATH", "llama2.c checkpoint (default: bundled sotu-llama-6m)", cli_set_model, 0},
    {"--tokenizer", "PATH", "tokenizer.bin for --text (default: bundled)", cli_set_tokenizer, 0},
    {"--bundled", "NAME", CLI_BUNDLED_HELP "; sets --model, --tokenizer and the default "
     "--tokens", cli_set_bundled, 0},
    {"--prompt-tokens", "P", "prompt ids, prefilled with full attention (1024)", set_prompt, 0},
    {"--gen-tokens", "M", "teacher-forced predictions per document (256)", set_gen, 0},
    {"--rouge-tokens", "G", "greedy tokens compared by ROUGE-L (128; 0 skips)", set_rouge, 0},
    {"--policies", "LIST", "of full,keyformer,h2o,window,sinks (all)", set_policies, 0},
    {"--budgets", "LIST", "fractions of the prompt in (0, 1] (0.1,0.2,0.3,0.5,0.7,0.9)",
     set_budgets, LIB},
    {"--task", "NAME", "continue (default) or recall", set_task, 0},
    {"--recent", "R", "recent window as a fraction of the budget (0.3)", set_recent, LIB},
    {"--rule", "NAME", "decode eviction: dynamic (default) or reference", cli_set_rule, LIB},
    {"--granularity", "NAME", "kv-head (default; alias head), layer or uniform",
     cli_set_granularity, LIB},
    {"--sinks", "N", "first tokens kept by the sinks policy (4)", cli_set_sinks, LIB},
    {"--evict-every", "B", "evict B tokens at once every B decode steps (1)",
     cli_set_evict_every, LIB},
    {"--slot-order", "O", "any (default): refill evicted slots from the end; position: keep position order",
     cli_set_slot_order, LIB},
    {"--noise", "N", "table (default): Gumbel noise from a 4096-bin table; exact: the continuous sample",
     cli_set_noise, LIB},
    {"--obs-window", "W", "score the prompt by its last W query rows only (0: off, all rows)",
     cli_set_obs_window, LIB},
    {"--pool", "K[:M]", "pool prompt scores over K neighbours, M max (default) or avg (0: off)",
     cli_set_pool, LIB},
    {"--score-norm", "N", "none (default) or seen: rank by score per query row that saw the token",
     cli_set_score_norm, LIB},
    {"--layer-slope", "B", "per-layer budgets k(1 + B(L-1-2l)/(L-1)), B in (-1, 1): B > 0 more to lower layers (0: off)",
     cli_set_layer_slope, LIB},
    {"--tau-init", "T", "Keyformer temperature at the prompt (1)", set_tau_init, LIB},
    {"--tau-end", "T", "Keyformer temperature after --tau-steps (2)", set_tau_end, LIB},
    {"--tau-steps", "N", "steps from tau-init to tau-end (default M)", cli_set_tau_steps, LIB},
    {"--seeds", "N", "Keyformer runs per budget, seeds S .. S+N-1 (1)", set_seeds, 0},
    {"--seed", "S", "first Keyformer seed (1)", set_seed, 0},
    {"--max-docs", "N", "evaluate the first N usable documents (all)", set_max_docs, 0},
    {"--threads", "N", "jobs at once, one core each, at most 1024 (all cores)",
     cli_set_threads, 0},
    {"--mass-share", "S", "attention share for the concentration table (0.9; 0 skips)",
     set_mass_share, 0},
    {"--csv", "OUT", "per-document CSV", set_csv, 0},
    {"--plot", "OUT.png", "figure through gnuplot", set_plot, 0},
};

static const cli_program PROGRAM = {.name = "kf-eval",
                                    .synopsis = "kf-eval [--tokens FILE | --text FILE] [options]",
                                    .value_width = 8, .options = OPTIONS,
                                    .n_options = CLI_N_OPTIONS(OPTIONS)};

static bool wants_library_policy(const options *o)
{
    for (int p = 0; p < o->n_policies; p++)
        if (o->policy_order[p] != EVAL_FULL)
            return true;
    return false;
}

/* Every budget keeps a token, and more than the sinks under sinks. */
static int check_budgets(const options *o)
{
    const uint32_t sinks = o->common.library.n_sinks;
    const bool with_sinks = o->policy_wanted[KF_POLICY_SINKS + 1];
    for (int b = 0; b < o->n_budgets; b++) {
        const int64_t k = (int64_t)floor(o->budgets[b] * o->prompt_tokens);
        if (k < 1) {
            fprintf(stderr, "kf-eval: budget %g of a %d-id prompt keeps no slot: raise the "
                            "budget or --prompt-tokens\n", o->budgets[b], o->prompt_tokens);
            return -1;
        }
        if (with_sinks && k <= (int64_t)sinks) {
            fprintf(stderr, "kf-eval: budget %g of a %d-id prompt keeps %" PRId64 " slots, but "
                            "the sinks policy needs a budget above --sinks %u: raise the budget "
                            "or --prompt-tokens, or lower --sinks\n",
                    o->budgets[b], o->prompt_tokens, k, sinks);
            return -1;
        }
    }
    return 0;
}

/* The checks that need several options at once; 0, or -1 after saying why. */
static int check_combinations(const options *o)
{
    if (!wants_library_policy(o) && o->common.library_option) {
        fprintf(stderr, "kf-eval: %s needs a policy other than full in --policies\n",
                o->common.library_option);
        return -1;
    }
    const int64_t recall_end = (int64_t)EVAL_RECALL_OFFSET + o->gen_tokens + 1;
    if (o->task == EVAL_TASK_RECALL && o->prompt_tokens < recall_end) {
        fprintf(stderr, "kf-eval: the recall task repeats ids[%d:%" PRId64 "], which must lie "
                        "inside the prompt: use --prompt-tokens >= %" PRId64 "\n",
                EVAL_RECALL_OFFSET, recall_end, recall_end);
        return -1;
    }
    return check_budgets(o);
}

/* The bundled dev set (of --bundled's model), so that a plain `kf-eval`
 * runs as documented. */
static const char *default_tokens_path(const char *dev_set)
{
    static char path[4096];
    if (!path[0])
        snprintf(path, sizeof path, "%s/%s.tokens.jsonl", kf_examples_data_dir(), dev_set);
    return path;
}

/* Returns 0 to run, 1 after --help, -1 on a bad command line. */
static int parse_command_line(options *o, int argc, char **argv)
{
    const long cores = sysconf(_SC_NPROCESSORS_ONLN);
    *o = (options){
        .prompt_tokens = 1024, .gen_tokens = 256, .rouge_tokens = 128,
        .seeds = 1, .first_seed = 1, .max_docs = INT_MAX, .mass_share = 0.9,
    };
    cli_common_init(&o->common);
    o->common.threads = cores < 1 ? 1 : cores > CLI_MAX_THREADS ? CLI_MAX_THREADS : (int)cores;
    set_policies(&o->common, "full,keyformer,h2o,window,sinks");
    set_budgets(&o->common, "0.1,0.2,0.3,0.5,0.7,0.9");
    const int parsed = cli_parse(&PROGRAM, &o->common, argc, argv);
    if (parsed != 0)
        return parsed;
    if (o->tokens_path && o->text_path) {
        fprintf(stderr, "kf-eval: give --tokens FILE or --text FILE, not both\n");
        return -1;
    }
    if (!o->tokens_path && !o->text_path)
        o->tokens_path = default_tokens_path(o->common.dev_set);
    if (!o->common.tau_steps_given)
        o->common.library.tau_steps = (uint32_t)o->gen_tokens;
    return check_combinations(o);
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

/* Every file is checked before the model loads and the sweep starts: an
 * hour of runs must not end on a CSV path that cannot be written. */
static int check_paths(const options *o)
{
    char why[600];
    const bool text = o->text_path != NULL;
    if (cli_check_input(text ? "--text" : "--tokens", text ? o->text_path : o->tokens_path,
                        CLI_MAX_DOCUMENT_BYTES, why, sizeof why) ||
        (o->csv_path && cli_check_output("--csv", o->csv_path, why, sizeof why)) ||
        (o->plot_path && cli_check_output("--plot", o->plot_path, why, sizeof why))) {
        fprintf(stderr, "kf-eval: %s\n", why);
        return -1;
    }
    return 0;
}

static int read_documents(const options *o, const eng_tokenizer *tokenizer,
                          eval_corpus *corpus)
{
    const bool text = o->text_path != NULL;
    const char *path = text ? o->text_path : o->tokens_path;
    char message[600];
    const int fd = cli_open_input(text ? "--text" : "--tokens", path, CLI_MAX_DOCUMENT_BYTES,
                                  message, sizeof message);
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
    if (fd >= 0 && !f) {
        close(fd);
        snprintf(message, sizeof message, "%s: cannot read", path);
    }
    if (!f || eval_corpus_read_stream(corpus, f, path, (size_t)CLI_MAX_DOCUMENT_BYTES,
                                      text ? tokenizer : NULL, message, sizeof message)) {
        if (f)
            fclose(f);
        fprintf(stderr, "kf-eval: %s\n", message);
        return -1;
    }
    fclose(f);
    return 0;
}

/* The documents long enough for the task, at most --max-docs; usable has
 * room for every document. Returns the count, or -1 after saying why. */
static int select_documents(const options *o, const eval_corpus *corpus, int vocab_size,
                            eval_doc *usable)
{
    const int64_t needed = (int64_t)o->prompt_tokens + o->gen_tokens + 1;
    int n_usable = 0, longest = 0;
    for (int d = 0; d < corpus->n_docs && n_usable < o->max_docs; d++) {
        const eval_doc *doc = &corpus->docs[d];
        for (int i = 0; i < doc->n_ids && i < needed; i++)
            if (doc->ids[i] >= vocab_size) {
                fprintf(stderr, "kf-eval: %s: token id %d at %d is outside the model's "
                                "%d-token vocabulary\n", doc->name, doc->ids[i], i, vocab_size);
                return -1;
            }
        longest = doc->n_ids > longest ? doc->n_ids : longest;
        if (doc->n_ids < needed)
            fprintf(stderr, "kf-eval: skipping %s: %d ids, fewer than %" PRId64 "\n", doc->name,
                    doc->n_ids, needed);
        else
            usable[n_usable++] = *doc;
    }
    if (n_usable == 0) {
        fprintf(stderr, "kf-eval: no document has the %" PRId64 " ids a run needs "
                        "(--prompt-tokens %d + --gen-tokens %d + 1); the longest of %d has %d: "
                        "lower --prompt-tokens or --gen-tokens\n",
                needed, o->prompt_tokens, o->gen_tokens, corpus->n_docs, longest);
        return -1;
    }
    return n_usable;
}

/* Positions past the trained context still run (RoPE goes on), but what
 * the model says there is untested. */
static void warn_past_context(const options *o, const eng_model *model)
{
    const int64_t positions = (int64_t)o->prompt_tokens +
                              (o->gen_tokens > o->rouge_tokens ? o->gen_tokens : o->rouge_tokens);
    const int context = model->config.seq_len;
    if (context > 0 && positions > context)
        fprintf(stderr, "kf-eval: warning: --prompt-tokens %d and %d more tokens make %" PRId64
                        " positions, more than the model's trained context of %d\n",
                o->prompt_tokens, (int)(positions - o->prompt_tokens), positions, context);
}

int main(int argc, char **argv)
{
    options o;
    const int parsed = parse_command_line(&o, argc, argv);
    if (parsed != 0)
        return parsed > 0 ? 0 : 2;
    if (check_paths(&o))
        return 2;

    eng_model model = {0};
    eng_tokenizer tokenizer = {0};
    eval_corpus corpus = {0};
    eval_results results = {0};
    eval_doc *usable = NULL;
    eval_run *runs = NULL;
    eng_error err = {{0}};
    int status = 1;
    /* The tokenizer only for --text. */
    if (cli_load_model(&o.common, &model, o.text_path ? &tokenizer : NULL, &err) != ENG_OK) {
        fprintf(stderr, "kf-eval: %s\n", err.message);
        goto done;
    }
    warn_past_context(&o, &model);
    /* Failing only costs speed. */
    eval_model_to_anonymous_memory(&model);
    if (read_documents(&o, &tokenizer, &corpus))
        goto done;
    usable = malloc(((size_t)corpus.n_docs + 1) * sizeof *usable);
    if (!usable)
        goto done;
    const int n_usable = select_documents(&o, &corpus, model.config.vocab_size, usable);
    if (n_usable < 0)
        goto done;
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
    eval_set_policy_variant(&o.common.library);
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
