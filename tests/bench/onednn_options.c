/* mtp_onednn_options: every oneDNN way of computing a decoding product, against the own kernel.
 *
 * A decoding pass multiplies 1..16 token rows by fixed weights: y (M, N) = x (M, K) W^T with W
 * stored (N, K) as nn.Linear stores it. Before the project kept its own small-row kernel
 * (mtp/core/smallrows.c), issue 10 asked to exhaust oneDNN first, measuring each option:
 *   own                the project's kernel (mtp_pack_weight_at + mtp_matmul_packed), fp32 and
 *                      bf16 widened to fp32 (MTP_SMALL_AVX512, or AVX2 where that is the widest)
 *   own_dot            bf16 only: the vdpbf16ps kernel (MTP_SMALL_AVX512_DOT)
 *   matmul_any         matmul created for that M, weights format_tag_any, reordered once
 *   matmul_BA16a16b    matmul on fixed weight layouts: BA16a16b is the own kernel's layout (what
 *   matmul_BA16a64b    oneDNN reads of it for a prefill); bf16: BA16a16b2a and BA16a64b2a
 *   matmul_plain       weights row-major W (N, K) seen as W^T through strides: re-packed per call
 *   matmul_transposed  C^T (N, M) = W (N, K) x^T (K, M): the rows become the small dimension; the
 *                      transpose back into (M, N) is timed too (the engine needs (M, N))
 *   inner_product      inner_product forward inference, weights format_tag_any reordered once
 * and, for the (2F, D) w1|w3 matrix, one stacked product against two (F, D) ones.
 *
 * Timing: weights prepared outside the timing; in bf16 x is rounded once per call inside it (as
 * the project does) and dst is fp32. "From memory" cycles through copies of each matrix larger
 * than the last-level cache in total (--pool-mb), as a pass streams weights it read a pass ago;
 * "in cache" reuses one copy. The machine may be shared: every (rows, method, where) block of about
 * --target-ms is repeated --repeats times, round-robin within one process, and medians are kept.
 * Every method is checked against a double-precision loop on the same rounded operands first.
 *
 * Usage: mtp_onednn_options [--shape N,K]... [--rows 1,2,4] [--repeats R] [--precision fp32|bf16|both]
 *                           [--where memory|cache|both] [--pool-mb MB] [--target-ms MS]
 * Output: Markdown on stdout, progress on stderr. Not a test: it asserts only correctness. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <oneapi/dnnl/dnnl.h>

#include "mtp/core/core.h"

#define MAX_SHAPES 16
#define MAX_ROWS 16
#define MAX_POOLS 64
enum { W_MEMORY, W_CACHE, N_WHERE };
static const char *const where_names[N_WHERE] = {"from memory", "in cache"};

typedef enum { M_OWN, M_OWN_DOT, M_ANY, M_B16, M_B64, M_PLAIN, M_TRANS, M_IP, N_METHODS } Method;
static const char *const method_names[2][N_METHODS] = {
    {"own", "own_dot", "matmul_any", "matmul_BA16a16b", "matmul_BA16a64b", "matmul_plain", "matmul_transposed",
     "inner_product"},
    {"own", "own_dot", "matmul_any", "matmul_BA16a16b2a", "matmul_BA16a64b2a", "matmul_plain", "matmul_transposed",
     "inner_product"}};

typedef struct {
    int N, K;
    const char *what;
} Shape;
typedef struct {
    const char *name, *about;
    int n, stack; /* stack: index of the (2F, D) w1|w3 shape, or -1 */
    Shape s[MAX_SHAPES];
} Model;

static const Model model_arith4 = {"arith4 (5M)", "dim 256, ffn 688, vocab 259 + 3 linear drafting heads", 5, 2,
                                   {{768, 256, "qkv"}, {256, 256, "wo"}, {1376, 256, "w13"}, {256, 688, "w2"},
                                    {259, 256, "unembed"}}};
static const Model model_big = {"big (25M)", "dim 512, ffn 1376, vocab 512", 5, 2,
                                {{1536, 512, "qkv"}, {512, 512, "wo"}, {2752, 512, "w13"}, {512, 1376, "w2"},
                                 {512, 512, "unembed"}}};

static struct {
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    void *scratch; /* oneDNN's working memory, shared by all primitives as the project does */
    size_t scratch_cap;
    int rows[MAX_ROWS], nrows, repeats, where_mask;
    double target_s;
    size_t pool_bytes;
    int own_k[2], dot_k, default_k[2]; /* kernels per precision; -1: none */
} G = {.rows = {1, 2, 3, 4, 6, 8, 12, 16}, .nrows = 8, .repeats = 15, .where_mask = 3, .target_s = 1e-3,
       .pool_bytes = (size_t)80 << 20};

static void die(const char *msg) {
    fprintf(stderr, "mtp_onednn_options: %s\n", msg);
    exit(1);
}
static void check_dnnl(dnnl_status_t st, const char *what) {
    if (st != dnnl_success) {
        fprintf(stderr, "mtp_onednn_options: oneDNN %s failed (status %d)\n", what, (int)st);
        exit(1);
    }
}
static void *xalloc(size_t bytes) {
    void *p = mtp_calloc(bytes ? bytes : 1, 1);
    if (!p) die("out of memory");
    return p;
}

/* ---- one product's operands and reference ------------------------------------------------------ */

typedef struct {
    int M, N, K;
    MtpPrecision p;
    float *W;            /* (N, K) fp32 */
    float *x, *y, *t;    /* x (M, K), y (M, N), t (N, M): the transposed product's dst */
    uint16_t *x16;       /* x rounded, per call */
    double *ref, *mag;   /* (M, N): the exact product of the rounded operands, and sum |x w| */
} Ctx;

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static float uniform_from(uint64_t *state) { /* splitmix64: in [-1, 1) */
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (float)((z ^ (z >> 31)) >> 40) / (float)(1 << 23) - 1.0f;
}
static float uniform(void) { return uniform_from(&g_rng); }
static float rounded(float v, MtpPrecision p) { return p == MTP_BF16 ? mtp_bf16_to_f32(mtp_f32_to_bf16(v)) : v; }

static void ctx_init(Ctx *c, int M, int N, int K, MtpPrecision p) {
    *c = (Ctx){.M = M, .N = N, .K = K, .p = p};
    c->W = xalloc((size_t)N * K * sizeof(float));
    c->x = xalloc((size_t)M * K * sizeof(float));
    c->y = xalloc((size_t)M * N * sizeof(float));
    c->t = xalloc((size_t)M * N * sizeof(float));
    c->x16 = xalloc((size_t)M * K * sizeof(uint16_t));
    c->ref = xalloc((size_t)M * N * sizeof(double));
    c->mag = xalloc((size_t)M * N * sizeof(double));
    /* W depends on its shape only: the row counts of a shape share its pools of weights */
    uint64_t w_rng = (uint64_t)N * 1000003u + (uint64_t)K;
    for (size_t i = 0; i < (size_t)N * K; i++) c->W[i] = 0.1f * uniform_from(&w_rng);
    for (size_t i = 0; i < (size_t)M * K; i++) c->x[i] = uniform();
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = 0, a = 0;
            for (int k = 0; k < K; k++) {
                const double v = (double)rounded(c->x[(size_t)m * K + k], p) * rounded(c->W[(size_t)n * K + k], p);
                s += v, a += fabs(v);
            }
            c->ref[(size_t)m * N + n] = s, c->mag[(size_t)m * N + n] = a;
        }
}
static void ctx_free(Ctx *c) {
    mtp_free(c->W), mtp_free(c->x), mtp_free(c->y), mtp_free(c->t), mtp_free(c->x16);
    mtp_free(c->ref), mtp_free(c->mag);
}

/* ---- pools: copies of one matrix in one layout ------------------------------------------------- */

typedef struct {
    int group, own;         /* runners of one group share a pool of equal layout; own: packed handles */
    dnnl_memory_desc_t md;  /* the layout (oneDNN methods) */
    char *base;
    size_t span;            /* bytes per copy, 64-byte multiple */
    int copies, cursor;     /* cursor: the copy read next, whichever runner reads it (two runners
                             * sharing a pool must not find the copies the other just read in cache) */
    MtpPackedWeight **pw;   /* own: one handle per copy */
} Pool;
static Pool g_pools[MAX_POOLS];
static int g_npools;

/* Enough copies that one cycle through them outgrows the last-level cache (one when only the
 * in-cache figures are asked for). */
static int pool_copies(size_t span) {
    if (!(G.where_mask & (1 << W_MEMORY))) return 1;
    return (int)((G.pool_bytes + span - 1) / span);
}

/* A pool of W (fp32 (N, K)) reordered into md; nk: md is (N, K) (inner product's weights, the
 * transposed product's src), else W^T (K, N) (matmul's weights). One reorder, then copies. */
static Pool *pool_dnnl(const Ctx *c, const dnnl_memory_desc_t *md, int nk, int group) {
    for (int i = 0; i < g_npools; i++)
        if (!g_pools[i].own && g_pools[i].group == group && dnnl_memory_desc_equal(&g_pools[i].md, md))
            return &g_pools[i];
    if (g_npools == MAX_POOLS) die("too many pools");
    Pool *pl = &g_pools[g_npools++];
    *pl = (Pool){.group = group, .md = *md};
    pl->span = (dnnl_memory_desc_get_size(md) + 63) & ~(size_t)63;
    pl->copies = pool_copies(pl->span);
    pl->base = xalloc(pl->span * pl->copies);
    dnnl_memory_desc_t w_md;
    dnnl_dims_t d_nk = {c->N, c->K}, d_kn = {c->K, c->N}, s_nk = {c->K, 1}, s_kn = {1, c->K};
    check_dnnl(dnnl_memory_desc_init_by_strides(&w_md, 2, nk ? d_nk : d_kn, dnnl_f32, nk ? s_nk : s_kn), "md");
    dnnl_memory_t from, to;
    dnnl_primitive_desc_t rpd;
    dnnl_primitive_t reorder;
    check_dnnl(dnnl_memory_create(&from, &w_md, G.eng, c->W), "memory_create");
    check_dnnl(dnnl_memory_create(&to, md, G.eng, pl->base), "memory_create");
    check_dnnl(dnnl_reorder_primitive_desc_create(&rpd, &w_md, G.eng, md, G.eng, NULL), "reorder pd");
    check_dnnl(dnnl_primitive_create(&reorder, rpd), "reorder create");
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    check_dnnl(dnnl_primitive_execute(reorder, G.stream, 2, args), "reorder");
    check_dnnl(dnnl_stream_wait(G.stream), "stream_wait");
    dnnl_primitive_destroy(reorder), dnnl_primitive_desc_destroy(rpd);
    dnnl_memory_destroy(from), dnnl_memory_destroy(to);
    for (int i = 1; i < pl->copies; i++) memcpy(pl->base + i * pl->span, pl->base, pl->span);
    return pl;
}

/* The own kernel's pool: every copy packed by the project's own call, laid out for the kernel. */
static Pool *pool_own(const Ctx *c, int group) {
    for (int i = 0; i < g_npools; i++)
        if (g_pools[i].own && g_pools[i].group == group) return &g_pools[i];
    if (g_npools == MAX_POOLS) die("too many pools");
    Pool *pl = &g_pools[g_npools++];
    *pl = (Pool){.group = group, .own = 1};
    mtp_small_kernel_use(c->p, G.own_k[c->p]); /* packing while a kernel serves: its layout */
    pl->span = mtp_packed_weight_bytes(c->N, c->K, c->p);
    pl->copies = pool_copies(pl->span);
    pl->base = xalloc(pl->span * pl->copies);
    pl->pw = calloc(pl->copies, sizeof *pl->pw);
    if (!pl->pw) die("out of memory");
    char *cursor = pl->base;
    for (int i = 0; i < pl->copies; i++)
        if (!(pl->pw[i] = mtp_pack_weight_at(&cursor, c->W, c->N, c->K, c->p))) die("out of memory packing");
    return pl;
}

static void pools_free(void) {
    for (int i = 0; i < g_npools; i++) {
        Pool *pl = &g_pools[i];
        if (pl->pw)
            for (int j = 0; j < pl->copies; j++) mtp_packed_weight_free(pl->pw[j]);
        free(pl->pw);
        mtp_free(pl->base);
    }
    g_npools = 0;
}

/* ---- runners: one method on one product -------------------------------------------------------- */

typedef struct {
    Method m;
    Ctx *c;
    Pool *pool;
    int ok, kernel; /* ok 0: oneDNN has no implementation (why says so) */
    dnnl_primitive_t prim;
    dnnl_memory_t src, wei, dst, scr;
    size_t scr_bytes;
    char impl[96], layout[96], why[64];
} Runner;

/* "BA16a64b2a (1.0 MB)": outer dimensions by falling stride (capitals: blocked), inner blocks. */
static void describe_md(char *out, size_t n, const dnnl_memory_desc_t *md) {
    if (md->format_kind != dnnl_blocked) {
        snprintf(out, n, "format_kind %d", (int)md->format_kind);
        return;
    }
    const dnnl_blocking_desc_t *b = &md->format_desc.blocking;
    int ord[DNNL_MAX_NDIMS], len = 0;
    for (int d = 0; d < md->ndims; d++) ord[d] = d;
    for (int i = 1; i < md->ndims; i++) /* insertion sort, largest stride first */
        for (int j = i; j > 0 && b->strides[ord[j]] > b->strides[ord[j - 1]]; j--) {
            int t = ord[j];
            ord[j] = ord[j - 1], ord[j - 1] = t;
        }
    for (int i = 0; i < md->ndims && len < (int)n - 1; i++) {
        int blocked = 0;
        for (int k = 0; k < b->inner_nblks; k++) blocked |= b->inner_idxs[k] == ord[i];
        out[len++] = (char)((blocked ? 'A' : 'a') + ord[i]);
    }
    for (int k = 0; k < b->inner_nblks && len < (int)n - 1; k++)
        len += snprintf(out + len, n - len, "%lld%c", (long long)b->inner_blks[k], (char)('a' + b->inner_idxs[k]));
    if (len < (int)n - 1) snprintf(out + len, n - len, " (%.0f KB)", dnnl_memory_desc_get_size(md) / 1024.0);
}

/* The primitive's operand descriptors for method m: src a, weights b, dst d. */
static void method_mds(const Runner *r, dnnl_memory_desc_t *a, dnnl_memory_desc_t *b, dnnl_memory_desc_t *d) {
    const Ctx *c = r->c;
    const dnnl_data_type_t dt = c->p == MTP_BF16 ? dnnl_bf16 : dnnl_f32;
    const int bf = c->p == MTP_BF16;
    dnnl_dims_t mk = {c->M, c->K}, kn = {c->K, c->N}, mn = {c->M, c->N}, nk = {c->N, c->K}, km = {c->K, c->M},
                nm = {c->N, c->M}, s_kx = {1, c->K};
    if (r->m == M_TRANS) { /* src W (N, K); weights x^T over x (M, K) row-major; dst (N, M) */
        check_dnnl(dnnl_memory_desc_init_by_tag(a, 2, nk, dt, dnnl_ab), "md");
        check_dnnl(dnnl_memory_desc_init_by_strides(b, 2, km, dt, s_kx), "md");
        check_dnnl(dnnl_memory_desc_init_by_tag(d, 2, nm, dnnl_f32, dnnl_ab), "md");
        return;
    }
    check_dnnl(dnnl_memory_desc_init_by_tag(a, 2, mk, dt, dnnl_ab), "md");
    check_dnnl(dnnl_memory_desc_init_by_tag(d, 2, mn, dnnl_f32, dnnl_ab), "md");
    switch (r->m) {
    case M_IP: check_dnnl(dnnl_memory_desc_init_by_tag(b, 2, nk, dt, dnnl_format_tag_any), "md"); break;
    case M_ANY: check_dnnl(dnnl_memory_desc_init_by_tag(b, 2, kn, dt, dnnl_format_tag_any), "md"); break;
    case M_B16: check_dnnl(dnnl_memory_desc_init_by_tag(b, 2, kn, dt, bf ? dnnl_BA16a16b2a : dnnl_BA16a16b), "md"); break;
    case M_B64: check_dnnl(dnnl_memory_desc_init_by_tag(b, 2, kn, dt, bf ? dnnl_BA16a64b2a : dnnl_BA16a64b), "md"); break;
    default: check_dnnl(dnnl_memory_desc_init_by_strides(b, 2, kn, dt, s_kx), "md"); break; /* plain W^T */
    }
}

/* Creates r's primitive (M known at creation), its weights pool and memories; r->ok = 0 when
 * oneDNN has no implementation for it. */
static void runner_dnnl(Runner *r, int group) {
    dnnl_memory_desc_t a, b, d;
    method_mds(r, &a, &b, &d);
    dnnl_primitive_attr_t attr;
    check_dnnl(dnnl_primitive_attr_create(&attr), "attr");
    check_dnnl(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user), "scratchpad mode");
    dnnl_primitive_desc_t pd;
    dnnl_status_t st;
    if (r->m == M_IP) {
        dnnl_inner_product_desc_t desc;
        check_dnnl(dnnl_inner_product_forward_desc_init(&desc, dnnl_forward_inference, &a, &b, NULL, &d), "ip desc");
        st = dnnl_primitive_desc_create(&pd, &desc, attr, G.eng, NULL);
    } else {
        dnnl_matmul_desc_t desc;
        check_dnnl(dnnl_matmul_desc_init(&desc, &a, &b, NULL, &d), "matmul desc");
        st = dnnl_primitive_desc_create(&pd, &desc, attr, G.eng, NULL);
    }
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) {
        snprintf(r->why, sizeof r->why, "no implementation (status %d)", (int)st);
        return;
    }
    const char *impl = "?";
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    snprintf(r->impl, sizeof r->impl, "%s", impl);
    const dnnl_memory_desc_t sa = *dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    const dnnl_memory_desc_t sb = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t sd = *dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    const dnnl_memory_desc_t *wmd = r->m == M_TRANS ? &sa : &sb; /* the fixed operand: W */
    describe_md(r->layout, sizeof r->layout, wmd);
    r->pool = pool_dnnl(r->c, wmd, r->m == M_TRANS || r->m == M_IP, group);
    check_dnnl(dnnl_primitive_create(&r->prim, pd), "primitive_create");
    check_dnnl(dnnl_memory_create(&r->src, &sa, G.eng, DNNL_MEMORY_NONE), "memory_create");
    check_dnnl(dnnl_memory_create(&r->wei, &sb, G.eng, DNNL_MEMORY_NONE), "memory_create");
    check_dnnl(dnnl_memory_create(&r->dst, &sd, G.eng, DNNL_MEMORY_NONE), "memory_create");
    const dnnl_memory_desc_t *s_md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    r->scr_bytes = s_md ? dnnl_memory_desc_get_size(s_md) : 0;
    if (r->scr_bytes) check_dnnl(dnnl_memory_create(&r->scr, s_md, G.eng, DNNL_MEMORY_NONE), "memory_create");
    if (r->scr_bytes > G.scratch_cap) {
        mtp_free(G.scratch);
        G.scratch = xalloc(r->scr_bytes);
        G.scratch_cap = r->scr_bytes;
    }
    dnnl_primitive_desc_destroy(pd);
    r->ok = 1;
}

/* Sets up method m on c; own methods take kernel k (-1: this CPU has none, r->ok = 0). */
static void runner_init(Runner *r, Method m, Ctx *c, int group) {
    *r = (Runner){.m = m, .c = c, .kernel = -1};
    if (m == M_OWN || m == M_OWN_DOT) {
        r->kernel = m == M_OWN ? G.own_k[c->p] : c->p == MTP_BF16 ? G.dot_k : -1;
        if (r->kernel < 0) {
            snprintf(r->why, sizeof r->why, "not on this CPU");
            return;
        }
        r->pool = pool_own(c, group);
        snprintf(r->impl, sizeof r->impl, "mtp %s", mtp_small_kernel_name((MtpSmallKernel)r->kernel));
        snprintf(r->layout, sizeof r->layout, "%s (%.0f KB)", c->p == MTP_BF16 ? "BA16a16b2a" : "BA16a16b",
                 r->pool->span / 1024.0);
        r->ok = 1;
        return;
    }
    runner_dnnl(r, group);
}

static void runner_free(Runner *r) {
    if (r->prim) dnnl_primitive_destroy(r->prim);
    if (r->src) dnnl_memory_destroy(r->src), dnnl_memory_destroy(r->wei), dnnl_memory_destroy(r->dst);
    if (r->scr) dnnl_memory_destroy(r->scr);
}

/* One product, on the next of the first `copies` copies of the weights. */
static void runner_call(Runner *r, int copies) {
    Ctx *c = r->c;
    const int copy = r->pool->cursor % copies;
    r->pool->cursor = copy + 1;
    if (r->m == M_OWN || r->m == M_OWN_DOT) { /* the kernel rounds and transposes the rows itself */
        mtp_matmul_packed(c->y, c->x, c->M, r->pool->pw[copy], 0);
        return;
    }
    const void *x = c->x;
    if (c->p == MTP_BF16) mtp_round_to_bf16(c->x16, c->x, (size_t)c->M * c->K), x = c->x16;
    void *w = r->pool->base + (size_t)copy * r->pool->span;
    const int tr = r->m == M_TRANS;
    check_dnnl(dnnl_memory_set_data_handle(r->src, tr ? w : (void *)x), "set_data_handle");
    check_dnnl(dnnl_memory_set_data_handle(r->wei, tr ? (void *)x : w), "set_data_handle");
    check_dnnl(dnnl_memory_set_data_handle(r->dst, tr ? c->t : c->y), "set_data_handle");
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, r->src}, {DNNL_ARG_WEIGHTS, r->wei}, {DNNL_ARG_DST, r->dst},
                               {DNNL_ARG_SCRATCHPAD, r->scr}};
    if (r->scr_bytes) check_dnnl(dnnl_memory_set_data_handle(r->scr, G.scratch), "set_data_handle");
    check_dnnl(dnnl_primitive_execute(r->prim, G.stream, r->scr_bytes ? 4 : 3, args), "execute");
    check_dnnl(dnnl_stream_wait(G.stream), "stream_wait");
    if (tr) /* C^T (N, M) back into (M, N) */
        for (int m = 0; m < c->M; m++)
            for (int n = 0; n < c->N; n++) c->y[(size_t)m * c->N + n] = c->t[(size_t)n * c->M + m];
}

static void runner_select(const Runner *r) {
    if (r->kernel >= 0 && mtp_small_kernel_use(r->c->p, (MtpSmallKernel)r->kernel) != 0) die("kernel refused");
}

/* Checks r on the first and last copy of its weights: the error of every output relative to the
 * sum of |x w| over its terms must stay below 1e-4, or the comparison would not be honest. */
static void runner_check(Runner *r, const char *shape) {
    const Ctx *c = r->c;
    runner_select(r);
    const int last = r->pool->copies - 1;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < (size_t)c->M * c->N; i++) c->y[i] = NAN;
        r->pool->cursor = pass ? last : 0;
        runner_call(r, r->pool->copies);
        double worst = 0;
        for (size_t i = 0; i < (size_t)c->M * c->N; i++) {
            const double e = fabs(c->y[i] - c->ref[i]) / (c->mag[i] + 1e-30);
            if (!(e < worst)) worst = e; /* NaN counts as worst */
        }
        if (!(worst < 1e-4)) {
            fprintf(stderr, "mtp_onednn_options: %s %s (%d x %d x %d, %s) is wrong: relative error %.3g\n",
                    method_names[c->p][r->m], shape, c->M, c->N, c->K, mtp_precision_name(c->p), worst);
            exit(1);
        }
    }
}

/* ---- timing ----------------------------------------------------------------------------------- */

/* What one timed block runs: one runner, or two in a row (two products of the split matrices). */
typedef struct {
    Runner *r[2];
    int nr, calls[N_WHERE];
    double *samples[N_WHERE], med[N_WHERE]; /* seconds per call */
} Variant;

static int copies_for(const Runner *r, int where) { return where == W_CACHE ? 1 : r->pool->copies; }

/* Seconds per call of a block of `calls` calls, after one untimed call (the caches of the in-cache
 * figure; the other methods' blocks ran in between). */
static double time_block(Variant *v, int where, int calls) {
    runner_select(v->r[0]);
    for (int j = 0; j < v->nr; j++) runner_call(v->r[j], copies_for(v->r[j], where));
    const double t0 = mtp_now();
    for (int i = 0; i < calls; i++)
        for (int j = 0; j < v->nr; j++) runner_call(v->r[j], copies_for(v->r[j], where));
    return (mtp_now() - t0) / calls;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Calibrates each variant's block to about --target-ms, then times the blocks round-robin (the
 * start rotating), --repeats times, and keeps the medians: load from other processes then falls
 * on every method alike. */
static void measure(Variant *v, int nv) {
    for (int i = 0; i < nv; i++)
        for (int w = 0; w < N_WHERE; w++) {
            v[i].med[w] = NAN;
            if (!(G.where_mask & (1 << w)) || !v[i].r[0]->ok) continue;
            double t = time_block(&v[i], w, 1);
            int calls = (int)(G.target_s / (t > 1e-9 ? t : 1e-9)) + 1;
            v[i].calls[w] = calls < 1 ? 1 : calls > 100000 ? 100000 : calls;
            v[i].samples[w] = calloc(G.repeats, sizeof(double));
            if (!v[i].samples[w]) die("out of memory");
        }
    for (int rep = 0; rep < G.repeats; rep++)
        for (int k = 0; k < nv; k++) {
            Variant *x = &v[(k + rep) % nv];
            for (int w = 0; w < N_WHERE; w++)
                if (x->samples[w]) x->samples[w][rep] = time_block(x, w, x->calls[w]);
        }
    for (int i = 0; i < nv; i++)
        for (int w = 0; w < N_WHERE; w++)
            if (v[i].samples[w]) {
                qsort(v[i].samples[w], G.repeats, sizeof(double), cmp_double);
                v[i].med[w] = G.repeats % 2 ? v[i].samples[w][G.repeats / 2]
                                            : 0.5 * (v[i].samples[w][G.repeats / 2 - 1] + v[i].samples[w][G.repeats / 2]);
                free(v[i].samples[w]);
                v[i].samples[w] = NULL;
            }
}

/* ---- one shape: every method at every row count ------------------------------------------------ */

typedef struct {
    int ok;
    double us[N_WHERE];
    char impl[96], layout[96], why[64];
} Res;
typedef Res ModelRes[MAX_SHAPES][MAX_ROWS][N_METHODS];

static void measure_shape(const Shape *s, MtpPrecision p, Res res[MAX_ROWS][N_METHODS]) {
    static Ctx ctx[MAX_ROWS];
    static Runner run[MAX_ROWS][N_METHODS];
    static Variant var[MAX_ROWS * N_METHODS];
    int nv = 0;
    for (int i = 0; i < G.nrows; i++) {
        ctx_init(&ctx[i], G.rows[i], s->N, s->K, p);
        for (int m = 0; m < N_METHODS; m++) {
            Runner *r = &run[i][m];
            runner_init(r, (Method)m, &ctx[i], 0);
            if (r->ok) runner_check(r, s->what);
            var[nv++] = (Variant){.r = {r}, .nr = 1};
        }
    }
    fprintf(stderr, "[onednn_options] %s %s (%d, %d): all methods checked, %d weight pools; timing\n",
            mtp_precision_name(p), s->what, s->N, s->K, g_npools);
    measure(var, nv);
    for (int i = 0; i < G.nrows; i++)
        for (int m = 0; m < N_METHODS; m++) {
            const Runner *r = &run[i][m];
            Res *o = &res[i][m];
            *o = (Res){.ok = r->ok};
            for (int w = 0; w < N_WHERE; w++) o->us[w] = var[i * N_METHODS + m].med[w] * 1e6;
            snprintf(o->impl, sizeof o->impl, "%s", r->impl);
            snprintf(o->layout, sizeof o->layout, "%s", r->layout);
            snprintf(o->why, sizeof o->why, "%s", r->why);
            runner_free(&run[i][m]);
        }
    for (int i = 0; i < G.nrows; i++) ctx_free(&ctx[i]);
    pools_free();
}

/* ---- printing ---------------------------------------------------------------------------------- */

static int method_shown(Method m, MtpPrecision p) { return !(m == M_OWN_DOT && p == MTP_FP32); }

/* The sum over the model's shapes of a method's median (a pass's products); NAN when one is missing. */
static double total_us(const Model *md, ModelRes res, int i, int m, int w) {
    double t = 0;
    for (int s = 0; s < md->n; s++) t += res[s][i][m].ok ? res[s][i][m].us[w] : NAN;
    return t;
}

static void print_key_table(const Model *md, MtpPrecision p, ModelRes res, int w) {
    printf("### %s, %s, weights %s: µs per pass (sum of the %d products), ratio to own\n\n", md->name,
           mtp_precision_name(p), where_names[w], md->n);
    printf("| rows |");
    for (int m = 0; m < N_METHODS; m++)
        if (method_shown(m, p)) printf(" %s |", method_names[p][m]);
    printf("\n| --- |");
    for (int m = 0; m < N_METHODS; m++)
        if (method_shown(m, p)) printf(" --- |");
    printf("\n");
    for (int i = 0; i < G.nrows; i++) {
        /* own: the faster of the own kernels in bf16 (the project times both and keeps the faster) */
        double base = total_us(md, res, i, M_OWN, w), dot = total_us(md, res, i, M_OWN_DOT, w);
        if (p == MTP_BF16 && dot < base) base = dot;
        printf("| %d |", G.rows[i]);
        for (int m = 0; m < N_METHODS; m++) {
            if (!method_shown(m, p)) continue;
            const double t = total_us(md, res, i, m, w);
            if (isnan(t)) printf(" n/a |");
            else printf(" %.1f (%.2f) |", t, t / base);
        }
        printf("\n");
    }
    printf("\n");
}

/* Each shape x method: the implementation oneDNN chose and the weights' layout, row counts with
 * the same answer on one line. */
static void print_layouts(const Model *md, MtpPrecision p, ModelRes res) {
    printf("### %s, %s: implementations and weight layouts\n\n", md->name, mtp_precision_name(p));
    printf("Layout letters: matmul weights W^T are (K, N): a = K (inputs), b = N (outputs); the inner product's\n"
           "weights and the transposed product's src are (N, K): a = N, b = K. Capitals: blocked dimensions.\n\n");
    printf("| shape (N, K) | method | rows | implementation | weights layout (size) |\n| --- | --- | --- | --- | --- |\n");
    for (int s = 0; s < md->n; s++)
        for (int m = 0; m < N_METHODS; m++) {
            if (!method_shown(m, p)) continue;
            for (int i = 0; i < G.nrows;) {
                const Res *a = &res[s][i][m];
                int j = i + 1;
                while (j < G.nrows && !strcmp(res[s][j][m].impl, a->impl) && !strcmp(res[s][j][m].layout, a->layout) &&
                       !strcmp(res[s][j][m].why, a->why))
                    j++;
                char rows[64];
                int len = 0;
                for (int k = i; k < j && len < (int)sizeof rows - 8; k++)
                    len += snprintf(rows + len, sizeof rows - len, "%s%d", k > i ? "," : "", G.rows[k]);
                printf("| %s (%d, %d) | %s | %s | %s | %s |\n", md->s[s].what, md->s[s].N, md->s[s].K,
                       method_names[p][m], rows, a->ok ? a->impl : a->why, a->ok ? a->layout : "");
                i = j;
            }
        }
    printf("\n");
}

static void print_details(const Model *md, MtpPrecision p, ModelRes res) {
    printf("### %s, %s: each product, µs / GB/s of weights / GFLOP/s (medians)\n\n", md->name, mtp_precision_name(p));
    for (int s = 0; s < md->n; s++) {
        const Shape *sh = &md->s[s];
        const double wbytes = (double)sh->N * sh->K * (p == MTP_BF16 ? 2 : 4);
        printf("%s (N %d, K %d), %.0f KB of weights\n\n| rows | weights |", sh->what, sh->N, sh->K, wbytes / 1024);
        for (int m = 0; m < N_METHODS; m++)
            if (method_shown(m, p)) printf(" %s |", method_names[p][m]);
        printf("\n| --- | --- |");
        for (int m = 0; m < N_METHODS; m++)
            if (method_shown(m, p)) printf(" --- |");
        printf("\n");
        for (int i = 0; i < G.nrows; i++)
            for (int w = 0; w < N_WHERE; w++) {
                if (!(G.where_mask & (1 << w))) continue;
                printf("| %d | %s |", G.rows[i], w == W_MEMORY ? "memory" : "cache");
                for (int m = 0; m < N_METHODS; m++) {
                    if (!method_shown(m, p)) continue;
                    const Res *r = &res[s][i][m];
                    if (!r->ok) printf(" n/a |");
                    else printf(" %.2f / %.1f / %.1f |", r->us[w], wbytes / r->us[w] / 1e3,
                                2.0 * G.rows[i] * sh->N * sh->K / r->us[w] / 1e3);
                }
                printf("\n");
            }
        printf("\n");
    }
}

/* ---- stacking ---------------------------------------------------------------------------------- */

/* One product of the stacked (2F, D) matrix against two of (F, D) (their own copies of weights),
 * through matmul_any and through the own kernel (the project's default kernel). */
static void stacked(const Model *md, MtpPrecision p) {
    const Shape *s = &md->s[md->stack];
    static Ctx c2[MAX_ROWS], c1[MAX_ROWS];
    static Runner run[MAX_ROWS][6];
    static Variant var[MAX_ROWS * 4];
    const int saved = G.own_k[p];
    G.own_k[p] = G.default_k[p];
    for (int i = 0; i < G.nrows; i++) {
        ctx_init(&c2[i], G.rows[i], s->N, s->K, p);
        ctx_init(&c1[i], G.rows[i], s->N / 2, s->K, p);
        for (int k = 0; k < 6; k++) { /* any: 2F, F, F; own: 2F, F, F; groups keep the F copies apart */
            Runner *r = &run[i][k];
            runner_init(r, k < 3 ? M_ANY : M_OWN, k % 3 ? &c1[i] : &c2[i], k % 3);
            if (!r->ok) die("stacked: a method is missing");
            runner_check(r, "stacked");
        }
        for (int k = 0; k < 4; k++) {
            Runner *a = &run[i][k < 2 ? 0 : 3];
            var[i * 4 + k] = k % 2 ? (Variant){.r = {a + 1, a + 2}, .nr = 2} : (Variant){.r = {a}, .nr = 1};
        }
    }
    fprintf(stderr, "[onednn_options] %s %s stacked: timing\n", md->name, mtp_precision_name(p));
    measure(var, G.nrows * 4);
    printf("### %s, %s: what stacking buys (w1|w3)\n\n", md->name, mtp_precision_name(p));
    printf("The project already stacks its products that share an input: q/k/v are one (3D, D) matrix, w1/w3 one\n"
           "(2F, D) matrix, and the linear drafting heads one stacked matrix. Below: one product of the (%d, %d)\n"
           "matrix against two of (%d, %d), µs (medians); own is the project's default kernel here (%s).\n\n",
           s->N, s->K, s->N / 2, s->K, mtp_small_kernel_name((MtpSmallKernel)G.own_k[p]));
    printf("| rows | weights | any 1x(2F,D) | any 2x(F,D) | 2x / 1x | own 1x(2F,D) | own 2x(F,D) | 2x / 1x |\n"
           "| --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for (int i = 0; i < G.nrows; i++)
        for (int w = 0; w < N_WHERE; w++) {
            if (!(G.where_mask & (1 << w))) continue;
            const Variant *v = &var[i * 4];
            printf("| %d | %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |\n", G.rows[i], w == W_MEMORY ? "memory" : "cache",
                   v[0].med[w] * 1e6, v[1].med[w] * 1e6, v[1].med[w] / v[0].med[w], v[2].med[w] * 1e6,
                   v[3].med[w] * 1e6, v[3].med[w] / v[2].med[w]);
        }
    printf("\n");
    for (int i = 0; i < G.nrows; i++) {
        for (int k = 0; k < 6; k++) runner_free(&run[i][k]);
        ctx_free(&c2[i]), ctx_free(&c1[i]);
    }
    pools_free();
    G.own_k[p] = saved;
}

/* ---- setup and main ---------------------------------------------------------------------------- */

/* The own kernels this CPU runs: the widest fp32-arithmetic one per precision, and the bf16 dot
 * one; and the project's default (its own choice, timed in bf16), noted before any is forced. */
static void pick_kernels(void) {
    for (int p = 0; p < 2; p++) {
        G.default_k[p] = (int)mtp_small_kernel((MtpPrecision)p);
        G.own_k[p] = -1;
        const MtpSmallKernel order[2] = {MTP_SMALL_AVX512, MTP_SMALL_AVX2};
        for (int i = 0; i < 2 && G.own_k[p] < 0; i++)
            if (mtp_small_kernel_use((MtpPrecision)p, order[i]) == 0) G.own_k[p] = (int)order[i];
        if (G.default_k[p] == MTP_SMALL_ONEDNN) G.default_k[p] = G.own_k[p];
    }
    G.dot_k = mtp_small_kernel_use(MTP_BF16, MTP_SMALL_AVX512_DOT) == 0 ? MTP_SMALL_AVX512_DOT : -1;
    if (G.own_k[0] < 0) die("this CPU runs none of the own kernels (AVX2 at least)");
}

static void print_header(int argc, char **argv) {
    char cpu[256] = "?", line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
            snprintf(cpu, sizeof cpu, "%s", strchr(line, ':') + 2);
            cpu[strcspn(cpu, "\n")] = 0;
            break;
        }
    if (f) fclose(f);
    double load[3] = {0};
    if ((f = fopen("/proc/loadavg", "r"))) {
        if (fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) load[0] = -1;
        fclose(f);
    }
    char date[64];
    const time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S%z", localtime(&now));
    const dnnl_version_t *v = dnnl_version();
    printf("# oneDNN options for products of a few rows (y = x W^T), against the own kernel\n\n");
    printf("- date: %s; CPU: %s; load average at start: %.2f %.2f %.2f\n", date, cpu, load[0], load[1], load[2]);
    printf("- oneDNN %d.%d.%d (%s); 1 thread; own kernels: fp32 %s, bf16 %s%s%s (project default: fp32 %s, bf16 %s)\n",
           v->major, v->minor, v->patch, v->hash, mtp_small_kernel_name((MtpSmallKernel)G.own_k[0]),
           G.own_k[1] >= 0 ? mtp_small_kernel_name((MtpSmallKernel)G.own_k[1]) : "none", G.dot_k >= 0 ? " and " : "",
           G.dot_k >= 0 ? "avx512-dot" : "", mtp_small_kernel_name((MtpSmallKernel)G.default_k[0]),
           mtp_small_kernel_name((MtpSmallKernel)G.default_k[1]));
    printf("- command:");
    for (int i = 0; i < argc; i++) printf(" %s", argv[i]);
    printf("\n- each figure: the median of %d blocks of about %.1f ms, every method's blocks round-robin in one\n"
           "  process; \"from memory\": each matrix cycles through %.0f MB of copies of itself; \"in cache\": one copy\n",
           G.repeats, G.target_s * 1e3, G.pool_bytes / 1048576.0);
    printf("- bf16: x rounded to bf16 inside every timed call, W once outside; dst fp32. Every method was checked\n"
           "  against a double loop on the same rounded operands (max error / sum |x w| < 1e-4).\n");
    printf("- own: in bf16 the ratio's base is the faster of own (avx512, widened) and own_dot per row count.\n\n");
}

static void usage(void) {
    fprintf(stderr,
            "usage: mtp_onednn_options [--shape N,K]... [--rows 1,2,4] [--repeats R] [--precision fp32|bf16|both]\n"
            "                          [--where memory|cache|both] [--pool-mb MB] [--target-ms MS]\n"
            "  --shape N,K   a product y (M, N) = x (M, K) W^T (repeatable; default: the arith4 and 25M shapes)\n"
            "  --rows LIST   row counts M (default 1,2,3,4,6,8,12,16; at most %d, each <= %d)\n"
            "  --repeats R   timed blocks per figure, median kept (default 15)\n"
            "  --where W     weights from memory (cycled copies), in cache (one copy), or both (default)\n"
            "  --pool-mb MB  bytes of copies per matrix for \"from memory\" (default 80: past a 32 MB L3)\n"
            "  --target-ms T length of a timed block (default 1)\n",
            MAX_ROWS, MTP_SMALL_ROWS_MAX);
    exit(2);
}

/* Parses the command line into G and the custom model (n 0: the default models). */
static void parse_args(int argc, char **argv, Model *custom, int *precs) {
    *custom = (Model){"custom", "shapes from --shape", 0, -1, {{0}}};
    *precs = 3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) usage();
        if (!v) usage();
        i++;
        if (!strcmp(a, "--shape")) {
            Shape *s = &custom->s[custom->n];
            if (custom->n == MAX_SHAPES || sscanf(v, "%d,%d", &s->N, &s->K) != 2 || s->N < 1 || s->K < 1) usage();
            s->what = "shape", custom->n++;
        } else if (!strcmp(a, "--rows")) {
            G.nrows = 0;
            for (const char *q = v; *q; q += strcspn(q, ",") + (q[strcspn(q, ",")] == ',')) {
                const int r = atoi(q);
                if (G.nrows == MAX_ROWS || r < 1 || r > MTP_SMALL_ROWS_MAX) usage();
                G.rows[G.nrows++] = r;
            }
            if (!G.nrows) usage();
        } else if (!strcmp(a, "--repeats")) {
            if ((G.repeats = atoi(v)) < 1) usage();
        } else if (!strcmp(a, "--precision")) {
            *precs = !strcmp(v, "fp32") ? 1 : !strcmp(v, "bf16") ? 2 : !strcmp(v, "both") ? 3 : 0;
            if (!*precs) usage();
        } else if (!strcmp(a, "--where")) {
            G.where_mask = !strcmp(v, "memory") ? 1 : !strcmp(v, "cache") ? 2 : !strcmp(v, "both") ? 3 : 0;
            if (!G.where_mask) usage();
        } else if (!strcmp(a, "--pool-mb")) {
            const double mb = atof(v);
            if (mb <= 0) usage();
            G.pool_bytes = (size_t)(mb * 1048576.0);
        } else if (!strcmp(a, "--target-ms")) {
            if ((G.target_s = atof(v) * 1e-3) <= 0) usage();
        } else {
            usage();
        }
    }
}

int main(int argc, char **argv) {
    Model custom;
    int precs;
    parse_args(argc, argv, &custom, &precs);
    char err[256];
    if (mtp_core_init(1, MTP_FP32, err, sizeof err) != 0) die(err);
    check_dnnl(dnnl_engine_create(&G.eng, dnnl_cpu, 0), "engine_create");
    check_dnnl(dnnl_stream_create(&G.stream, G.eng, dnnl_stream_default_flags), "stream_create");
    pick_kernels();
    print_header(argc, argv);
    const Model *models[2] = {&model_arith4, &model_big};
    const int nmodels = custom.n ? 1 : 2;
    if (custom.n) models[0] = &custom;
    static ModelRes res;
    const double t0 = mtp_now();
    for (int k = 0; k < nmodels; k++)
        for (int p = 0; p < 2; p++) {
            if (!(precs & (1 << p)) || (p == MTP_BF16 && G.own_k[p] < 0)) continue;
            const Model *md = models[k];
            printf("## %s (%s), %s\n\n", md->name, md->about, mtp_precision_name((MtpPrecision)p));
            for (int s = 0; s < md->n; s++) measure_shape(&md->s[s], (MtpPrecision)p, res[s]);
            for (int w = 0; w < N_WHERE; w++)
                if (G.where_mask & (1 << w)) print_key_table(md, (MtpPrecision)p, res, w);
            if (md->stack >= 0) stacked(md, (MtpPrecision)p);
            print_layouts(md, (MtpPrecision)p, res);
            print_details(md, (MtpPrecision)p, res);
            fflush(stdout);
        }
    double load = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &load) != 1) load = -1;
        fclose(f);
    }
    printf("(%.0f s in all; load average at the end: %.2f)\n", mtp_now() - t0, load);
    mtp_free(G.scratch);
    dnnl_stream_destroy(G.stream);
    dnnl_engine_destroy(G.eng);
    mtp_core_shutdown();
    return 0;
}
