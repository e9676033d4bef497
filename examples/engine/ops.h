/* Row-wise building blocks of the transformer, all on row-major fp32. */
#ifndef ENG_OPS_H
#define ENG_OPS_H

#include <stdbool.h>

/* The RoPE base and the RMSNorm epsilon the engine computes with; a
 * converter to another format writes the same values into its metadata. */
#define ENG_ROPE_THETA 10000.0f
#define ENG_RMS_EPSILON 1e-5f

/* out[r] = x[r] / rms(x[r]) * weight for n_rows rows of width dim; out may
 * alias x. */
void eng_rmsnorm_rows(float *out, const float *x, const float *weight, int n_rows,
                      int dim);

/* One product of a group that shares its input: out[n_rows][out_dim] =
 * (accumulate ? out : 0) + x · w^T, with w stored [out_dim][in_dim]. */
typedef struct eng_matmul {
    float *out;
    const float *w;
    int out_dim;
    bool accumulate;
} eng_matmul;

/* Runs every product of the group on x[n_rows][in_dim] in one OpenMP region:
 * each thread takes a contiguous share of every product's output columns and
 * calls single-threaded BLAS on it (sgemm for a block, sgemv for one row).
 * Grouping q/k/v and gate/up saves a fork-join per product, which matters
 * when a decode step is a few hundred microseconds. */
void eng_matmul_group(const float *x, int n_rows, int in_dim, const eng_matmul *products,
                      int n_products, int n_threads);

/* Makes OpenBLAS run in the calling thread. The engine parallelises with
 * OpenMP itself; a second pool of spinning BLAS threads on the same cores
 * slows decoding several times over. Affects the whole process. */
void eng_blas_use_caller_thread(void);

/* gate[i] = silu(gate[i]) * up[i]: the SwiGLU activation. */
void eng_swiglu(float *gate, const float *up, long n);

/* cos/sin tables [n_rows][head_size/2] for the positions first_position.. */
void eng_rope_tables(float *cos_table, float *sin_table, int first_position,
                     int n_rows, int head_size);

/* Rotates pairs (2i, 2i+1) of every head of every row in place: row r of x
 * starts at x + r * row_stride and holds n_heads heads of head_size. */
void eng_rope_rotate(float *x, int row_stride, int n_rows, int n_heads, int head_size,
                     const float *cos_table, const float *sin_table);

#endif
