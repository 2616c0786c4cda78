/* fuzz.h - what the libFuzzer targets of tests/fuzz/ share: the input as a file that the real
 * loaders open by path, a round-trip check of a tokenizer, and silencing the messages a command-line
 * helper prints on stderr. Header-only: each target is one C file that includes it. */
#ifndef MTP_FUZZ_FUZZ_H
#define MTP_FUZZ_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mtp/mtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A fuzzer's own failure (a broken contract, not a crash the sanitizers see): a message, then
   abort, which libFuzzer records as a crash with the input. */
#define FUZZ_CHECK(cond, ...)                                                                   \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            fprintf(stderr, "fuzz check failed: %s (%s:%d): ", #cond, __FILE__, __LINE__);     \
            fprintf(stderr, __VA_ARGS__);                                                       \
            fputc('\n', stderr);                                                                \
            abort();                                                                            \
        }                                                                                       \
    } while (0)

/* The input as a file: one memfd per process, rewritten for every input, opened by the loaders
   through its /proc/self/fd path (a regular file: open, fstat, mmap and fopen work as on disk,
   without touching the disk). */
static inline const char *fuzz_file(const uint8_t *data, size_t size) {
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("mtp-fuzz-input", MFD_CLOEXEC);
        FUZZ_CHECK(fd >= 0, "memfd_create failed");
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    FUZZ_CHECK(ftruncate(fd, 0) == 0, "ftruncate failed");
    for (size_t done = 0; done < size;) {
        ssize_t w = pwrite(fd, data + done, size - done, (off_t)done);
        FUZZ_CHECK(w > 0, "pwrite failed");
        done += (size_t)w;
    }
    return path;
}

/* With MTP_FUZZ_VERBOSE set in the environment, a target says what became of each input (the
   loader's message, or that it loaded): for looking at one input by hand, never while fuzzing. */
static inline void fuzz_note(const char *what) {
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("MTP_FUZZ_VERBOSE") != NULL;
    if (verbose) fprintf(stderr, "fuzz: %s\n", what);
}

/* The loaders' contract (ds.h, mtp.h): an error is -1 with a one-line message. */
static inline void fuzz_check_message(const char *err) {
    fuzz_note(err);
    FUZZ_CHECK(err[0] != 0, "an error without a message");
    FUZZ_CHECK(strchr(err, '\n') == NULL, "a message of more than one line: %s", err);
}

/* decode(encode(b)) == b for any bytes, under the tokenizer t (NULL: bytes), and every id encode
   writes is inside the tokenizer's vocabulary. */
static inline void fuzz_roundtrip(const DsBpe *t, const uint8_t *bytes, size_t n) {
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    uint8_t *back = malloc(n ? n : 1);
    FUZZ_CHECK(ids && back, "out of memory");
    size_t k = mtp_encode(t, ids, bytes, n);
    FUZZ_CHECK(k <= n, "encode wrote %zu ids for %zu bytes", k, n);
    const int vocab = mtp_tokenizer_vocab(t);
    for (size_t i = 0; i < k; i++)
        FUZZ_CHECK(ids[i] >= 0 && ids[i] < vocab && ids[i] != DS_BOS && ids[i] != DS_EOS && ids[i] != DS_PAD,
                   "encode wrote id %d (vocab %d)", ids[i], vocab);
    size_t m = mtp_decode(t, back, n, ids, k);
    FUZZ_CHECK(m == n && memcmp(back, bytes, n) == 0, "decode(encode(x)) != x (%zu bytes back of %zu)", m, n);
    free(ids);
    free(back);
}

/* Messages a command-line helper writes with fprintf(stderr, ...) go to /dev/null between these
   two calls: libFuzzer keeps its own copy of the stream it prints to, and the sanitizers write to
   file descriptor 2, so their reports still show. */
static FILE *fuzz_saved_stderr;
static inline void fuzz_quiet_begin(void) {
    static FILE *devnull;
    if (!devnull) devnull = fopen("/dev/null", "w");
    FUZZ_CHECK(devnull != NULL, "cannot open /dev/null");
    fuzz_saved_stderr = stderr;
    stderr = devnull;
}
static inline void fuzz_quiet_end(void) { stderr = fuzz_saved_stderr; }

#endif
