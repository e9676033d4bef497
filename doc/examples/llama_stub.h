/* Stand-ins with the signatures of llama.cpp's sequence-memory calls
 * (llama.h: llama_get_memory, llama_memory_seq_rm), so that the recipe in
 * doc/recipes.md compiles and runs here without llama.cpp. The bodies in
 * position_cells.c only model what the recipe relies on: a sequence's set
 * of positions, and removal of [p0, p1). */
#ifndef LLAMA_STUB_H
#define LLAMA_STUB_H

#include <stdbool.h>
#include <stdint.h>

typedef int32_t llama_pos;
typedef int32_t llama_seq_id;
typedef struct llama_memory_i *llama_memory_t;
struct llama_context;

llama_memory_t llama_get_memory(const struct llama_context *ctx);

/* Removes the sequence's tokens with positions in [p0, p1); p0 < 0 means
 * 0, p1 < 0 means no upper end. False if the memory cannot remove part of
 * a sequence (recurrent models). */
bool llama_memory_seq_rm(llama_memory_t mem, llama_seq_id seq_id,
                         llama_pos p0, llama_pos p1);

#endif
