/* records.c - JSONL corpora: a file read line by line, each line one record rendered to text.
 *
 * The file is streamed through one buffer (1 MiB, grown only while a single line does not fit,
 * up to the line limit), so memory follows the longest line, never the file. Lines are handed to
 * ds_json_strings (json.c) where they lie in the buffer: no copy of the line is made, and a
 * text-field record points straight at the parser's output. A line over the limit is never held
 * whole: once the limit is passed its remaining bytes are read and dropped up to the newline.
 *
 * The limit is DS_JSONL_MAX_LINE bytes before the "\n" (a CRLF line's "\r" included); the
 * environment variable MTP_JSONL_MAX_LINE, read at open, can only lower it (tests use it to check
 * the over-long path without 256 MiB lines).
 *
 * After a bad line is reported the next call goes on with the line after it, so a caller can
 * report and continue; a read error or running out of memory is final: every later call repeats
 * it. A field name set to NULL in the options leaves that kind of record out. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* O_CLOEXEC, posix_fadvise, ssize_t under -std=c11 */
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/ds.h"

#define BUF_BASE ((size_t)1 << 20)   /* the read buffer's usual size */
#define FILL_MIN ((size_t)64 << 10)  /* a read gets at least this much room, or the buffer grows */

enum { ROLE_Q, ROLE_A, ROLE_T, N_ROLES };

struct DsJsonl {
    char *path;
    char *field[N_ROLES];         /* copies of the option's field names; NULL = not used */
    const char *keys[N_ROLES];    /* the distinct names, asked of the parser */
    int n_keys, key_of[N_ROLES];  /* role -> index in keys, -1 when unused */
    int skip_bad;
    size_t max_line;
    int fd;
    char *buf;                    /* buf[beg..end) is read but not yet consumed */
    size_t cap, beg, end;
    size_t scanned;               /* bytes from beg already known to hold no newline */
    int eof;                      /* read() has returned 0 */
    int discarding;               /* inside an over-long line: drop bytes through its newline */
    char fatal[320];              /* a read error or out of memory: every later call repeats it */
    long lines, skipped;
    DsJsonOut out;
    char *text;                   /* rendered question/answer records */
    size_t text_cap;
};

void ds_jsonl_options_init(DsJsonlOptions *o) {
    memset(o, 0, sizeof *o);
    o->question = "question";
    o->answer = "answer";
    o->text = "text";
}

/* Opens path read-only and makes sure it is a regular file. O_NONBLOCK keeps the open of a FIFO
   from waiting for a writer; it is cleared again since it means nothing for regular files. */
static int open_regular(const char *path, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno)), -1;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        close(fd);
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    return fd;
}

/* read(2) that retries on EINTR: bytes read, 0 at the end, -1 with errno. */
static ssize_t read_some(int fd, char *dst, size_t n) {
    for (;;) {
        ssize_t r = read(fd, dst, n);
        if (r >= 0 || errno != EINTR) return r;
    }
}

/* MTP_JSONL_MAX_LINE, when it is a number from 1 to DS_JSONL_MAX_LINE; else the limit itself. */
static size_t line_limit(void) {
    const char *s = getenv("MTP_JSONL_MAX_LINE");
    if (!s || !*s) return DS_JSONL_MAX_LINE;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < 1 || v > DS_JSONL_MAX_LINE || s[0] == '-') return DS_JSONL_MAX_LINE;
    return (size_t)v;
}

/* Asks the parser for each distinct field name once: two roles may share a name. */
static void setup_keys(DsJsonl *j) {
    j->n_keys = 0;
    for (int r = 0; r < N_ROLES; r++) {
        j->key_of[r] = -1;
        if (!j->field[r]) continue;
        for (int k = 0; k < j->n_keys; k++)
            if (strcmp(j->keys[k], j->field[r]) == 0) j->key_of[r] = k;
        if (j->key_of[r] < 0) j->keys[j->n_keys] = j->field[r], j->key_of[r] = j->n_keys++;
    }
}

int ds_jsonl_open(DsJsonl **out, const char *path, const DsJsonlOptions *o, char *err, size_t errlen) {
    *out = NULL;
    if (!path || !*path) return snprintf(err, errlen, "no JSONL path given"), -1;
    DsJsonlOptions def;
    if (!o) ds_jsonl_options_init(&def), o = &def;
    DsJsonl *j = calloc(1, sizeof *j);
    if (!j) return snprintf(err, errlen, "%s: out of memory", path), -1;
    j->fd = -1;
    const char *names[N_ROLES] = {o->question, o->answer, o->text};
    int oom = !(j->path = strdup(path));
    for (int r = 0; r < N_ROLES; r++)
        if (names[r] && !(j->field[r] = strdup(names[r]))) oom = 1;
    j->cap = BUF_BASE;
    if (!oom && !(j->buf = malloc(j->cap))) oom = 1;
    if (oom) {
        ds_jsonl_close(j);
        return snprintf(err, errlen, "%s: out of memory", path), -1;
    }
    setup_keys(j);
    j->skip_bad = o->skip_bad_lines != 0;
    j->max_line = line_limit();
    if ((j->fd = open_regular(path, err, errlen)) < 0) {
        ds_jsonl_close(j);
        return -1;
    }
    *out = j;
    return 0;
}

void ds_jsonl_close(DsJsonl *j) {
    if (!j) return;
    if (j->fd >= 0) close(j->fd);
    free(j->path);
    for (int r = 0; r < N_ROLES; r++) free(j->field[r]);
    free(j->buf);
    free(j->text);
    ds_json_out_free(&j->out);
    free(j);
}

long ds_jsonl_skipped(const DsJsonl *j) { return j->skipped; }
long ds_jsonl_lines(const DsJsonl *j) { return j->lines; }

/* Records a fatal error: this call and every later one report it. */
static int fatal(DsJsonl *j, const char *what, int errnum) {
    if (errnum) snprintf(j->fatal, sizeof j->fatal, "%s: %s: %s", j->path, what, strerror(errnum));
    else snprintf(j->fatal, sizeof j->fatal, "%s: %s", j->path, what);
    return -1;
}

/* Reads more bytes after buf[end], first moving the unconsumed bytes to the front and growing
   the buffer when little room is left (never past what one line of max_line bytes and its
   newline need). Returns the bytes read, 0 at the end of the file, -1 on an error. */
static ssize_t fill(DsJsonl *j) {
    if (j->beg > 0) {
        memmove(j->buf, j->buf + j->beg, j->end - j->beg);
        j->end -= j->beg, j->beg = 0;
    }
    size_t limit = j->max_line + 1 > BUF_BASE ? j->max_line + 1 : BUF_BASE;
    if (j->cap - j->end < FILL_MIN && j->cap < limit) {
        size_t cap = j->cap * 2 < limit ? j->cap * 2 : limit;
        char *b = realloc(j->buf, cap);
        if (!b) return fatal(j, "out of memory", 0);
        j->buf = b, j->cap = cap;
    }
    ssize_t r = read_some(j->fd, j->buf + j->end, j->cap - j->end);
    if (r < 0) return fatal(j, "read error", errno);
    j->end += (size_t)r;
    if (r == 0) j->eof = 1;
    return r;
}

/* Drops the rest of an over-long line, through its newline; the buffer, grown for the line,
   goes back to its usual size. 0, or -1 on a read error. */
static int discard_rest(DsJsonl *j) {
    for (;;) {
        char *nl = memchr(j->buf + j->beg, '\n', j->end - j->beg);
        if (nl) {
            j->beg = (size_t)(nl - j->buf) + 1;
            j->discarding = 0;
            return 0;
        }
        j->beg = j->end = 0;
        if (j->cap > BUF_BASE) {
            char *b = realloc(j->buf, BUF_BASE);
            if (b) j->buf = b, j->cap = BUF_BASE;
        }
        if (j->eof) return j->discarding = 0, 0;
        if (fill(j) < 0) return -1;
    }
}

/* The next line, without its "\n", in *s / *n (pointing into the buffer, valid until the next
   call): 1, or 0 at the end of the file, -1 on a fatal error, -2 when the line is longer than
   max_line (counted; its bytes are dropped on the next call). */
static int next_line(DsJsonl *j, const char **s, size_t *n) {
    if (j->discarding && discard_rest(j) < 0) return -1;
    for (;;) {
        size_t have = j->end - j->beg;
        size_t look = have < j->max_line + 1 ? have : j->max_line + 1; /* a newline past this is too late */
        char *nl = memchr(j->buf + j->beg + j->scanned, '\n', look - j->scanned);
        if (nl) {
            *s = j->buf + j->beg;
            *n = (size_t)(nl - *s);
            j->beg += *n + 1, j->scanned = 0, j->lines++;
            return 1;
        }
        j->scanned = look;
        if (have > j->max_line) {
            j->beg += j->max_line + 1, j->scanned = 0, j->lines++;
            j->discarding = 1;
            return -2;
        }
        if (j->eof) {
            if (have == 0) return 0;
            *s = j->buf + j->beg, *n = have;
            j->beg = j->end, j->scanned = 0, j->lines++;
            return 1;
        }
        if (fill(j) < 0) return -1;
    }
}

static int blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return 0;
    return 1;
}

/* A field's value: its bytes, or NULL when the role is unused, the key absent or null. */
static const char *field(const DsJsonl *j, int role, size_t *n) {
    int k = j->key_of[role];
    if (k < 0 || j->out.off[k] < 0) return NULL;
    *n = j->out.n[k];
    return j->out.data + j->out.off[k];
}

/* Why a line holds no record, naming the fields asked for. */
static void no_fields(const DsJsonl *j, char *msg, size_t cap) {
    const char *q = j->field[ROLE_Q], *a = j->field[ROLE_A], *t = j->field[ROLE_T];
    if (q && a && t) snprintf(msg, cap, "no \"%s\"/\"%s\" pair and no \"%s\" field", q, a, t);
    else if (q && a) snprintf(msg, cap, "no \"%s\"/\"%s\" pair", q, a);
    else if (t) snprintf(msg, cap, "no \"%s\" field", t);
    else snprintf(msg, cap, "no record fields are configured");
}

/* Renders line s (n bytes) into rec: 0, -1 for a bad line (why in msg), -2 out of memory. */
static int render(DsJsonl *j, const char *s, size_t n, DsRecord *rec, char *msg, size_t cap) {
    if (ds_json_strings(s, n, j->keys, j->n_keys, &j->out, msg, cap) != 0) return -1;
    size_t qn = 0, an = 0, tn = 0;
    const char *q = field(j, ROLE_Q, &qn), *a = field(j, ROLE_A, &an), *t = field(j, ROLE_T, &tn);
    if (q && a) {
        int nl = !(an > 0 && a[an - 1] == '\n');
        size_t len = qn + 1 + an + (size_t)nl; /* both within one line, so no overflow */
        if (len + 1 > j->text_cap) {
            char *b = realloc(j->text, len + 1);
            if (!b) return -2;
            j->text = b, j->text_cap = len + 1;
        }
        memcpy(j->text, q, qn);
        j->text[qn] = '\n';
        memcpy(j->text + qn + 1, a, an);
        if (nl) j->text[len - 1] = '\n';
        j->text[len] = 0;
        rec->text = j->text, rec->len = len, rec->prompt_len = qn + 1;
        return 0;
    }
    if (t) {
        const char *nl = memchr(t, '\n', tn);
        rec->text = t, rec->len = tn, rec->prompt_len = nl ? (size_t)(nl - t) + 1 : tn;
        return 0;
    }
    no_fields(j, msg, cap);
    return -1;
}

int ds_jsonl_next(DsJsonl *j, DsRecord *rec, char *err, size_t errlen) {
    for (;;) {
        if (j->fatal[0]) return snprintf(err, errlen, "%s", j->fatal), -1;
        const char *s = NULL;
        size_t n = 0;
        int r = next_line(j, &s, &n);
        if (r == 0) return 0;
        if (r == -1) continue; /* reported above */
        char msg[256];
        if (r == -2) {
            snprintf(msg, sizeof msg, "line longer than %zu bytes", j->max_line);
        } else {
            if (n > 0 && s[n - 1] == '\r') n--;
            if (blank(s, n)) continue;
            int rc = render(j, s, n, rec, msg, sizeof msg);
            if (rc == -2) {
                fatal(j, "out of memory", 0);
                continue;
            }
            if (rc == 0) {
                rec->line = j->lines;
                return 1;
            }
        }
        if (j->skip_bad) {
            j->skipped++;
            continue;
        }
        return snprintf(err, errlen, "%s:%ld: %s", j->path, j->lines, msg), -1;
    }
}

long ds_count_lines(const char *path, char *err, size_t errlen) {
    if (!path || !*path) return snprintf(err, errlen, "no path given"), -1;
    char *buf = malloc(BUF_BASE);
    if (!buf) return snprintf(err, errlen, "%s: out of memory", path), -1;
    int fd = open_regular(path, err, errlen);
    if (fd < 0) return free(buf), -1;
    long lines = 0;
    char last = '\n'; /* an empty file has no unfinished line */
    for (;;) {
        ssize_t r = read_some(fd, buf, BUF_BASE);
        if (r < 0) {
            snprintf(err, errlen, "%s: read error: %s", path, strerror(errno));
            lines = -1;
            break;
        }
        if (r == 0) {
            if (last != '\n') lines++;
            break;
        }
        for (const char *p = buf, *e = buf + r; (p = memchr(p, '\n', (size_t)(e - p))) != NULL; p++) lines++;
        last = buf[r - 1];
    }
    close(fd);
    free(buf);
    return lines;
}
