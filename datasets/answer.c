/* answer.c - the final answer of a chain-of-thought text: the "#### <answer>" line that ends
 * builtin:arith and GSM8K examples.
 *
 * Evaluation compares a model's answer with the reference as exact text, so both go through the
 * same normalization here: the ways of writing one number that GSM8K answers and model outputs
 * actually vary in (thousands separators, a '+' sign, a full stop after the number, leading zeros,
 * "-0") are made equal. Nothing numeric beyond that ("3.50" stays "3.50", "-0.0" stays "-0.0"):
 * a looser comparison would credit answers that are not what the reference wrote.
 *
 * The text is a byte range, not a C string: a model's output may hold NUL bytes. */
#include <limits.h>
#include <string.h>

#include "datasets/ds.h"

#define MARKER "####"
#define MARKER_LEN 4

/* Index just past the last MARKER in text, or (size_t)-1 when there is none. Scanning from the
   end finds the last one directly (a model may repeat the line; the last one is its final word). */
static size_t after_last_marker(const char *text, size_t n) {
    if (!text || n < MARKER_LEN) return (size_t)-1;
    for (size_t i = n - MARKER_LEN + 1; i-- > 0;)
        if (memcmp(text + i, MARKER, MARKER_LEN) == 0) return i + MARKER_LEN;
    return (size_t)-1;
}

static int is_blank(char c) { return c == ' ' || c == '\t'; }

/* The raw answer [*s, *e): from p, blanks skipped, up to the newline, blanks and the '\r' of a
   CRLF line dropped from its end. */
static void answer_span(const char *text, size_t n, size_t p, size_t *s, size_t *e) {
    while (p < n && is_blank(text[p])) p++;
    size_t q = p;
    while (q < n && text[q] != '\n') q++;
    while (q > p && (is_blank(text[q - 1]) || text[q - 1] == '\r')) q--;
    *s = p;
    *e = q;
}

/* The bytes of [i, e) other than ',', one at a time: separators are ignored everywhere, so the
   rules below see "1,234" as "1234" without a copy (the copy could be longer than out). */
typedef struct {
    const char *t;
    size_t i, e;
} Chars;

/* next byte (0..255), or -1 at the end */
static int chars_next(Chars *c) {
    while (c->i < c->e && c->t[c->i] == ',') c->i++;
    return c->i < c->e ? (unsigned char)c->t[c->i++] : -1;
}

static int is_digit(int ch) { return ch >= '0' && ch <= '9'; }

/* whether the bytes match -?[0-9]+(\.[0-9]+)? */
static int is_number(Chars c) {
    int ch = chars_next(&c);
    if (ch == '-') ch = chars_next(&c);
    if (!is_digit(ch)) return 0;
    while (is_digit(ch)) ch = chars_next(&c);
    if (ch == '.') {
        ch = chars_next(&c);
        if (!is_digit(ch)) return 0;
        while (is_digit(ch)) ch = chars_next(&c);
    }
    return ch == -1;
}

/* Output that counts what it would need past cap-1 bytes, so "does not fit" is known at the end. */
typedef struct {
    char *buf;
    size_t cap, len;
} Sink;

static void sink_put(Sink *k, int ch) {
    if (k->len + 1 < k->cap) k->buf[k->len] = (char)ch;
    k->len++;
}

static void sink_rest(Sink *k, Chars *c) {
    for (int ch; (ch = chars_next(c)) >= 0;) sink_put(k, ch);
}

/* A number without leading zeros (one digit kept: "000" -> "0", "00.5" -> "0.5") and "-0" as "0". */
static void sink_number(Sink *k, Chars c) {
    int ch = chars_next(&c), neg = ch == '-';
    if (neg) ch = chars_next(&c);
    for (;;) { /* drop a '0' while a digit follows it */
        Chars peek = c;
        int next = chars_next(&peek);
        if (ch != '0' || !is_digit(next)) break;
        c = peek;
        ch = next;
    }
    Chars peek = c;
    if (neg && !(ch == '0' && chars_next(&peek) == -1)) sink_put(k, '-');
    sink_put(k, ch);
    sink_rest(k, &c);
}

int ds_answer_extract(const char *text, size_t n, char *out, size_t cap) {
    if (!out || cap == 0) return -1;
    out[0] = '\0';
    size_t p = after_last_marker(text, n);
    if (p == (size_t)-1) return -1;
    size_t s, e;
    answer_span(text, n, p, &s, &e);
    /* a leading '+' and a trailing '.' (the first and last bytes that are not separators) */
    Chars c = {text, s, e};
    Chars peek = c;
    if (chars_next(&peek) == '+') c = peek;
    while (c.e > c.i && text[c.e - 1] == ',') c.e--;
    if (c.e > c.i && text[c.e - 1] == '.') c.e--;
    Sink k = {out, cap, 0};
    if (is_number(c)) sink_number(&k, c);
    else sink_rest(&k, &c);
    /* a NUL inside would make the C string the callers compare a prefix of the answer: "3\0" + "9"
       would count as "3". No answer has one; such text is not an answer. */
    if (k.len == 0 || k.len >= cap || k.len > INT_MAX || memchr(out, '\0', k.len)) {
        out[0] = '\0';
        return -1;
    }
    out[k.len] = '\0';
    return (int)k.len;
}

/* ---- voting ------------------------------------------------------------------------------------ */

int ds_vote_majority(const char *const *answers, int n) {
    /* O(n^2) string compares: n is a count of samples (tens), not of tokens */
    int best = -1, best_count = 0;
    for (int i = 0; i < n; i++) {
        if (!answers[i][0]) continue;
        int count = 0, first = i;
        for (int j = 0; j <= i; j++)
            if (strcmp(answers[j], answers[i]) == 0) {
                if (!count) first = j;
                count++;
            }
        /* answer i reached `count` now; only a strictly higher count overtakes, so in a tie the one
           that got there first keeps it */
        if (count > best_count) best = first, best_count = count;
    }
    return best;
}

void ds_vote_curve(double *majority, double *pass, const char *const *answers, const char *const *refs, int n_probs,
                   int n, const int *ks, int n_ks) {
    for (int j = 0; j < n_ks; j++) {
        const int k = ks[j] < 1 ? 1 : ks[j] > n ? n : ks[j];
        long maj = 0, hit = 0;
        for (int p = 0; p < n_probs; p++) {
            const char *const *a = answers + (size_t)p * n;
            const int m = ds_vote_majority(a, k);
            maj += m >= 0 && strcmp(a[m], refs[p]) == 0;
            int any = 0;
            for (int s = 0; s < k && !any; s++) any = a[s][0] && strcmp(a[s], refs[p]) == 0;
            hit += any;
        }
        majority[j] = n_probs ? (double)maj / n_probs : 0;
        pass[j] = n_probs ? (double)hit / n_probs : 0;
    }
}

int ds_star_filter(int *keep, const char *const *chains, const size_t *lens, int n, const char *ref) {
    int kept = 0;
    for (int s = 0; s < n; s++) {
        char answer[64];
        if (!ref[0] || ds_answer_extract(chains[s], lens[s], answer, sizeof answer) < 0 || strcmp(answer, ref) != 0)
            continue;
        int seen = 0;
        for (int j = 0; j < kept && !seen; j++)
            seen = lens[keep[j]] == lens[s] && memcmp(chains[keep[j]], chains[s], lens[s]) == 0;
        if (!seen) keep[kept++] = s;
    }
    return kept;
}
