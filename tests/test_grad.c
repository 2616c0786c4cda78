/* test_grad.c - every backward pass against central finite differences.
 *
 * Each layer is wrapped in a scalar loss L = sum(out * R) for a fixed random R, so that its
 * backward pass fed with dout = R must give dL/dx. The whole model's loss is the training
 * objective itself (sum over heads of the mean cross-entropy). Products run in fp32 through oneDNN.
 * Checks: random coordinates, the largest-gradient coordinates, and one random direction per
 * tensor (which tests the whole gradient vector at once). */
#include <stdlib.h>
#include <string.h>

#include "mtp/mtp.h"
#include "tests/test.h"

static MtpRng g_rng;

static float *randn(size_t n, float scale) {
    float *x = mtp_calloc(n, sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = (float)(scale * mtp_rng_normal(&g_rng));
    return x;
}

typedef double (*LossFn)(void *ctx);

/* Compares analytic gradient g of loss() w.r.t. x[0..n) against central differences. */
static void fd_check(const char *what, float *x, const float *g, size_t n, LossFn loss, void *ctx, double eps,
                     double rtol, double atol) {
    size_t idx[12];
    int k = 0;
    for (; k < 6; k++) idx[k] = mtp_rng_below(&g_rng, n);
    for (int j = 0; j < 6 && j < (int)n; j++) { /* the six largest |g| */
        size_t best = 0;
        double bv = -1;
        for (size_t i = 0; i < n; i++) {
            int taken = 0;
            for (int q = 6; q < k; q++) taken |= idx[q] == i;
            if (!taken && fabs(g[i]) > bv) bv = fabs(g[i]), best = i;
        }
        idx[k++] = best;
    }
    for (int q = 0; q < k; q++) {
        size_t i = idx[q];
        float x0 = x[i];
        x[i] = (float)(x0 + eps);
        double lp = loss(ctx);
        x[i] = (float)(x0 - eps);
        double lm = loss(ctx);
        x[i] = x0;
        double fd = (lp - lm) / (2 * eps);
        CHECK_MSG(fabs(fd - g[i]) <= atol + rtol * fmax(fabs(fd), fabs(g[i])), "%s[%zu]: finite difference %.6g, backward %.6g",
                  what, i, fd, (double)g[i]);
    }
    /* directional derivative along a random unit direction u */
    float *x0 = malloc(n * sizeof(float)), *u = randn(n, 1.0f);
    double norm = 0, gu = 0;
    for (size_t i = 0; i < n; i++) norm += (double)u[i] * u[i];
    norm = sqrt(norm);
    for (size_t i = 0; i < n; i++) u[i] = (float)(u[i] / norm), gu += (double)g[i] * u[i];
    memcpy(x0, x, n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = (float)(x0[i] + eps * u[i]);
    double lp = loss(ctx);
    for (size_t i = 0; i < n; i++) x[i] = (float)(x0[i] - eps * u[i]);
    double lm = loss(ctx);
    memcpy(x, x0, n * sizeof(float));
    double fd = (lp - lm) / (2 * eps);
    CHECK_MSG(fabs(fd - gu) <= atol + rtol * fmax(fabs(fd), fabs(gu)), "%s along a random direction: finite difference %.6g, backward %.6g",
              what, fd, gu);
    free(x0);
    mtp_free(u);
}

static double dot(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* ---- single layers -------------------------------------------------------------------------- */

enum { B = 2, T = 8, D = 16, H = 2, F = 24, M = B * T, HD = D / H };

typedef struct {
    float *inp, *w, *out, *rstd, *R;
} NormCtx;
static double norm_loss(void *p) {
    NormCtx *c = p;
    mtp_rmsnorm_forward(c->out, c->rstd, c->inp, c->w, M, D);
    return dot(c->out, c->R, (size_t)M * D);
}

static void test_rmsnorm(void) {
    NormCtx c = {randn(M * D, 1), randn(D, 1), randn(M * D, 1), randn(M, 1), randn(M * D, 1)};
    float *dinp = mtp_calloc(M * D, 4), *dw = mtp_calloc(D, 4);
    norm_loss(&c);
    mtp_rmsnorm_backward(dinp, dw, c.R, c.inp, c.w, c.rstd, M, D);
    fd_check("rmsnorm d inp", c.inp, dinp, M * D, norm_loss, &c, 1e-2, 1e-2, 1e-4);
    fd_check("rmsnorm d weight", c.w, dw, D, norm_loss, &c, 1e-2, 1e-2, 1e-4);
    mtp_free(c.inp), mtp_free(c.w), mtp_free(c.out), mtp_free(c.rstd), mtp_free(c.R), mtp_free(dinp), mtp_free(dw);
}

typedef struct {
    float *h13, *g, *R;
} SwiCtx;
static double swiglu_loss(void *p) {
    SwiCtx *c = p;
    mtp_swiglu_forward(c->g, c->h13, M, F);
    return dot(c->g, c->R, (size_t)M * F);
}

typedef struct {
    float *inp, *u, *out, *R;
} SiluCtx;
static double silu_loss(void *p) {
    SiluCtx *c = p;
    mtp_silu_residual_forward(c->out, c->inp, c->u, (size_t)M * D);
    return dot(c->out, c->R, (size_t)M * D);
}

static void test_elementwise(void) {
    SwiCtx s = {randn(M * 2 * F, 2), randn(M * F, 1), randn(M * F, 1)};
    float *dh = mtp_calloc(M * 2 * F, 4);
    mtp_swiglu_backward(dh, s.R, s.h13, M, F);
    fd_check("swiglu d h13", s.h13, dh, M * 2 * F, swiglu_loss, &s, 1e-2, 1e-2, 1e-4);
    SiluCtx l = {randn(M * D, 1), randn(M * D, 2), randn(M * D, 1), randn(M * D, 1)};
    float *du = mtp_calloc(M * D, 4);
    mtp_silu_backward(du, l.R, l.u, M * D);
    fd_check("silu residual d u", l.u, du, M * D, silu_loss, &l, 1e-2, 1e-2, 1e-4);
    mtp_free(s.h13), mtp_free(s.g), mtp_free(s.R), mtp_free(dh);
    mtp_free(l.inp), mtp_free(l.u), mtp_free(l.out), mtp_free(l.R), mtp_free(du);
}

typedef struct {
    float *s, *att, *R;
    float scale;
} SoftCtx;
static double softmax_loss(void *p) {
    SoftCtx *c = p;
    memcpy(c->att, c->s, (size_t)B * H * T * T * 4);
    mtp_causal_softmax_forward(c->att, B * H, T, c->scale, T);
    return dot(c->att, c->R, (size_t)B * H * T * T);
}

static void test_softmax(void) {
    size_t n = (size_t)B * H * T * T;
    SoftCtx c = {randn(n, 2), mtp_calloc(n, 4), randn(n, 1), 0.5f};
    softmax_loss(&c);
    float *d = mtp_calloc(n, 4);
    memcpy(d, c.R, n * 4);
    mtp_causal_softmax_backward(d, c.att, B * H, T, c.scale, T);
    fd_check("causal softmax d scores", c.s, d, n, softmax_loss, &c, 1e-2, 1e-2, 1e-4);
    /* the masked (future) part of a row gets exactly zero gradient and probability */
    CHECK(c.att[1] == 0.0f && d[1] == 0.0f);
    mtp_free(c.s), mtp_free(c.att), mtp_free(c.R), mtp_free(d);
}

typedef struct {
    float *qkv, *q, *k, *v, *cs, *sn, *Rq, *Rk, *Rv;
} RopeCtx;
static double rope_loss(void *p) {
    RopeCtx *c = p;
    mtp_qkv_split_rope(c->q, c->k, c->v, c->qkv, c->cs, c->sn, B, T, H, HD);
    size_t n = (size_t)M * D;
    return dot(c->q, c->Rq, n) + dot(c->k, c->Rk, n) + dot(c->v, c->Rv, n);
}

static void test_rope(void) {
    RopeCtx c = {randn(M * 3 * D, 1), mtp_calloc(M * D, 4), mtp_calloc(M * D, 4), mtp_calloc(M * D, 4),
                 mtp_calloc(T * HD / 2, 4), mtp_calloc(T * HD / 2, 4), randn(M * D, 1), randn(M * D, 1),
                 randn(M * D, 1)};
    mtp_rope_tables(c.cs, c.sn, T, HD);
    float *d = mtp_calloc(M * 3 * D, 4);
    mtp_qkv_merge_unrope(d, c.Rq, c.Rk, c.Rv, c.cs, c.sn, B, T, H, HD);
    fd_check("qkv split + rope d qkv", c.qkv, d, M * 3 * D, rope_loss, &c, 1e-2, 1e-2, 1e-4);
    /* position 0 is not rotated; rotation preserves each pair's length */
    rope_loss(&c);
    CHECK(c.q[0] == c.qkv[0] && c.q[1] == c.qkv[1]);
    size_t o = (size_t)3 * HD; /* b 0, h 0, t 3 */
    const float *src = c.qkv + 3 * 3 * D;
    CHECK_CLOSE(c.q[o] * c.q[o] + c.q[o + 1] * c.q[o + 1], src[0] * src[0] + src[1] * src[1], 1e-5, 1e-5);
    mtp_free(c.qkv), mtp_free(c.q), mtp_free(c.k), mtp_free(c.v), mtp_free(c.cs), mtp_free(c.sn);
    mtp_free(c.Rq), mtp_free(c.Rk), mtp_free(c.Rv), mtp_free(d);
}

enum { V = 11 };
typedef struct {
    float *logits;
    int32_t *targets;
} CeCtx;
static double ce_loss(void *p) {
    CeCtx *c = p;
    return mtp_cross_entropy_loss(c->logits, c->targets, M, V, NULL);
}

static void test_cross_entropy(void) {
    CeCtx c = {randn(M * V, 2), malloc(M * 4)};
    for (int m = 0; m < M; m++) c.targets[m] = m % 5 == 4 ? -1 : (int32_t)mtp_rng_below(&g_rng, V);
    float *g = mtp_calloc(M * V, 4);
    memcpy(g, c.logits, M * V * 4);
    long correct;
    double l1 = mtp_cross_entropy(g, c.targets, M, V, 1.0f, &correct);
    CHECK_CLOSE(l1, ce_loss(&c), 1e-9, 1e-9);
    fd_check("cross-entropy d logits", c.logits, g, M * V, ce_loss, &c, 1e-2, 1e-2, 1e-4);
    /* left-out rows: no gradient */
    for (int v = 0; v < V; v++) CHECK(g[4 * V + v] == 0.0f);
    mtp_free(c.logits), free(c.targets), mtp_free(g);
}

/* ---- one block ------------------------------------------------------------------------------ */

typedef struct {
    float *inp, *out, *R, *params;
    BlockWeights w;
    BlockActs a;
    BlockScratch *s;
} BlockCtx;
static double block_loss(void *p) {
    BlockCtx *c = p;
    block_forward(c->out, &c->a, c->inp, &c->w, c->s);
    return dot(c->out, c->R, (size_t)M * D);
}

static void test_block(int attn_chunk) {
    BlockScratch s;
    CHECK(block_scratch_build(&s, B, T, D, H, F, 0) == 0);
    s.attn_chunk = attn_chunk;
    size_t np = block_param_count(D, F);
    BlockCtx c = {randn(M * D, 1), mtp_calloc(M * D, 4), randn(M * D, 1), randn(np, 0.3f), {0}, {0}, NULL};
    c.s = &s;
    block_weights_point(&c.w, c.params, D, F);
    for (int d = 0; d < D; d++) c.w.attn_norm[d] = 1 + 0.1f * c.w.attn_norm[d], c.w.mlp_norm[d] = 1 + 0.1f * c.w.mlp_norm[d];
    float *acts = mtp_calloc(block_acts_count(B, T, D, H, F, 0), 4);
    block_acts_point(&c.a, acts, B, T, D, H, F, 0);
    float *grads = mtp_calloc(np, 4), *dres = mtp_calloc(M * D, 4);
    BlockWeights dw;
    block_weights_point(&dw, grads, D, F);
    if (attn_chunk != T) { /* chunked attention computes the same function as whole rows */
        float *whole = mtp_calloc(M * D, 4);
        s.attn_chunk = T;
        block_loss(&c);
        memcpy(whole, c.out, M * D * 4);
        s.attn_chunk = attn_chunk;
        block_loss(&c);
        double worst = 0;
        for (int i = 0; i < M * D; i++) worst = fmax(worst, fabs(c.out[i] - whole[i]));
        CHECK_MSG(worst < 1e-5, "chunks of %d vs whole rows: max difference %g", attn_chunk, worst);
        mtp_free(whole);
    }
    block_loss(&c);
    memcpy(dres, c.R, M * D * 4);
    block_backward(dres, &dw, c.inp, &c.a, &c.w, &s);
    fd_check("block d inp", c.inp, dres, M * D, block_loss, &c, 1e-2, 2e-2, 2e-4);
    struct { const char *name; float *p, *g; size_t n; } t[] = {
        {"block d attn_norm", c.w.attn_norm, dw.attn_norm, D}, {"block d wqkv", c.w.wqkv, dw.wqkv, 3 * D * D},
        {"block d wo", c.w.wo, dw.wo, D * D},                   {"block d mlp_norm", c.w.mlp_norm, dw.mlp_norm, D},
        {"block d w13", c.w.w13, dw.w13, 2 * F * D},            {"block d w2", c.w.w2, dw.w2, D * F}};
    for (int i = 0; i < 6; i++) fd_check(t[i].name, t[i].p, t[i].g, t[i].n, block_loss, &c, 1e-2, 2e-2, 2e-4);
    if (attn_chunk != T) { /* attention on bfloat16 operands tracks fp32 within bf16 rounding */
        float *out32 = mtp_calloc(M * D, 4), *din32 = mtp_calloc(M * D, 4), *gr = mtp_calloc(np, 4);
        BlockWeights dw2;
        block_weights_point(&dw2, gr, D, F);
        block_loss(&c);
        memcpy(out32, c.out, M * D * 4);
        memcpy(din32, c.R, M * D * 4);
        block_backward(din32, &dw2, c.inp, &c.a, &c.w, &s);
        BlockScratch s16;
        CHECK(block_scratch_build(&s16, B, T, D, H, F, 1) == 0);
        s16.attn_chunk = attn_chunk;
        float *acts16 = mtp_calloc(block_acts_count(B, T, D, H, F, 1), 4);
        CHECK(block_acts_count(B, T, D, H, F, 1) < block_acts_count(B, T, D, H, F, 0));
        BlockActs a16;
        block_acts_point(&a16, acts16, B, T, D, H, F, 1);
        float *out16 = mtp_calloc(M * D, 4), *din16 = mtp_calloc(M * D, 4);
        block_forward(out16, &a16, c.inp, &c.w, &s16);
        memcpy(din16, c.R, M * D * 4);
        block_backward(din16, &dw2, c.inp, &a16, &c.w, &s16);
        double eo = 0, no = 0, ed = 0, nd = 0;
        for (int i = 0; i < M * D; i++) {
            eo += (out16[i] - out32[i]) * (double)(out16[i] - out32[i]), no += (double)out32[i] * out32[i];
            ed += (din16[i] - din32[i]) * (double)(din16[i] - din32[i]), nd += (double)din32[i] * din32[i];
        }
        CHECK_MSG(sqrt(eo / no) < 1e-2 && sqrt(ed / nd) < 2e-2, "bf16 attention: relative error out %g, d inp %g",
                  sqrt(eo / no), sqrt(ed / nd));
        CHECK(sqrt(eo / no) > 0); /* it really ran in bf16 */
        block_scratch_free(&s16);
        mtp_free(out32), mtp_free(din32), mtp_free(gr), mtp_free(acts16), mtp_free(out16), mtp_free(din16);
    }
    mtp_free(c.inp), mtp_free(c.out), mtp_free(c.R), mtp_free(c.params), mtp_free(acts), mtp_free(grads);
    mtp_free(dres);
    block_scratch_free(&s);
}

/* ---- the whole model ------------------------------------------------------------------------ */

typedef struct {
    MtpModel *m;
    MtpWorkspace *ws;
    int32_t *tokens;
} ModelCtx;
static double model_loss(void *p) {
    ModelCtx *c = p;
    HeadStats st[HEADS_MAX];
    mtp_forward_eval(c->ws, c->tokens, -2 /* nothing is padding */, st);
    double l = 0;
    for (int i = 0; i < c->m->cfg.heads.n; i++) l += st[i].loss / st[i].count;
    return l;
}

static void test_model(int n_heads, HeadType type, int attn_chunk) {
    enum { MV = 23 };
    MtpConfig cfg = {{MV, D, 2, H, F, T}, {n_heads, type}};
    MtpModel m;
    char err[256];
    CHECK(mtp_model_build(&m, &cfg, err, sizeof err) == 0);
    mtp_model_init(&m, 5);
    /* init puts norms at exactly 1 and matrices at 0.02: spread them so every path matters */
    for (size_t i = 0; i < m.n_params; i++) m.params[i] += (float)(0.05 * mtp_rng_normal(&g_rng));
    MtpWorkspace ws;
    CHECK(mtp_workspace_build(&ws, &m, B, T) == 0);
    ws.scratch.attn_chunk = attn_chunk;
    int32_t tokens[B * (T + 1)];
    for (int i = 0; i < B * (T + 1); i++) tokens[i] = (int32_t)mtp_rng_below(&g_rng, MV);
    float *grads = mtp_calloc(m.n_params, 4);
    HeadStats st[HEADS_MAX];
    mtp_forward_backward(&ws, grads, tokens, 1.0f, st);
    ModelCtx c = {&m, &ws, tokens};
    /* the training pass reports the same loss as the evaluation pass */
    double l_train = 0;
    for (int i = 0; i < n_heads; i++) l_train += st[i].loss / st[i].count;
    CHECK_CLOSE(l_train, model_loss(&c), 1e-6, 1e-6);
    /* head i has T - i + 1 targets per row */
    for (int i = 0; i < n_heads; i++) CHECK(st[i].count == B * (T - i));
    for (int k = 0; k < m.n_tensors; k++) {
        const MtpTensor *t = &m.tensors[k];
        char what[96];
        snprintf(what, sizeof what, "model (n=%d %s) d %s", n_heads, heads_type_name(type), t->name);
        fd_check(what, m.params + t->offset, grads + t->offset, t->size, model_loss, &c, 1e-2, 3e-2, 3e-4);
    }
    mtp_free(grads);
    mtp_workspace_free(&ws);
    mtp_model_free(&m);
}

int main(void) {
    char err[256];
    CHECK(mtp_core_init(2, MTP_FP32, err, sizeof err) == 0);
    mtp_rng_seed(&g_rng, 42);
    test_rmsnorm();
    test_elementwise();
    test_softmax();
    test_rope();
    test_cross_entropy();
    test_block(T);
    test_block(3); /* attention in chunks of 3 query rows: 3 + 3 + 2 */
    test_model(1, HEAD_TRANSFORMER, T);
    test_model(3, HEAD_TRANSFORMER, 5);
    test_model(1, HEAD_LINEAR, 4);
    test_model(3, HEAD_LINEAR, T);
    mtp_core_shutdown();
    TEST_DONE();
}
