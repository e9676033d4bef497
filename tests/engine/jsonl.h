/* Just enough JSON to read the dev-set files: one flat object per line whose
 * values are strings, numbers or arrays of integers. */
#ifndef ENGINE_TEST_JSONL_H
#define ENGINE_TEST_JSONL_H

#include <stddef.h>

/* The string value of key, unescaped to UTF-8 (malloc'd, NUL-terminated,
 * length in *len), or NULL if absent or malformed. */
char *jsonl_string_field(const char *line, const char *key, size_t *len);

/* The integer-array value of key (malloc'd, count in *n), or NULL. */
int *jsonl_int_array_field(const char *line, const char *key, int *n);

#endif
