/* test_datasets.c - the datasets module: tokenizer, file corpora and their errors, the built-in
 * arithmetic corpus (every worked step re-checked), and training/evaluation batches. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/ds.h"
#include "tests/test.h"

/* ---------------------------------------------------------------- tokenizer */

static void test_tokenizer(void) {
    MtpRng rng;
    mtp_rng_seed(&rng, 42);
    uint8_t bytes[600], back[600];
    int32_t ids[600];
    for (int trial = 0; trial < 50; trial++) {
        size_t n = (size_t)mtp_rng_below(&rng, 600);
        for (size_t i = 0; i < n; i++) bytes[i] = (uint8_t)mtp_rng_below(&rng, 256);
        if (n >= 2) {
            bytes[0] = 0;
            bytes[n - 1] = 255;
        }
        CHECK(ds_encode_bytes(ids, bytes, n) == n);
        int ok = 1;
        for (size_t i = 0; i < n; i++) ok &= ids[i] == bytes[i];
        CHECK(ok);
        CHECK(ds_decode_bytes(back, ids, n) == n);
        CHECK(memcmp(back, bytes, n) == 0);
    }
    int32_t mixed[] = {DS_BOS, 'h', DS_PAD, 0, DS_EOS, 255, 'i', DS_EOS, -3, 100000};
    uint8_t out[16];
    size_t k = ds_decode_bytes(out, mixed, sizeof mixed / sizeof mixed[0]);
    CHECK(k == 4);
    CHECK(out[0] == 'h' && out[1] == 0 && out[2] == 255 && out[3] == 'i');
    CHECK(DS_BYTE_VOCAB == 259 && DS_BOS == 256 && DS_EOS == 257 && DS_PAD == 258);
}

/* ---------------------------------------------------------------- files */

static void write_temp(char *path, const uint8_t *data, size_t n) {
    strcpy(path, "/tmp/test_ds_XXXXXX");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    CHECK(write(fd, data, n) == (ssize_t)n);
    close(fd);
}

/* ds_load must fail with a message that names the path (and, if given, contains `want`) */
static void expect_error(const DsOptions *opt, const char *want) {
    DsCorpus c;
    char err[512] = "untouched";
    int rc = ds_load(&c, opt, err, sizeof err);
    CHECK_MSG(rc == -1, "ds_load(%s) should fail", opt->spec);
    CHECK_MSG(strstr(err, opt->spec) != NULL, "message should name %s: %s", opt->spec, err);
    if (want) CHECK_MSG(strstr(err, want) != NULL, "message should contain '%s': %s", want, err);
    CHECK(strchr(err, '\n') == NULL);
    CHECK(strncmp(err, "error", 5) != 0);
    CHECK(c.train == NULL && c.val == NULL && c.n_train == 0 && c.n_val == 0);
    ds_free(&c);
}

static void test_files(void) {
    MtpRng rng;
    mtp_rng_seed(&rng, 7);
    uint8_t data[1000];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)mtp_rng_below(&rng, 256);
    data[0] = 0; /* binary content: NULs anywhere, including first and in the validation part */
    data[950] = 0;
    data[999] = 255;
    char path[64];
    write_temp(path, data, sizeof data);

    DsOptions opt;
    ds_options_init(&opt);
    CHECK(opt.val_frac == 0.1 && opt.difficulty == 0);
    opt.spec = path;
    opt.min_tokens = 65;
    DsCorpus c;
    char err[512];
    int rc = ds_load(&c, &opt, err, sizeof err);
    CHECK_MSG(rc == 0, "%s", err);
    if (rc == 0) {
        /* stream = BOS + 1000 bytes = 1001 tokens; last round(100.1) = 100 are validation */
        CHECK(c.n_train == 901 && c.n_val == 100);
        CHECK(c.train[0] == DS_BOS);
        int ok = 1;
        for (size_t i = 1; i < c.n_train; i++) ok &= c.train[i] == data[i - 1];
        for (size_t i = 0; i < c.n_val; i++) ok &= c.val[i] == data[900 + i];
        CHECK(ok);
        CHECK(strstr(c.desc, "1000 bytes") != NULL && strstr(c.desc, "901 train") != NULL &&
              strstr(c.desc, "100 val") != NULL);
        uint8_t back[1000];
        CHECK(ds_decode_bytes(back, c.train, c.n_train) == 900);
        CHECK(memcmp(back, data, 900) == 0);
    }
    ds_free(&c);
    CHECK(c.train == NULL && c.val == NULL);
    ds_free(&c); /* twice is harmless */

    /* another fraction */
    opt.val_frac = 0.5;
    rc = ds_load(&c, &opt, err, sizeof err);
    CHECK_MSG(rc == 0, "%s", err);
    if (rc == 0) CHECK(c.n_train + c.n_val == 1001 && c.n_val == 501 && c.val[c.n_val - 1] == 255);
    ds_free(&c);
    opt.val_frac = 0.1;

    /* too short for one sequence: message names the split and the size */
    opt.min_tokens = 257;
    expect_error(&opt, "validation split has 100 tokens");
    opt.min_tokens = 950;
    expect_error(&opt, "training split has 901 tokens");
    opt.min_tokens = 2;

    /* bad val_frac */
    double bad[] = {0.0, 1.0, -0.1, 1.5, NAN};
    for (int i = 0; i < 5; i++) {
        opt.val_frac = bad[i];
        expect_error(&opt, "val_frac");
    }
    opt.val_frac = 0.1;

    /* empty file */
    char empty[64];
    write_temp(empty, data, 0);
    opt.spec = empty;
    expect_error(&opt, "empty");
    unlink(empty);

    /* missing file */
    char missing[80];
    snprintf(missing, sizeof missing, "%s.missing", path);
    opt.spec = missing;
    expect_error(&opt, "no such file");

    /* directory */
    char dir[] = "/tmp/test_ds_dir_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    opt.spec = dir;
    expect_error(&opt, "directory");

    /* a FIFO must be refused, not block waiting for a writer */
    char fifo[96];
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    if (mkfifo(fifo, 0600) == 0) {
        opt.spec = fifo;
        expect_error(&opt, "not a regular file");
        unlink(fifo);
    }
    rmdir(dir);

    /* unreadable (root reads anything, so only meaningful for other users) */
    if (geteuid() != 0) {
        chmod(path, 0);
        opt.spec = path;
        expect_error(&opt, "cannot open");
        chmod(path, 0600);
    }
    unlink(path);

    /* no spec; error buffer may be absent */
    opt.spec = "";
    CHECK(ds_load(&c, &opt, err, sizeof err) == -1 && err[0]);
    CHECK(ds_load(&c, &opt, NULL, 0) == -1);

    /* unknown builtin lists the known ones */
    opt.spec = "builtin:shakespeare";
    expect_error(&opt, "builtin:arith");
}

/* ---------------------------------------------------------------- arithmetic */

/* parses an unsigned decimal at *s; returns 0 if none */
static int parse_u(const char **s, uint64_t *v) {
    const char *p = *s;
    if (*p < '0' || *p > '9') return 0;
    uint64_t x = 0;
    while (*p >= '0' && *p <= '9') {
        if (x > (UINT64_MAX - 9) / 10) return 0;
        x = x * 10 + (uint64_t)(*p++ - '0');
    }
    *s = p;
    *v = x;
    return 1;
}

static int eat(const char **s, const char *lit) {
    size_t n = strlen(lit);
    if (strncmp(*s, lit, n) != 0) return 0;
    *s += n;
    return 1;
}

/* Re-checks one worked line. Returns 1 if the line is a recognised step and its arithmetic is
   right, 0 if it is not a step line, -1 if it is a step line with wrong arithmetic. `carry` threads
   the carry of column additions from one line to the next. */
static int check_step(const char *line, int *carry) {
    const char *p = line;
    uint64_t a, b, c, d, e, f, g, h, x = 0;
    if (eat(&p, "col ")) {
        if (!parse_u(&p, &a) || !eat(&p, ": ")) return -1;
        if (a == 1) *carry = 0;
        if (eat(&p, "carry ")) { /* addition: carry c, +d=s, ..., write w [carry k] */
            if (!parse_u(&p, &c) || (int)c != *carry) return -1;
            uint64_t s = c;
            while (eat(&p, ", +")) {
                if (!parse_u(&p, &d) || d > 9 || !eat(&p, "=") || !parse_u(&p, &e) || e != s + d) return -1;
                s = e;
            }
            if (!eat(&p, ", write ") || !parse_u(&p, &e)) return -1;
            if (eat(&p, " carry ")) {
                if (!parse_u(&p, &f) || e != s % 10 || f != s / 10) return -1;
                *carry = (int)f;
            } else if (e != s) return -1;
            return *p == '\0' ? 1 : -1;
        }
        /* subtraction: x-y-r=d, write d borrow 0 | x-y-r < 0, borrow: 1x-y-r=d, write d borrow 1 */
        if (!parse_u(&p, &a) || !eat(&p, "-") || !parse_u(&p, &b) || !eat(&p, "-") || !parse_u(&p, &c)) return -1;
        if (a > 9 || b > 9 || c > 1 || (c != (uint64_t)*carry)) return -1;
        if (eat(&p, " < 0, borrow: 1")) {
            if (a >= b + c) return -1;
            if (!parse_u(&p, &d) || d != a || !eat(&p, "-") || !parse_u(&p, &e) || e != b || !eat(&p, "-") ||
                !parse_u(&p, &f) || f != c || !eat(&p, "=") || !parse_u(&p, &g) || g != 10 + a - b - c ||
                !eat(&p, ", write ") || !parse_u(&p, &h) || h != g || !eat(&p, " borrow 1"))
                return -1;
            *carry = 1;
        } else {
            if (a < b + c || !eat(&p, "=") || !parse_u(&p, &d) || d != a - b - c || !eat(&p, ", write ") ||
                !parse_u(&p, &e) || e != d || !eat(&p, " borrow 0"))
                return -1;
            *carry = 0;
        }
        return *p == '\0' ? 1 : -1;
    }
    if (eat(&p, "Take ") || eat(&p, "Bring down ")) { /* division step */
        if (line[0] == 'B' && (!parse_u(&p, &x) || x > 9 || !eat(&p, ": "))) return -1;
        if (!parse_u(&p, &a) || (line[0] == 'B' && a % 10 != x)) return -1;
        if (!eat(&p, ", ") || !parse_u(&p, &b) || !eat(&p, "*") || !parse_u(&p, &c) || !eat(&p, "=") ||
            !parse_u(&p, &d) || d != b * c || !eat(&p, " <= ") || !parse_u(&p, &e) || e != a || d > a ||
            !eat(&p, " < ") || !parse_u(&p, &f) || f != b + 1 || !eat(&p, "*") || !parse_u(&p, &g) || g != c ||
            !eat(&p, "=") || !parse_u(&p, &h) || h != f * g || a >= h || !eat(&p, ", digit ") ||
            !parse_u(&p, &x) || x != b || x > 9 || !eat(&p, ", ") || !parse_u(&p, &e) || e != a ||
            !eat(&p, "-") || !parse_u(&p, &f) || f != d || !eat(&p, "=") || !parse_u(&p, &g) || g != a - d)
            return -1;
        return *p == '\0' ? 1 : -1;
    }
    /* "a*m+c=s, write w carry k" (digit of a partial product), "a*m=v" (table), "a*m = v[, shifted j: w]",
       "a - b = c" */
    if (!parse_u(&p, &a)) return 0;
    if (eat(&p, "*")) {
        if (!parse_u(&p, &b)) return -1;
        if (eat(&p, "+")) {
            if (!parse_u(&p, &c) || !eat(&p, "=") || !parse_u(&p, &d) || d != a * b + c || !eat(&p, ", write ") ||
                !parse_u(&p, &e))
                return -1;
            if (eat(&p, " carry ")) {
                if (!parse_u(&p, &f) || e != d % 10 || f != d / 10) return -1;
            } else if (e != d) return -1;
            return *p == '\0' ? 1 : -1;
        }
        if (eat(&p, "=")) return parse_u(&p, &c) && c == a * b && *p == '\0' ? 1 : -1;
        if (!eat(&p, " = ") || !parse_u(&p, &c) || c != a * b) return -1;
        if (eat(&p, ", shifted ")) {
            if (!parse_u(&p, &d) || d > 18 || !eat(&p, ": ") || !parse_u(&p, &e)) return -1;
            uint64_t sh = c;
            for (uint64_t i = 0; i < d; i++) sh *= 10;
            if (e != sh) return -1;
        }
        return *p == '\0' ? 1 : -1;
    }
    if (eat(&p, " - ")) {
        if (!parse_u(&p, &b) || !eat(&p, " = ") || !parse_u(&p, &c) || b > a || c != a - b) return -1;
        return *p == '\0' ? 1 : -1;
    }
    return 0;
}

/* Checks one example completely: format, every step, and the answer against the question.
   Returns 1 if all is right (messages for the first problem found go to stderr). */
static int check_example(const char *text, size_t len) {
    if (len == 0 || strlen(text) != len || text[len - 1] != '\n') return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)text[i];
        if (!(ch == '\n' || (ch >= 0x20 && ch < 0x7f))) return 0;
        if (ch == '\n' && i + 1 < len && text[i + 1] == '\n') return 0; /* no empty lines */
    }
    /* question: "Compute a op b op c." with one operator kind */
    const char *p = text;
    uint64_t v, acc = 0;
    char op = 0;
    if (!eat(&p, "Compute ") || !parse_u(&p, &acc)) return 0;
    while (*p == ' ') {
        char o = p[1];
        if (p[2] != ' ' || (op && o != op)) return 0;
        op = o;
        p += 3;
        if (!parse_u(&p, &v)) return 0;
        if (op == '+') acc += v;
        else if (op == '-') {
            if (v > acc) return 0;
            acc -= v;
        } else if (op == '*') acc *= v;
        else if (op == '/') {
            if (v == 0 || acc % v != 0) return 0; /* divisions are exact */
            acc /= v;
        } else return 0;
    }
    if (!op || !eat(&p, ".\n")) return 0;
    char want[32];
    snprintf(want, sizeof want, "#### %llu\n", (unsigned long long)acc);
    size_t wl = strlen(want);
    if (len < wl || strcmp(text + len - wl, want) != 0 || text[len - wl - 1] != '\n') {
        fprintf(stderr, "wrong answer line, want %s in:\n%s", want, text);
        return 0;
    }
    /* every step line */
    int carry = 0, steps = 0, result_ok = 0;
    char line[1024];
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = (size_t)(nl - p);
        if (n >= sizeof line) return 0;
        memcpy(line, p, n);
        line[n] = '\0';
        p = nl + 1;
        int r = check_step(line, &carry);
        if (r < 0) {
            fprintf(stderr, "wrong step '%s' in:\n%s", line, text);
            return 0;
        }
        steps += r;
        const char *eq = strstr(line, " = ");
        if (eq && (!strncmp(line, "Sum", 3) || !strncmp(line, "Difference", 10) || !strncmp(line, "Product", 7) ||
                   !strncmp(line, "Quotient", 8)))
            result_ok = strtoull(eq + 3, NULL, 10) == acc && strspn(eq + 3, "0123456789") == strlen(eq + 3);
    }
    if (!result_ok || steps < 2) {
        fprintf(stderr, "missing result line or steps (%d) in:\n%s", steps, text);
        return 0;
    }
    return 1;
}

static void test_arith_examples(void) {
    char buf[16384];
    double avg[DS_ARITH_MAX_DIFFICULTY + 1];
    size_t maxlen[DS_ARITH_MAX_DIFFICULTY + 1];
    for (int d = 0; d <= DS_ARITH_MAX_DIFFICULTY; d++) {
        MtpRng rng;
        mtp_rng_seed(&rng, 1000 + (uint64_t)d);
        int n = 3000, bad = 0, kinds[4] = {0};
        double total = 0;
        maxlen[d] = 0;
        for (int i = 0; i < n; i++) {
            size_t len = ds_arith_example(buf, sizeof buf, &rng, d);
            CHECK(len < sizeof buf);
            if (len >= sizeof buf) break;
            total += (double)len;
            if (len > maxlen[d]) maxlen[d] = len;
            if (!check_example(buf, len) && ++bad > 3) break;
            const char *nl = strchr(buf, '\n');
            kinds[memchr(buf, '+', (size_t)(nl - buf)) ? 0 : memchr(buf, '-', (size_t)(nl - buf)) ? 1
                  : memchr(buf, '*', (size_t)(nl - buf)) ? 2 : 3]++;
        }
        CHECK_MSG(bad == 0, "difficulty %d: %d bad examples", d, bad);
        CHECK_MSG(kinds[0] > 0 && kinds[1] > 0 && kinds[2] > 0 && kinds[3] > 0, "difficulty %d: every kind", d);
        avg[d] = total / n;
        fprintf(stderr, "difficulty %d: average %.0f bytes, longest %zu\n", d, avg[d], maxlen[d]);
    }
    CHECK_MSG(avg[5] > 1000, "difficulty 5 average %.0f", avg[5]);
    CHECK_MSG(avg[1] < 250 && maxlen[1] < 400, "difficulty 1 average %.0f, longest %zu", avg[1], maxlen[1]);
    for (int d = 2; d <= 5; d++) CHECK(avg[d] > avg[d - 1]);

    /* snprintf-like: a short buffer is truncated and NUL-terminated, the full length returned,
       and the rng advances exactly as with a big buffer */
    MtpRng r1, r2;
    mtp_rng_seed(&r1, 5);
    r2 = r1;
    char small[20];
    size_t full = ds_arith_example(buf, sizeof buf, &r1, 3);
    size_t need = ds_arith_example(small, sizeof small, &r2, 3);
    CHECK(need == full && small[19] == '\0' && memcmp(small, buf, 19) == 0);
    CHECK(memcmp(&r1, &r2, sizeof r1) == 0);
    CHECK(ds_arith_example(NULL, 0, &r2, 3) > 0);
    CHECK(ds_arith_example(buf, sizeof buf, &r2, DS_ARITH_MAX_DIFFICULTY + 1) == 0 && buf[0] == '\0');
    CHECK(ds_arith_example(buf, sizeof buf, &r2, -1) == 0);
}

/* the stream must be exactly the examples of mtp_rng_seed(seed), each BOS text EOS */
static int stream_matches(const int32_t *tok, size_t n, uint64_t seed, int difficulty, size_t target) {
    MtpRng rng;
    mtp_rng_seed(&rng, seed);
    static char buf[16384];
    size_t pos = 0, text = 0;
    while (text < target) {
        size_t len = ds_arith_example(buf, sizeof buf, &rng, difficulty);
        if (len >= sizeof buf || pos + len + 2 > n || tok[pos] != DS_BOS || tok[pos + len + 1] != DS_EOS) return 0;
        for (size_t i = 0; i < len; i++)
            if (tok[pos + 1 + i] != (unsigned char)buf[i]) return 0;
        pos += len + 2;
        text += len;
    }
    return pos == n;
}

static void test_arith_corpus(void) {
    DsOptions opt;
    ds_options_init(&opt);
    opt.spec = "builtin:arith";
    opt.seed = 123;
    opt.min_tokens = 513;
    DsCorpus a, b;
    char err[512];
    int rc = ds_load(&a, &opt, err, sizeof err);
    CHECK_MSG(rc == 0, "%s", err);
    rc |= ds_load(&b, &opt, err, sizeof err);
    CHECK_MSG(rc == 0, "%s", err);
    if (rc == 0) {
        CHECK(a.n_train == b.n_train && a.n_val == b.n_val);
        CHECK(memcmp(a.train, b.train, a.n_train * sizeof(int32_t)) == 0);
        CHECK(memcmp(a.val, b.val, a.n_val * sizeof(int32_t)) == 0);
        CHECK(a.n_train >= DS_ARITH_TRAIN_BYTES && a.n_train < DS_ARITH_TRAIN_BYTES + DS_ARITH_TRAIN_BYTES / 4);
        CHECK(a.n_val >= DS_ARITH_VAL_BYTES && a.n_val < DS_ARITH_VAL_BYTES + DS_ARITH_VAL_BYTES / 4);
        CHECK(a.train[0] == DS_BOS && a.train[a.n_train - 1] == DS_EOS && a.val[0] == DS_BOS);
        CHECK(memcmp(a.train, a.val, 4096 * sizeof(int32_t)) != 0);
        CHECK(stream_matches(a.train, a.n_train, 123, 0, DS_ARITH_TRAIN_BYTES));
        CHECK(stream_matches(a.val, a.n_val, 123 ^ DS_ARITH_VAL_SEED_XOR, 0, DS_ARITH_VAL_BYTES));
        CHECK(strstr(a.desc, "builtin:arith") != NULL);
        int ok = 1;
        for (size_t i = 0; i < a.n_train; i++) ok &= a.train[i] >= 0 && a.train[i] < DS_PAD;
        CHECK(ok);
    }
    ds_free(&b);

    /* another seed, and one difficulty level */
    opt.seed = 124;
    opt.difficulty = 5;
    rc = ds_load(&b, &opt, err, sizeof err);
    CHECK_MSG(rc == 0, "%s", err);
    if (rc == 0 && a.train) {
        CHECK(memcmp(a.train, b.train, 4096 * sizeof(int32_t)) != 0);
        CHECK(stream_matches(b.val, b.n_val, 124 ^ DS_ARITH_VAL_SEED_XOR, 5, DS_ARITH_VAL_BYTES));
    }
    ds_free(&a);
    ds_free(&b);

    opt.difficulty = DS_ARITH_MAX_DIFFICULTY + 1;
    expect_error(&opt, "difficulty");
    opt.difficulty = 0;
    opt.min_tokens = DS_ARITH_VAL_BYTES * 2;
    expect_error(&opt, "validation split");
}

/* ---------------------------------------------------------------- batches */

static void test_batches(void) {
    enum { N = 50, T1 = 9, B = 6 };
    int32_t tok[N];
    for (int i = 0; i < N; i++) tok[i] = 1000 + i; /* the value tells the position */
    int32_t out[B * T1], out2[B * T1];

    MtpRng rng, rng2;
    mtp_rng_seed(&rng, 3);
    int seen_first = 0, seen_last = 0, ok = 1;
    for (int it = 0; it < 300; it++) {
        rng2 = rng;
        ds_sample_batch(out, tok, N, B, T1, &rng);
        ds_sample_batch(out2, tok, N, B, T1, &rng2);
        ok &= memcmp(out, out2, sizeof out) == 0 && memcmp(&rng, &rng2, sizeof rng) == 0;
        for (int b = 0; b < B; b++) {
            int off = out[b * T1] - 1000;
            ok &= off >= 0 && off <= N - T1;
            for (int t = 0; t < T1; t++) ok &= out[b * T1 + t] == tok[off + t];
            seen_first |= off == 0;
            seen_last |= off == N - T1;
        }
    }
    CHECK(ok);
    CHECK(seen_first && seen_last);
    /* n == T1: the only window is the whole split */
    ds_sample_batch(out, tok, T1, 2, T1, &rng);
    CHECK(out[0] == 1000 && out[T1] == 1000 && out[T1 - 1] == 1000 + T1 - 1);
    /* n < T1 never reads past the end */
    ds_sample_batch(out, tok, 3, 1, T1, &rng);
    CHECK(out[2] == 1002 && out[3] == DS_PAD && out[T1 - 1] == DS_PAD);

    /* evaluation: every token after the first is a target exactly once, rows are real windows */
    size_t lens[] = {N, 1 + 5 * (T1 - 1), 2, 1, 0, T1, T1 + 1};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        size_t n = lens[li];
        int hits[N] = {0};
        size_t rows = 0, batches = 0;
        ok = 1;
        for (size_t idx = 0;; idx++) {
            for (int i = 0; i < B * T1; i++) out[i] = -1;
            int got = ds_eval_batch(out, tok, n, B, T1, idx);
            ok &= got >= 0 && got <= B;
            if (got == 0) break;
            batches++;
            for (int b = 0; b < B; b++) {
                int32_t *row = out + b * T1;
                if (b >= got) {
                    for (int t = 0; t < T1; t++) ok &= row[t] == DS_PAD;
                    continue;
                }
                size_t start = rows * (T1 - 1);
                ok &= row[0] == tok[start];
                for (int t = 1; t < T1; t++) {
                    if (row[t] == DS_PAD) { /* only the tail of the last window */
                        ok &= start + (size_t)t >= n;
                        continue;
                    }
                    ok &= row[t] == tok[start + (size_t)t] && row[t - 1] != DS_PAD;
                    hits[start + (size_t)t]++;
                }
                rows++;
            }
            if (batches > 100) break;
        }
        for (size_t i = 1; i < n; i++) ok &= hits[i] == 1;
        CHECK_MSG(ok, "eval coverage for n = %zu", n);
        CHECK_MSG(rows == ds_eval_windows(n, T1), "n = %zu: %zu rows, %zu windows", n, rows, ds_eval_windows(n, T1));
        CHECK(ds_eval_batch(out, tok, n, B, T1, batches) == 0);
    }
    CHECK(ds_eval_windows(N, T1) == 7); /* ceil(49 / 8) */
    CHECK(ds_eval_windows(1 + 5 * (T1 - 1), T1) == 5);
    CHECK(ds_eval_batch(out, tok, N, B, T1, SIZE_MAX) == 0);
    CHECK(ds_eval_batch(out, tok, N, B, 1, 0) == 0);
}

int main(void) {
    test_tokenizer();
    test_files();
    test_arith_examples();
    test_arith_corpus();
    test_batches();
    TEST_DONE();
}
