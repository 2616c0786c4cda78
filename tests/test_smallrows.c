/* test_smallrows.c - the small-row kernel (smallrows.c) against naive loops and oneDNN.
 *
 * For every kernel this CPU runs (avx2, avx512, and avx512-dot in bf16), at random shapes whose
 * dimensions are mostly not multiples of 16 or 32, at every row count 1..16, plain and
 * accumulating, in fp32 and bf16:
 *   - the product equals naive double-precision loops over the same (rounded, in bf16) operands,
 *     within fp32 accumulation error;
 *   - it equals oneDNN's product over the same packed matrix, which oneDNN reads in the same
 *     layout;
 *   - a row's result is bit for bit the same whatever the number of rows in the product (the
 *     engine's output at any lookahead rests on it), and whether or not the product is split
 *     over threads;
 *   - an output written is exactly C or C + the product: columns past N and rows past M untouched. */
#include <stdlib.h>
#include <string.h>

#include "mtp/core/core.h"
#include "tests/test.h"

enum { MAXR = MTP_SMALL_ROWS_MAX };

static void fill(float *x, size_t n, MtpRng *r) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(mtp_rng_uniform(r) * 2 - 1);
}

static float rounded(float x, MtpPrecision p) { return p == MTP_BF16 ? mtp_bf16_to_f32(mtp_f32_to_bf16(x)) : x; }

/* ref (MAXR, N) = A W^T in double over the operands as the precision rounds them; mag: sums of
 * |a w|, what the fp32 error of a sum scales with. */
static void naive(double *ref, double *mag, const float *A, const float *W, int N, int K, MtpPrecision p) {
    for (int i = 0; i < MAXR; i++)
        for (int j = 0; j < N; j++) {
            double s = 0, m = 0;
            for (int k = 0; k < K; k++) {
                const double t = (double)rounded(A[(size_t)i * K + k], p) * rounded(W[(size_t)j * K + k], p);
                s += t, m += fabs(t);
            }
            ref[(size_t)i * N + j] = s, mag[(size_t)i * N + j] = m;
        }
}

/* One shape under kernel k: every row count, plain and accumulating. */
static void check_shape(MtpSmallKernel k, MtpPrecision p, int N, int K, MtpRng *r) {
    const char *name = mtp_small_kernel_name(k);
    float *W = malloc((size_t)N * K * 4), *A = malloc((size_t)MAXR * K * 4);
    float *C0 = malloc((size_t)(MAXR + 1) * N * 4), *C = malloc((size_t)(MAXR + 1) * N * 4);
    float *all = malloc((size_t)MAXR * N * 4), *onednn = malloc((size_t)MAXR * N * 4);
    double *ref = malloc((size_t)MAXR * N * 8), *mag = malloc((size_t)MAXR * N * 8);
    fill(W, (size_t)N * K, r), fill(A, (size_t)MAXR * K, r), fill(C0, (size_t)(MAXR + 1) * N, r);
    naive(ref, mag, A, W, N, K, p);
    CHECK(mtp_small_kernel_use(p, k) == 0);
    MtpPackedWeight *pw = mtp_pack_weight_at(NULL, W, N, K, p); /* laid out for the kernel */
    mtp_matmul_packed(all, A, MAXR, pw, 0);
    /* oneDNN over the same packed matrix */
    CHECK(mtp_small_kernel_use(p, MTP_SMALL_ONEDNN) == 0);
    mtp_matmul_packed(onednn, A, MAXR, pw, 0);
    CHECK(mtp_small_kernel_use(p, k) == 0);
    double worst_ref = 0, worst_onednn = 0;
    int moved = 0, not_same = 0;
    for (int M = 1; M <= MAXR; M++)
        for (int acc = 0; acc < 2; acc++) {
            memcpy(C, C0, (size_t)(MAXR + 1) * N * 4);
            mtp_matmul_packed(C, A, M, pw, acc);
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    const size_t at = (size_t)i * N + j;
                    /* accumulating adds one more rounding, of the old value's size */
                    const double want = acc ? C0[at] + ref[at] : ref[at], scale = mag[at] + (acc ? fabs(C0[at]) : 0);
                    worst_ref = fmax(worst_ref, fabs(C[at] - want) / (scale + 1e-30));
                    worst_onednn = fmax(worst_onednn, fabs((double)all[at] - onednn[at]) / (mag[at] + 1e-30));
                    /* the row as the 16-row product computed it, bit for bit */
                    not_same += acc ? C[at] != C0[at] + all[at] : memcmp(&C[at], &all[at], 4) != 0;
                }
            for (size_t at = (size_t)M * N; at < (size_t)(MAXR + 1) * N; at++) moved += C[at] != C0[at];
        }
    /* fp32 sums of K terms: a few ulp of the sum of magnitudes (2^-24 each); bf16 products of
     * rounded operands are exact in fp32, so the same bound holds */
    const double tol = 4.0 * (K + 1) * 0x1p-24;
    CHECK_MSG(worst_ref < tol, "%s %s N %d K %d: off the naive loops by %.3g of the magnitude (tolerance %.3g)",
              name, mtp_precision_name(p), N, K, worst_ref, tol);
    CHECK_MSG(worst_onednn < tol, "%s %s N %d K %d: off oneDNN by %.3g of the magnitude", name, mtp_precision_name(p),
              N, K, worst_onednn);
    CHECK_MSG(not_same == 0, "%s %s N %d K %d: %d outputs depend on the number of rows", name,
              mtp_precision_name(p), N, K, not_same);
    CHECK_MSG(moved == 0, "%s %s N %d K %d: %d values written outside the product", name, mtp_precision_name(p), N,
              K, moved);
    /* split over the threads by output columns: the same bits */
    mtp_small_parallel_bytes(0);
    mtp_matmul_packed(C, A, MAXR, pw, 0);
    mtp_small_parallel_bytes((size_t)256 << 10);
    CHECK_MSG(memcmp(C, all, (size_t)MAXR * N * 4) == 0, "%s %s N %d K %d: threads change the result", name,
              mtp_precision_name(p), N, K);
    mtp_packed_weight_free(pw);
    free(W), free(A), free(C0), free(C), free(all), free(onednn), free(ref), free(mag);
}

int main(void) {
    char err[256];
    CHECK(mtp_core_init(2, MTP_FP32, err, sizeof err) == 0);
    MtpRng r;
    mtp_rng_seed(&r, 11);
    /* fixed corners (one column, one input, exact multiples; 130 columns: blocks enough for a
     * split over the 2 threads), then random shapes */
    int shapes[13][2] = {{1, 1}, {16, 32}, {17, 33}, {70, 47}, {48, 1024}, {33, 2}, {130, 70}};
    for (int s = 7; s < 13; s++)
        shapes[s][0] = 1 + (int)mtp_rng_below(&r, 150), shapes[s][1] = 1 + (int)mtp_rng_below(&r, 300);
    int kernels = 0;
    for (int p = 0; p < 2; p++) {
        const MtpPrecision prec = p ? MTP_BF16 : MTP_FP32;
        const MtpSmallKernel chosen = mtp_small_kernel(prec);
        for (MtpSmallKernel k = MTP_SMALL_AVX2; k <= MTP_SMALL_AVX512_DOT; k++) {
            if (k == MTP_SMALL_AVX512_DOT && prec == MTP_FP32) continue; /* a bf16 kernel */
            if (mtp_small_kernel_use(prec, k) != 0) {
                printf("# %s %s: not run by this CPU, skipped\n", mtp_small_kernel_name(k), mtp_precision_name(prec));
                continue;
            }
            kernels++;
            mtp_core_set_precision(prec);
            for (int s = 0; s < 13; s++) check_shape(k, prec, shapes[s][0], shapes[s][1], &r);
        }
        CHECK(mtp_small_kernel_use(prec, chosen) == 0);
    }
    if (kernels == 0) printf("# no small-row kernel runs on this CPU: oneDNN serves every product\n");
    mtp_core_shutdown();
    TEST_DONE();
}
