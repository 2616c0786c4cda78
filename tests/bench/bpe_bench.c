/* mtp_bpe_bench: training time, compression and encode/decode speed of the byte-level BPE tokenizer.
 *
 * Usage: mtp_bpe_bench [--vocab N[,N...]] FILE...
 *   --vocab  tokenizer sizes N to try (default 1024,4096,16384)
 *
 * For each file (raw bytes, read whole) and each N: trains on the whole file (one thread; the
 * tokenizer is single-threaded), then encodes the whole file 5 times and reports the median speed,
 * the bytes per token, decode speed (median of 5) and whether decode(encode(file)) == file.
 * Output: a Markdown table on stdout; the exit status is 1 if any round trip failed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/ds.h"
#include "mtp/core/core.h"

#define REPEATS 5

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static uint8_t *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t *buf = NULL;
    size_t cap = 0, len = 0;
    for (;;) {
        if (len == cap) {
            size_t c = cap ? 2 * cap : (size_t)1 << 20;
            uint8_t *p = realloc(buf, c);
            if (!p) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = p;
            cap = c;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    *n = len;
    return buf;
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s && s[1] ? s + 1 : path;
}

int main(int argc, char **argv) {
    int sizes[16] = {1024, 4096, 16384}, n_sizes = 3, first_file = 1;
    if (argc > 2 && strcmp(argv[1], "--vocab") == 0) {
        n_sizes = 0;
        for (char *s = argv[2]; *s && n_sizes < 16;) {
            char *end;
            long v = strtol(s, &end, 10);
            if (end == s) break;
            sizes[n_sizes++] = (int)v;
            s = *end == ',' ? end + 1 : end;
        }
        first_file = 3;
    }
    if (first_file >= argc || n_sizes == 0) {
        fprintf(stderr, "usage: mtp_bpe_bench [--vocab N[,N...]] FILE...\n");
        return 2;
    }
    int failures = 0;
    printf("| file | bytes | N asked | N got | train s | bytes/token | encode MB/s | decode MB/s | round trip |\n");
    printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
    fflush(stdout);
    for (int f = first_file; f < argc; f++) {
        size_t n = 0;
        uint8_t *text = read_file(argv[f], &n);
        if (!text) {
            fprintf(stderr, "mtp_bpe_bench: cannot read %s\n", argv[f]);
            failures++;
            continue;
        }
        int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
        uint8_t *back = malloc(n ? n : 1);
        if (!ids || !back) {
            fprintf(stderr, "mtp_bpe_bench: out of memory for %s\n", argv[f]);
            return 1;
        }
        for (int v = 0; v < n_sizes; v++) {
            DsBpe *t = NULL;
            char err[256];
            double t0 = mtp_now();
            if (ds_bpe_train(&t, text, n, sizes[v], err, sizeof err)) {
                fprintf(stderr, "mtp_bpe_bench: %s: %s\n", argv[f], err);
                failures++;
                continue;
            }
            double train_s = mtp_now() - t0;
            double enc[REPEATS], dec[REPEATS];
            size_t k = 0, back_n = 0;
            for (int r = 0; r < REPEATS; r++) {
                double a = mtp_now();
                k = ds_bpe_encode(t, ids, text, n);
                enc[r] = mtp_now() - a;
            }
            for (int r = 0; r < REPEATS; r++) {
                double a = mtp_now();
                back_n = ds_bpe_decode(t, back, n, ids, k);
                dec[r] = mtp_now() - a;
            }
            qsort(enc, REPEATS, sizeof *enc, cmp_double);
            qsort(dec, REPEATS, sizeof *dec, cmp_double);
            int ok = back_n == n && memcmp(back, text, n) == 0;
            failures += !ok;
            double mb = (double)n / 1e6;
            printf("| %s | %zu | %d | %d | %.2f | %.3f | %.1f | %.1f | %s |\n", base_name(argv[f]), n, sizes[v],
                   256 + ds_bpe_n_merges(t), train_s, k ? (double)n / (double)k : 0.0, mb / enc[REPEATS / 2],
                   mb / dec[REPEATS / 2], ok ? "ok" : "FAILED");
            fflush(stdout);
            ds_bpe_free(t);
        }
        free(ids);
        free(back);
        free(text);
    }
    return failures ? 1 : 0;
}
