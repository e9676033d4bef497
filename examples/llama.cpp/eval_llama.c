/* Copyright (c) 2026 the libkeyformer developers. BSD-2-Clause, see COPYING. */
#include "eval_llama.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ggml-backend.h>

#include "eval/metrics.h"
#include "eval/report.h"
#include "kf_llama_config.h"
#include "kf_llama_host.h"
#include "sampler.h"

typedef struct llama_runner {
    const eval_sweep *sw;
    const eval_llama_settings *set;
    eval_results *res;
    struct llama_context *ctx;
    const struct llama_vocab *vocab;
    int n_vocab;
    /* The run in progress: its adapter (NULL for the full cache) and the
     * adapter's eval callback, which route_eval forwards to. */
    kf_llama_host *host;
    ggml_backend_sched_eval_callback host_callback;
    struct llama_batch batch; /* the full cache's own batches, up to P tokens */
    int32_t next_pos;
    llama_token *sequence;          /* the task's P + M + 1 ids of the document */
    llama_token *continue_sequence; /* recall: the continue task's */
    const float *logits;            /* of the last token decoded */
    char where[256];                /* "doc, run" for messages */
} llama_runner;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* The context's eval callback: the adapter's, with the adapter of the run
 * in progress as its user data; nothing is watched for the full cache. */
static bool route_eval(struct ggml_tensor *t, bool ask, void *user_data)
{
    llama_runner *r = user_data;
    if (r->host && r->host_callback)
        return r->host_callback(t, ask, r->host);
    return !ask; /* watch nothing; a data call (none comes) must not stop the graph */
}

/* Empties llama.cpp's memory for the next phase (positions restart at 0). */
static void clear_memory(llama_runner *r)
{
#if KF_LLAMA_MEMORY_API
    llama_memory_clear(llama_get_memory(r->ctx), true);
#else
    llama_kv_cache_seq_rm(r->ctx, -1, -1, -1);
#endif
    r->next_pos = 0;
    r->logits = NULL;
}

static int fail_run(llama_runner *r, const char *what)
{
    fprintf(stderr, "kf-eval-llama: %s: %s\n", r->where, what);
    return -1;
}

/* llama.cpp alone: n tokens at the next positions; logits of all when
 * all_logits, else of the last. */
static int decode_plain(llama_runner *r, const llama_token *tokens, int n, bool all_logits)
{
    r->batch.n_tokens = n;
    for (int i = 0; i < n; i++) {
        r->batch.token[i] = tokens[i];
        r->batch.pos[i] = r->next_pos + i;
        r->batch.n_seq_id[i] = 1;
        r->batch.seq_id[i][0] = 0;
        r->batch.logits[i] = all_logits || i == n - 1;
    }
    const int32_t rc = llama_decode(r->ctx, r->batch);
    if (rc != 0) {
        char why[96];
        snprintf(why, sizeof why, "llama_decode returned %d at position %d", (int)rc,
                 (int)r->next_pos);
        return fail_run(r, why);
    }
    r->next_pos += n;
    return 0;
}

/* One decode of the run in progress (through its adapter, if any); then
 * r->logits holds the last token's logits. */
static int decode(llama_runner *r, const llama_token *tokens, int n, bool all_logits)
{
    if (r->host) {
        if (kf_llama_host_decode(r->host, r->ctx, tokens, n, all_logits) != KF_LLAMA_OK)
            return fail_run(r, kf_llama_host_message(r->host));
        r->next_pos += n;
    } else if (decode_plain(r, tokens, n, all_logits)) {
        return -1;
    }
    r->logits = llama_get_logits_ith(r->ctx, -1);
    return r->logits ? 0 : fail_run(r, "llama.cpp returned no logits");
}

/* Starts a phase of a run: empty memory, a fresh adapter for a library
 * policy, then the prompt sequence[0:P]. */
static int prefill(llama_runner *r, const eval_run *run, const llama_token *sequence,
                   bool all_logits)
{
    const eval_sweep *sw = r->sw;
    kf_llama_host_destroy(&r->host);
    r->host_callback = NULL;
    clear_memory(r);
    if (run->policy != EVAL_FULL) {
        kf_llama_host_params p;
        kf_llama_host_params_default(&p);
        p.library = sw->library;
        p.library.policy = (kf_policy)run->policy;
        p.library.budget_tokens = 0;
        p.library.budget_ratio = run->budget;
        p.library.seed = run->seed;
        p.library.granularity = KF_GRANULARITY_UNIFORM;
        p.capacity = (uint32_t)sw->prompt_tokens + 1; /* the prompt, then k + 1 <= P + 1 */
        if (kf_llama_host_create(&r->host, r->set->model, &p) != KF_LLAMA_OK) {
            fail_run(r, kf_llama_host_message(r->host));
            kf_llama_host_destroy(&r->host);
            return -1;
        }
        /* The adapter's callback, as kf_llama_host_attach would install it
         * in a new context; route_eval hands it this run's adapter. */
        struct llama_context_params scratch = llama_context_default_params();
        kf_llama_host_attach(r->host, &scratch);
        if (!scratch.cb_eval || scratch.cb_eval_user_data != r->host)
            return fail_run(r, "kf_llama_host_attach installed no callback");
        r->host_callback = scratch.cb_eval;
    }
    return decode(r, sequence, sw->prompt_tokens, all_logits);
}

static bool ends_generation(const llama_runner *r, llama_token t)
{
    return t == llama_vocab_bos(r->vocab) || llama_vocab_is_eog(r->vocab, t);
}

/* G greedy tokens after the prompt; stops before EOS or BOS like
 * kf-generate and the engine's runner. */
static int generate(llama_runner *r, const eval_run *run, size_t at)
{
    const int G = r->sw->rouge_tokens;
    int *out = r->res->generated + at * (size_t)G, n = 0;
    if (prefill(r, run, r->sequence, false))
        return -1;
    llama_token token = eng_argmax(r->logits, r->n_vocab);
    while (n < G && !ends_generation(r, token)) {
        out[n++] = token;
        if (n == G)
            break;
        if (decode(r, &token, 1, false))
            return -1;
        token = eng_argmax(r->logits, r->n_vocab);
    }
    r->res->n_generated[at] = n;
    return 0;
}

/* The M teacher-forced steps after the prompt of sequence; their mean NLL
 * in *mean, and per step into nll and argmax when not NULL (then, for the
 * full cache of a recall sweep, also the document's passage_first_nll). */
static int teacher_forced(llama_runner *r, int doc, const eval_run *run,
                          const llama_token *sequence, double *nll, int *argmax, double *mean)
{
    const int P = r->sw->prompt_tokens, M = r->sw->gen_tokens;
    /* recall, full cache: the prompt rows 64 .. P-2 predict the passage at
     * its first occurrence */
    const bool passage = r->sw->task == EVAL_TASK_RECALL && run->policy == EVAL_FULL &&
                         nll != NULL;
    if (prefill(r, run, sequence, passage))
        return -1;
    if (passage) {
        double total = 0.0;
        for (int t = 0; t < M; t++) {
            const float *row = llama_get_logits_ith(r->ctx, EVAL_RECALL_OFFSET + t);
            if (!row)
                return fail_run(r, "llama.cpp returned no logits for a prompt row");
            total += eval_nll(row, r->n_vocab, sequence[EVAL_RECALL_OFFSET + t + 1]);
        }
        r->res->passage_first_nll[doc] = total / M;
    }
    double total = 0.0;
    for (int t = 0; t < M; t++) {
        if (decode(r, &sequence[P + t], 1, false))
            return -1;
        const double x = eval_nll(r->logits, r->n_vocab, sequence[P + t + 1]);
        total += x;
        if (nll) {
            nll[t] = x;
            argmax[t] = eng_argmax(r->logits, r->n_vocab);
        }
    }
    *mean = total / M;
    return 0;
}

/* Every phase of one run of one document. */
static int run_document(llama_runner *r, int doc, int run_index)
{
    const eval_sweep *sw = r->sw;
    const eval_run *run = &sw->runs[run_index];
    eval_results *res = r->res;
    const int M = sw->gen_tokens;
    const size_t at = (size_t)doc * res->n_runs + (size_t)run_index;
    if (run->policy == EVAL_FULL)
        snprintf(r->where, sizeof r->where, "%s, full cache", sw->docs[doc].name);
    else
        snprintf(r->where, sizeof r->where, "%s, %s at budget %g (seed %llu)",
                 sw->docs[doc].name, eval_policy_name(run->policy), run->budget,
                 (unsigned long long)run->seed);
    if (sw->rouge_tokens > 0 && generate(r, run, at))
        return -1;
    double mean;
    return teacher_forced(r, doc, run, r->sequence, res->nll + at * M, res->argmax + at * M,
                          &mean);
}

/* Recall sweeps: the full cache on the continue task, for the summary's
 * comparison of the two. */
static int continue_baseline(llama_runner *r, int doc)
{
    const eval_run full = {EVAL_FULL, 1.0, 0};
    snprintf(r->where, sizeof r->where, "%s, full-cache continue baseline",
             r->sw->docs[doc].name);
    return teacher_forced(r, doc, &full, r->continue_sequence, NULL, NULL,
                          &r->res->continue_full_nll[doc]);
}

static void task_sequence(eval_task task, const eval_doc *doc, int P, int M, int *scratch,
                          llama_token *out)
{
    eval_task_sequence(task, doc, P, M, scratch);
    for (int i = 0; i < P + M + 1; i++)
        out[i] = (llama_token)scratch[i];
}

static void report_document(const llama_runner *r, int doc, int done, double start)
{
    const eval_sweep *sw = r->sw;
    const double *nll = r->res->nll + (size_t)doc * r->res->n_runs * sw->gen_tokens;
    double full = 0.0;
    for (int t = 0; t < sw->gen_tokens; t++)
        full += nll[t];
    const double elapsed = now_s() - start;
    fprintf(stderr, "kf-eval-llama: [%d/%d] %s: full-cache NLL %.4f | %.0f s elapsed, ~%.0f s "
                    "left\n", done, sw->n_docs, sw->docs[doc].name, full / sw->gen_tokens,
            elapsed, elapsed / done * (sw->n_docs - done));
}

static struct llama_context *make_context(llama_runner *r)
{
    const eval_sweep *sw = r->sw;
    const eval_llama_settings *s = r->set;
    const int P = sw->prompt_tokens;
    const int longest = sw->gen_tokens > sw->rouge_tokens ? sw->gen_tokens : sw->rouge_tokens;
    struct llama_context_params cp = llama_context_default_params();
    /* the full cache holds every position; a policy at most P + 1 */
    cp.n_ctx = (uint32_t)(P + longest + 1);
    cp.n_batch = (uint32_t)P; /* the adapter takes the prompt in one llama_decode */
    const int ubatch = s->ubatch > 0 ? s->ubatch : 512;
    cp.n_ubatch = (uint32_t)(ubatch < P ? ubatch : P);
    cp.n_seq_max = 1;
    cp.n_threads = s->n_threads;
    cp.n_threads_batch = s->n_threads;
    cp.no_perf = true;
#if KF_LLAMA_HAVE_FLASH_ATTN_TYPE
    cp.flash_attn_type = s->flash_attn < 0 ? LLAMA_FLASH_ATTN_TYPE_AUTO
                         : s->flash_attn ? LLAMA_FLASH_ATTN_TYPE_ENABLED
                                         : LLAMA_FLASH_ATTN_TYPE_DISABLED;
#else
    cp.flash_attn = s->flash_attn > 0;
#endif
    if (s->cache_f32) {
        cp.type_k = GGML_TYPE_F32;
        cp.type_v = GGML_TYPE_F32;
    }
    cp.cb_eval = route_eval;
    cp.cb_eval_user_data = r;
    return llama_init_from_model(s->model, cp);
}

int eval_llama_sweep_run(const eval_sweep *sw, const eval_llama_settings *s, eval_results *res)
{
    const double start = now_s();
    *res = (eval_results){0};
    if (!s || !s->model || s->n_threads < 1 || sw->prompt_tokens < 2 || sw->gen_tokens < 1 ||
        sw->rouge_tokens < 0 || sw->n_runs < 1 || sw->runs[0].policy != EVAL_FULL ||
        sw->n_docs < 1 ||
        (int64_t)sw->prompt_tokens + sw->gen_tokens + sw->rouge_tokens + 1 > INT32_MAX / 2 ||
        (sw->task == EVAL_TASK_RECALL &&
         (int64_t)sw->prompt_tokens < (int64_t)EVAL_RECALL_OFFSET + sw->gen_tokens + 1)) {
        fprintf(stderr, "kf-eval-llama: bad sweep settings\n");
        return -1;
    }
    if (eval_results_create(res, sw, llama_model_n_layer(s->model)))
        return -1;
    const size_t length = (size_t)sw->prompt_tokens + (size_t)sw->gen_tokens + 1;
    llama_runner r = {.sw = sw, .set = s, .res = res};
    r.vocab = llama_model_get_vocab(s->model);
    r.n_vocab = llama_vocab_n_tokens(r.vocab);
    r.sequence = malloc(length * sizeof *r.sequence);
    r.continue_sequence = malloc(length * sizeof *r.continue_sequence);
    int *scratch = malloc(length * sizeof *scratch);
    r.batch = llama_batch_init(sw->prompt_tokens, 0, 1);
    int rc = 0;
    if (!r.sequence || !r.continue_sequence || !scratch || !r.batch.token) {
        fprintf(stderr, "kf-eval-llama: out of memory\n");
        rc = -1;
    } else if (!(r.ctx = make_context(&r))) {
        fprintf(stderr, "kf-eval-llama: llama.cpp could not create a context of %zu cells "
                        "and batches of %d tokens\n", length, sw->prompt_tokens);
        rc = -1;
    }
    for (int d = 0; d < sw->n_docs && rc == 0; d++) {
        const int P = sw->prompt_tokens, M = sw->gen_tokens;
        task_sequence(sw->task, &sw->docs[d], P, M, scratch, r.sequence);
        task_sequence(EVAL_TASK_CONTINUE, &sw->docs[d], P, M, scratch, r.continue_sequence);
        for (int run = 0; run < sw->n_runs && rc == 0; run++)
            rc = run_document(&r, d, run);
        if (rc == 0 && sw->task == EVAL_TASK_RECALL)
            rc = continue_baseline(&r, d);
        if (rc == 0 && sw->progress)
            report_document(&r, d, d + 1, start);
    }
    kf_llama_host_destroy(&r.host);
    if (r.ctx)
        llama_free(r.ctx);
    if (r.batch.token)
        llama_batch_free(r.batch);
    free(scratch);
    free(r.sequence);
    free(r.continue_sequence);
    res->elapsed_s = now_s() - start;
    if (rc)
        eval_results_free(res);
    return rc;
}
