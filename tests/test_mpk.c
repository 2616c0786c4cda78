/* test_mpk.c - the bounded msgpack reader, file mapping, atomic writer and CRC-32.
 *
 * One document holding every msgpack encoding is packed with msgpack-c and read back with
 * MpkReader. A "big" version uses real sizes (msgpack-c picks str32 only for >= 65536 bytes); a
 * compact version writes the 32-bit-length encodings by hand with small lengths, so that reading
 * every one of its prefixes stays cheap. Every prefix, crafted header and random mutation is read
 * from a malloc'd buffer of exactly its size, so AddressSanitizer catches any read past the end. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* mkdtemp */
#endif

#include "mtp/core/mpk.h"
#include "tests/test.h"

#include <dirent.h>
#include <errno.h>
#include <msgpack/sbuffer.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define BIG_LEN 70000   /* > 65535: str32/bin32/ext32 */
#define BIG_COUNT 65536 /* > 65535: array32/map32 */

static uint8_t pattern(size_t i, size_t len) { return (uint8_t)(i * 7 + len); }

/* Bytes straight into the buffer, for the encodings msgpack-c only picks for huge sizes. */
static void raw(msgpack_sbuffer *sb, const void *p, size_t n) { msgpack_sbuffer_write(sb, (const char *)p, n); }

static void pack_cstr(msgpack_packer *pk, const char *s) { msgpack_pack_str_with_body(pk, s, strlen(s)); }

static void pack_filled_str(msgpack_packer *pk, size_t len) {
    char *s = malloc(len + 1);
    for (size_t i = 0; i < len; i++) s[i] = (char)('a' + pattern(i, len) % 26);
    msgpack_pack_str_with_body(pk, s, len);
    free(s);
}

static void pack_filled_bin(msgpack_packer *pk, size_t len, int ext, int8_t type) {
    uint8_t *b = malloc(len + 1);
    for (size_t i = 0; i < len; i++) b[i] = pattern(i, len);
    if (ext) msgpack_pack_ext_with_body(pk, b, len, type);
    else msgpack_pack_bin_with_body(pk, b, len);
    free(b);
}

static const int64_t ints[] = {-1, -32, -33, -200, -40000, -3000000000LL, INT64_MIN};
static const uint64_t uints[] = {0, 127, 200, 60000, 4000000000ULL, UINT64_MAX};
static const size_t ext_lens[] = {1, 2, 4, 8, 16, 3, 300};

static void pack_doc(msgpack_sbuffer *sb, int big) {
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 14);

    pack_cstr(&pk, "nil");
    msgpack_pack_nil(&pk);

    pack_cstr(&pk, "bools");
    msgpack_pack_array(&pk, 2);
    msgpack_pack_true(&pk);
    msgpack_pack_false(&pk);

    /* smallest encodings chosen by msgpack-c, then every fixed width */
    pack_cstr(&pk, "uints");
    msgpack_pack_array(&pk, 6 + 4);
    for (int i = 0; i < 6; i++) msgpack_pack_uint64(&pk, uints[i]);
    msgpack_pack_fix_uint8(&pk, 5);
    msgpack_pack_fix_uint16(&pk, 5);
    msgpack_pack_fix_uint32(&pk, 5);
    msgpack_pack_fix_uint64(&pk, 5);

    pack_cstr(&pk, "ints");
    msgpack_pack_array(&pk, 7 + 6);
    for (int i = 0; i < 7; i++) msgpack_pack_int64(&pk, ints[i]);
    msgpack_pack_fix_int8(&pk, -5);
    msgpack_pack_fix_int16(&pk, -300);
    msgpack_pack_fix_int32(&pk, -5);
    msgpack_pack_fix_int64(&pk, -5);
    msgpack_pack_fix_int8(&pk, 7);              /* signed encoding of a non-negative value */
    msgpack_pack_fix_int64(&pk, INT64_MAX);

    pack_cstr(&pk, "f32");
    msgpack_pack_float(&pk, -0.1f);
    pack_cstr(&pk, "f64");
    msgpack_pack_double(&pk, 3.141592653589793);

    pack_cstr(&pk, "strs"); /* fixstr, fixstr, str8, str16, str32 */
    msgpack_pack_array(&pk, 5);
    pack_cstr(&pk, "");
    pack_cstr(&pk, "abc");
    pack_filled_str(&pk, 40);
    pack_filled_str(&pk, 300);
    if (big) pack_filled_str(&pk, BIG_LEN);
    else raw(sb, "\xdb\x00\x00\x00\x05hello", 10);

    pack_cstr(&pk, "bins"); /* bin8 (empty), bin8, bin16, bin32 */
    msgpack_pack_array(&pk, 4);
    pack_filled_bin(&pk, 0, 0, 0);
    pack_filled_bin(&pk, 10, 0, 0);
    pack_filled_bin(&pk, 300, 0, 0);
    if (big) pack_filled_bin(&pk, BIG_LEN, 0, 0);
    else raw(sb, "\xc6\x00\x00\x00\x03\x03\x0a\x11", 8); /* = pattern(i, 3) */

    pack_cstr(&pk, "arr16");
    msgpack_pack_array(&pk, 20);
    for (int i = 0; i < 20; i++) msgpack_pack_uint32(&pk, (uint32_t)i);

    pack_cstr(&pk, "arr32");
    if (big) {
        msgpack_pack_array(&pk, BIG_COUNT);
        for (int i = 0; i < BIG_COUNT; i++) msgpack_pack_uint32(&pk, (uint32_t)i & 0x7f);
    } else {
        raw(sb, "\xdd\x00\x00\x00\x03\x00\x01\x02", 8);
    }

    pack_cstr(&pk, "map16");
    msgpack_pack_map(&pk, 16);
    for (int i = 0; i < 16; i++) msgpack_pack_uint32(&pk, (uint32_t)i), msgpack_pack_int32(&pk, -(i + 1));

    pack_cstr(&pk, "map32");
    if (big) {
        msgpack_pack_map(&pk, BIG_COUNT);
        for (int i = 0; i < BIG_COUNT; i++) msgpack_pack_uint32(&pk, (uint32_t)i), msgpack_pack_nil(&pk);
    } else {
        raw(sb, "\xdf\x00\x00\x00\x02\x00\xc0\x01\xc0", 9);
    }

    pack_cstr(&pk, "ext"); /* fixext1/2/4/8/16, ext8, ext16, ext32; types 1..8 */
    msgpack_pack_array(&pk, 8);
    for (int i = 0; i < 7; i++) pack_filled_bin(&pk, ext_lens[i], 1, (int8_t)(i + 1));
    if (big) pack_filled_bin(&pk, BIG_LEN, 1, 8);
    else raw(sb, "\xc9\x00\x00\x00\x02\x08\x02\x09", 8); /* = pattern(i, 2) */

    pack_cstr(&pk, "nested"); /* [[[]], {"a": {}}, [nil]] */
    msgpack_pack_array(&pk, 3);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_array(&pk, 0);
    msgpack_pack_map(&pk, 1);
    pack_cstr(&pk, "a");
    msgpack_pack_map(&pk, 0);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_nil(&pk);
}

/* Reading the document back: -1 when the reader failed (r->failed set), -2 when a value read
 * fine but differs (a reader bug: must never happen, truncated or not), 0 when all matched. */
#define TRY(x) \
    do { if ((x) != 0) return -1; } while (0)
#define SAME(cond) \
    do { if (!(cond)) { if (verbose) fprintf(stderr, "mismatch at line %d: %s\n", __LINE__, #cond); return -2; } } while (0)
/* mpk_peek says MPK_INVALID at a truncated value; reading it then fails, which is not a mismatch */
#define SAME_PEEK(t) \
    do {                                                                        \
        if (mpk_peek(r) != (t)) {                                               \
            MpkReader probe_ = *r;                                              \
            if (mpk_skip(&probe_) != 0) return *r = probe_, -1;                 \
            SAME(mpk_peek(r) == (t));                                           \
        }                                                                       \
    } while (0)

static int verbose = 1; /* off while fuzzing, where mismatches are expected */

static int read_key(MpkReader *r, const char *key) {
    const char *s;
    uint32_t n;
    TRY(mpk_read_str(r, &s, &n));
    SAME(mpk_str_eq(s, n, key));
    return 0;
}

static int check_bytes(const uint8_t *p, uint32_t n, size_t want_len, int letters) {
    if (n != want_len) return 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t want = letters ? (uint8_t)('a' + pattern(i, n) % 26) : pattern(i, n);
        if (p[i] != want) return 0;
    }
    return 1;
}

static int read_doc(MpkReader *r, int big) {
    uint32_t n, len;
    uint64_t u;
    int64_t i64;
    double d;
    int b, rc;
    const char *s;
    const uint8_t *data;

    TRY(mpk_read_map(r, &n));
    SAME(n == 14);

    if ((rc = read_key(r, "nil"))) return rc;
    SAME_PEEK(MPK_NIL);
    TRY(mpk_read_nil(r));

    if ((rc = read_key(r, "bools"))) return rc;
    TRY(mpk_read_array(r, &n));
    SAME(n == 2);
    SAME_PEEK(MPK_BOOL);
    TRY(mpk_read_bool(r, &b));
    SAME(b == 1);
    TRY(mpk_read_bool(r, &b));
    SAME(b == 0);

    if ((rc = read_key(r, "uints"))) return rc;
    TRY(mpk_read_array(r, &n));
    SAME(n == 10);
    for (int i = 0; i < 10; i++) {
        SAME_PEEK(MPK_UINT);
        TRY(mpk_read_uint(r, &u));
        SAME(u == (i < 6 ? uints[i] : 5));
    }

    if ((rc = read_key(r, "ints"))) return rc;
    TRY(mpk_read_array(r, &n));
    SAME(n == 13);
    static const int64_t fixed[] = {-5, -300, -5, -5, 7, INT64_MAX};
    for (int i = 0; i < 13; i++) {
        int64_t want = i < 7 ? ints[i] : fixed[i - 7];
        SAME_PEEK(want < 0 ? MPK_INT : MPK_UINT);
        TRY(mpk_read_int(r, &i64));
        SAME(i64 == want);
    }

    if ((rc = read_key(r, "f32"))) return rc;
    SAME_PEEK(MPK_FLOAT);
    TRY(mpk_read_double(r, &d));
    SAME(d == (double)-0.1f);
    if ((rc = read_key(r, "f64"))) return rc;
    TRY(mpk_read_double(r, &d));
    SAME(d == 3.141592653589793);

    if ((rc = read_key(r, "strs"))) return rc;
    TRY(mpk_read_array(r, &n));
    SAME(n == 5);
    TRY(mpk_read_str(r, &s, &len));
    SAME(len == 0);
    TRY(mpk_read_str(r, &s, &len));
    SAME(len == 3 && memcmp(s, "abc", 3) == 0);
    TRY(mpk_read_str(r, &s, &len));
    SAME(check_bytes((const uint8_t *)s, len, 40, 1));
    TRY(mpk_read_str(r, &s, &len));
    SAME(check_bytes((const uint8_t *)s, len, 300, 1));
    SAME_PEEK(MPK_STR);
    TRY(mpk_read_str(r, &s, &len));
    SAME(big ? check_bytes((const uint8_t *)s, len, BIG_LEN, 1) : mpk_str_eq(s, len, "hello"));

    if ((rc = read_key(r, "bins"))) return rc;
    TRY(mpk_read_array(r, &n));
    SAME(n == 4);
    static const size_t bin_lens[] = {0, 10, 300, 3};
    for (int i = 0; i < 4; i++) {
        SAME_PEEK(MPK_BIN);
        TRY(mpk_read_bin(r, &data, &len));
        SAME(check_bytes(data, len, i == 3 && big ? BIG_LEN : bin_lens[i], 0));
    }

    if ((rc = read_key(r, "arr16"))) return rc;
    SAME_PEEK(MPK_ARRAY);
    TRY(mpk_read_array(r, &n));
    SAME(n == 20);
    for (uint32_t i = 0; i < 20; i++) {
        TRY(mpk_read_uint(r, &u));
        SAME(u == i);
    }

    if ((rc = read_key(r, "arr32"))) return rc;
    TRY(mpk_read_array(r, &n));
    SAME(n == (big ? BIG_COUNT : 3));
    for (uint32_t i = 0; i < n; i++) {
        TRY(mpk_read_uint(r, &u));
        SAME(u == (i & 0x7f));
    }

    if ((rc = read_key(r, "map16"))) return rc;
    SAME_PEEK(MPK_MAP);
    TRY(mpk_read_map(r, &n));
    SAME(n == 16);
    for (int64_t i = 0; i < 16; i++) {
        TRY(mpk_read_uint(r, &u));
        SAME(u == (uint64_t)i);
        TRY(mpk_read_int(r, &i64));
        SAME(i64 == -(i + 1));
    }

    if ((rc = read_key(r, "map32"))) return rc;
    TRY(mpk_read_map(r, &n));
    SAME(n == (big ? BIG_COUNT : 2));
    for (uint32_t i = 0; i < n; i++) {
        TRY(mpk_read_uint(r, &u));
        SAME(u == i);
        TRY(mpk_read_nil(r));
    }

    if ((rc = read_key(r, "ext"))) return rc;
    TRY(mpk_read_array(r, &n));
    SAME(n == 8);
    for (int i = 0; i < 8; i++) {
        int8_t type;
        SAME_PEEK(MPK_EXT);
        TRY(mpk_read_ext(r, &type, &data, &len));
        SAME(type == i + 1);
        SAME(check_bytes(data, len, i < 7 ? ext_lens[i] : big ? BIG_LEN : 2, 0));
    }

    if ((rc = read_key(r, "nested"))) return rc;
    TRY(mpk_read_array(r, &n));
    SAME(n == 3);
    TRY(mpk_read_array(r, &n));
    SAME(n == 1);
    TRY(mpk_read_array(r, &n));
    SAME(n == 0);
    TRY(mpk_read_map(r, &n));
    SAME(n == 1);
    if ((rc = read_key(r, "a"))) return rc;
    TRY(mpk_read_map(r, &n));
    SAME(n == 0);
    TRY(mpk_skip(r)); /* [nil] */
    return 0;
}

/* The reader's error must be one line starting "byte offset N:" with N <= limit. */
static int err_ok(const MpkReader *r, size_t limit) {
    size_t off;
    if (!r->failed || sscanf(r->err, "byte offset %zu:", &off) != 1 || off > limit) return 0;
    return strchr(r->err, '\n') == NULL;
}

/* Record the first byte of every value in the buffer: container headers are read, so their
 * elements come next in the walk; everything else is skipped whole. */
static void collect_markers(const uint8_t *data, size_t n, int seen[256]) {
    MpkReader r;
    uint32_t count;
    mpk_reader_init(&r, data, n);
    while (mpk_left(&r) > 0 && !r.failed) {
        seen[*r.p] = 1;
        MpkType t = mpk_peek(&r);
        if (t == MPK_ARRAY) mpk_read_array(&r, &count);
        else if (t == MPK_MAP) mpk_read_map(&r, &count);
        else mpk_skip(&r);
    }
}

static void test_round_trip(int big) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_doc(&sb, big);
    MpkReader r;
    mpk_reader_init(&r, sb.data, sb.size);
    int rc = read_doc(&r, big);
    CHECK_MSG(rc == 0, "big=%d rc=%d err=%s", big, rc, r.err);
    CHECK(mpk_left(&r) == 0 && mpk_offset(&r) == sb.size);
    CHECK(mpk_peek(&r) == MPK_INVALID);
    CHECK(mpk_read_nil(&r) == -1 && strstr(r.err, "truncated (end of data)"));

    /* the document holds every msgpack encoding (0xc1 is reserved) */
    int seen[256] = {0};
    collect_markers((const uint8_t *)sb.data, sb.size, seen);
    for (int b = 0xc0; b <= 0xdf; b++) CHECK_MSG(seen[b] || b == 0xc1, "big=%d: no value encoded as 0x%02x", big, b);
    CHECK(seen[0x00] && seen[0x7f] && seen[0xff] && seen[0xe0]);                 /* fixints */
    CHECK(seen[0x80] && seen[0x81] && seen[0x90] && seen[0x93] && seen[0xa0]); /* fixmap/array/str */

    mpk_reader_init(&r, sb.data, sb.size);
    CHECK(mpk_peek(&r) == MPK_MAP);
    CHECK(mpk_skip(&r) == 0 && mpk_offset(&r) == sb.size);
    msgpack_sbuffer_destroy(&sb);
}

/* Every proper prefix of the document must fail with a "truncated" error inside the prefix, both
 * when read field by field and when skipped; step > 1 samples the prefixes of the big document. */
static void test_truncation(int big, size_t step) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_doc(&sb, big);
    int bad = 0;
    for (size_t len = 0; len < sb.size; len += (len + 64 >= sb.size ? 1 : step)) {
        uint8_t *copy = malloc(len ? len : 1);
        memcpy(copy, sb.data, len);
        MpkReader r;
        mpk_reader_init(&r, len ? copy : NULL, len);
        int rc = read_doc(&r, big);
        if (rc != -1 || !err_ok(&r, len) || !strstr(r.err, "truncated")) {
            if (bad++ < 5) fprintf(stderr, "prefix %zu: rc=%d err=%s\n", len, rc, r.err);
        }
        mpk_reader_init(&r, copy, len);
        if (mpk_skip(&r) != -1 || !err_ok(&r, len) || !strstr(r.err, "truncated") || mpk_offset(&r) != 0) {
            if (bad++ < 5) fprintf(stderr, "skip prefix %zu: err=%s\n", len, r.err);
        }
        free(copy);
    }
    CHECK_MSG(bad == 0, "big=%d: %d bad prefixes of %zu", big, bad, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

/* Run one crafted buffer (copied to exact size) through a read and through mpk_skip. */
static void expect_crafted_fail(const char *what, const void *bytes, size_t n, const char *needle) {
    uint8_t *copy = malloc(n);
    memcpy(copy, bytes, n);
    MpkReader r;
    uint32_t count;
    const uint8_t *data;
    const char *s;
    uint8_t b0 = copy[0];
    mpk_reader_init(&r, copy, n);
    int rc;
    if (b0 == 0xdd) rc = mpk_read_array(&r, &count);
    else if (b0 == 0xdf) rc = mpk_read_map(&r, &count);
    else if (b0 == 0xc6) rc = mpk_read_bin(&r, &data, &count);
    else if (b0 == 0xdb) rc = mpk_read_str(&r, &s, &count);
    else rc = mpk_read_nil(&r);
    CHECK_MSG(rc == -1 && err_ok(&r, 0) && strstr(r.err, needle), "%s: rc=%d err=%s", what, rc, r.err);
    mpk_reader_init(&r, copy, n);
    rc = mpk_skip(&r);
    CHECK_MSG(rc == -1 && err_ok(&r, n) && strstr(r.err, needle), "%s skip: rc=%d err=%s", what, rc, r.err);
    free(copy);
}

static void test_crafted(void) {
    expect_crafted_fail("array32", "\xdd\xff\xff\xff\xff\x00\x00", 7, "array32 of 4294967295 elements, 2 bytes left");
    expect_crafted_fail("map32", "\xdf\xff\xff\xff\xff\x00\x00", 7, "map32 of 4294967295 pairs");
    expect_crafted_fail("bin32", "\xc6\xff\xff\xff\xff\x00\x00", 7, "bin32 of 4294967295 bytes, 2 left");
    expect_crafted_fail("str32", "\xdb\xff\xff\xff\xff\x61", 6, "str32 of 4294967295 bytes, 1 left");
    expect_crafted_fail("ext32", "\xc9\xff\xff\xff\xff\x01\x00", 7, "ext32 of 4294967295 bytes");
    expect_crafted_fail("short header", "\xdd\xff\xff", 3, "array32 header needs 5 bytes, 3 left");
    expect_crafted_fail("0xc1", "\xc1", 1, "0xc1");

    MpkReader r;
    uint32_t n;
    mpk_reader_init(&r, "\x92\xc0\xc1", 3);
    CHECK(mpk_skip(&r) == -1 && strstr(r.err, "byte offset 2: invalid byte 0xc1") && mpk_offset(&r) == 0);

    /* a map of 3 pairs needs 6 bytes: 5 left is already an error, 6 is fine */
    mpk_reader_init(&r, "\x83\x00\x00\x00\x00\x00", 6);
    CHECK(mpk_read_map(&r, &n) == -1 && strstr(r.err, "fixmap of 3 pairs, 5 bytes left"));
    mpk_reader_init(&r, "\x83\x00\x00\x00\x00\x00\x00", 7);
    CHECK(mpk_read_map(&r, &n) == 0 && n == 3);

    /* 0xc1 peeks as invalid */
    mpk_reader_init(&r, "\xc1", 1);
    CHECK(mpk_peek(&r) == MPK_INVALID);

    /* a million nested fixarrays: the skip stops at the depth limit, iteratively */
    size_t deep = 1000000;
    uint8_t *nest = malloc(deep);
    memset(nest, 0x91, deep);
    mpk_reader_init(&r, nest, deep);
    CHECK_MSG(mpk_skip(&r) == -1 && strstr(r.err, "byte offset 64: containers nested deeper than 64"), "%s", r.err);
    CHECK(mpk_offset(&r) == 0);
    free(nest);

    /* exactly MPK_MAX_DEPTH levels is fine, one more is not */
    uint8_t buf[MPK_MAX_DEPTH + 2];
    memset(buf, 0x91, MPK_MAX_DEPTH);
    buf[MPK_MAX_DEPTH] = 0xc0;
    mpk_reader_init(&r, buf, MPK_MAX_DEPTH + 1);
    CHECK_MSG(mpk_skip(&r) == 0 && mpk_left(&r) == 0, "%s", r.err);
    memset(buf, 0x91, MPK_MAX_DEPTH + 1);
    buf[MPK_MAX_DEPTH + 1] = 0xc0;
    mpk_reader_init(&r, buf, MPK_MAX_DEPTH + 2);
    CHECK(mpk_skip(&r) == -1 && strstr(r.err, "deeper"));
    /* empty containers do not open a level */
    memset(buf, 0x91, MPK_MAX_DEPTH);
    buf[MPK_MAX_DEPTH] = 0x90;
    mpk_reader_init(&r, buf, MPK_MAX_DEPTH + 1);
    CHECK(mpk_skip(&r) == 0);
}

static void test_errors(void) {
    MpkReader r;
    uint64_t u;
    int64_t i;
    double d;
    const char *s;
    uint32_t n;

    /* type mismatch names both types; nothing is consumed */
    mpk_reader_init(&r, "\xa3" "abc", 4);
    CHECK(mpk_read_map(&r, &n) == -1 && strcmp(r.err, "byte offset 0: expected map, found str") == 0);
    CHECK(mpk_offset(&r) == 0 && n == 0);
    /* sticky: a valid read after an error still fails and keeps the first message */
    CHECK(mpk_read_str(&r, &s, &n) == -1 && s == NULL && strstr(r.err, "expected map"));
    CHECK(mpk_peek(&r) == MPK_INVALID);
    CHECK(mpk_skip(&r) == -1 && strstr(r.err, "expected map"));

    mpk_reader_init(&r, "\xff", 1);
    CHECK(mpk_read_uint(&r, &u) == -1 && strstr(r.err, "non-negative") && strstr(r.err, "-1"));
    mpk_reader_init(&r, "\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 9);
    CHECK(mpk_read_int(&r, &i) == -1 && strstr(r.err, "does not fit int64"));
    mpk_reader_init(&r, "\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 9);
    CHECK(mpk_read_double(&r, &d) == 0 && d == 18446744073709551615.0);
    mpk_reader_init(&r, "\xd0\x00", 2); /* int8 holding 0 */
    CHECK(mpk_peek(&r) == MPK_UINT && mpk_read_uint(&r, &u) == 0 && u == 0);
    mpk_reader_init(&r, "\xd3\x80\x00\x00\x00\x00\x00\x00\x00", 9);
    CHECK(mpk_peek(&r) == MPK_INT && mpk_read_int(&r, &i) == 0 && i == INT64_MIN);
    mpk_reader_init(&r, "\xd3\x80", 2); /* truncated int64 */
    CHECK(mpk_read_int(&r, &i) == -1 && strstr(r.err, "int64 needs 9 bytes, 2 left"));
    mpk_reader_init(&r, "\xc0", 1);
    CHECK(mpk_read_double(&r, &d) == -1 && strstr(r.err, "expected number, found nil"));

    /* caller errors: offset prefix, control characters flattened, first error kept */
    mpk_reader_init(&r, "\x01\x02", 2);
    CHECK(mpk_read_uint(&r, &u) == 0);
    CHECK(mpk_fail(&r, "tensor %s: shape [%d, %d] but config needs [%d, %d]", "a\nb", 3, 4, 256, 256) == -1);
    CHECK_MSG(strcmp(r.err, "byte offset 1: tensor a?b: shape [3, 4] but config needs [256, 256]") == 0, "%s", r.err);
    CHECK(mpk_fail(&r, "second") == -1 && strstr(r.err, "tensor"));
    CHECK(mpk_read_uint(&r, &u) == -1 && u == 0);

    /* empty input */
    mpk_reader_init(&r, NULL, 0);
    CHECK(mpk_peek(&r) == MPK_INVALID && mpk_offset(&r) == 0);
    CHECK(mpk_skip(&r) == -1 && strcmp(r.err, "byte offset 0: truncated (end of data)") == 0);

    CHECK(mpk_str_eq("abc", 3, "abc") && !mpk_str_eq("abc", 2, "abc") && !mpk_str_eq("abd", 3, "abc"));
    CHECK(mpk_str_eq(NULL, 0, ""));
}

/* The packing helpers write what the msgpack_pack_* calls they stand for write, and the schema
 * helpers read it back: keys as C strings (unfit ones as ""), bounded strings, ranged integers. */
static void test_schema_helpers(void) {
    msgpack_sbuffer a, b;
    msgpack_sbuffer_init(&a);
    msgpack_sbuffer_init(&b);
    msgpack_packer pa, pb;
    msgpack_packer_init(&pa, &a, msgpack_sbuffer_write);
    msgpack_packer_init(&pb, &b, msgpack_sbuffer_write);
    static const uint8_t bin[3] = {1, 2, 3};
    mpk_pack_key_int(&pa, "i", -40000);
    mpk_pack_key_uint(&pa, "u", 4000000000ULL);
    mpk_pack_key_double(&pa, "d", 0.5);
    mpk_pack_key_bool(&pa, "t", 7);
    mpk_pack_key_str(&pa, "s", "abc");
    mpk_pack_key_bin(&pa, "b", bin, 3);
    pack_cstr(&pb, "i"), msgpack_pack_int64(&pb, -40000);
    pack_cstr(&pb, "u"), msgpack_pack_uint64(&pb, 4000000000ULL);
    pack_cstr(&pb, "d"), msgpack_pack_double(&pb, 0.5);
    pack_cstr(&pb, "t"), msgpack_pack_true(&pb);
    pack_cstr(&pb, "s"), pack_cstr(&pb, "abc");
    pack_cstr(&pb, "b"), msgpack_pack_bin_with_body(&pb, bin, 3);
    CHECK(a.size == b.size && memcmp(a.data, b.data, a.size) == 0);

    MpkReader r;
    char key[MPK_KEY_CAP], str[4];
    int64_t v;
    uint64_t u;
    mpk_reader_init(&r, a.data, a.size);
    CHECK(mpk_read_key(&r, key, sizeof key) == 0 && strcmp(key, "i") == 0);
    CHECK(mpk_read_int_in(&r, "i", -40000, 0, &v) == 0 && v == -40000);
    CHECK(mpk_read_key(&r, key, sizeof key) == 0 && strcmp(key, "u") == 0 && mpk_read_uint(&r, &u) == 0);
    CHECK(mpk_skip(&r) == 0 && mpk_skip(&r) == 0 && mpk_skip(&r) == 0 && mpk_skip(&r) == 0); /* d, 0.5, t, true */
    CHECK(mpk_read_key(&r, key, sizeof key) == 0 && strcmp(key, "s") == 0);
    CHECK(mpk_read_cstr(&r, str, sizeof str, "s") == 0 && strcmp(str, "abc") == 0);
    CHECK(mpk_read_key(&r, key, 1) == 0 && strcmp(key, "") == 0); /* "b" does not fit in 1 byte */
    CHECK(mpk_read_cstr(&r, str, sizeof str, "b") == -1 && str[0] == 0 && strstr(r.err, "expected str, found bin"));

    /* out of range: the value is consumed, the message has the offset after it */
    mpk_reader_init(&r, a.data, a.size);
    CHECK(mpk_skip(&r) == 0 && mpk_read_int_in(&r, "steps", 0, 10, &v) == -1 && v == 0);
    CHECK_MSG(strcmp(r.err, "byte offset 7: steps = -40000 is out of range [0, 10]") == 0, "%s", r.err);
    /* too long: "abc" needs 4 bytes */
    mpk_reader_init(&r, "\xa3" "abc", 4);
    CHECK(mpk_read_cstr(&r, str, 3, "run data") == -1 && str[0] == 0);
    CHECK_MSG(strcmp(r.err, "byte offset 4: run data is too long (3 bytes)") == 0, "%s", r.err);
    /* a key holding a NUL matches no name */
    mpk_reader_init(&r, "\xa3" "a\0b", 4);
    CHECK(mpk_read_key(&r, key, sizeof key) == 0 && key[0] == 0 && mpk_left(&r) == 0);
    /* not a str: sticky error, key zeroed */
    mpk_reader_init(&r, "\x01", 1);
    CHECK(mpk_read_key(&r, key, sizeof key) == -1 && key[0] == 0 && strstr(r.err, "expected str, found uint"));
    msgpack_sbuffer_destroy(&a);
    msgpack_sbuffer_destroy(&b);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* mpk_skip on random input: returns 0 with progress, or -1 with a proper message; never crashes. */
static int fuzz_one(const uint8_t *bytes, size_t n, int read_too) {
    uint8_t *copy = malloc(n ? n : 1);
    memcpy(copy, bytes, n);
    MpkReader r;
    mpk_reader_init(&r, copy, n);
    int ok = 1;
    /* skip values until the buffer ends or one fails */
    while (mpk_left(&r) > 0) {
        size_t before = mpk_offset(&r);
        if (mpk_skip(&r) != 0) {
            ok = err_ok(&r, n) && mpk_offset(&r) == before;
            break;
        }
        if (mpk_offset(&r) <= before || mpk_offset(&r) > n) ok = 0;
    }
    if (read_too) {
        mpk_reader_init(&r, copy, n);
        verbose = 0;
        read_doc(&r, 0); /* any outcome but a crash */
        verbose = 1;
    }
    free(copy);
    return ok;
}

static void test_fuzz(void) {
    int bad = 0;
    uint8_t buf[256];
    /* random bytes, biased towards headers with lengths so the interesting paths are hit */
    static const uint8_t heads[] = {0xdd, 0xdc, 0xdf, 0xde, 0xc6, 0xdb, 0xc9, 0xd8, 0x9f, 0x8f, 0x91, 0xc1, 0xcb};
    for (int t = 0; t < 4000; t++) {
        size_t n = rnd() % sizeof buf;
        for (size_t k = 0; k < n; k++) {
            uint64_t x = rnd();
            buf[k] = (x & 3) == 0 ? heads[(x >> 8) % sizeof heads] : (uint8_t)(x >> 16);
        }
        if (!fuzz_one(buf, n, 0)) bad++;
    }

    /* mutations of the valid compact document */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_doc(&sb, 0);
    uint8_t *m = malloc(sb.size);
    for (int t = 0; t < 4000; t++) {
        memcpy(m, sb.data, sb.size);
        size_t n = sb.size;
        int edits = 1 + (int)(rnd() % 4);
        for (int e = 0; e < edits; e++) {
            uint64_t x = rnd();
            size_t at = (x >> 8) % n;
            switch (x % 4) {
            case 0: m[at] = (uint8_t)(x >> 40); break;
            case 1: m[at] ^= (uint8_t)(1u << ((x >> 40) % 8)); break;
            case 2: m[at] = heads[(x >> 40) % sizeof heads]; break;
            default: m[at] = 0xff; break;
            }
        }
        if (rnd() % 4 == 0) n = rnd() % n;
        if (!fuzz_one(m, n, 1)) bad++;
    }
    free(m);
    msgpack_sbuffer_destroy(&sb);
    CHECK_MSG(bad == 0, "%d fuzz cases misbehaved", bad);
}

static void test_crc(void) {
    CHECK(mpk_crc32(0, "123456789", 9) == 0xCBF43926u);
    CHECK(mpk_crc32(0, "", 0) == 0);
    CHECK(mpk_crc32(mpk_crc32(0, "1234", 4), "56789", 5) == 0xCBF43926u);
    CHECK(mpk_crc32(0, "The quick brown fox jumps over the lazy dog", 43) == 0x414FA339u);
}

static int file_equals(const char *path, const void *want, size_t n) {
    MpkFile f;
    char err[512];
    if (mpk_file_map(&f, path, err, sizeof err)) return 0;
    int same = f.size == n && memcmp(f.data, want, n) == 0;
    mpk_file_unmap(&f);
    return same;
}

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static void test_files(void) {
    char dir[] = "/tmp/test_mpk.XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK_MSG(0, "mkdtemp failed");
        return;
    }
    char path[256], missing[256], empty[256], err[512];
    snprintf(path, sizeof path, "%s/ckpt.mpk", dir);
    snprintf(missing, sizeof missing, "%s/no/such/dir/ckpt.mpk", dir);
    snprintf(empty, sizeof empty, "%s/empty.mpk", dir);

    /* write, commit, read back */
    MpkWriter w;
    CHECK_MSG(mpk_writer_open(&w, path, err, sizeof err) == 0, "%s", err);
    CHECK(access(w.tmp_path, F_OK) == 0 && access(path, F_OK) != 0); /* target untouched until commit */
    msgpack_pack_map(&w.pk, 2);
    pack_cstr(&w.pk, "step");
    msgpack_pack_uint64(&w.pk, 1234);
    pack_cstr(&w.pk, "w");
    pack_filled_bin(&w.pk, 100000, 0, 0);
    CHECK_MSG(mpk_writer_commit(&w, err, sizeof err) == 0, "%s", err);
    CHECK(w.f == NULL && w.path == NULL && w.tmp_path == NULL);
    CHECK(count_entries(dir) == 1);

    MpkFile f;
    CHECK_MSG(mpk_file_map(&f, path, err, sizeof err) == 0, "%s", err);
    MpkReader r;
    mpk_reader_init(&r, f.data, f.size);
    uint32_t n;
    const char *s;
    const uint8_t *data;
    uint64_t step = 0;
    CHECK(mpk_read_map(&r, &n) == 0 && n == 2);
    CHECK(mpk_read_str(&r, &s, &n) == 0 && mpk_str_eq(s, n, "step"));
    CHECK(mpk_read_uint(&r, &step) == 0 && step == 1234);
    CHECK(mpk_read_str(&r, &s, &n) == 0 && mpk_str_eq(s, n, "w"));
    CHECK(mpk_read_bin(&r, &data, &n) == 0 && check_bytes(data, n, 100000, 0));
    CHECK(mpk_left(&r) == 0);
    uint8_t *orig = malloc(f.size);
    size_t orig_size = f.size;
    memcpy(orig, f.data, f.size);
    mpk_file_unmap(&f);
    CHECK(f.data == NULL);

    /* abort over an existing file: original unchanged, no temp file left */
    CHECK(mpk_writer_open(&w, path, err, sizeof err) == 0);
    msgpack_pack_str_with_body(&w.pk, "garbage", 7);
    fflush(w.f);
    CHECK(access(w.tmp_path, F_OK) == 0);
    mpk_writer_abort(&w);
    CHECK(file_equals(path, orig, orig_size));
    CHECK(count_entries(dir) == 1);
    mpk_writer_abort(&w); /* twice is harmless */

    /* a failed write (disk full): commit fails, temp removed, original unchanged */
    FILE *full = fopen("/dev/full", "wb");
    if (full) {
        CHECK(mpk_writer_open(&w, path, err, sizeof err) == 0);
        fclose(w.f);
        w.f = full; /* the temp file stays behind empty: commit must still remove it */
        pack_filled_bin(&w.pk, 1 << 20, 0, 0);
        CHECK(w.failed);
        CHECK(mpk_writer_commit(&w, err, sizeof err) == -1);
        CHECK_MSG(strstr(err, path) && strstr(err, "No space left"), "%s", err);
        CHECK(file_equals(path, orig, orig_size));
        CHECK(count_entries(dir) == 1);
    }
    /* a write error recorded by hand takes the same path */
    CHECK(mpk_writer_open(&w, path, err, sizeof err) == 0);
    w.failed = 1, w.errnum = EIO;
    CHECK(mpk_writer_commit(&w, err, sizeof err) == -1 && strstr(err, "Input/output error"));
    CHECK(file_equals(path, orig, orig_size) && count_entries(dir) == 1);
    free(orig);

    /* open errors */
    CHECK(mpk_writer_open(&w, missing, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, missing) && strstr(err, "No such file or directory"), "%s", err);
    CHECK(w.f == NULL && w.path == NULL);
    mpk_writer_abort(&w);
    CHECK(mpk_writer_open(&w, dir, err, sizeof err) == -1 && strstr(err, dir) && strstr(err, "directory"));
    CHECK(mpk_writer_open(&w, "", err, sizeof err) == -1 && strstr(err, "empty path"));
    CHECK(mpk_writer_commit(&w, err, sizeof err) == -1 && strstr(err, "not open"));

    /* mapping errors name the path */
    CHECK(mpk_file_map(&f, missing, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, missing) && strstr(err, "No such file or directory"), "%s", err);
    CHECK(f.data == NULL && f.size == 0);
    mpk_file_unmap(&f);
    CHECK(mpk_file_map(&f, dir, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, dir) && strstr(err, "is a directory"), "%s", err);
    FILE *e = fopen(empty, "wb");
    if (e) fclose(e);
    CHECK(mpk_file_map(&f, empty, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, empty) && strstr(err, "empty"), "%s", err);
    CHECK(mpk_file_map(&f, "/dev/null", err, sizeof err) == -1 && strstr(err, "not a regular file"));

    remove(empty);
    remove(path);
    CHECK(rmdir(dir) == 0);
}

static void touch(const char *dir, const char *name) {
    char p[1100];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (f) fputs("partial checkpoint", f), fclose(f);
}

static int exists(const char *dir, const char *name) {
    char p[1100];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

/* Temp files of killed writers: removed when their pid is gone, kept when it is alive or when the
 * name is not exactly "<target>.tmp.<decimal pid>"; the writer removes them when it opens. */
static void test_stale_temps(void) {
    char dir[] = "/tmp/test_mpk_stale.XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK_MSG(0, "mkdtemp failed");
        return;
    }
    /* a pid that is surely gone: a child that exited and was reaped */
    pid_t child = fork();
    if (child == 0) _exit(0);
    CHECK(child > 0 && waitpid(child, NULL, 0) == child);
    CHECK(kill(child, 0) == -1 && errno == ESRCH);
    char dead[64], live[64], ppid[64], path[512], err[512];
    snprintf(dead, sizeof dead, "ckpt.mpk.tmp.%ld", (long)child);
    snprintf(live, sizeof live, "ckpt.mpk.tmp.%ld", (long)getpid());
    snprintf(ppid, sizeof ppid, "ckpt.mpk.tmp.%ld", (long)getppid());
    snprintf(path, sizeof path, "%s/ckpt.mpk", dir);
    char keep[][64] = {"ckpt.mpk", "ckpt.mpk.tmp.", "ckpt.mpk.tmp.abc", "ckpt.mpk.tmp.0", "ckpt.mpk.tmp.99999999999",
                       "ckpt.mpk.tmp.-1", "other.mpk.tmp.1", "ckpt.mpk.tokens", "xckpt.mpk.tmp.1", "", "", "", "", "",
                       "", ""};
    /* names that hold the dead pid but are not this target's temp files */
    snprintf(keep[9], 64, "ckpt.mpk.tmp.%ldx", (long)child);
    snprintf(keep[10], 64, "ckpt.mpk.tmp.+%ld", (long)child);
    snprintf(keep[11], 64, "ckpt.mpk.tmp. %ld", (long)child);
    snprintf(keep[12], 64, "ckpt.mpk.tokens.tmp.%ld", (long)child); /* the token cache's: its own call */
    snprintf(keep[13], 64, "ckpt.mpk.val.tmp.%ld", (long)child);
    snprintf(keep[14], 64, "other.mpk.tmp.%ld", (long)child);
    snprintf(keep[15], 64, "ckpt.mpk.tmp.%ld.1", (long)child);
    int nkeep = (int)(sizeof keep / sizeof keep[0]);
    for (int i = 0; i < nkeep; i++) touch(dir, keep[i]);
    touch(dir, dead), touch(dir, live), touch(dir, ppid);

    CHECK(mpk_remove_stale_temps(path) == 1);
    CHECK(!exists(dir, dead));
    CHECK(exists(dir, live) && exists(dir, ppid)); /* live processes: this one and its parent */
    for (int i = 0; i < nkeep; i++) CHECK_MSG(exists(dir, keep[i]), "%s removed", keep[i]);
    CHECK(mpk_remove_stale_temps(path) == 0); /* nothing more */

    /* "<path>.val" reaches the token cache's staging name; the writer's open cleans its own target */
    char val[600];
    snprintf(val, sizeof val, "%s.val", path);
    CHECK(mpk_remove_stale_temps(val) == 1 && !exists(dir, keep[13]));
    touch(dir, dead);
    MpkWriter w;
    CHECK_MSG(mpk_writer_open(&w, path, err, sizeof err) == 0, "%s", err);
    CHECK(!exists(dir, dead) && exists(dir, ppid));
    CHECK(strcmp(w.tmp_path + strlen(dir) + 1, live) == 0); /* its own temp file has that name */
    mpk_writer_abort(&w);

    /* a missing directory: nothing to do, no error */
    CHECK(mpk_remove_stale_temps("/nonexistent-dir-of-test-mpk/x.mpk") == 0);

    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) unlinkat(dirfd(d), e->d_name, 0);
    if (d) closedir(d);
    CHECK(rmdir(dir) == 0);
}

int main(void) {
    test_round_trip(0);
    test_round_trip(1);
    test_truncation(0, 1);
    test_truncation(1, 997);
    test_crafted();
    test_errors();
    test_schema_helpers();
    test_fuzz();
    test_crc();
    test_files();
    test_stale_temps();
    TEST_DONE();
}
