/* test_corpus.c - corpora (datasets/corpus.c, datasets/tokcache.c): streamed BPE encoding equals
 * encoding whole (files larger than the 4 MiB read block), byte and JSONL sources, weighted mixtures
 * and their sampling, the token cache (built, mapped, stale, damaged, foreign, interrupted for real),
 * source specs, the tokenizer's training text, and one-line error messages naming the source.
 *
 * Everything lives in one mkdtemp folder, removed at the end. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "datasets/ds.h"
#include "tests/test.h"

#define BLOCK ((size_t)4 << 20) /* corpus.c's DS_BLOCK: files are read and encoded this much at a time */

static char g_dir[64] = "/tmp/test_corpus_XXXXXX";

/* ---------------------------------------------------------------- helpers */

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t below(MtpRng *r, uint64_t n) { return mtp_rng_below(r, n); }

/* g_dir/name into out (512 bytes) */
static char *path_in(char *out, const char *name) {
    snprintf(out, 512, "%s/%s", g_dir, name);
    return out;
}

static int write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK_MSG(f != NULL, "cannot create %s: %s", path, strerror(errno));
    if (!f) return -1;
    int ok = fwrite(data, 1, n, f) == n;
    ok &= fclose(f) == 0;
    CHECK_MSG(ok, "cannot write %s", path);
    return ok ? 0 : -1;
}

static uint8_t *read_all(const char *path, size_t *n) {
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)len + 1);
    if (p && fread(p, 1, (size_t)len, f) != (size_t)len) {
        free(p);
        p = NULL;
    }
    fclose(f);
    if (p) *n = (size_t)len;
    return p;
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static int same_tokens(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

static size_t first_diff(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    size_t n = na < nb ? na : nb, i = 0;
    while (i < n && a[i] == b[i]) i++;
    return i;
}

#define CHECK_TOKENS(a, na, b, nb)                                                                        \
    CHECK_MSG(same_tokens(a, na, b, nb), "%s (%zu tokens) != %s (%zu tokens), first difference at %zu", #a, \
              (size_t)(na), #b, (size_t)(nb), first_diff(a, na, b, nb))

/* the documented splits */
static size_t text_cut(size_t size, double vf) {
    size_t nv = (size_t)llround((double)(size + 1) * vf);
    return nv >= size ? 0 : size - nv;
}
static long jsonl_train_lines(long lines, double vf) { return lines - (long)llround((double)lines * vf); }

/* ds_load that must succeed */
#define LOAD(c, o) load_at(c, o, __LINE__)
static int load_at(DsCorpus *c, const DsOptions *o, int line) {
    char err[1024] = "";
    int rc = ds_load(c, o, err, sizeof err);
    test_checks++;
    if (rc) {
        test_failures++;
        fprintf(stderr, "%s:%d: ds_load failed: %s\n", __FILE__, line, err);
    }
    return rc;
}

/* ds_load that must fail with one line containing every given string, leaving c empty */
#define LOAD_ERR(o, ...) load_err_at(o, __LINE__, (const char *const[]){__VA_ARGS__, NULL})
static void load_err_at(const DsOptions *o, int line, const char *const *want) {
    DsCorpus c;
    char err[2048] = "";
    int rc = ds_load(&c, o, err, sizeof err);
    test_checks++;
    if (rc != -1) {
        test_failures++;
        fprintf(stderr, "%s:%d: ds_load should have failed (wanted '%s')\n", __FILE__, line, want[0]);
        if (rc == 0) ds_free(&c);
        return;
    }
    int ok = err[0] && !strchr(err, '\n') && strncmp(err, "error", 5) != 0;
    for (int i = 0; want[i]; i++) ok &= strstr(err, want[i]) != NULL;
    ok &= c.train == NULL && c.val == NULL && c.n_train == 0 && c.n_val == 0 && c.map == NULL;
    test_checks++;
    if (!ok) {
        test_failures++;
        fprintf(stderr, "%s:%d: bad error message: '%s' (wanted:", __FILE__, line, err);
        for (int i = 0; want[i]; i++) fprintf(stderr, " '%s'", want[i]);
        fprintf(stderr, ")\n");
    }
    ds_free(&c);
}

/* Number of "*.tmp.*" entries of dir other than `except` (a name, or NULL). */
static int count_tmp(const char *dir, const char *except) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.") && (!except || strcmp(e->d_name, except) != 0)) {
            fprintf(stderr, "leftover temp file %s/%s\n", dir, e->d_name);
            n++;
        }
    closedir(d);
    return n;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) { return remove(p); }

/* ---------------------------------------------------------------- text generation */

static const char *const WORDS[] = {"the", "of", "and", "token", "corpus", "stream", "block", "merge", "Hello",
                                    "World", "h\xc3\xa9llo", "na\xc3\xafve", "\xe6\x97\xa5\xe6\x9c\xac",
                                    "caf\xc3\xa9", "x", "ab", "tokenizer", "is", "a", "in"};
#define N_WORDS (sizeof WORDS / sizeof WORDS[0])
static const char PUNCT[] = ".,;:!?()-\"'#*/+=[]{}<>|&%$@~^`_\x01\x07\x1b\x7f";

/* One piece of the random mix into tmp (>= 400 bytes); long: a run longer than DS_BPE_MAX_CHUNK. */
static size_t gen_piece(uint8_t *tmp, MtpRng *r, int long_run) {
    size_t k = 0, m;
    if (long_run) {
        switch (below(r, 5)) {
        case 0: /* letters with 2-byte UTF-8 characters, so the chunk cut must back off */
            m = 60 + below(r, 200);
            while (k < m) {
                if (below(r, 3) == 0) tmp[k++] = 0xc3, tmp[k++] = 0xa9;
                else if (below(r, 9) == 0) tmp[k++] = 0xe6, tmp[k++] = 0x97, tmp[k++] = 0xa5;
                else tmp[k++] = (uint8_t)('a' + below(r, 26));
            }
            return k;
        case 1: /* blanks, maybe ending in a space before a word */
            m = 60 + below(r, 120);
            while (k < m) tmp[k++] = below(r, 5) ? ' ' : '\t';
            return k;
        case 2:
            m = 60 + below(r, 120);
            while (k < m) tmp[k++] = (uint8_t)PUNCT[below(r, sizeof PUNCT - 1)];
            return k;
        case 3:
            m = 60 + below(r, 100);
            while (k < m) tmp[k++] = below(r, 3) ? '\n' : '\r';
            return k;
        default: /* raw high bytes (letters class, mostly invalid UTF-8) */
            m = 60 + below(r, 100);
            while (k < m) tmp[k++] = (uint8_t)(0x80 + below(r, 128));
            return k;
        }
    }
    unsigned x = (unsigned)below(r, 1000);
    if (x < 430 || x >= 960) {
        if (x >= 960) tmp[k++] = ' ';
        const char *w = WORDS[below(r, N_WORDS)];
        memcpy(tmp + k, w, strlen(w));
        k += strlen(w);
    } else if (x < 590) tmp[k++] = ' ';
    else if (x < 640) {
        m = 2 + below(r, 5);
        while (k < m) tmp[k++] = below(r, 4) ? ' ' : '\t';
    } else if (x < 720) {
        m = 1 + below(r, 4);
        if (below(r, 2)) tmp[k++] = ' ';
        for (size_t j = 0; j < m; j++) tmp[k++] = (uint8_t)('0' + below(r, 10));
    } else if (x < 780) {
        static const char *const nl[] = {"\n", "\r\n", "\n\n", "\r", "\n\n\n"};
        const char *s = nl[below(r, 5)];
        memcpy(tmp, s, strlen(s));
        k = strlen(s);
    } else if (x < 840) {
        m = 1 + below(r, 3);
        while (k < m) tmp[k++] = (uint8_t)PUNCT[below(r, sizeof PUNCT - 1)];
    } else if (x < 890) tmp[k++] = (uint8_t)(0x80 + below(r, 128));
    else if (x < 910) tmp[k++] = 0;
    else if (x < 925) tmp[k++] = (uint8_t)below(r, 256);
    else return gen_piece(tmp, r, 1);
    return k;
}

/* n bytes of a random mix: words (UTF-8 ones too), spaces, tabs, digits, newlines, punctuation,
   bytes >= 0x80, NULs, and long runs of each class. long_rate: extra long runs per 64 pieces. */
static void gen_text(uint8_t *b, size_t n, MtpRng *r, int long_rate) {
    uint8_t tmp[512];
    for (size_t i = 0; i < n;) {
        size_t k = gen_piece(tmp, r, long_rate && (int)below(r, 64) < long_rate);
        if (k > n - i) k = n - i;
        memcpy(b + i, tmp, k);
        i += k;
    }
}

/* JSON string body for raw text (escapes quotes, backslashes, control bytes); returns its length. */
static size_t json_escape(char *out, const uint8_t *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t ch = s[i];
        if (ch == '"' || ch == '\\') out[k++] = '\\', out[k++] = (char)ch;
        else if (ch == '\n') out[k++] = '\\', out[k++] = 'n';
        else if (ch < 0x20) k += (size_t)sprintf(out + k, "\\u%04x", ch);
        else out[k++] = (char)ch;
    }
    return k;
}

/* Token array: [BOS] + encode(bytes) when bos, else encode(bytes). */
static int32_t *encode_ref(const DsBpe *t, const uint8_t *b, size_t n, int bos, size_t *out_n) {
    int32_t *o = malloc((n + 1) * sizeof *o);
    if (!o) return NULL;
    size_t k = 0;
    if (bos) o[k++] = DS_BOS;
    k += t ? ds_bpe_encode(t, o + k, b, n) : ds_encode_bytes(o + k, b, n);
    *out_n = k;
    return o;
}

/* ---------------------------------------------------------------- 1a. ds_bpe_safe_split */

static int split_ok(const DsBpe *t, const uint8_t *a, size_t n, size_t p, const int32_t *whole, size_t nw,
                    int32_t *buf) {
    size_t k = ds_bpe_encode(t, buf, a, p);
    k += ds_bpe_encode(t, buf + k, a + p, n - p);
    return k == nw && memcmp(buf, whole, k * sizeof *buf) == 0;
}

static void test_safe_split(const DsBpe *t) {
    double t0 = now_s();
    uint8_t a[800];
    int32_t whole[800], buf[800];
    int bad_range = 0, bad_whole = 0, bad_prefix = 0, trials = 0, arbitrary_breaks = 0;
    for (int seed = 0; seed < 4000; seed++) {
        MtpRng r;
        mtp_rng_seed(&r, 5000 + (uint64_t)seed);
        size_t n = 1 + below(&r, 600);
        gen_text(a, n, &r, seed % 3 == 0 ? 0 : 12);
        size_t nw = ds_bpe_encode(t, whole, a, n);
        size_t p = ds_bpe_safe_split(a, n);
        if (!(p < n && n - p <= DS_BPE_MAX_CHUNK)) bad_range++;
        if (!split_ok(t, a, n, p, whole, nw, buf)) bad_whole++;
        /* what streaming relies on: the split of a prefix (a block) is safe for the whole text */
        /* sensitivity: an arbitrary cut does break the encoding now and then */
        arbitrary_breaks += !split_ok(t, a, n, (size_t)below(&r, n + 1), whole, nw, buf);
        for (int k = 0; k < 6; k++) {
            size_t m = (size_t)below(&r, n + 1), q = ds_bpe_safe_split(a, m);
            trials++;
            if (q > m || (m > 0 && q >= m)) bad_range++;
            if (!split_ok(t, a, n, q, whole, nw, buf)) {
                if (bad_prefix++ < 3) fprintf(stderr, "safe split of a %zu-byte prefix at %zu breaks seed %d\n", m, q, seed);
            }
        }
    }
    CHECK_MSG(bad_range == 0, "%d splits out of range", bad_range);
    CHECK_MSG(bad_whole == 0, "%d of 4000 strings encode differently when split at ds_bpe_safe_split", bad_whole);
    CHECK_MSG(bad_prefix == 0, "%d of %d prefix splits are not safe for the whole string", bad_prefix, trials);
    CHECK_MSG(arbitrary_breaks > 400, "only %d of 4000 arbitrary cuts change the tokens: the check is blind", arbitrary_breaks);
    CHECK(ds_bpe_safe_split((const uint8_t *)"", 0) == 0);
    CHECK(ds_bpe_safe_split((const uint8_t *)"abc", 3) == 0);     /* one chunk */
    CHECK(ds_bpe_safe_split((const uint8_t *)"abc def", 7) == 3); /* " def" is the last chunk */
    fprintf(stderr, "safe split: %.2f s (%d of 4000 arbitrary cuts change the tokens)\n", now_s() - t0, arbitrary_breaks);
}

/* ---------------------------------------------------------------- 1, 2, 6. big text file */

typedef struct {
    char path[512];
    uint8_t *bytes;
    size_t size;
} BigFile;

static void check_corpus_refs(const DsCorpus *c, const int32_t *rt, size_t nrt, const int32_t *rv, size_t nrv) {
    CHECK_TOKENS(c->train, c->n_train, rt, nrt);
    CHECK_TOKENS(c->val, c->n_val, rv, nrv);
    CHECK(c->n_parts == 1 && c->part_start[0] == 0 && c->part_start[1] == c->n_train && c->part_cum[0] == 1.0);
}

/* 6: a child builds the cache of big and is killed mid-build; then a load builds a correct one. */
static void test_interrupted_build(const BigFile *big, const DsBpe *tok, const int32_t *rt, size_t nrt,
                                   const int32_t *rv, size_t nrv) {
    char dir[512], cache[600], tmp[700], tmpname[200];
    path_in(dir, "kill");
    CHECK(mkdir(dir, 0700) == 0);
    snprintf(cache, sizeof cache, "%s/big.tokens", dir);
    DsOptions o;
    ds_options_init(&o);
    o.spec = big->path, o.tokenizer = tok, o.cache_path = cache, o.quiet = 1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid < 0) return;
    if (pid == 0) {
        DsCorpus c;
        char err[512];
        int rc = ds_load(&c, &o, err, sizeof err);
        _exit(rc ? 2 : 0);
    }
    struct timespec nap = {0, 100 * 1000 * 1000};
    nanosleep(&nap, NULL);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", cache, (long)pid);
    snprintf(tmpname, sizeof tmpname, "big.tokens.tmp.%ld", (long)pid);
    int st = 0;
    pid_t w = waitpid(pid, &st, WNOHANG);
    struct stat sb;
    int cache_before = stat(cache, &sb) == 0;
    long tmp_size = stat(tmp, &sb) == 0 ? (long)sb.st_size : -1;
    kill(pid, SIGKILL);
    if (w == 0) waitpid(pid, &st, 0);
    CHECK_MSG(w == 0, "the child finished its build within 0.1 s (status %d): the source must be larger", st);
    CHECK_MSG(!cache_before, "the cache existed 0.1 s into the build");
    CHECK_MSG(tmp_size >= 0, "no %s: the child had not started writing", tmp);
    if (w == 0) CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    CHECK_MSG(!exists(cache), "an interrupted build left %s", cache);
    CHECK(count_tmp(dir, tmpname) == 0); /* the validation staging file was unlinked at creation */

    double t0 = now_s();
    DsCorpus c;
    if (LOAD(&c, &o) == 0) {
        CHECK(c.from_cache == 2);
        check_corpus_refs(&c, rt, nrt, rv, nrv);
    }
    double built = now_s() - t0;
    ds_free(&c);
    if (LOAD(&c, &o) == 0) {
        CHECK(c.from_cache == 1);
        check_corpus_refs(&c, rt, nrt, rv, nrv);
    }
    ds_free(&c);
    fprintf(stderr, "interrupted build: child killed at 0.10 s with %ld bytes of %s written; a full build takes %.2f s\n",
            tmp_size, tmpname, built);
    /* the killed process's temp file stays behind (nobody else may know it is dead); tidy it here */
    CHECK(count_tmp(dir, tmpname) == 0);
    unlink(tmp);
}

static void test_big_text(const DsBpe *tok) {
    double t0 = now_s();
    BigFile big;
    big.size = 3 * BLOCK + 12345; /* 12 MiB and change: several blocks in the training split */
    big.bytes = malloc(big.size);
    MtpRng r;
    mtp_rng_seed(&r, 77);
    gen_text(big.bytes, big.size, &r, 2);
    /* runs across the block boundaries of the training split (file offsets k * BLOCK) */
    memset(big.bytes + BLOCK - 70, 'q', 140);
    for (size_t i = BLOCK - 50; i < BLOCK + 50; i += 7) big.bytes[i] = 0xc3, big.bytes[i + 1] = 0xa9;
    memset(big.bytes + 2 * BLOCK - 40, ' ', 79);
    big.bytes[2 * BLOCK + 39] = 'x';
    memcpy(big.bytes + 3 * BLOCK - 2, " 12345\n\n\n", 9);
    path_in(big.path, "big.txt");
    write_file(big.path, big.bytes, big.size);

    /* 1. BPE: memory, cache build, cache map, all equal to encoding each split whole */
    DsOptions o;
    ds_options_init(&o);
    o.spec = big.path, o.tokenizer = tok, o.quiet = 1;
    size_t cut = text_cut(big.size, o.val_frac), nrt, nrv;
    int32_t *rt = encode_ref(tok, big.bytes, cut, 1, &nrt);
    int32_t *rv = encode_ref(tok, big.bytes + cut, big.size - cut, 0, &nrv);
    CHECK(cut == big.size - (size_t)llround((double)(big.size + 1) * 0.1) && big.size - cut > 1000000);
    DsCorpus c;
    if (LOAD(&c, &o) == 0) {
        CHECK(c.from_cache == 0 && c.map == NULL);
        check_corpus_refs(&c, rt, nrt, rv, nrv);
    }
    ds_free(&c);
    char cache[512];
    o.cache_path = path_in(cache, "big.tokens");
    for (int pass = 0; pass < 2; pass++) {
        if (LOAD(&c, &o) == 0) {
            CHECK_MSG(c.from_cache == 2 - pass, "pass %d: from_cache %d", pass, c.from_cache);
            check_corpus_refs(&c, rt, nrt, rv, nrv);
        }
        ds_free(&c);
    }
    unlink(cache);
    o.cache_path = NULL;

    /* a validation split longer than a block */
    o.val_frac = 0.45;
    size_t cut2 = text_cut(big.size, o.val_frac), nrt2, nrv2;
    CHECK(big.size - cut2 > BLOCK);
    int32_t *rt2 = encode_ref(tok, big.bytes, cut2, 1, &nrt2);
    int32_t *rv2 = encode_ref(tok, big.bytes + cut2, big.size - cut2, 0, &nrv2);
    if (LOAD(&c, &o) == 0) check_corpus_refs(&c, rt2, nrt2, rv2, nrv2);
    ds_free(&c);
    free(rt2), free(rv2);
    o.val_frac = 0.1;
    fprintf(stderr, "big text, BPE: %.2f s\n", now_s() - t0);

    /* 6. interrupted build, on the same file */
    t0 = now_s();
    test_interrupted_build(&big, tok, rt, nrt, rv, nrv);
    fprintf(stderr, "interrupted build: %.2f s\n", now_s() - t0);
    free(rt), free(rv);

    /* 2. bytes: BOS + bytes[0..cut) and bytes[cut..size), across blocks too */
    t0 = now_s();
    o.tokenizer = NULL;
    if (LOAD(&c, &o) == 0) {
        CHECK(c.n_train == cut + 1 && c.n_val == big.size - cut && c.train[0] == DS_BOS);
        int ok = c.n_train == cut + 1 && c.n_val == big.size - cut;
        for (size_t i = 0; ok && i < cut; i++) ok &= c.train[i + 1] == big.bytes[i];
        for (size_t i = 0; ok && i < c.n_val; i++) ok &= c.val[i] == big.bytes[cut + i];
        CHECK_MSG(ok, "byte tokens differ from the file's bytes");
        char want[128];
        snprintf(want, sizeof want, "big.txt: %zu bytes, %zu train / %zu val tokens", big.size, cut + 1, big.size - cut);
        CHECK_MSG(strcmp(c.desc, want) == 0, "desc '%s'", c.desc);
    }
    ds_free(&c);
    free(big.bytes);
    unlink(big.path);
    fprintf(stderr, "big text, bytes: %.2f s\n", now_s() - t0);
}

/* 2b. bytes through the cache; a tokenizer of no merges is the byte tokenizer (same cache) */
static void test_bytes_small(void) {
    MtpRng r;
    mtp_rng_seed(&r, 3);
    size_t n = 300001;
    uint8_t *b = malloc(n);
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)below(&r, 256);
    b[0] = 0, b[n - 1] = 0;
    char path[512], cache[512];
    path_in(path, "bytes.bin");
    write_file(path, b, n);
    DsOptions o;
    ds_options_init(&o);
    o.spec = path, o.quiet = 1, o.val_frac = 0.25, o.cache_path = path_in(cache, "bytes.tokens");
    size_t cut = text_cut(n, 0.25), nrt, nrv;
    int32_t *rt = encode_ref(NULL, b, cut, 1, &nrt), *rv = encode_ref(NULL, b + cut, n - cut, 0, &nrv);
    DsCorpus c;
    if (LOAD(&c, &o) == 0) {
        CHECK(c.from_cache == 2);
        check_corpus_refs(&c, rt, nrt, rv, nrv);
    }
    ds_free(&c);
    DsBpe *zero = NULL;
    char err[256];
    CHECK(ds_bpe_from_merges(&zero, NULL, 0, err, sizeof err) == 0);
    o.tokenizer = zero;
    if (LOAD(&c, &o) == 0) {
        CHECK_MSG(c.from_cache == 1, "a 0-merge tokenizer should reuse the byte cache (from_cache %d)", c.from_cache);
        check_corpus_refs(&c, rt, nrt, rv, nrv);
    }
    ds_free(&c);
    o.cache_path = NULL;
    if (LOAD(&c, &o) == 0) check_corpus_refs(&c, rt, nrt, rv, nrv);
    ds_free(&c);
    ds_bpe_free(zero);
    free(rt), free(rv), free(b);
}

/* ---------------------------------------------------------------- 3. JSONL */

typedef struct {
    const char *json;   /* the line, without its "\n" */
    const char *render; /* NULL: blank or bad */
    size_t rlen;        /* 0: strlen(render) */
    int bad;
} JLine;

static const JLine JFIXED[] = {
    {"{\"question\":\"What is 2+2?\",\"answer\":\"2+2=4\\n#### 4\"}", "What is 2+2?\n2+2=4\n#### 4\n", 0, 0},
    {"{\"text\":\"plain text\\nsecond line\"}", "plain text\nsecond line", 0, 0},
    {"   \t", NULL, 0, 0},
    {"{\"question\":\"Q\",\"answer\":\"ends with a newline\\n\",\"text\":\"ignored\"}", "Q\nends with a newline\n", 0, 0},
    {"{\"question\":\"only a question\",\"text\":\"the text then\"}", "the text then", 0, 0},
    {"{\"text\":\"unicode \\u00e9\\ud83d\\ude00 and raw \xc3\xa9\"}", "unicode \xc3\xa9\xf0\x9f\x98\x80 and raw \xc3\xa9", 0, 0},
    {"{\"text\":\"nul \\u0000 inside\"}", "nul \0 inside", 12, 0},
    {"{\"text\":\"crlf line\"}\r", "crlf line", 0, 0},
    {"{\"id\": 7, \"nested\": {\"a\": [1, 2, {\"text\": 3}]}, \"text\": \"after nesting\"}", "after nesting", 0, 0},
    {"", NULL, 0, 0},
};

static const JLine JBAD[] = {
    {"{\"text\": 5}", NULL, 0, 1},
    {"{broken", NULL, 0, 1},
    {"{\"other\":\"no known field\"}", NULL, 0, 1},
};

/* Writes a JSONL file of lines (the last one without "\n") and fills the expected tokens. */
typedef struct {
    int32_t *train, *val;
    size_t n_train, n_val;
    long lines, bad;
    long first_bad_line;
} JExpect;

static void jexpect_free(JExpect *e) {
    free(e->train), free(e->val);
    memset(e, 0, sizeof *e);
}

static void put_record(int32_t *dst, size_t *n, const DsBpe *t, const char *text, size_t len) {
    dst[(*n)++] = DS_BOS;
    *n += t ? ds_bpe_encode(t, dst + *n, (const uint8_t *)text, len) : ds_encode_bytes(dst + *n, (const uint8_t *)text, len);
    dst[(*n)++] = DS_EOS;
}

static void write_jsonl(const char *path, const JLine *lines, long n, double vf, const DsBpe *t, int skip, JExpect *e) {
    memset(e, 0, sizeof *e);
    size_t cap = 0;
    for (long i = 0; i < n; i++) cap += strlen(lines[i].json) + 1 + (lines[i].rlen ? lines[i].rlen : 0) + 3;
    char *file = calloc(1, cap + 1);
    CHECK(file != NULL);
    if (!file) return;
    size_t k = 0;
    for (long i = 0; i < n; i++) {
        size_t l = strlen(lines[i].json);
        memcpy(file + k, lines[i].json, l);
        k += l;
        if (i + 1 < n) file[k++] = '\n';
    }
    write_file(path, file, k);
    free(file);
    e->lines = n;
    long train_lines = jsonl_train_lines(n, vf);
    e->train = malloc((cap + 2) * sizeof(int32_t));
    e->val = malloc((cap + 2) * sizeof(int32_t));
    for (long i = 0; i < n; i++) {
        if (lines[i].bad) {
            e->bad++;
            if (!e->first_bad_line) e->first_bad_line = i + 1;
            continue;
        }
        if (!lines[i].render) continue;
        size_t len = lines[i].rlen ? lines[i].rlen : strlen(lines[i].render);
        if (i + 1 <= train_lines) put_record(e->train, &e->n_train, t, lines[i].render, len);
        else put_record(e->val, &e->n_val, t, lines[i].render, len);
    }
    (void)skip;
}

/* A list of lines: the fixed ones, n_gen generated records, then the bad lines inserted so that bad
   line i is at 0-based index bad_at[i] (ascending). Returns the number of lines. */
static long build_lines(JLine *out, char **store, int n_gen, const int *bad_at, int n_bad) {
    long n = 0;
    for (size_t i = 0; i < sizeof JFIXED / sizeof JFIXED[0]; i++) out[n++] = JFIXED[i];
    for (int g = 0; g < n_gen; g++) {
        char *json = malloc(160), *render = malloc(160);
        if (g % 3 == 0) {
            snprintf(json, 160, "{\"question\":\"Compute %d + %d.\",\"answer\":\"%d\\n#### %d\"}", g, g + 1, 2 * g + 1, 2 * g + 1);
            snprintf(render, 160, "Compute %d + %d.\n%d\n#### %d\n", g, g + 1, 2 * g + 1, 2 * g + 1);
        } else {
            snprintf(json, 160, "{\"text\":\"record %d: %.*s\"}", g, g % 40, "lorem ipsum dolor sit amet, consectetur adipiscing");
            snprintf(render, 160, "record %d: %.*s", g, g % 40, "lorem ipsum dolor sit amet, consectetur adipiscing");
        }
        store[2 * g] = json, store[2 * g + 1] = render;
        out[n++] = (JLine){json, render, 0, 0};
    }
    for (int b = 0; b < n_bad; b++) {
        long at = bad_at[b] < n ? bad_at[b] : n;
        memmove(out + at + 1, out + at, (size_t)(n - at) * sizeof *out);
        out[at] = JBAD[b % 3];
        n++;
    }
    return n;
}

static void test_jsonl(const DsBpe *tok) {
    double t0 = now_s();
    char path[512];
    path_in(path, "records.jsonl");
    JLine lines[200];
    char *store[2 * 100] = {0};
    DsOptions o;
    ds_options_init(&o);
    o.spec = path, o.quiet = 1, o.val_frac = 0.25;
    DsCorpus c;
    JExpect e;

    /* clean file: byte tokenizer, then BPE */
    long n = build_lines(lines, store, 50, NULL, 0);
    for (int t = 0; t < 2; t++) {
        const DsBpe *tk = t ? tok : NULL;
        o.tokenizer = tk;
        write_jsonl(path, lines, n, o.val_frac, tk, 0, &e);
        if (LOAD(&c, &o) == 0) {
            CHECK_TOKENS(c.train, c.n_train, e.train, e.n_train);
            CHECK_TOKENS(c.val, c.n_val, e.val, e.n_val);
            CHECK(c.skipped_lines == 0 && c.n_parts == 1 && c.part_start[1] == c.n_train);
        }
        ds_free(&c);
        jexpect_free(&e);
    }
    o.tokenizer = NULL;

    /* bad lines in both splits: skipped and counted, or an error naming file:line */
    int bad_at[] = {3, 20, 55};
    for (int g = 0; g < 100; g++) free(store[g]), store[g] = NULL;
    n = build_lines(lines, store, 50, bad_at, 3);
    CHECK(n == 10 + 50 + 3);
    write_jsonl(path, lines, n, o.val_frac, NULL, 1, &e);
    CHECK(e.bad == 3 && e.first_bad_line == 4);
    o.jsonl.skip_bad_lines = 1;
    if (LOAD(&c, &o) == 0) {
        CHECK_TOKENS(c.train, c.n_train, e.train, e.n_train);
        CHECK_TOKENS(c.val, c.n_val, e.val, e.n_val);
        CHECK_MSG(c.skipped_lines == 3, "skipped_lines %ld", c.skipped_lines);
        CHECK_MSG(strstr(c.desc, "3 bad lines skipped") != NULL, "desc '%s'", c.desc);
    }
    ds_free(&c);
    o.jsonl.skip_bad_lines = 0;
    char want[600];
    snprintf(want, sizeof want, "%s:%ld:", path, e.first_bad_line);
    LOAD_ERR(&o, want);
    jexpect_free(&e);

    /* only one bad line, in the validation part: still found */
    for (int g = 0; g < 100; g++) free(store[g]), store[g] = NULL;
    int bad_val[] = {57};
    n = build_lines(lines, store, 50, bad_val, 1);
    write_jsonl(path, lines, n, o.val_frac, NULL, 0, &e);
    CHECK(jsonl_train_lines(n, o.val_frac) < e.first_bad_line);
    snprintf(want, sizeof want, "%s:%ld: byte", path, e.first_bad_line);
    LOAD_ERR(&o, want);
    jexpect_free(&e);
    for (int g = 0; g < 100; g++) free(store[g]), store[g] = NULL;

    /* a record longer than a block, BPE: encoded as one piece would be */
    MtpRng r;
    mtp_rng_seed(&r, 11);
    size_t hn = BLOCK + BLOCK / 4;
    uint8_t *huge = malloc(hn);
    gen_text(huge, hn, &r, 2);
    char *hj = malloc(hn * 6 + 64);
    size_t k = (size_t)sprintf(hj, "{\"text\":\"");
    k += json_escape(hj + k, huge, hn);
    k += (size_t)sprintf(hj + k, "\"}");
    hj[k] = 0;
    JLine big3[3] = {{"{\"text\":\"small one\"}", "small one", 0, 0}, {hj, (const char *)huge, hn, 0},
                     {"{\"text\":\"validation record\"}", "validation record", 0, 0}};
    o.tokenizer = tok, o.val_frac = 0.34;
    write_jsonl(path, big3, 3, o.val_frac, tok, 0, &e);
    if (LOAD(&c, &o) == 0) {
        CHECK_TOKENS(c.train, c.n_train, e.train, e.n_train);
        CHECK_TOKENS(c.val, c.n_val, e.val, e.n_val);
    }
    ds_free(&c);
    jexpect_free(&e);
    free(hj), free(huge);
    unlink(path);
    fprintf(stderr, "jsonl: %.2f s\n", now_s() - t0);
}

/* ---------------------------------------------------------------- 4. mixtures and sampling */

/* 0: special, 1: text part (bytes 0x80..0xff), 2: builtin:arith (ASCII), 3: jsonl (bytes 1..8) */
static int tok_class(int32_t t) {
    if (t == DS_BOS || t == DS_EOS) return 0;
    if (t >= 0x80 && t <= 0xff) return 1;
    if (t == '\n' || (t >= 0x20 && t < 0x7f)) return 2;
    if (t >= 1 && t <= 8) return 3;
    return -1;
}

/* Which part a row's tokens come from (1..3), or -1 when they mix alphabets. */
static int row_part(const int32_t *row, int T1) {
    int mask = 0;
    for (int j = 0; j < T1; j++) {
        int k = tok_class(row[j]);
        if (k < 0) return -1;
        if (k) mask |= 1 << k;
    }
    return mask == 2 ? 1 : mask == 4 ? 2 : mask == 8 ? 3 : -1;
}

/* The text part's file is byte i = 0x80 | (i & 127) after a BOS: a window is consecutive. */
static int text_window_ok(const int32_t *row, int T1) {
    for (int j = 1; j < T1; j++) {
        int32_t want = row[j - 1] == DS_BOS ? 0x80 : (0x80 | ((row[j - 1] + 1) & 127));
        if (row[j] != want) return 0;
    }
    for (int j = 1; j < T1; j++)
        if (row[j] == DS_BOS) return 0;
    return 1;
}

/* Is row a window of tok[0..n)? (int-aligned match) */
static int find_window(const int32_t *tok, size_t n, const int32_t *row, int T1) {
    const char *hay = (const char *)tok, *end = hay + n * 4;
    for (const char *p = hay; p < end;) {
        const char *m = memmem(p, (size_t)(end - p), row, (size_t)T1 * 4);
        if (!m) return 0;
        if ((size_t)(m - hay) % 4 == 0) return 1;
        p = m + 1;
    }
    return 0;
}

static void make_mix_sources(char *text_path, char *jsonl_path) {
    size_t n = 200000;
    uint8_t *b = malloc(n);
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)(0x80 | (i & 127));
    path_in(text_path, "mix_text.bin");
    write_file(text_path, b, n);
    free(b);
    MtpRng r;
    mtp_rng_seed(&r, 21);
    path_in(jsonl_path, "mix_ctrl.jsonl");
    FILE *f = fopen(jsonl_path, "wb");
    for (int i = 0; i < 300; i++) {
        fputs("{\"text\":\"", f);
        int len = 10 + (int)below(&r, 20);
        for (int j = 0; j < len; j++) fprintf(f, "\\u%04x", 1 + (int)below(&r, 8));
        fputs("\"}\n", f);
    }
    fclose(f);
}

static void set_source(DsSource *s, const char *spec, double w) {
    snprintf(s->spec, sizeof s->spec, "%s", spec);
    s->weight = w;
}

/* part_of[class]: the part index of each token class (-1: not in this corpus) */
static void check_sampling(const DsCorpus *c, const double *w, const int *part_of, int rows, uint64_t seed) {
    const int T1 = 16;
    int32_t *out = malloc((size_t)rows * T1 * sizeof *out);
    MtpRng r;
    mtp_rng_seed(&r, seed);
    ds_corpus_sample(out, c, rows, T1, &r);
    int count[4] = {0}, mixed = 0, not_window = 0, checked_big = 0;
    for (int b = 0; b < rows; b++) {
        const int32_t *row = out + (size_t)b * T1;
        int cls = row_part(row, T1), p = cls < 0 ? -1 : part_of[cls];
        if (p < 0) {
            if (mixed++ < 3) fprintf(stderr, "row %d mixes parts or has foreign tokens\n", b);
            continue;
        }
        count[p]++;
        const int32_t *part = c->train + c->part_start[p];
        size_t plen = c->part_start[p + 1] - c->part_start[p];
        if (cls == 1) not_window += !text_window_ok(row, T1);
        else if (cls == 3 || checked_big++ < 8) not_window += !find_window(part, plen, row, T1);
    }
    CHECK_MSG(mixed == 0, "%d of %d rows mix tokens of several sources", mixed, rows);
    CHECK_MSG(not_window == 0, "%d rows are not windows of their part", not_window);
    double wsum = 0;
    for (int i = 0; i < c->n_parts; i++) wsum += w[i];
    for (int i = 0; i < c->n_parts; i++) {
        double f = (double)count[i] / rows;
        CHECK_MSG(fabs(f - w[i] / wsum) < 0.02, "part %d drawn %.4f of the time, weight %.4f", i, f, w[i] / wsum);
    }
    free(out);
}

static void test_mixture(void) {
    double t0 = now_s();
    char tp[512], jp[512], cache[512];
    make_mix_sources(tp, jp);
    DsOptions o;
    ds_options_init(&o);
    o.quiet = 1, o.min_tokens = 17;

    /* each source alone */
    DsCorpus alone[3];
    const char *specs[3] = {tp, "builtin:arith", jp};
    for (int i = 0; i < 3; i++) {
        o.spec = specs[i];
        if (LOAD(&alone[i], &o)) memset(&alone[i], 0, sizeof alone[i]);
    }
    o.spec = NULL;

    double w[3] = {5, 3, 2};
    o.n_sources = 3;
    for (int i = 0; i < 3; i++) set_source(&o.sources[i], specs[i], w[i]);
    for (int pass = 0; pass < 3; pass++) { /* memory, cache build, cache map */
        o.cache_path = pass ? path_in(cache, "mix.tokens") : NULL;
        DsCorpus c;
        if (LOAD(&c, &o)) continue;
        CHECK(c.from_cache == (pass == 0 ? 0 : pass == 1 ? 2 : 1));
        CHECK(c.n_parts == 3 && c.part_start[0] == 0 && c.part_start[3] == c.n_train);
        size_t nv = 0;
        for (int i = 0; i < 3; i++) {
            size_t len = c.part_start[i + 1] - c.part_start[i];
            CHECK_MSG(same_tokens(c.train + c.part_start[i], len, alone[i].train, alone[i].n_train),
                      "pass %d: part %d (%zu tokens) differs from the source alone (%zu tokens)", pass, i, len,
                      alone[i].n_train);
            CHECK_MSG(c.n_val >= nv + alone[i].n_val &&
                          same_tokens(c.val + nv, alone[i].n_val, alone[i].val, alone[i].n_val),
                      "pass %d: validation tokens of part %d", pass, i);
            nv += alone[i].n_val;
        }
        CHECK(c.n_val == nv);
        CHECK_CLOSE(c.part_cum[0], 0.5, 1e-12, 0);
        CHECK_CLOSE(c.part_cum[1], 0.8, 1e-12, 0);
        CHECK(c.part_cum[2] == 1.0);
        const char *dwant = "3 sources (mix_text.bin 50%, builtin:arith 30%, mix_ctrl.jsonl 20%): ";
        CHECK_MSG(strncmp(c.desc, dwant, strlen(dwant)) == 0, "desc '%s'", c.desc);
        const int part_of[4] = {-1, 0, 1, 2};
        if (pass == 0) check_sampling(&c, w, part_of, 20000, 99);
        ds_free(&c);
    }
    /* the weights are not part of the cache: other weights map the same file */
    o.sources[0].weight = 1, o.sources[1].weight = 1, o.sources[2].weight = 2;
    DsCorpus c;
    if (LOAD(&c, &o) == 0) {
        CHECK(c.from_cache == 1);
        CHECK_CLOSE(c.part_cum[0], 0.25, 1e-12, 0);
        CHECK_CLOSE(c.part_cum[1], 0.5, 1e-12, 0);
    }
    ds_free(&c);
    unlink(cache);
    o.cache_path = NULL;

    /* 0.7 / 0.3 as --data arguments */
    char arg[600], err[256];
    o.n_sources = 2;
    snprintf(arg, sizeof arg, "%s:0.7", tp);
    CHECK(ds_source_parse(&o.sources[0], arg, err, sizeof err) == 0);
    snprintf(arg, sizeof arg, "%s:0.3", jp);
    CHECK(ds_source_parse(&o.sources[1], arg, err, sizeof err) == 0);
    if (LOAD(&c, &o) == 0) {
        double w2[2] = {0.7, 0.3};
        const int part_of[4] = {-1, 0, -1, 1};
        CHECK(c.n_parts == 2 && c.part_cum[1] == 1.0);
        CHECK_CLOSE(c.part_cum[0], 0.7, 1e-12, 0);
        check_sampling(&c, w2, part_of, 20000, 5);
    }
    ds_free(&c);

    /* one source: exactly ds_sample_batch, rng state included; a hand-made corpus (n_parts 0) too */
    for (int i = 0; i < 3; i += 2) {
        if (!alone[i].train) continue;
        int32_t a[64 * 24], b[64 * 24];
        MtpRng r1, r2;
        mtp_rng_seed(&r1, 1234 + (uint64_t)i);
        r2 = r1;
        ds_corpus_sample(a, &alone[i], 64, 24, &r1);
        ds_sample_batch(b, alone[i].train, alone[i].n_train, 64, 24, &r2);
        CHECK(memcmp(a, b, sizeof a) == 0 && memcmp(&r1, &r2, sizeof r1) == 0);
        DsCorpus hand = {0};
        hand.train = alone[i].train, hand.n_train = alone[i].n_train;
        ds_corpus_sample(a, &hand, 64, 24, &r1);
        ds_sample_batch(b, alone[i].train, alone[i].n_train, 64, 24, &r2);
        CHECK(memcmp(a, b, sizeof a) == 0 && memcmp(&r1, &r2, sizeof r1) == 0);
    }
    for (int i = 0; i < 3; i++) ds_free(&alone[i]);

    /* a short part is named in the error */
    o.min_tokens = 200001 + 2;
    LOAD_ERR(&o, tp, "training split");
    unlink(tp), unlink(jp);
    fprintf(stderr, "mixture: %.2f s\n", now_s() - t0);
}

/* ---------------------------------------------------------------- 5. token cache */

typedef struct {
    char dir[512], cache[600], text[600], jsonl[600];
} CacheEnv;

/* Loads o through its cache, expects from_cache == want_from, and compares every field with a fresh
   in-memory load; no temp file may remain except `except`. */
#define CACHE_LOAD(env, o, want_from, except) cache_load_at(env, o, want_from, except, __LINE__)
static void cache_load_at(const CacheEnv *env, const DsOptions *o, int want_from, const char *except, int line) {
    DsOptions m = *o;
    m.cache_path = NULL;
    DsCorpus c, ref;
    if (load_at(&c, o, line)) return;
    if (load_at(&ref, &m, line) == 0) {
        int ok = c.from_cache == want_from && c.map != NULL && ref.from_cache == 0 &&
                 same_tokens(c.train, c.n_train, ref.train, ref.n_train) && same_tokens(c.val, c.n_val, ref.val, ref.n_val) &&
                 c.n_parts == ref.n_parts && c.skipped_lines == ref.skipped_lines && strcmp(c.desc, ref.desc) == 0;
        for (int i = 0; ok && i <= c.n_parts; i++) ok &= c.part_start[i] == ref.part_start[i];
        for (int i = 0; ok && i < c.n_parts; i++) ok &= c.part_cum[i] == ref.part_cum[i];
        test_checks++;
        if (!ok) {
            test_failures++;
            fprintf(stderr, "%s:%d: cache load: from_cache %d (want %d), %zu/%zu tokens vs %zu/%zu fresh, desc '%s' vs '%s'\n",
                    __FILE__, line, c.from_cache, want_from, c.n_train, c.n_val, ref.n_train, ref.n_val, c.desc, ref.desc);
        }
    }
    test_checks++;
    if (count_tmp(env->dir, except) != 0) {
        test_failures++;
        fprintf(stderr, "%s:%d: temp files left after a load\n", __FILE__, line);
    }
    ds_free(&c), ds_free(&ref);
}

/* Overwrites 4 bytes of the cache file at offset at. */
static void poke32(const char *path, long at, uint32_t v) {
    int fd = open(path, O_WRONLY);
    CHECK(fd >= 0 && pwrite(fd, &v, 4, at) == 4);
    if (fd >= 0) close(fd);
}

static void cache_offsets(const char *path, uint32_t *hl, uint32_t *off, size_t *size) {
    size_t n;
    uint8_t *p = read_all(path, &n);
    *hl = *off = 0, *size = n;
    if (p && n >= 16) memcpy(hl, p + 8, 4), memcpy(off, p + 12, 4);
    free(p);
}

static void write_cache_jsonl(const char *path, int n, const char *tag) {
    FILE *f = fopen(path, "wb");
    for (int i = 0; i < n; i++) {
        if (i % 4 == 0) fprintf(f, "{\"question\":\"q%d %s?\",\"answer\":\"a%d\\n#### %d\",\"text\":\"t%d\",\"body\":\"body %d\"}\n", i, tag, i, i, i, i);
        else fprintf(f, "{\"text\":\"text record %d %s\",\"body\":\"body record %d\"}\n", i, tag, i);
    }
    fclose(f);
}

static void test_cache(const DsBpe *tokA, const DsBpe *tokB) {
    double t0 = now_s();
    CacheEnv env;
    path_in(env.dir, "cache");
    CHECK(mkdir(env.dir, 0700) == 0);
    snprintf(env.cache, sizeof env.cache, "%s/corpus.tokens", env.dir);
    snprintf(env.text, sizeof env.text, "%s/c.txt", env.dir);
    snprintf(env.jsonl, sizeof env.jsonl, "%s/j.jsonl", env.dir);
    MtpRng r;
    mtp_rng_seed(&r, 8);
    size_t tn = 300000;
    uint8_t *tb = malloc(tn + 1);
    gen_text(tb, tn, &r, 2);
    write_file(env.text, tb, tn);
    write_cache_jsonl(env.jsonl, 200, "v1");

    DsOptions o;
    ds_options_init(&o);
    o.quiet = 1, o.tokenizer = tokA, o.cache_path = env.cache;
    o.n_sources = 2;
    set_source(&o.sources[0], env.text, 1);
    set_source(&o.sources[1], env.jsonl, 1);

    CACHE_LOAD(&env, &o, 2, NULL);
    /* the file: magic, page-aligned tokens, train then val */
    {
        size_t n;
        uint8_t *p = read_all(env.cache, &n);
        CHECK(p && n >= 16 && memcmp(p, "MTPTOKS1", 8) == 0 && memcmp(p, DS_CACHE_MAGIC, 8) == 0);
        uint32_t hl = 0, off = 0;
        if (p && n >= 16) memcpy(&hl, p + 8, 4), memcpy(&off, p + 12, 4);
        CHECK(off % 4096 == 0 && 16 + hl <= off && off <= n);
        DsOptions m = o;
        m.cache_path = NULL;
        DsCorpus ref;
        if (p && LOAD(&ref, &m) == 0) {
            CHECK(n == off + 4 * (ref.n_train + ref.n_val));
            CHECK(n == off + 4 * (ref.n_train + ref.n_val) && memcmp(p + off, ref.train, 4 * ref.n_train) == 0 &&
                  memcmp(p + off + 4 * ref.n_train, ref.val, 4 * ref.n_val) == 0);
        }
        ds_free(&ref);
        free(p);
    }
    CACHE_LOAD(&env, &o, 1, NULL);
    o.seed = 99; /* no builtin source: the seed does not matter */
    CACHE_LOAD(&env, &o, 1, NULL);
    o.seed = 1;

    /* a source changed: one more byte, or only a new mtime */
    tb[tn] = 'Z';
    write_file(env.text, tb, tn + 1);
    CACHE_LOAD(&env, &o, 2, NULL);
    CACHE_LOAD(&env, &o, 1, NULL);
    struct stat st;
    CHECK(stat(env.text, &st) == 0);
    struct timespec ts[2] = {st.st_atim, st.st_mtim};
    ts[1].tv_sec += 10;
    CHECK(utimensat(AT_FDCWD, env.text, ts, 0) == 0);
    CACHE_LOAD(&env, &o, 2, NULL);
    CACHE_LOAD(&env, &o, 1, NULL);
    ts[1].tv_nsec = (ts[1].tv_nsec + 1) % 1000000000; /* a nanosecond is a change too */
    CHECK(utimensat(AT_FDCWD, env.text, ts, 0) == 0);
    CACHE_LOAD(&env, &o, 2, NULL);
    /* rewritten in place with the size and the time put back (cp -p, an editor): the sample of the
       first and last 64 KiB sees a change at either end */
    for (int end = 0; end < 2; end++) {
        CACHE_LOAD(&env, &o, 1, NULL);
        CHECK(stat(env.text, &st) == 0);
        struct timespec keep[2] = {st.st_atim, st.st_mtim};
        const size_t at = end ? tn : 0;
        tb[at] = tb[at] == 'q' ? 'r' : 'q';
        write_file(env.text, tb, tn + 1);
        CHECK(utimensat(AT_FDCWD, env.text, keep, 0) == 0);
        CACHE_LOAD(&env, &o, 2, NULL);
    }

    /* other options */
    o.tokenizer = tokB;
    CACHE_LOAD(&env, &o, 2, NULL);
    CACHE_LOAD(&env, &o, 1, NULL);
    o.tokenizer = tokA;
    CACHE_LOAD(&env, &o, 2, NULL);
    o.val_frac = 0.2;
    CACHE_LOAD(&env, &o, 2, NULL);
    o.val_frac = 0.1;
    CACHE_LOAD(&env, &o, 2, NULL);
    o.jsonl.text = "body";
    CACHE_LOAD(&env, &o, 2, NULL);
    CACHE_LOAD(&env, &o, 1, NULL);
    o.jsonl.text = "text";
    CACHE_LOAD(&env, &o, 2, NULL);
    o.jsonl.question = "nope"; /* every record then renders its text field */
    CACHE_LOAD(&env, &o, 2, NULL);
    o.jsonl.question = "question";
    CACHE_LOAD(&env, &o, 2, NULL);
    o.jsonl.skip_bad_lines = 1;
    CACHE_LOAD(&env, &o, 2, NULL);
    o.jsonl.skip_bad_lines = 0;
    CACHE_LOAD(&env, &o, 2, NULL);
    o.n_sources = 1;
    CACHE_LOAD(&env, &o, 2, NULL);
    o.n_sources = 2;
    CACHE_LOAD(&env, &o, 2, NULL);
    set_source(&o.sources[0], env.jsonl, 1), set_source(&o.sources[1], env.text, 1); /* order matters */
    CACHE_LOAD(&env, &o, 2, NULL);
    set_source(&o.sources[0], env.text, 1), set_source(&o.sources[1], env.jsonl, 1);
    CACHE_LOAD(&env, &o, 2, NULL);
    CACHE_LOAD(&env, &o, 1, NULL);

    /* damage: never trusted, rebuilt to what a fresh build gives */
    uint32_t hl, off;
    size_t size;
    cache_offsets(env.cache, &hl, &off, &size);
    CHECK(truncate(env.cache, (off_t)size - 3) == 0);
    CACHE_LOAD(&env, &o, 2, NULL);
    CHECK(truncate(env.cache, (off_t)size - 4) == 0); /* a whole token less */
    CACHE_LOAD(&env, &o, 2, NULL);
    CHECK(truncate(env.cache, (off_t)size + 4096) == 0); /* longer */
    CACHE_LOAD(&env, &o, 2, NULL);
    CHECK(truncate(env.cache, (off_t)off + 8) == 0);
    CACHE_LOAD(&env, &o, 2, NULL);
    CHECK(truncate(env.cache, 100) == 0); /* inside the header */
    CACHE_LOAD(&env, &o, 2, NULL);
    const int32_t vocab = (int32_t)ds_bpe_vocab(tokA);
    const uint32_t bad_tok[] = {0x7fffffffu, (uint32_t)DS_PAD, 0xffffffffu, (uint32_t)vocab, 0x80000000u};
    for (int i = 0; i < 5; i++) {
        cache_offsets(env.cache, &hl, &off, &size);
        long n_tok = (long)(size - off) / 4;
        long at = i % 2 ? n_tok - 1 - 7 * i : 5 + 11 * i; /* in the training split, or the validation split */
        poke32(env.cache, (long)off + 4 * at, bad_tok[i]);
        CACHE_LOAD(&env, &o, 2, NULL);
    }
    cache_offsets(env.cache, &hl, &off, &size);
    poke32(env.cache, (long)off, (uint32_t)(vocab - 1)); /* in range: a cache is not checksummed, only range-checked */
    {
        DsCorpus c;
        if (LOAD(&c, &o) == 0) CHECK(c.from_cache == 1 && c.train[0] == vocab - 1);
        ds_free(&c);
    }
    poke32(env.cache, 8, 0xffffffffu); /* header length */
    CACHE_LOAD(&env, &o, 2, NULL);
    cache_offsets(env.cache, &hl, &off, &size);
    poke32(env.cache, 12, off - 1); /* data offset not page-aligned */
    CACHE_LOAD(&env, &o, 2, NULL);
    poke32(env.cache, 8, 3); /* a header cut short */
    CACHE_LOAD(&env, &o, 2, NULL);
    {
        size_t n;
        uint8_t *p = read_all(env.cache, &n);
        uint8_t *f = p ? memmem(p, n, "mtp-tokens", 10) : NULL;
        CHECK(f != NULL);
        if (f) {
            f[9] = 'z'; /* another format */
            write_file(env.cache, p, n);
            CACHE_LOAD(&env, &o, 2, NULL);
        }
        free(p);
        p = read_all(env.cache, &n);
        f = p ? memmem(p, n, "version", 7) : NULL;
        CHECK(f && f[7] == 1); /* the key, then the version as a positive fixint */
        if (f && f[7] == 1) {
            f[7] = 2;
            write_file(env.cache, p, n);
            CACHE_LOAD(&env, &o, 2, NULL);
        }
        free(p);
    }

    /* not a cache: an error, and the file is left alone */
    char other[700];
    snprintf(other, sizeof other, "%s/not_a_cache.bin", env.dir);
    uint8_t junk[10000];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)below(&r, 256);
    for (int variant = 0; variant < 3; variant++) {
        size_t jn = variant == 0 ? sizeof junk : variant == 1 ? 5 : 0;
        write_file(other, junk, jn);
        struct stat before, after;
        stat(other, &before);
        DsOptions x = o;
        x.cache_path = other;
        LOAD_ERR(&x, "not a token cache", other);
        size_t n;
        uint8_t *p = read_all(other, &n);
        stat(other, &after);
        CHECK(p && n == jn && memcmp(p, junk, jn) == 0 && after.st_mtim.tv_sec == before.st_mtim.tv_sec &&
              after.st_mtim.tv_nsec == before.st_mtim.tv_nsec);
        free(p);
        CHECK(count_tmp(env.dir, NULL) == 0);
    }
    unlink(other);
    {
        DsOptions x = o;
        x.cache_path = env.dir; /* a directory */
        LOAD_ERR(&x, env.dir);
        char nodir[800];
        snprintf(nodir, sizeof nodir, "%s/no/such/dir/c.tokens", env.dir);
        x.cache_path = nodir;
        LOAD_ERR(&x, nodir);
    }

    /* an interrupted build's temp file is never used: one of a live process (pid 1) is left alone,
       one of a process that is gone (and one with our own pid) is removed by the next build */
    char foreign[700], foreign_name[64], dead[700], own[700];
    snprintf(foreign_name, sizeof foreign_name, "corpus.tokens.tmp.1");
    snprintf(foreign, sizeof foreign, "%s/%s", env.dir, foreign_name);
    snprintf(dead, sizeof dead, "%s.tmp.%ld", env.cache, 4000000L + (long)getpid());
    snprintf(own, sizeof own, "%s.tmp.%ld", env.cache, (long)getpid());
    {
        size_t n;
        uint8_t *good = read_all(env.cache, &n); /* a valid cache's bytes, as garbage for other options */
        CHECK(good != NULL);
        write_file(foreign, good ? good : junk, good ? n : sizeof junk);
        write_file(dead, good ? good : junk, good ? n : sizeof junk);
        write_file(own, junk, sizeof junk);
        unlink(env.cache);
        o.val_frac = 0.15;
        CACHE_LOAD(&env, &o, 2, foreign_name);
        CHECK(!exists(own));
        CHECK(!exists(dead));
        size_t n2;
        uint8_t *still = read_all(foreign, &n2);
        CHECK(still && good && n2 == n && memcmp(still, good, n) == 0);
        free(still);
        CACHE_LOAD(&env, &o, 1, foreign_name);
        o.val_frac = 0.1;
        free(good);
        unlink(foreign);
    }

    /* a failed build leaves neither a cache nor a temp file */
    {
        char badj[700], bcache[700];
        snprintf(badj, sizeof badj, "%s/bad.jsonl", env.dir);
        snprintf(bcache, sizeof bcache, "%s/bad.tokens", env.dir);
        const char *s = "{\"text\":\"fine\"}\n{\"text\":\"fine too\"}\nnot json\n{\"text\":\"fine\"}\n";
        write_file(badj, s, strlen(s));
        DsOptions x = o;
        set_source(&x.sources[1], badj, 1);
        x.cache_path = bcache;
        char want[800];
        snprintf(want, sizeof want, "%s:3:", badj);
        LOAD_ERR(&x, want);
        CHECK(!exists(bcache) && count_tmp(env.dir, NULL) == 0);
        unlink(badj);
    }

    /* a source deleted after the cache was built: an error naming it */
    CACHE_LOAD(&env, &o, 2, NULL); /* back to val_frac 0.1 */
    unlink(env.jsonl);
    LOAD_ERR(&o, env.jsonl);
    write_cache_jsonl(env.jsonl, 200, "v2");
    CACHE_LOAD(&env, &o, 2, NULL);

    /* a cache built with val_only (training splits left out) is not trusted for training: the
       header records val_only, and the training load rebuilds it */
    {
        DsOptions x = o;
        char vcache[700];
        snprintf(vcache, sizeof vcache, "%s/valonly.tokens", env.dir);
        x.cache_path = vcache;
        x.val_only = 1;
        DsCorpus c;
        if (LOAD(&c, &x) == 0) CHECK(c.from_cache == 2 && c.n_val > 0);
        ds_free(&c);
        x.val_only = 0;
        char err[1024] = "";
        int rc = ds_load(&c, &x, err, sizeof err);
        CHECK_MSG(rc == 0, "training load after a val_only load of the same cache: %s", err);
        if (rc == 0) {
            DsOptions m = x;
            m.cache_path = NULL;
            DsCorpus ref;
            if (LOAD(&ref, &m) == 0) CHECK_TOKENS(c.train, c.n_train, ref.train, ref.n_train);
            ds_free(&ref);
        }
        ds_free(&c);
        unlink(vcache);
    }

    /* a JSONL field name of any length is compared with the cache header's (a 299-byte one here) */
    {
        DsOptions x = o;
        char lcache[700], longname[300];
        snprintf(lcache, sizeof lcache, "%s/longfield.tokens", env.dir);
        memset(longname, 'k', 299);
        longname[299] = 0;
        x.cache_path = lcache;
        x.jsonl.question = longname; /* no record has it: every one renders its text field */
        x.n_sources = 1;
        set_source(&x.sources[0], env.jsonl, 1);
        DsCorpus c;
        char err[1024] = "";
        int rc = ds_load(&c, &x, err, sizeof err);
        CHECK_MSG(rc == 0, "cache with a 299-byte JSONL field name: %s", err);
        ds_free(&c);
        unlink(lcache);
        CHECK(count_tmp(env.dir, NULL) == 0);
    }

    /* builtin:arith: its seed and difficulty belong to the cache */
    {
        DsOptions x;
        ds_options_init(&x);
        x.quiet = 1, x.spec = "builtin:arith", x.cache_path = env.cache;
        CACHE_LOAD(&env, &x, 2, NULL);
        /* (a generated source is large: the rest only checks what the cache did) */
        const struct { uint64_t seed; int difficulty; double vf; int want; } steps[] = {
            {1, 0, 0.1, 1}, {2, 0, 0.1, 2}, {2, 0, 0.1, 1}, {2, 2, 0.1, 2},
            {2, 2, 0.3, 2}, /* a builtin's splits do not depend on val_frac, but the cache is simply rebuilt */
        };
        for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
            x.seed = steps[i].seed, x.difficulty = steps[i].difficulty, x.val_frac = steps[i].vf;
            DsCorpus c;
            if (LOAD(&c, &x) == 0)
                CHECK_MSG(c.from_cache == steps[i].want && c.n_train > DS_ARITH_TRAIN_BYTES,
                          "arith step %zu: from_cache %d", i, c.from_cache);
            ds_free(&c);
        }
        CHECK(count_tmp(env.dir, NULL) == 0);
    }
    unlink(env.cache), unlink(env.text), unlink(env.jsonl);
    free(tb);
    fprintf(stderr, "cache: %.2f s\n", now_s() - t0);
}

/* ---------------------------------------------------------------- 7. ds_source_parse */

#define PARSE_OK(arg, want_spec, want_w)                                                                  \
    do {                                                                                                  \
        DsSource s_;                                                                                      \
        char e_[512] = "";                                                                                \
        int rc_ = ds_source_parse(&s_, arg, e_, sizeof e_);                                               \
        CHECK_MSG(rc_ == 0 && strcmp(s_.spec, want_spec) == 0 && s_.weight == (want_w),                  \
                  "parse '%.60s': rc %d spec '%.60s' weight %g (%s)", arg, rc_, s_.spec, s_.weight, e_); \
    } while (0)

#define PARSE_ERR(arg, want)                                                                                 \
    do {                                                                                                     \
        DsSource s_;                                                                                         \
        char e_[512] = "";                                                                                   \
        int rc_ = ds_source_parse(&s_, arg, e_, sizeof e_);                                                  \
        CHECK_MSG(rc_ == -1 && e_[0] && !strchr(e_, '\n') && strstr(e_, want), "parse '%.60s': rc %d '%s'", arg, rc_, \
                  e_);                                                                                       \
    } while (0)

static void test_source_parse(void) {
    PARSE_OK("a.txt", "a.txt", 1.0);
    PARSE_OK("builtin:arith", "builtin:arith", 1.0);
    PARSE_OK("builtin:arith:0.3", "builtin:arith", 0.3);
    PARSE_OK("x.txt:2", "x.txt", 2.0);
    PARSE_OK("dir/x.jsonl:1e-3", "dir/x.jsonl", 1e-3);
    PARSE_OK("x.txt:abc", "x.txt:abc", 1.0); /* not a number: all spec */
    PARSE_OK("x.txt:", "x.txt:", 1.0);       /* nothing after the colon: all spec */
    PARSE_OK(":5", ":5", 1.0);               /* nothing before it: all spec */
    PARSE_OK("a:b:3", "a:b", 3.0);           /* the LAST colon */
    PARSE_OK("x.txt:0x10", "x.txt:0x10", 1.0); /* hex is not a weight: all spec */
    PARSE_OK("x.txt: 2", "x.txt: 2", 1.0);     /* nor a number after a space */
    PARSE_ERR("x.txt:0", "weight");
    PARSE_ERR("x.txt:-1", "weight");
    PARSE_ERR("x.txt:nan", "weight"); /* strtod reads "nan" as a number: a weight, and not a valid one */
    PARSE_ERR("x.txt:inf", "weight");
    PARSE_ERR("x.txt:1e999", "weight");
    PARSE_ERR("x.txt:0", "x.txt");
    PARSE_ERR("", "empty");
    /* an existing file with a number after its colon is a file, weight 1 */
    char p[512];
    path_in(p, "weird:5");
    write_file(p, "abc", 3);
    PARSE_OK(p, p, 1.0);
    char pw[600];
    snprintf(pw, sizeof pw, "%s:2.5", p);
    PARSE_OK(pw, p, 2.5);
    unlink(p);
    /* once it is gone, the same argument is "weird" with weight 5 */
    {
        DsSource s;
        char e[256];
        CHECK(ds_source_parse(&s, p, e, sizeof e) == 0 && s.weight == 5.0 && strlen(s.spec) == strlen(p) - 2);
    }
    /* length: DS_MAX_SPEC - 1 bytes fit, DS_MAX_SPEC do not (a weight suffix does not count) */
    char longp[DS_MAX_SPEC + 16];
    memset(longp, 'a', DS_MAX_SPEC - 1);
    longp[DS_MAX_SPEC - 1] = 0;
    {
        DsSource s;
        char e[256];
        CHECK(ds_source_parse(&s, longp, e, sizeof e) == 0 && strlen(s.spec) == DS_MAX_SPEC - 1);
        strcat(longp, ":2");
        CHECK(ds_source_parse(&s, longp, e, sizeof e) == 0 && strlen(s.spec) == DS_MAX_SPEC - 1 && s.weight == 2);
    }
    memset(longp, 'a', DS_MAX_SPEC);
    longp[DS_MAX_SPEC] = 0;
    PARSE_ERR(longp, "too long");
    memset(longp, 'b', DS_MAX_SPEC + 10);
    longp[DS_MAX_SPEC + 10] = 0;
    PARSE_ERR(longp, "too long");
}

/* ---------------------------------------------------------------- 8. ds_training_text */

static void test_training_text(void) {
    double t0 = now_s();
    char tp[512], jp[512];
    size_t tn = 100000;
    uint8_t *tb = malloc(tn);
    size_t cut = text_cut(tn, 0.1);
    for (size_t i = 0; i < tn; i++) tb[i] = i < cut ? (uint8_t)('a' + i % 26) : 'V';
    path_in(tp, "tt.txt");
    write_file(tp, tb, tn);
    path_in(jp, "tt.jsonl");
    long jl = 50, jtrain = jsonl_train_lines(50, 0.1);
    FILE *f = fopen(jp, "wb");
    size_t jcap = 0;
    char *jwant = malloc(1 << 16);
    for (long i = 0; i < jl; i++) {
        if (i < jtrain) {
            fprintf(f, "{\"text\":\"rec %ld\\nmore\"}\n", i);
            jcap += (size_t)sprintf(jwant + jcap, "rec %ld\nmore\n", i);
        } else fprintf(f, "{\"text\":\"VALREC %ld\"}\n", i);
    }
    fclose(f);

    DsOptions o;
    ds_options_init(&o);
    o.quiet = 1;
    uint8_t *t = NULL;
    size_t n = 0;
    char err[512];

    /* a text file: its training bytes only, up to max_bytes */
    o.spec = tp;
    CHECK(ds_training_text(&t, &n, &o, (size_t)1 << 20, err, sizeof err) == 0);
    CHECK_MSG(n == cut && t && memcmp(t, tb, cut) == 0, "n %zu, cut %zu", n, cut);
    free(t);
    CHECK(ds_training_text(&t, &n, &o, 5000, err, sizeof err) == 0);
    CHECK(n == 5000 && t && memcmp(t, tb, 5000) == 0);
    free(t);

    /* JSONL: training records joined by "\n", never a validation record */
    o.spec = jp;
    CHECK(ds_training_text(&t, &n, &o, (size_t)1 << 20, err, sizeof err) == 0);
    CHECK_MSG(n == jcap && t && memcmp(t, jwant, n) == 0, "jsonl training text: %zu bytes, want %zu", n, jcap);
    CHECK(!t || !memmem(t, n, "VALREC", 6));
    free(t);
    CHECK(ds_training_text(&t, &n, &o, 100, err, sizeof err) == 0);
    CHECK(t && n >= 1 && memcmp(t, jwant, n < jcap ? n : jcap) == 0);
    /* never more than max_bytes: the last record is cut to the quota */
    CHECK_MSG(n <= 100, "JSONL training text of %zu bytes for max_bytes 100", n);
    free(t);

    /* weights split max_bytes: 3/4 text, 1/4 records */
    o.spec = NULL;
    o.n_sources = 2;
    set_source(&o.sources[0], tp, 3);
    set_source(&o.sources[1], jp, 1);
    CHECK(ds_training_text(&t, &n, &o, 4000, err, sizeof err) == 0);
    CHECK(t && n >= 3000 && memcmp(t, tb, 3000) == 0 && memcmp(t + 3000, jwant, n - 3000 < jcap ? n - 3000 : jcap) == 0);
    CHECK_MSG(n <= 4000, "training text of %zu bytes for max_bytes 4000", n);
    free(t);
    /* large budget: everything, and still no validation byte */
    CHECK(ds_training_text(&t, &n, &o, (size_t)1 << 24, err, sizeof err) == 0);
    CHECK(t && n == cut + jcap && memcmp(t, tb, cut) == 0 && memcmp(t + cut, jwant, jcap) == 0);
    CHECK(!t || (!memchr(t, 'V', n) && !memmem(t, n, "VALREC", 6)));
    free(t);

    /* builtin:arith: the training stream's examples (from seed, not the validation seed) */
    o.n_sources = 0;
    o.spec = "builtin:arith";
    DsCorpus c;
    if (LOAD(&c, &o) == 0) {
        size_t k = 0, want_n = 0;
        uint8_t *dec = malloc(40000);
        while (want_n < 30000 && k < c.n_train) want_n += ds_decode_bytes(dec + want_n, c.train + k, 1), k++;
        CHECK(ds_training_text(&t, &n, &o, 20000, err, sizeof err) == 0);
        CHECK(t && n >= 20000 - 8000 && n <= want_n && memcmp(t, dec, n) == 0);
        CHECK_MSG(n <= 20000, "arith training text of %zu bytes for max_bytes 20000", n);
        free(t);
        free(dec);
    }
    ds_free(&c);
    /* errors come from the sources */
    o.spec = "builtin:nope";
    CHECK(ds_training_text(&t, &n, &o, 1000, err, sizeof err) == -1 && strstr(err, "builtin:nope") && t == NULL);
    unlink(tp), unlink(jp);
    free(tb), free(jwant);
    fprintf(stderr, "training text: %.2f s\n", now_s() - t0);
}

/* ---------------------------------------------------------------- 9. errors */

static void test_errors(void) {
    char ok[512], missing[512], dir[512], empty[512], small[512];
    path_in(ok, "ok.txt");
    uint8_t b[1000];
    for (int i = 0; i < 1000; i++) b[i] = (uint8_t)('a' + i % 26);
    write_file(ok, b, sizeof b);
    path_in(missing, "missing.txt");
    path_in(dir, "adir");
    mkdir(dir, 0700);
    path_in(empty, "empty.txt");
    write_file(empty, b, 0);
    path_in(small, "small.jsonl");
    write_file(small, "{\"text\":\"hi\"}\n", 14);

    DsOptions o;
    ds_options_init(&o);
    o.quiet = 1;
    o.spec = missing;
    LOAD_ERR(&o, missing, "no such file");
    o.spec = dir;
    LOAD_ERR(&o, dir, "directory");
    o.spec = empty;
    LOAD_ERR(&o, empty, "empty");
    o.spec = "builtin:nope";
    LOAD_ERR(&o, "builtin:nope", "builtin:arith");
    o.spec = ok;
    o.min_tokens = 200;
    LOAD_ERR(&o, ok, "validation split has 100 tokens");
    o.min_tokens = 950;
    LOAD_ERR(&o, ok, "training split has 901 tokens");
    o.min_tokens = 2;
    o.spec = small; /* one record of 4 tokens; round(0.1) = 0 validation lines */
    LOAD_ERR(&o, small, "validation split has 0 tokens");
    o.spec = NULL;

    /* with several sources, the failing one is named */
    o.n_sources = 2;
    set_source(&o.sources[0], ok, 1);
    set_source(&o.sources[1], missing, 1);
    LOAD_ERR(&o, missing, "no such file");
    set_source(&o.sources[1], "builtin:nope", 1);
    LOAD_ERR(&o, "builtin:nope");
    set_source(&o.sources[1], ok, 2);
    LOAD_ERR(&o, ok, "twice");
    set_source(&o.sources[1], "builtin:arith", 0);
    LOAD_ERR(&o, "builtin:arith", "weight");
    set_source(&o.sources[1], "builtin:arith", NAN);
    LOAD_ERR(&o, "builtin:arith", "weight");
    set_source(&o.sources[1], "", 1);
    LOAD_ERR(&o, "empty");
    set_source(&o.sources[1], small, 1);
    o.min_tokens = 10; /* ok.txt's 901 training tokens are fine; small.jsonl's 4 are not */
    o.val_frac = 0.5;
    LOAD_ERR(&o, small, "training split");
    o.min_tokens = 2, o.val_frac = 0.1;
    o.n_sources = DS_MAX_SOURCES + 1;
    LOAD_ERR(&o, "sources");
    o.n_sources = 0;
    LOAD_ERR(&o, "no corpus");
    /* a spec longer than DS_MAX_SPEC through the shorthand */
    char longp[DS_MAX_SPEC + 8];
    memset(longp, 'a', sizeof longp - 1);
    longp[sizeof longp - 1] = 0;
    o.spec = longp;
    LOAD_ERR(&o, "too long");
    /* the same errors with a cache, which must not be created */
    char cache[512];
    o.spec = missing;
    o.cache_path = path_in(cache, "err.tokens");
    LOAD_ERR(&o, missing, "no such file");
    o.spec = ok;
    o.min_tokens = 950;
    LOAD_ERR(&o, ok, "training split has 901 tokens");
    unlink(cache); /* a successful build of a corpus too short for the context may stay (it is valid) */
    CHECK(count_tmp(g_dir, NULL) == 0);
    unlink(ok), rmdir(dir), unlink(empty), unlink(small);
}

/* ---------------------------------------------------------------- main */

int main(void) {
    double t0 = now_s();
    CHECK(mkdtemp(g_dir) != NULL);

    /* two tokenizers (vocab 600 and 500) trained on 1 MB of the same mix */
    MtpRng r;
    mtp_rng_seed(&r, 1);
    size_t sn = (size_t)1 << 20;
    uint8_t *sample = malloc(sn);
    gen_text(sample, sn, &r, 2);
    DsBpe *tokA = NULL, *tokB = NULL;
    char err[256];
    CHECK(ds_bpe_train(&tokA, sample, sn, 600, err, sizeof err) == 0);
    CHECK(ds_bpe_train(&tokB, sample, sn, 500, err, sizeof err) == 0);
    free(sample);
    if (!tokA || !tokB) TEST_DONE();
    CHECK(ds_bpe_vocab(tokA) == 600 + 3 && ds_bpe_hash(tokA) != ds_bpe_hash(tokB));

    test_safe_split(tokA);
    test_big_text(tokA);
    test_bytes_small();
    test_jsonl(tokA);
    test_mixture();
    test_cache(tokA, tokB);
    test_source_parse();
    test_training_text();
    test_errors();

    ds_bpe_free(tokA);
    ds_bpe_free(tokB);
    nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    fprintf(stderr, "test_corpus: %.2f s\n", now_s() - t0);
    TEST_DONE();
}
