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
 *           [--sink-tokens S] [--layer-slope B] [--head-budget even|adaptive[:A]]
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
#include "eval/options.h"
#include "eval/report.h"
#include "eval/runner.h"
#include "model.h"
#include "tokenizer.h"


typedef struct options {
    eval_options eval; /* first: the shared setters receive its cli_common */
    double mass_share;
} options;

/* ---- parsing: one table row per option (cli.h) ---- */

/* The whole options struct of a setter's cli_common (its first member). */
static options *opts(cli_common *c) { return (options *)c; }

static int set_mass_share(cli_common *c, const char *v)
{
    if (cli_parse_double(v, 0.0, 1.0, &opts(c)->mass_share))
        return cli_reject(c, "a share of the attention mass in [0, 1]");
    return 0;
}

enum { LIB = CLI_LIBRARY_ONLY };

static const cli_option OPTIONS[] = {
    {"--tokens", "FILE", "JSON lines {\"name\", \"ids\"} (reference ids, BOS first; at most "
     "64 MiB; default: the bundled dev set)", eval_set_tokens, 0},
    {"--text", "FILE", "JSON lines {\"name\", \"text\"}, tokenized here (at most 64 MiB)",
     eval_set_text, 0},
    {"--model", "PATH", "llama2.c checkpoint (default: bundled sotu-llama-6m)", cli_set_model, 0},
    {"--tokenizer", "PATH", "tokenizer.bin for --text (default: bundled)", cli_set_tokenizer, 0},
    {"--bundled", "NAME", CLI_BUNDLED_HELP "; sets --model, --tokenizer and the default "
     "--tokens", cli_set_bundled, 0},
    EVAL_OPTIONS_SWEEP,
    {"--granularity", "NAME", "kv-head (default; alias head), layer or uniform",
     cli_set_granularity, LIB},
    {"--sinks", "N", "first tokens kept by the sinks policy (4)", cli_set_sinks, LIB},
    {"--evict-every", "B", "evict B tokens at once every B decode steps (1)",
     cli_set_evict_every, LIB},
    CLI_OPTIONS_SCORING,
    CLI_OPTION_LAYER_SLOPE,
    CLI_OPTION_HEAD_BUDGET,
    EVAL_OPTIONS_TAU_AND_RUNS,
    {"--threads", "N", "jobs at once, one core each, at most 1024 (all cores)",
     cli_set_threads, 0},
    {"--mass-share", "S", "attention share for the concentration table (0.9; 0 skips)",
     set_mass_share, 0},
    {"--csv", "OUT", "per-document CSV", eval_set_csv, 0},
    {"--plot", "OUT.png", "figure through gnuplot", eval_set_plot, 0},
};

static const cli_program PROGRAM = {.name = "kf-eval",
                                    .synopsis = "kf-eval [--tokens FILE | --text FILE] [options]",
                                    .value_width = 8, .options = OPTIONS,
                                    .n_options = CLI_N_OPTIONS(OPTIONS)};

/* Every budget keeps a token, and more than the sinks under sinks. */
static int check_budgets(const eval_options *o)
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
static int check_combinations(const eval_options *o)
{
    if (eval_options_check_combinations(o, "kf-eval"))
        return -1;
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
    *o = (options){.mass_share = 0.9};
    eval_options_init(&o->eval);
    eval_options *e = &o->eval;
    const int parsed = cli_parse(&PROGRAM, &e->common, argc, argv);
    if (parsed != 0)
        return parsed;
    if (e->tokens_path && e->text_path) {
        fprintf(stderr, "kf-eval: give --tokens FILE or --text FILE, not both\n");
        return -1;
    }
    if (!e->tokens_path && !e->text_path)
        e->tokens_path = default_tokens_path(e->common.dev_set);
    if (!e->common.tau_steps_given)
        e->common.library.tau_steps = (uint32_t)e->gen_tokens;
    return check_combinations(e);
}

static int read_documents(const eval_options *o, const eng_tokenizer *tokenizer,
                          eval_corpus *corpus)
{
    const bool text = o->text_path != NULL;
    const char *path = text ? o->text_path : o->tokens_path;
    char message[600];
    FILE *f = eval_options_open_documents(o, message, sizeof message);
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

int main(int argc, char **argv)
{
    options o;
    const int parsed = parse_command_line(&o, argc, argv);
    if (parsed != 0)
        return parsed > 0 ? 0 : 2;
    eval_options *e = &o.eval;
    if (eval_options_check_paths(e, "kf-eval", NULL))
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
    if (cli_load_model(&e->common, &model, e->text_path ? &tokenizer : NULL, &err) != ENG_OK) {
        fprintf(stderr, "kf-eval: %s\n", err.message);
        goto done;
    }
    eval_options_warn_past_context(e, "kf-eval", model.config.seq_len);
    /* Failing only costs speed. */
    eval_model_to_anonymous_memory(&model);
    if (read_documents(e, &tokenizer, &corpus))
        goto done;
    usable = malloc(((size_t)corpus.n_docs + 1) * sizeof *usable);
    if (!usable)
        goto done;
    const int n_usable =
        eval_options_select_documents(e, "kf-eval", &corpus, model.config.vocab_size, usable);
    if (n_usable < 0)
        goto done;
    int n_runs;
    if (!(runs = eval_options_make_runs(e, &n_runs)))
        goto done;
    const eval_sweep sweep = {
        .model = &model, .docs = usable, .n_docs = n_usable, .runs = runs, .n_runs = n_runs,
        .prompt_tokens = e->prompt_tokens, .gen_tokens = e->gen_tokens,
        .rouge_tokens = e->rouge_tokens, .task = e->task, .library = e->common.library,
        .threads = e->common.threads, .attention_mass = o.mass_share > 0.0,
        .mass_share = o.mass_share, .progress = true,
    };
    eval_set_policy_variant(&e->common.library);
    fprintf(stderr, "kf-eval: %d documents x %d runs (%s task) on %d job(s) at a time\n",
            n_usable, n_runs, e->task == EVAL_TASK_RECALL ? "recall" : "continue",
            e->common.threads);
    if (eval_sweep_run(&sweep, &results))
        goto done;
    fprintf(stderr, "kf-eval: done in %.1f s\n", results.elapsed_s);
    status = eval_options_report(e, &sweep, &results);
done:
    eval_results_free(&results);
    free(runs);
    free(usable);
    eval_corpus_free(&corpus);
    eng_tokenizer_free(&tokenizer);
    eng_model_close(&model);
    return status;
}
