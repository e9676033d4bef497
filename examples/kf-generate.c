/* kf-generate: stream a continuation of a prompt from a llama2.c checkpoint.
 *
 *   kf-generate [--model PATH] [--tokenizer PATH] [--prompt TEXT | --prompt-file F]
 *               [--steps N] [--temperature T] [--top-p P] [--seed S] [--threads N]
 *               [--capacity SLOTS]
 *               [--policy full|keyformer|h2o|window|sinks] [--budget R|N]
 *               [--recent R] [--rule dynamic|reference] [--granularity kv-head|layer]
 *               [--sinks N] [--evict-every B] [--slot-order position|any]
 *               [--tau-init T] [--tau-end T] [--tau-steps N]
 *
 * With --policy full (the default) the engine keeps every token and the
 * library is not involved; any other policy runs libkeyformer in the
 * engine's per-layer hook, which shrinks the KV cache in place.
 *
 * The text goes to stdout as it is produced; one line of statistics goes to
 * stderr at the end. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <keyformer.h>

#include "cli.h"
#include "engine_keyformer.h"
#include "forward.h"
#include "model.h"
#include "sampler.h"
#include "tokenizer.h"

typedef struct generate_options {
    cli_common common; /* first: the option table's setters receive it */
    const char *prompt;
    const char *prompt_file;
    int steps;
    float temperature;
    float top_p;
    unsigned long long seed;
    int capacity; /* KV slots; 0 = prompt + steps */
    bool use_library; /* false for --policy full */
} generate_options;

/* ---- command line: one table row per option (cli.h) ---- */

/* The whole options struct of a setter's cli_common (its first member). */
static generate_options *opts(cli_common *c) { return (generate_options *)c; }

static int set_prompt(cli_common *c, const char *v) { opts(c)->prompt = v; return 0; }
static int set_prompt_file(cli_common *c, const char *v) { opts(c)->prompt_file = v; return 0; }
static int set_steps(cli_common *c, const char *v) { return cli_parse_int(v, 0, &opts(c)->steps); }
static int set_capacity(cli_common *c, const char *v)
{
    return cli_parse_int(v, 1, &opts(c)->capacity);
}
static int set_temperature(cli_common *c, const char *v)
{
    return cli_parse_float(v, 0.0f, 100.0f, &opts(c)->temperature);
}
static int set_top_p(cli_common *c, const char *v)
{
    return cli_parse_float(v, 0.0f, 1.0f, &opts(c)->top_p);
}
static int set_seed(cli_common *c, const char *v) { return cli_parse_seed(v, &opts(c)->seed); }

static int set_policy(cli_common *c, const char *v)
{
    const int policy = cli_policy_from_name(v, strlen(v));
    if (policy == CLI_POLICY_UNKNOWN)
        return -1;
    opts(c)->use_library = policy != CLI_POLICY_FULL;
    if (policy != CLI_POLICY_FULL)
        c->library.policy = (kf_policy)policy;
    return 0;
}

/* kf-generate also takes "head" for kv-head. */
static int set_granularity(cli_common *c, const char *v)
{
    return cli_set_granularity(c, strcmp(v, "head") ? v : "kv-head");
}

/* A fraction of the prompt when written with a point ("0.5"), else a count
 * of slots ("256"). */
static int set_budget(cli_common *c, const char *v)
{
    if (strchr(v, '.')) {
        float ratio;
        if (cli_parse_float(v, 0.0f, 1.0f, &ratio) || ratio <= 0.0f)
            return -1;
        c->library.budget_ratio = ratio;
        c->library.budget_tokens = 0;
        return 0;
    }
    int tokens;
    if (cli_parse_int(v, 1, &tokens))
        return -1;
    c->library.budget_tokens = (uint32_t)tokens;
    c->library.budget_ratio = 0.0;
    return 0;
}

/* Ratios and temperatures are read as floats, as kf-generate always has. */
static int set_recent(cli_common *c, const char *v)
{
    float ratio;
    if (cli_parse_float(v, 0.0f, 1.0f, &ratio))
        return -1;
    c->library.recent_ratio = ratio;
    return 0;
}

static int set_tau_init(cli_common *c, const char *v)
{
    return cli_parse_float(v, 1e-6f, 1e6f, &c->library.tau_init);
}

static int set_tau_end(cli_common *c, const char *v)
{
    return cli_parse_float(v, 1e-6f, 1e6f, &c->library.tau_end);
}

static const cli_option OPTIONS[] = {
    {"--model", "PATH", "llama2.c checkpoint (default: bundled sotu-llama-6m)", cli_set_model},
    {"--tokenizer", "PATH", "tokenizer.bin (default: bundled)", cli_set_tokenizer},
    {"--prompt", "TEXT", "prompt text (default: empty, start from BOS)", set_prompt},
    {"--prompt-file", "FILE", "read the prompt from FILE (trailing newlines dropped)",
     set_prompt_file},
    {"--steps", "N", "tokens to generate (default 256)", set_steps},
    {"--temperature", "T", "sampling temperature, 0 = greedy (default 1.0)", set_temperature},
    {"--top-p", "P", "nucleus sampling mass, 1 = off (default 0.9)", set_top_p},
    {"--seed", "S", "random seed (default: from the clock)", set_seed},
    {"--threads", "N", "threads (default: all cores)", cli_set_threads},
    {"--capacity", "SLOTS", "KV cache slots per layer (default: prompt + steps)",
     set_capacity},
    {"--policy", "NAME", "full (no library, default), keyformer, h2o, window, sinks",
     set_policy},
    {"--budget", "R|N", "slots kept: fraction of the prompt (0.5) or count (256)", set_budget},
    {"--recent", "R", "recent window as a fraction of the budget (default 0.3)", set_recent},
    {"--rule", "NAME", "decode eviction: dynamic (paper, default) or reference (code)",
     cli_set_rule},
    {"--granularity", "NAME", "head (default; alias kv-head), layer or uniform",
     set_granularity},
    {"--sinks", "N", "first tokens always kept by --policy sinks (default 4)", cli_set_sinks},
    {"--evict-every", "B", "evict B tokens at once every B decode steps (default 1)",
     cli_set_evict_every},
    {"--slot-order", "O", "position (default) or any: refill evicted slots from the end",
     cli_set_slot_order},
    {"--tau-init", "T", "Keyformer temperature at the prompt (default 1)", set_tau_init},
    {"--tau-end", "T", "Keyformer temperature after --tau-steps (default 2)", set_tau_end},
    {"--tau-steps", "N", "steps from tau-init to tau-end (default: --steps)",
     cli_set_tau_steps},
};

static const cli_program PROGRAM = {.name = "kf-generate", .synopsis = "kf-generate [options]",
                                    .value_width = 6, .options = OPTIONS,
                                    .n_options = CLI_N_OPTIONS(OPTIONS)};

/* Returns 0 to run, 1 when help was printed, -1 on a bad command line. */
static int parse_command_line(generate_options *o, int argc, char **argv)
{
    *o = (generate_options){
        .steps = 256, .temperature = 1.0f, .top_p = 0.9f,
        .seed = (unsigned long long)time(NULL),
    };
    cli_common_init(&o->common);
    const int parsed = cli_parse(&PROGRAM, &o->common, argc, argv);
    if (parsed != 0)
        return parsed;
    if (o->prompt && o->prompt_file) {
        fprintf(stderr, "kf-generate: give --prompt or --prompt-file, not both\n");
        return -1;
    }
    return 0;
}

/* ---- prompt ---- */

static char *read_text_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "kf-generate: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t used = 0, capacity = 1 << 16;
    char *text = malloc(capacity);
    for (size_t got; text && (got = fread(text + used, 1, capacity - used, f)) > 0;) {
        used += got;
        if (used == capacity) {
            char *bigger = realloc(text, capacity *= 2);
            if (!bigger)
                free(text);
            text = bigger;
        }
    }
    const int failed = ferror(f);
    fclose(f);
    if (!text || failed) {
        fprintf(stderr, "kf-generate: %s: cannot read\n", path);
        free(text);
        return NULL;
    }
    /* Editors end files with a newline that is not part of the prompt. */
    while (used > 0 && (text[used - 1] == '\n' || text[used - 1] == '\r'))
        used--;
    *len = used;
    return text;
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* ---- generation ---- */

typedef struct generation {
    eng_model model;
    eng_tokenizer tokenizer;
    eng_sampler sampler;
    eng_state *state;
    float *logits;
    int *prompt_ids;
    int n_prompt;
    int n_generated;
    double prefill_ms;
    double decode_ms;
    int n_decode_steps;
    engine_keyformer glue; /* glue.cache is NULL without the library */
    int show_progress;     /* stderr is a terminal and the prompt is long */
} generation;

static int report(int rc, const eng_error *err)
{
    if (rc != ENG_OK)
        fprintf(stderr, "kf-generate: %s: %s\n", eng_status_name(rc), err->message);
    return rc;
}

static int load_inputs(generation *g, const generate_options *o, eng_error *err)
{
    int rc;
    if ((rc = cli_load_model(&o->common, &g->model, &g->tokenizer, err)) ||
        (rc = eng_sampler_init(&g->sampler, g->model.config.vocab_size, o->temperature,
                               o->top_p, o->seed, err)))
        return rc;

    size_t text_len = o->prompt ? strlen(o->prompt) : 0;
    char *file_text = o->prompt_file ? read_text_file(o->prompt_file, &text_len) : NULL;
    if (o->prompt_file && !file_text)
        return eng_fail(err, ENG_EIO, "cannot read the prompt");
    rc = eng_tokenizer_encode(&g->tokenizer, file_text ? file_text : o->prompt, text_len,
                              true, false, &g->prompt_ids, &g->n_prompt, err);
    free(file_text);
    return rc;
}

/* Creates the library cache and returns the KV capacity the engine needs:
 * the whole prompt before its selection, and k + B slots (B = the eviction
 * interval, 1 by default) while a decode step attends before evicting. */
static int create_library_cache(generation *g, const generate_options *o, int *capacity,
                                eng_error *err)
{
    const eng_model_config *c = &g->model.config;
    kf_config cfg = o->common.library;
    cfg.n_layers = (uint32_t)c->n_layers;
    cfg.n_heads = (uint32_t)c->n_heads;
    cfg.n_kv_heads = (uint32_t)c->n_kv_heads;
    cfg.head_dim = (uint32_t)c->head_size;
    cfg.n_threads = (uint32_t)o->common.threads;
    cfg.seed = o->seed;
    if (!o->common.tau_steps_given)
        cfg.tau_steps = o->steps > 0 ? (uint32_t)o->steps : 1;
    const long budget = cfg.budget_tokens > 0
                            ? (long)cfg.budget_tokens
                            : (long)floor(cfg.budget_ratio * (double)g->n_prompt);
    if (budget < 1)
        return eng_fail(err, ENG_EINVAL,
                        "a budget of %g of a %d-token prompt keeps no tokens; "
                        "give a slot count such as --budget 64",
                        cfg.budget_ratio, g->n_prompt);
    const long every = cfg.evict_interval > 1 ? (long)cfg.evict_interval : 1;
    const long needed = budget + every > g->n_prompt ? budget + every : g->n_prompt;
    *capacity = o->capacity > 0 ? o->capacity : (int)(needed < INT_MAX ? needed : INT_MAX);
    cfg.capacity = (uint32_t)*capacity;
    const int rc = kf_cache_create(&g->glue.cache, &cfg);
    if (rc != KF_OK)
        return eng_fail(err, ENG_EINVAL, "kf_cache_create: %s (check the policy options)",
                        kf_strerror(rc));
    return ENG_OK;
}

/* The layer hook: a prefill progress line on a terminal, then the
 * library's glue (or nothing, with the full cache). */
static int layer_hook(void *user_data, const eng_layer_event *e)
{
    generation *g = user_data;
    if (g->show_progress && e->layer == 0 && e->first_position < g->n_prompt) {
        const int done = e->first_position + e->n_rows;
        fprintf(stderr, "\rprefill: %d/%d tokens%s", done, g->n_prompt,
                e->more_rows_follow ? "" : "\r\033[K");
    }
    return g->glue.cache ? engine_keyformer_hook(&g->glue, e) : e->n_slots;
}

static int prepare(generation *g, const generate_options *o, eng_error *err)
{
    int rc = load_inputs(g, o, err);
    if (rc)
        return rc;
    const long everything = (long)g->n_prompt + o->steps;
    int capacity = o->capacity > 0 ? o->capacity
                                   : (int)(everything < INT_MAX ? everything : INT_MAX);
    if (o->use_library && (rc = create_library_cache(g, o, &capacity, err)))
        return rc;
    g->show_progress = isatty(STDERR_FILENO) && g->n_prompt > 512;
    const eng_state_options state_options = {
        .kv_capacity = capacity,
        .n_threads = o->common.threads,
        .hook = o->use_library || g->show_progress ? layer_hook : NULL,
        .hook_user_data = g,
    };
    if ((rc = eng_state_create(&g->state, &g->model, &state_options, err)))
        return rc;
    g->logits = malloc((size_t)g->model.config.vocab_size * sizeof *g->logits);
    return g->logits ? ENG_OK : eng_fail(err, ENG_ENOMEM, "out of memory");
}

/* Runs tokens through the engine, naming the library call if the hook failed. */
static int forward(generation *g, const int *tokens, int n, eng_error *err)
{
    const int rc = eng_forward(g->state, tokens, n, g->logits, 1, err);
    if (rc == ENG_EHOOK && g->glue.failed_call)
        return eng_fail(err, rc, "%s failed on layer %d: %s", g->glue.failed_call,
                        g->glue.failed_layer, kf_strerror(g->glue.failed_status));
    return rc;
}

static void print_token(const generation *g, int prev, int id)
{
    size_t len;
    const char *bytes = eng_tokenizer_decode(&g->tokenizer, prev, id, &len);
    fwrite(bytes, 1, len, stdout);
    fflush(stdout);
}

static int generate(generation *g, const generate_options *o, eng_error *err)
{
    for (int i = 1; i < g->n_prompt; i++)
        print_token(g, g->prompt_ids[i - 1], g->prompt_ids[i]);
    double start = now_ms();
    int rc = forward(g, g->prompt_ids, g->n_prompt, err);
    g->prefill_ms = now_ms() - start;
    if (rc)
        return rc;

    int prev = g->prompt_ids[g->n_prompt - 1];
    start = now_ms();
    while (g->n_generated < o->steps) {
        const int next = eng_sampler_next(&g->sampler, g->logits);
        if (next == ENG_TOKEN_EOS || next == ENG_TOKEN_BOS)
            break;
        print_token(g, prev, next);
        g->n_generated++;
        prev = next;
        if (g->n_generated == o->steps)
            break; /* the last token needs no forward pass */
        if ((rc = forward(g, &next, 1, err)))
            break;
        g->n_decode_steps++;
    }
    g->decode_ms = now_ms() - start;
    printf("\n");
    /* A full cache ends generation early; that is not an error. */
    if (rc == ENG_EFULL) {
        fprintf(stderr, "kf-generate: stopping early: %s\n", err->message);
        return ENG_OK;
    }
    return rc;
}

static void print_statistics(const generation *g, const generate_options *o)
{
    const eng_model_config *c = &g->model.config;
    int fewest = INT_MAX, most = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const int n = eng_state_slot_count(g->state, l);
        fewest = n < fewest ? n : fewest;
        most = n > most ? n : most;
    }
    const double tokens_per_s =
        g->decode_ms > 0 ? g->n_decode_steps / (g->decode_ms / 1e3) : 0.0;
    fprintf(stderr,
            "prompt tokens: %d | generated tokens: %d | prefill: %.1f ms | "
            "decode: %.1f tokens/s | KV slots kept per layer: %d",
            g->n_prompt, g->n_generated, g->prefill_ms, tokens_per_s, most);
    if (fewest != most)
        fprintf(stderr, " (min %d)", fewest);
    fprintf(stderr, " of %d positions | KV bytes in use: %zu vs full cache: %zu",
            eng_state_position(g->state), eng_state_kv_bytes_in_use(g->state),
            eng_state_kv_bytes_full(g->state));
    uint32_t k, w;
    if (g->glue.cache && kf_budget(g->glue.cache, &k, &w) == KF_OK)
        fprintf(stderr, " | budget k=%u, window w=%u", k, w);
    fprintf(stderr, " | seed %llu\n", o->seed);
}

static void release(generation *g)
{
    eng_state_destroy(&g->state);
    kf_cache_destroy(&g->glue.cache);
    eng_sampler_free(&g->sampler);
    eng_tokenizer_free(&g->tokenizer);
    eng_model_close(&g->model);
    free(g->prompt_ids);
    free(g->logits);
}

int main(int argc, char **argv)
{
    generate_options options;
    const int parsed = parse_command_line(&options, argc, argv);
    if (parsed != 0)
        return parsed > 0 ? 0 : 2;
    generation g = {0};
    eng_error err = {{0}};
    int rc = report(prepare(&g, &options, &err), &err);
    if (rc == ENG_OK)
        rc = report(generate(&g, &options, &err), &err);
    if (rc == ENG_OK)
        print_statistics(&g, &options);
    release(&g);
    return rc == ENG_OK ? 0 : 1;
}
