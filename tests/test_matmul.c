/* test_matmul.c - oneDNN products against naive loops, every transpose/batch/accumulate form,
 * fp32 (tight) and bf16 (within bf16 rounding), and primitives created once per shape. */
#include <stdlib.h>
#include <string.h>

#include "mtp/core/core.h"
#include "tests/test.h"

/* C = op(A) op(B) (+ C) in double, A/B optionally rounded to bf16 first */
static void naive(double *C, const float *A, const float *B, int batch, int M, int N, int K, int ta, int tb,
                  int bf16) {
    for (int b = 0; b < batch; b++)
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                double s = 0;
                for (int k = 0; k < K; k++) {
                    float a = ta ? A[(size_t)b * M * K + (size_t)k * M + i] : A[(size_t)b * M * K + (size_t)i * K + k];
                    float w = tb ? B[(size_t)b * K * N + (size_t)j * K + k] : B[(size_t)b * K * N + (size_t)k * N + j];
                    if (bf16) a = mtp_bf16_to_f32(mtp_f32_to_bf16(a)), w = mtp_bf16_to_f32(mtp_f32_to_bf16(w));
                    s += (double)a * w;
                }
                C[((size_t)b * M + i) * N + j] += s;
            }
}

static void fill(float *x, size_t n, MtpRng *r) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(mtp_rng_uniform(r) * 2 - 1);
}

static void check_case(int batch, int M, int N, int K, int ta, int tb, int acc, MtpPrecision prec, MtpRng *r) {
    size_t na = (size_t)batch * M * K, nb = (size_t)batch * K * N, nc = (size_t)batch * M * N;
    float *A = malloc(na * 4), *B = malloc(nb * 4), *C = malloc(nc * 4);
    double *ref = calloc(nc, 8), *ref32 = calloc(nc, 8);
    fill(A, na, r), fill(B, nb, r), fill(C, nc, r);
    if (acc)
        for (size_t i = 0; i < nc; i++) ref[i] = ref32[i] = C[i];
    naive(ref, A, B, batch, M, N, K, ta, tb, prec == MTP_BF16 && batch == 1); /* batched: always fp32 */
    naive(ref32, A, B, batch, M, N, K, ta, tb, 0);
    mtp_core_set_precision(prec);
    if (batch == 1) mtp_matmul(C, A, B, M, N, K, ta, tb, acc);
    else { /* batched products (attention's) go through the strided form, here with dense strides, fp32 */
        MtpGemm g = {batch, M, N, K, ta, tb, acc, ta ? M : K, tb ? K : N, N, (long)M * K, (long)K * N, (long)M * N, 0};
        mtp_matmul_strided(C, A, B, &g);
    }
    double worst = 0, worst32 = 0;
    for (size_t i = 0; i < nc; i++) {
        /* fp32 accumulation of K products of magnitude <= 1: error grows like sqrt(K) * 2^-24 */
        double e = fabs(C[i] - ref[i]) / (1.0 + fabs(ref[i]));
        double e32 = fabs(C[i] - ref32[i]) / (1.0 + fabs(ref32[i]));
        if (e > worst) worst = e;
        if (e32 > worst32) worst32 = e32;
    }
    /* against the same (rounded) inputs both precisions are fp32-accurate. Against the fp32 inputs
     * each bf16 product is off by up to 2^-8 relative (2^-9 per operand); for K products of rms 1/3
     * with independent errors the sum is off by about sqrt(K) * 2^-8 / 3: allow 5 of those. */
    CHECK_MSG(worst < 1e-5 * sqrt(K), "batch %d M %d N %d K %d ta %d tb %d acc %d %s: err %g", batch, M, N, K, ta,
              tb, acc, mtp_precision_name(prec), worst);
    if (prec == MTP_BF16 && batch == 1)
        CHECK_MSG(worst32 < 5 * sqrt(K) * 0x1p-8 / 3, "bf16 vs fp32 inputs: err %g (M %d N %d K %d)", worst32, M, N, K);
    free(A), free(B), free(C), free(ref), free(ref32);
}

/* A product on sub-blocks of larger arrays equals the product of copied-out blocks. */
static void check_strided(MtpRng *r) {
    enum { BT = 3, T = 10, HD = 4 };
    float *q = malloc(BT * T * HD * 4), *k = malloc(BT * T * HD * 4), *s = calloc(BT * T * T, 4);
    fill(q, BT * T * HD, r), fill(k, BT * T * HD, r);
    int r0 = 4, rows = 3, keys = 7; /* rows 4..6 against keys 0..6 */
    MtpGemm g = {BT, rows, keys, HD, 0, 1, 0, HD, HD, T, (long)T * HD, (long)T * HD, (long)T * T, 0};
    mtp_matmul_strided(s + r0 * T, q + r0 * HD, k, &g);
    double worst = 0;
    for (int b = 0; b < BT; b++)
        for (int i = 0; i < T; i++)
            for (int j = 0; j < T; j++) {
                double ref = 0;
                int inside = i >= r0 && i < r0 + rows && j < keys;
                for (int d = 0; inside && d < HD; d++) ref += (double)q[(b * T + i) * HD + d] * k[(b * T + j) * HD + d];
                worst = fmax(worst, fabs(s[(b * T + i) * T + j] - ref)); /* outside the block: untouched zeros */
            }
    CHECK_MSG(worst < 1e-5, "strided block product: err %g", worst);
    free(q), free(k), free(s);
}

/* mtp_linear_backward equals its two products done one by one. */
static void check_linear_backward(MtpPrecision prec, MtpRng *r) {
    enum { M = 37, IN = 24, OUT = 19 };
    mtp_core_set_precision(prec);
    float *dy = malloc(M * OUT * 4), *x = malloc(M * IN * 4), *W = malloc(OUT * IN * 4);
    float *dx1 = malloc(M * IN * 4), *dx2 = malloc(M * IN * 4), *dW1 = malloc(OUT * IN * 4), *dW2 = malloc(OUT * IN * 4);
    fill(dy, M * OUT, r), fill(x, M * IN, r), fill(W, OUT * IN, r), fill(dW1, OUT * IN, r), fill(dx1, M * IN, r);
    memcpy(dW2, dW1, OUT * IN * 4), memcpy(dx2, dx1, M * IN * 4);
    for (int acc = 0; acc < 2; acc++) {
        mtp_linear_backward(dx1, dW1, dy, x, W, M, IN, OUT, acc);
        mtp_matmul(dx2, dy, W, M, IN, OUT, 0, 0, acc);
        mtp_matmul(dW2, dy, x, OUT, IN, M, 1, 0, 1);
        CHECK(memcmp(dx1, dx2, M * IN * 4) == 0 && memcmp(dW1, dW2, OUT * IN * 4) == 0);
    }
    free(dy), free(x), free(W), free(dx1), free(dx2), free(dW1), free(dW2);
    mtp_core_set_precision(MTP_FP32);
}

/* Products on packed weights equal the plain ones (fp32 to rounding; bf16 with the same rounding). */
static void check_packed(MtpPrecision prec, MtpRng *r) {
    enum { N = 70, K = 48 };
    float *W = malloc(N * K * 4), *A = malloc(8 * K * 4), *C1 = malloc(8 * N * 4), *C2 = malloc(8 * N * 4);
    fill(W, N * K, r), fill(A, 8 * K, r);
    mtp_core_set_precision(prec);
    MtpPackedWeight *pw = mtp_pack_weight_at(NULL, W, N, K, prec);
    CHECK(pw != NULL);
    for (int M = 1; M <= 8 && pw; M += 3)
        for (int acc = 0; acc < 2; acc++) {
            fill(C1, M * N, r);
            memcpy(C2, C1, M * N * 4);
            mtp_matmul_packed(C1, A, M, pw, acc);
            mtp_matmul(C2, A, W, M, N, K, 0, 1, acc);
            double worst = 0;
            for (int i = 0; i < M * N; i++) worst = fmax(worst, fabs(C1[i] - C2[i]));
            CHECK_MSG(worst < 1e-5, "packed %s M %d acc %d: err %g", mtp_precision_name(prec), M, acc, worst);
        }
    mtp_packed_weight_free(pw);
    mtp_core_set_precision(MTP_FP32);
    free(W), free(A), free(C1), free(C2);
}

int main(void) {
    char err[256];
    CHECK(mtp_core_init(2, MTP_FP32, err, sizeof err) == 0);
    MtpRng r;
    mtp_rng_seed(&r, 7);
    static const int shapes[][4] = {{1, 1, 1, 1}, {1, 7, 5, 3}, {1, 33, 17, 64}, {1, 128, 96, 80},
                                    {4, 16, 16, 8}, {6, 9, 13, 11}, {1, 1, 259, 64}, {1, 300, 3, 257}};
    for (int p = 0; p < 2; p++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int ta = 0; ta < 2; ta++)
                for (int tb = 0; tb < 2; tb++)
                    for (int acc = 0; acc < 2; acc++)
                        check_case(shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], ta, tb, acc,
                                   p ? MTP_BF16 : MTP_FP32, &r);

    check_strided(&r);
    int strided = mtp_matmul_primitive_count();
    check_strided(&r);
    CHECK(mtp_matmul_primitive_count() == strided); /* the strided key matches itself */
    check_linear_backward(MTP_FP32, &r);
    check_linear_backward(MTP_BF16, &r);
    check_packed(MTP_FP32, &r);
    check_packed(MTP_BF16, &r);

    /* primitives are created once per distinct product and reused */
    int before = mtp_matmul_primitive_count();
    for (int i = 0; i < 3; i++) check_case(1, 33, 17, 64, 1, 0, 1, MTP_FP32, &r);
    CHECK(mtp_matmul_primitive_count() == before);
    check_case(1, 34, 17, 64, 1, 0, 1, MTP_FP32, &r);
    CHECK(mtp_matmul_primitive_count() == before + 1);
    /* the FLOP counter counts 2*M*N*K per product */
    double f0 = mtp_matmul_flops();
    check_case(2, 3, 4, 5, 0, 0, 0, MTP_FP32, &r);
    CHECK(mtp_matmul_flops() - f0 == 2.0 * 2 * 3 * 4 * 5);

    /* bf16 rounding: nearest even, NaN stays NaN, exact values survive */
    CHECK(mtp_bf16_to_f32(mtp_f32_to_bf16(1.0f)) == 1.0f);
    CHECK(mtp_bf16_to_f32(mtp_f32_to_bf16(-3.5f)) == -3.5f);
    CHECK(mtp_f32_to_bf16(1.0f + 0x1p-8f) == mtp_f32_to_bf16(1.0f));          /* tie -> even */
    CHECK(mtp_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-12f) == mtp_f32_to_bf16(1.0f) + 1); /* above tie -> up */
    CHECK(isnan(mtp_bf16_to_f32(mtp_f32_to_bf16(NAN))));
    mtp_core_shutdown();
    TEST_DONE();
}
