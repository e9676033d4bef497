/* Documents for kf-eval: JSON lines holding {"name": ..., "ids": [...]}
 * (reference token ids, BOS first) or {"name": ..., "text": ...} (tokenized
 * here with BOS first). Other keys are ignored. */
#ifndef KF_EVAL_DOCS_H
#define KF_EVAL_DOCS_H

#include <stddef.h>
#include <stdio.h>

#include "tokenizer.h"

typedef struct eval_doc {
    char *name;
    int *ids;
    int n_ids;
} eval_doc;

typedef struct eval_corpus {
    eval_doc *docs;
    int n_docs;
} eval_corpus;

/* The fields of one JSON object on one line. Each output may be NULL when
 * not wanted; strings are unescaped to UTF-8, NUL-terminated and malloc'd,
 * like the id array. A key that is absent leaves its output NULL.
 * Returns 0, or -1 if the line is not one well-formed JSON object or a
 * wanted field has the wrong type. */
int eval_json_doc_fields(const char *line, size_t len, char **name, char **text,
                         size_t *text_len, int **ids, int *n_ids);

/* Reads a .tokens.jsonl file (tok == NULL: every line needs "ids") or a
 * .jsonl text file (tok != NULL: every line needs "text", tokenized with a
 * leading BOS). Every line needs "name". On failure returns -1 with a
 * message in err and leaves *corpus empty. */
int eval_corpus_read(eval_corpus *corpus, const char *path, const eng_tokenizer *tok,
                     char *err, size_t err_size);

/* The same from an open stream (left open), name standing for it in
 * messages; fails once more than max_bytes were read (0: no limit), so a
 * file that grows while it is read cannot exhaust memory. */
int eval_corpus_read_stream(eval_corpus *corpus, FILE *f, const char *name, size_t max_bytes,
                            const eng_tokenizer *tok, char *err, size_t err_size);

/* A tokenizer for the "text" lines of eval_corpus_read_stream_with: the
 * len bytes of text into *ids (malloc'd) and *n_ids, as the model expects
 * its input to start (BOS first for llama models). Returns 0, or -1 with
 * err filled (the reader adds the file and line). */
typedef int (*eval_tokenize_fn)(void *user, const char *text, size_t len, int **ids,
                                int *n_ids, char *err, size_t err_size);

/* eval_corpus_read_stream with any tokenizer (kf-eval-llama tokenizes with
 * llama.cpp's): tokenize == NULL reads "ids", else every line needs "text",
 * handed to tokenize(user, ...). */
int eval_corpus_read_stream_with(eval_corpus *corpus, FILE *f, const char *name,
                                 size_t max_bytes, eval_tokenize_fn tokenize, void *user,
                                 char *err, size_t err_size);

void eval_corpus_free(eval_corpus *corpus);

#endif
