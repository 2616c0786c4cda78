/* test_speculative.c - blockwise parallel decoding is lossless: on small models trained briefly on
 * builtin:arith (both head types, 2 to 8 heads), greedy decoding at every lookahead 1..n
 * gives exactly the lookahead-1 output, for many prompts, with runs that end in each way (at an
 * end token, which is then the last token and may fall inside an accepted block; at max_new; when
 * the context is full, with exactly the tokens it holds), each way checked to occur;
 * and the extra heads do accept drafts (fewer forward passes than tokens). Both with the engine's
 * products in fp32 and in bf16: each model is trained once (in fp32; its weights are fp32 either
 * way) and decoded in each precision, the engine packing its matrices in the core's precision. The
 * output is the same only if head 1's logits of a row do not depend on the rows of its pass (an
 * argmax near a tie could flip): lookahead K verifies in passes of up to K rows, lookahead 1 runs
 * one row at a time. */
#include <stdlib.h>
#include <string.h>

#include "decode/decode.h"
#include "mtp/mtp.h"
#include "tests/test.h"

enum { CTX = 48, PROMPTS = 10, MAX_NEW = 80 };

static void train_small(MtpModel *m, const DsCorpus *data, int n_heads, HeadType type) {
    char err[256];
    MtpConfig cfg = {{DS_BYTE_VOCAB, 48, 2, 4, 96, CTX}, {n_heads, type}};
    CHECK(mtp_model_build(m, &cfg, err, sizeof err) == 0);
    mtp_model_init(m, 3);
    MtpTrainOptions o;
    mtp_train_options_default(&o);
    o.batch = 8, o.steps = 150, o.warmup = 10, o.lr = 3e-3f, o.min_lr = 3e-4f;
    MtpTrainer t;
    CHECK(mtp_trainer_build(&t, m, &o, err, sizeof err) == 0);
    MtpStepStats st;
    for (int s = 0; s < o.steps; s++) mtp_train_step(&t, data, &st);
    mtp_trainer_free(&t);
}

/* The output of lookahead K's run: base for K = 1, got after. */
static const int32_t *got_or(const int32_t *base, const int32_t *got, int K) { return K == 1 ? base : got; }

/* Greedy decoding of m at every lookahead 1..n_heads in the core's precision. */
static void check_lossless(const MtpModel *m, const DsCorpus *data, int n_heads, HeadType type) {
    const char *prec = mtp_precision_name(mtp_core_precision());
    char err[256];
    MtpRng r;
    mtp_rng_seed(&r, 17);
    long tokens_total = 0, forwards_total = 0, ends[3] = {0, 0, 0}; /* by the end token, max_new, the context */
    for (int p = 0; p < PROMPTS; p++) {
        int len = 4 + (int)mtp_rng_below(&r, 20);
        size_t start = mtp_rng_below(&r, data->n_val - len);
        const int32_t *prompt = data->val + start;
        /* a third of the prompts stop at an end token the arithmetic text is full of, a third after
           a few tokens, a third when the context is full */
        const int32_t eos = p % 3 == 0 ? ' ' : -1;
        const int max_new = p % 3 == 1 ? 3 + p : MAX_NEW;
        int32_t base[MAX_NEW], got[MAX_NEW];
        int n_base = 0;
        for (int K = 1; K <= n_heads; K++) {
            DecodeState s;
            CHECK(decode_build(&s, mtp_decode_model(m), K > 8 ? K : 8, K, err, sizeof err) == 0);
            DecodeStats st;
            const DecodeRequest req = {
                .prompt = prompt, .n_prompt = len, .max_new = max_new, .lookahead = K, .eos = eos};
            int n = decode_greedy(&s, &req, K == 1 ? base : got, &st);
            /* how it ended: the end token (last, and only there), max_new, or a full context (the
               context holds prompt + output but the last token, which is emitted without a pass) */
            int first_eos = -1;
            for (int i = 0; i < n && first_eos < 0; i++) first_eos = got_or(base, got, K)[i] == eos ? i : -1;
            if (first_eos >= 0) CHECK_MSG(first_eos == n - 1 && !st.hit_context, "prompt %d: output goes on after "
                                          "the end token (at %d of %d)", p, first_eos, n);
            else if (n < max_new) CHECK_MSG(st.hit_context && len + n == CTX + 1, "prompt %d: %d tokens, context %s",
                                            p, n, st.hit_context ? "full" : "not full");
            else CHECK(n == max_new && !st.hit_context);
            if (K == 1) ends[first_eos >= 0 ? 0 : n == max_new ? 1 : 2]++;
            if (K == 1) {
                n_base = n;
                CHECK(st.forwards == n - 1 && st.rows == st.forwards); /* one token per pass, the last one not run */
            } else {
                CHECK_MSG(n == n_base && memcmp(base, got, n * sizeof(int32_t)) == 0,
                          "%s n=%d %s prompt %d: lookahead %d output differs from lookahead 1",
                          heads_type_name(type), n_heads, prec, p, K);
                tokens_total += n, forwards_total += st.forwards;
                for (int j = 1; j < K; j++) CHECK(st.accepted[j] <= st.proposed[j]);
            }
            CHECK(len + n <= CTX + 1);
            decode_free(&s);
        }
    }
    CHECK_MSG(ends[0] > 0 && ends[1] > 0 && ends[2] > 0, "%s n=%d %s: runs ended %ld times at the end token, %ld "
              "at max_new, %ld at the context: every way should occur", heads_type_name(type), n_heads, prec, ends[0],
              ends[1], ends[2]);
    if (n_heads > 1)
        CHECK_MSG(forwards_total < tokens_total, "%s n=%d %s: no draft was ever accepted (%ld passes for %ld tokens)",
                  heads_type_name(type), n_heads, prec, forwards_total, tokens_total);
}

static void test_lossless(const DsCorpus *data, int n_heads, HeadType type) {
    MtpModel m;
    train_small(&m, data, n_heads, type); /* in fp32 */
    mtp_core_set_precision(MTP_FP32);
    check_lossless(&m, data, n_heads, type);
    mtp_core_set_precision(MTP_BF16);
    check_lossless(&m, data, n_heads, type);
    mtp_core_set_precision(MTP_FP32);
    mtp_model_free(&m);
}

int main(void) {
    char err[256];
    CHECK(mtp_core_init(2, MTP_FP32, err, sizeof err) == 0);
    DsOptions o;
    ds_options_init(&o);
    o.spec = "builtin:arith";
    o.difficulty = 1;
    o.min_tokens = CTX + 1;
    DsCorpus data;
    CHECK(ds_load(&data, &o, err, sizeof err) == 0);
    test_lossless(&data, 2, HEAD_TRANSFORMER);
    test_lossless(&data, 4, HEAD_TRANSFORMER);
    test_lossless(&data, 3, HEAD_LINEAR);
    test_lossless(&data, 8, HEAD_TRANSFORMER);
    test_lossless(&data, 8, HEAD_LINEAR);
    ds_free(&data);
    mtp_core_shutdown();
    TEST_DONE();
}
