/* mpk.c - msgpack checkpoint I/O: bounded reader and its schema helpers, file mapping, atomic
 * writer and packing helpers, CRC-32.
 *
 * The reader is the part that matters for safety. Every value is first decoded into an MpkHead
 * (type, header size, length or number) by decode(), which checks that the header, and for
 * str/bin/ext the payload, lie inside the buffer, and that a container's count is no larger than
 * the bytes left. Only then does a read advance the cursor. Nothing here allocates, recurses or
 * loops more than once per byte, so a crafted file costs at most a linear scan. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* fsync, fileno, O_CLOEXEC, O_DIRECTORY under -std=c11 */
#endif

#include "mtp/core/core.h"
#include "mtp/core/mpk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------------- */
/* Reader                                                                                         */
/* ---------------------------------------------------------------------------------------------- */

/* One decoded value header. */
typedef struct {
    MpkType type;
    const char *enc; /* encoding name for messages: "str32", "array16", "fixmap", ... */
    size_t hdr;      /* header bytes, type byte included */
    uint64_t u;      /* UINT/BOOL value; byte length of STR/BIN/EXT; element count of ARRAY/MAP */
    int64_t i;       /* INT value */
    double d;        /* FLOAT value */
    int8_t ext;      /* EXT type */
} MpkHead;

/* What decode() found wrong; the message is formatted by head() which has the reader. */
enum { DEC_OK, DEC_END, DEC_BADBYTE, DEC_SHORT_HEADER, DEC_SHORT_PAYLOAD, DEC_SHORT_COUNT };

/* n-byte big-endian unsigned number, byte by byte: the buffer has no alignment. */
static uint64_t load_be(const uint8_t *p, size_t n) {
    uint64_t v = 0;
    for (size_t k = 0; k < n; k++) v = (v << 8) | p[k];
    return v;
}

/* Two's complement n-byte number to int64 without implementation-defined conversions. */
static int64_t to_signed(uint64_t v, size_t n) {
    if (n < 8 && (v >> (8 * n - 1)) & 1) v |= ~(uint64_t)0 << (8 * n);
    return v <= (uint64_t)INT64_MAX ? (int64_t)v : -(int64_t)(~v) - 1;
}

/* What a value's first byte b says: its type and encoding name into h, the bytes of its number
 * (value, length or count) that follow (n), and whether an ext type byte follows them. Returns 1
 * when b is the whole value (fixint, nil, bool; and 0xc1, left MPK_INVALID), 0 when more follows.
 * One case per encoding, in byte order: a table reads best as one. */
static int type_byte(uint8_t b, MpkHead *h, size_t *n, int *has_ext) {
    if (b <= 0x7f) {
        h->type = MPK_UINT, h->enc = "fixint", h->u = b;
        return 1;
    } else if (b <= 0x8f) {
        h->type = MPK_MAP, h->enc = "fixmap", h->u = b & 0x0f;
    } else if (b <= 0x9f) {
        h->type = MPK_ARRAY, h->enc = "fixarray", h->u = b & 0x0f;
    } else if (b <= 0xbf) {
        h->type = MPK_STR, h->enc = "fixstr", h->u = b & 0x1f;
    } else if (b >= 0xe0) {
        h->type = MPK_INT, h->enc = "negative fixint", h->i = (int64_t)b - 256;
        return 1;
    } else {
        switch (b) {
        case 0xc0: h->type = MPK_NIL, h->enc = "nil"; return 1;
        case 0xc1: h->enc = "0xc1"; return 1;
        case 0xc2: h->type = MPK_BOOL, h->enc = "false"; return 1;
        case 0xc3: h->type = MPK_BOOL, h->enc = "true", h->u = 1; return 1;
        case 0xc4: h->type = MPK_BIN, h->enc = "bin8", *n = 1; break;
        case 0xc5: h->type = MPK_BIN, h->enc = "bin16", *n = 2; break;
        case 0xc6: h->type = MPK_BIN, h->enc = "bin32", *n = 4; break;
        case 0xc7: h->type = MPK_EXT, h->enc = "ext8", *n = 1, *has_ext = 1; break;
        case 0xc8: h->type = MPK_EXT, h->enc = "ext16", *n = 2, *has_ext = 1; break;
        case 0xc9: h->type = MPK_EXT, h->enc = "ext32", *n = 4, *has_ext = 1; break;
        case 0xca: h->type = MPK_FLOAT, h->enc = "float32", *n = 4; break;
        case 0xcb: h->type = MPK_FLOAT, h->enc = "float64", *n = 8; break;
        case 0xcc: h->type = MPK_UINT, h->enc = "uint8", *n = 1; break;
        case 0xcd: h->type = MPK_UINT, h->enc = "uint16", *n = 2; break;
        case 0xce: h->type = MPK_UINT, h->enc = "uint32", *n = 4; break;
        case 0xcf: h->type = MPK_UINT, h->enc = "uint64", *n = 8; break;
        case 0xd0: h->type = MPK_INT, h->enc = "int8", *n = 1; break;
        case 0xd1: h->type = MPK_INT, h->enc = "int16", *n = 2; break;
        case 0xd2: h->type = MPK_INT, h->enc = "int32", *n = 4; break;
        case 0xd3: h->type = MPK_INT, h->enc = "int64", *n = 8; break;
        case 0xd4: h->type = MPK_EXT, h->enc = "fixext1", h->u = 1, *has_ext = 1; break;
        case 0xd5: h->type = MPK_EXT, h->enc = "fixext2", h->u = 2, *has_ext = 1; break;
        case 0xd6: h->type = MPK_EXT, h->enc = "fixext4", h->u = 4, *has_ext = 1; break;
        case 0xd7: h->type = MPK_EXT, h->enc = "fixext8", h->u = 8, *has_ext = 1; break;
        case 0xd8: h->type = MPK_EXT, h->enc = "fixext16", h->u = 16, *has_ext = 1; break;
        case 0xd9: h->type = MPK_STR, h->enc = "str8", *n = 1; break;
        case 0xda: h->type = MPK_STR, h->enc = "str16", *n = 2; break;
        case 0xdb: h->type = MPK_STR, h->enc = "str32", *n = 4; break;
        case 0xdc: h->type = MPK_ARRAY, h->enc = "array16", *n = 2; break;
        case 0xdd: h->type = MPK_ARRAY, h->enc = "array32", *n = 4; break;
        case 0xde: h->type = MPK_MAP, h->enc = "map16", *n = 2; break;
        default:   h->type = MPK_MAP, h->enc = "map32", *n = 4; break; /* 0xdf */
        }
    }
    return 0;
}

/* Decode the value at p (left bytes available) into h. h->type is set from the first byte even
 * when the rest is missing, so mpk_peek can use it. */
static int decode(const uint8_t *p, size_t left, MpkHead *h) {
    memset(h, 0, sizeof *h);
    h->type = MPK_INVALID;
    h->enc = "end of data";
    if (left == 0) return DEC_END;

    size_t n = 0;     /* bytes of the number (value or length) after the type byte */
    int has_ext = 0;  /* an ext type byte follows the length */
    h->hdr = 1;
    if (type_byte(p[0], h, &n, &has_ext)) return h->type == MPK_INVALID ? DEC_BADBYTE : DEC_OK;

    h->hdr = 1 + n + (size_t)has_ext;
    if (h->hdr > left) return DEC_SHORT_HEADER;
    if (n > 0) {
        uint64_t v = load_be(p + 1, n);
        switch (h->type) {
        case MPK_FLOAT:
            if (n == 4) {
                uint32_t bits = (uint32_t)v;
                float f;
                memcpy(&f, &bits, 4);
                h->d = f;
            } else {
                memcpy(&h->d, &v, 8);
            }
            break;
        case MPK_INT: /* int8..int64 may hold a non-negative value: it is a UINT then */
            h->i = to_signed(v, n);
            if (h->i >= 0) h->type = MPK_UINT, h->u = (uint64_t)h->i;
            break;
        default: h->u = v; break; /* uint value, or str/bin/ext length, or count */
        }
    }
    if (has_ext) h->ext = (int8_t)to_signed(p[h->hdr - 1], 1);

    size_t rest = left - h->hdr;
    switch (h->type) {
    case MPK_STR:
    case MPK_BIN:
    case MPK_EXT:
        if (h->u > rest) return DEC_SHORT_PAYLOAD;
        break;
    case MPK_ARRAY: /* every element takes at least one byte */
        if (h->u > rest) return DEC_SHORT_COUNT;
        break;
    case MPK_MAP: /* every pair takes at least two; u < 2^32 so 2*u cannot overflow */
        if (2 * h->u > rest) return DEC_SHORT_COUNT;
        break;
    default: break;
    }
    return DEC_OK;
}

/* Decode the value at the cursor; on a problem record a message and fail. Consumes nothing. */
static int head(MpkReader *r, MpkHead *h) {
    if (r->failed) {
        memset(h, 0, sizeof *h);
        h->type = MPK_INVALID;
        return -1;
    }
    size_t left = mpk_left(r);
    switch (decode(r->p, left, h)) {
    case DEC_OK: return 0;
    case DEC_END: return mpk_fail(r, "truncated (end of data)");
    case DEC_BADBYTE: return mpk_fail(r, "invalid byte 0xc1 (never used by msgpack)");
    case DEC_SHORT_HEADER: /* for numbers the "header" is the whole value */
        return mpk_fail(r, "truncated (%s%s needs %zu bytes, %zu left)", h->enc,
                        h->type >= MPK_STR && h->type <= MPK_EXT ? " header" : "", h->hdr, left);
    case DEC_SHORT_PAYLOAD:
        return mpk_fail(r, "truncated (%s of %" PRIu64 " bytes, %zu left)", h->enc, h->u, left - h->hdr);
    default:
        return mpk_fail(r, "truncated (%s of %" PRIu64 " %s, %zu bytes left)", h->enc, h->u,
                        h->type == MPK_MAP ? "pairs" : "elements", left - h->hdr);
    }
}

/* head() plus a type check. */
static int expect(MpkReader *r, MpkHead *h, MpkType want) {
    if (head(r, h)) return -1;
    if (h->type != want) return mpk_fail(r, "expected %s, found %s", mpk_type_name(want), mpk_type_name(h->type));
    return 0;
}

/* Bytes of the whole value for non-containers (containers: just the header). */
static size_t value_size(const MpkHead *h) {
    if (h->type == MPK_STR || h->type == MPK_BIN || h->type == MPK_EXT) return h->hdr + (size_t)h->u;
    return h->hdr;
}

static const uint8_t mpk_empty[1];

void mpk_reader_init(MpkReader *r, const void *data, size_t n) {
    /* a NULL base would make even p - base undefined; point empty input at a real object */
    if (!data) data = mpk_empty, n = 0;
    r->base = r->p = (const uint8_t *)data;
    r->end = r->base + n;
    r->failed = 0;
    r->err[0] = '\0';
}

MpkType mpk_peek(const MpkReader *r) {
    if (r->failed) return MPK_INVALID;
    MpkHead h;
    decode(r->p, mpk_left(r), &h);
    return h.type;
}

size_t mpk_offset(const MpkReader *r) { return (size_t)(r->p - r->base); }
size_t mpk_left(const MpkReader *r) { return (size_t)(r->end - r->p); }

const char *mpk_type_name(MpkType t) {
    switch (t) {
    case MPK_NIL: return "nil";
    case MPK_BOOL: return "bool";
    case MPK_UINT: return "uint";
    case MPK_INT: return "negative int";
    case MPK_FLOAT: return "float";
    case MPK_STR: return "str";
    case MPK_BIN: return "bin";
    case MPK_ARRAY: return "array";
    case MPK_MAP: return "map";
    case MPK_EXT: return "ext";
    default: return "invalid";
    }
}

/* A value of type want whose number sits in its header (bool, array or map count): into u. */
static int read_header_value(MpkReader *r, MpkType want, uint64_t *u) {
    MpkHead h;
    *u = 0;
    if (expect(r, &h, want)) return -1;
    *u = h.u;
    r->p += h.hdr;
    return 0;
}

/* A str, bin or ext of type want: its payload in place. */
static int read_payload(MpkReader *r, MpkType want, MpkHead *h, const uint8_t **data, uint32_t *len) {
    *data = NULL, *len = 0;
    if (expect(r, h, want)) return -1;
    *data = r->p + h->hdr;
    *len = (uint32_t)h->u;
    r->p += value_size(h);
    return 0;
}

int mpk_read_nil(MpkReader *r) {
    uint64_t u;
    return read_header_value(r, MPK_NIL, &u);
}

int mpk_read_bool(MpkReader *r, int *v) {
    uint64_t u;
    int rc = read_header_value(r, MPK_BOOL, &u);
    *v = (int)u;
    return rc;
}

int mpk_read_uint(MpkReader *r, uint64_t *v) {
    MpkHead h;
    *v = 0;
    if (head(r, &h)) return -1;
    if (h.type == MPK_INT) return mpk_fail(r, "expected non-negative integer, found %" PRId64, h.i);
    if (h.type != MPK_UINT) return mpk_fail(r, "expected uint, found %s", mpk_type_name(h.type));
    *v = h.u;
    r->p += h.hdr;
    return 0;
}

int mpk_read_int(MpkReader *r, int64_t *v) {
    MpkHead h;
    *v = 0;
    if (head(r, &h)) return -1;
    if (h.type == MPK_UINT) {
        if (h.u > (uint64_t)INT64_MAX) return mpk_fail(r, "integer %" PRIu64 " does not fit int64", h.u);
        *v = (int64_t)h.u;
    } else if (h.type == MPK_INT) {
        *v = h.i;
    } else {
        return mpk_fail(r, "expected integer, found %s", mpk_type_name(h.type));
    }
    r->p += h.hdr;
    return 0;
}

int mpk_read_double(MpkReader *r, double *v) {
    MpkHead h;
    *v = 0;
    if (head(r, &h)) return -1;
    switch (h.type) {
    case MPK_FLOAT: *v = h.d; break;
    case MPK_UINT: *v = (double)h.u; break;
    case MPK_INT: *v = (double)h.i; break;
    default: return mpk_fail(r, "expected number, found %s", mpk_type_name(h.type));
    }
    r->p += h.hdr;
    return 0;
}

int mpk_read_str(MpkReader *r, const char **s, uint32_t *len) {
    MpkHead h;
    const uint8_t *data;
    int rc = read_payload(r, MPK_STR, &h, &data, len);
    *s = (const char *)data;
    return rc;
}

int mpk_read_bin(MpkReader *r, const uint8_t **data, uint32_t *len) {
    MpkHead h;
    return read_payload(r, MPK_BIN, &h, data, len);
}

int mpk_read_ext(MpkReader *r, int8_t *type, const uint8_t **data, uint32_t *len) {
    MpkHead h;
    int rc = read_payload(r, MPK_EXT, &h, data, len);
    *type = rc ? 0 : h.ext;
    return rc;
}

int mpk_read_array(MpkReader *r, uint32_t *count) {
    uint64_t u;
    int rc = read_header_value(r, MPK_ARRAY, &u);
    *count = (uint32_t)u; /* decode checked it against the bytes left, so it fits */
    return rc;
}

int mpk_read_map(MpkReader *r, uint32_t *count) {
    uint64_t u;
    int rc = read_header_value(r, MPK_MAP, &u);
    *count = (uint32_t)u;
    return rc;
}

int mpk_skip(MpkReader *r) {
    /* pending[k] = values still to skip inside the k-th open container (a map counts 2 per pair) */
    uint64_t pending[MPK_MAX_DEPTH];
    int depth = 0;
    const uint8_t *start = r->p;
    MpkHead h;
    for (;;) {
        if (head(r, &h)) break;
        if (h.type == MPK_ARRAY || h.type == MPK_MAP) {
            uint64_t n = h.type == MPK_MAP ? 2 * h.u : h.u;
            if (n > 0) {
                if (depth == MPK_MAX_DEPTH) {
                    mpk_fail(r, "containers nested deeper than %d levels", MPK_MAX_DEPTH);
                    break;
                }
                r->p += h.hdr;
                pending[depth++] = n;
                continue;
            }
        }
        r->p += value_size(&h);
        /* one value done: close every container it completes */
        while (depth > 0 && --pending[depth - 1] == 0) depth--;
        if (depth == 0) return 0;
    }
    r->p = start; /* like the other reads, a failed skip consumes nothing */
    return -1;
}

int mpk_str_eq(const char *s, uint32_t len, const char *lit) {
    size_t n = strlen(lit);
    return n == len && (n == 0 || memcmp(s, lit, n) == 0);
}

int mpk_read_key(MpkReader *r, char *key, size_t cap) {
    const char *s;
    uint32_t n;
    key[0] = '\0';
    if (mpk_read_str(r, &s, &n)) return -1;
    if (n < cap && !memchr(s, 0, n)) {
        memcpy(key, s, n);
        key[n] = '\0';
    }
    return 0;
}

int mpk_read_cstr(MpkReader *r, char *out, size_t cap, const char *what) {
    const char *s;
    uint32_t n;
    out[0] = '\0';
    if (mpk_read_str(r, &s, &n)) return -1;
    if (n >= cap) return mpk_fail(r, "%s is too long (%u bytes)", what, n);
    memcpy(out, s, n);
    out[n] = '\0';
    return 0;
}

int mpk_read_int_in(MpkReader *r, const char *what, int64_t lo, int64_t hi, int64_t *v) {
    if (mpk_read_int(r, v)) return -1;
    if (*v >= lo && *v <= hi) return 0;
    int64_t bad = *v;
    *v = 0;
    return mpk_fail(r, "%s = %lld is out of range [%lld, %lld]", what, (long long)bad, (long long)lo, (long long)hi);
}

int mpk_fail(MpkReader *r, const char *fmt, ...) {
    if (r->failed) return -1; /* keep the first error: later ones are usually its consequences */
    r->failed = 1;
    int k = snprintf(r->err, sizeof r->err, "byte offset %zu: ", mpk_offset(r));
    if (k < 0) k = 0;
    if ((size_t)k < sizeof r->err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->err + k, sizeof r->err - (size_t)k, fmt, ap);
        va_end(ap);
    }
    for (char *c = r->err; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
    return -1;
}

/* ---------------------------------------------------------------------------------------------- */
/* Files                                                                                          */
/* ---------------------------------------------------------------------------------------------- */

int mpk_file_map(MpkFile *f, const char *path, char *err, size_t errlen) {
    f->data = NULL;
    f->size = 0;
    /* O_NONBLOCK so that a FIFO given by mistake is reported, not waited on forever */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        mtp_fail(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        mtp_fail(err, errlen, "cannot stat %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    const char *bad = NULL;
    if (S_ISDIR(st.st_mode)) bad = "is a directory, not a file";
    else if (!S_ISREG(st.st_mode)) bad = "not a regular file";
    else if (st.st_size == 0) bad = "file is empty";
    else if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX) bad = "file too large to map";
    if (bad) {
        mtp_fail(err, errlen, "cannot read %s: %s", path, bad);
        close(fd);
        return -1;
    }
    size_t size = (size_t)st.st_size;
    void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd); /* the mapping keeps the file alive */
    if (m == MAP_FAILED) {
        mtp_fail(err, errlen, "cannot map %s: %s", path, strerror(e));
        return -1;
    }
    f->data = (const uint8_t *)m;
    f->size = size;
    return 0;
}

void mpk_file_unmap(MpkFile *f) {
    if (f->data) munmap((void *)f->data, f->size);
    f->data = NULL;
    f->size = 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Atomic writer                                                                                  */
/* ---------------------------------------------------------------------------------------------- */

/* msgpack-c packer callback. A short write marks the writer failed; later writes are dropped, and
 * commit reports the first error, so callers need not check every msgpack_pack_* result. */
static int writer_cb(void *data, const char *buf, size_t len) {
    MpkWriter *w = (MpkWriter *)data;
    if (w->failed || !w->f) return -1;
    errno = 0;
    if (len > 0 && fwrite(buf, 1, len, w->f) != len) {
        w->failed = 1;
        w->errnum = errno ? errno : EIO;
        return -1;
    }
    return 0;
}

static void writer_free(MpkWriter *w) {
    free(w->path);
    free(w->tmp_path);
    memset(w, 0, sizeof *w);
}

int mpk_writer_open(MpkWriter *w, const char *path, char *err, size_t errlen) {
    memset(w, 0, sizeof *w);
    if (!path || !*path) {
        mtp_fail(err, errlen, "cannot write checkpoint: empty path");
        return -1;
    }
    /* rename() would fail at commit anyway; say so before the caller writes gigabytes */
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        mtp_fail(err, errlen, "cannot write %s: is a directory", path);
        return -1;
    }
    size_t n = strlen(path);
    w->path = malloc(n + 1);
    w->tmp_path = malloc(n + 32);
    if (!w->path || !w->tmp_path) {
        mtp_fail(err, errlen, "cannot write %s: out of memory", path);
        writer_free(w);
        return -1;
    }
    memcpy(w->path, path, n + 1);
    /* before this save's own temp file takes room: the ones of saves to this path that were killed */
    mpk_remove_stale_temps(path);
    snprintf(w->tmp_path, n + 32, "%s.tmp.%ld", path, (long)getpid());
    w->f = fopen(w->tmp_path, "wb");
    if (!w->f) {
        mtp_fail(err, errlen, "cannot write %s: cannot create temp file %s: %s", path, w->tmp_path, strerror(errno));
        writer_free(w);
        return -1;
    }
    msgpack_packer_init(&w->pk, w, writer_cb);
    return 0;
}

void mpk_dir_of(const char *path, char *dir, size_t dirlen) {
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, dirlen, ".");
    else if (slash == path) snprintf(dir, dirlen, "/");
    else snprintf(dir, dirlen, "%.*s", (int)(slash - path), path);
}

int mpk_remove_stale_temps(const char *path) {
    char dir[4096];
    mpk_dir_of(path, dir, sizeof dir);
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    size_t bl = strlen(base);
    DIR *d = opendir(dir);
    if (!d) return 0;
    int removed = 0;
    for (struct dirent *e; (e = readdir(d));) {
        const char *rest = e->d_name;
        if (strncmp(rest, base, bl) != 0 || strncmp(rest + bl, ".tmp.", 5) != 0) continue;
        rest += bl + 5;
        if (*rest < '1' || *rest > '9') continue; /* not a name we give: strtol would take " +12" */
        char *end;
        errno = 0;
        long pid = strtol(rest, &end, 10);
        if (*end || errno || pid > INT_MAX) continue;
        /* 0: alive; EPERM: alive, another user's; ESRCH: gone, its temp file can never be finished */
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        if (unlinkat(dirfd(d), e->d_name, 0) == 0) removed++;
    }
    closedir(d);
    return removed;
}

int mpk_fsync_dir(const char *path, char *dir, size_t dirlen) {
    mpk_dir_of(path, dir, dirlen);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0 && e == EINVAL) rc = 0; /* filesystem without directory fsync: nothing to do */
    errno = e;
    return rc;
}

int mpk_writer_commit(MpkWriter *w, char *err, size_t errlen) {
    if (!w->f) {
        mtp_fail(err, errlen, "mpk_writer_commit: writer is not open");
        return -1;
    }
    /* each step only runs if the previous ones worked; errnum keeps the first error */
    if (!w->failed && fflush(w->f) != 0) w->failed = 1, w->errnum = errno;
    if (!w->failed && fsync(fileno(w->f)) != 0) w->failed = 1, w->errnum = errno;
    if (fclose(w->f) != 0 && !w->failed) w->failed = 1, w->errnum = errno;
    w->f = NULL;
    if (w->failed) {
        mtp_fail(err, errlen, "cannot write %s: writing %s failed: %s", w->path, w->tmp_path,
                strerror(w->errnum ? w->errnum : EIO));
        mpk_writer_abort(w);
        return -1;
    }
    if (rename(w->tmp_path, w->path) != 0) {
        mtp_fail(err, errlen, "cannot write %s: rename from %s failed: %s", w->path, w->tmp_path, strerror(errno));
        mpk_writer_abort(w);
        return -1;
    }
    char dir[4096];
    if (mpk_fsync_dir(w->path, dir, sizeof dir) != 0) {
        /* the new file is in place and complete; only its durability across a crash is unsure */
        mtp_fail(err, errlen, "%s written, but fsync of directory %s failed: %s", w->path, dir, strerror(errno));
        writer_free(w);
        return -1;
    }
    writer_free(w);
    return 0;
}

void mpk_writer_abort(MpkWriter *w) {
    if (w->f) fclose(w->f);
    if (w->tmp_path) remove(w->tmp_path);
    writer_free(w);
}

/* ---------------------------------------------------------------------------------------------- */
/* Packing                                                                                        */
/* ---------------------------------------------------------------------------------------------- */

void mpk_pack_str(msgpack_packer *pk, const char *s) {
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

void mpk_pack_key_int(msgpack_packer *pk, const char *key, int64_t v) {
    mpk_pack_str(pk, key);
    msgpack_pack_int64(pk, v);
}

void mpk_pack_key_uint(msgpack_packer *pk, const char *key, uint64_t v) {
    mpk_pack_str(pk, key);
    msgpack_pack_uint64(pk, v);
}

void mpk_pack_key_double(msgpack_packer *pk, const char *key, double v) {
    mpk_pack_str(pk, key);
    msgpack_pack_double(pk, v);
}

void mpk_pack_key_bool(msgpack_packer *pk, const char *key, int v) {
    mpk_pack_str(pk, key);
    if (v) msgpack_pack_true(pk);
    else msgpack_pack_false(pk);
}

void mpk_pack_key_str(msgpack_packer *pk, const char *key, const char *v) {
    mpk_pack_str(pk, key);
    mpk_pack_str(pk, v);
}

void mpk_pack_key_bin(msgpack_packer *pk, const char *key, const void *data, size_t n) {
    mpk_pack_str(pk, key);
    msgpack_pack_bin(pk, n);
    msgpack_pack_bin_body(pk, data, n);
}

/* ---------------------------------------------------------------------------------------------- */
/* CRC-32                                                                                         */
/* ---------------------------------------------------------------------------------------------- */

/* Table for the reflected polynomial 0xEDB88320, one entry per byte value. */
static const uint32_t crc_table[256] = {
    0x00000000, 0x77073096, 0xee0e612c, 0x990951ba, 0x076dc419, 0x706af48f,
    0xe963a535, 0x9e6495a3, 0x0edb8832, 0x79dcb8a4, 0xe0d5e91e, 0x97d2d988,
    0x09b64c2b, 0x7eb17cbd, 0xe7b82d07, 0x90bf1d91, 0x1db71064, 0x6ab020f2,
    0xf3b97148, 0x84be41de, 0x1adad47d, 0x6ddde4eb, 0xf4d4b551, 0x83d385c7,
    0x136c9856, 0x646ba8c0, 0xfd62f97a, 0x8a65c9ec, 0x14015c4f, 0x63066cd9,
    0xfa0f3d63, 0x8d080df5, 0x3b6e20c8, 0x4c69105e, 0xd56041e4, 0xa2677172,
    0x3c03e4d1, 0x4b04d447, 0xd20d85fd, 0xa50ab56b, 0x35b5a8fa, 0x42b2986c,
    0xdbbbc9d6, 0xacbcf940, 0x32d86ce3, 0x45df5c75, 0xdcd60dcf, 0xabd13d59,
    0x26d930ac, 0x51de003a, 0xc8d75180, 0xbfd06116, 0x21b4f4b5, 0x56b3c423,
    0xcfba9599, 0xb8bda50f, 0x2802b89e, 0x5f058808, 0xc60cd9b2, 0xb10be924,
    0x2f6f7c87, 0x58684c11, 0xc1611dab, 0xb6662d3d, 0x76dc4190, 0x01db7106,
    0x98d220bc, 0xefd5102a, 0x71b18589, 0x06b6b51f, 0x9fbfe4a5, 0xe8b8d433,
    0x7807c9a2, 0x0f00f934, 0x9609a88e, 0xe10e9818, 0x7f6a0dbb, 0x086d3d2d,
    0x91646c97, 0xe6635c01, 0x6b6b51f4, 0x1c6c6162, 0x856530d8, 0xf262004e,
    0x6c0695ed, 0x1b01a57b, 0x8208f4c1, 0xf50fc457, 0x65b0d9c6, 0x12b7e950,
    0x8bbeb8ea, 0xfcb9887c, 0x62dd1ddf, 0x15da2d49, 0x8cd37cf3, 0xfbd44c65,
    0x4db26158, 0x3ab551ce, 0xa3bc0074, 0xd4bb30e2, 0x4adfa541, 0x3dd895d7,
    0xa4d1c46d, 0xd3d6f4fb, 0x4369e96a, 0x346ed9fc, 0xad678846, 0xda60b8d0,
    0x44042d73, 0x33031de5, 0xaa0a4c5f, 0xdd0d7cc9, 0x5005713c, 0x270241aa,
    0xbe0b1010, 0xc90c2086, 0x5768b525, 0x206f85b3, 0xb966d409, 0xce61e49f,
    0x5edef90e, 0x29d9c998, 0xb0d09822, 0xc7d7a8b4, 0x59b33d17, 0x2eb40d81,
    0xb7bd5c3b, 0xc0ba6cad, 0xedb88320, 0x9abfb3b6, 0x03b6e20c, 0x74b1d29a,
    0xead54739, 0x9dd277af, 0x04db2615, 0x73dc1683, 0xe3630b12, 0x94643b84,
    0x0d6d6a3e, 0x7a6a5aa8, 0xe40ecf0b, 0x9309ff9d, 0x0a00ae27, 0x7d079eb1,
    0xf00f9344, 0x8708a3d2, 0x1e01f268, 0x6906c2fe, 0xf762575d, 0x806567cb,
    0x196c3671, 0x6e6b06e7, 0xfed41b76, 0x89d32be0, 0x10da7a5a, 0x67dd4acc,
    0xf9b9df6f, 0x8ebeeff9, 0x17b7be43, 0x60b08ed5, 0xd6d6a3e8, 0xa1d1937e,
    0x38d8c2c4, 0x4fdff252, 0xd1bb67f1, 0xa6bc5767, 0x3fb506dd, 0x48b2364b,
    0xd80d2bda, 0xaf0a1b4c, 0x36034af6, 0x41047a60, 0xdf60efc3, 0xa867df55,
    0x316e8eef, 0x4669be79, 0xcb61b38c, 0xbc66831a, 0x256fd2a0, 0x5268e236,
    0xcc0c7795, 0xbb0b4703, 0x220216b9, 0x5505262f, 0xc5ba3bbe, 0xb2bd0b28,
    0x2bb45a92, 0x5cb36a04, 0xc2d7ffa7, 0xb5d0cf31, 0x2cd99e8b, 0x5bdeae1d,
    0x9b64c2b0, 0xec63f226, 0x756aa39c, 0x026d930a, 0x9c0906a9, 0xeb0e363f,
    0x72076785, 0x05005713, 0x95bf4a82, 0xe2b87a14, 0x7bb12bae, 0x0cb61b38,
    0x92d28e9b, 0xe5d5be0d, 0x7cdcefb7, 0x0bdbdf21, 0x86d3d2d4, 0xf1d4e242,
    0x68ddb3f8, 0x1fda836e, 0x81be16cd, 0xf6b9265b, 0x6fb077e1, 0x18b74777,
    0x88085ae6, 0xff0f6a70, 0x66063bca, 0x11010b5c, 0x8f659eff, 0xf862ae69,
    0x616bffd3, 0x166ccf45, 0xa00ae278, 0xd70dd2ee, 0x4e048354, 0x3903b3c2,
    0xa7672661, 0xd06016f7, 0x4969474d, 0x3e6e77db, 0xaed16a4a, 0xd9d65adc,
    0x40df0b66, 0x37d83bf0, 0xa9bcae53, 0xdebb9ec5, 0x47b2cf7f, 0x30b5ffe9,
    0xbdbdf21c, 0xcabac28a, 0x53b39330, 0x24b4a3a6, 0xbad03605, 0xcdd70693,
    0x54de5729, 0x23d967bf, 0xb3667a2e, 0xc4614ab8, 0x5d681b02, 0x2a6f2b94,
    0xb40bbe37, 0xc30c8ea1, 0x5a05df1b, 0x2d02ef8d
};

/* Slicing by 8: eight tables let one step fold in 8 bytes, several times faster than a byte at a
 * time (checksums run over every tensor at every save and load). Table k maps a byte to its CRC
 * contribution k bytes further on; table 0 is crc_table. */
static uint32_t crc_slices[8][256];

static void crc_slices_init(void) {
    for (int b = 0; b < 256; b++) {
        uint32_t c = crc_table[b];
        crc_slices[0][b] = c;
        for (int k = 1; k < 8; k++) c = crc_table[c & 0xff] ^ (c >> 8), crc_slices[k][b] = c;
    }
}

uint32_t mpk_crc32(uint32_t crc, const void *data, size_t n) {
    static int ready = 0;
    if (!ready) crc_slices_init(), ready = 1;
    const uint8_t *p = (const uint8_t *)data;
    crc = ~crc;
    for (; n >= 8; n -= 8, p += 8) {
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
        crc = crc_slices[7][lo & 0xff] ^ crc_slices[6][(lo >> 8) & 0xff] ^ crc_slices[5][(lo >> 16) & 0xff] ^
              crc_slices[4][lo >> 24] ^ crc_slices[3][hi & 0xff] ^ crc_slices[2][(hi >> 8) & 0xff] ^
              crc_slices[1][(hi >> 16) & 0xff] ^ crc_slices[0][hi >> 24];
    }
    for (; n; n--, p++) crc = crc_table[(crc ^ *p) & 0xff] ^ (crc >> 8);
    return ~crc;
}
