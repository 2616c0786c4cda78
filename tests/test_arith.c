/* test_arith.c - the built-in arithmetic corpus (levels 1..8: answers, the snprintf-like contract,
 * lengths, levels 1..5 frozen byte for byte) and the "#### <answer>" extraction. Every worked step
 * of every level is re-checked by test_datasets; here the answer is recomputed from the question. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/ds.h"
#include "tests/test.h"

#define E18 1000000000000000000ull

/* ---------------------------------------------------------------- levels 0..5 frozen */

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001B3ull;
    }
    return h;
}

/* Levels 0..5 must give the same bytes and draw the rng the same way as before levels 6..8 were
   added: corpora, trained models and resumed runs depend on it. The constants were produced by
   building the arith.c of commit 2837e80 (before levels 6..8, when DS_ARITH_MAX_DIFFICULTY was 5)
   with a copy of this loop: per level, seed 20240 + level, 2000 examples into a 16 KiB buffer,
   FNV-1a 64 of their concatenated bytes, the total byte count, and the rng's next word afterwards
   (which pins how many draws were made). */
static void test_frozen_levels(void) {
    static const struct {
        size_t bytes;
        uint64_t hash, next;
    } pin[6] = {
        {1595925, 0xeb739de98f6242b9ull, 0x5363765d108db2daull},
        {409550, 0x1bcd3ebf50af40b0ull, 0x2ed2df65ca23c433ull},
        {744591, 0x68445da97127d619ull, 0xeb57831efd2be013ull},
        {1236413, 0xdc6f223f84a2e231ull, 0xcefd910379f5fc9bull},
        {1783317, 0x005c337f706af1e6ull, 0x3849136339f549f5ull},
        {3474618, 0x4f026e010e3aed0aull, 0xf41b5da335cc0c09ull},
    };
    static char buf[16384];
    for (int d = 0; d <= 5; d++) {
        MtpRng rng;
        mtp_rng_seed(&rng, 20240 + (uint64_t)d);
        uint64_t h = 0xCBF29CE484222325ull;
        size_t total = 0;
        for (int i = 0; i < 2000; i++) {
            size_t len = ds_arith_example(buf, sizeof buf, &rng, d);
            h = fnv1a(h, buf, len < sizeof buf ? len : 0);
            total += len;
        }
        uint64_t next = mtp_rng_u64(&rng);
        CHECK_MSG(total == pin[d].bytes && h == pin[d].hash && next == pin[d].next,
                  "level %d changed: %zu bytes hash 0x%016llx next 0x%016llx", d, total, (unsigned long long)h,
                  (unsigned long long)next);
    }
    CHECK(DS_ARITH_MIXED_MAX == 5);
}

/* ---------------------------------------------------------------- answers of levels 1..8 */

/* an unsigned decimal below 10^18 at *s */
static int parse_num(const char **s, uint64_t *v) {
    const char *p = *s;
    uint64_t x = 0;
    if (*p < '0' || *p > '9') return 0;
    while (*p >= '0' && *p <= '9') {
        x = x * 10 + (uint64_t)(*p++ - '0');
        if (x >= E18) return 0;
    }
    *s = p;
    *v = x;
    return 1;
}

/* Recomputes the answer from the question line "Compute a op b op c.\n" (one operator kind, left
   to right). Returns 0 when the line is malformed or a value leaves 0..10^18 or a division is
   inexact; *line_end is set past the question line. */
static int question_answer(const char *text, uint64_t *ans, const char **line_end) {
    const char *p = text;
    uint64_t acc, v;
    char op = 0;
    if (strncmp(p, "Compute ", 8) != 0) return 0;
    p += 8;
    if (!parse_num(&p, &acc)) return 0;
    while (p[0] == ' ' && p[1] && p[2] == ' ') {
        if (op && p[1] != op) return 0;
        op = p[1];
        p += 3;
        if (!parse_num(&p, &v)) return 0;
        switch (op) {
        case '+': acc += v; break;
        case '-':
            if (v > acc) return 0;
            acc -= v;
            break;
        case '*':
            if (v && acc > (E18 - 1) / v) return 0;
            acc *= v;
            break;
        case '/':
            if (v == 0 || acc % v) return 0;
            acc /= v;
            break;
        default: return 0;
        }
        if (acc >= E18) return 0;
    }
    if (!op || strncmp(p, ".\n", 2) != 0) return 0;
    *ans = acc;
    *line_end = p + 2;
    return 1;
}

/* the whole example: printable lines each ending in '\n', and a last line "#### <answer>" whose
   answer is the one recomputed from the question (and the one ds_answer_extract reads) */
static int example_ok(const char *buf, size_t len, int level) {
    uint64_t want;
    const char *body;
    if (len < 2 || strlen(buf) != len || buf[len - 1] != '\n' || !question_answer(buf, &want, &body)) {
        fprintf(stderr, "level %d: malformed example:\n%.300s\n", level, buf);
        return 0;
    }
    for (size_t i = 0; i < len; i++)
        if (!(buf[i] == '\n' || (buf[i] >= 0x20 && buf[i] < 0x7f))) return 0;
    char tail[40];
    snprintf(tail, sizeof tail, "\n#### %llu\n", (unsigned long long)want);
    size_t tl = strlen(tail);
    if (len < tl || strcmp(buf + len - tl, tail) != 0 || (size_t)(body - buf) > len - tl) {
        fprintf(stderr, "level %d: want the last line \"%s\" in:\n%s", level, tail + 1, buf);
        return 0;
    }
    char got[32];
    int n = ds_answer_extract(buf, len, got, sizeof got);
    if (n != (int)(tl - 7) || strtoull(got, NULL, 10) != want) { /* tail is "\n#### " digits "\n" */
        fprintf(stderr, "level %d: ds_answer_extract gave %d \"%s\", want %llu\n", level, n, got,
                (unsigned long long)want);
        return 0;
    }
    return 1;
}

static void test_answers_and_lengths(void) {
    static char buf[32768];
    double mean[DS_ARITH_MAX_DIFFICULTY + 1];
    for (int d = 1; d <= DS_ARITH_MAX_DIFFICULTY; d++) {
        int bad = 0, n = 0;
        size_t mn = SIZE_MAX, mx = 0;
        double total = 0;
        for (uint64_t seed = 1; seed <= 40 && bad < 3; seed++) {
            MtpRng rng;
            mtp_rng_seed(&rng, seed * 7919 + (uint64_t)d);
            for (int i = 0; i < 50; i++, n++) {
                size_t len = ds_arith_example(buf, sizeof buf, &rng, d);
                if (len >= sizeof buf || !example_ok(buf, len, d)) {
                    bad++;
                    break;
                }
                total += (double)len;
                if (len < mn) mn = len;
                if (len > mx) mx = len;
            }
        }
        CHECK_MSG(bad == 0, "level %d: %d bad examples", d, bad);
        mean[d] = total / n;
        fprintf(stderr, "level %d: %d examples, mean %.0f bytes, min %zu, max %zu\n", d, n, mean[d], mn, mx);
        CHECK_MSG(mx < 16384, "level %d: longest %zu", d, mx); /* test_datasets' buffer */
    }
    for (int d = 2; d <= DS_ARITH_MAX_DIFFICULTY; d++) CHECK_MSG(mean[d] > mean[d - 1], "level %d not longer", d);
    CHECK_MSG(mean[6] > 1500 && mean[6] < 3000, "level 6 mean %.0f", mean[6]);
    CHECK_MSG(mean[7] > 2500 && mean[7] < 4500, "level 7 mean %.0f", mean[7]);
    CHECK_MSG(mean[8] > 4000 && mean[8] < 7500, "level 8 mean %.0f", mean[8]);
}

/* ---------------------------------------------------------------- snprintf-like contract */

static void test_contract(void) {
    static char full[32768], part[32768];
    for (int d = 0; d <= DS_ARITH_MAX_DIFFICULTY; d++) {
        for (uint64_t seed = 1; seed <= 5; seed++) {
            MtpRng r0;
            mtp_rng_seed(&r0, seed + 100 * (uint64_t)d);
            MtpRng r_full = r0;
            size_t len = ds_arith_example(full, sizeof full, &r_full, d);
            CHECK(len > 0 && len < sizeof full && full[len] == '\0');
            size_t caps[] = {1, 2, 20, len / 2, len - 1, len, len + 1};
            for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
                size_t cap = caps[c];
                MtpRng r = r0;
                memset(part, 'x', cap + 2);
                size_t got = ds_arith_example(part, cap, &r, d);
                size_t kept = len < cap ? len : cap - 1;
                CHECK_MSG(got == len, "level %d cap %zu: %zu != %zu", d, cap, got, len);
                CHECK_MSG(part[kept] == '\0' && memcmp(part, full, kept) == 0 && part[cap] == 'x',
                          "level %d cap %zu: wrong prefix or terminator", d, cap);
                CHECK_MSG(memcmp(&r, &r_full, sizeof r) == 0, "level %d cap %zu: rng differs", d, cap);
            }
            MtpRng r = r0;
            CHECK(ds_arith_example(NULL, 0, &r, d) == len && memcmp(&r, &r_full, sizeof r) == 0);
            r = r0;
            CHECK(ds_arith_example(part, 0, &r, d) == len && memcmp(&r, &r_full, sizeof r) == 0);
        }
    }
    /* levels outside 0..8: nothing written, "" when there is room, rng untouched */
    int bad_levels[] = {-1, DS_ARITH_MAX_DIFFICULTY + 1, 100};
    for (size_t i = 0; i < sizeof bad_levels / sizeof bad_levels[0]; i++) {
        MtpRng r0, r;
        mtp_rng_seed(&r0, 9);
        r = r0;
        strcpy(part, "junk");
        CHECK(ds_arith_example(part, sizeof part, &r, bad_levels[i]) == 0 && part[0] == '\0');
        CHECK(memcmp(&r, &r0, sizeof r) == 0);
        CHECK(ds_arith_example(NULL, 0, &r, bad_levels[i]) == 0);
    }
    CHECK(DS_ARITH_MAX_DIFFICULTY == 8);
}

/* ---------------------------------------------------------------- ds_answer_extract */

/* extracts from a C string literal of n bytes (NULs allowed) and compares with want (NULL: -1) */
static void expect_answer(const char *text, size_t n, const char *want, int line) {
    char out[64];
    memset(out, 'x', sizeof out);
    int r = ds_answer_extract(text, n, out, sizeof out);
    if (want) {
        CHECK_MSG(r == (int)strlen(want) && strcmp(out, want) == 0, "line %d: got %d \"%s\", want \"%s\"", line, r,
                  r >= 0 ? out : "", want);
    } else {
        CHECK_MSG(r == -1 && out[0] == '\0', "line %d: got %d \"%s\", want -1", line, r, out);
    }
}

#define EXPECT(text, want) expect_answer(text, sizeof(text) - 1, want, __LINE__)

static void test_answer_extract(void) {
    /* GSM8K-like */
    EXPECT("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72", "72");
    EXPECT("She pays 1,000 + 234.\n#### 1,234\n", "1234");
    EXPECT("####72", "72");
    EXPECT("#### 72\n", "72");
    EXPECT("#### \t 72 \t\nmore text after\n", "72");
    EXPECT("#### 1,234,567.\n", "1234567");
    EXPECT("#### +5\n", "5");
    EXPECT("#### -0\n", "0");
    EXPECT("#### -000\n", "0");
    EXPECT("#### -0.\n", "0");
    EXPECT("#### 007\n", "7");
    EXPECT("#### 0\n", "0");
    EXPECT("#### 000\n", "0");
    EXPECT("#### -007\n", "-7");
    EXPECT("#### 3.50\n", "3.50");
    EXPECT("#### 003.50\n", "3.50");
    EXPECT("#### 0.5\n", "0.5");
    EXPECT("#### -0.5\n", "-0.5");
    EXPECT("#### -12\n", "-12");
    EXPECT("#### 5.\n", "5");
    /* not numbers: only the separator, '+' and '.' rules */
    EXPECT("#### $5 apples\n", "$5 apples");
    EXPECT("#### 007 apples.\n", "007 apples");
    EXPECT("#### +1,000 km\n", "1000 km");
    EXPECT("#### 1.2.3\n", "1.2.3");
    EXPECT("#### 1.\n", "1");
    /* the last marker wins, even an unfinished one at the end of the text */
    EXPECT("#### 1\n#### 2\nrecheck\n#### 3\n", "3");
    EXPECT("#### 1\n#### ", NULL);
    EXPECT("#####5\n", "5");
    /* no marker, empty answers */
    EXPECT("The answer is 72.\n", NULL);
    EXPECT("### 72\n", NULL);
    EXPECT("", NULL);
    EXPECT("#### \n", NULL);
    EXPECT("####\n72\n", NULL);
    EXPECT("####", NULL);
    EXPECT("#### ,\n", NULL);
    EXPECT("#### +\n", NULL);
    EXPECT("#### .\n", NULL);
    /* CRLF lines */
    EXPECT("Total\r\n#### 1,234\r\n", "1234");
    EXPECT("#### 72 \r\n", "72");
    EXPECT("#### \r\n", NULL);
    /* embedded NUL bytes: before the marker they are just text; in the answer they make it none
       (callers compare C strings: "330\0" + "12" would count as "330"; found by fuzz_jsonl) */
    EXPECT("a\0b\0#### 42\n\0tail", "42");
    EXPECT("#### 1\n\0#### 9\n", "9");
    EXPECT("#### a\0b\n", NULL);
    EXPECT("#### 330\0" "12\n", NULL);
    EXPECT("#### 330\n\0", "330");
    /* only n bytes are read: a marker past n does not count */
    {
        static const char t[] = "no answer #### 5\n";
        char out[8];
        CHECK(ds_answer_extract(t, 10, out, sizeof out) == -1 && out[0] == '\0');
        CHECK(ds_answer_extract(t, sizeof t - 1, out, sizeof out) == 1 && strcmp(out, "5") == 0);
        CHECK(ds_answer_extract(t, 16, out, sizeof out) == 1 && strcmp(out, "5") == 0);
        CHECK(ds_answer_extract(t, 15, out, sizeof out) == -1 && out[0] == '\0');
        CHECK(ds_answer_extract(NULL, 0, out, sizeof out) == -1 && out[0] == '\0');
    }
    /* capacity: the normalized answer must fit in cap-1 bytes */
    {
        static const char t[] = "#### 1,234\n";
        char out[8];
        memset(out, 'x', sizeof out);
        CHECK(ds_answer_extract(t, sizeof t - 1, out, 1) == -1 && out[0] == '\0');
        memset(out, 'x', sizeof out);
        CHECK(ds_answer_extract(t, sizeof t - 1, out, 4) == -1 && out[0] == '\0' && out[4] == 'x');
        CHECK(ds_answer_extract(t, sizeof t - 1, out, 5) == 4 && strcmp(out, "1234") == 0);
        static const char z[] = "#### 000000000007\n"; /* longer raw than normalized */
        CHECK(ds_answer_extract(z, sizeof z - 1, out, 2) == 1 && strcmp(out, "7") == 0);
        CHECK(ds_answer_extract(t, sizeof t - 1, NULL, 0) == -1);
    }
}

int main(void) {
    test_frozen_levels();
    test_answers_and_lengths();
    test_contract();
    test_answer_extract();
    TEST_DONE();
}
