/* kf-generate: stream a continuation of a prompt from a llama2.c checkpoint.
 *
 *   kf-generate [--model PATH] [--tokenizer PATH] [--prompt TEXT | --prompt-file F]
 *               [--steps N] [--temperature T] [--top-p P] [--seed S] [--threads N]
 *               [--samples N]
 *               [--capacity SLOTS]
 *               [--policy full|keyformer|h2o|window|sinks]
 *               [--budget-ratio R | --budget-tokens K]
 *               [--recent R] [--rule dynamic|reference]
 *               [--granularity kv-head|head|layer|uniform]
 *               [--sinks N] [--evict-every B] [--slot-order any|position] [--noise table|exact]
 *               [--tau-init T] [--tau-end T] [--tau-steps N]
 *               [--observe kv-head|layer]
 *
 * With --policy full (the default) the engine keeps every token and the
 * library is not involved; any other policy runs libkeyformer in the
 * engine's per-layer hook, which shrinks the KV cache in place. The
 * library's options (--budget-*, --recent, --sinks, ...) are refused with
 * --policy full, where they would do nothing. --observe picks how the
 * logits reach the library: kv-head (the default) hands each KV head's
 * logits over from the attention thread that computed them
 * (kf_observe_begin / kf_observe_kv_head / kf_observe_end), layer hands the
 * whole layer's over after its attention (kf_observe_logits); the two give
 * the same output bit for bit.
 *
 * The text goes to stdout as it is produced; one line of statistics goes to
 * stderr at the end. --samples N decodes N continuations after one shared
 * prefill: the engine state and the library cache right after the prompt
 * are copied (eng_state_copy, kf_cache_copy_state) before each sample,
 * sample i draws with seed S + i, and each continuation follows a header
 * line on stdout and ends with its own statistics line on stderr. */
#include <errno.h>
#include <inttypes.h>
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
    int samples;  /* continuations after one prefill, >= 1 */
    bool use_library; /* false for --policy full */
    bool observe_per_layer; /* --observe layer: kf_observe_logits per layer */
} generate_options;

/* ---- command line: one table row per option (cli.h) ---- */

/* The whole options struct of a setter's cli_common (its first member). */
static generate_options *opts(cli_common *c) { return (generate_options *)c; }

static int set_prompt(cli_common *c, const char *v) { opts(c)->prompt = v; return 0; }
static int set_prompt_file(cli_common *c, const char *v) { opts(c)->prompt_file = v; return 0; }
static int set_steps(cli_common *c, const char *v)
{
    if (cli_parse_int(v, 0, CLI_MAX_TOKENS, &opts(c)->steps))
        return cli_reject(c, "a token count from 0 to %d", CLI_MAX_TOKENS);
    return 0;
}
static int set_capacity(cli_common *c, const char *v)
{
    if (cli_parse_int(v, 1, CLI_MAX_TOKENS, &opts(c)->capacity))
        return cli_reject(c, "a slot count from 1 to %d", CLI_MAX_TOKENS);
    return 0;
}
static int set_temperature(cli_common *c, const char *v)
{
    if (cli_parse_float(v, 0.0f, 100.0f, &opts(c)->temperature))
        return cli_reject(c, "a temperature from 0 (greedy) to 100");
    return 0;
}
/* 0 would keep no token at all; "off" is 1, the whole distribution. */
static int set_top_p(cli_common *c, const char *v)
{
    float p;
    if (cli_parse_float(v, 0.0f, 1.0f, &p) || p <= 0.0f)
        return cli_reject(c, "a probability mass in (0, 1]; 1 turns top-p sampling off");
    opts(c)->top_p = p;
    return 0;
}
static int set_seed(cli_common *c, const char *v) { return cli_parse_seed(v, &opts(c)->seed); }
enum { MAX_SAMPLES = 1024 };
static int set_samples(cli_common *c, const char *v)
{
    if (cli_parse_int(v, 1, MAX_SAMPLES, &opts(c)->samples))
        return cli_reject(c, "a count of continuations from 1 to %d", MAX_SAMPLES);
    return 0;
}

static int set_policy(cli_common *c, const char *v)
{
    const int policy = cli_policy_from_name(v, strlen(v));
    if (policy == CLI_POLICY_UNKNOWN)
        return cli_reject(c, "one of " CLI_POLICY_NAMES);
    opts(c)->use_library = policy != CLI_POLICY_FULL;
    if (policy != CLI_POLICY_FULL)
        c->library.policy = (kf_policy)policy;
    return 0;
}

static int set_retired_budget(cli_common *c, const char *v)
{
    (void)v;
    return cli_reject(c, "--budget is gone (it read 1 as one slot but 1.0 as the whole "
                         "prompt): use --budget-ratio R (a fraction of the prompt) or "
                         "--budget-tokens K (a slot count)");
}

/* Ratios and temperatures are read as floats, as kf-generate always has. */
static int set_recent(cli_common *c, const char *v)
{
    float ratio;
    if (cli_parse_float(v, 0.0f, 1.0f, &ratio))
        return cli_reject(c, "a fraction of the budget in [0, 1]");
    c->library.recent_ratio = ratio;
    return 0;
}

static int set_tau_init(cli_common *c, const char *v)
{
    if (cli_parse_float(v, 1e-6f, 1e6f, &c->library.tau_init))
        return cli_reject(c, "a temperature from 1e-6 to 1e6");
    return 0;
}

static int set_tau_end(cli_common *c, const char *v)
{
    if (cli_parse_float(v, 1e-6f, 1e6f, &c->library.tau_end))
        return cli_reject(c, "a temperature from 1e-6 to 1e6");
    return 0;
}

static int set_observe(cli_common *c, const char *v)
{
    if (strcmp(v, "kv-head") && strcmp(v, "layer"))
        return cli_reject(c, "kv-head or layer");
    opts(c)->observe_per_layer = !strcmp(v, "layer");
    return 0;
}

enum { LIB = CLI_LIBRARY_ONLY };

static const cli_option OPTIONS[] = {
    {"--model", "PATH", "llama2.c checkpoint (default: bundled sotu-llama-6m)", cli_set_model, 0},
    {"--tokenizer", "PATH", "tokenizer.bin (default: bundled)", cli_set_tokenizer, 0},
    {"--bundled", "NAME", CLI_BUNDLED_HELP "; sets --model and --tokenizer", cli_set_bundled,
     0},
    {"--prompt", "TEXT", "prompt text (default: empty, start from BOS)", set_prompt, 0},
    {"--prompt-file", "FILE", "read the prompt from FILE (at most 1 MiB; trailing newlines "
     "dropped)", set_prompt_file, 0},
    {"--steps", "N", "tokens to generate (default 256)", set_steps, 0},
    {"--temperature", "T", "sampling temperature, 0 = greedy (default 1.0)", set_temperature, 0},
    {"--top-p", "P", "nucleus sampling mass in (0, 1], 1 = off (default 0.9)", set_top_p, 0},
    {"--seed", "S", "random seed (default: from the clock)", set_seed, 0},
    {"--threads", "N", "threads, at most 1024 (default: all cores)", cli_set_threads, 0},
    {"--samples", "N", "continuations after one shared prefill, seeds S, S+1, ... (default 1)",
     set_samples, 0},
    {"--capacity", "SLOTS", "KV cache slots per layer (default: what the run needs)",
     set_capacity, 0},
    {"--policy", "NAME", "full (no library, default), keyformer, h2o, window, sinks",
     set_policy, 0},
    {"--budget-ratio", "R", "slots kept as a fraction of the prompt, 0 < R <= 1 (default 0.5)",
     cli_set_budget_ratio, LIB},
    {"--budget-tokens", "K", "slots kept as a count, K >= 1", cli_set_budget_tokens, LIB},
    {"--budget", "R|N", "removed: use --budget-ratio or --budget-tokens", set_retired_budget, 0},
    {"--recent", "R", "recent window as a fraction of the budget (default 0.3)", set_recent,
     LIB},
    {"--rule", "NAME", "decode eviction: dynamic (paper, default) or reference (code)",
     cli_set_rule, LIB},
    {"--granularity", "NAME", "kv-head (default; alias head), layer or uniform",
     cli_set_granularity, LIB},
    {"--sinks", "N", "first tokens always kept by --policy sinks (default 4)", cli_set_sinks,
     LIB},
    {"--evict-every", "B", "evict B tokens at once every B decode steps (default 1)",
     cli_set_evict_every, LIB},
    CLI_OPTIONS_SCORING,
    CLI_OPTION_LAYER_SLOPE,
    CLI_OPTION_HEAD_BUDGET,
    {"--tau-init", "T", "Keyformer temperature at the prompt (default 1)", set_tau_init, LIB},
    {"--tau-end", "T", "Keyformer temperature after --tau-steps (default 2)", set_tau_end, LIB},
    {"--tau-steps", "N", "steps from tau-init to tau-end (default: --steps)",
     cli_set_tau_steps, LIB},
    {"--observe", "MODE", "kv-head (default): logits to the library one KV head at a time, "
     "from the attention's threads; layer: a whole layer's after its attention",
     set_observe, LIB},
};

static const cli_program PROGRAM = {.name = "kf-generate", .synopsis = "kf-generate [options]",
                                    .value_width = 6, .options = OPTIONS,
                                    .n_options = CLI_N_OPTIONS(OPTIONS)};

/* The checks that need several options at once; 0, or -1 after saying why. */
static int check_library_options(const generate_options *o)
{
    const kf_config *lib = &o->common.library;
    if (!o->use_library && o->common.library_option) {
        fprintf(stderr, "kf-generate: %s needs a --policy other than full (full keeps every "
                        "token without the library)\n", o->common.library_option);
        return -1;
    }
    if (o->use_library && lib->policy == KF_POLICY_SINKS && lib->budget_tokens > 0 &&
        lib->budget_tokens <= lib->n_sinks) {
        fprintf(stderr, "kf-generate: --budget-tokens %u must exceed --sinks %u: the sinks "
                        "policy keeps the first %u tokens and a window after them\n",
                lib->budget_tokens, lib->n_sinks, lib->n_sinks);
        return -1;
    }
    const int64_t every = lib->evict_interval > 1 ? lib->evict_interval : 1;
    if (o->use_library && o->capacity > 0 && lib->budget_tokens > 0 &&
        (int64_t)o->capacity < (int64_t)lib->budget_tokens + every) {
        fprintf(stderr, "kf-generate: --capacity %d is below --budget-tokens %u + %" PRId64
                        " (the slots a decode step holds before it evicts)\n",
                o->capacity, lib->budget_tokens, every);
        return -1;
    }
    return 0;
}

/* Returns 0 to run, 1 when help was printed, -1 on a bad command line. */
static int parse_command_line(generate_options *o, int argc, char **argv)
{
    *o = (generate_options){
        .steps = 256, .temperature = 1.0f, .top_p = 0.9f, .samples = 1,
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
    return check_library_options(o);
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
    /* --samples > 1: the state right after the prompt, its logits and
     * (with the library) its cache, restored before each sample */
    eng_state *prefix;
    kf_cache *prefix_cache;
    float *prefix_logits;
    int show_progress;     /* stderr is a terminal and the prompt is long */
} generation;

/* The message says what failed; the status name only stands in for a
 * missing one (it would repeat "KV cache full: KV cache full ..."). */
static int report(int rc, const eng_error *err)
{
    if (rc != ENG_OK)
        fprintf(stderr, "kf-generate: %s\n", err->message[0] ? err->message
                                                             : eng_status_name(rc));
    return rc;
}

/* The engine runs past the trained context (RoPE goes on), but what the
 * model says there is untested: say so, with the numbers. */
static void warn_past_context(const generation *g, const generate_options *o)
{
    const int64_t total = (int64_t)g->n_prompt + o->steps;
    const int context = g->model.config.seq_len;
    if (context > 0 && total > context)
        fprintf(stderr, "kf-generate: warning: the prompt (%d tokens) and --steps %d make %" PRId64
                        " positions, more than the model's trained context of %d\n",
                g->n_prompt, o->steps, total, context);
}

static int load_inputs(generation *g, const generate_options *o, eng_error *err)
{
    int rc;
    if ((rc = cli_load_model(&o->common, &g->model, &g->tokenizer, err)) ||
        (rc = eng_sampler_init(&g->sampler, g->model.config.vocab_size, o->temperature,
                               o->top_p, o->seed, err)))
        return rc;

    size_t text_len = o->prompt ? strlen(o->prompt) : 0;
    char *file_text =
        o->prompt_file ? cli_read_prompt_file("kf-generate", o->prompt_file, &text_len) : NULL;
    if (o->prompt_file && !file_text)
        return eng_fail(err, ENG_EIO, "cannot read the prompt");
    rc = eng_tokenizer_encode(&g->tokenizer, file_text ? file_text : o->prompt, text_len,
                              true, false, &g->prompt_ids, &g->n_prompt, err);
    free(file_text);
    if (rc == ENG_OK)
        warn_past_context(g, o);
    return rc;
}

/* The budget k in slots: the count given, or the ratio of this prompt. */
static int64_t budget_slots(const kf_config *cfg, int n_prompt)
{
    return cfg->budget_tokens > 0 ? (int64_t)cfg->budget_tokens
                                  : (int64_t)floor(cfg->budget_ratio * (double)n_prompt);
}

/* The budget k must keep a token, and more than the sinks under the sinks
 * policy; 0, or the engine's status with the reason in err. */
static int check_budget(const kf_config *cfg, int n_prompt, int64_t budget, eng_error *err)
{
    if (budget < 1)
        return eng_fail(err, ENG_EINVAL,
                        "--budget-ratio %g of a %d-token prompt keeps no tokens; "
                        "raise it or give a slot count such as --budget-tokens 64",
                        cfg->budget_ratio, n_prompt);
    if (cfg->policy == KF_POLICY_SINKS && budget <= (int64_t)cfg->n_sinks)
        return eng_fail(err, ENG_EINVAL,
                        "the budget (%" PRId64 " slots) must exceed --sinks %u: the sinks "
                        "policy keeps the first %u tokens and a window after them",
                        budget, cfg->n_sinks, cfg->n_sinks);
    return ENG_OK;
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
    const int64_t budget = budget_slots(&cfg, g->n_prompt);
    int rc = check_budget(&cfg, g->n_prompt, budget, err);
    if (rc)
        return rc;
    const int64_t every = cfg.evict_interval > 1 ? (int64_t)cfg.evict_interval : 1;
    const int64_t needed = budget + every > g->n_prompt ? budget + every : g->n_prompt;
    if (o->capacity > 0 && o->capacity < needed)
        return eng_fail(err, ENG_EINVAL,
                        "--capacity %d is too small: the library needs %" PRId64 " slots (the "
                        "%d-token prompt, and the budget %" PRId64 " + %" PRId64 " while a "
                        "decode step evicts)", o->capacity, needed, g->n_prompt, budget, every);
    if (needed > INT_MAX)
        return eng_fail(err, ENG_EINVAL, "%" PRId64 " KV slots do not fit the engine", needed);
    *capacity = o->capacity > 0 ? o->capacity : (int)needed;
    cfg.capacity = (uint32_t)*capacity;
    rc = kf_cache_create(&g->glue.cache, &cfg);
    if (rc != KF_OK)
        return eng_fail(err, ENG_EINVAL, "kf_cache_create: %s (budget %" PRId64 " slots, "
                        "capacity %d, eviction interval %" PRId64 ", %u sinks)",
                        kf_strerror(rc), budget, *capacity, every, cfg.n_sinks);
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
    /* n_prompt is bounded by the 1 MiB prompt, steps by CLI_MAX_TOKENS */
    const int64_t everything = (int64_t)g->n_prompt + o->steps;
    if (!o->use_library && o->capacity > 0 && o->capacity < g->n_prompt)
        return eng_fail(err, ENG_EINVAL, "--capacity %d is smaller than the %d-token prompt",
                        o->capacity, g->n_prompt);
    if (everything > INT_MAX)
        return eng_fail(err, ENG_EINVAL, "%" PRId64 " KV slots do not fit the engine",
                        everything);
    int capacity = o->capacity > 0 ? o->capacity : (int)everything;
    if (o->use_library && (rc = create_library_cache(g, o, &capacity, err)))
        return rc;
    g->show_progress = isatty(STDERR_FILENO) && g->n_prompt > 512;
    const eng_state_options state_options = {
        .kv_capacity = capacity,
        .n_threads = o->common.threads,
        .hook = o->use_library || g->show_progress ? layer_hook : NULL,
        .hook_user_data = g,
        .kv_head_hooks = o->use_library && !o->observe_per_layer
                             ? engine_keyformer_kv_head_hooks(&g->glue)
                             : (eng_kv_head_hooks){0},
    };
    if ((rc = eng_state_create(&g->state, &g->model, &state_options, err)))
        return rc;
    const size_t vocab = (size_t)g->model.config.vocab_size;
    g->logits = malloc(vocab * sizeof *g->logits);
    if (!g->logits)
        return eng_fail(err, ENG_ENOMEM, "out of memory");
    if (o->samples == 1)
        return ENG_OK;
    /* the snapshot after the prompt: a second state and cache of the
     * same shape, allocated here so that branching allocates nothing */
    const eng_state_options snapshot_options = {.kv_capacity = capacity,
                                                .n_threads = o->common.threads};
    if ((rc = eng_state_create(&g->prefix, &g->model, &snapshot_options, err)))
        return rc;
    kf_config cfg;
    if (g->glue.cache && kf_cache_config(g->glue.cache, &cfg) == KF_OK &&
        (rc = kf_cache_create(&g->prefix_cache, &cfg)) != KF_OK)
        return eng_fail(err, ENG_ENOMEM, "kf_cache_create: %s", kf_strerror(rc));
    g->prefix_logits = malloc(vocab * sizeof *g->prefix_logits);
    return g->prefix_logits ? ENG_OK : eng_fail(err, ENG_ENOMEM, "out of memory");
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

/* One continuation from the state after the prompt (g->logits hold the
 * prompt's last row). */
static int decode(generation *g, const generate_options *o, eng_error *err)
{
    int rc = ENG_OK;
    int prev = g->prompt_ids[g->n_prompt - 1];
    double start = cli_now_ms();
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
    g->decode_ms = cli_now_ms() - start;
    printf("\n");
    /* A full cache ends generation early; that is not an error. */
    if (rc == ENG_EFULL) {
        fprintf(stderr, "kf-generate: stopping early: %s\n", err->message);
        return ENG_OK;
    }
    return rc;
}

static void print_statistics(const generation *g, const generate_options *o,
                             unsigned long long seed);

/* Sample i > 0: back to the state after the prompt (engine K/V, library
 * cache, logits) and a sampler seeded seed + i. */
static int restore_prefix(generation *g, const generate_options *o, int i, eng_error *err)
{
    int rc = eng_state_copy(g->state, g->prefix, err);
    if (rc)
        return rc;
    if (g->glue.cache && (rc = kf_cache_copy_state(g->glue.cache, g->prefix_cache)) != KF_OK)
        return eng_fail(err, ENG_EINVAL, "kf_cache_copy_state: %s", kf_strerror(rc));
    memcpy(g->logits, g->prefix_logits,
           (size_t)g->model.config.vocab_size * sizeof *g->logits);
    eng_sampler_free(&g->sampler);
    g->n_generated = 0;
    g->n_decode_steps = 0;
    return eng_sampler_init(&g->sampler, g->model.config.vocab_size, o->temperature,
                            o->top_p, o->seed + (unsigned long long)i, err);
}

/* Saves the state after the prompt for the later samples. */
static int save_prefix(generation *g, eng_error *err)
{
    int rc = eng_state_copy(g->prefix, g->state, err);
    if (rc)
        return rc;
    if (g->glue.cache && (rc = kf_cache_copy_state(g->prefix_cache, g->glue.cache)) != KF_OK)
        return eng_fail(err, ENG_EINVAL, "kf_cache_copy_state: %s", kf_strerror(rc));
    memcpy(g->prefix_logits, g->logits,
           (size_t)g->model.config.vocab_size * sizeof *g->logits);
    return ENG_OK;
}

static int generate(generation *g, const generate_options *o, eng_error *err)
{
    for (int i = 1; i < g->n_prompt; i++)
        print_token(g, g->prompt_ids[i - 1], g->prompt_ids[i]);
    const double start = cli_now_ms();
    int rc = forward(g, g->prompt_ids, g->n_prompt, err);
    g->prefill_ms = cli_now_ms() - start;
    if (rc || o->samples == 1)
        return rc ? rc : decode(g, o, err);
    if ((rc = save_prefix(g, err)))
        return rc;
    printf("\n");
    for (int i = 0; i < o->samples; i++) {
        const unsigned long long seed = o->seed + (unsigned long long)i;
        if (i > 0 && (rc = restore_prefix(g, o, i, err)))
            return rc;
        printf("--- sample %d of %d (seed %llu) ---\n", i + 1, o->samples, seed);
        fflush(stdout);
        if ((rc = decode(g, o, err)))
            return rc;
        print_statistics(g, o, seed);
    }
    return ENG_OK;
}

static void print_statistics(const generation *g, const generate_options *o,
                             unsigned long long seed)
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
    (void)o;
    fprintf(stderr, " | seed %llu\n", seed);
}

static void release(generation *g)
{
    eng_state_destroy(&g->state);
    kf_cache_destroy(&g->glue.cache);
    eng_state_destroy(&g->prefix);
    kf_cache_destroy(&g->prefix_cache);
    free(g->prefix_logits);
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
    if (rc == ENG_OK && options.samples == 1)
        print_statistics(&g, &options, options.seed);
    release(&g);
    return rc == ENG_OK ? 0 : 1;
}
