/* test_decode.c - the inference engine against the training forward pass.
 *
 * For random models (both head types, 3 heads), the logits of every head at every position,
 * computed a few rows at a time over the key/value caches, equal those of one full forward pass
 * over the whole sequence (within 1e-4 in fp32), also after rollbacks: the caches are truncated,
 * other tokens are run over the same positions, then the caches are rolled back again and the
 * original tokens run once more, reading the heads past head 1 as drafts (computed together for
 * one row when first read) or from the forward. The shapes reach every path of the cached
 * attention: head dims below, at and above a tile of values (8, 48, 96), sequences over several
 * key tiles, and passes of up to 7 rows (a group of 4 rows and a smaller one). */
#include <stdlib.h>
#include <string.h>

#include "decode/decode.h"
#include "mtp/mtp.h"
#include "tests/test.h"

enum { V = 37, L = 2, F = 48, CTX = 80, N = 70, NH = 3 };

/* Full forward over tokens (N): logits (NH, N, V) of every head. (A batch of one row reads the
 * first T = N of its T+1 tokens.) */
static void reference(float *ref, const MtpModel *m, const int32_t *tokens) {
    MtpWorkspace ws;
    CHECK(mtp_workspace_build(&ws, m, 1, N) == 0);
    for (int i = 0; i < NH; i++) {
        mtp_forward_head(&ws, tokens, i);
        memcpy(ref + (size_t)i * N * V, ws.heads.logits, (size_t)N * V * sizeof(float));
    }
    mtp_workspace_free(&ws);
}

/* Runs tokens[from..to) in random passes of 1..max_rows and compares each row's logits. */
static double run_and_compare(DecodeState *s, const int32_t *tokens, int from, int to, const float *ref, MtpRng *r,
                              int n_logits) {
    double worst = 0;
    CHECK(s->len == from);
    for (int pos = from; pos < to;) {
        int R = 1 + (int)mtp_rng_below(r, (uint64_t)s->max_rows);
        if (pos + R > to) R = to - pos;
        decode_forward(s, tokens + pos, R, n_logits);
        for (int row = 0; row < R; row++)
            for (int i = 0; i < n_logits; i++) {
                const float *got = decode_logits(s, i, row), *want = ref + ((size_t)i * N + pos + row) * V;
                for (int v = 0; v < V; v++) worst = fmax(worst, fabs(got[v] - want[v]));
            }
        /* the other heads are drafts, computed together for one row when first read */
        const int row = (int)mtp_rng_below(r, (uint64_t)R);
        for (int i = n_logits; i < s->n_heads; i++) {
            const float *got = decode_logits(s, i, row), *want = ref + ((size_t)i * N + pos + row) * V;
            for (int v = 0; v < V; v++) worst = fmax(worst, fabs(got[v] - want[v]));
        }
        pos += R;
    }
    return worst;
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
    reference(ref, &m, tokens);

    DecodeState s;
    CHECK(decode_build(&s, mtp_decode_model(&m), max_rows, NH, err, sizeof err) == 0);
    /* prefill 20 positions in one call, then the rest a few rows at a time */
    const int last = decode_prefill(&s, tokens, 20, NH);
    double worst = 0;
    for (int i = 0; i < NH; i++)
        for (int v = 0; v < V; v++) worst = fmax(worst, fabs(decode_logits(&s, i, last)[v] - ref[((size_t)i * N + 19) * V + v]));
    worst = fmax(worst, run_and_compare(&s, tokens, 20, N, ref, &r, NH));
    CHECK_MSG(worst < 1e-4, "%s heads, dim %d, %d attention heads: incremental logits differ from a full forward by %g",
              heads_type_name(type), D, H, worst);

    /* rollback: truncate, run other tokens over the same positions, roll back again, rerun */
    for (int trial = 0; trial < 4; trial++) {
        int back = 2 + (int)mtp_rng_below(&r, N - 4);
        decode_truncate(&s, back);
        int upto = back + 1 + (int)mtp_rng_below(&r, (uint64_t)(N - back));
        run_and_compare(&s, other, back, upto, ref, &r, 1); /* other tokens: logits not compared */
        decode_truncate(&s, back);
        double w = run_and_compare(&s, tokens, back, N, ref, &r, 1 + trial % NH); /* the rest as drafts */
        CHECK_MSG(w < 1e-4, "%s heads, dim %d: after rolling back to %d, logits differ by %g", heads_type_name(type), D,
                  back, w);
    }
    decode_free(&s);

    /* lookahead 1 keeps head 1 only: the same head-1 logits */
    CHECK(decode_build(&s, mtp_decode_model(&m), 3, 1, err, sizeof err) == 0);
    worst = run_and_compare(&s, tokens, 0, N, ref, &r, 1);
    CHECK_MSG(worst < 1e-4, "head 1 alone differs by %g", worst);
    decode_free(&s);
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
        const float *got = decode_logits(&s, i, row), *want = ws.heads.logits + (size_t)(LN - 1) * V;
        for (int v = 0; v < V; v++) worst = fmax(worst, fabs(got[v] - want[v]));
    }
    CHECK_MSG(worst < 1e-4, "a %d-token prefill in passes of %d differs by %g", LN, DECODE_PREFILL_ROWS, worst);
    decode_free(&s);
    mtp_workspace_free(&ws);
    free(tokens);
    mtp_model_free(&m);
}

int main(void) {
    char err[256];
    CHECK(mtp_core_init(2, MTP_FP32, err, sizeof err) == 0);
    const int shapes[3][3] = {{32, 4, 4}, {48, 1, 7}, {96, 1, 5}}; /* dim, attention heads, rows per pass */
    for (int k = 0; k < 3; k++) {
        test_engine(HEAD_TRANSFORMER, shapes[k][0], shapes[k][1], shapes[k][2]);
        test_engine(HEAD_LINEAR, shapes[k][0], shapes[k][1], shapes[k][2]);
    }
    test_long_prefill();
    mtp_core_shutdown();
    TEST_DONE();
}
