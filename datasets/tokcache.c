/* tokcache.c - the token cache file: a corpus tokenized once, then memory-mapped for training.
 *
 * Layout (ds.h, "corpora"): 16 bytes of preamble ("MTPTOKS1", u32 header length, u32 data offset),
 * the msgpack header, zero padding up to the data offset (a multiple of 4096, so the tokens are
 * page-aligned), then int32 tokens: every training split, then every validation split.
 *
 * The header is written last, into room reserved at the start, because its counts are known only
 * at the end. The whole file goes to "<path>.tmp.<pid>" and is renamed over path only once it is
 * complete and fsync'd: a cache file that exists was finished. The validation tokens are staged in
 * a second, already-unlinked temp file and appended after the training tokens.
 *
 * A cache is trusted only when its header matches the current options and every source's size,
 * modification time and sample (an FNV-1a hash of its first and last 64 KiB: a file rewritten in
 * place with its size and time kept, as `cp -p` or an editor restoring the time can do, is caught
 * where the change reaches either end, at the cost of reading 128 KiB per source at each start; a
 * hash of the whole file would cost a full read of corpora of gigabytes); it is then checked for
 * size and token range before use, so even a damaged file cannot make training index outside the
 * embedding. */
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/tokcache_internal.h"
#include "mtp/core/core.h"
#include "mtp/core/mpk.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the token cache stores little-endian int32 tokens and maps them in place"
#endif

#define CACHE_FORMAT "mtp-tokens"
#define CACHE_VERSION 1
#define PREAMBLE 16
#define PAGE 4096
#define DS_CACHE_ANNOUNCE_BYTES ((uint64_t)64 << 20)

void ds_cache_unmap(void *map, size_t size) {
    if (map) munmap(map, size);
}

static const char *or_empty(const char *s) { return s ? s : ""; } /* a NULL field name: not used */

/* The canonical path of a file source into buf (realpath), or 0 when it has none (builtins, a file
   that cannot be resolved now): two specs naming the same file share a cache. */
static int canonical_path(const char *spec, char *buf) {
    return ds_source_kind(spec) != DS_SRC_ARITH && realpath(spec, buf) != NULL;
}

static int tokenizer_vocab(const DsOptions *o) { return o->tokenizer ? ds_bpe_vocab(o->tokenizer) : DS_BYTE_VOCAB; }

static int any_kind(const DsOptions *o, DsSourceKind k) {
    for (int i = 0; i < o->n_sources; i++)
        if (ds_source_kind(o->sources[i].spec) == k) return 1;
    return 0;
}

/* ---- writing ---------------------------------------------------------------------------------- */

static void pack_header(msgpack_packer *pk, const DsOptions *o, const DsSourceInfo *info, uint64_t n_train,
                        uint64_t n_val) {
    msgpack_pack_map(pk, 12);
    mpk_pack_key_str(pk, "format", CACHE_FORMAT);
    mpk_pack_key_int(pk, "version", CACHE_VERSION);
    mpk_pack_key_uint(pk, "tokenizer_hash", ds_tokenizer_hash(o->tokenizer));
    mpk_pack_key_int(pk, "vocab", tokenizer_vocab(o));
    mpk_pack_key_double(pk, "val_frac", o->val_frac);
    mpk_pack_key_uint(pk, "seed", o->seed);
    mpk_pack_key_int(pk, "difficulty", o->difficulty);
    mpk_pack_key_int(pk, "val_only", o->val_only != 0); /* training splits left out */
    mpk_pack_str(pk, "jsonl");
    msgpack_pack_map(pk, 4);
    mpk_pack_key_str(pk, "question", or_empty(o->jsonl.question));
    mpk_pack_key_str(pk, "answer", or_empty(o->jsonl.answer));
    mpk_pack_key_str(pk, "text", or_empty(o->jsonl.text));
    mpk_pack_key_bool(pk, "skip_bad_lines", o->jsonl.skip_bad_lines);
    mpk_pack_key_uint(pk, "train_tokens", n_train);
    mpk_pack_key_uint(pk, "val_tokens", n_val);
    mpk_pack_str(pk, "sources");
    msgpack_pack_array(pk, (size_t)o->n_sources);
    for (int i = 0; i < o->n_sources; i++) {
        const DsSourceInfo *s = &info[i];
        char real[PATH_MAX];
        const int has_path = canonical_path(o->sources[i].spec, real);
        msgpack_pack_map(pk, 8 + has_path);
        mpk_pack_key_str(pk, "spec", o->sources[i].spec);
        if (has_path) mpk_pack_key_str(pk, "path", real);
        mpk_pack_key_uint(pk, "size", s->size);
        mpk_pack_key_int(pk, "mtime_ns", s->mtime_ns);
        mpk_pack_key_uint(pk, "sample", s->sample);
        mpk_pack_key_uint(pk, "start", s->start);
        mpk_pack_key_uint(pk, "train_tokens", s->train_tokens);
        mpk_pack_key_uint(pk, "val_tokens", s->val_tokens);
        mpk_pack_key_uint(pk, "skipped_lines", (uint64_t)s->skipped);
    }
}

/* Room for the header: every fixed field plus the specs and field names, rounded up to a page. */
static size_t header_room(const DsOptions *o) {
    size_t n = PREAMBLE + 1024 + strlen(or_empty(o->jsonl.question)) + strlen(or_empty(o->jsonl.answer)) +
               strlen(or_empty(o->jsonl.text));
    for (int i = 0; i < o->n_sources; i++) {
        char real[PATH_MAX];
        n += strlen(o->sources[i].spec) + (canonical_path(o->sources[i].spec, real) ? strlen(real) : 0) + 170;
    }
    return (n + PAGE - 1) / PAGE * PAGE;
}

static int write_at(int fd, const void *data, size_t n, off_t at) {
    const char *p = data;
    while (n) {
        ssize_t w = pwrite(fd, p, n, at);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w, n -= (size_t)w, at += w;
    }
    return 0;
}

/* Appends the staged validation tokens (val_fd, from its start) to fd at offset at. */
static int append_file(int fd, off_t at, int val_fd) {
    if (lseek(val_fd, 0, SEEK_SET) < 0) return -1;
    char buf[1 << 16];
    for (;;) {
        ssize_t r = read(val_fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) return 0;
        if (write_at(fd, buf, (size_t)r, at)) return -1;
        at += r;
    }
}

/* Removes "<path>.tmp.<pid>" and "<path>.val.tmp.<pid>" files left by builds that were killed
   (their process is gone): they are never read, but a big corpus leaves big ones. Called by every
   load, not only by builds: a build killed while another process finished the cache leaves one
   beside a valid cache, which no later run would rebuild. */
static void remove_stale_temps(const char *path) {
    mpk_remove_stale_temps(path);
    size_t n = strlen(path) + 5;
    char *val = malloc(n);
    if (!val) return;
    snprintf(val, n, "%s.val", path);
    mpk_remove_stale_temps(val);
    free(val);
}

static int build_cache(const DsOptions *o, char *err, size_t errlen) {
    const char *path = o->cache_path;
    size_t plen = strlen(path) + 32;
    char *tmp = malloc(plen), *vtmp = malloc(plen);
    if (!tmp || !vtmp) {
        free(tmp), free(vtmp);
        return mtp_fail(err, errlen, "out of memory");
    }
    snprintf(tmp, plen, "%s.tmp.%ld", path, (long)getpid());
    snprintf(vtmp, plen, "%s.val.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int vfd = fd < 0 ? -1 : open(vtmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int rc = 0;
    if (fd < 0 || vfd < 0) rc = mtp_fail(err, errlen, "token cache %s: cannot create %s: %s", path,
                                         fd < 0 ? tmp : vtmp, strerror(errno));
    if (vfd >= 0) unlink(vtmp); /* the staging file vanishes with the process, whatever happens */

    size_t room = header_room(o);
    DsSink train = {.fd = fd, .cap = 1 << 18}, val = {.fd = vfd, .cap = 1 << 18};
    train.buf = malloc(train.cap * sizeof(int32_t));
    val.buf = malloc(val.cap * sizeof(int32_t));
    if (rc == 0 && (!train.buf || !val.buf)) rc = mtp_fail(err, errlen, "out of memory");
    if (rc == 0 && lseek(fd, (off_t)room, SEEK_SET) < 0)
        rc = mtp_fail(err, errlen, "token cache %s: cannot seek: %s", tmp, strerror(errno));
    DsSourceInfo info[DS_MAX_SOURCES];
    double t0 = mtp_now();
    if (rc == 0) rc = ds_build_sources(o, &train, &val, info, err, errlen);
    if (rc && (train.errnum || val.errnum)) /* a write failed (disk full): say where, not only which source */
        mtp_fail(err, errlen, "token cache %s: writing %s: %s", path, tmp,
                 strerror(train.errnum ? train.errnum : val.errnum));
    if (rc == 0 && append_file(fd, (off_t)(room + train.count * sizeof(int32_t)), vfd))
        rc = mtp_fail(err, errlen, "token cache %s: writing: %s", tmp, strerror(errno));
    if (rc == 0) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        pack_header(&pk, o, info, train.count, val.count);
        uint8_t pre[PREAMBLE];
        memcpy(pre, DS_CACHE_MAGIC, 8);
        uint32_t hl = (uint32_t)sb.size, off = (uint32_t)room;
        memcpy(pre + 8, &hl, 4);
        memcpy(pre + 12, &off, 4);
        if (!sb.data || PREAMBLE + sb.size > room) rc = mtp_fail(err, errlen, "token cache %s: header does not fit", path);
        else if (write_at(fd, pre, PREAMBLE, 0) || write_at(fd, sb.data, sb.size, PREAMBLE) || fsync(fd))
            rc = mtp_fail(err, errlen, "token cache %s: writing: %s", tmp, strerror(errno));
        msgpack_sbuffer_destroy(&sb);
    }
    if (fd >= 0 && close(fd) && rc == 0) rc = mtp_fail(err, errlen, "token cache %s: %s", tmp, strerror(errno));
    if (vfd >= 0) close(vfd);
    if (rc == 0 && rename(tmp, path)) rc = mtp_fail(err, errlen, "token cache %s: rename: %s", path, strerror(errno));
    char dir[4096];
    if (rc == 0) mpk_fsync_dir(path, dir, sizeof dir); /* best effort: the file is complete either way */
    else if (fd >= 0) unlink(tmp);
    if (rc == 0 && !o->quiet && mtp_now() - t0 > 2.0)
        fprintf(stderr, "mtp: token cache %s: %llu train / %llu val tokens, built in %.1f s\n", path,
                (unsigned long long)train.count, (unsigned long long)val.count, mtp_now() - t0);
    free(train.buf), free(val.buf), free(tmp), free(vtmp);
    return rc;
}

/* ---- reading ---------------------------------------------------------------------------------- */

typedef struct {
    int have_format, version;
    uint64_t tok_hash, n_train, n_val, seed;
    int64_t vocab, difficulty;
    double val_frac;
    const char *field[3]; /* question, answer, text: in the mapped header, not NUL-terminated */
    uint32_t field_len[3];
    int skip, val_only;
    int n_sources;
    const char *spec[DS_MAX_SOURCES]; /* in the mapped header, like the field names */
    uint32_t spec_len[DS_MAX_SOURCES];
    const char *path[DS_MAX_SOURCES]; /* canonical paths (caches from before them have none) */
    uint32_t path_len[DS_MAX_SOURCES];
    DsSourceInfo info[DS_MAX_SOURCES];
    int have_sample[DS_MAX_SOURCES]; /* caches from before the content check have none: rebuilt */
} CacheHeader;

static int read_source(MpkReader *r, CacheHeader *h, int i) {
    uint32_t n;
    if (mpk_read_map(r, &n)) return -1;
    DsSourceInfo *s = &h->info[i];
    for (uint32_t k = 0; k < n; k++) {
        char key[MPK_KEY_CAP];
        uint64_t u = 0;
        if (mpk_read_key(r, key, sizeof key)) return -1;
        int rc = 0;
        if (strcmp(key, "spec") == 0) rc = mpk_read_str(r, &h->spec[i], &h->spec_len[i]);
        else if (strcmp(key, "path") == 0) rc = mpk_read_str(r, &h->path[i], &h->path_len[i]);
        else if (strcmp(key, "size") == 0) rc = mpk_read_uint(r, &s->size);
        else if (strcmp(key, "mtime_ns") == 0) rc = mpk_read_int(r, &s->mtime_ns);
        else if (strcmp(key, "sample") == 0) rc = mpk_read_uint(r, &s->sample), h->have_sample[i] = 1;
        else if (strcmp(key, "start") == 0) rc = mpk_read_uint(r, &s->start);
        else if (strcmp(key, "train_tokens") == 0) rc = mpk_read_uint(r, &s->train_tokens);
        else if (strcmp(key, "val_tokens") == 0) rc = mpk_read_uint(r, &s->val_tokens);
        else if (strcmp(key, "skipped_lines") == 0)
            rc = mpk_read_uint(r, &u), s->skipped = (long)(u > 1u << 30 ? 1u << 30 : u);
        else rc = mpk_skip(r);
        if (rc) return -1;
    }
    return 0;
}

/* jsonl: {question, answer, text, skip_bad_lines} */
static int read_jsonl(MpkReader *r, CacheHeader *h) {
    uint32_t m;
    if (mpk_read_map(r, &m)) return -1;
    for (uint32_t j = 0; j < m; j++) {
        char key[MPK_KEY_CAP];
        if (mpk_read_key(r, key, sizeof key)) return -1;
        int f = strcmp(key, "question") == 0 ? 0 : strcmp(key, "answer") == 0 ? 1 : strcmp(key, "text") == 0 ? 2 : -1;
        int rc;
        if (f >= 0) rc = mpk_read_str(r, &h->field[f], &h->field_len[f]);
        else if (strcmp(key, "skip_bad_lines") == 0) rc = mpk_read_bool(r, &h->skip);
        else rc = mpk_skip(r);
        if (rc) return -1;
    }
    return 0;
}

static int read_header(MpkReader *r, CacheHeader *h) {
    uint32_t n;
    if (mpk_read_map(r, &n)) return -1;
    for (uint32_t k = 0; k < n; k++) {
        char key[MPK_KEY_CAP];
        int64_t v = 0;
        if (mpk_read_key(r, key, sizeof key)) return -1;
        int rc = 0;
        if (strcmp(key, "format") == 0) {
            const char *f;
            uint32_t fn;
            rc = mpk_read_str(r, &f, &fn);
            h->have_format = rc == 0 && mpk_str_eq(f, fn, CACHE_FORMAT);
        } else if (strcmp(key, "version") == 0) rc = mpk_read_int(r, &v), h->version = (int)v;
        else if (strcmp(key, "tokenizer_hash") == 0) rc = mpk_read_uint(r, &h->tok_hash);
        else if (strcmp(key, "vocab") == 0) rc = mpk_read_int(r, &h->vocab);
        else if (strcmp(key, "val_frac") == 0) rc = mpk_read_double(r, &h->val_frac);
        else if (strcmp(key, "seed") == 0) rc = mpk_read_uint(r, &h->seed);
        else if (strcmp(key, "difficulty") == 0) rc = mpk_read_int(r, &h->difficulty);
        else if (strcmp(key, "val_only") == 0) rc = mpk_read_int(r, &v), h->val_only = v != 0;
        else if (strcmp(key, "train_tokens") == 0) rc = mpk_read_uint(r, &h->n_train);
        else if (strcmp(key, "val_tokens") == 0) rc = mpk_read_uint(r, &h->n_val);
        else if (strcmp(key, "jsonl") == 0) rc = read_jsonl(r, h);
        else if (strcmp(key, "sources") == 0) {
            uint32_t m;
            if ((rc = mpk_read_array(r, &m)) == 0 && m > DS_MAX_SOURCES) rc = mpk_fail(r, "too many sources");
            h->n_sources = (int)m;
            for (uint32_t j = 0; j < m && rc == 0; j++) rc = read_source(r, h, (int)j);
        } else rc = mpk_skip(r);
        if (rc) return -1;
    }
    return 0;
}

/* 1 when the header's source i is spec: the same spec, or the same file named another way
   ("data.txt" and "/home/me/data.txt"). */
static int same_source(const CacheHeader *h, int i, const char *spec) {
    if (h->spec[i] && mpk_str_eq(h->spec[i], h->spec_len[i], spec)) return 1;
    char real[PATH_MAX];
    return h->path[i] && canonical_path(spec, real) && mpk_str_eq(h->path[i], h->path_len[i], real);
}

/* Why the cache does not match the options, or NULL when it does. ds_cache_key hashes every field
   checked here except the sources' sizes, times and samples: a cache in the shared folder is found
   by its options and then checked against the files. */
static const char *stale_reason(const CacheHeader *h, const DsOptions *o, char *buf, size_t cap, char *err,
                                size_t errlen, int *failed) {
    *failed = 0;
    if (!h->have_format || h->version != CACHE_VERSION) return "written by another version";
    if (h->tok_hash != ds_tokenizer_hash(o->tokenizer) || h->vocab != tokenizer_vocab(o)) return "another tokenizer";
    if (h->val_frac != o->val_frac) return "another validation fraction";
    if (h->val_only != (o->val_only != 0)) return h->val_only ? "it holds no training tokens" : "built for training";
    if (h->n_sources != o->n_sources) return "other data sources";
    for (int i = 0; i < o->n_sources; i++)
        if (!same_source(h, i, o->sources[i].spec)) return "other data sources";
    if (any_kind(o, DS_SRC_ARITH) && (h->seed != o->seed || h->difficulty != o->difficulty))
        return "another builtin:arith seed or difficulty";
    if (any_kind(o, DS_SRC_JSONL) &&
        (!mpk_str_eq(h->field[0], h->field_len[0], or_empty(o->jsonl.question)) ||
         !mpk_str_eq(h->field[1], h->field_len[1], or_empty(o->jsonl.answer)) ||
         !mpk_str_eq(h->field[2], h->field_len[2], or_empty(o->jsonl.text)) || h->skip != (o->jsonl.skip_bad_lines != 0)))
        return "other JSONL fields or bad-line policy";
    for (int i = 0; i < o->n_sources; i++) {
        uint64_t size;
        int64_t mtime;
        if (ds_source_stat(o->sources[i].spec, &size, &mtime, err, errlen)) {
            *failed = 1;
            return "a source cannot be read";
        }
        uint64_t sample = 0;
        if (size == h->info[i].size && mtime == h->info[i].mtime_ns &&
            ds_source_sample(o->sources[i].spec, &sample, err, errlen)) {
            *failed = 1;
            return "a source cannot be read";
        }
        if (size != h->info[i].size || mtime != h->info[i].mtime_ns || !h->have_sample[i] ||
            sample != h->info[i].sample) {
            snprintf(buf, cap, "%s changed since the cache was built", o->sources[i].spec);
            return buf;
        }
    }
    return NULL;
}

/* ---- the key of the shared folder -------------------------------------------------------------- */

static uint64_t hash_str(uint64_t h, const char *tag, const char *s) {
    h = ds_fnv1a64(h, tag, strlen(tag) + 1);
    return ds_fnv1a64(h, s, strlen(s) + 1); /* with its NUL: "ab"+"c" differs from "a"+"bc" */
}

static uint64_t hash_u64(uint64_t h, const char *tag, uint64_t v) {
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)(v >> (8 * i)); /* the same key on any host */
    return ds_fnv1a64(ds_fnv1a64(h, tag, strlen(tag) + 1), le, 8);
}

uint64_t ds_cache_key(const DsOptions *o) {
    const int n = o->n_sources ? o->n_sources : (o->spec && o->spec[0]) ? 1 : 0;
    uint64_t h = hash_str(DS_FNV_OFFSET, "format", CACHE_FORMAT);
    h = hash_u64(h, "version", CACHE_VERSION);
    h = hash_u64(h, "tokenizer", ds_tokenizer_hash(o->tokenizer));
    h = hash_u64(h, "vocab", (uint64_t)tokenizer_vocab(o));
    uint64_t frac;
    memcpy(&frac, &o->val_frac, sizeof frac); /* stale_reason compares the doubles exactly too */
    h = hash_u64(h, "val_frac", frac);
    h = hash_u64(h, "val_only", o->val_only != 0);
    int arith = 0, jsonl = 0;
    for (int i = 0; i < n; i++) {
        const char *spec = o->n_sources ? o->sources[i].spec : o->spec;
        char real[PATH_MAX];
        h = hash_str(h, "source", canonical_path(spec, real) ? real : spec);
        arith |= ds_source_kind(spec) == DS_SRC_ARITH;
        jsonl |= ds_source_kind(spec) == DS_SRC_JSONL;
    }
    if (arith) h = hash_u64(hash_u64(h, "seed", o->seed), "difficulty", (uint64_t)o->difficulty);
    if (jsonl) {
        h = hash_str(h, "question", or_empty(o->jsonl.question));
        h = hash_str(h, "answer", or_empty(o->jsonl.answer));
        h = hash_str(h, "text", or_empty(o->jsonl.text));
        h = hash_u64(h, "skip_bad_lines", o->jsonl.skip_bad_lines != 0);
    }
    return h;
}

typedef enum { MAP_OK, MAP_MISSING, MAP_STALE, MAP_ERROR } MapResult;

/* Maps the file at path when it is a token cache (it starts with the magic). */
static MapResult map_file(const char *path, uint8_t **map, size_t *size, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) return MAP_MISSING;
    if (fd < 0) return mtp_fail(err, errlen, "token cache %s: cannot open: %s", path, strerror(errno)), MAP_ERROR;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return mtp_fail(err, errlen, "token cache %s: not a regular file", path), MAP_ERROR;
    }
    *size = (size_t)st.st_size;
    void *m = *size >= PREAMBLE ? mmap(NULL, *size, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
    close(fd);
    if (m == MAP_FAILED || memcmp(m, DS_CACHE_MAGIC, 8) != 0) {
        if (m != MAP_FAILED) munmap(m, *size);
        mtp_fail(err, errlen, "token cache %s exists and is not a token cache (remove it or choose another path)",
                 path);
        return MAP_ERROR;
    }
    *map = m;
    return MAP_OK;
}

/* 1 when the data the header describes is what the file holds: the sources' training tokens in
   order and filling the training array, the file's size exactly that of the tokens (layout_ok),
   and every token an id training may index the embedding with (data_ok). */
static int layout_ok(const CacheHeader *h, size_t size, uint32_t off) {
    uint64_t sum = 0, n_tok = h->n_train + h->n_val;
    int ok = h->n_train <= (size - off) / 4 && h->n_val <= (size - off) / 4 && off + n_tok * 4 == size;
    for (int i = 0; i < h->n_sources && ok; i++) {
        const DsSourceInfo *s = &h->info[i];
        ok = s->start == sum && s->train_tokens <= h->n_train - sum;
        sum += s->train_tokens;
    }
    return ok && sum == h->n_train;
}

static int data_ok(const CacheHeader *h, const uint8_t *map, size_t size, uint32_t off, int32_t vocab) {
    if (!layout_ok(h, size, off)) return 0;
    const uint64_t n_tok = h->n_train + h->n_val;
    const int32_t *tok = (const int32_t *)(map + off);
    long bad = 0;
#pragma omp parallel for reduction(+ : bad) schedule(static)
    for (int64_t i = 0; i < (int64_t)n_tok; i++) bad += (tok[i] < 0) | (tok[i] >= vocab) | (tok[i] == DS_PAD);
    return bad == 0;
}

/* Maps an existing cache and checks it against o; why says what makes a cache MAP_STALE. */
static MapResult map_cache(DsCorpus *c, const DsOptions *o, DsSourceInfo *info, char *why, size_t whylen, char *err,
                           size_t errlen) {
    uint8_t *map = NULL;
    size_t size = 0;
    MapResult res = map_file(o->cache_path, &map, &size, err, errlen);
    if (res != MAP_OK) return res;
    uint32_t hl, off;
    memcpy(&hl, map + 8, 4);
    memcpy(&off, map + 12, 4);
    CacheHeader *h = calloc(1, sizeof *h);
    int failed = 0;
    const char *reason = "damaged header";
    res = MAP_STALE;
    if (!h) {
        mtp_fail(err, errlen, "out of memory");
        res = MAP_ERROR;
    } else if ((size_t)PREAMBLE + hl <= off && off % PAGE == 0 && off <= size) {
        MpkReader r;
        mpk_reader_init(&r, map + PREAMBLE, hl);
        if (read_header(&r, h) == 0 && mpk_left(&r) == 0 &&
            (reason = stale_reason(h, o, why, whylen, err, errlen, &failed)) == NULL) {
            reason = "damaged data";
            if (data_ok(h, map, size, off, (int32_t)tokenizer_vocab(o))) {
                int32_t *tok = (int32_t *)(map + off);
                c->map = map, c->map_size = size;
                c->train = tok, c->n_train = (size_t)h->n_train;
                c->val = tok + h->n_train, c->n_val = (size_t)h->n_val;
                c->from_cache = 1;
                memcpy(info, h->info, (size_t)o->n_sources * sizeof *info);
                res = MAP_OK;
            }
        }
    }
    if (failed) res = MAP_ERROR;
    if (res == MAP_STALE && reason != why) snprintf(why, whylen, "%s", reason);
    if (res != MAP_OK) munmap(map, size);
    free(h);
    return res;
}

int ds_cache_load(DsCorpus *c, const DsOptions *o, DsSourceInfo *info, char *err, size_t errlen) {
    char why[DS_MAX_SPEC + 64] = "";
    remove_stale_temps(o->cache_path);
    MapResult r = map_cache(c, o, info, why, sizeof why, err, errlen);
    if (r == MAP_OK) return 0;
    if (r == MAP_ERROR) return -1;
    /* small corpora build in a blink: say something only when it will take a while */
    uint64_t bytes = ds_sources_bytes(o);
    if (!o->quiet && bytes >= DS_CACHE_ANNOUNCE_BYTES && r == MAP_STALE)
        fprintf(stderr, "mtp: token cache %s is stale (%s): rebuilding it\n", o->cache_path, why);
    else if (!o->quiet && bytes >= DS_CACHE_ANNOUNCE_BYTES)
        fprintf(stderr, "mtp: tokenizing %.0f MB of data into %s\n", bytes / 1e6, o->cache_path);
    if (build_cache(o, err, errlen)) return -1;
    r = map_cache(c, o, info, why, sizeof why, err, errlen);
    if (r == MAP_OK) {
        c->from_cache = 2;
        return 0;
    }
    if (r == MAP_STALE)
        mtp_fail(err, errlen, "token cache %s: %s right after it was built (was a source modified meanwhile?)",
                 o->cache_path, why);
    return -1;
}

/* ---- inspecting a cache (mtp cache list|clean) ----------------------------------------------- */

/* Whether every source of h is still the file the cache was built from; why not into reason. A
   source is found by its canonical path when the header has one (the spec may be relative to
   another folder), by its spec otherwise. */
static int sources_current(const CacheHeader *h, char *reason, size_t cap) {
    for (int i = 0; i < h->n_sources; i++) {
        char where[PATH_MAX], err[DS_MAX_SPEC + 256];
        const char *spec = h->path[i] ? h->path[i] : h->spec[i];
        const uint32_t len = h->path[i] ? h->path_len[i] : h->spec_len[i];
        if (!spec || len >= sizeof where) return snprintf(reason, cap, "a source has no usable name"), 0;
        memcpy(where, spec, len);
        where[len] = '\0';
        if (ds_source_kind(where) == DS_SRC_ARITH) continue;
        uint64_t size, sample;
        int64_t mtime;
        if (ds_source_stat(where, &size, &mtime, err, sizeof err) || ds_source_sample(where, &sample, err, sizeof err))
            return snprintf(reason, cap, "%.1000s", err), 0; /* a message naming the file: cut only if absurd */
        if (size != h->info[i].size || mtime != h->info[i].mtime_ns || !h->have_sample[i] ||
            sample != h->info[i].sample)
            return snprintf(reason, cap, "%.1000s changed since the cache was built", where), 0;
    }
    return 1;
}

/* The header's fields into info; the status from the header, the layout and the sources. */
static void inspect_header(DsCacheInfo *info, const uint8_t *map, size_t size, CacheHeader *h) {
    uint32_t hl, off;
    memcpy(&hl, map + 8, 4);
    memcpy(&off, map + 12, 4);
    MpkReader r;
    if (!((size_t)PREAMBLE + hl <= off && off % PAGE == 0 && off <= size)) {
        info->status = DS_CACHE_DAMAGED;
        snprintf(info->reason, sizeof info->reason, "damaged header");
        return;
    }
    mpk_reader_init(&r, map + PREAMBLE, hl);
    if (read_header(&r, h) || mpk_left(&r) != 0) {
        info->status = DS_CACHE_DAMAGED;
        snprintf(info->reason, sizeof info->reason, "damaged header");
        return;
    }
    info->tokenizer_hash = h->tok_hash, info->vocab = h->vocab, info->val_only = h->val_only;
    info->train_tokens = h->n_train, info->val_tokens = h->n_val, info->n_sources = h->n_sources;
    for (int i = 0; i < h->n_sources; i++) {
        const uint32_t n = h->spec[i] ? (h->spec_len[i] < DS_MAX_SPEC ? h->spec_len[i] : DS_MAX_SPEC - 1) : 0;
        if (n) memcpy(info->spec[i], h->spec[i], n);
        info->spec[i][n] = '\0';
    }
    if (!h->have_format || h->version != CACHE_VERSION) {
        info->status = DS_CACHE_STALE;
        snprintf(info->reason, sizeof info->reason, "written by another version");
    } else if (!layout_ok(h, size, off)) {
        info->status = DS_CACHE_DAMAGED;
        snprintf(info->reason, sizeof info->reason, "damaged data (the size does not match the header)");
    } else if (!sources_current(h, info->reason, sizeof info->reason)) {
        info->status = DS_CACHE_STALE;
    }
}

int ds_cache_inspect(const char *path, DsCacheInfo *info, char *err, size_t errlen) {
    memset(info, 0, sizeof *info);
    struct stat st;
    if (stat(path, &st) != 0) return mtp_fail(err, errlen, "%s: %s", path, strerror(errno));
    info->bytes = (uint64_t)st.st_size;
    info->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    info->atime_ns = (int64_t)st.st_atim.tv_sec * 1000000000 + st.st_atim.tv_nsec;
    info->status = DS_CACHE_FOREIGN;
    if (!S_ISREG(st.st_mode)) return snprintf(info->reason, sizeof info->reason, "not a regular file"), 0;
    /* without touching its access time, which `mtp cache clean --unused-days` reads as last use
       (O_NOATIME is only for the file's owner: others open it plainly) */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOATIME);
    if (fd < 0 && errno == EPERM) fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return mtp_fail(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    const size_t size = (size_t)st.st_size;
    void *m = size >= 8 ? mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
    close(fd);
    if (m == MAP_FAILED || memcmp(m, DS_CACHE_MAGIC, 8) != 0) {
        if (m != MAP_FAILED) munmap(m, size);
        return snprintf(info->reason, sizeof info->reason, "not a token cache"), 0;
    }
    if (size < PREAMBLE) { /* the magic, cut short */
        munmap(m, size);
        info->status = DS_CACHE_DAMAGED;
        return snprintf(info->reason, sizeof info->reason, "damaged header"), 0;
    }
    CacheHeader *h = calloc(1, sizeof *h);
    if (!h) {
        munmap(m, size);
        return mtp_fail(err, errlen, "out of memory");
    }
    info->status = DS_CACHE_CURRENT;
    inspect_header(info, m, size, h);
    free(h);
    munmap(m, size);
    return 0;
}
