/* corpus.c - corpora: sources mixed with weights, tokenized into a training and a validation array,
 * in memory or through the token cache file (tokcache.c), and batches drawn from them.
 *
 * Building streams every source through one path: bytes -> tokenizer -> a token sink (a growing
 * array, or a file). Files are read in blocks of DS_BLOCK bytes, and a block is cut at a chunk
 * boundary of the BPE pre-tokenization (ds_bpe_safe_split), so streaming gives exactly the tokens
 * of encoding each split in one call, and memory stays bounded whatever the corpus size. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/corpus_internal.h"
#include "mtp/core/core.h"

#define DS_BLOCK ((size_t)4 << 20) /* bytes read from a file at a time, and the largest piece encoded at once */

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

/* ---- sources -------------------------------------------------------------------------------- */

DsSourceKind ds_source_kind(const char *spec) {
    if (strncmp(spec, "builtin:", 8) == 0) return strcmp(spec + 8, "arith") == 0 ? DS_SRC_ARITH : DS_SRC_UNKNOWN;
    size_t n = strlen(spec);
    if ((n > 6 && strcmp(spec + n - 6, ".jsonl") == 0) || (n > 7 && strcmp(spec + n - 7, ".ndjson") == 0))
        return DS_SRC_JSONL;
    return DS_SRC_TEXT;
}

/* Opens a source file for reading: a regular, non-empty file (FIFOs and devices could block or
   never end). Fills size and mtime. Returns the fd or -1 with a message. */
static int open_source(const char *path, uint64_t *size, int64_t *mtime_ns, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return mtp_fail(err, errlen, "%s: no such file", path);
        return mtp_fail(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    }
    struct stat st;
    const char *bad = NULL;
    if (fstat(fd, &st) != 0) bad = strerror(errno);
    else if (S_ISDIR(st.st_mode)) bad = "is a directory, expected a corpus file";
    else if (!S_ISREG(st.st_mode)) bad = "not a regular file";
    else if (st.st_size == 0) bad = "empty file";
    if (bad) {
        close(fd);
        return mtp_fail(err, errlen, "%s: %s", path, bad);
    }
    *size = (uint64_t)st.st_size;
    *mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    return fd;
}

int ds_source_stat(const char *spec, uint64_t *size, int64_t *mtime_ns, char *err, size_t errlen) {
    *size = 0, *mtime_ns = 0;
    if (ds_source_kind(spec) == DS_SRC_ARITH) return 0;
    int fd = open_source(spec, size, mtime_ns, err, errlen);
    if (fd < 0) return -1;
    close(fd);
    return 0;
}

/* Text file split: the last round(val_frac * (size + 1)) bytes are validation (the +1 is the BOS
   that begins the stream, as a byte file always had). */
static uint64_t text_cut(uint64_t size, double val_frac) {
    uint64_t n_val = (uint64_t)((double)(size + 1) * val_frac + 0.5);
    return n_val >= size ? 0 : size - n_val;
}

long ds_jsonl_train_lines(long lines, double val_frac) { return lines - (long)((double)lines * val_frac + 0.5); }

/* Reads exactly n bytes at the current offset (retrying short reads and EINTR). */
static int read_full(int fd, uint8_t *buf, size_t n, const char *path, uint64_t at, char *err, size_t errlen) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (r < 0) return mtp_fail(err, errlen, "%s: read failed at byte %llu: %s", path,
                                   (unsigned long long)(at + got), strerror(errno));
        if (r == 0) return mtp_fail(err, errlen, "%s: the file shrank while being read (at byte %llu)", path,
                                    (unsigned long long)(at + got));
        got += (size_t)r;
    }
    return 0;
}

/* ---- token sinks ------------------------------------------------------------------------------ */

int ds_sink_put(DsSink *s, const int32_t *t, size_t n) {
    s->count += n;
    if (s->discard || n == 0) return 0;
    if (s->fd < 0) { /* memory: a doubling array */
        if (s->len + n > s->cap) {
            size_t cap = s->cap ? s->cap : 1 << 16;
            while (cap < s->len + n) {
                if (cap > SIZE_MAX / 2 / sizeof(int32_t)) return s->errnum = ENOMEM, -1;
                cap *= 2;
            }
            int32_t *p = realloc(s->buf, cap * sizeof *p);
            if (!p) return s->errnum = ENOMEM, -1;
            s->buf = p, s->cap = cap;
        }
        memcpy(s->buf + s->len, t, n * sizeof *t);
        s->len += n;
        return 0;
    }
    while (n) { /* file: staged, written a block at a time */
        size_t k = s->cap - s->len < n ? s->cap - s->len : n;
        memcpy(s->buf + s->len, t, k * sizeof *t);
        s->len += k, t += k, n -= k;
        if (s->len == s->cap && ds_sink_flush(s)) return -1;
    }
    return 0;
}

int ds_sink_flush(DsSink *s) {
    if (s->fd < 0 || s->discard) return 0;
    const char *p = (const char *)s->buf;
    size_t left = s->len * sizeof(int32_t);
    while (left) {
        ssize_t w = write(s->fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return s->errnum = w < 0 ? errno : EIO, -1;
        p += w, left -= (size_t)w;
    }
    s->len = 0;
    return 0;
}

/* ---- building --------------------------------------------------------------------------------- */

typedef struct {
    const DsOptions *opt;
    int byte_tok;      /* bytes: encoding is a copy, no chunk boundaries to respect */
    DsSink *train, *val;
    int32_t *scratch;  /* DS_BLOCK tokens */
    uint8_t *block;    /* DS_BLOCK + DS_BPE_MAX_CHUNK bytes */
    uint64_t done, total; /* source bytes read so far, and in all (progress) */
    double t0, last_note;
} Builder;

static void progress(Builder *b, uint64_t more) {
    b->done += more;
    if (b->opt->quiet) return;
    double now = mtp_now();
    if (now - b->last_note >= 5.0 && b->total) {
        fprintf(stderr, "mtp: tokenizing: %.0f of %.0f MB (%.0f%%)\n", b->done / 1e6, b->total / 1e6,
                100.0 * (double)b->done / (double)b->total);
        b->last_note = now;
    }
}

/* Encodes bytes into the sink in pieces of at most DS_BLOCK bytes, each cut at a chunk boundary. */
static int put_text(Builder *b, DsSink *s, const uint8_t *bytes, size_t n) {
    while (n) {
        size_t piece = n;
        if (piece > DS_BLOCK) piece = b->byte_tok ? DS_BLOCK : ds_bpe_safe_split(bytes, DS_BLOCK);
        size_t k = b->byte_tok ? ds_encode_bytes(b->scratch, bytes, piece)
                               : ds_bpe_encode(b->opt->tokenizer, b->scratch, bytes, piece);
        if (ds_sink_put(s, b->scratch, k)) return -1;
        bytes += piece, n -= piece;
    }
    return 0;
}

static int sink_fail(const DsSink *s, const char *spec, char *err, size_t errlen) {
    return mtp_fail(err, errlen, "%s: writing tokens: %s", spec, strerror(s->errnum ? s->errnum : EIO));
}

/* Streams bytes [from, to) of fd into the sink, carrying each block's last chunk to the next. */
static int stream_region(Builder *b, DsSink *s, int fd, const char *path, uint64_t from, uint64_t to, char *err,
                         size_t errlen) {
    if (lseek(fd, (off_t)from, SEEK_SET) < 0)
        return mtp_fail(err, errlen, "%s: cannot seek: %s", path, strerror(errno));
    size_t carry = 0;
    for (uint64_t at = from; at < to;) {
        size_t want = to - at < DS_BLOCK ? (size_t)(to - at) : DS_BLOCK;
        if (read_full(fd, b->block + carry, want, path, at, err, errlen)) return -1;
        at += want;
        size_t len = carry + want, cut = at < to && !b->byte_tok ? ds_bpe_safe_split(b->block, len) : len;
        if (put_text(b, s, b->block, cut)) return sink_fail(s, path, err, errlen);
        carry = len - cut;
        memmove(b->block, b->block + cut, carry);
        progress(b, want);
    }
    return 0;
}

static int build_text(Builder *b, const char *path, DsSourceInfo *info, char *err, size_t errlen) {
    int fd = open_source(path, &info->size, &info->mtime_ns, err, errlen);
    if (fd < 0) return -1;
    uint64_t cut = text_cut(info->size, b->opt->val_frac);
    uint64_t t0 = b->train->count, v0 = b->val->count;
    const int32_t bos = DS_BOS;
    int rc = ds_sink_put(b->train, &bos, 1) ? sink_fail(b->train, path, err, errlen) : 0;
    if (rc == 0 && !b->opt->val_only) rc = stream_region(b, b->train, fd, path, 0, cut, err, errlen);
    if (rc == 0) rc = stream_region(b, b->val, fd, path, cut, info->size, err, errlen);
    close(fd);
    info->train_tokens = b->train->count - t0;
    info->val_tokens = b->val->count - v0;
    return rc;
}

static int build_jsonl(Builder *b, const char *path, DsSourceInfo *info, char *err, size_t errlen) {
    int fd = open_source(path, &info->size, &info->mtime_ns, err, errlen);
    if (fd < 0) return -1;
    close(fd);
    long lines = ds_count_lines(path, err, errlen);
    if (lines < 0) return -1;
    long train_lines = ds_jsonl_train_lines(lines, b->opt->val_frac);
    DsJsonl *j = NULL;
    if (ds_jsonl_open(&j, path, &b->opt->jsonl, err, errlen)) return -1;
    uint64_t t0 = b->train->count, v0 = b->val->count;
    const int32_t bos = DS_BOS, eos = DS_EOS;
    DsRecord rec;
    int r, rc = 0;
    uint64_t read_bytes = 0;
    while (rc == 0 && (r = ds_jsonl_next(j, &rec, err, errlen)) == 1) {
        DsSink *s = rec.line <= train_lines ? b->train : b->val;
        if (s == b->train && b->opt->val_only) continue;
        if (ds_sink_put(s, &bos, 1) || put_text(b, s, (const uint8_t *)rec.text, rec.len) || ds_sink_put(s, &eos, 1))
            rc = sink_fail(s, path, err, errlen);
        progress(b, rec.len);
        read_bytes += rec.len;
    }
    if (rc == 0 && r < 0) rc = -1;
    info->skipped = ds_jsonl_skipped(j);
    ds_jsonl_close(j);
    info->train_tokens = b->train->count - t0;
    info->val_tokens = b->val->count - v0;
    if (rc == 0 && info->train_tokens + info->val_tokens == 0)
        rc = mtp_fail(err, errlen, "%s: no records (%ld lines, %ld bad ones skipped)", path, lines, info->skipped);
    return rc;
}

/* Concatenates examples (BOS, text, EOS) until at least target_bytes of text. */
static int arith_stream(Builder *b, DsSink *s, uint64_t seed, size_t target_bytes, char *err, size_t errlen) {
    MtpRng rng;
    mtp_rng_seed(&rng, seed);
    size_t cap = 16384, text = 0;
    char *buf = malloc(cap);
    if (!buf) return mtp_fail(err, errlen, "builtin:arith: out of memory");
    const int32_t bos = DS_BOS, eos = DS_EOS;
    int rc = 0;
    while (rc == 0 && text < target_bytes) {
        MtpRng saved = rng;
        size_t len = ds_arith_example(buf, cap, &rng, b->opt->difficulty);
        if (len >= cap) { /* longer than any example today; grow and regenerate the same one */
            char *p = realloc(buf, len + 1);
            if (!p) {
                rc = mtp_fail(err, errlen, "builtin:arith: out of memory");
                break;
            }
            buf = p, cap = len + 1, rng = saved;
            ds_arith_example(buf, cap, &rng, b->opt->difficulty);
        }
        if (ds_sink_put(s, &bos, 1) || put_text(b, s, (const uint8_t *)buf, len) || ds_sink_put(s, &eos, 1))
            rc = sink_fail(s, "builtin:arith", err, errlen);
        text += len;
    }
    free(buf);
    return rc;
}

static int build_arith(Builder *b, DsSourceInfo *info, char *err, size_t errlen) {
    uint64_t t0 = b->train->count, v0 = b->val->count;
    int rc = 0;
    if (!b->opt->val_only) rc = arith_stream(b, b->train, b->opt->seed, DS_ARITH_TRAIN_BYTES, err, errlen);
    if (rc == 0) rc = arith_stream(b, b->val, b->opt->seed ^ DS_ARITH_VAL_SEED_XOR, DS_ARITH_VAL_BYTES, err, errlen);
    info->train_tokens = b->train->count - t0;
    info->val_tokens = b->val->count - v0;
    return rc;
}

int ds_build_sources(const DsOptions *opt, DsSink *train, DsSink *val, DsSourceInfo *info, char *err,
                     size_t errlen) {
    Builder b = {.opt = opt, .train = train, .val = val, .t0 = mtp_now()};
    b.last_note = b.t0;
    b.byte_tok = !opt->tokenizer || ds_bpe_n_merges(opt->tokenizer) == 0;
    b.scratch = malloc(DS_BLOCK * sizeof(int32_t));
    b.block = malloc(DS_BLOCK + DS_BPE_MAX_CHUNK);
    if (!b.scratch || !b.block) {
        free(b.scratch);
        free(b.block);
        return mtp_fail(err, errlen, "out of memory for the tokenizer's buffers");
    }
    for (int i = 0; i < opt->n_sources; i++) {
        uint64_t size;
        int64_t mtime;
        if (ds_source_stat(opt->sources[i].spec, &size, &mtime, err, errlen) == 0) b.total += size;
    }
    int rc = 0;
    for (int i = 0; i < opt->n_sources && rc == 0; i++) {
        const char *spec = opt->sources[i].spec;
        memset(&info[i], 0, sizeof info[i]);
        info[i].start = train->count;
        switch (ds_source_kind(spec)) {
        case DS_SRC_ARITH: rc = build_arith(&b, &info[i], err, errlen); break;
        case DS_SRC_JSONL: rc = build_jsonl(&b, spec, &info[i], err, errlen); break;
        case DS_SRC_TEXT: rc = build_text(&b, spec, &info[i], err, errlen); break;
        default: rc = mtp_fail(err, errlen, "%s: unknown builtin corpus (known: builtin:arith)", spec); break;
        }
    }
    if (rc == 0 && (ds_sink_flush(train) || ds_sink_flush(val)))
        rc = mtp_fail(err, errlen, "writing tokens: %s", strerror(train->errnum ? train->errnum : val->errnum));
    free(b.scratch);
    free(b.block);
    return rc;
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
            int fd = open_source(spec, &size, &mtime, err, errlen);
            if (fd < 0) rc = -1;
            uint64_t cut = fd < 0 ? 0 : text_cut(size, o->val_frac);
            size_t take = cut < quota ? (size_t)cut : quota;
            if (rc == 0 && take) {
                if (bytes_reserve(&out, take)) rc = mtp_fail(err, errlen, "out of memory for the tokenizer's training text");
                else if ((rc = read_full(fd, out.p + out.n, take, spec, 0, err, errlen)) == 0) out.n += take;
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
