/* Sentencepiece-style BPE encoding with a priority queue of candidate merges.
 *
 * Symbols form a doubly linked list over the (prefixed) text; every adjacent
 * pair whose concatenation is a vocabulary piece is a candidate. The queue
 * pops the best-scoring candidate (leftmost on ties, as sentencepiece does);
 * candidates made stale by an earlier merge are recognised by their recorded
 * lengths and skipped. */
#include "tokenizer.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct symbol {
    size_t start; /* byte offset into the working text */
    size_t len;   /* 0 once merged into its left neighbour */
    int prev, next; /* -1 at the ends */
    int id;       /* vocabulary id, or -1: emit as byte tokens */
} symbol;

typedef struct candidate {
    float score;
    int left, right;
    size_t len; /* left.len + right.len when queued */
    int id;     /* the merged piece */
} candidate;

typedef struct encoder {
    const eng_tokenizer *tok;
    const char *text;
    symbol *symbols;
    int n_symbols;
    candidate *heap;
    int heap_size;
} encoder;

/* True when a better than b: higher score, then further left. */
static int outranks(const candidate *a, const candidate *b)
{
    if (a->score != b->score)
        return a->score > b->score;
    return a->left < b->left;
}

static void heap_push(encoder *e, candidate c)
{
    int i = e->heap_size++;
    while (i > 0) {
        const int parent = (i - 1) / 2;
        if (!outranks(&c, &e->heap[parent]))
            break;
        e->heap[i] = e->heap[parent];
        i = parent;
    }
    e->heap[i] = c;
}

static candidate heap_pop(encoder *e)
{
    const candidate top = e->heap[0];
    const candidate last = e->heap[--e->heap_size];
    int i = 0;
    for (;;) {
        int child = 2 * i + 1;
        if (child >= e->heap_size)
            break;
        if (child + 1 < e->heap_size && outranks(&e->heap[child + 1], &e->heap[child]))
            child++;
        if (!outranks(&e->heap[child], &last))
            break;
        e->heap[i] = e->heap[child];
        i = child;
    }
    if (e->heap_size > 0)
        e->heap[i] = last;
    return top;
}

/* Special and byte tokens are never the result of a merge in sentencepiece. */
static int is_mergeable(const eng_tokenizer *tok, int id)
{
    if (id < ENG_TOKEN_FIRST_BYTE)
        return 0;
    return !(tok->has_byte_fallback && id < ENG_TOKEN_FIRST_BYTE + 256);
}

static void queue_pair(encoder *e, int left)
{
    if (left < 0)
        return;
    const int right = e->symbols[left].next;
    if (right < 0)
        return;
    const symbol *l = &e->symbols[left], *r = &e->symbols[right];
    const size_t len = l->len + r->len;
    const int id = eng_tokenizer_lookup(e->tok, e->text + l->start, len);
    if (id < 0 || !is_mergeable(e->tok, id))
        return;
    heap_push(e, (candidate){e->tok->scores[id], left, right, len, id});
}

static int is_stale(const encoder *e, const candidate *c)
{
    const symbol *l = &e->symbols[c->left], *r = &e->symbols[c->right];
    return l->len == 0 || r->len == 0 || l->next != c->right || l->len + r->len != c->len;
}

static void merge_all(encoder *e)
{
    for (int i = 0; i + 1 < e->n_symbols; i++)
        queue_pair(e, i);
    while (e->heap_size > 0) {
        const candidate c = heap_pop(e);
        if (is_stale(e, &c))
            continue;
        symbol *l = &e->symbols[c.left], *r = &e->symbols[c.right];
        l->len = c.len;
        l->id = c.id;
        l->next = r->next;
        if (r->next >= 0)
            e->symbols[r->next].prev = c.left;
        r->len = 0;
        queue_pair(e, l->prev);
        queue_pair(e, c.left);
    }
}

/* Length of the UTF-8 character starting at s (1 for invalid bytes, which
 * then go through byte fallback on their own). */
static size_t utf8_char_length(const unsigned char *s, size_t available)
{
    size_t len = 1;
    if (s[0] >= 0xF0 && s[0] < 0xF8)
        len = 4;
    else if (s[0] >= 0xE0)
        len = s[0] < 0xF0 ? 3 : 1;
    else if (s[0] >= 0xC0)
        len = 2;
    if (len > available)
        return 1;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 1;
    return len;
}

static void split_characters(encoder *e, size_t text_len)
{
    int n = 0;
    for (size_t at = 0; at < text_len; n++) {
        const size_t len =
            utf8_char_length((const unsigned char *)e->text + at, text_len - at);
        e->symbols[n] = (symbol){at, len, n - 1, n + 1,
                                 eng_tokenizer_lookup(e->tok, e->text + at, len)};
        at += len;
    }
    if (n > 0)
        e->symbols[n - 1].next = -1;
    e->n_symbols = n;
}

static int emit_ids(const encoder *e, bool add_bos, bool add_eos, int *ids)
{
    int n = 0;
    if (add_bos)
        ids[n++] = ENG_TOKEN_BOS;
    for (int i = e->n_symbols > 0 ? 0 : -1; i >= 0; i = e->symbols[i].next) {
        const symbol *s = &e->symbols[i];
        if (s->id >= 0) {
            ids[n++] = s->id;
            continue;
        }
        for (size_t b = 0; b < s->len; b++)
            ids[n++] = e->tok->has_byte_fallback
                           ? ENG_TOKEN_FIRST_BYTE + (unsigned char)e->text[s->start + b]
                           : ENG_TOKEN_UNK;
    }
    if (add_eos)
        ids[n++] = ENG_TOKEN_EOS;
    return n;
}

int eng_tokenizer_encode(const eng_tokenizer *tok, const char *text,
                         size_t text_len, bool add_bos, bool add_eos,
                         int **ids_out, int *n_out, eng_error *err)
{
    *ids_out = NULL;
    *n_out = 0;
    if (!text && text_len > 0)
        return eng_fail(err, ENG_EINVAL, "no text given");
    /* Every byte may become one token; ids are int-indexed. */
    if (text_len > (size_t)INT32_MAX / 4 - 8)
        return eng_fail(err, ENG_EINVAL, "text of %zu bytes is too long to encode", text_len);

    /* The dummy prefix: sentencepiece encodes " " + text. */
    const size_t work_len = text_len > 0 ? text_len + 1 : 0;
    char *work = malloc(work_len + 1);
    symbol *symbols = malloc((work_len + 1) * sizeof *symbols);
    candidate *heap = malloc((3 * work_len + 1) * sizeof *heap); /* n-1 pairs + 2 per merge */
    int *ids = malloc((work_len + 2) * sizeof *ids);
    if (!work || !symbols || !heap || !ids) {
        free(work), free(symbols), free(heap), free(ids);
        return eng_fail(err, ENG_ENOMEM, "out of memory encoding %zu bytes", text_len);
    }
    if (work_len > 0) {
        work[0] = ' ';
        memcpy(work + 1, text, text_len);
    }
    encoder e = {.tok = tok, .text = work, .symbols = symbols, .heap = heap};
    split_characters(&e, work_len);
    merge_all(&e);
    *n_out = emit_ids(&e, add_bos, add_eos, ids);
    *ids_out = ids;
    free(work), free(symbols), free(heap);
    return ENG_OK;
}
