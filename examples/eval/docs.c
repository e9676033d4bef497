#include "docs.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a scanner for one line of JSON ---- */

typedef struct scanner {
    const char *p, *end;
} scanner;

static void skip_space(scanner *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static bool take(scanner *s, char c)
{
    skip_space(s);
    if (s->p < s->end && *s->p == c) {
        s->p++;
        return true;
    }
    return false;
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Four hex digits after "\u"; -1 if malformed. */
static long read_u16(scanner *s)
{
    if (s->end - s->p < 4)
        return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        const int d = hex_digit(s->p[i]);
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    s->p += 4;
    return v;
}

static size_t put_utf8(char *out, unsigned long cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A string at the cursor. With out != NULL, stores the unescaped bytes
 * (malloc'd, NUL-terminated). Every escape shrinks or keeps the length
 * (\uXXXX: 6 bytes -> at most 3; a surrogate pair: 12 -> 4), so the raw
 * length bounds the output. */
static int read_string(scanner *s, char **out, size_t *out_len)
{
    if (!take(s, '"'))
        return -1;
    const char *start = s->p;
    while (s->p < s->end && *s->p != '"')
        s->p += *s->p == '\\' && s->p + 1 < s->end ? 2 : 1;
    if (s->p >= s->end)
        return -1;
    const char *stop = s->p++;
    if (!out)
        return 0;
    char *text = malloc((size_t)(stop - start) + 1);
    if (!text)
        return -1;
    size_t n = 0;
    scanner in = {start, stop};
    while (in.p < in.end) {
        const char c = *in.p++;
        if ((unsigned char)c < 0x20)
            goto bad; /* control characters must be escaped */
        if (c != '\\') {
            text[n++] = c;
            continue;
        }
        const char e = *in.p++;
        switch (e) {
        case '"': text[n++] = '"'; break;
        case '\\': text[n++] = '\\'; break;
        case '/': text[n++] = '/'; break;
        case 'b': text[n++] = '\b'; break;
        case 'f': text[n++] = '\f'; break;
        case 'n': text[n++] = '\n'; break;
        case 'r': text[n++] = '\r'; break;
        case 't': text[n++] = '\t'; break;
        case 'u': {
            long cp = read_u16(&in);
            if (cp < 0)
                goto bad;
            if (cp >= 0xD800 && cp <= 0xDBFF) { /* high surrogate: a low one must follow */
                if (in.end - in.p < 6 || in.p[0] != '\\' || in.p[1] != 'u')
                    goto bad;
                in.p += 2;
                const long low = read_u16(&in);
                if (low < 0xDC00 || low > 0xDFFF)
                    goto bad;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                goto bad;
            }
            n += put_utf8(text + n, (unsigned long)cp);
            break;
        }
        default:
            goto bad;
        }
    }
    text[n] = '\0';
    *out = text;
    if (out_len)
        *out_len = n;
    return 0;
bad:
    free(text);
    return -1;
}

static int read_int(scanner *s, int *out)
{
    skip_space(s);
    char buffer[32];
    size_t n = 0;
    while (s->p + n < s->end && n < sizeof buffer - 1 &&
           (s->p[n] == '-' || (s->p[n] >= '0' && s->p[n] <= '9')))
        n++;
    if (n == 0 || n == sizeof buffer - 1)
        return -1;
    memcpy(buffer, s->p, n);
    buffer[n] = '\0';
    char *stop;
    errno = 0;
    const long v = strtol(buffer, &stop, 10);
    if (errno || *stop || v < INT_MIN || v > INT_MAX)
        return -1;
    s->p += n;
    *out = (int)v;
    return 0;
}

static int read_int_array(scanner *s, int **out, int *count)
{
    if (!take(s, '['))
        return -1;
    int n = 0, capacity = 0;
    int *values = NULL;
    if (!take(s, ']')) {
        do {
            int v;
            if (read_int(s, &v))
                goto bad;
            if (n == capacity) {
                if (capacity > INT_MAX / 2)
                    goto bad; /* more ids than an int counts */
                capacity = capacity ? capacity * 2 : 1024;
                int *bigger = realloc(values, (size_t)capacity * sizeof *values);
                if (!bigger)
                    goto bad;
                values = bigger;
            }
            values[n++] = v;
        } while (take(s, ','));
        if (!take(s, ']'))
            goto bad;
    }
    *out = values ? values : malloc(sizeof *values);
    *count = n;
    return *out ? 0 : -1;
bad:
    free(values);
    return -1;
}

/* Skips any JSON value (nesting bounded to keep the stack small). */
static int skip_value(scanner *s, int depth)
{
    skip_space(s);
    if (s->p >= s->end || depth > 64)
        return -1;
    const char c = *s->p;
    if (c == '"')
        return read_string(s, NULL, NULL);
    if (c == '[' || c == '{') {
        const char close = c == '[' ? ']' : '}';
        s->p++;
        if (take(s, close))
            return 0;
        do {
            if (c == '{' && (read_string(s, NULL, NULL) || !take(s, ':')))
                return -1;
            if (skip_value(s, depth + 1))
                return -1;
        } while (take(s, ','));
        return take(s, close) ? 0 : -1;
    }
    /* number or literal: letters, digits, sign, point, exponent */
    const char *start = s->p;
    while (s->p < s->end && (strchr("+-.eE", *s->p) || (*s->p >= '0' && *s->p <= '9') ||
                             (*s->p >= 'a' && *s->p <= 'z')))
        s->p++;
    return s->p > start ? 0 : -1;
}

int eval_json_doc_fields(const char *line, size_t len, char **name, char **text,
                         size_t *text_len, int **ids, int *n_ids)
{
    if (name)
        *name = NULL;
    if (text)
        *text = NULL;
    if (ids)
        *ids = NULL;
    scanner s = {line, line + len};
    if (!take(&s, '{'))
        return -1;
    if (!take(&s, '}')) {
        do {
            char *key = NULL;
            if (read_string(&s, &key, NULL) || !take(&s, ':')) {
                free(key);
                goto bad;
            }
            int rc;
            if (name && !strcmp(key, "name") && !*name)
                rc = read_string(&s, name, NULL);
            else if (text && !strcmp(key, "text") && !*text)
                rc = read_string(&s, text, text_len);
            else if (ids && !strcmp(key, "ids") && !*ids)
                rc = read_int_array(&s, ids, n_ids);
            else
                rc = skip_value(&s, 0);
            free(key);
            if (rc)
                goto bad;
        } while (take(&s, ','));
        if (!take(&s, '}'))
            goto bad;
    }
    skip_space(&s);
    if (s.p == s.end)
        return 0;
bad:
    if (name) {
        free(*name);
        *name = NULL;
    }
    if (text) {
        free(*text);
        *text = NULL;
    }
    if (ids) {
        free(*ids);
        *ids = NULL;
    }
    return -1;
}

static int fail(char *err, size_t size, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(err, size, format, args);
    va_end(args);
    return -1;
}

static int add_doc(eval_corpus *c, int *capacity, eval_doc doc)
{
    if (c->n_docs == *capacity) {
        *capacity = *capacity ? *capacity * 2 : 32;
        eval_doc *bigger = realloc(c->docs, (size_t)*capacity * sizeof *bigger);
        if (!bigger)
            return -1;
        c->docs = bigger;
    }
    c->docs[c->n_docs++] = doc;
    return 0;
}

/* eval_tokenize_fn over the engine's tokenizer: BOS first, no EOS. */
static int tokenize_with_engine(void *user, const char *text, size_t len, int **ids, int *n_ids,
                                char *err, size_t err_size)
{
    eng_error e = {{0}};
    if (eng_tokenizer_encode(user, text, len, true, false, ids, n_ids, &e) != ENG_OK)
        return fail(err, err_size, "%s", e.message);
    return 0;
}

/* One non-blank line into a document; 0, or -1 with err filled. */
static int read_doc_line(const char *line, size_t len, const char *path, int line_no,
                         eval_tokenize_fn tokenize, void *user, eval_doc *doc, char *err,
                         size_t err_size)
{
    char *text = NULL;
    size_t text_len = 0;
    int rc = 0;
    if (eval_json_doc_fields(line, len, &doc->name, tokenize ? &text : NULL, &text_len,
                             tokenize ? NULL : &doc->ids, &doc->n_ids)) {
        rc = fail(err, err_size, "%s:%d: not a JSON object", path, line_no);
    } else if (!doc->name) {
        rc = fail(err, err_size, "%s:%d: no \"name\"", path, line_no);
    } else if (tokenize && !text) {
        rc = fail(err, err_size, "%s:%d: no \"text\"", path, line_no);
    } else if (!tokenize && !doc->ids) {
        rc = fail(err, err_size, "%s:%d: no \"ids\" array", path, line_no);
    } else if (tokenize) {
        char why[512];
        why[0] = '\0';
        if (tokenize(user, text, text_len, &doc->ids, &doc->n_ids, why, sizeof why))
            rc = fail(err, err_size, "%s:%d: %s", path, line_no, why);
    }
    for (int i = 0; rc == 0 && !tokenize && i < doc->n_ids; i++)
        if (doc->ids[i] < 0)
            rc = fail(err, err_size, "%s:%d: negative token id %d", path, line_no, doc->ids[i]);
    free(text);
    return rc;
}

int eval_corpus_read_stream_with(eval_corpus *corpus, FILE *f, const char *path,
                                 size_t max_bytes, eval_tokenize_fn tokenize, void *user,
                                 char *err, size_t err_size)
{
    *corpus = (eval_corpus){0};
    char *line = NULL;
    size_t line_capacity = 0, total = 0;
    int capacity = 0, line_no = 0, rc = 0;
    ssize_t got;
    while (rc == 0 && (got = getline(&line, &line_capacity, f)) >= 0) {
        line_no++;
        total += (size_t)got;
        if (max_bytes > 0 && total > max_bytes) {
            rc = fail(err, err_size, "%s: more than the %zu bytes read at most", path, max_bytes);
            break;
        }
        scanner blank = {line, line + got};
        skip_space(&blank);
        if (blank.p == blank.end)
            continue;
        eval_doc doc = {0};
        rc = read_doc_line(line, (size_t)got, path, line_no, tokenize, user, &doc, err,
                           err_size);
        if (rc == 0 && add_doc(corpus, &capacity, doc))
            rc = fail(err, err_size, "out of memory");
        if (rc) {
            free(doc.name);
            free(doc.ids);
        }
    }
    if (rc == 0 && ferror(f))
        rc = fail(err, err_size, "%s: read error", path);
    free(line);
    if (rc)
        eval_corpus_free(corpus);
    return rc;
}

int eval_corpus_read_stream(eval_corpus *corpus, FILE *f, const char *path, size_t max_bytes,
                            const eng_tokenizer *tok, char *err, size_t err_size)
{
    /* the callback only reads the tokenizer */
    return eval_corpus_read_stream_with(corpus, f, path, max_bytes,
                                        tok ? tokenize_with_engine : NULL, (void *)tok, err,
                                        err_size);
}

int eval_corpus_read(eval_corpus *corpus, const char *path, const eng_tokenizer *tok,
                     char *err, size_t err_size)
{
    *corpus = (eval_corpus){0};
    FILE *f = fopen(path, "r");
    if (!f)
        return fail(err, err_size, "%s: %s", path, strerror(errno));
    const int rc = eval_corpus_read_stream(corpus, f, path, 0, tok, err, err_size);
    fclose(f);
    return rc;
}

void eval_corpus_free(eval_corpus *corpus)
{
    for (int i = 0; i < corpus->n_docs; i++) {
        free(corpus->docs[i].name);
        free(corpus->docs[i].ids);
    }
    free(corpus->docs);
    *corpus = (eval_corpus){0};
}
