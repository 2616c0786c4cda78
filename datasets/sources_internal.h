/* sources_internal.h - the data sources inside the datasets module (sources.c): what a source spec
 * names, how each kind of source splits into training and validation data, and building every
 * source of a corpus into token sinks. Not the module's interface: that is ds.h.
 *
 * The corpus (corpus.c), the token cache (tokcache.c) and the held-out problems (problems.c) use
 * it; it uses none of them, so the module's dependencies go one way: sources <- tokcache <- corpus. */
#ifndef MTP_DATASETS_SOURCES_INTERNAL_H
#define MTP_DATASETS_SOURCES_INTERNAL_H

#include "datasets/ds.h"

typedef enum { DS_SRC_UNKNOWN, DS_SRC_ARITH, DS_SRC_JSONL, DS_SRC_TEXT } DsSourceKind;

DsSourceKind ds_source_kind(const char *spec);

/* Opens a source file for reading: a regular, non-empty file (FIFOs and devices could block or
   never end). Fills size and mtime. Returns the fd, or -1 with a message. */
int ds_source_open(const char *path, uint64_t *size, int64_t *mtime_ns, char *err, size_t errlen);

/* Size and modification time of a source file (0 and 0 for builtins); -1 with a message when it
   cannot be opened, is empty or is not a regular file. */
int ds_source_stat(const char *spec, uint64_t *size, int64_t *mtime_ns, char *err, size_t errlen);
/* A cheap check of a file's content: FNV-1a 64 of its first and last DS_SAMPLE_BYTES (the whole
   file when smaller). A token cache trusts a source whose size, modification time and sample are
   unchanged. */
#define DS_SAMPLE_BYTES 65536
int ds_source_sample_fd(int fd, uint64_t size, uint64_t *hash, const char *path, char *err, size_t errlen);
/* The same by spec (0 for builtins); -1 with a message when it cannot be read. */
int ds_source_sample(const char *spec, uint64_t *hash, char *err, size_t errlen);

/* Bytes of all the source files of o (builtins count 0), for progress and for saying whether
   building will take a while. */
uint64_t ds_sources_bytes(const DsOptions *o);

/* The split rules: how much of a source is training data (the first part; the rest is validation).
   Every reader of a source (building, tokenizer text, held-out problems) cuts it the same way. */
uint64_t ds_text_train_bytes(uint64_t size, double val_frac); /* bytes of a text file */
long ds_jsonl_train_lines(long lines, double val_frac);       /* lines of a JSONL file */

/* Reads exactly n bytes at fd's current offset (at: that offset, for messages), retrying short
   reads and EINTR; a file that ends early is an error. */
int ds_read_full(int fd, uint8_t *buf, size_t n, const char *path, uint64_t at, char *err, size_t errlen);

/* What building recorded about one source. */
typedef struct {
    uint64_t size;                 /* bytes of the file (0 for builtins) */
    int64_t mtime_ns;
    uint64_t sample;               /* ds_source_sample of the file (0 for builtins) */
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

#endif
