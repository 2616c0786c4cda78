/* ds.c - the byte tokenizer, and training/evaluation batches over token arrays. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* open flags, ssize_t, fstat under -std=c11 */
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/ds.h"
#include "mtp/core/core.h"

size_t ds_encode_bytes(int32_t *out, const uint8_t *bytes, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = bytes[i];
    return n;
}

size_t ds_decode_bytes(uint8_t *out, const int32_t *ids, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < 256) out[k++] = (uint8_t)ids[i];
    return k;
}

/* ---- batches ---- */

void ds_sample_batch(int32_t *out, const int32_t *tok, size_t n, int B, int T1, MtpRng *rng) {
    if (B <= 0 || T1 <= 0) return;
    for (int b = 0; b < B; b++) {
        int32_t *row = out + (size_t)b * (size_t)T1;
        if (n < (size_t)T1) {
            /* cannot happen after ds_load with min_tokens >= T1; stay safe rather than read past the end */
            for (int t = 0; t < T1; t++) row[t] = (size_t)t < n ? tok[t] : DS_PAD;
            continue;
        }
        size_t off = (size_t)mtp_rng_below(rng, (uint64_t)(n - (size_t)T1) + 1);
        memcpy(row, tok + off, (size_t)T1 * sizeof *row);
    }
}

size_t ds_eval_windows(size_t n, int T1) {
    if (T1 < 2 || n < 2) return 0;
    size_t stride = (size_t)T1 - 1;
    return (n - 1 + stride - 1) / stride;
}

int ds_eval_batch(int32_t *out, const int32_t *tok, size_t n, int B, int T1, size_t index) {
    if (B < 1 || T1 < 2) return 0;
    size_t windows = ds_eval_windows(n, T1), stride = (size_t)T1 - 1;
    int filled = 0;
    for (int b = 0; b < B; b++) {
        int32_t *row = out + (size_t)b * (size_t)T1;
        /* index*B+b could overflow for an absurd index: compare by division first */
        size_t w = 0;
        int ok = index <= windows / (size_t)B;
        if (ok) {
            w = index * (size_t)B + (size_t)b;
            ok = w < windows;
        }
        if (!ok) {
            for (int t = 0; t < T1; t++) row[t] = DS_PAD;
            continue;
        }
        size_t start = w * stride;
        for (int t = 0; t < T1; t++) row[t] = start + (size_t)t < n ? tok[start + (size_t)t] : DS_PAD;
        filled++;
    }
    return filled;
}
