/* Copyright (c) 2026 the libkeyformer developers. BSD-2-Clause, see COPYING. */
/* kf-eval's protocol (examples/eval/runner.h, doc/quality.md) on a GGUF
 * model through llama.cpp, with the library driven by the adapter
 * (kf_llama_host.h) at uniform granularity, its only mode.
 *
 * The same sweep (documents, runs, P, M, G, task, library settings) and the
 * same results (eval_results, read by examples/eval/report.h) as the
 * engine's runner; only the way a run is computed differs:
 *
 * - The full cache (run 0) is llama.cpp alone: the prompt ids[0:P] in one
 *   llama_decode, then one token per step.
 * - A policy run gives the prompt to kf_llama_host_decode in one call (the
 *   adapter observes every prompt row, ubatch by ubatch, then selects down
 *   to k = floor(budget * P)), then one token per step, evicting back to k.
 * - llama.cpp has no cheap way to fork a context with the adapter's state,
 *   so the greedy continuation (G tokens) and the teacher-forced steps (M)
 *   each start from their own prefill of the same prompt: the same
 *   post-prompt state, computed twice.
 *
 * One context serves the whole sweep (its memory cleared between phases);
 * its eval callback forwards to the adapter of the run in progress, so each
 * run gets a fresh adapter without a new context. Runs go one at a time;
 * llama.cpp's own threads (n_threads) share each decode. */
#ifndef KF_EVAL_LLAMA_H
#define KF_EVAL_LLAMA_H

#include <stdbool.h>

#include <llama.h>

#include "eval/runner.h"

typedef struct eval_llama_settings {
    struct llama_model *model;
    int n_threads;  /* llama.cpp's threads for every decode, >= 1 */
    int ubatch;     /* llama.cpp's n_ubatch; 0: min(P, 512) */
    int flash_attn; /* -1 llama.cpp's choice, 0 off, 1 on */
    bool cache_f32; /* K and V cells in f32 (else llama.cpp's default f16) */
} eval_llama_settings;

/* Runs every document of sw (sw->model is unused: NULL) and fills res
 * (eval_results_free releases it). The sweep's attention_mass is not
 * measured here (the adapter does not expose attention rows). Returns 0, or
 * -1 after printing why to stderr, with res empty. */
int eval_llama_sweep_run(const eval_sweep *sw, const eval_llama_settings *settings,
                         eval_results *res);

#endif
