/* matmul.c - every dense matrix product of mtp, through oneDNN.
 *
 * A oneDNN primitive is expensive to create (it picks a kernel and may JIT it), cheap to run.
 * So each distinct product (shape, transposes, accumulate, precision) gets one primitive the
 * first time it is asked for, kept in a small table for the life of the process; a call only
 * points the cached memory objects at its buffers and executes.
 *
 * Transposed operands are expressed with strides on the memory descriptors, so no operand is ever
 * copied in fp32. In bf16 precision the operands are rounded into scratch buffers first (fp32 master
 * weights stay untouched) and oneDNN accumulates in fp32 into an fp32 destination. */
#include <assert.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#ifdef __AVX512BF16__
#include <immintrin.h>
#endif

#include <oneapi/dnnl/dnnl.h>

#include "mtp/core/core.h"

/* Everything that makes two products different primitives is in the MtpGemm: shape, strides,
 * transposes, accumulate, operand type. */
typedef MtpGemm MatmulKey;

static int key_eq(const MatmulKey *a, const MatmulKey *b) {
    return a->batch == b->batch && a->M == b->M && a->N == b->N && a->K == b->K && a->trans_a == b->trans_a &&
           a->trans_b == b->trans_b && a->accumulate == b->accumulate && a->lda == b->lda && a->ldb == b->ldb &&
           a->ldc == b->ldc && a->stride_a == b->stride_a && a->stride_b == b->stride_b &&
           a->stride_c == b->stride_c && a->bf16 == b->bf16;
}

typedef struct {
    MatmulKey key;
    dnnl_primitive_t prim;
    dnnl_memory_t mem_a, mem_b, mem_c, mem_scratch;
    size_t scratch_bytes;
    double seconds, calls; /* MTP_PROFILE=1: time spent in this product, reported at shutdown */
} MatmulEntry;

static struct {
    int initialised;
    int threads;
    MtpPrecision precision;
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    MatmulEntry *table; /* grows as new products appear */
    int n_entries, cap_entries;
    double flops;
    char last_impl[128];
    int profile;
    uint16_t *bf16_a, *bf16_b; /* scratch for rounded operands */
    size_t bf16_a_cap, bf16_b_cap;
    void *scratchpad;          /* oneDNN's working memory, shared by all primitives (one runs at a time) */
    size_t scratchpad_cap;
} g_mm;

const char *mtp_precision_name(MtpPrecision p) { return p == MTP_BF16 ? "bf16" : "fp32"; }

int mtp_core_init(int threads, MtpPrecision precision, char *err, size_t errlen) {
    if (g_mm.initialised) {
        snprintf(err, errlen, "mtp_core_init called twice");
        return -1;
    }
    if (threads <= 0) threads = omp_get_num_procs();
    omp_set_num_threads(threads);
    omp_set_dynamic(0);
    g_mm.threads = threads;
    g_mm.precision = precision;
    g_mm.profile = getenv("MTP_PROFILE") != NULL;
    if (dnnl_engine_create(&g_mm.engine, dnnl_cpu, 0) != dnnl_success) {
        snprintf(err, errlen, "oneDNN: cannot create a CPU engine");
        return -1;
    }
    if (dnnl_stream_create(&g_mm.stream, g_mm.engine, dnnl_stream_default_flags) != dnnl_success) {
        snprintf(err, errlen, "oneDNN: cannot create a stream");
        dnnl_engine_destroy(g_mm.engine);
        return -1;
    }
    g_mm.initialised = 1;
    return 0;
}

void mtp_core_shutdown(void) {
    if (!g_mm.initialised) return;
    if (g_mm.profile) {
        double total = 0;
        for (int i = 0; i < g_mm.n_entries; i++) total += g_mm.table[i].seconds;
        fprintf(stderr, "mtp: matmul profile: %.3f s in %d shapes\n", total, g_mm.n_entries);
        for (int i = 0; i < g_mm.n_entries; i++) {
            MatmulEntry *e = &g_mm.table[i];
            const MtpGemm *g = &e->key;
            double gf = e->calls * 2.0 * g->batch * g->M * g->N * g->K / 1e9;
            fprintf(stderr, "  %3dx[%5d,%5d]x[%5d,%5d]%s%s%s %s: %7.3f s %6.0f calls %7.1f GFLOP/s\n", g->batch, g->M,
                    g->K, g->K, g->N, g->trans_a ? " tA" : "   ", g->trans_b ? " tB" : "   ", g->accumulate ? " +=" : "   ",
                    g->bf16 ? "bf16" : "fp32", e->seconds, e->calls, e->seconds > 0 ? gf / e->seconds : 0);
        }
    }
    for (int i = 0; i < g_mm.n_entries; i++) {
        MatmulEntry *e = &g_mm.table[i];
        dnnl_primitive_destroy(e->prim);
        dnnl_memory_destroy(e->mem_a);
        dnnl_memory_destroy(e->mem_b);
        dnnl_memory_destroy(e->mem_c);
        dnnl_memory_destroy(e->mem_scratch);
    }
    dnnl_stream_destroy(g_mm.stream);
    dnnl_engine_destroy(g_mm.engine);
    mtp_free(g_mm.bf16_a);
    mtp_free(g_mm.bf16_b);
    mtp_free(g_mm.scratchpad);
    mtp_small_shutdown();
    free(g_mm.table);
    memset(&g_mm, 0, sizeof g_mm);
}

int mtp_core_threads(void) { return g_mm.threads; }
MtpPrecision mtp_core_precision(void) { return g_mm.precision; }
void mtp_core_set_precision(MtpPrecision precision) { g_mm.precision = precision; }
double mtp_matmul_flops(void) { return g_mm.flops; }
const char *mtp_matmul_last_impl(void) { return g_mm.last_impl; }
int mtp_matmul_primitive_count(void) { return g_mm.n_entries; }

/* A failure here is a programming error or an out-of-memory inside oneDNN: nothing sensible can
 * continue, and the message says which call failed. */
static void dnnl_check(dnnl_status_t st, const char *what) {
    if (st != dnnl_success) {
        fprintf(stderr, "mtp: fatal: oneDNN %s failed (status %d)\n", what, (int)st);
        exit(70);
    }
}

/* Descriptor of a (batch, rows, cols) operand stored row-major as (rows, cols) with row stride ld,
 * or transposed (stored (cols, rows) with row stride ld) when trans; bstride between batches. */
static void operand_desc(dnnl_memory_desc_t *md, int batch, int rows, int cols, int trans, long ld, long bstride,
                         dnnl_data_type_t dt) {
    if (batch == 1) {
        dnnl_dims_t dims = {rows, cols};
        dnnl_dims_t strides = {trans ? 1 : ld, trans ? ld : 1};
        dnnl_check(dnnl_memory_desc_init_by_strides(md, 2, dims, dt, strides), "memory_desc_init");
    } else {
        dnnl_dims_t dims = {batch, rows, cols};
        dnnl_dims_t strides = {bstride, trans ? 1 : ld, trans ? ld : 1};
        dnnl_check(dnnl_memory_desc_init_by_strides(md, 3, dims, dt, strides), "memory_desc_init");
    }
}

/* Creates a matmul primitive descriptor; a CPU without bf16 products gets a clear error. */
static dnnl_primitive_desc_t matmul_pd(const dnnl_matmul_desc_t *desc, dnnl_primitive_attr_t attr, MtpPrecision prec,
                                       const char *what) {
    dnnl_primitive_desc_t pd;
    dnnl_status_t st = dnnl_primitive_desc_create(&pd, desc, attr, g_mm.engine, NULL);
    if (st == dnnl_unimplemented && prec == MTP_BF16) {
        fprintf(stderr, "mtp: error: oneDNN has no bf16 matrix product for this CPU; use --precision fp32\n");
        exit(1);
    }
    dnnl_check(st, what);
    return pd;
}

int mtp_bf16_products(void) {
    assert(g_mm.initialised);
    /* oneDNN answers for this CPU (and for any limit put on its instruction sets) */
    dnnl_memory_desc_t a_md, b_md, c_md;
    dnnl_dims_t dims = {16, 16};
    dnnl_check(dnnl_memory_desc_init_by_tag(&a_md, 2, dims, dnnl_bf16, dnnl_ab), "memory_desc_init");
    dnnl_check(dnnl_memory_desc_init_by_tag(&b_md, 2, dims, dnnl_bf16, dnnl_ab), "memory_desc_init");
    dnnl_check(dnnl_memory_desc_init_by_tag(&c_md, 2, dims, dnnl_f32, dnnl_ab), "memory_desc_init");
    dnnl_matmul_desc_t desc;
    dnnl_check(dnnl_matmul_desc_init(&desc, &a_md, &b_md, NULL, &c_md), "matmul_desc_init");
    dnnl_primitive_desc_t pd;
    if (dnnl_primitive_desc_create(&pd, &desc, NULL, g_mm.engine, NULL) != dnnl_success) return 0;
    dnnl_primitive_desc_destroy(pd);
    return 1;
}

/* packed_b: the weights' layout for products on packed weights (key->ldb == 0), else NULL */
static MatmulEntry *matmul_entry(const MatmulKey *key, const dnnl_memory_desc_t *packed_b) {
    for (int i = 0; i < g_mm.n_entries; i++)
        if (key_eq(&g_mm.table[i].key, key)) return &g_mm.table[i];
    if (g_mm.n_entries == g_mm.cap_entries) {
        int cap = g_mm.cap_entries ? 2 * g_mm.cap_entries : 64;
        MatmulEntry *t = realloc(g_mm.table, cap * sizeof *t);
        if (!t) {
            fprintf(stderr, "mtp: fatal: out of memory for the matrix product table\n");
            exit(71);
        }
        g_mm.table = t, g_mm.cap_entries = cap;
    }
    MatmulEntry *e = &g_mm.table[g_mm.n_entries];
    memset(e, 0, sizeof *e);
    e->key = *key;
    const MtpGemm *g = key;
    MtpPrecision prec = g->bf16 ? MTP_BF16 : MTP_FP32;

    dnnl_data_type_t in_dt = prec == MTP_BF16 ? dnnl_bf16 : dnnl_f32;
    dnnl_memory_desc_t a_md, b_md, c_md;
    operand_desc(&a_md, g->batch, g->M, g->K, g->trans_a, g->lda, g->stride_a, in_dt);
    if (packed_b) b_md = *packed_b;
    else operand_desc(&b_md, g->batch, g->K, g->N, g->trans_b, g->ldb, g->stride_b, in_dt);
    operand_desc(&c_md, g->batch, g->M, g->N, 0, g->ldc, g->stride_c, dnnl_f32);

    dnnl_matmul_desc_t desc;
    dnnl_check(dnnl_matmul_desc_init(&desc, &a_md, &b_md, NULL, &c_md), "matmul_desc_init");
    dnnl_primitive_attr_t attr;
    dnnl_check(dnnl_primitive_attr_create(&attr), "primitive_attr_create");
    /* we hand oneDNN its working memory: otherwise it allocates (and the kernel faults in) fresh
     * pages for every execution of a product with a transposed operand */
    dnnl_check(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user), "set_scratchpad_mode");
    dnnl_post_ops_t post_ops = NULL;
    if (g->accumulate) {
        /* C += A B is a "sum" post-op: oneDNN adds the old destination in its epilogue. */
        dnnl_check(dnnl_post_ops_create(&post_ops), "post_ops_create");
        dnnl_check(dnnl_post_ops_append_sum(post_ops, 1.0f), "post_ops_append_sum");
        dnnl_check(dnnl_primitive_attr_set_post_ops(attr, post_ops), "attr_set_post_ops");
    }
    dnnl_primitive_desc_t pd = matmul_pd(&desc, attr, prec, "matmul primitive_desc_create");
    const char *impl = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl)
        snprintf(g_mm.last_impl, sizeof g_mm.last_impl, "%s", impl);
    if (getenv("MTP_VERBOSE"))
        fprintf(stderr, "mtp: matmul %dx[%d,%d]x[%d,%d]%s%s%s ld %ld,%ld,%ld %s -> %s\n", g->batch, g->M, g->K, g->K,
                g->N, g->trans_a ? " tA" : "", g->trans_b ? " tB" : "", g->accumulate ? " +=" : "", g->lda, g->ldb,
                g->ldc, mtp_precision_name(prec), g_mm.last_impl);
    dnnl_check(dnnl_primitive_create(&e->prim, pd), "matmul primitive_create");
    dnnl_check(dnnl_memory_create(&e->mem_a, &a_md, g_mm.engine, DNNL_MEMORY_NONE), "memory_create");
    dnnl_check(dnnl_memory_create(&e->mem_b, &b_md, g_mm.engine, DNNL_MEMORY_NONE), "memory_create");
    dnnl_check(dnnl_memory_create(&e->mem_c, &c_md, g_mm.engine, DNNL_MEMORY_NONE), "memory_create");
    const dnnl_memory_desc_t *s_md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    e->scratch_bytes = s_md ? dnnl_memory_desc_get_size(s_md) : 0;
    if (e->scratch_bytes)
        dnnl_check(dnnl_memory_create(&e->mem_scratch, s_md, g_mm.engine, DNNL_MEMORY_NONE), "memory_create");
    dnnl_primitive_desc_destroy(pd);
    if (post_ops) dnnl_post_ops_destroy(post_ops);
    dnnl_primitive_attr_destroy(attr);
    g_mm.n_entries++;
    return e;
}

static uint16_t *bf16_scratch(uint16_t **buf, size_t *cap, size_t n) {
    if (n > *cap) {
        mtp_free(*buf);
        *buf = mtp_calloc(n, sizeof(uint16_t));
        if (!*buf) {
            fprintf(stderr, "mtp: fatal: out of memory (%zu bf16 values)\n", n);
            exit(71);
        }
        *cap = n;
    }
    return *buf;
}

void mtp_round_to_bf16(uint16_t *out, const float *in, size_t n) {
#ifdef __AVX512BF16__
    /* one instruction rounds 32 floats (nearest even, as mtp_f32_to_bf16) */
    size_t n32 = n / 32 * 32;
#pragma omp parallel for schedule(static) if (n >= MTP_PARALLEL_MIN)
    for (size_t i = 0; i < n32; i += 32) {
        __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(in + i + 16), _mm512_loadu_ps(in + i));
        _mm512_storeu_si512((void *)(out + i), (__m512i)v);
    }
    for (size_t i = n32; i < n; i++) out[i] = mtp_f32_to_bf16(in[i]);
#else
#pragma omp parallel for schedule(static) if (n >= MTP_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) out[i] = mtp_f32_to_bf16(in[i]);
#endif
}

/* Runs the product of key on operands already in the key's precision (a, b: fp32 or bf16). */
static void matmul_exec_md(float *C, const void *a, const void *b, const MatmulKey *key,
                           const dnnl_memory_desc_t *packed_b) {
    const MtpGemm *g = key;
    assert(g_mm.initialised && "mtp_core_init must be called first");
    assert(g->batch > 0 && g->M > 0 && g->N > 0 && g->K > 0);
    MatmulEntry *e = matmul_entry(key, packed_b);
    double t0 = g_mm.profile ? mtp_now() : 0;
    dnnl_check(dnnl_memory_set_data_handle(e->mem_a, (void *)a), "set_data_handle");
    dnnl_check(dnnl_memory_set_data_handle(e->mem_b, (void *)b), "set_data_handle");
    dnnl_check(dnnl_memory_set_data_handle(e->mem_c, C), "set_data_handle");
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, e->mem_a}, {DNNL_ARG_WEIGHTS, e->mem_b}, {DNNL_ARG_DST, e->mem_c},
                               {DNNL_ARG_SCRATCHPAD, e->mem_scratch}};
    if (e->scratch_bytes) {
        if (e->scratch_bytes > g_mm.scratchpad_cap) {
            mtp_free(g_mm.scratchpad);
            g_mm.scratchpad = mtp_calloc(e->scratch_bytes, 1);
            if (!g_mm.scratchpad) {
                fprintf(stderr, "mtp: fatal: out of memory (%zu bytes of oneDNN scratchpad)\n", e->scratch_bytes);
                exit(71);
            }
            g_mm.scratchpad_cap = e->scratch_bytes;
        }
        dnnl_check(dnnl_memory_set_data_handle(e->mem_scratch, g_mm.scratchpad), "set_data_handle");
    }
    dnnl_check(dnnl_primitive_execute(e->prim, g_mm.stream, e->scratch_bytes ? 4 : 3, args), "matmul execute");
    dnnl_check(dnnl_stream_wait(g_mm.stream), "stream_wait");
    g_mm.flops += 2.0 * g->batch * (double)g->M * g->N * g->K;
    if (g_mm.profile) e->seconds += mtp_now() - t0, e->calls++;
}

static void matmul_exec(float *C, const void *a, const void *b, const MatmulKey *key) {
    matmul_exec_md(C, a, b, key, NULL);
}

/* Rounds n floats into the scratch buffer *buf and returns it. */
static uint16_t *to_bf16(uint16_t **buf, size_t *cap, const float *x, size_t n) {
    uint16_t *x16 = bf16_scratch(buf, cap, n);
    mtp_round_to_bf16(x16, x, n);
    return x16;
}

/* Runs the product of key on fp32 operands, rounding them first in bf16 precision (dense
 * operands only: their stored size is batch * rows * cols). */
static void matmul_run(float *C, const float *A, const float *B, const MatmulKey *key) {
    const MtpGemm *g = key;
    if (!g->bf16) {
        matmul_exec(C, A, B, key);
        return;
    }
    const uint16_t *a16 = to_bf16(&g_mm.bf16_a, &g_mm.bf16_a_cap, A, (size_t)g->batch * g->M * g->K);
    const uint16_t *b16 = to_bf16(&g_mm.bf16_b, &g_mm.bf16_b_cap, B, (size_t)g->batch * g->K * g->N);
    matmul_exec(C, a16, b16, key);
}

/* The key of a product over contiguous operands. */
static MatmulKey dense_key(int batch, int M, int N, int K, int trans_a, int trans_b, int accumulate,
                           MtpPrecision prec) {
    return (MatmulKey){batch, M, N, K, trans_a, trans_b, accumulate, trans_a ? M : K, trans_b ? K : N, N,
                       (long)M * K, (long)K * N, (long)M * N, prec == MTP_BF16};
}

void mtp_matmul(float *C, const float *A, const float *B, int M, int N, int K, int trans_a, int trans_b,
                int accumulate) {
    MatmulKey k = dense_key(1, M, N, K, trans_a, trans_b, accumulate, g_mm.precision);
    matmul_run(C, A, B, &k);
}

void mtp_linear_backward(float *dx, float *dW, const float *dy, const float *x, const float *W, int M, int in,
                         int out, int accumulate_dx) {
    MtpPrecision prec = g_mm.precision;
    MatmulKey kx = dense_key(1, M, in, out, 0, 0, accumulate_dx, prec); // dx (M,in) = dy (M,out) W (out,in)
    MatmulKey kw = dense_key(1, out, in, M, 1, 0, 1, prec);             // dW (out,in) += dy^T x (M,in)
    if (prec != MTP_BF16) {
        matmul_exec(dx, dy, W, &kx);
        matmul_exec(dW, dy, x, &kw);
        return;
    }
    /* dy feeds both products: round it once */
    const uint16_t *dy16 = to_bf16(&g_mm.bf16_a, &g_mm.bf16_a_cap, dy, (size_t)M * out);
    matmul_exec(dx, dy16, to_bf16(&g_mm.bf16_b, &g_mm.bf16_b_cap, W, (size_t)out * in), &kx);
    matmul_exec(dW, dy16, to_bf16(&g_mm.bf16_b, &g_mm.bf16_b_cap, x, (size_t)M * in), &kw);
}

void mtp_matmul_strided(float *C, const void *A, const void *B, const MtpGemm *g) {
    matmul_exec(C, A, B, g); /* operands already in their precision */
}

/* ---- packed weights ------------------------------------------------------------------------- */

struct MtpPackedWeight {
    int N, K;
    MtpPrecision precision;
    int small; /* laid out in panels for mtp_small_matmul */
    dnnl_memory_desc_t md; /* the layout oneDNN chose for this matrix */
    void *data;
    int owned; /* data is its own allocation (packed without a cursor) */
};

/* The layout of a packed W^T (K, N): the small-row kernel's panels where a kernel serves the
 * precision, else the layout a one-row product wants, oneDNN's choice under format_tag_any. */
static dnnl_memory_desc_t packed_md(int N, int K, MtpPrecision precision) {
    assert(g_mm.initialised);
    dnnl_data_type_t dt = precision == MTP_BF16 ? dnnl_bf16 : dnnl_f32;
    if (mtp_small_kernel(precision) != MTP_SMALL_ONEDNN) {
        dnnl_memory_desc_t md;
        dnnl_dims_t dims = {K, N};
        const dnnl_format_tag_t tag = MTP_SMALL_BLOCK == 16 ? (precision == MTP_BF16 ? dnnl_BA16a16b2a : dnnl_BA16a16b)
                                                            : (precision == MTP_BF16 ? dnnl_BA16a64b2a : dnnl_BA16a64b);
        dnnl_check(dnnl_memory_desc_init_by_tag(&md, 2, dims, dt, tag), "memory_desc_init");
        return md;
    }
    dnnl_memory_desc_t a_md, b_any, c_md;
    dnnl_dims_t a_dims = {1, K}, b_dims = {K, N}, c_dims = {1, N};
    dnnl_check(dnnl_memory_desc_init_by_tag(&a_md, 2, a_dims, dt, dnnl_ab), "memory_desc_init");
    dnnl_check(dnnl_memory_desc_init_by_tag(&b_any, 2, b_dims, dt, dnnl_format_tag_any), "memory_desc_init");
    dnnl_check(dnnl_memory_desc_init_by_tag(&c_md, 2, c_dims, dnnl_f32, dnnl_ab), "memory_desc_init");
    dnnl_matmul_desc_t desc;
    dnnl_check(dnnl_matmul_desc_init(&desc, &a_md, &b_any, NULL, &c_md), "matmul_desc_init");
    dnnl_primitive_desc_t pd = matmul_pd(&desc, NULL, precision, "packing primitive_desc_create");
    dnnl_memory_desc_t md = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    dnnl_primitive_desc_destroy(pd);
    return md;
}

/* What a packed matrix of layout md takes at a cursor: cursors stay 64-byte aligned. */
static size_t packed_span(const dnnl_memory_desc_t *md) { return (dnnl_memory_desc_get_size(md) + 63) & ~(size_t)63; }

size_t mtp_packed_weight_bytes(int N, int K, MtpPrecision precision) {
    dnnl_memory_desc_t md = packed_md(N, K, precision);
    return packed_span(&md);
}

MtpPackedWeight *mtp_pack_weight_at(char **cursor, const float *W, int N, int K, MtpPrecision precision) {
    MtpPackedWeight *pw = calloc(1, sizeof *pw);
    if (!pw) return NULL;
    pw->N = N, pw->K = K, pw->precision = precision;
    pw->md = packed_md(N, K, precision);
    pw->small = mtp_small_kernel(precision) != MTP_SMALL_ONEDNN;
    pw->owned = cursor == NULL;
    if (cursor) {
        assert(((uintptr_t)*cursor & 63) == 0);
        pw->data = *cursor;
        *cursor += packed_span(&pw->md);
    } else if (!(pw->data = mtp_calloc(dnnl_memory_desc_get_size(&pw->md), 1))) {
        free(pw);
        return NULL;
    }
    /* one reorder from W (N, K) row-major, seen as W^T (K, N), to that layout (and type) */
    dnnl_memory_desc_t w_plain;
    dnnl_dims_t b_dims = {K, N}, w_strides = {1, K};
    dnnl_check(dnnl_memory_desc_init_by_strides(&w_plain, 2, b_dims, dnnl_f32, w_strides), "memory_desc_init");
    dnnl_memory_t src, dst;
    dnnl_primitive_desc_t rpd;
    dnnl_primitive_t reorder;
    dnnl_check(dnnl_memory_create(&src, &w_plain, g_mm.engine, (void *)W), "memory_create");
    dnnl_check(dnnl_memory_create(&dst, &pw->md, g_mm.engine, pw->data), "memory_create");
    dnnl_check(dnnl_reorder_primitive_desc_create(&rpd, &w_plain, g_mm.engine, &pw->md, g_mm.engine, NULL),
               "reorder_primitive_desc_create");
    dnnl_check(dnnl_primitive_create(&reorder, rpd), "reorder primitive_create");
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}};
    dnnl_check(dnnl_primitive_execute(reorder, g_mm.stream, 2, args), "reorder execute");
    dnnl_check(dnnl_stream_wait(g_mm.stream), "stream_wait");
    dnnl_primitive_destroy(reorder);
    dnnl_primitive_desc_destroy(rpd);
    dnnl_memory_destroy(src);
    dnnl_memory_destroy(dst);
    return pw;
}

void mtp_packed_weight_free(MtpPackedWeight *pw) {
    if (!pw) return;
    if (pw->owned) mtp_free(pw->data);
    free(pw);
}

const void *mtp_packed_weight_data(const MtpPackedWeight *pw, size_t *bytes) {
    *bytes = dnnl_memory_desc_get_size(&pw->md);
    return pw->data;
}

static void matmul_packed_exec(float *C, const float *A, int M, const MtpPackedWeight *pw, int accumulate) {
    /* ldb 0 marks a packed product: its weights layout comes from the packed matrix */
    MatmulKey k = {1, M, pw->N, pw->K, 0, 1, accumulate, pw->K, 0, pw->N, (long)M * pw->K, 0, (long)M * pw->N,
                   pw->precision == MTP_BF16};
    const void *a = A;
    if (pw->precision == MTP_BF16) a = to_bf16(&g_mm.bf16_a, &g_mm.bf16_a_cap, A, (size_t)M * pw->K);
    matmul_exec_md(C, a, pw->data, &k, &pw->md);
}

void mtp_matmul_packed(float *C, const float *A, int M, const MtpPackedWeight *pw, int accumulate) {
    const double t0 = mtp_timing_start();
    if (pw->small && M <= MTP_SMALL_ROWS_MAX && mtp_small_kernel(pw->precision) != MTP_SMALL_ONEDNN) {
        mtp_small_matmul(C, A, M, pw->data, pw->N, pw->K, pw->precision, accumulate);
        g_mm.flops += 2.0 * M * pw->N * pw->K;
    } else {
        matmul_packed_exec(C, A, M, pw, accumulate);
    }
    mtp_timing_stop(MTP_TIME_PRODUCTS, t0);
}

/* ---- small utilities ------------------------------------------------------------------------ */

MtpLinear mtp_linear_packed(const MtpPackedWeight *pw) { return (MtpLinear){NULL, pw, pw->N, pw->K}; }

void mtp_linear_forward(float *y, const float *x, int M, MtpLinear W, int accumulate) {
    if (W.packed) mtp_matmul_packed(y, x, M, W.packed, accumulate);
    else mtp_matmul(y, x, W.w, M, W.out, W.in, 0, 1, accumulate);
}

int mtp_fail(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Every allocation carries a 64-byte header (keeping the data 64-byte aligned) that records
 * whether it came from mmap. Large buffers (activations, optimizer state) are mapped: the kernel
 * hands out zeroed pages as they are first touched, so nothing is cleared twice, and transparent
 * huge pages (where the kernel allows them) cut page faults and TLB misses. */
#define ALLOC_HEADER 64
#ifdef __SANITIZE_ADDRESS__
#define ALLOC_MMAP_MIN ((size_t)-1) /* AddressSanitizer watches heap blocks only: keep everything there */
#else
#define ALLOC_MMAP_MIN ((size_t)1 << 20)
#endif

void *mtp_calloc(size_t n, size_t size) {
    if (size && n > ((size_t)-1 - 2 * ALLOC_HEADER) / size) return NULL;
    size_t bytes = ((n * size + 63) & ~(size_t)63) + ALLOC_HEADER;
    char *base;
    if (bytes >= ALLOC_MMAP_MIN) {
        base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (base == MAP_FAILED) return NULL;
#ifdef MADV_HUGEPAGE
        madvise(base, bytes, MADV_HUGEPAGE);
#endif
        *(size_t *)base = bytes;
    } else {
        void *p = NULL;
        if (posix_memalign(&p, 64, bytes) != 0) return NULL;
        base = p;
        memset(base, 0, bytes);
        *(size_t *)base = 0;
    }
    return base + ALLOC_HEADER;
}

void mtp_free(void *p) {
    if (!p) return;
    char *base = (char *)p - ALLOC_HEADER;
    size_t mapped = *(size_t *)base;
    if (mapped) munmap(base, mapped);
    else free(base);
}

double mtp_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
