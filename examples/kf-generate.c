/* kf-generate: stream a continuation of a prompt from a llama2.c checkpoint.
 *
 *   kf-generate [--model PATH] [--tokenizer PATH] [--prompt TEXT | --prompt-file F]
 *               [--steps N] [--temperature T] [--top-p P] [--seed S] [--threads N]
 *               [--capacity SLOTS]
 *               [--policy full|keyformer|h2o|window|sinks] [--budget R|N]
 *               [--recent R] [--rule dynamic|reference] [--granularity kv-head|layer]
 *               [--sinks N] [--tau-init T] [--tau-end T] [--tau-steps N]
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

#include "engine_keyformer.h"
#include "forward.h"
#include "model.h"
#include "sampler.h"
#include "tokenizer.h"

#ifndef KF_MODEL_DIR
#define KF_MODEL_DIR "examples/models/sotu-llama-6m"
#endif

typedef struct generate_options {
    const char *model_path;
    const char *tokenizer_path;
    const char *prompt;
    const char *prompt_file;
    int steps;
    float temperature;
    float top_p;
    unsigned long long seed;
    int threads;
    int capacity; /* KV slots; 0 = prompt + steps */
    bool use_library; /* false for --policy full */
    bool tau_steps_given;
    kf_config kf;     /* library settings; shape fields filled later */
} generate_options;

/* ---- command line: one table row per option ---- */

typedef int (*option_parser)(generate_options *o, const char *value);

static int parse_int(const char *value, int min, int *out)
{
    char *end;
    errno = 0;
    const long v = strtol(value, &end, 10);
    if (errno || end == value || *end || v < min || v > INT_MAX)
        return -1;
    *out = (int)v;
    return 0;
}

static int parse_float(const char *value, float min, float max, float *out)
{
    char *end;
    errno = 0;
    const float v = strtof(value, &end);
    if (errno || end == value || *end || !(v >= min && v <= max))
        return -1;
    *out = v;
    return 0;
}

static int set_model(generate_options *o, const char *v) { o->model_path = v; return 0; }
static int set_tokenizer(generate_options *o, const char *v) { o->tokenizer_path = v; return 0; }
static int set_prompt(generate_options *o, const char *v) { o->prompt = v; return 0; }
static int set_prompt_file(generate_options *o, const char *v) { o->prompt_file = v; return 0; }
static int set_steps(generate_options *o, const char *v) { return parse_int(v, 0, &o->steps); }
static int set_threads(generate_options *o, const char *v) { return parse_int(v, 1, &o->threads); }
static int set_capacity(generate_options *o, const char *v) { return parse_int(v, 1, &o->capacity); }
static int set_temperature(generate_options *o, const char *v)
{
    return parse_float(v, 0.0f, 100.0f, &o->temperature);
}
static int set_top_p(generate_options *o, const char *v)
{
    return parse_float(v, 0.0f, 1.0f, &o->top_p);
}
static int set_seed(generate_options *o, const char *v)
{
    char *end;
    errno = 0;
    o->seed = strtoull(v, &end, 10);
    return errno || end == v || *end ? -1 : 0;
}

/* Maps a name to an enum value; -1 if unknown. */
typedef struct named_value {
    const char *name;
    int value;
} named_value;

static int lookup_name(const named_value *table, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(table[i].name, name))
            return table[i].value;
    return -1;
}

/* "full" is not a library policy here: it means running without the library. */
enum { POLICY_NO_LIBRARY = 100 };

static int set_policy(generate_options *o, const char *v)
{
    static const named_value policies[] = {
        {"full", POLICY_NO_LIBRARY}, {"keyformer", KF_POLICY_KEYFORMER},
        {"h2o", KF_POLICY_H2O}, {"window", KF_POLICY_WINDOW}, {"sinks", KF_POLICY_SINKS},
    };
    const int policy = lookup_name(policies, 5, v);
    if (policy < 0)
        return -1;
    o->use_library = policy != POLICY_NO_LIBRARY;
    if (o->use_library)
        o->kf.policy = (kf_policy)policy;
    return 0;
}

static int set_rule(generate_options *o, const char *v)
{
    static const named_value rules[] = {{"dynamic", KF_RULE_DYNAMIC},
                                        {"reference", KF_RULE_REFERENCE}};
    const int rule = lookup_name(rules, 2, v);
    o->kf.rule = (kf_rule)rule;
    return rule < 0 ? -1 : 0;
}

static int set_granularity(generate_options *o, const char *v)
{
    /* UNIFORM: one model-wide selection after the last layer of a step */
    static const named_value granularities[] = {{"head", KF_GRANULARITY_KV_HEAD},
                                                {"kv-head", KF_GRANULARITY_KV_HEAD},
                                                {"layer", KF_GRANULARITY_LAYER},
                                                {"uniform", KF_GRANULARITY_UNIFORM}};
    const int granularity = lookup_name(granularities, 4, v);
    o->kf.granularity = (kf_granularity)granularity;
    return granularity < 0 ? -1 : 0;
}

/* A fraction of the prompt when written with a point ("0.5"), else a count
 * of slots ("256"). */
static int set_budget(generate_options *o, const char *v)
{
    if (strchr(v, '.')) {
        float ratio;
        if (parse_float(v, 0.0f, 1.0f, &ratio) || ratio <= 0.0f)
            return -1;
        o->kf.budget_ratio = ratio;
        o->kf.budget_tokens = 0;
        return 0;
    }
    int tokens;
    if (parse_int(v, 1, &tokens))
        return -1;
    o->kf.budget_tokens = (uint32_t)tokens;
    o->kf.budget_ratio = 0.0;
    return 0;
}

static int set_recent(generate_options *o, const char *v)
{
    float ratio;
    if (parse_float(v, 0.0f, 1.0f, &ratio))
        return -1;
    o->kf.recent_ratio = ratio;
    return 0;
}

static int set_sinks(generate_options *o, const char *v)
{
    int n;
    if (parse_int(v, 0, &n))
        return -1;
    o->kf.n_sinks = (uint32_t)n;
    return 0;
}

static int set_tau_init(generate_options *o, const char *v)
{
    return parse_float(v, 1e-6f, 1e6f, &o->kf.tau_init);
}

static int set_tau_end(generate_options *o, const char *v)
{
    return parse_float(v, 1e-6f, 1e6f, &o->kf.tau_end);
}

static int set_tau_steps(generate_options *o, const char *v)
{
    int n;
    if (parse_int(v, 1, &n))
        return -1;
    o->kf.tau_steps = (uint32_t)n;
    o->tau_steps_given = true;
    return 0;
}

typedef struct option_spec {
    const char *name;
    const char *value_name;
    const char *help;
    option_parser parse;
} option_spec;

static const option_spec OPTIONS[] = {
    {"--model", "PATH", "llama2.c checkpoint (default: bundled sotu-llama-6m)", set_model},
    {"--tokenizer", "PATH", "tokenizer.bin (default: bundled)", set_tokenizer},
    {"--prompt", "TEXT", "prompt text (default: empty, start from BOS)", set_prompt},
    {"--prompt-file", "FILE", "read the prompt from FILE (trailing newlines dropped)",
     set_prompt_file},
    {"--steps", "N", "tokens to generate (default 256)", set_steps},
    {"--temperature", "T", "sampling temperature, 0 = greedy (default 1.0)", set_temperature},
    {"--top-p", "P", "nucleus sampling mass, 1 = off (default 0.9)", set_top_p},
    {"--seed", "S", "random seed (default: from the clock)", set_seed},
    {"--threads", "N", "threads (default: all cores)", set_threads},
    {"--capacity", "SLOTS", "KV cache slots per layer (default: prompt + steps)",
     set_capacity},
    {"--policy", "NAME", "full (no library, default), keyformer, h2o, window, sinks",
     set_policy},
    {"--budget", "R|N", "slots kept: fraction of the prompt (0.5) or count (256)", set_budget},
    {"--recent", "R", "recent window as a fraction of the budget (default 0.3)", set_recent},
    {"--rule", "NAME", "decode eviction: dynamic (paper, default) or reference (code)",
     set_rule},
    {"--granularity", "NAME", "head (default; alias kv-head), layer or uniform",
     set_granularity},
    {"--sinks", "N", "first tokens always kept by --policy sinks (default 4)", set_sinks},
    {"--tau-init", "T", "Keyformer temperature at the prompt (default 1)", set_tau_init},
    {"--tau-end", "T", "Keyformer temperature after --tau-steps (default 2)", set_tau_end},
    {"--tau-steps", "N", "steps from tau-init to tau-end (default: --steps)", set_tau_steps},
};
enum { N_OPTIONS = sizeof OPTIONS / sizeof OPTIONS[0] };

static void print_usage(FILE *out)
{
    fprintf(out, "usage: kf-generate [options]\n");
    for (int i = 0; i < N_OPTIONS; i++)
        fprintf(out, "  %-15s %-6s %s\n", OPTIONS[i].name, OPTIONS[i].value_name,
                OPTIONS[i].help);
}

/* Returns 0 to run, 1 when help was printed, -1 on a bad command line. */
static int parse_command_line(generate_options *o, int argc, char **argv)
{
    *o = (generate_options){
        .model_path = KF_MODEL_DIR "/model.bin",
        .tokenizer_path = KF_MODEL_DIR "/tokenizer.bin",
        .steps = 256, .temperature = 1.0f, .top_p = 0.9f,
        .seed = (unsigned long long)time(NULL),
    };
    kf_config_default(&o->kf);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            print_usage(stdout);
            return 1;
        }
        const option_spec *spec = NULL;
        for (int k = 0; k < N_OPTIONS && !spec; k++)
            if (!strcmp(argv[i], OPTIONS[k].name))
                spec = &OPTIONS[k];
        if (!spec) {
            fprintf(stderr, "kf-generate: unknown option %s\n", argv[i]);
            print_usage(stderr);
            return -1;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "kf-generate: %s needs a value (%s)\n", spec->name, spec->value_name);
            return -1;
        }
        if (spec->parse(o, argv[++i]) != 0) {
            fprintf(stderr, "kf-generate: bad value '%s' for %s\n", argv[i], spec->name);
            return -1;
        }
    }
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
    if ((rc = eng_model_open(&g->model, o->model_path, err)) ||
        (rc = eng_tokenizer_load(&g->tokenizer, o->tokenizer_path,
                                 g->model.config.vocab_size, err)) ||
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
 * the whole prompt before its selection, and k + 1 slots while a decode
 * step attends before evicting. */
static int create_library_cache(generation *g, const generate_options *o, int *capacity,
                                eng_error *err)
{
    const eng_model_config *c = &g->model.config;
    kf_config cfg = o->kf;
    cfg.n_layers = (uint32_t)c->n_layers;
    cfg.n_heads = (uint32_t)c->n_heads;
    cfg.n_kv_heads = (uint32_t)c->n_kv_heads;
    cfg.head_dim = (uint32_t)c->head_size;
    cfg.n_threads = (uint32_t)o->threads;
    cfg.seed = o->seed;
    if (!o->tau_steps_given)
        cfg.tau_steps = o->steps > 0 ? (uint32_t)o->steps : 1;
    const long budget = cfg.budget_tokens > 0
                            ? (long)cfg.budget_tokens
                            : (long)floor(cfg.budget_ratio * (double)g->n_prompt);
    if (budget < 1)
        return eng_fail(err, ENG_EINVAL,
                        "a budget of %g of a %d-token prompt keeps no tokens; "
                        "give a slot count such as --budget 64",
                        cfg.budget_ratio, g->n_prompt);
    const long needed = budget + 1 > g->n_prompt ? budget + 1 : g->n_prompt;
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
        .n_threads = o->threads,
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
