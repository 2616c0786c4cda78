/* json.c - the JSON that JSONL corpora need: one object per line, a few string fields out of it.
 *
 * A complete parser of RFC 8259 syntax (so a malformed line is always caught, whatever part of it
 * is broken) that keeps only the string values of the keys asked for: other values, nested
 * objects and arrays included, are checked and skipped. Strings are unescaped into UTF-8,
 * \uXXXX escapes included (surrogate pairs joined; a lone surrogate is an error). Nothing is
 * allocated but the caller's output buffer, and nesting is bounded, so no input can exhaust the
 * stack or the memory. Errors name the byte offset in the line. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/ds.h"

#define JSON_MAX_DEPTH 64

typedef struct {
    const char *s;
    size_t n, i;
    char *err;
    size_t errlen;
    DsJsonOut *out;
} Parser;

static int fail(Parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(Parser *p, const char *fmt, ...) {
    char msg[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(p->err, p->errlen, "byte %zu: %s", p->i + 1, msg);
    return -1;
}

static void skip_ws(Parser *p) {
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r'))
        p->i++;
}

/* Appends bytes to the output buffer (when keep), growing it; -1 when out of memory. */
static int put(Parser *p, int keep, const char *b, size_t k) {
    if (!keep) return 0;
    DsJsonOut *o = p->out;
    if (o->len + k + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 256;
        while (o->len + k + 1 > cap) cap *= 2;
        char *d = realloc(o->data, cap);
        if (!d) return fail(p, "out of memory");
        o->data = d, o->cap = cap;
    }
    memcpy(o->data + o->len, b, k);
    o->len += k;
    o->data[o->len] = 0;
    return 0;
}

static int hex4(Parser *p, unsigned *v) {
    if (p->i + 4 > p->n) return fail(p, "truncated \\u escape");
    *v = 0;
    for (int d = 0; d < 4; d++) {
        char h = p->s[p->i + d];
        unsigned x = h >= '0' && h <= '9' ? (unsigned)(h - '0')
                     : (h | 32) >= 'a' && (h | 32) <= 'f' ? (unsigned)((h | 32) - 'a' + 10) : 16;
        if (x == 16) return fail(p, "invalid \\u escape");
        *v = *v * 16 + x;
    }
    p->i += 4;
    return 0;
}

/* A string at p->i (the opening quote); its unescaped bytes are appended when keep. */
static int string(Parser *p, int keep) {
    p->i++; /* the quote */
    for (;;) {
        size_t run = p->i; /* copy plain runs in one go */
        while (p->i < p->n && p->s[p->i] != '"' && p->s[p->i] != '\\' && (unsigned char)p->s[p->i] >= 0x20) p->i++;
        if (put(p, keep, p->s + run, p->i - run)) return -1;
        if (p->i >= p->n) return fail(p, "unterminated string");
        char c = p->s[p->i];
        if (c == '"') {
            p->i++;
            return 0;
        }
        if (c != '\\') return fail(p, "control character 0x%02x in a string", (unsigned char)c);
        if (++p->i >= p->n) return fail(p, "unterminated string");
        char e = p->s[p->i++], b;
        switch (e) {
        case '"': case '\\': case '/': b = e; break;
        case 'b': b = '\b'; break;
        case 'f': b = '\f'; break;
        case 'n': b = '\n'; break;
        case 'r': b = '\r'; break;
        case 't': b = '\t'; break;
        case 'u': {
            unsigned cp = 0;
            if (hex4(p, &cp)) return -1;
            if (cp >= 0xDC00 && cp <= 0xDFFF) return fail(p, "lone low surrogate \\u%04X", cp);
            if (cp >= 0xD800 && cp <= 0xDBFF) { /* a high surrogate: its low half must follow */
                unsigned lo = 0;
                if (p->i + 2 > p->n || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u')
                    return fail(p, "lone high surrogate \\u%04X", cp);
                p->i += 2;
                if (hex4(p, &lo)) return -1;
                if (lo < 0xDC00 || lo > 0xDFFF) return fail(p, "high surrogate followed by \\u%04X", lo);
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            char u[4];
            size_t k;
            if (cp < 0x80) u[0] = (char)cp, k = 1;
            else if (cp < 0x800) u[0] = (char)(0xC0 | cp >> 6), u[1] = (char)(0x80 | (cp & 63)), k = 2;
            else if (cp < 0x10000)
                u[0] = (char)(0xE0 | cp >> 12), u[1] = (char)(0x80 | (cp >> 6 & 63)), u[2] = (char)(0x80 | (cp & 63)), k = 3;
            else
                u[0] = (char)(0xF0 | cp >> 18), u[1] = (char)(0x80 | (cp >> 12 & 63)), u[2] = (char)(0x80 | (cp >> 6 & 63)),
                u[3] = (char)(0x80 | (cp & 63)), k = 4;
            if (put(p, keep, u, k)) return -1;
            continue;
        }
        default: p->i--; return fail(p, "invalid escape \\%c", e >= 0x20 && e < 0x7f ? e : '?');
        }
        if (put(p, keep, &b, 1)) return -1;
    }
}

static int literal(Parser *p, const char *word) {
    size_t k = strlen(word);
    if (p->i + k > p->n || memcmp(p->s + p->i, word, k) != 0) return fail(p, "invalid value");
    p->i += k;
    return 0;
}

static int number(Parser *p) {
    size_t start = p->i;
    if (p->i < p->n && p->s[p->i] == '-') p->i++;
    if (p->i < p->n && p->s[p->i] == '0') p->i++;
    else if (p->i < p->n && p->s[p->i] >= '1' && p->s[p->i] <= '9')
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
    else return p->i = start, fail(p, "invalid value");
    if (p->i < p->n && p->s[p->i] == '.') {
        p->i++;
        if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9') return fail(p, "invalid number");
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
    }
    if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        p->i++;
        if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-')) p->i++;
        if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9') return fail(p, "invalid number");
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
    }
    return 0;
}

static int value(Parser *p, int depth);

/* An object or array at p->i, checked and skipped. */
static int container(Parser *p, int depth) {
    const char open = p->s[p->i], close = open == '{' ? '}' : ']';
    if (depth >= JSON_MAX_DEPTH) return fail(p, "nested deeper than %d levels", JSON_MAX_DEPTH);
    p->i++;
    skip_ws(p);
    if (p->i < p->n && p->s[p->i] == close) return p->i++, 0;
    for (;;) {
        skip_ws(p);
        if (open == '{') {
            if (p->i >= p->n || p->s[p->i] != '"') return fail(p, "expected a key string");
            if (string(p, 0)) return -1;
            skip_ws(p);
            if (p->i >= p->n || p->s[p->i] != ':') return fail(p, "expected ':'");
            p->i++;
        }
        if (value(p, depth + 1)) return -1;
        skip_ws(p);
        if (p->i < p->n && p->s[p->i] == ',') {
            p->i++;
            continue;
        }
        if (p->i < p->n && p->s[p->i] == close) return p->i++, 0;
        if (p->i >= p->n) return fail(p, "truncated %s", open == '{' ? "object" : "array");
        return fail(p, "expected ',' or '%c'", close);
    }
}

static int value(Parser *p, int depth) {
    skip_ws(p);
    if (p->i >= p->n) return fail(p, "expected a value");
    switch (p->s[p->i]) {
    case '"': return string(p, 0);
    case '{': case '[': return container(p, depth);
    case 't': return literal(p, "true");
    case 'f': return literal(p, "false");
    case 'n': return literal(p, "null");
    default: return number(p);
    }
}

int ds_json_strings(const char *line, size_t n, const char *const *keys, int n_keys, DsJsonOut *out, char *err,
                    size_t errlen) {
    Parser p = {line, n, 0, err, errlen, out};
    if (n_keys > DS_JSON_MAX_KEYS) return snprintf(err, errlen, "too many keys asked for"), -1;
    out->len = 0;
    if (out->data) out->data[0] = 0;
    for (int k = 0; k < n_keys; k++) out->off[k] = -1, out->n[k] = 0;
    skip_ws(&p);
    if (p.i >= p.n || line[p.i] != '{') return fail(&p, "a line must be a JSON object");
    p.i++;
    skip_ws(&p);
    if (p.i < p.n && line[p.i] == '}') {
        p.i++;
    } else {
        for (;;) {
            skip_ws(&p);
            if (p.i >= p.n) return fail(&p, "truncated object");
            if (line[p.i] != '"') return fail(&p, "expected a key string");
            /* the key, unescaped at the end of the buffer and dropped again once compared */
            size_t mark = out->len;
            if (string(&p, 1)) return -1;
            int want = -1;
            for (int k = 0; k < n_keys; k++)
                if (out->len - mark == strlen(keys[k]) && memcmp(out->data + mark, keys[k], out->len - mark) == 0) want = k;
            out->len = mark;
            skip_ws(&p);
            if (p.i >= p.n || line[p.i] != ':') return fail(&p, "expected ':'");
            p.i++;
            skip_ws(&p);
            if (want >= 0 && p.i < p.n && line[p.i] == '"') { /* a later duplicate key wins */
                size_t at = out->len;
                if (string(&p, 1)) return -1;
                out->off[want] = (long)at, out->n[want] = out->len - at;
                if (put(&p, 1, "", 1)) return -1; /* NUL-separated, so each value is a C string too */
            } else {
                if (want >= 0 && p.i < p.n && strncmp(line + p.i, "null", 4) != 0)
                    return fail(&p, "field \"%s\" is not a string", keys[want]);
                if (value(&p, 1)) return -1;
                if (want >= 0) out->off[want] = -1; /* null: as if absent */
            }
            skip_ws(&p);
            if (p.i < p.n && line[p.i] == ',') {
                p.i++;
                continue;
            }
            if (p.i < p.n && line[p.i] == '}') {
                p.i++;
                break;
            }
            if (p.i >= p.n) return fail(&p, "truncated object");
            return fail(&p, "expected ',' or '}'");
        }
    }
    skip_ws(&p);
    if (p.i < p.n) return fail(&p, "unexpected text after the object");
    return 0;
}

void ds_json_out_free(DsJsonOut *out) {
    free(out->data);
    memset(out, 0, sizeof *out);
}
