/* measure.c - what `mtp bench --passes` measures a decoding pass against: the split of its time
 * (products, attention), the machine's read bandwidth over the pass's own buffers, and oneDNN's
 * product peak. Timing is off unless a benchmark turns it on: the hot paths then pay one test of a
 * flag per call. */
#include <stdint.h>
#include <string.h>

#include "mtp/core/core.h"

static struct {
    int on;
    double total[MTP_TIME_PARTS];
} g_timing;

void mtp_timing(int on) {
    g_timing.on = on;
    memset(g_timing.total, 0, sizeof g_timing.total);
}

double mtp_timing_start(void) { return g_timing.on ? mtp_now() : 0.0; }

void mtp_timing_stop(MtpTimePart part, double t0) {
    if (g_timing.on) g_timing.total[part] += mtp_now() - t0;
}

double mtp_timing_total(MtpTimePart part) { return g_timing.total[part]; }

/* 64 bytes: a cache line, one zmm register with AVX-512 */
typedef uint64_t Line __attribute__((vector_size(64), aligned(1)));
static volatile uint64_t g_read_sink;

void mtp_read_bytes(const void *p, size_t n) {
    /* four independent sums keep several loads in flight, as a streaming product does */
    const char *c = p;
    Line a = {0}, b = {0}, d = {0}, e = {0};
    size_t i = 0;
    for (; i + 256 <= n; i += 256) {
        a ^= *(const Line *)(c + i);
        b ^= *(const Line *)(c + i + 64);
        d ^= *(const Line *)(c + i + 128);
        e ^= *(const Line *)(c + i + 192);
    }
    uint64_t s = 0;
    for (; i < n; i++) s ^= (uint8_t)c[i];
    a ^= b ^ d ^ e;
    for (int k = 0; k < 8; k++) s ^= a[k];
    g_read_sink ^= s;
}

double mtp_matmul_gflops(int M, int N, int K, double seconds) {
    float *A = mtp_calloc((size_t)M * K, sizeof(float)), *B = mtp_calloc((size_t)K * N, sizeof(float));
    float *C = mtp_calloc((size_t)M * N, sizeof(float));
    double best = 0;
    if (A && B && C) {
        for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (float)(i % 7) * 0.25f - 0.75f;
        for (size_t i = 0; i < (size_t)K * N; i++) B[i] = (float)(i % 5) * 0.25f - 0.5f;
        mtp_matmul(C, A, B, M, N, K, 0, 0, 0); /* creates the primitive, touches the memory */
        double t = mtp_now();
        mtp_matmul(C, A, B, M, N, K, 0, 0, 0);
        const double one = mtp_now() - t, flop = 2.0 * M * N * K;
        const int repeats = 5, iters = one * repeats < seconds ? (int)(seconds / repeats / one) : 1;
        for (int r = 0; r < repeats; r++) {
            t = mtp_now();
            for (int i = 0; i < iters; i++) mtp_matmul(C, A, B, M, N, K, 0, 0, 0);
            const double g = flop * iters / (mtp_now() - t) / 1e9;
            best = g > best ? g : best;
        }
    }
    mtp_free(A), mtp_free(B), mtp_free(C);
    return best;
}
