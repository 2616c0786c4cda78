/* corpus.c - corpora: sources mixed with weights, tokenized (sources.c) into a training and a
 * validation array, in memory or through the token cache file (tokcache.c), and batches drawn from
 * them; and the text a tokenizer learns from. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/tokcache_internal.h"
#include "mtp/core/core.h"

void ds_options_init(DsOptions *opt) {
    memset(opt, 0, sizeof *opt);
    opt->val_frac = 0.1;
    opt->seed = 1;
    opt->min_tokens = 2;
    ds_jsonl_options_init(&opt->jsonl);
}

void ds_free(DsCorpus *c) {
    if (!c) return;
    if (c->map) ds_cache_unmap(c->map, c->map_size);
    else {
        free(c->train);
        free(c->val);
    }
    memset(c, 0, sizeof *c);
}

int ds_source_parse(DsSource *src, const char *arg, char *err, size_t errlen) {
    memset(src, 0, sizeof *src);
    src->weight = 1.0;
    size_t n = strlen(arg);
    if (n == 0) return mtp_fail(err, errlen, "--data: empty source");
    const char *colon = strrchr(arg, ':');
    struct stat st;
    /* a weight is written as a decimal number ("0.3", "2", "1e-3"; "0", "-1", "nan" and "inf" are
       refused below); with anything else after the colon (hex, spaces, words) it is part of the path */
    const char *w_txt = colon ? colon + 1 : "";
    int numeric = strspn(w_txt, "0123456789.eE+-") == strlen(w_txt) || strcasecmp(w_txt, "nan") == 0 ||
                  strcasecmp(w_txt, "inf") == 0 || strcasecmp(w_txt, "infinity") == 0;
    if (colon && colon > arg && colon[1] && numeric && stat(arg, &st) != 0) {
        char *end;
        errno = 0;
        double w = strtod(colon + 1, &end);
        if (*end == 0 && end != colon + 1) { /* a number: it is a weight */
            if (!isfinite(w) || !(w > 0))
                return mtp_fail(err, errlen, "--data %s: the weight must be a number > 0 (got '%s')", arg, colon + 1);
            src->weight = w;
            n = (size_t)(colon - arg);
        }
    }
    if (n >= DS_MAX_SPEC) return mtp_fail(err, errlen, "--data: source path is too long (%zu bytes)", n);
    memcpy(src->spec, arg, n);
    src->spec[n] = 0;
    return 0;
}

uint64_t ds_tokenizer_hash(const DsBpe *t) {
    if (t) return ds_bpe_hash(t);
    DsBpe *bytes = NULL;
    char err[64];
    if (ds_bpe_from_merges(&bytes, NULL, 0, err, sizeof err)) return 0; /* cannot fail: no merges to check */
    uint64_t h = ds_bpe_hash(bytes);
    ds_bpe_free(bytes);
    return h;
}

/* ---- loading ---------------------------------------------------------------------------------- */

/* Copies the shorthand spec into the source list, checks the options. */
static int normalize(DsOptions *o, const DsOptions *in, char *err, size_t errlen) {
    *o = *in;
    if (o->n_sources == 0 && o->spec && o->spec[0]) {
        if (strlen(o->spec) >= DS_MAX_SPEC) return mtp_fail(err, errlen, "source path is too long");
        snprintf(o->sources[0].spec, DS_MAX_SPEC, "%s", o->spec);
        o->sources[0].weight = 1.0;
        o->n_sources = 1;
    }
    if (o->n_sources < 1) return mtp_fail(err, errlen, "no corpus given (a file path or builtin:arith)");
    if (o->n_sources > DS_MAX_SOURCES) return mtp_fail(err, errlen, "more than %d data sources", DS_MAX_SOURCES);
    if (!(o->val_frac > 0.0 && o->val_frac < 1.0))
        return mtp_fail(err, errlen, "%s: val_frac %g is out of range, it must be between 0 and 1 (exclusive)",
                        o->sources[0].spec, o->val_frac);
    for (int i = 0; i < o->n_sources; i++) {
        const DsSource *s = &o->sources[i];
        if (!s->spec[0]) return mtp_fail(err, errlen, "data source %d is empty", i + 1);
        if (!(s->weight > 0) || !isfinite(s->weight))
            return mtp_fail(err, errlen, "%s: the weight must be a number > 0", s->spec);
        DsSourceKind k = ds_source_kind(s->spec);
        if (k == DS_SRC_UNKNOWN)
            return mtp_fail(err, errlen, "%s: unknown builtin corpus (known: builtin:arith)", s->spec);
        if (k == DS_SRC_ARITH && (o->difficulty < 0 || o->difficulty > DS_ARITH_MAX_DIFFICULTY))
            return mtp_fail(err, errlen, "%s: difficulty %d is out of range, use 0 (mixed) or 1..%d", s->spec,
                            o->difficulty, DS_ARITH_MAX_DIFFICULTY);
        uint64_t size;
        int64_t mtime;
        if (ds_source_stat(s->spec, &size, &mtime, err, errlen)) return -1; /* before any work or message */
        struct stat si, sj;
        for (int j = 0; j < i; j++)
            if (strcmp(o->sources[j].spec, s->spec) == 0 ||
                (k != DS_SRC_ARITH && stat(s->spec, &si) == 0 && stat(o->sources[j].spec, &sj) == 0 &&
                 si.st_dev == sj.st_dev && si.st_ino == sj.st_ino))
                return mtp_fail(err, errlen, "%s is given twice as a data source (give it one weight)", s->spec);
    }
    return 0;
}

static const char *base_name(const char *path) {
    const char *b = strrchr(path, '/');
    return b && b[1] ? b + 1 : path;
}

/* Fills the parts, checks the split sizes, writes desc. */
static int finish(DsCorpus *c, const DsOptions *o, const DsSourceInfo *info, char *err, size_t errlen) {
    size_t need = o->min_tokens > 2 ? o->min_tokens : 2;
    double wsum = 0;
    for (int i = 0; i < o->n_sources; i++) wsum += o->sources[i].weight;
    c->n_parts = o->n_sources;
    c->skipped_lines = 0;
    double cum = 0;
    for (int i = 0; i < o->n_sources; i++) {
        const DsSourceInfo *s = &info[i];
        c->part_start[i] = (size_t)s->start;
        c->part_start[i + 1] = (size_t)(s->start + s->train_tokens);
        cum += o->sources[i].weight / wsum;
        c->part_cum[i] = i == o->n_sources - 1 ? 1.0 : cum;
        c->skipped_lines += s->skipped;
        if (!o->val_only && s->train_tokens < need) {
            char what[64] = "";
            if (ds_source_kind(o->sources[i].spec) == DS_SRC_TEXT)
                snprintf(what, sizeof what, " (%llu bytes)", (unsigned long long)s->size);
            return mtp_fail(err, errlen, "%s%s: the training split has %llu tokens, fewer than the %zu one sequence needs "
                            "(ctx+1); use a larger file or a smaller val_frac", o->sources[i].spec, what,
                            (unsigned long long)s->train_tokens, need);
        }
    }
    if (c->n_val < need) {
        const char *spec = o->n_sources == 1 ? o->sources[0].spec : "the data sources";
        return mtp_fail(err, errlen, "%s: the validation split has %zu tokens, fewer than the %zu one sequence needs "
                        "(ctx+1); use a larger file or a larger val_frac", spec, c->n_val, need);
    }
    char counts[96];
    if (o->val_only) snprintf(counts, sizeof counts, "%zu validation tokens", c->n_val);
    else snprintf(counts, sizeof counts, "%zu train / %zu val tokens", c->n_train, c->n_val);
    if (o->n_sources == 1) {
        const DsSource *s = &o->sources[0];
        if (ds_source_kind(s->spec) == DS_SRC_ARITH)
            snprintf(c->desc, sizeof c->desc, "builtin:arith (difficulty %d, seed %llu): %s", o->difficulty,
                     (unsigned long long)o->seed, counts);
        else
            snprintf(c->desc, sizeof c->desc, "%.300s: %llu bytes, %s", base_name(s->spec),
                     (unsigned long long)info[0].size, counts);
    } else {
        size_t k = (size_t)snprintf(c->desc, sizeof c->desc, "%d sources (", o->n_sources);
        for (int i = 0; i < o->n_sources && k < sizeof c->desc; i++)
            k += (size_t)snprintf(c->desc + k, sizeof c->desc - k, "%s%.100s %.0f%%", i ? ", " : "",
                                  base_name(o->sources[i].spec), 100 * o->sources[i].weight / wsum);
        if (k < sizeof c->desc) snprintf(c->desc + k, sizeof c->desc - k, "): %s", counts);
    }
    if (c->skipped_lines && strlen(c->desc) + 40 < sizeof c->desc)
        snprintf(c->desc + strlen(c->desc), sizeof c->desc - strlen(c->desc), ", %ld bad lines skipped",
                 c->skipped_lines);
    return 0;
}

static int load_memory(DsCorpus *c, const DsOptions *o, char *err, size_t errlen) {
    DsSink train = {.fd = -1, .discard = o->val_only}, val = {.fd = -1};
    DsSourceInfo info[DS_MAX_SOURCES];
    if (ds_build_sources(o, &train, &val, info, err, errlen)) {
        free(train.buf);
        free(val.buf);
        return -1;
    }
    c->train = train.buf, c->n_train = train.len;
    c->val = val.buf, c->n_val = val.len;
    return finish(c, o, info, err, errlen);
}

int ds_load(DsCorpus *c, const DsOptions *in, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    if (!c) return mtp_fail(err, errlen, "ds_load: no corpus to fill");
    memset(c, 0, sizeof *c);
    if (!in) return mtp_fail(err, errlen, "no corpus given (a file path or builtin:arith)");
    DsOptions *o = malloc(sizeof *o);
    if (!o) return mtp_fail(err, errlen, "out of memory");
    DsSourceInfo info[DS_MAX_SOURCES];
    int rc = normalize(o, in, err, errlen);
    if (rc == 0 && !o->cache_path) rc = load_memory(c, o, err, errlen);
    else if (rc == 0 && (rc = ds_cache_load(c, o, info, err, errlen)) == 0) rc = finish(c, o, info, err, errlen);
    if (rc) ds_free(c);
    free(o);
    return rc;
}

/* ---- batches ---------------------------------------------------------------------------------- */

void ds_corpus_sample(int32_t *out, const DsCorpus *c, int B, int T1, MtpRng *rng) {
    if (c->n_parts <= 1) { /* one source: no draw, so single-source runs sample exactly as before */
        ds_sample_batch(out, c->train, c->n_train, B, T1, rng);
        return;
    }
    for (int b = 0; b < B; b++) {
        double u = mtp_rng_uniform(rng);
        int p = 0;
        while (p < c->n_parts - 1 && u >= c->part_cum[p]) p++;
        ds_sample_batch(out + (size_t)b * (size_t)T1, c->train + c->part_start[p],
                        c->part_start[p + 1] - c->part_start[p], 1, T1, rng);
    }
}

/* ---- text for tokenizer training -------------------------------------------------------------- */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} Bytes;

static int bytes_reserve(Bytes *b, size_t n) {
    if (b->n + n <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 1 << 20;
    while (cap < b->n + n) cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p, b->cap = cap;
    return 0;
}

static int bytes_add(Bytes *b, const void *data, size_t n) {
    if (bytes_reserve(b, n)) return -1;
    memcpy(b->p + b->n, data, n);
    b->n += n;
    return 0;
}

int ds_training_text(uint8_t **text, size_t *n, const DsOptions *in, size_t max_bytes, char *err, size_t errlen) {
    *text = NULL, *n = 0;
    DsOptions *o = malloc(sizeof *o);
    if (!o) return mtp_fail(err, errlen, "out of memory");
    int rc = normalize(o, in, err, errlen);
    double wsum = 0;
    for (int i = 0; i < o->n_sources; i++) wsum += o->sources[i].weight;
    Bytes out = {0};
    char *buf = NULL;
    for (int i = 0; i < o->n_sources && rc == 0; i++) {
        const char *spec = o->sources[i].spec;
        size_t quota = (size_t)((double)max_bytes * o->sources[i].weight / wsum), start = out.n;
        DsSourceKind kind = ds_source_kind(spec);
        if (kind == DS_SRC_ARITH) {
            MtpRng rng;
            mtp_rng_seed(&rng, o->seed);
            size_t cap = 1 << 16;
            if (!buf && !(buf = malloc(cap))) rc = -1;
            for (size_t got = 0; rc == 0 && got < DS_ARITH_TRAIN_BYTES && out.n - start < quota;) {
                size_t len = ds_arith_example(buf, cap, &rng, o->difficulty);
                if (len >= cap) continue; /* longer than any level writes; the next one will do */
                if (len > quota - (out.n - start)) len = quota - (out.n - start);
                rc = bytes_add(&out, buf, len);
                got += len;
            }
            if (rc) rc = mtp_fail(err, errlen, "out of memory for the tokenizer's training text");
        } else if (kind == DS_SRC_JSONL) {
            long lines = ds_count_lines(spec, err, errlen), train_lines = ds_jsonl_train_lines(lines, o->val_frac);
            DsJsonl *j = NULL;
            if (lines < 0 || ds_jsonl_open(&j, spec, &o->jsonl, err, errlen)) rc = -1;
            DsRecord rec;
            int r = 0;
            while (rc == 0 && out.n - start < quota && (r = ds_jsonl_next(j, &rec, err, errlen)) == 1 &&
                   rec.line <= train_lines) {
                size_t left = quota - (out.n - start), take = rec.len < left ? rec.len : left;
                if (bytes_add(&out, rec.text, take) || (take < left && bytes_add(&out, "\n", 1)))
                    rc = mtp_fail(err, errlen, "out of memory for the tokenizer's training text");
            }
            if (r < 0) rc = -1;
            ds_jsonl_close(j);
        } else {
            uint64_t size;
            int64_t mtime;
            int fd = ds_source_open(spec, &size, &mtime, err, errlen);
            if (fd < 0) rc = -1;
            uint64_t cut = fd < 0 ? 0 : ds_text_train_bytes(size, o->val_frac);
            size_t take = cut < quota ? (size_t)cut : quota;
            if (rc == 0 && take) {
                if (bytes_reserve(&out, take)) rc = mtp_fail(err, errlen, "out of memory for the tokenizer's training text");
                else if ((rc = ds_read_full(fd, out.p + out.n, take, spec, 0, err, errlen)) == 0) out.n += take;
            }
            if (fd >= 0) close(fd);
        }
    }
    free(buf);
    free(o);
    if (rc) {
        free(out.p);
        return -1;
    }
    *text = out.p, *n = out.n;
    return 0;
}
