/* smallrows.c - products of a few rows over packed weights, each weight read once for all rows.
 *
 * Decoding verifies K drafted tokens in one pass of K rows, so its speedup is the tokens a pass
 * keeps times what a K-row pass costs against a 1-row one. A pass of a few rows is bound by
 * reading the weights; oneDNN 2.6 reads them at about half of what a core can (1-2 rows), and its
 * 8- and 16-row kernels run far below the core's peak (tests/bench/RESULTS-passes.md). The tiles
 * here keep R rows x 4 panels of 16 columns of sums in registers: each vector of weights is loaded
 * once and multiplied by all R rows' inputs, so a pass reads its weights once and 2-16 rows add
 * arithmetic, not reads.
 *
 * Layout: the packed W^T (K, N) is oneDNN's BA16a64b (fp32) or BA16a64b2a (bf16), the layout
 * oneDNN itself picks for these products: blocks of 64 output columns one after another, each the
 * K inputs (rounded up to 16, in bf16 to 32) of its 64 columns, 256 bytes per input, or per pair of
 * inputs in bf16 (the two interleaved column by column). oneDNN's reorder writes it and oneDNN's
 * products read it too (a prompt's prefill), so there is one copy.
 *
 * Tiles: up to 4 rows x one block (4 panels of 16 columns: 16 sums in registers), so a product of
 * 1-4 rows is one stream through the weights, read at the speed a plain read of them runs. More
 * rows go in groups of 4 over a block at a time, which stays in the L2 cache while the groups read
 * it, each group asking the memory for the next block meanwhile. Against panels of 16 columns
 * read in one pass by tiles of up to 16 rows (one core of the AMD EPYC, matrices cycled from L3 or
 * from memory): as fast or faster at 1-8 rows, up to 1.7x at 1-2 rows from L3 and 1.4x at 8 rows
 * in bf16 from memory; 16 rows the same to 10% slower.
 *
 * Every output's sum runs over k in ascending order in one accumulator, whatever the row count or
 * the tile: a row's result does not depend on how many rows share its pass, so the engine's output
 * at any lookahead is bit for bit that of lookahead 1.
 *
 * Kernels, chosen at run time from the CPU's features (MTP_SMALL_KERNEL overrides):
 *   avx512      fp32; bf16 weights widened to fp32 in registers (the fp32 peak)
 *   avx512-dot  bf16 only: vdpbf16ps on inputs rounded to bf16 (twice the multiply-adds per
 *               instruction where the CPU runs it at full rate)
 *   avx2        as avx512, 16 lanes in two registers
 *   onednn      none of them: oneDNN serves every product
 * In bf16, with AVX512_BF16, avx512 and avx512-dot are timed once on a cached 8-row product and
 * avx512-dot serves if it is 10% faster (oneDNN's own bf16 peaks below fp32 on Intel Xeons without
 * AMX, and vdpbf16ps with it). */
#include <assert.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <immintrin.h>

#include "mtp/core/core.h"

typedef enum { SMALL_FP32, SMALL_BF16_WIDEN, SMALL_BF16_DOT } SmallKind;

/* One product: C (M, N) (+)= A (M, K) W^T. */
typedef struct {
    float *C;
    const float *A;     /* (K, lda): the rows transposed, fp32 (fp32 and widened bf16) */
    const uint16_t *A16; /* (K/2, lda) pairs: the dot kernel's rows rounded to bf16, transposed */
    const void *W;      /* the packed matrix */
    int M, N, K, Kp;    /* Kp: the inputs a panel holds, K rounded up to oneDNN's block */
    int lda, accumulate; /* lda: the step from one input to the next in A (A16: from a pair) */
} SmallProduct;

#define SMALL_SUB (MTP_SMALL_BLOCK / 16) /* panels of 16 columns in a block of the layout */
_Static_assert(MTP_SMALL_BLOCK == 16 || MTP_SMALL_BLOCK == 64, "a layout oneDNN has (packed_md)");

/* Keeps a loaded vector of weights in a register: GCC otherwise folds the load into each of the R
 * multiply-adds that use it, and R loads of 64 bytes per vector saturate the load ports before the
 * multiply-adds do (Zen 4 loads one zmm a cycle: a 4-row tile ran at 75-80% of the peak). */
#define SMALL_IN_REGISTER(v) __asm__("" : "+v"(v))

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,fma")
#define ISA(name) name##_avx512
#define VL 16
#define ROW_GROUP 4
#define TILE_PANELS(R) 4 /* a block: 16 sums of 32 registers */
#include "mtp/core/smallrows_tiles.h"
#undef ISA
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx512bf16,fma")
#define ISA(name) name##_avx512dot
#define HAS_DOT
#include "mtp/core/smallrows_tiles.h"
#undef HAS_DOT
#undef ISA
#undef ROW_GROUP
#undef TILE_PANELS
#pragma GCC pop_options

#pragma GCC push_options
/* no-avx512f: true AVX2 code even in a build for an AVX-512 machine, so that the tests there run
 * what an AVX2 CPU runs */
#pragma GCC target("avx2,fma,no-avx512f")
#define ISA(name) name##_avx2
#undef VL
#define VL 8
#define ROW_GROUP 3
#define TILE_PANELS(R) ((R) <= 1 ? 4 : 2) /* a panel is 2 of 16 ymm registers: at most 12 sums */
#include "mtp/core/smallrows_tiles.h"
#undef ISA
#undef VL
#undef ROW_GROUP
#undef TILE_PANELS
#pragma GCC pop_options

static const char *const g_names[] = {"onednn", "avx2", "avx512", "avx512-dot"};

static struct {
    int chosen[2];          /* per precision: 0 until chosen, then kernel + 1 */
    void *rows;             /* scratch: the rows as the kernel reads them (small_matmul_with) */
    size_t rows_bytes;
    size_t parallel_bytes;  /* products of at least this many weight bytes split over threads */
} g_small = {.parallel_bytes = 256 << 10};

const char *mtp_small_kernel_name(MtpSmallKernel k) { return g_names[k]; }

static int cpu_runs(MtpSmallKernel k, MtpPrecision p) {
    __builtin_cpu_init();
    switch (k) {
    case MTP_SMALL_ONEDNN: return 1;
    case MTP_SMALL_AVX2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case MTP_SMALL_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
    case MTP_SMALL_AVX512_DOT: return p == MTP_BF16 && cpu_runs(MTP_SMALL_AVX512, p) && __builtin_cpu_supports("avx512bf16");
    }
    return 0;
}

int mtp_small_kernel_use(MtpPrecision p, MtpSmallKernel k) {
    if (!cpu_runs(k, p)) return -1;
    g_small.chosen[p] = (int)k + 1;
    return 0;
}

static void *scratch(size_t bytes) {
    if (bytes > g_small.rows_bytes) {
        mtp_free(g_small.rows);
        g_small.rows_bytes = 0;
        if (!(g_small.rows = mtp_calloc(bytes, 1))) {
            fprintf(stderr, "mtp: fatal: out of memory (%zu bytes of small-product scratch)\n", bytes);
            exit(71);
        }
        g_small.rows_bytes = bytes;
    }
    return g_small.rows;
}

/* Runs the product on panels pa..pb-1 with kernel k. */
static void run_panels(const SmallProduct *p, MtpSmallKernel k, MtpPrecision prec, int pa, int pb) {
    const SmallKind kind = prec == MTP_FP32 ? SMALL_FP32 : k == MTP_SMALL_AVX512_DOT ? SMALL_BF16_DOT : SMALL_BF16_WIDEN;
    if (k == MTP_SMALL_AVX512_DOT) product_avx512dot(p, pa, pb, kind);
    else if (k == MTP_SMALL_AVX512) product_avx512(p, pa, pb, kind);
    else product_avx2(p, pa, pb, kind);
}

static void small_matmul_with(float *C, const float *A, int M, const void *W, int N, int K, MtpPrecision prec,
                              int accumulate, MtpSmallKernel k) {
    assert(M >= 1 && M <= MTP_SMALL_ROWS_MAX && k != MTP_SMALL_ONEDNN);
    /* oneDNN pads K to its block: 16 inputs, or 16 pairs of them in bf16 */
    const int Kp = prec == MTP_BF16 ? (K + 31) / 32 * 32 : (K + 15) / 16 * 16;
    SmallProduct p = {C, A, NULL, W, M, N, K, Kp, K, accumulate};
    /* The kernel reads the rows transposed, input by input (At (K, M)): the R values a step
     * multiplies are then neighbours at fixed offsets of one pointer, where R rows K apart took R
     * registers for their addresses (spilled at 16 rows) and, 4 KB apart, fell into one set of the
     * L1 cache (16 rows at K = 1024 ran at 45% of those at K = 512). In bf16 the rows are rounded
     * (both operands of a bf16 product are, core.h): the dot kernel reads them as bf16 pairs, the
     * widening one as fp32; both read inputs k and k+1 together, so an odd K gets a zero input. */
    const int K2 = (K + 1) / 2;
    if (k == MTP_SMALL_AVX512_DOT) {
        uint16_t *at = scratch((size_t)K2 * M * 2 * sizeof(uint16_t)); /* (K2, M) pairs */
        for (int r = 0; r < M; r++) {
            for (int i = 0; i < K; i++) at[((size_t)(i / 2) * M + r) * 2 + i % 2] = mtp_f32_to_bf16(A[(size_t)r * K + i]);
            if (K % 2) at[((size_t)(K / 2) * M + r) * 2 + 1] = 0;
        }
        p.A16 = at, p.lda = M;
    } else if (M > 1 || prec == MTP_BF16) {
        float *at = scratch((size_t)2 * K2 * M * sizeof(float)); /* (K rounded up to even, M) */
        for (int r = 0; r < M; r++) {
            for (int i = 0; i < K; i++) {
                const float a = A[(size_t)r * K + i];
                at[(size_t)i * M + r] = prec == MTP_BF16 ? mtp_bf16_to_f32(mtp_f32_to_bf16(a)) : a;
            }
            if (K % 2) at[(size_t)K * M + r] = 0.0f;
        }
        p.A = at, p.lda = M;
    } else {
        p.lda = 1; /* one fp32 row is its own transpose */
    }
    const int np = (N + 15) / 16, nb = (np + SMALL_SUB - 1) / SMALL_SUB, threads = mtp_core_threads();
    const size_t wbytes = (size_t)N * p.Kp * (prec == MTP_BF16 ? 2 : 4);
    if (threads <= 1 || wbytes < g_small.parallel_bytes || nb < threads) {
        run_panels(&p, k, prec, 0, np);
        return;
    }
    /* each thread its own run of output columns: every output is one thread's, summed as above */
#pragma omp parallel num_threads(threads)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        /* whole blocks each, so that no two threads read the same lines */
        const int pa = (int)((long)nb * t / nt) * SMALL_SUB, pb = (int)((long)nb * (t + 1) / nt) * SMALL_SUB;
        run_panels(&p, k, prec, pa, pb < np ? pb : np);
    }
}

/* The faster bf16 kernel on an 8-row product over 256 KB of weights (in cache, where arithmetic
 * decides), the two taking turns 20 times (after one untimed turn each): the best of each. The
 * dot kernel must win by 10%: the two sum a pair of inputs in different orders, so a close call
 * that flipped between runs would change bf16 results in the last bits from one run to the next
 * (measured: 1.7x on AMD Zen 4; Intel Xeons without AMX run vdpbf16ps at about half their fp32
 * multiply-add rate). */
static MtpSmallKernel faster_bf16_kernel(void) {
    enum { N = 256, K = 512, M = 8 };
    const MtpSmallKernel k[2] = {MTP_SMALL_AVX512, MTP_SMALL_AVX512_DOT};
    uint16_t *W = mtp_calloc((size_t)N * K, sizeof(uint16_t));
    float *A = mtp_calloc((size_t)M * K, sizeof(float)), *C = mtp_calloc((size_t)M * N, sizeof(float));
    double best[2] = {1e30, 1e30};
    if (W && A && C) {
        for (size_t i = 0; i < (size_t)N * K; i++) W[i] = mtp_f32_to_bf16((float)(i % 13) * 0.01f);
        for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (float)(i % 7) * 0.1f;
        for (int rep = 0; rep < 21; rep++)
            for (int i = 0; i < 2; i++) {
                const double t0 = mtp_now();
                small_matmul_with(C, A, M, W, N, K, MTP_BF16, 0, k[i]);
                const double t = mtp_now() - t0;
                if (rep > 0 && t < best[i]) best[i] = t;
            }
    }
    mtp_free(W), mtp_free(A), mtp_free(C);
    return best[1] * 1.1 < best[0] ? k[1] : k[0];
}

/* The default for precision p: MTP_SMALL_KERNEL when it names a kernel this CPU runs, else the
 * widest the CPU has (for bf16 with AVX512_BF16, the faster of the two measured). */
static MtpSmallKernel choose(MtpPrecision p) {
    const char *env = getenv("MTP_SMALL_KERNEL");
    if (env)
        for (int k = 0; k < 4; k++)
            if (strcmp(env, g_names[k]) == 0 && cpu_runs((MtpSmallKernel)k, p)) return (MtpSmallKernel)k;
    if (cpu_runs(MTP_SMALL_AVX512_DOT, p)) return faster_bf16_kernel();
    if (cpu_runs(MTP_SMALL_AVX512, p)) return MTP_SMALL_AVX512;
    if (cpu_runs(MTP_SMALL_AVX2, p)) return MTP_SMALL_AVX2;
    return MTP_SMALL_ONEDNN;
}

MtpSmallKernel mtp_small_kernel(MtpPrecision p) {
    if (!g_small.chosen[p]) g_small.chosen[p] = (int)choose(p) + 1;
    return (MtpSmallKernel)(g_small.chosen[p] - 1);
}

void mtp_small_matmul(float *C, const float *A, int M, const void *W, int N, int K, MtpPrecision p, int accumulate) {
    small_matmul_with(C, A, M, W, N, K, p, accumulate, mtp_small_kernel(p));
}

void mtp_small_parallel_bytes(size_t bytes) { g_small.parallel_bytes = bytes; }

void mtp_small_shutdown(void) {
    mtp_free(g_small.rows);
    g_small.rows = NULL, g_small.rows_bytes = 0;
}
