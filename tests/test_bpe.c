/* test_bpe.c - the byte-level BPE tokenizer: round trips on hostile bytes, agreement with a naive
 * reference encoder and a naive reference trainer (full recount per merge), determinism, rebuilding
 * from merges and its validation, decode's edge cases, and, when the shared data is there, a 4,096
 * token vocabulary on Tiny Shakespeare. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/ds.h"
#include "tests/test.h"

/* ---------------------------------------------------------------- reference implementations */

/* The pre-tokenization rule of ds.h, written again from its text: L letter, D digit, N newline,
   B blank, P punctuation. */
static char ref_kind(uint8_t c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 128) return 'L';
    if (c >= '0' && c <= '9') return 'D';
    if (c == '\n' || c == '\r') return 'N';
    if (c == ' ' || c == '\t') return 'B';
    return 'P';
}

static int ref_wordish(uint8_t c) { return ref_kind(c) == 'L' || ref_kind(c) == 'D' || ref_kind(c) == 'P'; }

/* end of the chunk that starts at pos */
static size_t ref_chunk_end(const uint8_t *b, size_t n, size_t pos) {
    size_t body = pos;
    if (b[pos] == ' ' && pos + 1 < n && ref_wordish(b[pos + 1])) body = pos + 1;
    char k = ref_kind(b[body]);
    if (k == 'D') return body + 1;
    size_t end = body;
    while (end < n && ref_kind(b[end]) == k && end - pos < DS_BPE_MAX_CHUNK) end++;
    if (k == 'B' && end < n && ref_wordish(b[end]) && b[end - 1] == ' ' && end - pos >= 2) end--;
    if (k == 'L' && end - pos == DS_BPE_MAX_CHUNK && end < n && ref_kind(b[end]) == 'L') {
        for (size_t cut = end; cut + 3 >= end && cut > body; cut--)
            if ((b[cut] & 0xC0) != 0x80) return cut;
    }
    return end;
}

/* merges (l, r) -> x everywhere in s[0..len), left to right without overlap; returns the new length */
static size_t ref_merge(int32_t *s, size_t len, int32_t l, int32_t r, int32_t x) {
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        if (i + 1 < len && s[i] == l && s[i + 1] == r) {
            s[o++] = x;
            i += 2;
        } else {
            s[o++] = s[i++];
        }
    }
    return o;
}

/* encode: chunks, then every merge in rank order over each chunk */
static size_t ref_encode(const int32_t *merges, int n_merges, int32_t *out, const uint8_t *b, size_t n) {
    size_t k = 0;
    for (size_t pos = 0; pos < n;) {
        size_t end = ref_chunk_end(b, n, pos), len = end - pos;
        int32_t *s = out + k;
        for (size_t i = 0; i < len; i++) s[i] = b[pos + i];
        for (int m = 0; m < n_merges && len > 1; m++)
            len = ref_merge(s, len, merges[2 * m], merges[2 * m + 1], 259 + m);
        k += len;
        pos = end;
    }
    return k;
}

/* train: distinct chunks with counts, then per merge a full recount of every adjacent pair */
static int ref_train(int32_t *merges, int max_merges, const uint8_t *text, size_t n) {
    size_t nw = 0;
    int32_t *sym = malloc((n + 1) * sizeof *sym);
    size_t *off = malloc((n + 1) * sizeof *off), *len = malloc((n + 1) * sizeof *len);
    long *freq = malloc((n + 1) * sizeof *freq);
    for (size_t pos = 0, used = 0; pos < n;) {
        size_t end = ref_chunk_end(text, n, pos);
        size_t w = 0;
        for (; w < nw; w++)
            if (len[w] == end - pos) {
                size_t i = 0;
                while (i < len[w] && sym[off[w] + i] == text[pos + i]) i++;
                if (i == len[w]) break;
            }
        if (w == nw) {
            off[nw] = used;
            len[nw] = end - pos;
            freq[nw] = 0;
            for (size_t i = pos; i < end; i++) sym[used++] = text[i];
            nw++;
        }
        freq[w]++;
        pos = end;
    }
    /* a dense count table over every id this can make: a full recount per merge, obviously right */
    int V = 259 + max_merges;
    long *cnt = malloc((size_t)V * (size_t)V * sizeof *cnt);
    int m = 0;
    for (; m < max_merges; m++) {
        memset(cnt, 0, (size_t)V * (size_t)V * sizeof *cnt);
        for (size_t w = 0; w < nw; w++)
            for (size_t i = 0; i + 1 < len[w]; i++)
                cnt[(size_t)sym[off[w] + i] * (size_t)V + (size_t)sym[off[w] + i + 1]] += freq[w];
        long best = 0;
        size_t at = 0;
        for (size_t p = 0; p < (size_t)V * (size_t)V; p++) /* in (left, right) order: the first max wins ties */
            if (cnt[p] > best) {
                best = cnt[p];
                at = p;
            }
        if (best < 2) break;
        int32_t bl = (int32_t)(at / (size_t)V), br = (int32_t)(at % (size_t)V);
        merges[2 * m] = bl;
        merges[2 * m + 1] = br;
        for (size_t w = 0; w < nw; w++) len[w] = ref_merge(sym + off[w], len[w], bl, br, 259 + m);
    }
    free(cnt);
    free(sym);
    free(off);
    free(len);
    free(freq);
    return m;
}

/* ---------------------------------------------------------------- inputs */

static const char *WORDS[] = {"the", "The", "and", "of", "to", "a", "in", "that", "is", "was", "he", "for", "it",
                              "with", "as", "his", "on", "be", "at", "by", "I", "this", "had", "not", "are", "but",
                              "from", "or", "have", "an", "they", "which", "one", "you", "were", "her", "all", "she",
                              "there", "would", "their", "we", "him", "been", "has", "when", "who", "will", "more",
                              "caf\xc3\xa9", "na\xc3\xafve", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "x^2", "==",
                              "...", "42", "3.14", "1999", "don't", "\"quoted\"", "(paren)"};
#define N_WORDS (sizeof WORDS / sizeof WORDS[0])

/* text-like bytes: words, punctuation, runs of spaces, tabs and newlines */
static size_t text_like(uint8_t *buf, size_t cap, MtpRng *rng) {
    size_t n = 0;
    while (n + 80 < cap) {
        static const char *SYL[] = {"ka", "lo", "mi", "ren", "sto", "vu", "an", "el", "dor", "qui", "ne", "zar",
                                    "pe", "tha", "ish", "om", "bra", "cle", "dy", "gor"};
        if (mtp_rng_below(rng, 3) == 0) { /* made-up words: many distinct pairs to merge */
            for (int k = 2 + (int)mtp_rng_below(rng, 3); k > 0; k--) {
                const char *y = SYL[mtp_rng_below(rng, sizeof SYL / sizeof SYL[0])];
                memcpy(buf + n, y, strlen(y));
                n += strlen(y);
            }
        } else {
            const char *w = WORDS[mtp_rng_below(rng, N_WORDS)];
            memcpy(buf + n, w, strlen(w));
            n += strlen(w);
        }
        uint64_t r = mtp_rng_below(rng, 20);
        if (r < 12) buf[n++] = ' ';
        else if (r < 14) buf[n++] = ',', buf[n++] = ' ';
        else if (r < 16) buf[n++] = '.', buf[n++] = '\n';
        else if (r < 17) for (int i = 0; i < 4; i++) buf[n++] = ' ';
        else if (r < 18) buf[n++] = '\t';
        else if (r < 19) buf[n++] = '\n', buf[n++] = '\n', buf[n++] = ' ', buf[n++] = ' ';
        else buf[n++] = '\r', buf[n++] = '\n';
    }
    return n;
}

/* hostile bytes: one of several styles, so every class boundary and cut gets exercised */
static size_t random_bytes(uint8_t *buf, size_t n, MtpRng *rng, const uint8_t *text, size_t n_text) {
    static const uint8_t alpha[] = {' ', ' ', ' ', '\n', '\t', '\r', 'a', 'b', 'e', 't', 'h', 'T', '0', '7', '.', ',',
                                    '!', 0, 0xFF, 0x80, 0xC3, 0xA9, 0xE6, 0xBF, '=', '-'};
    int style = (int)mtp_rng_below(rng, 5);
    for (size_t i = 0; i < n;) {
        if (style == 0) {
            buf[i++] = (uint8_t)mtp_rng_below(rng, 256);
        } else if (style == 1) {
            buf[i++] = alpha[mtp_rng_below(rng, sizeof alpha)];
        } else if (style == 2) { /* long runs of one byte */
            uint8_t c = alpha[mtp_rng_below(rng, sizeof alpha)];
            size_t run = 1 + (size_t)mtp_rng_below(rng, 150);
            for (size_t j = 0; j < run && i < n; j++) buf[i++] = c;
        } else if (style == 3 && n_text > 0) { /* slices of the training text, sometimes damaged */
            size_t at = (size_t)mtp_rng_below(rng, n_text), run = 1 + (size_t)mtp_rng_below(rng, 60);
            for (size_t j = 0; j < run && i < n; j++) buf[i++] = text[(at + j) % n_text];
            if (i < n && mtp_rng_below(rng, 4) == 0) buf[i++] = (uint8_t)mtp_rng_below(rng, 256);
        } else { /* long letter runs of multi-byte characters, valid and truncated */
            static const uint8_t ch[] = {0xE6, 0x97, 0xA5, 0xC3, 0xA9, 'z', 0xF0, 0x9F, 0x98, 0x80};
            size_t at = (size_t)mtp_rng_below(rng, sizeof ch);
            size_t run = 1 + (size_t)mtp_rng_below(rng, 200);
            for (size_t j = 0; j < run && i < n; j++) buf[i++] = ch[(at + j) % sizeof ch];
        }
    }
    return n;
}

/* the small training text: text-like bytes and worked arithmetic */
static size_t make_corpus(uint8_t *buf, size_t cap, uint64_t seed) {
    MtpRng rng;
    mtp_rng_seed(&rng, seed);
    size_t n = text_like(buf, cap / 2, &rng);
    while (n + 2048 < cap) {
        size_t k = ds_arith_example((char *)buf + n, cap - n, &rng, 0);
        if (k >= cap - n) break;
        n += k;
    }
    return n;
}

/* ---------------------------------------------------------------- checks */

static DsBpe *train_or_die(const uint8_t *text, size_t n, int vocab) {
    DsBpe *t = NULL;
    char err[256] = "";
    int rc = ds_bpe_train(&t, text, n, vocab, err, sizeof err);
    CHECK_MSG(rc == 0 && t, "ds_bpe_train(%d) failed: %s", vocab, err);
    return t;
}

static DsBpe *rebuild(const DsBpe *t) {
    DsBpe *r = NULL;
    char err[256] = "";
    int rc = ds_bpe_from_merges(&r, ds_bpe_merges(t), ds_bpe_n_merges(t), err, sizeof err);
    CHECK_MSG(rc == 0 && r, "ds_bpe_from_merges failed: %s", err);
    return r;
}

/* decode(encode(b)) == b, at most one token a byte, and encode equals the reference */
static int round_trip(const DsBpe *t, const uint8_t *b, size_t n, int with_ref) {
    int32_t *ids = malloc((n + 1) * sizeof *ids), *ref = malloc((n + 1) * sizeof *ref);
    uint8_t *back = malloc(n + 1);
    size_t k = ds_bpe_encode(t, ids, b, n);
    int ok = k <= n;
    for (size_t i = 0; ok && i < k; i++) /* real tokens only: never a special */
        ok = ids[i] >= 0 && ids[i] < ds_bpe_vocab(t) && (ids[i] < 256 || ids[i] > DS_PAD);
    ok = ok && ds_bpe_decode(t, back, n, ids, k) == n && memcmp(back, b, n) == 0;
    if (ok && with_ref) {
        size_t kr = ref_encode(ds_bpe_merges(t), ds_bpe_n_merges(t), ref, b, n);
        ok = kr == k && memcmp(ref, ids, k * sizeof *ids) == 0;
    }
    free(ids);
    free(ref);
    free(back);
    return ok;
}

static void test_round_trips(const DsBpe *t, const DsBpe *rebuilt, const uint8_t *text, size_t n_text) {
    MtpRng rng;
    mtp_rng_seed(&rng, 7);
    uint8_t *buf = malloc(2001);
    int bad = 0, bad_ref = 0, bad_rebuilt = 0;
    for (int trial = 0; trial < 400; trial++) {
        size_t n = trial < 3 ? (size_t)trial : (size_t)mtp_rng_below(&rng, 2001);
        random_bytes(buf, n, &rng, text, n_text);
        bad += !round_trip(t, buf, n, 0);
        bad_rebuilt += !round_trip(rebuilt, buf, n, 0);
        if (n <= 300) bad_ref += !round_trip(t, buf, n, 1); /* the reference is slow: short inputs */
    }
    CHECK_MSG(bad == 0, "%d of 400 random inputs did not round-trip", bad);
    CHECK_MSG(bad_rebuilt == 0, "%d of 400 random inputs did not round-trip with the rebuilt tokenizer", bad_rebuilt);
    CHECK_MSG(bad_ref == 0, "%d short random inputs encoded unlike the reference", bad_ref);
    /* long enough to turn the encoder's chunk cache on, text-like so that it hits */
    size_t n = text_like(buf, 2001, &rng);
    CHECK(round_trip(t, buf, n, 1));
    CHECK(round_trip(t, text, n_text, 0));
    free(buf);
}

static void test_training(const uint8_t *text, size_t n_text) {
    DsBpe *a = train_or_die(text, n_text, 900), *b = train_or_die(text, n_text, 900);
    if (!a || !b) return;
    CHECK_MSG(ds_bpe_n_merges(a) == 900 - 256, "%d merges", ds_bpe_n_merges(a)); /* plenty of repeated pairs */
    CHECK(ds_bpe_vocab(a) == 900 + 3);
    CHECK(ds_bpe_n_merges(a) == ds_bpe_n_merges(b));
    CHECK(memcmp(ds_bpe_merges(a), ds_bpe_merges(b), (size_t)ds_bpe_n_merges(a) * 2 * sizeof(int32_t)) == 0);
    CHECK(ds_bpe_hash(a) == ds_bpe_hash(b));

    DsBpe *r = rebuild(a);
    if (r) {
        CHECK(ds_bpe_hash(r) == ds_bpe_hash(a));
        int32_t *x = malloc(n_text * sizeof *x), *y = malloc(n_text * sizeof *y);
        size_t kx = ds_bpe_encode(a, x, text, n_text), ky = ds_bpe_encode(r, y, text, n_text);
        CHECK(kx == ky && memcmp(x, y, kx * sizeof *x) == 0);
        /* compresses its own training text, and digits stay single tokens */
        CHECK_MSG((double)n_text / (double)kx > 1.5, "%zu bytes -> %zu tokens", n_text, kx);
        int32_t d[8];
        CHECK(ds_bpe_encode(a, d, (const uint8_t *)"12345678", 8) == 8);
        CHECK(ds_bpe_encode(a, d, (const uint8_t *)" the", 4) == 1); /* " the" is frequent: one token */
        free(x);
        free(y);
        test_round_trips(a, r, text, n_text);
    }
    /* a different size changes the hash; a prefix of the merges is the smaller tokenizer */
    DsBpe *c = train_or_die(text, n_text, 600);
    if (c) {
        CHECK(ds_bpe_hash(c) != ds_bpe_hash(a));
        CHECK(memcmp(ds_bpe_merges(c), ds_bpe_merges(a), (size_t)ds_bpe_n_merges(c) * 2 * sizeof(int32_t)) == 0);
    }
    ds_bpe_free(a);
    ds_bpe_free(b);
    ds_bpe_free(r);
    ds_bpe_free(c);
}

/* incremental counts and the heap give the merges of a full recount per merge, ties included */
static void test_against_reference_trainer(void) {
    MtpRng rng;
    mtp_rng_seed(&rng, 11);
    uint8_t buf[3000];
    int32_t ref[2 * 300];
    for (int trial = 0; trial < 12; trial++) {
        size_t n = trial % 2 ? text_like(buf, sizeof buf, &rng) : random_bytes(buf, 600, &rng, NULL, 0);
        int want = 256 + 300;
        int nref = ref_train(ref, 300, buf, n);
        DsBpe *t = train_or_die(buf, n, want);
        if (!t) continue;
        CHECK_MSG(ds_bpe_n_merges(t) == nref, "trial %d: %d merges, reference %d", trial, ds_bpe_n_merges(t), nref);
        int same = ds_bpe_n_merges(t) == nref &&
                   memcmp(ds_bpe_merges(t), ref, (size_t)nref * 2 * sizeof(int32_t)) == 0;
        CHECK_MSG(same, "trial %d: merges differ from the reference trainer", trial);
        ds_bpe_free(t);
    }
}

static void test_small_cases(void) {
    /* overlapping runs: "aaa" x3 has (a,a) 6 times; after merging, (X,a) 3 times */
    const char *aaa = "aaa\naaa\naaa\n";
    DsBpe *t = train_or_die((const uint8_t *)aaa, strlen(aaa), 1000);
    if (t) {
        CHECK(ds_bpe_n_merges(t) == 2);
        const int32_t *m = ds_bpe_merges(t);
        CHECK(ds_bpe_n_merges(t) == 2 && m[0] == 'a' && m[1] == 'a' && m[2] == 259 && m[3] == 'a');
        int32_t ids[8];
        CHECK(ds_bpe_encode(t, ids, (const uint8_t *)"aaa", 3) == 1 && ids[0] == 260);
        CHECK(ds_bpe_encode(t, ids, (const uint8_t *)"aaaa", 4) == 2 && ids[0] == 259 && ids[1] == 259);
        const uint8_t *tb = NULL;
        CHECK(ds_bpe_token_bytes(t, 260, &tb) == 3 && memcmp(tb, "aaa", 3) == 0);
        CHECK(ds_bpe_token_bytes(t, 'q', &tb) == 1 && tb[0] == 'q');
        CHECK(ds_bpe_token_bytes(t, DS_EOS, &tb) == 0);
        CHECK(ds_bpe_token_bytes(t, 261, &tb) == -1 && ds_bpe_token_bytes(t, -1, &tb) == -1);
        /* decode drops specials and unknown ids; the return is the full length, like snprintf */
        int32_t mixed[] = {DS_BOS, 260, DS_PAD, 0, -5, 'b', 261, 100000, DS_EOS};
        uint8_t out[8] = {0};
        CHECK(ds_bpe_decode(t, out, sizeof out, mixed, 9) == 5 && memcmp(out, "aaa\0b", 5) == 0);
        memset(out, '#', sizeof out);
        CHECK(ds_bpe_decode(t, out, 2, mixed, 9) == 5 && out[0] == 'a' && out[1] == 'a' && out[2] == '#');
        CHECK(ds_bpe_decode(t, NULL, 0, mixed, 9) == 5);
    }
    ds_bpe_free(t);
    /* ties go to the smaller (left, right): (a,b) and (x,y) both occur twice */
    const char *tie = "xy\nab\nxy\nab\n";
    t = train_or_die((const uint8_t *)tie, strlen(tie), 257);
    if (t) CHECK(ds_bpe_n_merges(t) == 1 && ds_bpe_merges(t)[0] == 'a' && ds_bpe_merges(t)[1] == 'b');
    ds_bpe_free(t);
    /* nothing occurs twice: no merges, the byte tokenizer */
    t = train_or_die((const uint8_t *)"abcdef", 6, 4096);
    if (t) CHECK(ds_bpe_n_merges(t) == 0 && ds_bpe_vocab(t) == DS_BYTE_VOCAB);
    ds_bpe_free(t);
    t = train_or_die(NULL, 0, 300);
    if (t) CHECK(ds_bpe_n_merges(t) == 0);
    ds_bpe_free(t);
    /* chunks cap tokens at DS_BPE_MAX_CHUNK bytes */
    uint8_t run[1000];
    memset(run, '=', sizeof run);
    t = train_or_die(run, sizeof run, 2000);
    if (t) {
        const uint8_t *tb;
        int longest = 0;
        for (int id = 0; id < ds_bpe_vocab(t); id++) {
            int l = ds_bpe_token_bytes(t, id, &tb);
            longest = l > longest ? l : longest;
        }
        CHECK_MSG(longest == DS_BPE_MAX_CHUNK, "longest token %d bytes", longest);
        int32_t ids[1000];
        /* 15 chunks of 64 bytes, one token each, and a 40-byte chunk: 32 + 8 */
        CHECK(ds_bpe_encode(t, ids, run, sizeof run) == 17);
        CHECK(round_trip(t, run, sizeof run, 1));
    }
    ds_bpe_free(t);
}

/* t must be NULL and err must contain want */
static void expect_merges_error(const int32_t *m, int n, const char *want) {
    DsBpe *t = (DsBpe *)&t; /* not NULL: the call must clear it */
    char err[256] = "";
    int rc = ds_bpe_from_merges(&t, m, n, err, sizeof err);
    CHECK_MSG(rc == -1 && t == NULL, "from_merges should fail (%s)", want);
    CHECK_MSG(strstr(err, want) != NULL, "message \"%s\" should contain \"%s\"", err, want);
    if (rc == 0) ds_bpe_free(t);
}

static void test_errors(void) {
    DsBpe *t = NULL;
    char err[256] = "";
    CHECK(ds_bpe_train(&t, (const uint8_t *)"ab", 2, 256, err, sizeof err) == -1 && t == NULL);
    CHECK_MSG(strcmp(err, "bpe vocabulary 256 must be between 257 and 65536") == 0, "%s", err);
    CHECK(ds_bpe_train(&t, (const uint8_t *)"ab", 2, 65537, err, sizeof err) == -1 && t == NULL);
    CHECK_MSG(strstr(err, "bpe vocabulary 65537 must be between 257 and 65536") != NULL, "%s", err);

    int32_t ok[] = {'a', 'b', 259, 'c', 't', 'h', 261, 'e'};
    CHECK(ds_bpe_from_merges(&t, ok, 4, err, sizeof err) == 0 && t && ds_bpe_vocab(t) == 263);
    if (t) {
        const uint8_t *tb;
        CHECK(ds_bpe_token_bytes(t, 262, &tb) == 3 && memcmp(tb, "the", 3) == 0);
    }
    ds_bpe_free(t);
    CHECK(ds_bpe_from_merges(&t, NULL, 0, err, sizeof err) == 0 && t && ds_bpe_vocab(t) == 259);
    ds_bpe_free(t);

    int32_t own[] = {'a', 'b', 259, 260}; /* merge 1 makes 260 and uses it */
    expect_merges_error(own, 2, "bpe merge 1 (259, 260): part 260 is not defined before this merge");
    int32_t special[] = {'a', 'b', 'c', 'd', DS_EOS, 'x'};
    expect_merges_error(special, 3, "bpe merge 2 (257, 120): part 257 is a special token");
    int32_t dup[] = {'a', 'b', 'c', 'd', 'a', 'b'};
    expect_merges_error(dup, 3, "bpe merge 2 (97, 98) repeats merge 0");
    int32_t neg[] = {'a', -1};
    expect_merges_error(neg, 1, "bpe merge 0 (97, -1): part -1 is negative");
    int32_t big[] = {'a', 70000};
    expect_merges_error(big, 1, "bpe merge 0 (97, 70000): part 70000 is not defined");
    expect_merges_error(ok, -1, "bpe merge count -1 must be between 0 and 65280");
    expect_merges_error(ok, 65281, "bpe merge count 65281");
    /* doubling a token 7 times reaches 128 bytes, past the 64-byte chunk limit */
    int32_t dbl[14] = {'a', 'a'};
    for (int i = 1; i < 7; i++) dbl[2 * i] = dbl[2 * i + 1] = 259 + i - 1;
    expect_merges_error(dbl, 7, "bpe merge 6 (264, 264) makes a token of 128 bytes");
}

/* encode only reads the tokenizer and keeps its cache per call: threads may share one */
static void test_threads(const DsBpe *t, const uint8_t *text, size_t n) {
    int32_t *one = malloc(n * sizeof *one), *many = malloc(4 * n * sizeof *many);
    size_t k = ds_bpe_encode(t, one, text, n), got[4];
#pragma omp parallel for num_threads(4)
    for (int i = 0; i < 4; i++) got[i] = ds_bpe_encode(t, many + (size_t)i * n, text, n);
    for (int i = 0; i < 4; i++) CHECK(got[i] == k && memcmp(many + (size_t)i * n, one, k * sizeof *one) == 0);
    free(one);
    free(many);
}

static void test_shakespeare(void) {
    const char *dir = getenv("MTP_SHARED_DATA");
    char path[1024];
    snprintf(path, sizeof path, "%s/tinyshakespeare.txt", dir ? dir : "(MTP_SHARED_DATA unset)");
    FILE *f = dir ? fopen(path, "rb") : NULL;
    if (!f) {
        fprintf(stderr, "test_bpe: %s not found, skipping the Tiny Shakespeare check\n", path);
        return;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *text = malloc((size_t)n);
    CHECK(text && fread(text, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    DsBpe *t = train_or_die(text, (size_t)n, 4096);
    if (t) {
        CHECK(ds_bpe_n_merges(t) == 4096 - 256);
        int32_t *ids = malloc((size_t)n * sizeof *ids);
        uint8_t *back = malloc((size_t)n);
        size_t k = ds_bpe_encode(t, ids, text, (size_t)n);
        CHECK(ds_bpe_decode(t, back, (size_t)n, ids, k) == (size_t)n && memcmp(back, text, (size_t)n) == 0);
        double bpt = (double)n / (double)k;
        CHECK_MSG(bpt > 3.0, "%.2f bytes per token", bpt);
        fprintf(stderr, "test_bpe: tinyshakespeare.txt at 4096 tokens: %ld bytes -> %zu tokens (%.2f bytes/token)\n",
                n, k, bpt);
        test_threads(t, text, (size_t)n);
        free(ids);
        free(back);
    }
    ds_bpe_free(t);
    free(text);
}

int main(void) {
    size_t cap = 96 << 10;
    uint8_t *corpus = malloc(cap);
    size_t n = make_corpus(corpus, cap, 3);
    test_small_cases();
    test_errors();
    test_against_reference_trainer();
    test_training(corpus, n);
    test_shakespeare();
    free(corpus);
    TEST_DONE();
}
