/* test_json.c - the JSON lines parser (datasets/json.c): what it extracts and what it refuses. */
#include <stdlib.h>
#include <string.h>

#include "datasets/ds.h"
#include "tests/test.h"

static const char *KEYS[3] = {"question", "answer", "text"};

/* Parses line; returns 0 or -1, leaving the message in err. */
static int parse(const char *line, DsJsonOut *o, char *err) {
    return ds_json_strings(line, strlen(line), KEYS, 3, o, err, 256);
}

static const char *val(const DsJsonOut *o, int k) { return o->off[k] < 0 ? NULL : o->data + o->off[k]; }

static void expect_ok(const char *line, const char *q, const char *a) {
    DsJsonOut o = {0};
    char err[256] = "";
    int rc = parse(line, &o, err);
    CHECK_MSG(rc == 0, "%s: unexpected error %s", line, err);
    if (rc == 0) {
        CHECK_MSG(q ? val(&o, 0) && strcmp(val(&o, 0), q) == 0 : val(&o, 0) == NULL, "%s: question '%s'", line,
                  val(&o, 0) ? val(&o, 0) : "(absent)");
        CHECK_MSG(a ? val(&o, 1) && strcmp(val(&o, 1), a) == 0 : val(&o, 1) == NULL, "%s: answer '%s'", line,
                  val(&o, 1) ? val(&o, 1) : "(absent)");
    }
    ds_json_out_free(&o);
}

static void expect_error(const char *line, const char *msg) {
    DsJsonOut o = {0};
    char err[256] = "";
    int rc = parse(line, &o, err);
    CHECK_MSG(rc == -1 && strstr(err, msg), "%s: expected an error with '%s', got rc %d '%s'", line, msg, rc, err);
    ds_json_out_free(&o);
}

int main(void) {
    /* the fields, in any order, others skipped whatever their type */
    expect_ok("{\"question\": \"What is 2+2?\", \"answer\": \"4\\n#### 4\"}", "What is 2+2?", "4\n#### 4");
    expect_ok("{\"answer\":\"b\",\"id\":17,\"question\":\"a\"}", "a", "b");
    expect_ok("{\"meta\": {\"x\": [1, 2.5e-3, -0, true, false, null, {\"question\": \"no\"}]}, \"question\": \"q\"}", "q",
              NULL);
    /* escapes, unicode, surrogate pairs, a NUL through \u0000 */
    expect_ok("{\"question\": \"\\\"\\\\\\/\\b\\f\\n\\r\\t\"}", "\"\\/\b\f\n\r\t", NULL);
    expect_ok("{\"question\": \"caf\\u00e9 \\u20AC \\ud83d\\ude00\"}", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", NULL);
    expect_ok("{\"question\": \"raw UTF-8: \xc3\xa9\"}", "raw UTF-8: \xc3\xa9", NULL);
    {
        DsJsonOut o = {0};
        char err[256];
        CHECK(parse("{\"question\": \"a\\u0000b\"}", &o, err) == 0);
        CHECK(o.n[0] == 3 && memcmp(val(&o, 0), "a\0b", 3) == 0);
        ds_json_out_free(&o);
    }
    /* empty and missing fields, null as absent, later duplicates win, CRLF and spaces around */
    expect_ok("{\"question\": \"\", \"answer\": \"\"}", "", "");
    expect_ok("{}", NULL, NULL);
    expect_ok("{\"question\": null}", NULL, NULL);
    expect_ok("{\"question\": \"first\", \"question\": \"second\"}", "second", NULL);
    expect_ok("  {\"question\" : \"q\" }  \r\n", "q", NULL);
    /* malformed lines: each error names what and the byte */
    expect_error("", "must be a JSON object");
    expect_error("[1, 2]", "must be a JSON object");
    expect_error("{\"question\": \"unterminated", "byte 27: unterminated string");
    expect_error("{\"question\": \"q\", \"answer\": \"a\"", "truncated object");
    expect_error("{\"question\": \"q\",", "truncated object");
    expect_error("{\"question\": \"q\" \"answer\": \"a\"}", "expected ',' or '}'");
    expect_error("{\"question\" \"q\"}", "expected ':'");
    expect_error("{question: \"q\"}", "expected a key string");
    expect_error("{\"question\": 42}", "field \"question\" is not a string");
    expect_error("{\"answer\": [\"a\"]}", "field \"answer\" is not a string");
    expect_error("{\"question\": \"a\\x\"}", "invalid escape \\x");
    expect_error("{\"question\": \"\\u12G4\"}", "invalid \\u escape");
    expect_error("{\"question\": \"\\ud83d\"}", "lone high surrogate");
    expect_error("{\"question\": \"\\ude00\"}", "lone low surrogate");
    expect_error("{\"question\": \"tab\there\"}", "control character 0x09");
    expect_error("{\"x\": tru}", "invalid value");
    expect_error("{\"x\": 01}", "expected ',' or '}'");
    expect_error("{\"x\": 1.}", "invalid number");
    expect_error("{\"x\": -}", "invalid value");
    expect_error("{\"x\": [1, 2}", "expected ',' or ']'");
    expect_error("{\"q\": \"a\"} trailing", "unexpected text after the object");
    /* nesting is bounded: a deep line is an error, not a stack overflow */
    {
        size_t depth = 100000;
        char *deep = malloc(depth + 16);
        strcpy(deep, "{\"x\": ");
        memset(deep + 6, '[', depth);
        deep[6 + depth] = 0;
        expect_error(deep, "nested deeper than");
        free(deep);
    }
    /* a 10 MB line: one 10 MB answer with escapes all through it */
    {
        size_t big = 10u << 20;
        char *line = malloc(big + 64), *want = malloc(big);
        size_t n = 0, w = 0;
        n += (size_t)sprintf(line, "{\"question\": \"q\", \"answer\": \"");
        while (n < big) {
            char c = w % 1000 == 999 ? '\n' : (char)('a' + w % 26);
            if (c == '\n') line[n++] = '\\', line[n++] = 'n';
            else line[n++] = c;
            want[w++] = c;
        }
        strcpy(line + n, "\"}");
        DsJsonOut o = {0};
        char err[256];
        CHECK(parse(line, &o, err) == 0);
        CHECK_MSG(o.n[1] == w && memcmp(val(&o, 1), want, w) == 0, "10 MB answer: %zu bytes, want %zu", o.n[1], w);
        ds_json_out_free(&o);
        free(line), free(want);
    }
    TEST_DONE();
}
