/* enospc.c - LD_PRELOAD fault injection for tests/crash/disk_full.sh: a disk that fills up.
 *
 *   cc -shared -fPIC -O2 -o enospc.so enospc.c -ldl
 *   ENOSPC_AFTER=4096 LD_PRELOAD=./enospc.so mtp train ...
 *
 * Files whose path contains ENOSPC_MATCH (default ".tmp.", the temp files of atomic writes) are
 * watched. Once ENOSPC_AFTER bytes in all (unset: no limit) were written to them, writes fail with
 * ENOSPC: the write that crosses the limit writes what still fits and returns that short count,
 * the next ones return -1 (fwrite: 0). ENOSPC_FSYNC=1 makes fsync/fdatasync of a watched file
 * fail with ENOSPC instead (NFS, thin provisioning and delayed allocation report a full disk there).
 * stdio's own flushes call glibc's internal write, which no preload can see, so fwrite is watched
 * where the program calls it: the bytes count when handed to fwrite. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#define MAX_FD 4096
static unsigned char watched[MAX_FD];
static long long budget = -1; /* bytes left before ENOSPC; -1: no limit */
static int fsync_fails, inited;

static void init(void) {
    if (inited) return;
    inited = 1;
    const char *a = getenv("ENOSPC_AFTER"), *f = getenv("ENOSPC_FSYNC");
    if (a && *a) budget = atoll(a);
    fsync_fails = f && *f == '1';
}

static const char *match(void) {
    const char *m = getenv("ENOSPC_MATCH");
    return m && *m ? m : ".tmp.";
}

static void watch(int fd, const char *path) {
    init();
    if (fd >= 0 && fd < MAX_FD) watched[fd] = path && strstr(path, match()) != NULL;
}

static int is_watched(int fd) { return fd >= 0 && fd < MAX_FD && watched[fd]; }

/* How many of n bytes may be written to fd: n, fewer (the disk fills up), or 0 (full). */
static size_t allowed(int fd, size_t n) {
    init();
    if (!is_watched(fd) || budget < 0) return n;
    size_t k = (long long)n <= budget ? n : (size_t)budget;
    budget -= (long long)k;
    return k;
}

#define REAL(ret, name, ...)                                                                         \
    static ret (*real)(__VA_ARGS__);                                                                 \
    if (!real) real = (ret(*)(__VA_ARGS__))dlsym(RTLD_NEXT, name)

int open(const char *path, int flags, ...) {
    REAL(int, "open", const char *, int, ...);
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    int fd = real(path, flags, mode);
    watch(fd, path);
    return fd;
}
int open64(const char *path, int flags, ...) {
    REAL(int, "open64", const char *, int, ...);
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    int fd = real(path, flags, mode);
    watch(fd, path);
    return fd;
}
FILE *fopen(const char *path, const char *how) {
    REAL(FILE *, "fopen", const char *, const char *);
    FILE *f = real(path, how);
    if (f) watch(fileno(f), path);
    return f;
}
FILE *fopen64(const char *path, const char *how) {
    REAL(FILE *, "fopen64", const char *, const char *);
    FILE *f = real(path, how);
    if (f) watch(fileno(f), path);
    return f;
}
int close(int fd) {
    REAL(int, "close", int);
    if (fd >= 0 && fd < MAX_FD) watched[fd] = 0;
    return real(fd);
}
int fclose(FILE *f) {
    REAL(int, "fclose", FILE *);
    int fd = fileno(f);
    if (fd >= 0 && fd < MAX_FD) watched[fd] = 0;
    return real(f);
}

ssize_t write(int fd, const void *buf, size_t n) {
    REAL(ssize_t, "write", int, const void *, size_t);
    size_t k = allowed(fd, n);
    if (n > 0 && k == 0) return errno = ENOSPC, -1;
    return real(fd, buf, k);
}
ssize_t pwrite(int fd, const void *buf, size_t n, off_t at) {
    REAL(ssize_t, "pwrite", int, const void *, size_t, off_t);
    size_t k = allowed(fd, n);
    if (n > 0 && k == 0) return errno = ENOSPC, -1;
    return real(fd, buf, k, at);
}
ssize_t pwrite64(int fd, const void *buf, size_t n, off_t at) {
    REAL(ssize_t, "pwrite64", int, const void *, size_t, off_t);
    size_t k = allowed(fd, n);
    if (n > 0 && k == 0) return errno = ENOSPC, -1;
    return real(fd, buf, k, at);
}
size_t fwrite(const void *buf, size_t size, size_t count, FILE *f) {
    REAL(size_t, "fwrite", const void *, size_t, size_t, FILE *);
    if (size == 0 || count == 0) return real(buf, size, count, f);
    size_t k = allowed(fileno(f), size * count) / size;
    size_t w = k ? real(buf, size, k, f) : 0;
    if (w < count) errno = ENOSPC;
    return w;
}
int fsync(int fd) {
    REAL(int, "fsync", int);
    init();
    if (fsync_fails && is_watched(fd)) return errno = ENOSPC, -1;
    return real(fd);
}
int fdatasync(int fd) {
    REAL(int, "fdatasync", int);
    init();
    if (fsync_fails && is_watched(fd)) return errno = ENOSPC, -1;
    return real(fd);
}
