/* ds.c - loading corpora (files and builtins), the byte tokenizer, and training/evaluation batches.
 *
 * A file is read once with open/fstat/read straight into token arrays (no intermediate copy of
 * the bytes), after every size check has passed, so bad input never costs a large allocation.
 * Non-regular files (FIFOs, devices) are refused before reading: they could block or never end. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* open flags, ssize_t, fstat under -std=c11 */
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/ds.h"
#include "mtp/core/core.h"

void ds_options_init(DsOptions *opt) {
    memset(opt, 0, sizeof *opt);
    opt->val_frac = 0.1;
    opt->seed = 1;
    opt->difficulty = 0;
    opt->min_tokens = 2;
}

void ds_free(DsCorpus *c) {
    if (!c) return;
    free(c->train);
    free(c->val);
    memset(c, 0, sizeof *c);
}

size_t ds_encode_bytes(int32_t *out, const uint8_t *bytes, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = bytes[i];
    return n;
}

size_t ds_decode_bytes(uint8_t *out, const int32_t *ids, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < 256) out[k++] = (uint8_t)ids[i];
    return k;
}

/* ---- batches ---- */

void ds_sample_batch(int32_t *out, const int32_t *tok, size_t n, int B, int T1, MtpRng *rng) {
    if (B <= 0 || T1 <= 0) return;
    for (int b = 0; b < B; b++) {
        int32_t *row = out + (size_t)b * (size_t)T1;
        if (n < (size_t)T1) {
            /* cannot happen after ds_load with min_tokens >= T1; stay safe rather than read past the end */
            for (int t = 0; t < T1; t++) row[t] = (size_t)t < n ? tok[t] : DS_PAD;
            continue;
        }
        size_t off = (size_t)mtp_rng_below(rng, (uint64_t)(n - (size_t)T1) + 1);
        memcpy(row, tok + off, (size_t)T1 * sizeof *row);
    }
}

size_t ds_eval_windows(size_t n, int T1) {
    if (T1 < 2 || n < 2) return 0;
    size_t stride = (size_t)T1 - 1;
    return (n - 1 + stride - 1) / stride;
}

int ds_eval_batch(int32_t *out, const int32_t *tok, size_t n, int B, int T1, size_t index) {
    if (B < 1 || T1 < 2) return 0;
    size_t windows = ds_eval_windows(n, T1), stride = (size_t)T1 - 1;
    int filled = 0;
    for (int b = 0; b < B; b++) {
        int32_t *row = out + (size_t)b * (size_t)T1;
        /* index*B+b could overflow for an absurd index: compare by division first */
        size_t w = 0;
        int ok = index <= windows / (size_t)B;
        if (ok) {
            w = index * (size_t)B + (size_t)b;
            ok = w < windows;
        }
        if (!ok) {
            for (int t = 0; t < T1; t++) row[t] = DS_PAD;
            continue;
        }
        size_t start = w * stride;
        for (int t = 0; t < T1; t++) row[t] = start + (size_t)t < n ? tok[start + (size_t)t] : DS_PAD;
        filled++;
    }
    return filled;
}

/* ---- files ---- */

/* Checks that a split of `have` tokens is long enough; `what` is "training" or "validation". */
static int check_split(const char *spec, const char *size_desc, const char *what, size_t have, size_t need,
                       const char *hint, char *err, size_t errlen) {
    if (have >= need) return 0;
    return mtp_fail(err, errlen, "%s: %s: the %s split has %zu tokens, fewer than the %zu one sequence needs (ctx+1)%s",
                spec, size_desc, what, have, need, hint);
}

static int load_file(DsCorpus *c, const DsOptions *opt, char *err, size_t errlen) {
    const char *path = opt->spec;
    double vf = opt->val_frac;
    if (!(vf > 0.0 && vf < 1.0))
        return mtp_fail(err, errlen, "%s: val_frac %g is out of range, it must be between 0 and 1 (exclusive)", path, vf);

    /* O_NONBLOCK so that opening a FIFO does not wait for a writer; it is refused below anyway */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return mtp_fail(err, errlen, "%s: no such file", path);
        return mtp_fail(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return mtp_fail(err, errlen, "%s: cannot stat: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return mtp_fail(err, errlen, "%s: is a directory, expected a corpus file", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return mtp_fail(err, errlen, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return mtp_fail(err, errlen, "%s: empty file", path);
    }
    if ((int64_t)st.st_size > DS_MAX_FILE_BYTES) {
        close(fd);
        return mtp_fail(err, errlen, "%s: %lld bytes is larger than the %lld-byte limit of the in-memory loader", path,
                    (long long)st.st_size, (long long)DS_MAX_FILE_BYTES);
    }

    size_t nbytes = (size_t)st.st_size, total = nbytes + 1; /* +1: the leading BOS */
    size_t n_val = (size_t)((double)total * vf + 0.5);
    size_t n_train = total - n_val;
    size_t need = opt->min_tokens > 2 ? opt->min_tokens : 2;
    char size_desc[64];
    snprintf(size_desc, sizeof size_desc, "%zu bytes", nbytes);
    if (check_split(path, size_desc, "training", n_train, need, ", use a larger file or a smaller val_frac", err,
                    errlen) ||
        check_split(path, size_desc, "validation", n_val, need, ", use a larger file or a larger val_frac", err,
                    errlen)) {
        close(fd);
        return -1;
    }

    c->train = malloc(n_train * sizeof *c->train);
    c->val = malloc(n_val * sizeof *c->val);
    if (!c->train || !c->val) {
        close(fd);
        ds_free(c);
        return mtp_fail(err, errlen, "%s: out of memory for %zu tokens", path, total);
    }
    c->n_train = n_train;
    c->n_val = n_val;
    c->train[0] = DS_BOS;

    /* stream the bytes into the two splits; token i of the stream is byte i-1 of the file */
    uint8_t chunk[1 << 16];
    size_t got = 0;
    while (got < nbytes) {
        size_t want = nbytes - got < sizeof chunk ? nbytes - got : sizeof chunk;
        ssize_t r = read(fd, chunk, want);
        if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            ds_free(c);
            return mtp_fail(err, errlen, "%s: read failed at byte %zu: %s", path, got, strerror(e));
        }
        if (r == 0) {
            close(fd);
            ds_free(c);
            return mtp_fail(err, errlen, "%s: file shrank while reading (%zu of %zu bytes)", path, got, nbytes);
        }
        for (ssize_t i = 0; i < r; i++) {
            size_t t = got + (size_t)i + 1;
            if (t < n_train) c->train[t] = chunk[i];
            else c->val[t - n_train] = chunk[i];
        }
        got += (size_t)r;
    }
    close(fd);

    const char *base = strrchr(path, '/');
    base = base && base[1] ? base + 1 : path;
    snprintf(c->desc, sizeof c->desc, "%s: %zu bytes, %zu train / %zu val tokens", base, nbytes, n_train, n_val);
    return 0;
}

/* ---- builtin:arith ---- */

typedef struct {
    int32_t *tok;
    size_t n, cap;
} TokBuf;

static int tok_reserve(TokBuf *t, size_t extra) {
    if (t->n + extra <= t->cap) return 0;
    size_t cap = t->cap ? t->cap : 1024;
    while (cap < t->n + extra) cap *= 2;
    int32_t *p = realloc(t->tok, cap * sizeof *p);
    if (!p) return -1;
    t->tok = p;
    t->cap = cap;
    return 0;
}

/* Concatenates examples (BOS, text, EOS) until at least target_bytes of text. */
static int arith_stream(TokBuf *t, uint64_t seed, int difficulty, size_t target_bytes) {
    MtpRng rng;
    mtp_rng_seed(&rng, seed);
    size_t cap = 8192, text = 0;
    char *buf = malloc(cap);
    if (!buf || tok_reserve(t, target_bytes + target_bytes / 8 + cap)) {
        free(buf);
        return -1;
    }
    while (text < target_bytes) {
        MtpRng saved = rng;
        size_t len = ds_arith_example(buf, cap, &rng, difficulty);
        if (len >= cap) { /* longer than any example today; grow and regenerate the same one */
            char *p = realloc(buf, len + 1);
            if (!p) {
                free(buf);
                return -1;
            }
            buf = p;
            cap = len + 1;
            rng = saved;
            ds_arith_example(buf, cap, &rng, difficulty);
        }
        if (tok_reserve(t, len + 2)) {
            free(buf);
            return -1;
        }
        t->tok[t->n++] = DS_BOS;
        t->n += ds_encode_bytes(t->tok + t->n, (const uint8_t *)buf, len);
        t->tok[t->n++] = DS_EOS;
        text += len;
    }
    free(buf);
    return 0;
}

static int load_arith(DsCorpus *c, const DsOptions *opt, char *err, size_t errlen) {
    const char *spec = opt->spec;
    if (opt->difficulty < 0 || opt->difficulty > DS_ARITH_MAX_DIFFICULTY)
        return mtp_fail(err, errlen, "%s: difficulty %d is out of range, use 0 (mixed) or 1..%d", spec, opt->difficulty,
                    DS_ARITH_MAX_DIFFICULTY);
    TokBuf tr = {0}, va = {0};
    if (arith_stream(&tr, opt->seed, opt->difficulty, DS_ARITH_TRAIN_BYTES) ||
        arith_stream(&va, opt->seed ^ DS_ARITH_VAL_SEED_XOR, opt->difficulty, DS_ARITH_VAL_BYTES)) {
        free(tr.tok);
        free(va.tok);
        return mtp_fail(err, errlen, "%s: out of memory generating the corpus", spec);
    }
    size_t need = opt->min_tokens > 2 ? opt->min_tokens : 2;
    if (check_split(spec, "generated corpus", "training", tr.n, need, "", err, errlen) ||
        check_split(spec, "generated corpus", "validation", va.n, need, "", err, errlen)) {
        free(tr.tok);
        free(va.tok);
        return -1;
    }
    c->train = tr.tok;
    c->n_train = tr.n;
    c->val = va.tok;
    c->n_val = va.n;
    snprintf(c->desc, sizeof c->desc, "builtin:arith (difficulty %d, seed %llu): %zu train / %zu val tokens",
             opt->difficulty, (unsigned long long)opt->seed, c->n_train, c->n_val);
    return 0;
}

int ds_load(DsCorpus *c, const DsOptions *opt, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    if (!c) return mtp_fail(err, errlen, "ds_load: no corpus to fill");
    memset(c, 0, sizeof *c);
    if (!opt || !opt->spec || !opt->spec[0]) return mtp_fail(err, errlen, "no corpus given (a file path or builtin:arith)");
    const char *spec = opt->spec;
    if (strncmp(spec, "builtin:", 8) == 0) {
        if (strcmp(spec + 8, "arith") == 0) return load_arith(c, opt, err, errlen);
        return mtp_fail(err, errlen, "%s: unknown builtin corpus (known: builtin:arith)", spec);
    }
    return load_file(c, opt, err, errlen);
}
