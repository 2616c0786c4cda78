/* mpk.h - msgpack checkpoint I/O: a bounded reader over a mapped file, and an atomic writer, with
 * the helpers every format's code reads and packs its maps with (checkpoints, the token cache).
 *
 * Files are written with msgpack-c's packer (MpkWriter wraps it) but read by walking the bytes with
 * MpkReader, a cursor that never reads past its end and never allocates. msgpack-c's unpacker is
 * unsuitable for files we do not trust: it pre-allocates per declared element (a 10-byte file can
 * declare 4 billion) and reports a truncated file as "need more data" rather than an error.
 *
 * Reader rules:
 *  - every mpk_read_* checks the type and that the whole value (header and payload) lies inside the
 *    buffer, consumes it and returns 0; otherwise it consumes nothing, records one line in r->err
 *    ("byte offset 1234: expected map, found str") and returns -1;
 *  - errors are sticky: after the first one every read fails and r->err keeps the first message, so
 *    a parser can run a sequence of reads and check once;
 *  - strings and bins point into the buffer (no copy, strings not NUL-terminated), so they live as
 *    long as the buffer does;
 *  - on failure the outputs are zeroed, so a caller that forgets a check reads zeros, not garbage. */
#ifndef MTP_MPK_H
#define MTP_MPK_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Containers nested deeper than this make mpk_skip fail (a crafted file of 0x91 bytes is a
 * million-deep array); real checkpoints nest a handful of levels. */
#define MPK_MAX_DEPTH 64

typedef enum {
    MPK_NIL,
    MPK_BOOL,
    MPK_UINT,    /* non-negative integer, whatever its encoding (int8..int64 included) */
    MPK_INT,     /* negative integer */
    MPK_FLOAT,   /* float32 or float64 */
    MPK_STR,
    MPK_BIN,
    MPK_ARRAY,
    MPK_MAP,
    MPK_EXT,
    MPK_INVALID  /* 0xc1, end of data, or a reader that already failed */
} MpkType;

typedef struct {
    const uint8_t *base, *p, *end;
    int failed;    /* sticky: after the first error every read fails */
    char err[256]; /* "byte offset 1234: expected map, found str" */
} MpkReader;

/* Start reading n bytes at data (data may be NULL when n is 0). */
void mpk_reader_init(MpkReader *r, const void *data, size_t n);

/* Type of the next value without consuming it. */
MpkType mpk_peek(const MpkReader *r);

/* Bytes consumed so far, and bytes left; a parser checks mpk_left(r) == 0 at the end to reject
 * trailing garbage. */
size_t mpk_offset(const MpkReader *r);
size_t mpk_left(const MpkReader *r);

/* Name of a type for messages: "map", "negative int", ... */
const char *mpk_type_name(MpkType t);

int mpk_read_nil(MpkReader *r);
int mpk_read_bool(MpkReader *r, int *v);
int mpk_read_uint(MpkReader *r, uint64_t *v);                        /* any non-negative int encoding */
int mpk_read_int(MpkReader *r, int64_t *v);                          /* any int encoding that fits int64 */
int mpk_read_double(MpkReader *r, double *v);                        /* float32, float64, or any int */
int mpk_read_str(MpkReader *r, const char **s, uint32_t *len);       /* points into the buffer, NOT NUL-terminated */
int mpk_read_bin(MpkReader *r, const uint8_t **data, uint32_t *len); /* in place, no copy */
int mpk_read_ext(MpkReader *r, int8_t *type, const uint8_t **data, uint32_t *len); /* in place */

/* Container headers: the elements follow and are read one by one (a map's as key, value, key, ...).
 * Since every element takes at least one byte, a count larger than the bytes left is an error here,
 * so a crafted count can never drive a caller's loop (or allocation) past the data. */
int mpk_read_array(MpkReader *r, uint32_t *count); /* fails if count > bytes left */
int mpk_read_map(MpkReader *r, uint32_t *count);   /* fails if 2*count > bytes left */

/* Skip one complete value of any type, nested containers included. Iterative with an explicit
 * stack of MPK_MAX_DEPTH levels (error beyond), work linear in the bytes skipped. Lets a loader
 * ignore map keys it does not know. On failure the cursor stays at the start of the value and the
 * message gives the offset of the bad byte inside it. */
int mpk_skip(MpkReader *r);

/* 1 if the string (s, len) read from a file equals the C string lit, else 0. */
int mpk_str_eq(const char *s, uint32_t len, const char *lit);

/* Schema helpers: how loaders read a map of known keys (checkpoints, tokenizer files, the token
 * cache's header). Keys are read into a small buffer and dispatched with strcmp; values that
 * outlive the buffer are read with mpk_read_str (in place) or copied with mpk_read_cstr.
 *
 *     char key[MPK_KEY_CAP];
 *     if (mpk_read_key(r, key, sizeof key)) return -1;
 *     if (strcmp(key, "steps") == 0) ... else if (mpk_skip(r)) return -1;
 *
 * They follow the reader rules: outputs zeroed on failure, errors sticky, one-line messages. */
#define MPK_KEY_CAP 32 /* longer than any key a loader looks for */

/* A map key (a str) as a C string. A key that does not fit in cap bytes or holds a NUL comes back
 * as "": like any name no schema uses, the caller skips its value, so a crafted "format\0x" or a
 * long key can never pass for "format". */
int mpk_read_key(MpkReader *r, char *key, size_t cap);
/* A str copied into out as a C string; "<what> is too long (N bytes)" when it does not fit in
 * cap bytes (with its NUL). */
int mpk_read_cstr(MpkReader *r, char *out, size_t cap, const char *what);
/* An integer in [lo, hi]; "<what> = v is out of range [lo, hi]" outside. */
int mpk_read_int_in(MpkReader *r, const char *what, int64_t lo, int64_t hi, int64_t *v);

/* Record a caller's error as "byte offset N: <message>" (N = mpk_offset) and return -1, so schema
 * code reports "byte offset 812: tensor trunk.0.wq: shape [3, 4] but config needs [256, 256]".
 * If the reader already failed, the first message is kept. Control characters (say from a key
 * name in the file) are replaced by '?' so the message stays one line. */
int mpk_fail(MpkReader *r, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Read-only mapping of a whole file. The mapping is private and read-only; it stays valid after
 * the file is renamed over, which is how MpkWriter replaces files. */
typedef struct {
    const uint8_t *data;
    size_t size;
} MpkFile;

/* Map path. Errors (one line, with the path) for: no such file, a directory, not a regular file,
 * an empty file, no permission. On failure f is zeroed and mpk_file_unmap(f) is harmless. */
int mpk_file_map(MpkFile *f, const char *path, char *err, size_t errlen);
void mpk_file_unmap(MpkFile *f);

/* Atomic file writing: data goes to a temp file beside the target ("<path>.tmp.<pid>", same
 * directory so rename cannot cross filesystems), then fflush + fsync + close + rename over the
 * target + fsync of the directory. Until commit the target is untouched, so a crash or a full disk
 * mid-save leaves the previous checkpoint intact. abort (or any failure) removes the temp file.
 * A process killed mid-save (SIGKILL, OOM killer, power cut) cannot remove its temp file, so open
 * first removes those of earlier writers to the same path that are gone (mpk_remove_stale_temps):
 * a run killed again and again keeps at most one temp file per writer still alive.
 *
 *     MpkWriter w;
 *     if (mpk_writer_open(&w, path, err, sizeof err)) return -1;
 *     msgpack_pack_map(&w.pk, 2); ...           // return values may be ignored: w.failed records
 *     if (mpk_writer_commit(&w, err, sizeof err)) return -1;
 *
 * The packer holds a pointer to the MpkWriter: do not copy or move it between open and commit. */
typedef struct {
    FILE *f;
    char *path, *tmp_path;
    int failed;        /* a write error happened (disk full...) */
    int errnum;        /* errno of the first write error, for the message */
    msgpack_packer pk; /* packer writing to f */
} MpkWriter;

int mpk_writer_open(MpkWriter *w, const char *path, char *err, size_t errlen);
/* Fails (and removes the temp file, leaving the target as it was) if any write, flush, fsync or
 * the rename failed. One exception: if only the final directory fsync fails, the new file is
 * already in place and complete, but -1 is returned because its survival of a power cut is unsure
 * (filesystems that do not support directory fsync, EINVAL, count as success). After commit, w
 * holds nothing either way. */
int mpk_writer_commit(MpkWriter *w, char *err, size_t errlen);
/* Drop everything written; the target is untouched. Safe to call on a zeroed, committed or already
 * aborted writer. */
void mpk_writer_abort(MpkWriter *w);

/* Packing helpers for the writers (an MpkWriter's pk, or a packer into a buffer): a C string, and
 * a map entry of a str key and its value. The encodings are msgpack-c's smallest for each value,
 * so files stay byte for byte what the same msgpack_pack_* calls write. */
void mpk_pack_str(msgpack_packer *pk, const char *s);
void mpk_pack_key_int(msgpack_packer *pk, const char *key, int64_t v);
void mpk_pack_key_uint(msgpack_packer *pk, const char *key, uint64_t v);
void mpk_pack_key_double(msgpack_packer *pk, const char *key, double v);
void mpk_pack_key_bool(msgpack_packer *pk, const char *key, int v);
void mpk_pack_key_str(msgpack_packer *pk, const char *key, const char *v);
void mpk_pack_key_bin(msgpack_packer *pk, const char *key, const void *data, size_t n);

/* Removes the files "<path>.tmp.<pid>" beside path whose process is gone (kill(pid, 0) fails with
 * ESRCH): temp files of atomic writes that were killed, never to be finished or read. A temp file
 * of a live process (this one included, or another user's: EPERM) is kept, and so is every other
 * name (the pid must be decimal digits, no sign, no blanks, no suffix). Returns how many it removed;
 * errors (an unreadable directory, a failed unlink) are ignored: cleanup is best effort. Pids are
 * those of this machine's pid namespace, so writers on other hosts sharing the directory (NFS) or
 * in other containers look dead: do not share an output directory between them while they save.
 * mpk_writer_open calls it; the token cache calls it for its own temp names. */
int mpk_remove_stale_temps(const char *path);

/* The directory holding path ("." for a bare name, "/" for a file in the root) into dir. */
void mpk_dir_of(const char *path, char *dir, size_t dirlen);
/* fsync of the directory holding path (its name into dir), so a rename into it survives a power
   cut; a filesystem without directory fsync (EINVAL) counts as success. -1 with errno otherwise. */
int mpk_fsync_dir(const char *path, char *dir, size_t dirlen);

/* Standard CRC-32 (IEEE, same as zlib's crc32): crc = 0 to start, feed the previous result to
 * continue, so mpk_crc32(mpk_crc32(0, a, n), b, m) == crc of a followed by b. */
uint32_t mpk_crc32(uint32_t crc, const void *data, size_t n);

#endif
