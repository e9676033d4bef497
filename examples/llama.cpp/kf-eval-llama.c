/* Copyright (c) 2026 the libkeyformer developers. BSD-2-Clause, see COPYING. */
/* kf-eval-llama: kf-eval's quality protocol on the user's own GGUF model,
 * run by llama.cpp with the library in it through the adapter
 * (kf_llama_host.h), on the user's own text (doc/quality.md, "On your own model").
 *
 *   kf-eval-llama --model M.gguf (--text FILE | --tokens FILE)
 *           [--prompt-tokens P] [--gen-tokens M] [--rouge-tokens G]
 *           [--policies full,keyformer,h2o,window,sinks] [--budgets 0.1,0.2,...]
 *           [--task continue|recall] [--recent R] [--rule dynamic|reference]
 *           [--granularity uniform] [--sinks N] [--slot-order any|position]
 *           [--noise table|exact] [--obs-window W] [--pool K[:max|:avg]]
 *           [--score-norm none|seen] [--sink-tokens S] [--tau-init T] [--tau-end T] [--tau-steps N]
 *           [--seeds N] [--seed S] [--max-docs N] [--threads N]
 *           [--ubatch N] [--flash-attn auto|on|off] [--cache-type f16|f32]
 *           [--csv OUT] [--plot OUT.png]
 *
 * The protocol, metrics and outputs are kf-eval's (the same CSV columns,
 * Markdown summary and figure, from examples/eval/): per document, ΔNLL
 * and top-1 agreement over M teacher-forced predictions after a P-token
 * prompt, ROUGE-L of G greedy tokens, each policy and budget against the
 * full cache. What differs: the model is any GGUF that llama.cpp loads and
 * the adapter accepts, text is tokenized by llama.cpp (the model's own
 * vocabulary, BOS first when the model adds one), the granularity is
 * uniform (one set of kept positions for the whole model, what llama.cpp's
 * cells can drop), runs go one at a time with --threads llama.cpp threads,
 * and there is no attention-concentration table.
 *
 * --text FILE is JSON lines {"name", "text"} when its first non-blank
 * character is '{', else plain text: one document named after the file. */
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <keyformer.h>
#include <llama.h>

#include "cli.h"
#include "eval/docs.h"
#include "eval/options.h"
#include "eval/report.h"
#include "eval/runner.h"
#include "eval_llama.h"
#include "kf_llama_host.h"

#define PROGRAM_NAME "kf-eval-llama"

typedef struct options {
    eval_options eval; /* first: the shared setters receive its cli_common */
    bool model_given;
    int ubatch;     /* 0: min(P, 512) */
    int flash_attn; /* -1 auto, 0 off, 1 on */
    bool cache_f32;
} options;

static options *opts(cli_common *c) { return (options *)c; }

/* ---- parsing: one table row per option (cli.h) ---- */

static int set_model(cli_common *c, const char *v)
{
    opts(c)->model_given = true;
    return cli_set_model(c, v);
}
static int set_ubatch(cli_common *c, const char *v)
{
    return eval_set_count(c, v, 1, &opts(c)->ubatch);
}

/* The adapter has one mode; the option exists so that kf-eval's command
 * lines with --granularity uniform run unchanged. */
static int set_granularity(cli_common *c, const char *v)
{
    if (strcmp(v, "uniform"))
        return cli_reject(c, "only uniform: llama.cpp drops a position from every layer and "
                             "head at once");
    return 0;
}

static int set_flash_attn(cli_common *c, const char *v)
{
    if (!strcmp(v, "auto"))
        opts(c)->flash_attn = -1;
    else if (!strcmp(v, "on"))
        opts(c)->flash_attn = 1;
    else if (!strcmp(v, "off"))
        opts(c)->flash_attn = 0;
    else
        return cli_reject(c, "auto, on or off");
    return 0;
}

static int set_cache_type(cli_common *c, const char *v)
{
    if (!strcmp(v, "f16"))
        opts(c)->cache_f32 = false;
    else if (!strcmp(v, "f32"))
        opts(c)->cache_f32 = true;
    else
        return cli_reject(c, "f16 or f32");
    return 0;
}

enum { LIB = CLI_LIBRARY_ONLY };

static const cli_option OPTIONS[] = {
    {"--model", "GGUF", "the model, any GGUF llama.cpp loads and the adapter accepts (required)",
     set_model, 0},
    {"--text", "FILE", "JSON lines {\"name\", \"text\"}, or plain text (one document), "
     "tokenized by llama.cpp (at most 64 MiB)", eval_set_text, 0},
    {"--tokens", "FILE", "JSON lines {\"name\", \"ids\"}: ids of the model's vocabulary, BOS "
     "first (at most 64 MiB)", eval_set_tokens, 0},
    EVAL_OPTIONS_SWEEP,
    {"--granularity", "NAME", "uniform (the only one llama.cpp's cells allow)", set_granularity,
     LIB},
    {"--sinks", "N", "first tokens kept by the sinks policy (4)", cli_set_sinks, LIB},
    CLI_OPTIONS_SCORING,
    EVAL_OPTIONS_TAU_AND_RUNS,
    {"--threads", "N", "llama.cpp threads per decode, at most 1024 (all cores)",
     cli_set_threads, 0},
    {"--ubatch", "N", "llama.cpp's physical batch: the prompt is split into N-token pieces "
     "(512)", set_ubatch, 0},
    {"--flash-attn", "MODE", "auto (llama.cpp's default), on or off", set_flash_attn, 0},
    {"--cache-type", "TYPE", "llama.cpp's K/V cells: f16 (default) or f32", set_cache_type, 0},
    {"--csv", "OUT", "per-document CSV (kf-eval's columns)", eval_set_csv, 0},
    {"--plot", "OUT.png", "figure through gnuplot", eval_set_plot, 0},
};

static const cli_program PROGRAM = {
    .name = PROGRAM_NAME,
    .synopsis = PROGRAM_NAME " --model M.gguf (--text FILE | --tokens FILE) [options]",
    .value_width = 8, .options = OPTIONS, .n_options = CLI_N_OPTIONS(OPTIONS)};

/* Every budget keeps a position, more than the sinks under sinks, and a
 * recent window of at least one position under Keyformer and H2O (else
 * the adapter refuses the run: llama.cpp continues a sequence only from its
 * newest cached position). */
static int check_budgets(const eval_options *o)
{
    const kf_config *lib = &o->common.library;
    const bool with_sinks = o->policy_wanted[KF_POLICY_SINKS + 1];
    const bool with_window = o->policy_wanted[KF_POLICY_KEYFORMER + 1] ||
                             o->policy_wanted[KF_POLICY_H2O + 1];
    for (int b = 0; b < o->n_budgets; b++) {
        const int64_t k = (int64_t)floor(o->budgets[b] * o->prompt_tokens);
        if (k < 1) {
            fprintf(stderr, PROGRAM_NAME ": budget %g of a %d-id prompt keeps no position: "
                            "raise the budget or --prompt-tokens\n", o->budgets[b],
                    o->prompt_tokens);
            return -1;
        }
        if (with_sinks && k <= (int64_t)lib->n_sinks) {
            fprintf(stderr, PROGRAM_NAME ": budget %g of a %d-id prompt keeps %" PRId64
                            " positions, but the sinks policy needs more than --sinks %u: "
                            "raise the budget or --prompt-tokens, or lower --sinks\n",
                    o->budgets[b], o->prompt_tokens, k, lib->n_sinks);
            return -1;
        }
        if (with_window && floor(lib->recent_ratio * (double)k) < 1) {
            fprintf(stderr, PROGRAM_NAME ": budget %g of a %d-id prompt keeps %" PRId64
                            " positions, and --recent %g leaves Keyformer and H2O no recent "
                            "window; llama.cpp needs the newest position kept: raise --recent, "
                            "the budget or --prompt-tokens\n",
                    o->budgets[b], o->prompt_tokens, k, lib->recent_ratio);
            return -1;
        }
    }
    return 0;
}

static int check_combinations(const options *opt)
{
    const eval_options *o = &opt->eval;
    if (!opt->model_given) {
        fprintf(stderr, PROGRAM_NAME ": give the model: --model FILE.gguf\n");
        return -1;
    }
    if (o->tokens_path && o->text_path) {
        fprintf(stderr, PROGRAM_NAME ": give --text FILE or --tokens FILE, not both\n");
        return -1;
    }
    if (!o->tokens_path && !o->text_path) {
        fprintf(stderr, PROGRAM_NAME ": give the documents: --text FILE (JSON lines or plain "
                        "text) or --tokens FILE (JSON lines of ids)\n");
        return -1;
    }
    if (eval_options_check_combinations(o, PROGRAM_NAME))
        return -1;
    return check_budgets(o);
}

/* Returns 0 to run, 1 after --help or --version, -1 on a bad command line. */
static int parse_command_line(options *o, int argc, char **argv)
{
    *o = (options){.flash_attn = -1};
    eval_options_init(&o->eval);
    cli_common *common = &o->eval.common;
    common->library.granularity = KF_GRANULARITY_UNIFORM;
    const int parsed = cli_parse(&PROGRAM, common, argc, argv);
    if (parsed != 0)
        return parsed;
    if (!common->tau_steps_given)
        common->library.tau_steps = (uint32_t)o->eval.gen_tokens;
    return check_combinations(o);
}

/* ---- documents ---- */

/* eval_tokenize_fn over llama.cpp's tokenizer, with the model's special
 * tokens (BOS for llama models), special-token text left as text. */
static int tokenize_with_llama(void *user, const char *text, size_t len, int **ids, int *n_ids,
                               char *err, size_t err_size)
{
    const struct llama_vocab *vocab = user;
    if (len > (size_t)INT32_MAX / 2) {
        snprintf(err, err_size, "a text of %zu bytes is too long to tokenize", len);
        return -1;
    }
    int32_t room = (int32_t)len + 8;
    llama_token *tokens = NULL;
    int32_t n = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        llama_token *bigger = realloc(tokens, (size_t)room * sizeof *tokens);
        if (!bigger) {
            free(tokens);
            snprintf(err, err_size, "out of memory for %d tokens", (int)room);
            return -1;
        }
        tokens = bigger;
        n = llama_tokenize(vocab, text, (int32_t)len, tokens, room, true, false);
        if (n >= 0 || n == INT32_MIN)
            break;
        room = -n; /* the count it needs */
    }
    if (n < 0) {
        free(tokens);
        snprintf(err, err_size, "llama.cpp could not tokenize the text (%d)", (int)n);
        return -1;
    }
    *ids = malloc(((size_t)n + 1) * sizeof **ids);
    if (!*ids) {
        free(tokens);
        snprintf(err, err_size, "out of memory for %d ids", (int)n);
        return -1;
    }
    for (int32_t i = 0; i < n; i++)
        (*ids)[i] = tokens[i];
    *n_ids = n;
    free(tokens);
    return 0;
}

/* True when the first non-blank byte of f is '{' (JSON lines); rewinds. */
static bool looks_like_json_lines(FILE *f)
{
    int c;
    do
        c = getc(f);
    while (c == ' ' || c == '\t' || c == '\n' || c == '\r');
    rewind(f);
    return c == '{';
}

/* The whole of f (at most max_bytes) as one document named after path. */
static int read_plain_text(eval_corpus *corpus, FILE *f, const char *path,
                           const struct llama_vocab *vocab, char *err, size_t err_size)
{
    size_t size = 0, capacity = 1 << 16;
    char *text = malloc(capacity);
    int rc = text ? 0 : -1;
    while (rc == 0) {
        if (size == capacity) {
            char *bigger = capacity <= (size_t)CLI_MAX_DOCUMENT_BYTES ? realloc(text, capacity * 2)
                                                                      : NULL;
            if (!bigger) {
                rc = -1;
                break;
            }
            text = bigger;
            capacity *= 2;
        }
        const size_t got = fread(text + size, 1, capacity - size, f);
        size += got;
        if (got == 0)
            break;
    }
    if (rc || ferror(f) || size > (size_t)CLI_MAX_DOCUMENT_BYTES) {
        snprintf(err, err_size, "%s: %s", path,
                 rc ? "out of memory" : ferror(f) ? "read error" : "more than 64 MiB");
        free(text);
        return -1;
    }
    eval_doc doc = {0};
    const char *slash = strrchr(path, '/');
    doc.name = strdup(slash ? slash + 1 : path);
    char why[512] = "out of memory";
    if (!doc.name || tokenize_with_llama((void *)vocab, text, size, &doc.ids, &doc.n_ids, why,
                                         sizeof why)) {
        snprintf(err, err_size, "%s: %s", path, why);
        free(doc.name);
        free(text);
        return -1;
    }
    free(text);
    corpus->docs = malloc(sizeof *corpus->docs);
    if (!corpus->docs) {
        snprintf(err, err_size, "out of memory");
        free(doc.name);
        free(doc.ids);
        return -1;
    }
    corpus->docs[0] = doc;
    corpus->n_docs = 1;
    return 0;
}

static int read_documents(const eval_options *o, const struct llama_vocab *vocab,
                          eval_corpus *corpus)
{
    const bool text = o->text_path != NULL;
    const char *path = text ? o->text_path : o->tokens_path;
    char message[800];
    *corpus = (eval_corpus){0};
    FILE *f = eval_options_open_documents(o, message, sizeof message);
    int rc = -1;
    if (f) {
        if (text && !looks_like_json_lines(f))
            rc = read_plain_text(corpus, f, path, vocab, message, sizeof message);
        else
            rc = eval_corpus_read_stream_with(corpus, f, path, (size_t)CLI_MAX_DOCUMENT_BYTES,
                                              text ? tokenize_with_llama : NULL, (void *)vocab,
                                              message, sizeof message);
        fclose(f);
    }
    if (rc == 0 && corpus->n_docs == 0) {
        snprintf(message, sizeof message, "%s: no document in it", path);
        rc = -1;
    }
    if (rc)
        fprintf(stderr, PROGRAM_NAME ": %s\n", message);
    return rc;
}

/* The adapter's refusals that depend on the model alone (recurrent, hybrid,
 * sliding-window, own attention scale, softcapping), before any run. */
static int check_model_with_adapter(const eval_options *o, struct llama_model *model)
{
    if (!eval_options_wants_library_policy(o))
        return 0;
    kf_llama_host_params p;
    kf_llama_host_params_default(&p);
    p.library = o->common.library;
    p.library.policy = KF_POLICY_WINDOW;
    p.library.budget_ratio = 0.5;
    p.library.budget_tokens = 0;
    p.capacity = (uint32_t)o->prompt_tokens + 1;
    kf_llama_host *h = NULL;
    const int rc = kf_llama_host_create(&h, model, &p);
    if (rc != KF_LLAMA_OK)
        fprintf(stderr, PROGRAM_NAME ": %s: %s\n", o->common.model_path,
                kf_llama_host_message(h));
    kf_llama_host_destroy(&h);
    return rc == KF_LLAMA_OK ? 0 : -1;
}

static void quiet_log(enum ggml_log_level level, const char *text, void *user_data)
{
    (void)user_data;
    if (level == GGML_LOG_LEVEL_ERROR)
        fputs(text, stderr);
}

int main(int argc, char **argv)
{
    options o;
    const int parsed = parse_command_line(&o, argc, argv);
    if (parsed != 0)
        return parsed > 0 ? 0 : 2;
    eval_options *e = &o.eval;
    if (eval_options_check_paths(e, PROGRAM_NAME, e->common.model_path))
        return 2;
    if (!getenv("KF_LLAMA_VERBOSE"))
        llama_log_set(quiet_log, NULL);
    llama_backend_init();

    struct llama_model *model = NULL;
    eval_corpus corpus = {0};
    eval_results results = {0};
    eval_doc *usable = NULL;
    eval_run *runs = NULL;
    int status = 1;
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0; /* CPU only, like the adapter */
    model = llama_model_load_from_file(e->common.model_path, mp);
    if (!model) {
        fprintf(stderr, PROGRAM_NAME ": llama.cpp could not load %s as a GGUF model\n",
                e->common.model_path);
        goto done;
    }
    if (check_model_with_adapter(e, model))
        goto done;
    eval_options_warn_past_context(e, PROGRAM_NAME, llama_model_n_ctx_train(model));
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    if (read_documents(e, vocab, &corpus))
        goto done;
    usable = malloc(((size_t)corpus.n_docs + 1) * sizeof *usable);
    if (!usable)
        goto done;
    const int n_usable = eval_options_select_documents(e, PROGRAM_NAME, &corpus,
                                                       llama_vocab_n_tokens(vocab), usable);
    if (n_usable < 0)
        goto done;
    int n_runs;
    if (!(runs = eval_options_make_runs(e, &n_runs)))
        goto done;
    const eval_sweep sweep = {
        .model = NULL, .docs = usable, .n_docs = n_usable, .runs = runs, .n_runs = n_runs,
        .prompt_tokens = e->prompt_tokens, .gen_tokens = e->gen_tokens,
        .rouge_tokens = e->rouge_tokens, .task = e->task, .library = e->common.library,
        .threads = 1, .attention_mass = false, .progress = true,
    };
    const eval_llama_settings settings = {
        .model = model, .n_threads = e->common.threads, .ubatch = o.ubatch,
        .flash_attn = o.flash_attn, .cache_f32 = o.cache_f32,
    };
    eval_set_policy_variant(&e->common.library);
    fprintf(stderr, PROGRAM_NAME ": %d documents x %d runs (%s task), one at a time on %d "
                    "llama.cpp thread(s)\n", n_usable, n_runs,
            e->task == EVAL_TASK_RECALL ? "recall" : "continue", e->common.threads);
    if (eval_llama_sweep_run(&sweep, &settings, &results))
        goto done;
    fprintf(stderr, PROGRAM_NAME ": done in %.1f s\n", results.elapsed_s);
    char desc[128];
    if (llama_model_desc(model, desc, sizeof desc) < 0)
        snprintf(desc, sizeof desc, "?");
    /* which model and llama.cpp settings the figures below are for */
    printf("# " PROGRAM_NAME ": %s (%s) through llama.cpp, K/V cells %s, flash attention %s\n\n",
           e->common.model_path, desc, o.cache_f32 ? "f32" : "f16",
           o.flash_attn < 0 ? "auto" : o.flash_attn ? "on" : "off");
    status = eval_options_report(e, &sweep, &results);
done:
    eval_results_free(&results);
    free(runs);
    free(usable);
    eval_corpus_free(&corpus);
    if (model)
        llama_model_free(model);
    llama_backend_free();
    return status;
}
