#include "jsonl.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct cursor {
    const char *at;
} cursor;

static void skip_space(cursor *c)
{
    while (*c->at == ' ' || *c->at == '\t' || *c->at == '\n' || *c->at == '\r')
        c->at++;
}

static int hex_value(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

static bool read_hex4(cursor *c, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        const int h = hex_value(c->at[i]);
        if (h < 0)
            return false;
        v = v * 16 + (uint32_t)h;
    }
    c->at += 4;
    *out = v;
    return true;
}

static size_t put_utf8(char *out, uint32_t cp)
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

/* \uXXXX, joining a UTF-16 surrogate pair into one code point. */
static bool read_unicode_escape(cursor *c, uint32_t *cp)
{
    if (!read_hex4(c, cp))
        return false;
    if (*cp >= 0xD800 && *cp < 0xDC00 && c->at[0] == '\\' && c->at[1] == 'u') {
        cursor next = {c->at + 2};
        uint32_t low;
        if (read_hex4(&next, &low) && low >= 0xDC00 && low < 0xE000) {
            *cp = 0x10000 + ((*cp - 0xD800) << 10) + (low - 0xDC00);
            c->at = next.at;
        }
    }
    return true;
}

/* Parses a string at c (which must start with a quote). With out == NULL it
 * only skips; otherwise out must hold the raw length plus one. */
static bool parse_string(cursor *c, char *out, size_t *len)
{
    if (*c->at != '"')
        return false;
    c->at++;
    size_t n = 0;
    while (*c->at != '"') {
        char ch = *c->at++;
        if (ch == '\0')
            return false;
        if (ch != '\\') {
            if (out)
                out[n] = ch;
            n++;
            continue;
        }
        char buffer[4];
        size_t count = 1;
        switch (ch = *c->at++) {
        case '"': case '\\': case '/': buffer[0] = ch; break;
        case 'b': buffer[0] = '\b'; break;
        case 'f': buffer[0] = '\f'; break;
        case 'n': buffer[0] = '\n'; break;
        case 'r': buffer[0] = '\r'; break;
        case 't': buffer[0] = '\t'; break;
        case 'u': {
            uint32_t cp;
            if (!read_unicode_escape(c, &cp))
                return false;
            count = put_utf8(buffer, cp);
            break;
        }
        default: return false;
        }
        if (out)
            memcpy(out + n, buffer, count);
        n += count;
    }
    c->at++;
    if (out)
        out[n] = '\0';
    if (len)
        *len = n;
    return true;
}

static bool skip_value(cursor *c)
{
    skip_space(c);
    if (*c->at == '"')
        return parse_string(c, NULL, NULL);
    if (*c->at == '[') {
        int depth = 0;
        do {
            if (*c->at == '"') {
                if (!parse_string(c, NULL, NULL))
                    return false;
                continue;
            }
            if (*c->at == '\0')
                return false;
            depth += (*c->at == '[') - (*c->at == ']');
            c->at++;
        } while (depth > 0);
        return true;
    }
    while (*c->at && *c->at != ',' && *c->at != '}')
        c->at++;
    return true;
}

/* Moves c to the value of key in the top-level object. */
static bool find_value(cursor *c, const char *key)
{
    skip_space(c);
    if (*c->at++ != '{')
        return false;
    for (;;) {
        skip_space(c);
        const char *key_start = c->at + 1;
        if (!parse_string(c, NULL, NULL))
            return false;
        const size_t key_len = (size_t)(c->at - 1 - key_start);
        skip_space(c);
        if (*c->at++ != ':')
            return false;
        skip_space(c);
        if (key_len == strlen(key) && memcmp(key_start, key, key_len) == 0)
            return true;
        if (!skip_value(c))
            return false;
        skip_space(c);
        if (*c->at++ != ',')
            return false;
    }
}

char *jsonl_string_field(const char *line, const char *key, size_t *len)
{
    cursor c = {line};
    if (!find_value(&c, key))
        return NULL;
    cursor measure = c;
    size_t n;
    if (!parse_string(&measure, NULL, &n))
        return NULL;
    char *out = malloc(n + 1);
    if (out && !parse_string(&c, out, len)) {
        free(out);
        return NULL;
    }
    return out;
}

int *jsonl_int_array_field(const char *line, const char *key, int *n)
{
    cursor c = {line};
    if (!find_value(&c, key) || *c.at != '[')
        return NULL;
    size_t capacity = 1;
    for (const char *p = c.at; *p && *p != ']'; p++)
        capacity += *p == ',';
    int *values = malloc(capacity * sizeof *values);
    if (!values)
        return NULL;
    c.at++;
    int count = 0;
    for (;;) {
        skip_space(&c);
        if (*c.at == ']')
            break;
        char *end;
        const long v = strtol(c.at, &end, 10);
        if (end == c.at || (size_t)count >= capacity) {
            free(values);
            return NULL;
        }
        values[count++] = (int)v;
        c.at = end;
        skip_space(&c);
        if (*c.at == ',')
            c.at++;
    }
    *n = count;
    return values;
}
