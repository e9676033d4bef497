/* MAP_ANONYMOUS is not in POSIX.1-2008, which the build asks for. */
#define _DEFAULT_SOURCE
#include "runner.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine_keyformer.h"
#include "forward.h"
#include "metrics.h"
#include "sampler.h"
#include "tokenizer.h"

#if !defined(MAP_ANONYMOUS) && defined(MAP_ANON)
#define MAP_ANONYMOUS MAP_ANON
#endif

typedef enum job_kind {
    /* One run: finish the prompt, fork the greedy generation (G tokens)
     * from the post-prompt state, then the M teacher-forced steps. */
    JOB_RUN,
    JOB_CONTINUE_FULL /* recall sweeps: the full cache on the continue task */
} job_kind;

typedef struct job {
    int doc, run;
    job_kind kind;
} job;

typedef struct runner {
    const eval_sweep *sw;
    eval_results *res;
    eng_state *state;
    float *logits;        /* [vocab] output of the last call */
    float *passage_logits; /* recall: [P - 1 - 64][vocab], prompt rows 64 .. P-2 */
    /* Attention logits of prompt rows 0 .. P-2, [layer][head][row][P-1],
     * row i valid in columns 0 .. i. */
    float *prompt_logits;
    size_t prompt_rows;   /* P - 1 */
    int *sequence;        /* the task's P + M + 1 ids of the current doc */
    int *continue_sequence;
    double *row_weights;  /* [P] scratch for the attention-mass measure */
    double *column_mass;  /* [P] */
    const float **row_pointers; /* [P] */
    int doc;
    engine_keyformer glue; /* children only */
} runner;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int eval_model_to_anonymous_memory(eng_model *m)
{
    /* Every pointer into the mapping is rebased below. */
    _Static_assert(sizeof(eng_model_weights) == 12 * sizeof(const float *),
                   "eng_model_weights changed: rebase its new pointers too");
    const size_t size = m->mapping_size, huge = (size_t)2 << 20;
    if (!m->mapping || size == 0)
        return -1;
    /* Over-allocate to start on a 2 MiB boundary, then trim the slack. */
    char *base = mmap(NULL, size + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                      -1, 0);
    if (base == MAP_FAILED)
        return -1;
    char *copy = base + (huge - (uintptr_t)base % huge) % huge;
    if (copy > base)
        munmap(base, (size_t)(copy - base));
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    char *const end = base + size + huge, *const keep_end = copy + (size + page - 1) / page * page;
    if (end > keep_end)
        munmap(keep_end, (size_t)(end - keep_end));
#ifdef MADV_HUGEPAGE
    madvise(copy, size, MADV_HUGEPAGE);
#endif
    memcpy(copy, m->mapping, size);
    mprotect(copy, size, PROT_READ);
    const char *old = m->mapping;
    const float **fields[] = {
        &m->weights.token_embedding, &m->weights.rms_att, &m->weights.wq, &m->weights.wk,
        &m->weights.wv, &m->weights.wo, &m->weights.rms_ffn, &m->weights.w1,
        &m->weights.w2, &m->weights.w3, &m->weights.rms_final, &m->weights.wcls,
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        *fields[i] = (const float *)(copy + ((const char *)*fields[i] - old));
    munmap(m->mapping, size);
    m->mapping = copy;
    return 0;
}

void eval_task_sequence(eval_task task, const eval_doc *doc, int prompt_tokens,
                        int gen_tokens, int *out)
{
    const int tail = gen_tokens + 1;
    memcpy(out, doc->ids, (size_t)prompt_tokens * sizeof *out);
    const int from = task == EVAL_TASK_RECALL ? EVAL_RECALL_OFFSET : prompt_tokens;
    memcpy(out + prompt_tokens, doc->ids + from, (size_t)tail * sizeof *out);
}

/* ---- sizes: the model's shape and the counts are untrusted ---- */

/* a * b * c, or false when it overflows size_t. */
static bool product(size_t *out, size_t a, size_t b, size_t c)
{
    return !__builtin_mul_overflow(a, b, out) && !__builtin_mul_overflow(*out, c, out);
}

/* A multiple of 64 bytes holding a * b * c elements of element_size
 * (rounded so that the next block stays aligned), added to *total; false
 * when any of it overflows. */
static bool add_block(size_t *total, size_t *block, size_t a, size_t b, size_t c,
                      size_t element_size)
{
    size_t bytes;
    if (!product(&bytes, a, b, c) || __builtin_mul_overflow(bytes, element_size, &bytes) ||
        bytes > SIZE_MAX - 63)
        return false;
    *block = (bytes + 63) / 64 * 64;
    return !__builtin_add_overflow(*total, *block, total);
}

/* ---- results in one shared mapping ---- */

int eval_results_create(eval_results *res, const eval_sweep *sw, int n_layers)
{
    *res = (eval_results){
        .n_docs = sw->n_docs, .n_runs = sw->n_runs, .n_steps = sw->gen_tokens,
        .n_rouge = sw->rouge_tokens, .n_layers = n_layers,
    };
    const size_t docs = (size_t)sw->n_docs, runs = (size_t)sw->n_runs;
    const size_t steps = (size_t)res->n_steps, layers = (size_t)res->n_layers;
    const size_t rouge = (size_t)(res->n_rouge > 0 ? res->n_rouge : 1);
    const size_t per_run = docs * runs; /* both below 2^31 */
    size_t sizes[9], total = 0;
    if (!add_block(&total, &sizes[0], docs, runs, steps, sizeof(double)) ||
        !add_block(&total, &sizes[1], docs, runs, steps, sizeof(int)) ||
        !add_block(&total, &sizes[2], docs, runs, rouge, sizeof(int)) ||
        !add_block(&total, &sizes[3], docs, runs, 1, sizeof(int)) ||
        !add_block(&total, &sizes[4], docs, layers, 1, sizeof(double)) ||
        !add_block(&total, &sizes[5], docs, layers, 1, sizeof(double)) ||
        !add_block(&total, &sizes[6], docs, 1, 1, sizeof(double)) ||
        !add_block(&total, &sizes[7], docs, 1, 1, sizeof(double)) ||
        !add_block(&total, &sizes[8], docs, runs, 2, sizeof(double))) {
        fprintf(stderr, "kf-eval: the results of %zu documents x %zu runs x %zu steps do not "
                        "fit in memory\n", docs, runs, steps);
        return -1;
    }
    void *map = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) {
        fprintf(stderr, "kf-eval: cannot map %zu bytes for the results: %s\n", total,
                strerror(errno));
        return -1;
    }
    char *p = map;
    res->nll = (double *)p, p += sizes[0];
    res->argmax = (int *)p, p += sizes[1];
    res->generated = (int *)p, p += sizes[2];
    res->n_generated = (int *)p, p += sizes[3];
    res->mass_row = (double *)p, p += sizes[4];
    res->mass_accumulated = (double *)p, p += sizes[5];
    res->continue_full_nll = (double *)p, p += sizes[6];
    res->passage_first_nll = (double *)p, p += sizes[7];
    res->passage_kept = (double *)p;
    /* NaN marks what no job wrote. */
    for (size_t i = 0; i < per_run * (size_t)res->n_steps; i++)
        res->nll[i] = NAN;
    for (size_t i = 0; i < (size_t)sw->n_docs * (size_t)res->n_layers; i++)
        res->mass_row[i] = res->mass_accumulated[i] = NAN;
    for (int d = 0; d < sw->n_docs; d++)
        res->continue_full_nll[d] = res->passage_first_nll[d] = NAN;
    for (size_t i = 0; i < per_run; i++) {
        res->n_generated[i] = -1;
        res->passage_kept[2 * i] = res->passage_kept[2 * i + 1] = NAN;
    }
    res->mapping = map;
    res->mapping_size = total;
    return 0;
}

void eval_results_free(eval_results *res)
{
    if (res->mapping)
        munmap(res->mapping, res->mapping_size);
    *res = (eval_results){0};
}

/* ---- hooks ---- */

/* Parent, prompt rows 0 .. P-2: keeps every slot and copies the logits. */
static int record_prompt(void *user, const eng_layer_event *e)
{
    runner *r = user;
    const size_t n = r->prompt_rows;
    float *layer = r->prompt_logits + (size_t)e->layer * (size_t)e->n_heads * n * n;
    const int first = e->n_slots - e->n_rows;
    for (int h = 0; h < e->n_heads; h++)
        for (int i = 0; i < e->n_rows; i++) {
            const size_t row = (size_t)(first + i);
            const float *src = e->logits + ((size_t)h * e->n_rows + i) * e->n_slots;
            memcpy(layer + ((size_t)h * n + row) * n, src, (row + 1) * sizeof *src);
        }
    return e->n_slots;
}

static const float *recorded_layer(const runner *r, int layer)
{
    const size_t n = r->prompt_rows;
    return r->prompt_logits + (size_t)layer * (size_t)r->sw->model->config.n_heads * n * n;
}

/* Child, last prompt row: the library sees rows 0 .. P-2 from the
 * recording, then this row through the glue, which selects and compacts. */
static int finish_prompt_with_library(void *user, const eng_layer_event *e)
{
    runner *r = user;
    const uint32_t n = (uint32_t)r->prompt_rows;
    const kf_logits_view recorded = {
        .data = recorded_layer(r, e->layer), .n_rows = n, .n_slots = n,
        .row_stride = n, .head_stride = (size_t)n * n, .flags = KF_LOGITS_CAUSAL,
    };
    const int rc = kf_observe_logits(r->glue.cache, e->layer, &recorded);
    if (rc != KF_OK) {
        r->glue.failed_status = rc;
        r->glue.failed_call = "kf_observe_logits (recorded prompt rows)";
        r->glue.failed_layer = e->layer;
        return -1;
    }
    return engine_keyformer_hook(&r->glue, e);
}

/* Child, last prompt row of the full cache: the attention-mass measure of
 * the layer over all P prompt rows (rows 0 .. P-2 recorded, P-1 live). */
static int finish_prompt_with_mass(void *user, const eng_layer_event *e)
{
    runner *r = user;
    const int P = (int)r->prompt_rows + 1, H = e->n_heads;
    const float *recorded = recorded_layer(r, e->layer);
    double row_mean = 0.0, accumulated = 0.0;
    for (int h = 0; h < H; h++) {
        for (int i = 0; i < P - 1; i++)
            r->row_pointers[i] = recorded + ((size_t)h * (P - 1) + i) * (P - 1);
        r->row_pointers[P - 1] = e->logits + (size_t)h * e->n_slots;
        double row, acc;
        eval_head_mass(r->row_pointers, P, r->sw->mass_share, r->row_weights, r->column_mass,
                       &row, &acc);
        row_mean += row / H;
        accumulated += acc / H;
    }
    const size_t at = (size_t)r->doc * r->res->n_layers + e->layer;
    r->res->mass_row[at] = row_mean;
    r->res->mass_accumulated[at] = accumulated;
    return e->n_slots;
}

/* ---- one job, in a child process ---- */

static int forward(runner *r, int token, eng_error *err)
{
    const int rc = eng_forward(r->state, &token, 1, r->logits, 1, err);
    if (rc == ENG_EHOOK && r->glue.failed_call)
        return eng_fail(err, rc, "%s failed on layer %d: %s", r->glue.failed_call,
                        r->glue.failed_layer, kf_strerror(r->glue.failed_status));
    return rc;
}

/* Slots a decode step may hold above k: the eviction interval B, >= 1. */
static uint32_t eviction_slack(const kf_config *library)
{
    return library->evict_interval > 1 ? library->evict_interval : 1;
}

static int create_library_cache(runner *r, const eval_run *run, eng_error *err)
{
    const eng_model_config *c = &r->sw->model->config;
    kf_config cfg = r->sw->library;
    cfg.n_layers = (uint32_t)c->n_layers;
    cfg.n_heads = (uint32_t)c->n_heads;
    cfg.n_kv_heads = (uint32_t)c->n_kv_heads;
    cfg.head_dim = (uint32_t)c->head_size;
    /* the prompt, or k + B (B = the eviction interval, 1 by default) */
    cfg.capacity = (uint32_t)r->sw->prompt_tokens + eviction_slack(&r->sw->library);
    /* eval_sweep_run checked that the engine's larger capacity fits an int */
    cfg.policy = (kf_policy)run->policy;
    cfg.budget_tokens = 0;
    cfg.budget_ratio = run->budget;
    cfg.seed = run->seed;
    cfg.n_threads = 1;
    const int rc = kf_cache_create(&r->glue.cache, &cfg);
    return rc == KF_OK ? ENG_OK
                       : eng_fail(err, ENG_EINVAL, "kf_cache_create: %s", kf_strerror(rc));
}

/* G greedy tokens from the current state; r->logits holds the output of
 * the last prompt id. Stops before EOS or BOS, like kf-generate. */
static int generate(runner *r, size_t at, eng_error *err)
{
    const int G = r->sw->rouge_tokens, V = r->sw->model->config.vocab_size;
    int *out = r->res->generated + at * (size_t)G, n = 0, rc = ENG_OK;
    int token = eng_argmax(r->logits, V);
    while (n < G && token != ENG_TOKEN_EOS && token != ENG_TOKEN_BOS) {
        out[n++] = token;
        if (n == G)
            break;
        if ((rc = forward(r, token, err)))
            return rc;
        token = eng_argmax(r->logits, V);
    }
    r->res->n_generated[at] = n;
    return ENG_OK;
}

/* The generation in a child of this job's process, so that the
 * teacher-forced steps start from the same post-prompt state; waits for
 * it, so a job never takes more than one core. */
static int generate_in_child(runner *r, size_t at, eng_error *err)
{
    fflush(stderr);
    const pid_t pid = fork();
    if (pid < 0)
        return eng_fail(err, ENG_ENOMEM, "fork: %s", strerror(errno));
    if (pid == 0) {
        const int rc = generate(r, at, err);
        if (rc != ENG_OK)
            fprintf(stderr, "kf-eval: greedy generation: %s: %s\n", eng_status_name(rc),
                    err->message);
        _exit(rc == ENG_OK ? 0 : 1);
    }
    int status;
    pid_t got;
    do
        got = waitpid(pid, &status, 0);
    while (got < 0 && errno == EINTR);
    if (got != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return eng_fail(err, ENG_EINVAL, "the greedy generation failed");
    return ENG_OK;
}

/* The share of positions 64 .. 64 + M held by the library's cache over
 * every layer and KV head (holes of per-head budgets do not count). */
static double passage_share(const runner *r)
{
    const eng_model_config *c = &r->sw->model->config;
    const int32_t from = EVAL_RECALL_OFFSET, to = from + r->sw->gen_tokens + 1;
    size_t held = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int g = 0; g < c->n_kv_heads; g++) {
            const int32_t *pos;
            uint32_t n;
            if (kf_slot_positions(r->glue.cache, l, g, &pos, &n) != KF_OK)
                return NAN;
            for (uint32_t i = 0; i < n; i++)
                held += pos[i] >= from && pos[i] < to;
        }
    return (double)held / ((double)(to - from) * c->n_layers * c->n_kv_heads);
}

static int run_job(runner *r, const job *j, eng_error *err)
{
    const eval_sweep *sw = r->sw;
    const eval_run *run = &sw->runs[j->run];
    eval_results *res = r->res;
    const int P = sw->prompt_tokens, M = sw->gen_tokens, V = sw->model->config.vocab_size;
    const bool library = run->policy != EVAL_FULL && j->kind == JOB_RUN;
    eng_layer_hook finish_prompt = NULL;
    int rc;
    if (library) {
        if ((rc = create_library_cache(r, run, err)))
            return rc;
        finish_prompt = finish_prompt_with_library;
    } else if (sw->attention_mass && j->run == 0 && j->kind == JOB_RUN) {
        finish_prompt = finish_prompt_with_mass;
    }
    const int *sequence = j->kind == JOB_CONTINUE_FULL ? r->continue_sequence : r->sequence;
    eng_state_set_hook(r->state, finish_prompt, r);
    if ((rc = forward(r, sequence[P - 1], err)))
        return rc;
    eng_state_set_hook(r->state, library ? engine_keyformer_hook : NULL, &r->glue);

    const size_t at = (size_t)j->doc * res->n_runs + (size_t)j->run;
    if (library)
        res->passage_kept[2 * at] = passage_share(r);
    if (j->kind == JOB_RUN && sw->rouge_tokens > 0 && (rc = generate_in_child(r, at, err)))
        return rc;
    double total = 0.0;
    for (int t = 0; t < M; t++) {
        if ((rc = forward(r, sequence[P + t], err)))
            return rc;
        const double nll = eval_nll(r->logits, V, sequence[P + t + 1]);
        total += nll;
        if (j->kind == JOB_RUN) {
            res->nll[at * M + t] = nll;
            res->argmax[at * M + t] = eng_argmax(r->logits, V);
        }
    }
    if (j->kind == JOB_CONTINUE_FULL)
        res->continue_full_nll[j->doc] = total / M;
    if (library)
        res->passage_kept[2 * at + 1] = passage_share(r);
    return ENG_OK;
}

static const char *job_name(const job *j)
{
    return j->kind == JOB_CONTINUE_FULL ? "full-cache continue baseline" : "run";
}

/* ---- scheduling: the parent ---- */

typedef struct running_job {
    pid_t pid;
    job job;
} running_job;

typedef struct scheduler {
    runner *r;
    running_job *running;
    int n_running;
    int *jobs_left;  /* [doc] */
    int docs_done;
    long jobs_total, jobs_done;
    double start;
} scheduler;

static void report_document(scheduler *s, int doc)
{
    const eval_sweep *sw = s->r->sw;
    s->docs_done++;
    if (!sw->progress)
        return;
    const double elapsed = now_s() - s->start;
    const double left = elapsed * (double)(s->jobs_total - s->jobs_done) /
                        (double)(s->jobs_done > 0 ? s->jobs_done : 1);
    double full = 0.0;
    const double *nll = s->r->res->nll + (size_t)doc * s->r->res->n_runs * sw->gen_tokens;
    for (int t = 0; t < sw->gen_tokens; t++)
        full += nll[t];
    fprintf(stderr, "kf-eval: [%d/%d] %s: full-cache NLL %.4f | %.0f s elapsed, ~%.0f s left\n",
            s->docs_done, sw->n_docs, sw->docs[doc].name, full / sw->gen_tokens, elapsed, left);
}

/* Waits for one child. Returns 0, or -1 if it failed. */
static int reap_one(scheduler *s)
{
    int status;
    pid_t pid;
    do
        pid = waitpid(-1, &status, 0);
    while (pid < 0 && errno == EINTR);
    if (pid < 0) {
        fprintf(stderr, "kf-eval: waitpid: %s\n", strerror(errno));
        return -1;
    }
    int k = 0;
    while (k < s->n_running && s->running[k].pid != pid)
        k++;
    if (k == s->n_running)
        return 0; /* not one of the jobs */
    const job j = s->running[k].job;
    s->running[k] = s->running[--s->n_running];
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        const eval_run *run = &s->r->sw->runs[j.run];
        fprintf(stderr, "kf-eval: %s of %s, run %d (budget %g, seed %llu) failed (%s %d)\n",
                job_name(&j), s->r->sw->docs[j.doc].name, j.run, run->budget,
                (unsigned long long)run->seed,
                WIFEXITED(status) ? "exit status" : "signal",
                WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
        return -1;
    }
    s->jobs_done++;
    if (--s->jobs_left[j.doc] == 0)
        report_document(s, j.doc);
    return 0;
}

/* Stops the jobs still running (only our own children, by pid). */
static void abort_jobs(scheduler *s)
{
    for (int k = 0; k < s->n_running; k++)
        kill(s->running[k].pid, SIGTERM);
    for (int k = 0; k < s->n_running; k++)
        waitpid(s->running[k].pid, NULL, 0);
    s->n_running = 0;
}

static int wait_until_fewer_than(scheduler *s, int n)
{
    while (s->n_running >= n && s->n_running > 0)
        if (reap_one(s))
            return -1;
    return 0;
}

static int start_job(scheduler *s, const job *j)
{
    fflush(stdout);
    fflush(stderr);
    const pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "kf-eval: fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        runner *r = s->r;
        eng_error err = {{0}};
        const int rc = run_job(r, j, &err);
        if (rc != ENG_OK)
            fprintf(stderr, "kf-eval: %s of %s: %s: %s\n", job_name(j), r->sw->docs[j->doc].name,
                    eng_status_name(rc), err.message);
        kf_cache_destroy(&r->glue.cache);
        _exit(rc == ENG_OK ? 0 : 1);
    }
    s->running[s->n_running++] = (running_job){pid, *j};
    return 0;
}

static int prefill(runner *r, int doc, eng_error *err)
{
    const eval_sweep *sw = r->sw;
    const int P = sw->prompt_tokens, M = sw->gen_tokens, V = sw->model->config.vocab_size;
    r->doc = doc;
    eval_task_sequence(sw->task, &sw->docs[doc], P, M, r->sequence);
    eval_task_sequence(EVAL_TASK_CONTINUE, &sw->docs[doc], P, M, r->continue_sequence);
    eng_state_reset(r->state);
    eng_state_set_hook(r->state, record_prompt, r);
    /* recall: also the outputs of prompt rows 64 .. P-2, which predict the
     * repeated passage at its first occurrence */
    const int rows = sw->task == EVAL_TASK_RECALL ? P - 1 - EVAL_RECALL_OFFSET : 0;
    const int rc = eng_forward(r->state, r->sequence, P - 1, r->passage_logits, rows, err);
    if (rc == ENG_OK && rows > 0) {
        double total = 0.0;
        for (int t = 0; t < M; t++)
            total += eval_nll(r->passage_logits + (size_t)t * V, V,
                              r->sequence[EVAL_RECALL_OFFSET + t + 1]);
        r->res->passage_first_nll[doc] = total / M;
    }
    return rc;
}

static int jobs_of_document(const eval_sweep *sw, int doc, job *out)
{
    int n = 0;
    for (int run = 0; run < sw->n_runs; run++) {
        out[n++] = (job){doc, run, JOB_RUN};
    }
    if (sw->task == EVAL_TASK_RECALL)
        out[n++] = (job){doc, 0, JOB_CONTINUE_FULL};
    return n;
}

static int schedule(scheduler *s)
{
    const eval_sweep *sw = s->r->sw;
    job *jobs = malloc(((size_t)sw->n_runs + 1) * sizeof *jobs);
    if (!jobs)
        return -1;
    int rc = 0;
    for (int doc = 0; doc < sw->n_docs && rc == 0; doc++) {
        /* The prefill takes one of the cores, like a job. */
        if ((rc = wait_until_fewer_than(s, sw->threads)))
            break;
        eng_error err = {{0}};
        if (prefill(s->r, doc, &err) != ENG_OK) {
            fprintf(stderr, "kf-eval: prefill of %s: %s\n", sw->docs[doc].name, err.message);
            rc = -1;
            break;
        }
        const int n = jobs_of_document(sw, doc, jobs);
        s->jobs_left[doc] = n;
        for (int k = 0; k < n && rc == 0; k++)
            if ((rc = wait_until_fewer_than(s, sw->threads)) == 0)
                rc = start_job(s, &jobs[k]);
    }
    if (rc == 0)
        rc = wait_until_fewer_than(s, 1);
    if (rc)
        abort_jobs(s);
    free(jobs);
    return rc;
}

/* The engine's slots per layer: the prompt, the longer of the teacher-forced
 * and greedy continuations, and the eviction slack; 0 if it exceeds an int. */
static int sweep_kv_capacity(const eval_sweep *sw)
{
    const uint64_t extra = (uint64_t)(sw->gen_tokens > sw->rouge_tokens ? sw->gen_tokens
                                                                        : sw->rouge_tokens);
    const uint64_t capacity = (uint64_t)sw->prompt_tokens + extra +
                              eviction_slack(&sw->library);
    return capacity <= INT_MAX ? (int)capacity : 0;
}

/* Allocates the runner's buffers; 0, or -1 after saying which one does
 * not fit, with its size. */
static int allocate_runner(runner *r, const eval_sweep *sw)
{
    const eng_model_config *c = &sw->model->config;
    const size_t P = (size_t)sw->prompt_tokens, n = r->prompt_rows;
    const size_t sequence = P + (size_t)sw->gen_tokens + 1; /* both below 2^21 */
    size_t record, per_layer, passage = 0, logits;
    const bool sizes_fit =
        product(&per_layer, (size_t)c->n_heads, n, n) &&
        product(&record, (size_t)c->n_layers, per_layer, sizeof(float)) &&
        product(&logits, (size_t)c->vocab_size, sizeof(float), 1) &&
        (sw->task != EVAL_TASK_RECALL ||
         product(&passage, P - 1 - EVAL_RECALL_OFFSET, (size_t)c->vocab_size, sizeof(float)));
    if (!sizes_fit) {
        fprintf(stderr, "kf-eval: the attention record of a %zu-id prompt (%d layers x %d heads "
                        "x %zu x %zu floats) does not fit in memory: lower --prompt-tokens\n",
                P, c->n_layers, c->n_heads, n, n);
        return -1;
    }
    r->prompt_logits = malloc(record ? record : 1);
    if (!r->prompt_logits) {
        fprintf(stderr, "kf-eval: out of memory for the %zu-byte attention record of a %zu-id "
                        "prompt (%d layers x %d heads x %zu x %zu floats): lower "
                        "--prompt-tokens\n", record, P, c->n_layers, c->n_heads, n, n);
        return -1;
    }
    r->logits = malloc(logits);
    if (sw->task == EVAL_TASK_RECALL)
        r->passage_logits = malloc(passage ? passage : 1);
    r->sequence = malloc(sequence * sizeof *r->sequence);
    r->continue_sequence = malloc(sequence * sizeof *r->continue_sequence);
    r->row_weights = malloc(P * sizeof(double));
    r->column_mass = malloc(P * sizeof(double));
    r->row_pointers = malloc(P * sizeof *r->row_pointers);
    if (!r->logits || (sw->task == EVAL_TASK_RECALL && !r->passage_logits) || !r->sequence ||
        !r->continue_sequence || !r->row_weights || !r->column_mass || !r->row_pointers) {
        fprintf(stderr, "kf-eval: out of memory\n");
        return -1;
    }
    return 0;
}

static void free_runner(runner *r)
{
    free(r->logits), free(r->passage_logits), free(r->prompt_logits);
    free(r->sequence), free(r->continue_sequence);
    free(r->row_weights), free(r->column_mass), free(r->row_pointers);
    eng_state_destroy(&r->state);
}

int eval_sweep_run(const eval_sweep *sw, eval_results *res)
{
    const double start = now_s();
    const int kv_capacity = sweep_kv_capacity(sw);
    if (sw->prompt_tokens < 2 || sw->gen_tokens < 1 || sw->rouge_tokens < 0 ||
        sw->threads < 1 || sw->n_runs < 1 || sw->runs[0].policy != EVAL_FULL ||
        (sw->task == EVAL_TASK_RECALL &&
         (int64_t)sw->prompt_tokens < (int64_t)EVAL_RECALL_OFFSET + sw->gen_tokens + 1)) {
        fprintf(stderr, "kf-eval: bad sweep settings\n");
        return -1;
    }
    if (kv_capacity == 0) {
        fprintf(stderr, "kf-eval: %d prompt ids, %d more tokens and an eviction interval of %u "
                        "need more KV slots than the engine can index\n",
                sw->prompt_tokens, sw->gen_tokens > sw->rouge_tokens ? sw->gen_tokens
                                                                     : sw->rouge_tokens,
                eviction_slack(&sw->library));
        return -1;
    }
    if (eval_results_create(res, sw, sw->model->config.n_layers))
        return -1;
    runner r = {.sw = sw, .res = res, .prompt_rows = (size_t)sw->prompt_tokens - 1};
    const eng_state_options options = {.kv_capacity = kv_capacity, .n_threads = 1};
    eng_error err = {{0}};
    int rc = eng_state_create(&r.state, sw->model, &options, &err);
    if (rc != ENG_OK)
        fprintf(stderr, "kf-eval: %s\n", err.message);
    else if (allocate_runner(&r, sw))
        rc = -1;
    scheduler s = {
        .r = &r,
        .running = malloc((size_t)sw->threads * sizeof *s.running),
        .jobs_left = calloc((size_t)sw->n_docs, sizeof *s.jobs_left),
        .jobs_total = (long)sw->n_docs * (sw->n_runs + (sw->task == EVAL_TASK_RECALL)),
        .start = start,
    };
    if (rc == ENG_OK && (!s.running || !s.jobs_left)) {
        fprintf(stderr, "kf-eval: out of memory\n");
        rc = -1;
    }
    if (rc == ENG_OK)
        rc = schedule(&s);
    res->elapsed_s = now_s() - start;
    free(s.running), free(s.jobs_left);
    free_runner(&r);
    if (rc != 0)
        eval_results_free(res);
    return rc == 0 ? 0 : -1;
}
