/* test_model.c - whole-model behaviour: head 1 of an n-head model is exactly a 1-head model, a
 * tiny model overfits one batch, training is deterministic, bf16 training tracks fp32. */
#include <stdlib.h>
#include <string.h>

#include "mtp/mtp.h"
#include "tests/test.h"

enum { V = 40, D = 32, L = 2, H = 4, F = 48, T = 16, B = 4 };

static void random_tokens(int32_t *t, int n, uint64_t seed) {
    MtpRng r;
    mtp_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) t[i] = (int32_t)mtp_rng_below(&r, V);
}

/* Copies the tensors named alike from src into dst (dst's names must all exist in src). */
static void copy_shared(MtpModel *dst, const MtpModel *src) {
    for (int k = 0; k < dst->n_tensors; k++) {
        const MtpTensor *d = &dst->tensors[k], *s = mtp_model_tensor(src, d->name);
        CHECK_MSG(s != NULL, "tensor %s", d->name);
        if (s) memcpy(dst->params + d->offset, src->params + s->offset, d->size * sizeof(float));
    }
}

static void test_head1_equals_single_head(HeadType type) {
    char err[256];
    MtpConfig c3 = {{V, D, L, H, F, T}, {3, type}}, c1 = {{V, D, L, H, F, T}, {1, type}};
    MtpModel m3, m1;
    CHECK(mtp_model_build(&m3, &c3, err, sizeof err) == 0);
    CHECK(mtp_model_build(&m1, &c1, err, sizeof err) == 0);
    mtp_model_init(&m3, 11);
    for (size_t i = 0; i < m3.n_params; i++) m3.params[i] *= 5.0f; /* make every head matter */
    copy_shared(&m1, &m3);
    MtpWorkspace w3, w1;
    CHECK(mtp_workspace_build(&w3, &m3, B, T) == 0);
    CHECK(mtp_workspace_build(&w1, &m1, B, T) == 0);
    int32_t tokens[B * (T + 1)];
    random_tokens(tokens, B * (T + 1), 3);

    /* logits of head 1 */
    HeadStats s3[HEADS_MAX], s1[HEADS_MAX];
    mtp_forward_eval(&w3, tokens, -2, s3);
    mtp_forward_eval(&w1, tokens, -2, s1);
    CHECK(s3[0].loss == s1[0].loss && s3[0].correct == s1[0].correct && s3[0].count == s1[0].count);
    CHECK(s3[1].loss != s1[0].loss);
    mtp_forward_head(&w3, tokens, 0);
    mtp_forward_head(&w1, tokens, 0);
    CHECK(memcmp(w3.heads.logits, w1.heads.logits, (size_t)B * T * V * sizeof(float)) == 0);

    /* and its backward pass: head 1's own weights get the same gradient as in the 1-head model */
    float *g3 = mtp_calloc(m3.n_params, 4), *g1 = mtp_calloc(m1.n_params, 4);
    mtp_forward_backward(&w1, g1, tokens, 1.0f, s1);
    mtp_forward_backward(&w3, g3, tokens, 1.0f, s3);
    CHECK(s3[0].loss == s1[0].loss);
    const MtpTensor *h1 = mtp_model_tensor(&m1, type == HEAD_LINEAR ? "heads.1.w" : "heads.1.wq");
    const MtpTensor *h3 = mtp_model_tensor(&m3, h1->name);
    CHECK(memcmp(g1 + h1->offset, g3 + h3->offset, h1->size * 4) == 0);
    mtp_free(g3), mtp_free(g1);
    mtp_workspace_free(&w3), mtp_workspace_free(&w1);
    mtp_model_free(&m3), mtp_model_free(&m1);
}

/* Trains on a corpus that is exactly one sequence, so every batch is that sequence. */
static void test_overfit(HeadType type, int n_heads) {
    char err[256];
    MtpConfig cfg = {{V, D, L, H, F, T}, {n_heads, type}};
    MtpModel m;
    CHECK(mtp_model_build(&m, &cfg, err, sizeof err) == 0);
    mtp_model_init(&m, 1);
    MtpTrainOptions o;
    mtp_train_options_default(&o);
    o.batch = 2, o.steps = 150, o.warmup = 10, o.lr = 3e-3f, o.min_lr = 3e-3f, o.weight_decay = 0;
    MtpTrainer t;
    CHECK(mtp_trainer_build(&t, &m, &o, err, sizeof err) == 0);
    int32_t seq[T + 1];
    random_tokens(seq, T + 1, 99);
    DsCorpus data = {.train = seq, .n_train = T + 1, .val = seq, .n_val = T + 1};
    MtpStepStats st;
    double first = 0;
    for (int s = 0; s < o.steps; s++) {
        mtp_train_step(&t, &data, &st);
        if (s == 0) first = st.total_loss;
    }
    CHECK_MSG(first > 3.0 * n_heads, "initial loss %g", first);
    for (int i = 0; i < n_heads; i++)
        CHECK_MSG(st.loss[i] < 0.05 && st.accuracy[i] == 1.0, "%s head %d: loss %g after %d steps (from %g)",
                  heads_type_name(type), i + 1, st.loss[i], o.steps, first);
    mtp_trainer_free(&t);
    mtp_model_free(&m);
}

/* Two identical runs give identical bits; bf16 training follows fp32 closely. */
static void run_steps(MtpPrecision prec, int steps, double *losses, float *final_params, size_t n) {
    char err[256];
    mtp_core_set_precision(prec);
    MtpConfig cfg = {{V, D, L, H, F, T}, {2, HEAD_TRANSFORMER}};
    MtpModel m;
    CHECK(mtp_model_build(&m, &cfg, err, sizeof err) == 0);
    mtp_model_init(&m, 8);
    MtpTrainOptions o;
    mtp_train_options_default(&o);
    o.batch = B, o.steps = steps, o.warmup = 2;
    MtpTrainer t;
    CHECK(mtp_trainer_build(&t, &m, &o, err, sizeof err) == 0);
    int32_t corpus[2000];
    for (int i = 0; i < 2000; i++) corpus[i] = (i * 7 + i / 13) % V; /* learnable */
    DsCorpus data = {.train = corpus, .n_train = 2000, .val = corpus, .n_val = 2000};
    for (int s = 0; s < steps; s++) {
        MtpStepStats st;
        mtp_train_step(&t, &data, &st);
        losses[s] = st.total_loss;
    }
    CHECK(m.n_params == n);
    memcpy(final_params, m.params, n * sizeof(float));
    mtp_trainer_free(&t);
    mtp_model_free(&m);
    mtp_core_set_precision(MTP_FP32);
}

static void test_determinism_and_bf16(void) {
    enum { S = 30 };
    MtpConfig cfg = {{V, D, L, H, F, T}, {2, HEAD_TRANSFORMER}};
    size_t n = mtp_param_counts(&cfg).total;
    double a[S], b[S], c[S];
    float *pa = malloc(n * 4), *pb = malloc(n * 4), *pc = malloc(n * 4);
    run_steps(MTP_FP32, S, a, pa, n);
    run_steps(MTP_FP32, S, b, pb, n);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(memcmp(pa, pb, n * 4) == 0);
    run_steps(MTP_BF16, S, c, pc, n);
    CHECK(c[0] != a[0]); /* bf16 really ran */
    CHECK(a[S - 1] < a[0] - 1.0 && c[S - 1] < c[0] - 1.0);
    CHECK_MSG(fabs(c[S - 1] - a[S - 1]) < 0.05 * a[S - 1], "bf16 loss %g vs fp32 %g", c[S - 1], a[S - 1]);
    free(pa), free(pb), free(pc);
}

int main(void) {
    char err[256];
    CHECK(mtp_core_init(2, MTP_FP32, err, sizeof err) == 0);
    test_head1_equals_single_head(HEAD_TRANSFORMER);
    test_head1_equals_single_head(HEAD_LINEAR);
    test_overfit(HEAD_TRANSFORMER, 1);
    test_overfit(HEAD_TRANSFORMER, 3);
    test_overfit(HEAD_LINEAR, 3);
    test_determinism_and_bf16();
    mtp_core_shutdown();
    TEST_DONE();
}
