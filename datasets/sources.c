/* sources.c - the data sources of a corpus (sources_internal.h): what a spec names, how each kind
 * of source splits into training and validation data, and building them into token sinks.
 *
 * Building streams every source through one path: bytes -> tokenizer -> a token sink (a growing
 * array, or a file). Files are read in blocks of DS_BLOCK bytes, and a block is cut at a chunk
 * boundary of the BPE pre-tokenization (ds_bpe_safe_split), so streaming gives exactly the tokens
 * of encoding each split in one call, and memory stays bounded whatever the corpus size. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/sources_internal.h"
#include "mtp/core/core.h"

#define DS_BLOCK ((size_t)4 << 20) /* bytes read from a file at a time, and the largest piece encoded at once */

/* ---- sources -------------------------------------------------------------------------------- */

DsSourceKind ds_source_kind(const char *spec) {
    if (strncmp(spec, "builtin:", 8) == 0) return strcmp(spec + 8, "arith") == 0 ? DS_SRC_ARITH : DS_SRC_UNKNOWN;
    size_t n = strlen(spec);
    if ((n > 6 && strcmp(spec + n - 6, ".jsonl") == 0) || (n > 7 && strcmp(spec + n - 7, ".ndjson") == 0))
        return DS_SRC_JSONL;
    return DS_SRC_TEXT;
}

int ds_source_open(const char *path, uint64_t *size, int64_t *mtime_ns, char *err, size_t errlen) {
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
    int fd = ds_source_open(spec, size, mtime_ns, err, errlen);
    if (fd < 0) return -1;
    close(fd);
    return 0;
}

int ds_source_sample_fd(int fd, uint64_t size, uint64_t *hash, const char *path, char *err, size_t errlen) {
    uint8_t *buf = malloc(DS_SAMPLE_BYTES);
    if (!buf) return mtp_fail(err, errlen, "out of memory");
    uint64_t h = DS_FNV_OFFSET;
    /* the first block, then the last (the same bytes again when they overlap: still a fixed hash) */
    const uint64_t n = size < DS_SAMPLE_BYTES ? size : DS_SAMPLE_BYTES, at[2] = {0, size - n};
    int rc = 0;
    for (int b = 0; b < 2 && rc == 0; b++) {
        size_t got = 0;
        while (got < n) {
            const ssize_t r = pread(fd, buf + got, n - got, (off_t)(at[b] + got));
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) {
                rc = mtp_fail(err, errlen, "%s: reading: %s", path, r < 0 ? strerror(errno) : "the file got shorter");
                break;
            }
            got += (size_t)r;
        }
        h = ds_fnv1a64(h, buf, got);
    }
    free(buf);
    *hash = h;
    return rc;
}

int ds_source_sample(const char *spec, uint64_t *hash, char *err, size_t errlen) {
    *hash = 0;
    if (ds_source_kind(spec) == DS_SRC_ARITH) return 0;
    uint64_t size;
    int64_t mtime;
    const int fd = ds_source_open(spec, &size, &mtime, err, errlen);
    if (fd < 0) return -1;
    const int rc = ds_source_sample_fd(fd, size, hash, spec, err, errlen);
    close(fd);
    return rc;
}

uint64_t ds_sources_bytes(const DsOptions *o) {
    uint64_t bytes = 0;
    for (int i = 0; i < o->n_sources; i++) {
        uint64_t size;
        int64_t mtime;
        char err[256]; /* a source that cannot be read counts 0 here; building it says why */
        if (ds_source_stat(o->sources[i].spec, &size, &mtime, err, sizeof err) == 0) bytes += size;
    }
    return bytes;
}

/* The last round(val_frac * (size + 1)) bytes are validation (the +1 is the BOS that begins the
   stream, as a byte file always had). */
uint64_t ds_text_train_bytes(uint64_t size, double val_frac) {
    uint64_t n_val = (uint64_t)((double)(size + 1) * val_frac + 0.5);
    return n_val >= size ? 0 : size - n_val;
}

long ds_jsonl_train_lines(long lines, double val_frac) { return lines - (long)((double)lines * val_frac + 0.5); }

int ds_read_full(int fd, uint8_t *buf, size_t n, const char *path, uint64_t at, char *err, size_t errlen) {
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
        if (ds_read_full(fd, b->block + carry, want, path, at, err, errlen)) return -1;
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
    int fd = ds_source_open(path, &info->size, &info->mtime_ns, err, errlen);
    if (fd < 0) return -1;
    if (ds_source_sample_fd(fd, info->size, &info->sample, path, err, errlen)) {
        close(fd);
        return -1;
    }
    uint64_t cut = ds_text_train_bytes(info->size, b->opt->val_frac);
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
    int fd = ds_source_open(path, &info->size, &info->mtime_ns, err, errlen);
    if (fd < 0) return -1;
    const int sampled = ds_source_sample_fd(fd, info->size, &info->sample, path, err, errlen);
    close(fd);
    if (sampled) return -1;
    long lines = ds_count_lines(path, err, errlen);
    if (lines < 0) return -1;
    long train_lines = ds_jsonl_train_lines(lines, b->opt->val_frac);
    DsJsonl *j = NULL;
    if (ds_jsonl_open(&j, path, &b->opt->jsonl, err, errlen)) return -1;
    uint64_t t0 = b->train->count, v0 = b->val->count;
    const int32_t bos = DS_BOS, eos = DS_EOS;
    DsRecord rec;
    int r, rc = 0;
    while (rc == 0 && (r = ds_jsonl_next(j, &rec, err, errlen)) == 1) {
        DsSink *s = rec.line <= train_lines ? b->train : b->val;
        if (s == b->train && b->opt->val_only) continue;
        if (ds_sink_put(s, &bos, 1) || put_text(b, s, (const uint8_t *)rec.text, rec.len) || ds_sink_put(s, &eos, 1))
            rc = sink_fail(s, path, err, errlen);
        progress(b, rec.len);
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
    b.total = ds_sources_bytes(opt);
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
