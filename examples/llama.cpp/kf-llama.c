/* Copyright (c) 2026 the libkeyformer developers. BSD-2-Clause, see COPYING. */
/* kf-llama: kf-generate's command line and output for any GGUF model that
 * llama.cpp loads, with the KV cache shrunk by libkeyformer through the
 * adapter (kf_llama_host.h).
 *
 *   kf-llama --model M.gguf [--prompt TEXT | --prompt-file F] [--steps N]
 *            [--temperature T] [--top-p P] [--seed S] [--threads N]
 *            [--policy full|keyformer|h2o|window|sinks]
 *            [--budget-ratio R | --budget-tokens K] [--recent R]
 *            [--rule dynamic|reference] [--sinks N] [--tau-init T] ...
 *            [--ubatch N] [--flash-attn auto|on|off] [--cache-type f16|f32]
 *            [--adapter on|off] [--check-cells on|off]
 *
 * The prompt (tokenized by llama.cpp, BOS first) and the continuation go to
 * stdout as kf-generate prints them; one statistics line goes to stderr.
 * Sampling is kf-generate's own sampler (greedy at --temperature 0), so the
 * same seed draws the same way. --policy full runs the adapter with the
 * library's FULL policy (the adapter's cost, nothing evicted); --adapter
 * off (with --policy full) runs llama.cpp alone. --check-cells on compares
 * llama.cpp's cells with the library's kept positions after every step. */
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <keyformer.h>
#include <llama.h>

#include "cli.h"
#include "kf_llama_config.h"
#include "kf_llama_host.h"
#include "sampler.h"

typedef struct llama_options {
    cli_common common; /* first: the option table's setters receive it */
    const char *prompt;
    const char *prompt_file;
    int steps;
    float temperature;
    float top_p;
    unsigned long long seed;
    bool use_library;         /* a policy other than full */
    int ubatch;               /* 0: llama.cpp's default (512) */
    int flash_attn;           /* -1 auto, 0 off, 1 on */
    bool cache_f32;
    bool adapter;             /* false: llama.cpp alone (full only) */
    bool check_cells;
    bool model_given;
} llama_options;

static llama_options *opts(cli_common *c) { return (llama_options *)c; }

static int set_model(cli_common *c, const char *v)
{
    opts(c)->model_given = true;
    return cli_set_model(c, v);
}
static int set_prompt(cli_common *c, const char *v) { opts(c)->prompt = v; return 0; }
static int set_prompt_file(cli_common *c, const char *v) { opts(c)->prompt_file = v; return 0; }
static int set_steps(cli_common *c, const char *v)
{
    if (cli_parse_int(v, 0, CLI_MAX_TOKENS, &opts(c)->steps))
        return cli_reject(c, "a token count from 0 to %d", CLI_MAX_TOKENS);
    return 0;
}
static int set_temperature(cli_common *c, const char *v)
{
    if (cli_parse_float(v, 0.0f, 100.0f, &opts(c)->temperature))
        return cli_reject(c, "a temperature from 0 (greedy) to 100");
    return 0;
}
static int set_top_p(cli_common *c, const char *v)
{
    float p;
    if (cli_parse_float(v, 0.0f, 1.0f, &p) || p <= 0.0f)
        return cli_reject(c, "a probability mass in (0, 1]; 1 turns top-p sampling off");
    opts(c)->top_p = p;
    return 0;
}
static int set_seed(cli_common *c, const char *v) { return cli_parse_seed(v, &opts(c)->seed); }

static int set_policy(cli_common *c, const char *v)
{
    const int policy = cli_policy_from_name(v, strlen(v));
    if (policy == CLI_POLICY_UNKNOWN)
        return cli_reject(c, "one of " CLI_POLICY_NAMES);
    opts(c)->use_library = policy != CLI_POLICY_FULL;
    c->library.policy = policy == CLI_POLICY_FULL ? KF_POLICY_FULL : (kf_policy)policy;
    return 0;
}

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
/* llama.cpp drops whole positions: only the model-wide selection fits. */
static int set_granularity(cli_common *c, const char *v)
{
    if (strcmp(v, "uniform"))
        return cli_reject(c, "only uniform: llama.cpp's cells hold a position for every layer "
                             "and head at once, so one selection serves the whole model");
    return 0;
}
static int set_ubatch(cli_common *c, const char *v)
{
    if (cli_parse_int(v, 1, CLI_MAX_TOKENS, &opts(c)->ubatch))
        return cli_reject(c, "a token count from 1 to %d", CLI_MAX_TOKENS);
    return 0;
}
static int set_flash_attn(cli_common *c, const char *v)
{
    int mode = !strcmp(v, "auto") ? -1 : !strcmp(v, "on") ? 1 : !strcmp(v, "off") ? 0 : -2;
    if (mode == -2)
        return cli_reject(c, "auto, on or off");
    opts(c)->flash_attn = mode;
    return 0;
}
static int set_cache_type(cli_common *c, const char *v)
{
    if (strcmp(v, "f16") && strcmp(v, "f32"))
        return cli_reject(c, "f16 or f32");
    opts(c)->cache_f32 = !strcmp(v, "f32");
    return 0;
}
static int set_on_off(cli_common *c, const char *v, bool *out)
{
    if (strcmp(v, "on") && strcmp(v, "off"))
        return cli_reject(c, "on or off");
    *out = !strcmp(v, "on");
    return 0;
}
static int set_adapter(cli_common *c, const char *v) { return set_on_off(c, v, &opts(c)->adapter); }
static int set_check_cells(cli_common *c, const char *v)
{
    return set_on_off(c, v, &opts(c)->check_cells);
}

enum { LIB = CLI_LIBRARY_ONLY };

static const cli_option OPTIONS[] = {
    {"--model", "PATH", "GGUF model file (required)", set_model, 0},
    {"--prompt", "TEXT", "prompt text (default: empty, start from BOS)", set_prompt, 0},
    {"--prompt-file", "FILE", "read the prompt from FILE (at most 1 MiB; trailing newlines "
     "dropped)", set_prompt_file, 0},
    {"--steps", "N", "tokens to generate (default 256)", set_steps, 0},
    {"--temperature", "T", "sampling temperature, 0 = greedy (default 1.0)", set_temperature, 0},
    {"--top-p", "P", "nucleus sampling mass in (0, 1], 1 = off (default 0.9)", set_top_p, 0},
    {"--seed", "S", "random seed (default: from the clock)", set_seed, 0},
    {"--threads", "N", "threads, at most 1024 (default: all cores)", cli_set_threads, 0},
    {"--policy", "NAME", "full (default), keyformer, h2o, window, sinks", set_policy, 0},
    {"--budget-ratio", "R", "positions kept as a fraction of the prompt, 0 < R <= 1 "
     "(default 0.5)", cli_set_budget_ratio, LIB},
    {"--budget-tokens", "K", "positions kept as a count, K >= 1", cli_set_budget_tokens, LIB},
    {"--recent", "R", "recent window as a fraction of the budget (default 0.3)", set_recent,
     LIB},
    {"--rule", "NAME", "decode eviction: dynamic (paper, default) or reference (code)",
     cli_set_rule, LIB},
    {"--granularity", "NAME", "uniform only (llama.cpp drops whole positions)",
     set_granularity, LIB},
    {"--sinks", "N", "first tokens always kept by --policy sinks (default 4)", cli_set_sinks,
     LIB},
    {"--slot-order", "O", "any (default) or position", cli_set_slot_order, LIB},
    {"--noise", "N", "table (default) or exact Gumbel noise", cli_set_noise, LIB},
    {"--tau-init", "T", "Keyformer temperature at the prompt (default 1)", set_tau_init, LIB},
    {"--tau-end", "T", "Keyformer temperature after --tau-steps (default 2)", set_tau_end, LIB},
    {"--tau-steps", "N", "steps from tau-init to tau-end (default: --steps)",
     cli_set_tau_steps, LIB},
    {"--ubatch", "N", "llama.cpp's physical batch: a longer prompt is split (default 512)",
     set_ubatch, 0},
    {"--flash-attn", "MODE", "auto (llama.cpp's default), on or off", set_flash_attn, 0},
    {"--cache-type", "TYPE", "llama.cpp's K/V cache type: f16 (default) or f32",
     set_cache_type, 0},
    {"--adapter", "on|off", "off: llama.cpp alone, for timing (only with --policy full)",
     set_adapter, 0},
    {"--check-cells", "on|off", "after every step, check llama.cpp's cells against the "
     "library's kept positions (default off)", set_check_cells, 0},
};

static const cli_program PROGRAM = {.name = "kf-llama", .synopsis = "kf-llama --model M.gguf "
                                    "[options]", .value_width = 6, .options = OPTIONS,
                                    .n_options = CLI_N_OPTIONS(OPTIONS)};

static int parse_command_line(llama_options *o, int argc, char **argv)
{
    *o = (llama_options){.steps = 256, .temperature = 1.0f, .top_p = 0.9f, .flash_attn = -1,
                         .adapter = true, .seed = (unsigned long long)time(NULL)};
    cli_common_init(&o->common);
    o->common.library.granularity = KF_GRANULARITY_UNIFORM;
    o->common.library.policy = KF_POLICY_FULL;
    const int parsed = cli_parse(&PROGRAM, &o->common, argc, argv);
    if (parsed != 0)
        return parsed;
    const kf_config *lib = &o->common.library;
    if (!o->model_given) {
        fprintf(stderr, "kf-llama: --model is required (a GGUF file; "
                        "examples/tools/kf-convert-gguf makes one from a llama2.c checkpoint)\n");
        return -1;
    }
    if (o->prompt && o->prompt_file) {
        fprintf(stderr, "kf-llama: give --prompt or --prompt-file, not both\n");
        return -1;
    }
    if (!o->use_library && o->common.library_option) {
        fprintf(stderr, "kf-llama: %s needs a --policy other than full (full keeps every "
                        "token)\n", o->common.library_option);
        return -1;
    }
    if (!o->adapter && (o->use_library || o->check_cells)) {
        fprintf(stderr, "kf-llama: --adapter off runs llama.cpp alone: only with --policy full "
                        "and without --check-cells\n");
        return -1;
    }
    if (o->use_library && lib->policy == KF_POLICY_SINKS && lib->budget_tokens > 0 &&
        lib->budget_tokens <= lib->n_sinks) {
        fprintf(stderr, "kf-llama: --budget-tokens %u must exceed --sinks %u\n",
                lib->budget_tokens, lib->n_sinks);
        return -1;
    }
    return 0;
}

typedef struct run {
    struct llama_model *model;
    const struct llama_vocab *vocab;
    struct llama_context *ctx;
    kf_llama_host *host;
    struct llama_batch batch; /* --adapter off */
    bool batch_made;
    llama_token *prompt;
    int n_prompt;
    int n_vocab;
    float *logits;
    eng_sampler sampler;
    bool sampler_made;
    int n_generated, n_decode_steps;
    double prefill_ms, decode_ms;
    uint32_t most_cells;
    size_t cell_bytes; /* K + V bytes of one position over all layers */
} run;

static int tokenize(run *r, const llama_options *o)
{
    size_t text_len = o->prompt ? strlen(o->prompt) : 0;
    char *file_text =
        o->prompt_file ? cli_read_prompt_file("kf-llama", o->prompt_file, &text_len) : NULL;
    if (o->prompt_file && !file_text)
        return -1;
    const char *text = file_text ? file_text : o->prompt ? o->prompt : "";
    if (text_len > (size_t)INT32_MAX / 2) {
        free(file_text);
        return -1;
    }
    /* at most one token per byte, plus BOS (and a space prefix) */
    const int32_t room = (int32_t)text_len + 4;
    r->prompt = malloc((size_t)room * sizeof *r->prompt);
    int32_t n = r->prompt ? llama_tokenize(r->vocab, text, (int32_t)text_len, r->prompt, room,
                                           true, false)
                          : -1;
    free(file_text);
    if (n < 1) {
        fprintf(stderr, "kf-llama: cannot tokenize the prompt (%d)\n", (int)n);
        return -1;
    }
    r->n_prompt = n;
    return 0;
}

static void print_token(const run *r, llama_token prev, llama_token id)
{
    char buf[256];
    const int lstrip = prev == llama_vocab_bos(r->vocab) ? 1 : 0;
    const int32_t n = llama_token_to_piece(r->vocab, id, buf, sizeof buf, lstrip, false);
    if (n > 0)
        fwrite(buf, 1, (size_t)n, stdout);
    fflush(stdout);
}

/* One llama_decode of n tokens at the next positions, through the adapter
 * when there is one. */
static int decode(run *r, const llama_options *o, const llama_token *tokens, int n, int pos)
{
    if (r->host) {
        /* llama.cpp holds the kept cells and the new ones until the eviction */
        const uint32_t peak = kf_llama_host_kept(r->host) + (uint32_t)n;
        r->most_cells = peak > r->most_cells ? peak : r->most_cells;
        int rc = kf_llama_host_decode(r->host, r->ctx, tokens, n, false);
        if (rc == KF_LLAMA_OK && o->check_cells)
            rc = kf_llama_host_check_cells(r->host, r->ctx);
        if (rc != KF_LLAMA_OK) {
            fprintf(stderr, "\nkf-llama: %s\n", kf_llama_host_message(r->host));
            return -1;
        }
        return 0;
    }
    r->batch.n_tokens = n;
    for (int i = 0; i < n; i++) {
        r->batch.token[i] = tokens[i];
        r->batch.pos[i] = pos + i;
        r->batch.n_seq_id[i] = 1;
        r->batch.seq_id[i][0] = 0;
        r->batch.logits[i] = i == n - 1;
    }
    const int32_t rc = llama_decode(r->ctx, r->batch);
    if (rc != 0) {
        fprintf(stderr, "\nkf-llama: llama_decode returned %d\n", (int)rc);
        return -1;
    }
    r->most_cells = (uint32_t)(pos + n);
    return 0;
}

static int next_token(run *r)
{
    const float *l = llama_get_logits_ith(r->ctx, -1);
    if (!l)
        return -1;
    memcpy(r->logits, l, (size_t)r->n_vocab * sizeof *r->logits);
    return eng_sampler_next(&r->sampler, r->logits);
}

static int budget_of(const kf_config *c, int n_prompt)
{
    return c->budget_tokens > 0 ? (int)c->budget_tokens
                                : (int)floor(c->budget_ratio * (double)n_prompt);
}

static int setup(run *r, const llama_options *o)
{
    char why[512];
    if (cli_check_input("--model", o->common.model_path, 0, why, sizeof why)) {
        fprintf(stderr, "kf-llama: %s\n", why);
        return -1;
    }
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0; /* CPU only: the adapter is tested there */
    r->model = llama_model_load_from_file(o->common.model_path, mp);
    if (!r->model) {
        fprintf(stderr, "kf-llama: llama.cpp could not load %s as a GGUF model\n",
                o->common.model_path);
        return -1;
    }
    r->vocab = llama_model_get_vocab(r->model);
    r->n_vocab = llama_vocab_n_tokens(r->vocab);
    if (r->n_vocab < 1 || tokenize(r, o))
        return -1;
    if ((int64_t)r->n_prompt + o->steps > INT32_MAX / 2) {
        fprintf(stderr, "kf-llama: the prompt and --steps are too long\n");
        return -1;
    }
    const int total = r->n_prompt + o->steps;
    const int train = llama_model_n_ctx_train(r->model);
    if (train > 0 && total > train)
        fprintf(stderr, "kf-llama: warning: the prompt (%d tokens) and --steps %d make %d "
                        "positions, more than the model's trained context of %d\n",
                r->n_prompt, o->steps, total, train);

    /* cells llama.cpp must hold at once: the whole prompt before its
     * selection, then the budget + the token being decoded */
    int cells = total;
    if (o->use_library) {
        const int k = budget_of(&o->common.library, r->n_prompt);
        cells = r->n_prompt > k + 1 ? r->n_prompt : k + 1;
    }
    if (cells < 2)
        cells = 2;
    if (o->adapter) {
        kf_llama_host_params hp;
        kf_llama_host_params_default(&hp);
        hp.library = o->common.library;
        hp.library.seed = o->seed;
        hp.library.granularity = KF_GRANULARITY_UNIFORM;
        if (!o->common.tau_steps_given)
            hp.library.tau_steps = o->steps > 0 ? (uint32_t)o->steps : 1;
        hp.capacity = (uint32_t)cells;
        hp.q_name = getenv("KF_LLAMA_TEST_Q_NAME"); /* the missing-node refusal's test */
        if (kf_llama_host_create(&r->host, r->model, &hp) != KF_LLAMA_OK) {
            fprintf(stderr, "kf-llama: %s\n", kf_llama_host_message(r->host));
            return -1;
        }
    }
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)cells;
    cp.n_batch = (uint32_t)(r->n_prompt > 1 ? r->n_prompt : 1);
    cp.n_ubatch = (uint32_t)(o->ubatch > 0 ? (o->ubatch < r->n_prompt ? o->ubatch : r->n_prompt)
                                           : (r->n_prompt < 512 ? r->n_prompt : 512));
    cp.n_seq_max = 1;
    const long cores = sysconf(_SC_NPROCESSORS_ONLN);
    const int threads = o->common.threads > 0 ? o->common.threads : cores > 0 ? (int)cores : 1;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.no_perf = true;
#if KF_LLAMA_HAVE_FLASH_ATTN_TYPE
    cp.flash_attn_type = o->flash_attn < 0 ? LLAMA_FLASH_ATTN_TYPE_AUTO
                         : o->flash_attn ? LLAMA_FLASH_ATTN_TYPE_ENABLED
                                         : LLAMA_FLASH_ATTN_TYPE_DISABLED;
#else
    cp.flash_attn = o->flash_attn > 0;
#endif
    if (o->cache_f32) {
        cp.type_k = GGML_TYPE_F32;
        cp.type_v = GGML_TYPE_F32;
    }
    if (r->host)
        kf_llama_host_attach(r->host, &cp);
    r->ctx = llama_init_from_model(r->model, cp);
    if (!r->ctx) {
        fprintf(stderr, "kf-llama: llama.cpp could not create a context of %d cells\n", cells);
        return -1;
    }
    if (!r->host) {
        r->batch = llama_batch_init(r->n_prompt, 0, 1);
        r->batch_made = true;
    }
    const int n_layer = llama_model_n_layer(r->model);
    const int n_head = llama_model_n_head(r->model);
    const int head_dim = n_head > 0 ? llama_model_n_embd(r->model) / n_head : 0;
    r->cell_bytes = (size_t)n_layer * (size_t)kf_llama_model_n_head_kv(r->model) *
                    (size_t)head_dim * 2 * (o->cache_f32 ? 4 : 2);
    r->logits = malloc((size_t)r->n_vocab * sizeof *r->logits);
    eng_error err = {{0}};
    if (!r->logits ||
        eng_sampler_init(&r->sampler, r->n_vocab, o->temperature, o->top_p, o->seed, &err)) {
        fprintf(stderr, "kf-llama: %s\n", err.message[0] ? err.message : "out of memory");
        return -1;
    }
    r->sampler_made = true;
    return 0;
}

static int generate(run *r, const llama_options *o)
{
    for (int i = 1; i < r->n_prompt; i++)
        print_token(r, r->prompt[i - 1], r->prompt[i]);
    double start = cli_now_ms();
    if (decode(r, o, r->prompt, r->n_prompt, 0))
        return -1;
    r->prefill_ms = cli_now_ms() - start;
    llama_token prev = r->prompt[r->n_prompt - 1];
    int pos = r->n_prompt;
    start = cli_now_ms();
    int rc = 0;
    while (r->n_generated < o->steps) {
        const int next = next_token(r);
        if (next < 0 || next == llama_vocab_bos(r->vocab) || llama_vocab_is_eog(r->vocab, next))
            break;
        print_token(r, prev, next);
        r->n_generated++;
        prev = next;
        if (r->n_generated == o->steps)
            break;
        const llama_token t = next;
        if ((rc = decode(r, o, &t, 1, pos)))
            break;
        pos++;
        r->n_decode_steps++;
    }
    r->decode_ms = cli_now_ms() - start;
    printf("\n");
    return rc;
}

static void print_statistics(const run *r, const llama_options *o)
{
    const double tokens_per_s =
        r->decode_ms > 0 ? r->n_decode_steps / (r->decode_ms / 1e3) : 0.0;
    const double prefill_per_s = r->prefill_ms > 0 ? r->n_prompt / (r->prefill_ms / 1e3) : 0.0;
    const uint32_t cells = r->host ? kf_llama_host_kept(r->host)
                                   : (uint32_t)(r->n_prompt + r->n_decode_steps);
    const int positions = r->n_prompt + r->n_decode_steps;
    fprintf(stderr,
            "prompt tokens: %d | generated tokens: %d | prefill: %.1f ms (%.1f tokens/s) | "
            "decode: %.1f tokens/s | KV cells in use: %u (peak %u) of %d positions | "
            "KV bytes in use: %zu vs full cache: %zu",
            r->n_prompt, r->n_generated, r->prefill_ms, prefill_per_s, tokens_per_s, cells,
            r->most_cells, positions, (size_t)cells * r->cell_bytes,
            (size_t)positions * r->cell_bytes);
    fprintf(stderr, " | llama.cpp context: %u cells", llama_n_ctx(r->ctx));
    uint32_t k, w;
    if (r->host && o->use_library && kf_budget(kf_llama_host_cache(r->host), &k, &w) == KF_OK)
        fprintf(stderr, " | budget k=%u, window w=%u", k, w);
    if (r->host) {
        uint64_t bytes;
        double cb, ev;
        kf_llama_host_costs(r->host, &bytes, &cb, &ev);
        fprintf(stderr, " | adapter: %.1f MB copied, %.1f ms callback, %.1f ms evict, %d graph "
                "stops per layer", (double)bytes / 1e6, cb * 1e3, ev * 1e3,
                kf_llama_host_stops_per_layer(r->host));
    }
    fprintf(stderr, " | seed %llu\n", o->seed);
}

static void quiet_log(enum ggml_log_level level, const char *text, void *user_data)
{
    (void)user_data;
    if (level == GGML_LOG_LEVEL_ERROR)
        fputs(text, stderr);
}

int main(int argc, char **argv)
{
    llama_options o;
    const int parsed = parse_command_line(&o, argc, argv);
    if (parsed != 0)
        return parsed > 0 ? 0 : 2;
    if (!getenv("KF_LLAMA_VERBOSE"))
        llama_log_set(quiet_log, NULL);
    llama_backend_init();
    run r = {0};
    int rc = setup(&r, &o);
    if (rc == 0)
        rc = generate(&r, &o);
    if (rc == 0)
        print_statistics(&r, &o);
    if (r.sampler_made)
        eng_sampler_free(&r.sampler);
    free(r.logits);
    free(r.prompt);
    if (r.batch_made)
        llama_batch_free(r.batch);
    kf_llama_host_destroy(&r.host);
    if (r.ctx)
        llama_free(r.ctx);
    if (r.model)
        llama_model_free(r.model);
    llama_backend_free();
    return rc == 0 ? 0 : 1;
}
