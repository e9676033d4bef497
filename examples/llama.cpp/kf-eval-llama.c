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
 *           [--score-norm none|seen] [--tau-init T] [--tau-end T] [--tau-steps N]
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
#include "eval/report.h"
#include "eval/runner.h"
#include "eval_llama.h"
#include "kf_llama_host.h"

#define PROGRAM_NAME "kf-eval-llama"

enum { MAX_BUDGETS = 32, MAX_SEEDS = 1000 };

_Static_assert((int)EVAL_FULL == (int)CLI_POLICY_FULL, "EVAL_FULL differs from CLI_POLICY_FULL");

typedef struct options {
    cli_common common; /* first: the option table's setters receive it */
    bool model_given;
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
    int ubatch;     /* 0: min(P, 512) */
    int flash_attn; /* -1 auto, 0 off, 1 on */
    bool cache_f32;
} options;

static options *opts(cli_common *c) { return (options *)c; }

/* ---- parsing: one table row per option (cli.h) ---- */

/* The item of a comma-separated list at p, copied into item (cut to fit);
 * returns the text after its comma, or NULL after the last item. */
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

static int set_budgets(cli_common *c, const char *v)
{
    options *o = opts(c);
    o->n_budgets = 0;
    for (int n = 1;; n++) {
        char item[64];
        size_t len;
        const char *rest = next_item(v, item, sizeof item, &len);
        if (n > MAX_BUDGETS)
            return cli_reject(c, "more than %d budgets", MAX_BUDGETS);
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

static int set_model(cli_common *c, const char *v)
{
    opts(c)->model_given = true;
    return cli_set_model(c, v);
}
static int set_tokens(cli_common *c, const char *v) { opts(c)->tokens_path = v; return 0; }
static int set_text(cli_common *c, const char *v) { opts(c)->text_path = v; return 0; }
static int set_csv(cli_common *c, const char *v) { opts(c)->csv_path = v; return 0; }
static int set_plot(cli_common *c, const char *v) { opts(c)->plot_path = v; return 0; }

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
static int set_ubatch(cli_common *c, const char *v) { return set_count(c, v, 1, &opts(c)->ubatch); }

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
     "tokenized by llama.cpp (at most 64 MiB)", set_text, 0},
    {"--tokens", "FILE", "JSON lines {\"name\", \"ids\"}: ids of the model's vocabulary, BOS "
     "first (at most 64 MiB)", set_tokens, 0},
    {"--prompt-tokens", "P", "prompt ids, prefilled with full attention (1024)", set_prompt, 0},
    {"--gen-tokens", "M", "teacher-forced predictions per document (256)", set_gen, 0},
    {"--rouge-tokens", "G", "greedy tokens compared by ROUGE-L (128; 0 skips)", set_rouge, 0},
    {"--policies", "LIST", "of full,keyformer,h2o,window,sinks (all)", set_policies, 0},
    {"--budgets", "LIST", "fractions of the prompt in (0, 1] (0.1,0.2,0.3,0.5,0.7,0.9)",
     set_budgets, LIB},
    {"--task", "NAME", "continue (default) or recall", set_task, 0},
    {"--recent", "R", "recent window as a fraction of the budget (0.3)", set_recent, LIB},
    {"--rule", "NAME", "decode eviction: dynamic (default) or reference", cli_set_rule, LIB},
    {"--granularity", "NAME", "uniform (the only one llama.cpp's cells allow)", set_granularity,
     LIB},
    {"--sinks", "N", "first tokens kept by the sinks policy (4)", cli_set_sinks, LIB},
    {"--slot-order", "O", "any (default): refill evicted slots from the end; position: keep "
     "position order", cli_set_slot_order, LIB},
    {"--noise", "N", "table (default): Gumbel noise from a 4096-bin table; exact: the "
     "continuous sample", cli_set_noise, LIB},
    {"--obs-window", "W", "score the prompt by its last W query rows only (0: off, all rows)",
     cli_set_obs_window, LIB},
    {"--pool", "K[:M]", "pool prompt scores over K neighbours, M max (default) or avg (0: off)",
     cli_set_pool, LIB},
    {"--score-norm", "N", "none (default) or seen: rank by score per query row that saw the "
     "token", cli_set_score_norm, LIB},
    {"--tau-init", "T", "Keyformer temperature at the prompt (1)", set_tau_init, LIB},
    {"--tau-end", "T", "Keyformer temperature after --tau-steps (2)", set_tau_end, LIB},
    {"--tau-steps", "N", "steps from tau-init to tau-end (default M)", cli_set_tau_steps, LIB},
    {"--seeds", "N", "Keyformer runs per budget, seeds S .. S+N-1 (1)", set_seeds, 0},
    {"--seed", "S", "first Keyformer seed (1)", set_seed, 0},
    {"--max-docs", "N", "evaluate the first N usable documents (all)", set_max_docs, 0},
    {"--threads", "N", "llama.cpp threads per decode, at most 1024 (all cores)",
     cli_set_threads, 0},
    {"--ubatch", "N", "llama.cpp's physical batch: the prompt is split into N-token pieces "
     "(512)", set_ubatch, 0},
    {"--flash-attn", "MODE", "auto (llama.cpp's default), on or off", set_flash_attn, 0},
    {"--cache-type", "TYPE", "llama.cpp's K/V cells: f16 (default) or f32", set_cache_type, 0},
    {"--csv", "OUT", "per-document CSV (kf-eval's columns)", set_csv, 0},
    {"--plot", "OUT.png", "figure through gnuplot", set_plot, 0},
};

static const cli_program PROGRAM = {
    .name = PROGRAM_NAME,
    .synopsis = PROGRAM_NAME " --model M.gguf (--text FILE | --tokens FILE) [options]",
    .value_width = 8, .options = OPTIONS, .n_options = CLI_N_OPTIONS(OPTIONS)};

static bool wants_library_policy(const options *o)
{
    for (int p = 0; p < o->n_policies; p++)
        if (o->policy_order[p] != EVAL_FULL)
            return true;
    return false;
}

/* Every budget keeps a position, more than the sinks under sinks, and a
 * recent window of at least one position under Keyformer and H2O (else
 * the adapter refuses the run: llama.cpp continues a sequence only from its
 * newest cached position). */
static int check_budgets(const options *o)
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

static int check_combinations(const options *o)
{
    if (!o->model_given) {
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
    if (!wants_library_policy(o) && o->common.library_option) {
        fprintf(stderr, PROGRAM_NAME ": %s needs a policy other than full in --policies\n",
                o->common.library_option);
        return -1;
    }
    const int64_t recall_end = (int64_t)EVAL_RECALL_OFFSET + o->gen_tokens + 1;
    if (o->task == EVAL_TASK_RECALL && o->prompt_tokens < recall_end) {
        fprintf(stderr, PROGRAM_NAME ": the recall task repeats ids[%d:%" PRId64 "], which "
                        "must lie inside the prompt: use --prompt-tokens >= %" PRId64 "\n",
                EVAL_RECALL_OFFSET, recall_end, recall_end);
        return -1;
    }
    return check_budgets(o);
}

/* Returns 0 to run, 1 after --help or --version, -1 on a bad command line. */
static int parse_command_line(options *o, int argc, char **argv)
{
    const long cores = sysconf(_SC_NPROCESSORS_ONLN);
    *o = (options){
        .prompt_tokens = 1024, .gen_tokens = 256, .rouge_tokens = 128,
        .seeds = 1, .first_seed = 1, .max_docs = INT_MAX, .flash_attn = -1,
    };
    cli_common_init(&o->common);
    o->common.library.granularity = KF_GRANULARITY_UNIFORM;
    o->common.threads = cores < 1 ? 1 : cores > CLI_MAX_THREADS ? CLI_MAX_THREADS : (int)cores;
    set_policies(&o->common, "full,keyformer,h2o,window,sinks");
    set_budgets(&o->common, "0.1,0.2,0.3,0.5,0.7,0.9");
    const int parsed = cli_parse(&PROGRAM, &o->common, argc, argv);
    if (parsed != 0)
        return parsed;
    if (!o->common.tau_steps_given)
        o->common.library.tau_steps = (uint32_t)o->gen_tokens;
    return check_combinations(o);
}

/* Run 0 is the full cache; then each policy, budget and (Keyformer) seed. */
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

/* Every file is checked before the model loads. */
static int check_paths(const options *o)
{
    char why[600];
    const bool text = o->text_path != NULL;
    if (cli_check_input("--model", o->common.model_path, 0, why, sizeof why) ||
        cli_check_input(text ? "--text" : "--tokens", text ? o->text_path : o->tokens_path,
                        CLI_MAX_DOCUMENT_BYTES, why, sizeof why) ||
        (o->csv_path && cli_check_output("--csv", o->csv_path, why, sizeof why)) ||
        (o->plot_path && cli_check_output("--plot", o->plot_path, why, sizeof why))) {
        fprintf(stderr, PROGRAM_NAME ": %s\n", why);
        return -1;
    }
    return 0;
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

static int read_documents(const options *o, const struct llama_vocab *vocab,
                          eval_corpus *corpus)
{
    const bool text = o->text_path != NULL;
    const char *path = text ? o->text_path : o->tokens_path;
    char message[800];
    *corpus = (eval_corpus){0};
    const int fd = cli_open_input(text ? "--text" : "--tokens", path, CLI_MAX_DOCUMENT_BYTES,
                                  message, sizeof message);
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
    if (fd >= 0 && !f) {
        close(fd);
        snprintf(message, sizeof message, "%s: cannot read", path);
    }
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

/* The documents long enough for the task, at most --max-docs. */
static int select_documents(const options *o, const eval_corpus *corpus, int vocab_size,
                            eval_doc *usable)
{
    const int64_t needed = (int64_t)o->prompt_tokens + o->gen_tokens + 1;
    int n_usable = 0, longest = 0;
    for (int d = 0; d < corpus->n_docs && n_usable < o->max_docs; d++) {
        const eval_doc *doc = &corpus->docs[d];
        for (int i = 0; i < doc->n_ids && i < needed; i++)
            if (doc->ids[i] < 0 || doc->ids[i] >= vocab_size) {
                fprintf(stderr, PROGRAM_NAME ": %s: token id %d at %d is outside the model's "
                                "%d-token vocabulary\n", doc->name, doc->ids[i], i, vocab_size);
                return -1;
            }
        longest = doc->n_ids > longest ? doc->n_ids : longest;
        if (doc->n_ids < needed)
            fprintf(stderr, PROGRAM_NAME ": skipping %s: %d ids, fewer than %" PRId64 "\n",
                    doc->name, doc->n_ids, needed);
        else
            usable[n_usable++] = *doc;
    }
    if (n_usable == 0) {
        fprintf(stderr, PROGRAM_NAME ": no document has the %" PRId64 " ids a run needs "
                        "(--prompt-tokens %d + --gen-tokens %d + 1); the longest of %d has %d: "
                        "lower --prompt-tokens or --gen-tokens\n",
                needed, o->prompt_tokens, o->gen_tokens, corpus->n_docs, longest);
        return -1;
    }
    return n_usable;
}

/* The adapter's refusals that depend on the model alone (recurrent, hybrid,
 * sliding-window, own attention scale, softcapping), before any run. */
static int check_model_with_adapter(const options *o, struct llama_model *model)
{
    if (!wants_library_policy(o))
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

static void warn_past_context(const options *o, const struct llama_model *model)
{
    const int64_t positions = (int64_t)o->prompt_tokens +
                              (o->gen_tokens > o->rouge_tokens ? o->gen_tokens : o->rouge_tokens);
    const int32_t context = llama_model_n_ctx_train(model);
    if (context > 0 && positions > context)
        fprintf(stderr, PROGRAM_NAME ": warning: --prompt-tokens %d and %d more tokens make %"
                        PRId64 " positions, more than the model's trained context of %d\n",
                o->prompt_tokens, (int)(positions - o->prompt_tokens), positions, (int)context);
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
    if (check_paths(&o))
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
    model = llama_model_load_from_file(o.common.model_path, mp);
    if (!model) {
        fprintf(stderr, PROGRAM_NAME ": llama.cpp could not load %s as a GGUF model\n",
                o.common.model_path);
        goto done;
    }
    if (check_model_with_adapter(&o, model))
        goto done;
    warn_past_context(&o, model);
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    if (read_documents(&o, vocab, &corpus))
        goto done;
    usable = malloc(((size_t)corpus.n_docs + 1) * sizeof *usable);
    if (!usable)
        goto done;
    const int n_usable = select_documents(&o, &corpus, llama_vocab_n_tokens(vocab), usable);
    if (n_usable < 0)
        goto done;
    int n_runs;
    if (!(runs = make_runs(&o, &n_runs)))
        goto done;
    const eval_sweep sweep = {
        .model = NULL, .docs = usable, .n_docs = n_usable, .runs = runs, .n_runs = n_runs,
        .prompt_tokens = o.prompt_tokens, .gen_tokens = o.gen_tokens,
        .rouge_tokens = o.rouge_tokens, .task = o.task, .library = o.common.library,
        .threads = 1, .attention_mass = false, .progress = true,
    };
    const eval_llama_settings settings = {
        .model = model, .n_threads = o.common.threads, .ubatch = o.ubatch,
        .flash_attn = o.flash_attn, .cache_f32 = o.cache_f32,
    };
    eval_set_policy_variant(&o.common.library);
    fprintf(stderr, PROGRAM_NAME ": %d documents x %d runs (%s task), one at a time on %d "
                    "llama.cpp thread(s)\n", n_usable, n_runs,
            o.task == EVAL_TASK_RECALL ? "recall" : "continue", o.common.threads);
    if (eval_llama_sweep_run(&sweep, &settings, &results))
        goto done;
    fprintf(stderr, PROGRAM_NAME ": done in %.1f s\n", results.elapsed_s);
    const bool include_full = o.policy_wanted[0];
    char desc[128];
    if (llama_model_desc(model, desc, sizeof desc) < 0)
        snprintf(desc, sizeof desc, "?");
    /* which model and llama.cpp settings the figures below are for */
    printf("# " PROGRAM_NAME ": %s (%s) through llama.cpp, K/V cells %s, flash attention %s\n\n",
           o.common.model_path, desc, o.cache_f32 ? "f32" : "f16",
           o.flash_attn < 0 ? "auto" : o.flash_attn ? "on" : "off");
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
    if (model)
        llama_model_free(model);
    llama_backend_free();
    return status;
}
