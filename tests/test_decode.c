/* test_decode.c - the inference engine against the training forward pass.
 *
 * For random models (both head types, 3 heads), in both precisions of the products (fp32 and bf16),
 * the logits of every head at every position, computed a few rows at a time over the key/value
 * caches, equal those of one full forward pass over the whole sequence, also after rollbacks: the
 * caches are truncated, other tokens are run over the same positions, then the caches are rolled
 * back again and the original tokens run once more, reading the heads past head 1 as drafts
 * (computed together for one row when first read) or from the forward.
 *   - Passes of random sizes (up to 4, 5 or 7 rows), and passes of every row count R = 1..16: the
 *     whole sequence in passes of R rows, then a rollback to a position that moves with R (over
 *     every offset within a key tile) and the rest again in passes of R.
 *   - fp32: within 1e-4. bf16: within BF16_REL_TOL of the largest logit (see there for how it was
 *     chosen): the engine and the full forward round to bfloat16 at different places.
 *   - Row-count invariance: the logits of a row computed in a pass of R rows equal those of the same
 *     row computed in 1-row passes (same model, positions and tokens), bit for bit where the
 *     small-row kernel serves the products (row_invariance_tol). The largest difference per R is
 *     printed.
 * The shapes reach every path of the cached attention: head dims below, at and above a tile of
 * values (8, 48, 96), sequences over several key tiles, passes of 1..16 rows (groups of 4 rows and
 * a smaller one). */
#include <stdlib.h>
#include <string.h>

#include "decode/decode.h"
#include "mtp/mtp.h"
#include "tests/test.h"

enum { V = 37, L = 2, F = 48, CTX = 80, N = 72, NH = 3, RMAX = 16 };

/* How close the engine's logits must come to the full forward's: in fp32, 1e-4 (the worst measured
 * is 3e-6). In bf16 the full forward also rounds attention's q, k, v and probabilities, which the
 * engine keeps in fp32, and the small differences then move other roundings to bfloat16: the worst
 * measured is 0.0089 times the largest |logit| (0.012 to 0.030 for largest logits of 2.1 to 4.3),
 * so the tolerance is 0.025 times the largest |logit| (about 3x). Bugs made on purpose fail (nearly)
 * every check that fails for them in fp32: logits compared one position off (0.44x the largest
 * logit or more), a pass's last row given the row before's logits, one stale cache row left by a
 * rollback, a rollback forgotten, a pass's last value not written to the cache. The one that gets
 * through some bf16 checks (11 of 126): a key rotated one position off on the last row of each
 * multi-row pass moves the logits by 0.014x to 0.18x the largest, least in the longest passes;
 * the row-count invariance check below fails for it at every R > 1 in both precisions. */
#define FP32_TOL 1e-4
#define BF16_REL_TOL 0.025 /* times the largest |logit| of the full forward */

/* The logits of a row in a pass of R rows against the same row in 1-row passes, both precisions:
 * equal bit for bit where the small-row kernel serves the products (mtp/core/smallrows.c: every
 * output summed in the same order at any row count; the cached attention and the per-row layers
 * likewise). Where oneDNN serves them (a CPU without AVX2, MTP_SMALL_KERNEL=onednn), its kernels
 * for different row counts may sum in other orders: within the fp32 tolerance. */
static double row_invariance_tol(void) {
    return mtp_small_kernel(mtp_core_precision()) != MTP_SMALL_ONEDNN ? 0.0 : FP32_TOL;
}

/* The largest |a - b|, infinite where one is NaN (fmax would drop it). */
static double max_diff(const float *a, const float *b, size_t n) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - b[i]);
        worst = d <= worst ? worst : isnan(d) ? INFINITY : d;
    }
    return worst;
}

/* Full forward over tokens (N), in the core's precision: logits (NH, N, V) of every head. (A batch
 * of one row reads the first T = N of its T+1 tokens.) */
static void reference(float *ref, const MtpModel *m, const int32_t *tokens) {
    MtpWorkspace ws;
    CHECK(mtp_workspace_build(&ws, m, 1, N) == 0);
    for (int i = 0; i < NH; i++) {
        mtp_forward_head(&ws, tokens, i);
        memcpy(ref + (size_t)i * N * V, ws.heads.logits, (size_t)N * V * sizeof(float));
    }
    mtp_workspace_free(&ws);
}

/* Runs tokens[from..to) in passes of rows rows (the last one shorter), or of random sizes
 * 1..max_rows when rows is 0, and returns the largest difference from ref of every row's logits
 * of heads below n_logits and of the drafts (the other heads) at one random row per pass. With
 * single (the logits (NH, N, V) of 1-row passes over the same tokens), *inv gets the largest
 * difference from it of the rows' logits that the forward computed. */
static double run_and_compare(DecodeState *s, const int32_t *tokens, int from, int to, int rows, const float *ref,
                              MtpRng *r, int n_logits, const float *single, double *inv) {
    double worst = 0;
    CHECK(s->len == from);
    for (int pos = from; pos < to;) {
        int R = rows ? rows : 1 + (int)mtp_rng_below(r, (uint64_t)s->max_rows);
        if (pos + R > to) R = to - pos;
        decode_forward(s, tokens + pos, R, n_logits);
        for (int row = 0; row < R; row++)
            for (int i = 0; i < n_logits; i++) {
                const size_t at = ((size_t)i * N + pos + row) * V;
                worst = fmax(worst, max_diff(decode_logits(s, i, row), ref + at, V));
                if (single) *inv = fmax(*inv, max_diff(decode_logits(s, i, row), single + at, V));
            }
        /* the other heads are drafts, computed together for one row when first read */
        const int row = (int)mtp_rng_below(r, (uint64_t)R);
        for (int i = n_logits; i < s->n_heads; i++)
            worst = fmax(worst, max_diff(decode_logits(s, i, row), ref + ((size_t)i * N + pos + row) * V, V));
        pos += R;
    }
    return worst;
}

/* What one model is checked with in one precision. */
typedef struct {
    const MtpModel *m;
    const int32_t *tokens, *other;
    const float *ref; /* the full forward's logits (NH, N, V) */
    double tol;       /* of the logits against the full forward's */
    char what[112];   /* "transformer heads, dim 32, 4 attention heads, bf16 (largest logit 2.54)" */
} Case;

/* Prefill, passes of random sizes 1..max_rows, random rollbacks; lookahead 1 alone. */
static void test_random_passes(const Case *c, int max_rows, MtpRng *r) {
    char err[256];
    DecodeState s;
    CHECK(decode_build(&s, mtp_decode_model(c->m), max_rows, NH, err, sizeof err) == 0);
    /* prefill 20 positions in one call, then the rest a few rows at a time */
    const int last = decode_prefill(&s, c->tokens, 20, NH);
    double worst = 0;
    for (int i = 0; i < NH; i++)
        worst = fmax(worst, max_diff(decode_logits(&s, i, last), c->ref + ((size_t)i * N + 19) * V, V));
    worst = fmax(worst, run_and_compare(&s, c->tokens, 20, N, 0, c->ref, r, NH, NULL, NULL));
    CHECK_MSG(worst <= c->tol, "%s: incremental logits differ from a full forward by %g (tolerance %g)", c->what, worst,
              c->tol);

    /* rollback: truncate, run other tokens over the same positions, roll back again, rerun */
    for (int trial = 0; trial < 4; trial++) {
        int back = 2 + (int)mtp_rng_below(r, N - 4);
        decode_truncate(&s, back);
        int upto = back + 1 + (int)mtp_rng_below(r, (uint64_t)(N - back));
        run_and_compare(&s, c->other, back, upto, 0, c->ref, r, 1, NULL, NULL); /* other tokens: not compared */
        decode_truncate(&s, back);
        /* heads past 1 + trial % NH as drafts */
        double w = run_and_compare(&s, c->tokens, back, N, 0, c->ref, r, 1 + trial % NH, NULL, NULL);
        CHECK_MSG(w <= c->tol, "%s: after rolling back to %d, logits differ by %g (tolerance %g)", c->what, back, w,
                  c->tol);
    }
    decode_free(&s);

    /* lookahead 1 keeps head 1 only: the same head-1 logits */
    CHECK(decode_build(&s, mtp_decode_model(c->m), 3, 1, err, sizeof err) == 0);
    worst = run_and_compare(&s, c->tokens, 0, N, 0, c->ref, r, 1, NULL, NULL);
    CHECK_MSG(worst <= c->tol, "%s: head 1 alone differs by %g (tolerance %g)", c->what, worst, c->tol);
    decode_free(&s);
}

/* Passes of every row count R = 1..RMAX, each checked against the full forward and against 1-row
 * passes, from position 0 and after a rollback. */
static void test_row_counts(const Case *c, MtpRng *r) {
    char err[256];
    DecodeState s;
    CHECK(decode_build(&s, mtp_decode_model(c->m), RMAX, NH, err, sizeof err) == 0);
    /* the sequence in 1-row passes: what every row count is compared with */
    float *single = malloc((size_t)NH * N * V * sizeof(float));
    for (int pos = 0; pos < N; pos++) {
        decode_forward(&s, c->tokens + pos, 1, NH);
        for (int i = 0; i < NH; i++)
            memcpy(single + ((size_t)i * N + pos) * V, decode_logits(&s, i, 0), V * sizeof(float));
    }
    double worst_all = 0;
    char inv_list[RMAX * 12] = "", *p = inv_list;
    for (int R = 1; R <= RMAX; R++) {
        /* the sequence in passes of R rows (for R = 1: the 1-row passes above) */
        double inv = 0, worst = max_diff(single, c->ref, (size_t)NH * N * V);
        if (R > 1) {
            decode_truncate(&s, 0);
            worst = run_and_compare(&s, c->tokens, 0, N, R, c->ref, r, NH, single, &inv);
        }
        /* roll back to a position that moves with R over every offset within a key tile (back % 16
         * takes each value once), run other tokens there (in passes of random sizes: a position a
         * pass of R rows would leave stale holds another token), roll back again and run the rest
         * once more in passes of R, heads past 1 + R % NH as drafts */
        const int back = 1 + (7 * R) % 48;
        decode_truncate(&s, back);
        run_and_compare(&s, c->other, back, N, 0, c->ref, r, 1, NULL, NULL); /* other tokens: not compared */
        decode_truncate(&s, back);
        worst = fmax(worst, run_and_compare(&s, c->tokens, back, N, R, c->ref, r, 1 + R % NH, single, &inv));
        CHECK_MSG(worst <= c->tol,
                  "%s: passes of %d rows (and after rolling back to %d) differ from the full forward by %g (tol %g)",
                  c->what, R, back, worst, c->tol);
        CHECK_MSG(inv <= row_invariance_tol(),
                  "%s: a row's logits in passes of %d rows differ from 1-row passes by %g (tolerance %g)", c->what, R,
                  inv, row_invariance_tol());
        worst_all = fmax(worst_all, worst);
        p += snprintf(p, inv_list + sizeof inv_list - p, " %.2g", inv);
    }
    fprintf(stderr, "%s: passes of 1..%d rows: full forward within %.3g; against 1-row passes, R = 1..%d:%s\n", c->what,
            RMAX, worst_all, RMAX, inv_list);
    free(single);
    decode_free(&s);
}

static void test_engine(HeadType type, int D, int H, int max_rows) {
    char err[256];
    MtpConfig cfg = {{V, D, L, H, F, CTX}, {NH, type}};
    MtpModel m;
    CHECK(mtp_model_build(&m, &cfg, err, sizeof err) == 0);
    mtp_model_init(&m, 21);
    MtpRng r;
    mtp_rng_seed(&r, 4);
    for (size_t i = 0; i < m.n_params; i++) m.params[i] += (float)(0.1 * mtp_rng_normal(&r));
    int32_t tokens[N], other[N];
    for (int i = 0; i < N; i++) tokens[i] = (int32_t)mtp_rng_below(&r, V), other[i] = (int32_t)mtp_rng_below(&r, V);
    float *ref = malloc((size_t)NH * N * V * sizeof(float));
    const MtpPrecision precs[2] = {MTP_FP32, MTP_BF16};
    for (int k = 0; k < 2; k++) {
        /* the engine packs its matrices in the core's precision; the full forward's products (and
         * its attention, in a workspace built now) follow it too */
        mtp_core_set_precision(precs[k]);
        reference(ref, &m, tokens);
        double scale = 0;
        for (size_t i = 0; i < (size_t)NH * N * V; i++) scale = fmax(scale, fabs(ref[i]));
        Case c = {&m, tokens, other, ref, precs[k] == MTP_BF16 ? BF16_REL_TOL * scale : FP32_TOL, ""};
        snprintf(c.what, sizeof c.what, "%s heads, dim %d, %d attention heads, %s (largest logit %.3g)",
                 heads_type_name(type), D, H, mtp_precision_name(precs[k]), scale);
        test_random_passes(&c, max_rows, &r);
        test_row_counts(&c, &r);
    }
    mtp_core_set_precision(MTP_FP32);
    free(ref);
    mtp_model_free(&m);
}

/* A prompt longer than DECODE_PREFILL_ROWS is prefilled in several passes: the last token's logits
 * (and drafts) still equal the full forward's. */
static void test_long_prefill(void) {
    enum { LCTX = DECODE_PREFILL_ROWS + 40, LN = DECODE_PREFILL_ROWS + 30 };
    char err[256];
    MtpConfig cfg = {{V, 16, 1, 2, 24, LCTX}, {2, HEAD_TRANSFORMER}};
    MtpModel m;
    CHECK(mtp_model_build(&m, &cfg, err, sizeof err) == 0);
    mtp_model_init(&m, 5);
    MtpRng r;
    mtp_rng_seed(&r, 6);
    for (size_t i = 0; i < m.n_params; i++) m.params[i] += (float)(0.1 * mtp_rng_normal(&r));
    int32_t *tokens = malloc(LN * sizeof(int32_t));
    for (int i = 0; i < LN; i++) tokens[i] = (int32_t)mtp_rng_below(&r, V);
    MtpWorkspace ws;
    CHECK(mtp_workspace_build(&ws, &m, 1, LN) == 0);
    DecodeState s;
    CHECK(decode_build(&s, mtp_decode_model(&m), 2, 2, err, sizeof err) == 0);
    CHECK(s.pass_rows == DECODE_PREFILL_ROWS);
    const int row = decode_prefill(&s, tokens, LN, 1);
    double worst = 0;
    for (int i = 0; i < 2; i++) { /* head 1 from the prefill, head 2 as a draft */
        mtp_forward_head(&ws, tokens, i);
        worst = fmax(worst, max_diff(decode_logits(&s, i, row), ws.heads.logits + (size_t)(LN - 1) * V, V));
    }
    CHECK_MSG(worst < FP32_TOL, "a %d-token prefill in passes of %d differs by %g", LN, DECODE_PREFILL_ROWS, worst);
    decode_free(&s);
    mtp_workspace_free(&ws);
    free(tokens);
    mtp_model_free(&m);
}

int main(void) {
    char err[256];
    CHECK(mtp_core_init(2, MTP_FP32, err, sizeof err) == 0);
    const int shapes[3][3] = {{32, 4, 4}, {48, 1, 7}, {96, 1, 5}}; /* dim, attention heads, rows of the random passes */
    for (int k = 0; k < 3; k++) {
        test_engine(HEAD_TRANSFORMER, shapes[k][0], shapes[k][1], shapes[k][2]);
        test_engine(HEAD_LINEAR, shapes[k][0], shapes[k][1], shapes[k][2]);
    }
    test_long_prefill();
    mtp_core_shutdown();
    TEST_DONE();
}
