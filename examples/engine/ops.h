/* Row-wise building blocks of the transformer, all on row-major fp32. */
#ifndef ENG_OPS_H
#define ENG_OPS_H

#include <stdbool.h>

/* out[r] = x[r] / rms(x[r]) * weight for n_rows rows of width dim; out may
 * alias x. */
void eng_rmsnorm_rows(float *out, const float *x, const float *weight, int n_rows,
                      int dim);

/* out[n_rows][out_dim] = (accumulate ? out : 0) + x[n_rows][in_dim] · w^T,
 * with w stored [out_dim][in_dim]. One BLAS call: sgemm for a block,
 * sgemv for a single row. */
void eng_matmul_rows(float *out, const float *x, const float *w, int n_rows,
                     int in_dim, int out_dim, bool accumulate);

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
