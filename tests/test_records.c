/* test_records.c - JSONL corpora (datasets/records.c): rendering, line handling, bad lines (as
 * errors and skipped), long lines, non-regular files, line counting, and GSM8K when present. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "datasets/ds.h"
#include "tests/test.h"

static char g_dir[64] = "/tmp/test_records_XXXXXX";

/* Writes n bytes to g_dir/name; the full path goes to path (256 bytes). */
static void put_file(char *path, const char *name, const void *data, size_t n) {
    snprintf(path, 256, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    CHECK_MSG(f != NULL, "cannot create %s", path);
    if (!f) return;
    CHECK(fwrite(data, 1, n, f) == n);
    fclose(f);
}

static void put_str(char *path, const char *name, const char *s) { put_file(path, name, s, strlen(s)); }

typedef struct {
    const char *text; /* NUL-terminated unless len says otherwise */
    size_t len;       /* 0: strlen(text) */
    size_t prompt_len;
    long line;
} Exp;

typedef struct {
    int skip;           /* skip_bad_lines */
    const char *err;    /* NULL: the file must end cleanly after the records; else the error wanted */
    long skipped, lines;
} Want;

/* Reads path and checks its records against e[0..ne), then the end (or the error) and counters. */
static void expect_file(const char *path, const Exp *e, int ne, Want w) {
    DsJsonlOptions o;
    ds_jsonl_options_init(&o);
    o.skip_bad_lines = w.skip;
    DsJsonl *j = NULL;
    char err[512] = "";
    int rc = ds_jsonl_open(&j, path, &o, err, sizeof err);
    CHECK_MSG(rc == 0 && j, "%s: open: %s", path, err);
    if (rc) return;
    DsRecord r;
    rc = 1;
    for (int i = 0; i < ne; i++) {
        rc = ds_jsonl_next(j, &r, err, sizeof err);
        CHECK_MSG(rc == 1, "%s: record %d: rc %d %s", path, i, rc, rc < 0 ? err : "");
        if (rc != 1) break;
        size_t len = e[i].len ? e[i].len : strlen(e[i].text);
        CHECK_MSG(r.len == len && memcmp(r.text, e[i].text, len) == 0 && r.text[len] == 0,
                  "%s: record %d: got %zu bytes '%.*s'", path, i, r.len, (int)(r.len < 200 ? r.len : 200), r.text);
        CHECK_MSG(r.prompt_len == e[i].prompt_len, "%s: record %d: prompt_len %zu, want %zu", path, i, r.prompt_len,
                  e[i].prompt_len);
        CHECK_MSG(r.line == e[i].line, "%s: record %d: line %ld, want %ld", path, i, r.line, e[i].line);
    }
    if (rc == 1) {
        rc = ds_jsonl_next(j, &r, err, sizeof err);
        if (w.err)
            CHECK_MSG(rc == -1 && strstr(err, w.err) && !strchr(err, '\n'), "%s: want error '%s', got rc %d '%s'", path,
                      w.err, rc, err);
        else CHECK_MSG(rc == 0, "%s: want the end, got rc %d '%s'", path, rc, rc < 0 ? err : "");
    }
    CHECK_MSG(ds_jsonl_skipped(j) == w.skipped, "%s: skipped %ld, want %ld", path, ds_jsonl_skipped(j), w.skipped);
    CHECK_MSG(ds_jsonl_lines(j) == w.lines, "%s: lines %ld, want %ld", path, ds_jsonl_lines(j), w.lines);
    ds_jsonl_close(j);
}

static void expect_open_error(const char *path, const char *want) {
    DsJsonl *j = (DsJsonl *)&j; /* must come back NULL */
    char err[512] = "";
    int rc = ds_jsonl_open(&j, path, NULL, err, sizeof err);
    CHECK_MSG(rc == -1 && j == NULL && strstr(err, want) && strstr(err, path), "%s: want '%s', got rc %d '%s'", path,
              want, rc, err);
    ds_jsonl_close(j);
}

/* ---------------------------------------------------------------- rendering */

static void test_render(void) {
    char p[256];
    /* GSM8K style: question, newline, answer, newline added unless the answer has one */
    put_str(p, "gsm.jsonl",
            "{\"question\": \"How many?\", \"answer\": \"2+2 = <<2+2=4>>4\\n#### 4\"}\n"
            "{\"answer\": \"ends\\n\", \"question\": \"Q2\"}\n"
            "{\"question\": \"Q3\", \"answer\": \"A3\", \"text\": \"ignored: the pair wins\"}\n");
    Exp gsm[] = {{"How many?\n2+2 = <<2+2=4>>4\n#### 4\n", 0, 10, 1}, {"Q2\nends\n", 0, 3, 2}, {"Q3\nA3\n", 0, 3, 3}};
    expect_file(p, gsm, 3, (Want){0, NULL, 0, 3});

    /* text records: prompt through the first newline, all of it without one */
    put_str(p, "text.jsonl",
            "{\"text\": \"first line\\nsecond\\n\"}\n"
            "{\"text\": \"no newline\"}\n"
            "{\"text\": \"\\nstarts with one\"}\n");
    Exp text[] = {{"first line\nsecond\n", 0, 11, 1}, {"no newline", 0, 10, 2}, {"\nstarts with one", 0, 1, 3}};
    expect_file(p, text, 3, (Want){0, NULL, 0, 3});

    /* escapes and \u (a surrogate pair, a NUL) come out as UTF-8 bytes; lengths, not strlen */
    put_str(p, "esc.jsonl",
            "{\"question\": \"caf\\u00e9 \\ud83d\\ude00 \\\"q\\\"\\t\", \"answer\": \"a\\u0000b\\\\\"}\n"
            "{\"text\": \"x\\u0000y\\nz\"}\n");
    Exp esc[] = {{"caf\xc3\xa9 \xf0\x9f\x98\x80 \"q\"\t\na\0b\\\n", 21, 16, 1}, {"x\0y\nz", 5, 4, 2}};
    expect_file(p, esc, 2, (Want){0, NULL, 0, 2});

    /* empty values are values; null is absent; nested values and other keys are skipped */
    put_str(p, "empty.jsonl",
            "{\"question\": \"\", \"answer\": \"\"}\n"
            "{\"question\": \"\", \"answer\": \"\\n\"}\n"
            "{\"text\": \"\"}\n"
            "{\"question\": null, \"answer\": \"a\", \"text\": \"t\"}\n"
            "{\"meta\": {\"question\": \"no\", \"list\": [1, {\"answer\": \"no\"}]}, \"question\": \"q\", \"n\": 3, "
            "\"answer\": \"a\"}\n");
    Exp empty[] = {{"\n\n", 0, 1, 1}, {"\n\n", 0, 1, 2}, {"", 0, 0, 3}, {"t", 0, 1, 4}, {"q\na\n", 0, 2, 5}};
    expect_file(p, empty, 5, (Want){0, NULL, 0, 5});

    /* other field names; a role without a name is not used */
    put_str(p, "names.jsonl", "{\"problem\": \"P\", \"solution\": \"S\", \"question\": \"x\", \"answer\": \"y\"}\n"
                              "{\"text\": \"t\"}\n");
    DsJsonlOptions o;
    ds_jsonl_options_init(&o);
    o.question = "problem", o.answer = "solution", o.text = NULL;
    DsJsonl *j;
    DsRecord r;
    char err[512];
    CHECK(ds_jsonl_open(&j, p, &o, err, sizeof err) == 0);
    o.question = o.answer = "clobbered"; /* the names were copied at open */
    CHECK(ds_jsonl_next(j, &r, err, sizeof err) == 1 && strcmp(r.text, "P\nS\n") == 0 && r.prompt_len == 2);
    CHECK(ds_jsonl_next(j, &r, err, sizeof err) == -1 && strstr(err, "names.jsonl:2: no \"problem\"/\"solution\" pair"));
    CHECK(ds_jsonl_next(j, &r, err, sizeof err) == 0);
    ds_jsonl_close(j);
    ds_jsonl_close(NULL);
}

/* ---------------------------------------------------------------- bad lines */

static void test_bad_lines(void) {
    char p[256];
    /* a missing field: the error names the file and line; the next call goes on after it */
    put_str(p, "x.jsonl",
            "{\"question\": \"q1\", \"answer\": \"a1\"}\n"
            "{\"text\": \"t2\"}\n"
            "{\"question\": \"q3\"}\n"
            "{\"question\": \"q4\", \"answer\": \"a4\"}\n");
    Exp x[] = {{"q1\na1\n", 0, 3, 1}, {"t2", 0, 2, 2}};
    expect_file(p, x, 2,
                (Want){0, "x.jsonl:3: no \"question\"/\"answer\" pair and no \"text\" field", 0, 3});
    {
        DsJsonl *j;
        DsRecord r;
        char err[512];
        CHECK(ds_jsonl_open(&j, p, NULL, err, sizeof err) == 0);
        for (int i = 0; i < 2; i++) CHECK(ds_jsonl_next(j, &r, err, sizeof err) == 1);
        CHECK(ds_jsonl_next(j, &r, err, sizeof err) == -1);
        CHECK(ds_jsonl_next(j, &r, err, sizeof err) == 1 && r.line == 4 && strcmp(r.text, "q4\na4\n") == 0);
        CHECK(ds_jsonl_next(j, &r, err, sizeof err) == 0 && ds_jsonl_lines(j) == 4);
        ds_jsonl_close(j);
    }
    /* a null answer with no text is missing */
    put_str(p, "null.jsonl", "{\"question\": \"q\", \"answer\": null}\n");
    expect_file(p, NULL, 0, (Want){0, "null.jsonl:1: no \"question\"/\"answer\" pair", 0, 1});
    /* the parser's message, prefixed with the place */
    put_str(p, "num.jsonl", "\n{\"question\": 5, \"answer\": \"a\"}\n");
    expect_file(p, NULL, 0, (Want){0, "num.jsonl:2: byte 14: field \"question\" is not a string", 0, 2});
    put_str(p, "arr.jsonl", "[\"question\", \"answer\"]\n");
    expect_file(p, NULL, 0, (Want){0, "arr.jsonl:1: byte 1: a line must be a JSON object", 0, 1});
    put_str(p, "nested.jsonl", "{\"text\": {\"question\": \"q\"}}\n");
    expect_file(p, NULL, 0, (Want){0, "nested.jsonl:1: byte 10: field \"text\" is not a string", 0, 1});
    put_str(p, "trail.jsonl", "{\"text\": \"t\"} {\"text\": \"u\"}\n");
    expect_file(p, NULL, 0, (Want){0, "trail.jsonl:1: byte 15: unexpected text after the object", 0, 1});
    /* a raw NUL byte in a line is malformed JSON, not the end of the line */
    put_file(p, "nul.jsonl", "{\"text\": \"a\0b\"}\n", 16);
    expect_file(p, NULL, 0, (Want){0, "nul.jsonl:1: byte 12: control character 0x00", 0, 1});

    /* skip_bad_lines: bad lines interleaved; records, their line numbers and the counters */
    put_str(p, "skip.jsonl",
            "not json\n"
            "{\"question\": \"q2\", \"answer\": \"a2\"}\n"
            "{\"question\": \"only\"}\n"
            "\n"
            "{\"text\": 7}\n"
            "{\"text\": \"t6\"}\n"
            "{\"text\": \"unterminated\n"
            "   \t\n"
            "{\"text\": \"t9\"}\n"
            "{}\n"
            "{\"text\": \"t11");
    Exp skip[] = {{"q2\na2\n", 0, 3, 2}, {"t6", 0, 2, 6}, {"t9", 0, 2, 9}};
    expect_file(p, skip, 3, (Want){1, NULL, 6, 11});
    /* without it, the first bad line stops the read */
    expect_file(p, NULL, 0, (Want){0, "skip.jsonl:1: byte 1: a line must be a JSON object", 0, 1});
}

/* ---------------------------------------------------------------- line ends */

static void test_line_ends(void) {
    char p[256];
    /* CRLF: the \r never reaches the text; a line of only \r is blank */
    put_str(p, "crlf.jsonl",
            "{\"question\": \"q\", \"answer\": \"a\"}\r\n"
            "\r\n"
            "{\"text\": \"t\\r\"}\r\n"
            "{\"text\": \"last\"}\r");
    Exp crlf[] = {{"q\na\n", 0, 2, 1}, {"t\r", 0, 2, 3}, {"last", 0, 4, 4}};
    expect_file(p, crlf, 3, (Want){0, NULL, 0, 4});

    /* a last line without a newline: valid JSON is a record, truncated JSON an error naming it */
    put_str(p, "last.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\"}");
    Exp last[] = {{"a", 0, 1, 1}, {"b", 0, 1, 2}};
    expect_file(p, last, 2, (Want){0, NULL, 0, 2});
    put_str(p, "cut.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"question\": \"q\", \"answ");
    expect_file(p, last, 2, (Want){0, "cut.jsonl:3: byte 24: unterminated string", 0, 3});
    put_str(p, "cut2.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"text\": \"c\"");
    expect_file(p, last, 2, (Want){0, "cut2.jsonl:3: byte 13: truncated object", 0, 3});

    /* blank lines are skipped, not bad, but counted in the line numbers */
    put_str(p, "blank.jsonl", "\n  \n{\"text\": \"a\"}\n\t \r\n\n{\"text\": \"b\"}\n\n   ");
    Exp blank[] = {{"a", 0, 1, 3}, {"b", 0, 1, 6}};
    expect_file(p, blank, 2, (Want){0, NULL, 0, 8});

    /* empty file, only blank lines */
    put_str(p, "none.jsonl", "");
    expect_file(p, NULL, 0, (Want){0, NULL, 0, 0});
    put_str(p, "blanks.jsonl", "\n\n \n");
    expect_file(p, NULL, 0, (Want){0, NULL, 0, 3});
}

/* ---------------------------------------------------------------- long lines */

/* A text line of n 'x' (escaped every 1000th as \u0078, so the parser's unescaping works across
   the whole line) with the given end. Returns the file's bytes; *text is what it renders to. */
static char *long_line(size_t n, const char *end, size_t *size, char **text) {
    size_t cap = n * 6 + 64;
    char *s = malloc(cap), *t = malloc(n + 1);
    size_t k = (size_t)snprintf(s, cap, "{\"text\": \"");
    for (size_t i = 0; i < n; i++) {
        const char *put = i % 4096 == 0 ? "\\n" : i % 1000 == 999 ? "\\u0078" : "x";
        memcpy(s + k, put, strlen(put)), k += strlen(put);
        t[i] = i % 4096 == 0 ? '\n' : 'x';
    }
    t[n] = 0;
    k += (size_t)snprintf(s + k, cap - k, "\"}%s", end);
    *size = k, *text = t;
    return s;
}

static void test_long_lines(void) {
    char p[256];
    /* a 10 MB line between short ones, and a 3 MB last line without a newline */
    size_t n1 = 10u << 20, n2 = 3u << 20, s1, s2;
    char *t1, *t2, *l1 = long_line(n1, "\n", &s1, &t1), *l2 = long_line(n2, "", &s2, &t2);
    const char *a = "{\"text\": \"a\"}\n";
    char *file = malloc(s1 + s2 + 1024); /* room for the short lines too */
    size_t k = 0;
    memcpy(file + k, a, strlen(a)), k += strlen(a);
    memcpy(file + k, l1, s1), k += s1;
    memcpy(file + k, a, strlen(a)), k += strlen(a);
    memcpy(file + k, l2, s2), k += s2;
    put_file(p, "long.jsonl", file, k);
    Exp e[] = {{"a", 0, 1, 1}, {t1, n1, 1, 2}, {"a", 0, 1, 3}, {t2, n2, 1, 4}};
    expect_file(p, e, 4, (Want){0, NULL, 0, 4});
    char err[256];
    CHECK(ds_count_lines(p, err, sizeof err) == 4);

    /* over the limit (lowered through MTP_JSONL_MAX_LINE): an error, or skipped without holding it */
    setenv("MTP_JSONL_MAX_LINE", "64", 1);
    char line64[80];
    snprintf(line64, sizeof line64, "{\"text\": \"%052d\"}", 0); /* exactly 64 bytes: allowed */
    CHECK(strlen(line64) == 64);
    k = 0;
    k += (size_t)sprintf(file + k, "%s\n", line64);
    k += (size_t)sprintf(file + k, "{\"text\": \"%053d\"}\n", 0); /* 65 */
    k += (size_t)sprintf(file + k, "%s\r\n", line64);             /* 65 with its \r: over */
    k += (size_t)sprintf(file + k, "{\"text\": \"b\"}\n");
    memcpy(file + k, l1, s1), k += s1;                            /* 10 MB over, read and dropped */
    k += (size_t)sprintf(file + k, "{\"text\": \"c\"}\n");
    memcpy(file + k, l2, s2 - 1), k += s2 - 1;                    /* over, last, no newline */
    put_file(p, "over.jsonl", file, k);
    Exp over[] = {{line64 + 10, 52, 52, 1}, {"b", 0, 1, 4}, {"c", 0, 1, 6}};
    expect_file(p, over, 3, (Want){1, NULL, 4, 7});
    expect_file(p, over, 1, (Want){0, "over.jsonl:2: line longer than 64 bytes", 0, 2});
    {   /* after the error the next call goes on past the long line */
        DsJsonl *j;
        DsRecord r;
        CHECK(ds_jsonl_open(&j, p, NULL, err, sizeof err) == 0);
        CHECK(ds_jsonl_next(j, &r, err, sizeof err) == 1 && r.line == 1);
        CHECK(ds_jsonl_next(j, &r, err, sizeof err) == -1 && strstr(err, ":2: line longer"));
        CHECK(ds_jsonl_next(j, &r, err, sizeof err) == -1 && strstr(err, ":3: line longer"));
        CHECK(ds_jsonl_next(j, &r, err, sizeof err) == 1 && r.line == 4);
        CHECK(ds_jsonl_next(j, &r, err, sizeof err) == -1 && strstr(err, ":5: line longer"));
        CHECK(ds_jsonl_next(j, &r, err, sizeof err) == 1 && r.line == 6 && strcmp(r.text, "c") == 0);
        CHECK(ds_jsonl_next(j, &r, err, sizeof err) == -1 && strstr(err, ":7: line longer"));
        CHECK(ds_jsonl_next(j, &r, err, sizeof err) == 0 && ds_jsonl_lines(j) == 7);
        ds_jsonl_close(j);
    }
    setenv("MTP_JSONL_MAX_LINE", "nonsense", 1); /* ignored: the full limit, so all are read */
    char zeros[54];
    memset(zeros, '0', 53), zeros[53] = 0;
    Exp full[] = {{zeros, 52, 52, 1}, {zeros, 53, 53, 2}, {zeros, 52, 52, 3}, {"b", 0, 1, 4}, {t1, n1, 1, 5}, {"c", 0, 1, 6}};
    char want7[80];
    snprintf(want7, sizeof want7, "over.jsonl:7: byte %zu: truncated object", s2);
    expect_file(p, full, 6, (Want){0, want7, 0, 7});
    unsetenv("MTP_JSONL_MAX_LINE");
    free(l1), free(l2), free(t1), free(t2), free(file);
}

/* Many short lines of varying length across many buffer refills: every record where it belongs. */
static void test_many_lines(void) {
    char p[256];
    size_t cap = 16u << 20, k = 0;
    char *file = malloc(cap);
    int n = 0;
    for (; k < (6u << 20); n++) {
        int len = (n * 7919) % 3000;
        k += (size_t)sprintf(file + k, "{\"question\": \"%d\", \"answer\": \"%0*d\"}%s", n, len, n % 10,
                             n % 3 == 0 ? "\r\n" : "\n");
    }
    put_file(p, "many.jsonl", file, k);
    DsJsonl *j;
    DsRecord r;
    char err[256], want[4096];
    CHECK(ds_jsonl_open(&j, p, NULL, err, sizeof err) == 0);
    int bad = 0, i = 0, rc;
    for (; (rc = ds_jsonl_next(j, &r, err, sizeof err)) == 1; i++) {
        int len = (i * 7919) % 3000, q = snprintf(want, sizeof want, "%d\n%0*d\n", i, len, i % 10);
        if (r.len != (size_t)q || memcmp(r.text, want, (size_t)q) != 0 || r.line != i + 1) bad++;
    }
    CHECK_MSG(rc == 0 && i == n && bad == 0, "rc %d (%s), %d of %d records, %d wrong", rc, rc < 0 ? err : "", i, n, bad);
    ds_jsonl_close(j);
    CHECK(ds_count_lines(p, err, sizeof err) == n);
    free(file);
}

/* ---------------------------------------------------------------- files */

static void test_files(void) {
    char p[256], err[512];
    snprintf(p, sizeof p, "%s/missing.jsonl", g_dir);
    expect_open_error(p, "cannot open");
    CHECK(ds_count_lines(p, err, sizeof err) == -1 && strstr(err, "missing.jsonl: cannot open"));
    expect_open_error(g_dir, "not a regular file");
    CHECK(ds_count_lines(g_dir, err, sizeof err) == -1 && strstr(err, "not a regular file"));
    snprintf(p, sizeof p, "%s/fifo", g_dir);
    if (mkfifo(p, 0600) == 0) { /* refused at once, not blocked waiting for a writer */
        expect_open_error(p, "not a regular file");
        CHECK(ds_count_lines(p, err, sizeof err) == -1 && strstr(err, "not a regular file"));
        unlink(p);
    }
    DsJsonl *j = NULL;
    CHECK(ds_jsonl_open(&j, "", NULL, err, sizeof err) == -1 && j == NULL && err[0]);
    CHECK(ds_jsonl_open(&j, "/nonexistent/x.jsonl", NULL, NULL, 0) == -1); /* no error buffer */

    /* line counts */
    const char *cases[][2] = {{"", "0"}, {"a", "1"}, {"a\n", "1"}, {"a\nb", "2"}, {"a\nb\n", "2"},
                              {"\n\n", "2"}, {"\n", "1"}, {"\r\n\r", "2"}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        put_str(p, "count.txt", cases[c][0]);
        long got = ds_count_lines(p, err, sizeof err);
        CHECK_MSG(got == atol(cases[c][1]), "'%s': %ld lines", cases[c][0], got);
    }
    /* across reads: a newline at the end of each 1 MiB block but not of the file */
    size_t n = (3u << 20) + 5;
    char *big = malloc(n);
    memset(big, 'x', n);
    for (size_t i = 1; i <= 3; i++) big[(i << 20) - 1] = '\n';
    put_file(p, "count.txt", big, n);
    CHECK(ds_count_lines(p, err, sizeof err) == 4);
    big[n - 1] = '\n';
    put_file(p, "count.txt", big, n);
    CHECK(ds_count_lines(p, err, sizeof err) == 4);
    free(big);
    unlink(p);
}

/* ---------------------------------------------------------------- GSM8K */

static void test_gsm8k(void) {
    const char *dir = getenv("MTP_SHARED_DATA");
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/gsm8k_train.jsonl", dir ? dir : "(MTP_SHARED_DATA unset)");
    if (!dir || access(path, R_OK) != 0) {
        fprintf(stderr, "test_records: %s not found, skipping the GSM8K check\n", path);
        return;
    }
    long lines = ds_count_lines(path, err, sizeof err);
    CHECK_MSG(lines == 7473, "%ld lines (%s)", lines, lines < 0 ? err : "");
    DsJsonl *j;
    CHECK(ds_jsonl_open(&j, path, NULL, err, sizeof err) == 0);
    if (!j) return;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    DsRecord r;
    long records = 0, no_answer = 0, bad_prompt = 0;
    size_t bytes = 0;
    int rc;
    while ((rc = ds_jsonl_next(j, &r, err, sizeof err)) == 1) {
        records++;
        bytes += r.len;
        if (!strstr(r.text, "####")) no_answer++;
        if (r.prompt_len < 2 || r.prompt_len > r.len || r.text[r.prompt_len - 1] != '\n' ||
            r.text[r.len - 1] != '\n')
            bad_prompt++;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK_MSG(rc == 0, "%s", err);
    long blank = lines - ds_jsonl_lines(j); /* the reader's line count matches the counter's */
    CHECK(blank == 0);
    /* every line of the file is a record (it has no blank lines) */
    CHECK_MSG(records == 7473 && ds_jsonl_skipped(j) == 0, "%ld records, %ld skipped", records, ds_jsonl_skipped(j));
    CHECK_MSG(no_answer == 0 && bad_prompt == 0, "%ld without ####, %ld bad prompts", no_answer, bad_prompt);
    struct stat st;
    stat(path, &st);
    double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    fprintf(stderr, "test_records: gsm8k_train.jsonl: %ld records, %zu text bytes, read at %.0f MB/s\n", records,
            bytes, (double)st.st_size / 1e6 / s);
    ds_jsonl_close(j);
}

static void rm_dir(void) {
    const char *names[] = {"gsm.jsonl", "text.jsonl", "esc.jsonl", "empty.jsonl", "names.jsonl", "x.jsonl",
                           "null.jsonl", "num.jsonl", "arr.jsonl", "nested.jsonl", "trail.jsonl", "nul.jsonl",
                           "skip.jsonl", "crlf.jsonl", "last.jsonl", "cut.jsonl", "cut2.jsonl", "blank.jsonl",
                           "none.jsonl", "blanks.jsonl", "long.jsonl", "over.jsonl", "many.jsonl"};
    char p[256];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", g_dir, names[i]);
        unlink(p);
    }
    CHECK_MSG(rmdir(g_dir) == 0, "rmdir %s: %s", g_dir, strerror(errno));
}

int main(void) {
    if (!mkdtemp(g_dir)) {
        fprintf(stderr, "test_records: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    test_render();
    test_bad_lines();
    test_line_ends();
    test_long_lines();
    test_many_lines();
    test_files();
    test_gsm8k();
    rm_dir();
    TEST_DONE();
}
