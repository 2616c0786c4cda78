/* corpus_internal.h - what corpus.c and tokcache.c share inside the datasets module (not its
 * interface: that is ds.h). */
#ifndef MTP_DATASETS_CORPUS_INTERNAL_H
#define MTP_DATASETS_CORPUS_INTERNAL_H

#include "datasets/ds.h"

typedef enum { DS_SRC_UNKNOWN, DS_SRC_ARITH, DS_SRC_JSONL, DS_SRC_TEXT } DsSourceKind;

DsSourceKind ds_source_kind(const char *spec);

/* Lines of a JSONL source that are training data (the first ones; the rest is validation). */
long ds_jsonl_train_lines(long lines, double val_frac);

/* Size and modification time of a source file (0 and 0 for builtins); -1 with a message when it
   cannot be opened, is empty or is not a regular file. */
int ds_source_stat(const char *spec, uint64_t *size, int64_t *mtime_ns, char *err, size_t errlen);

/* What building recorded about one source. */
typedef struct {
    uint64_t size;                 /* bytes of the file (0 for builtins) */
    int64_t mtime_ns;
    uint64_t start;                /* its first training token in the training array */
    uint64_t train_tokens, val_tokens;
    long skipped;                  /* bad JSONL lines skipped */
} DsSourceInfo;

/* Where tokens go: a growing array (fd < 0: buf holds the tokens), or a file (buf is a staging
   block of cap tokens, written out when full and at ds_sink_flush). With discard set, tokens are
   only counted. errnum records the first failure. */
typedef struct {
    int fd;
    int discard;
    int32_t *buf;
    size_t len, cap;
    uint64_t count;
    int errnum;
} DsSink;

int ds_sink_put(DsSink *s, const int32_t *t, size_t n);
int ds_sink_flush(DsSink *s);

/* Tokenizes every source of o (normalized: n_sources >= 1) into the two sinks, source after source,
   and fills info[0..n_sources). */
int ds_build_sources(const DsOptions *o, DsSink *train, DsSink *val, DsSourceInfo *info, char *err, size_t errlen);

/* The token cache (tokcache.c): maps o->cache_path into c (train, val, n_train, n_val, map,
   from_cache) and fills info, after (re)building the file when it is missing or stale. */
int ds_cache_load(DsCorpus *c, const DsOptions *o, DsSourceInfo *info, char *err, size_t errlen);
void ds_cache_unmap(void *map, size_t size);

#endif
