/* The kf-eval protocol on the example engine, one document at a time.
 *
 * Per document the prompt ids[0:P] is run once with full attention and
 * snapshotted; every policy, budget and seed then continues from that
 * snapshot. The engine has no state-copy call, so the snapshot is a
 * process: the parent prefills ids[0:P-1] (recording every prompt row's
 * attention logits) and fork()s one child per run (policy, budget, seed).
 * The child feeds the last prompt id ids[P-1] as a one-row call whose
 * per-layer hook hands the library the recorded rows and that last row (a
 * chunked prefill: the same scores and selection as one call), selects and
 * compacts; it then forks a grandchild for the G greedy tokens, waits for
 * it, and runs the M teacher-forced decode steps, so both start from the
 * same post-prompt state. Outputs go to a shared mapping. --threads runs
 * proceed at once, each single-threaded; the results do not depend on that
 * number.
 *
 * This relies on POSIX fork() and on the engine, OpenBLAS and OpenMP
 * running single-threaded in the parent (no thread pool to lose in the
 * child), which the runner enforces. */
#ifndef KF_EVAL_RUNNER_H
#define KF_EVAL_RUNNER_H

#include <stdbool.h>
#include <stdint.h>

#include <keyformer.h>

#include "docs.h"
#include "model.h"

/* Policies as kf-eval names them; EVAL_FULL runs without the library. */
enum { EVAL_FULL = -1 };

/* Offset of the passage the recall task repeats: ids[P:] := ids[64:]. */
enum { EVAL_RECALL_OFFSET = 64 };

typedef enum eval_task { EVAL_TASK_CONTINUE = 0, EVAL_TASK_RECALL = 1 } eval_task;

/* One configuration: a policy (kf_policy or EVAL_FULL), a budget fraction
 * and a seed. Run 0 of every sweep is the full cache. */
typedef struct eval_run {
    int policy;
    double budget;
    uint64_t seed;
} eval_run;

typedef struct eval_sweep {
    const eng_model *model;
    const eval_doc *docs; /* each with at least P + M + 1 ids */
    int n_docs;
    const eval_run *runs;
    int n_runs;
    int prompt_tokens; /* P >= 2 */
    int gen_tokens;    /* M >= 1: teacher-forced predictions */
    int rouge_tokens;  /* G >= 0: greedy tokens (0 = none) */
    eval_task task;
    /* Library settings shared by all runs (rule, granularity, recent
     * ratio, sinks, tau schedule); policy, budget, seed, shape, capacity
     * and threads are set per run. */
    kf_config library;
    int threads;       /* concurrent jobs, >= 1 */
    bool attention_mass; /* measure the prefill attention concentration */
    double mass_share;   /* e.g. 0.9 */
    bool progress;       /* one line per finished document on stderr */
} eval_sweep;

/* Outputs, indexed [doc][run][...]; all in one shared mapping. */
typedef struct eval_results {
    int n_docs, n_runs, n_steps, n_rouge, n_layers;
    double *nll;      /* [doc][run][M]: -ln p(target) per step */
    int *argmax;      /* [doc][run][M] */
    int *generated;   /* [doc][run][G] greedy ids (stops before EOS/BOS) */
    int *n_generated; /* [doc][run] */
    /* [doc][layer]: mean over heads and prompt rows of the fraction of the
     * row's visible tokens that carry mass_share of its attention mass. */
    double *mass_row;
    /* [doc][layer]: the same for the accumulated attention each prompt
     * token received (column sums over rows), mean over heads. */
    double *mass_accumulated;
    /* [doc]: full-cache mean NLL of the continue task (recall sweeps). */
    double *continue_full_nll;
    /* [doc]: full-cache mean NLL of the same M predictions the recall task
     * scores, ids[65 : 65 + M], at their first occurrence inside the prompt
     * (recall sweeps): recall below this means the model copies. */
    double *passage_first_nll;
    /* [doc][run][2]: the share of the passage's positions 64 .. 64 + M
     * (what the recall task repeats) that the library's cache holds,
     * over layers and KV heads: after the prompt's selection, and after
     * the last teacher-forced step; NaN for the full cache. What the
     * policy evicted, in the one place the recall task looks. */
    double *passage_kept;
    double elapsed_s;
    void *mapping;
    size_t mapping_size;
} eval_results;

/* Moves the model's weights from their read-only file mapping into
 * anonymous memory of the same size (transparent huge pages where the
 * kernel allows them) and repoints model->weights and model->mapping at it;
 * eng_model_close() releases it as before. Forked children then share the
 * parent's page tables instead of faulting every page of the file in again,
 * and streaming the weights takes fewer TLB misses. Returns 0, or -1 with
 * the model unchanged. */
int eval_model_to_anonymous_memory(eng_model *model);

/* Runs every job. Returns 0, or -1 after printing why to stderr. */
int eval_sweep_run(const eval_sweep *sweep, eval_results *results);

void eval_results_free(eval_results *results);

/* Allocates the outputs of a sweep for a model of n_layers layers (the
 * shared mapping eval_results_free releases), NaN or -1 where nothing is
 * written yet; for back ends other than the engine (kf-eval-llama), whose
 * sweep has no model. Returns 0, or -1 after printing why to stderr. */
int eval_results_create(eval_results *results, const eval_sweep *sweep, int n_layers);

/* The id sequence a document is scored on: the first P + M + 1 ids for
 * continue; ids[0:P] + ids[64 : 64 + M + 1] for recall. out holds
 * P + M + 1 ids. */
void eval_task_sequence(eval_task task, const eval_doc *doc, int prompt_tokens,
                        int gen_tokens, int *out);

#endif
