/* test_sampling.c - speculative sampling keeps head 1's distribution.
 *
 * On a tiny model (vocabulary 10, random weights spread so that the heads disagree with head 1 and
 * drafts are both kept and rejected), the first two tokens sampled after a fixed prompt, over many
 * runs with deterministic seeds, are compared with the exact head-1 distribution
 * p(t1) p(t2 | t1), computed from the model, by a chi-square test at significance 0.001 (cells
 * expected below 5 pooled). Done for lookahead 1 (plain sampling) and lookahead 3, with a chain
 * of drafts and with a tree of them (SpecInfer's multi-candidate rule), at temperature 1 and with
 * top-k / top-p. Taking the second token from head 2's draft instead (what keeping
 * every draft would do) must fail the same test.
 * Tokens 2..8 at lookahead 8 (8 heads, drafting heads near head 1 so that whole blocks are kept
 * as well as cut short): for every prefix of k - 1 sampled tokens seen at least 250 times in
 * 12,000 runs, the k-th token against head 1's exact distribution after that prefix (at most one
 * misfit of the ~45 tests at 0.001 each); every draft kept (wrong on purpose) misfits.
 * decode_sampling_probs against an independent reference (softmax in double, a full sort) at
 * vocabularies up to 32k, with ties at the cut. */
#include <stdlib.h>
#include <string.h>

#include "decode/decode.h"
#include "mtp/mtp.h"
#include "tests/test.h"

enum { V = 10, CTX = 16, RUNS = 6000 };

/* Exact distribution of the first two tokens under head-1 sampling: joint (V, V). */
static void exact_joint(double *joint, const MtpModel *m, const int32_t *prompt, int n, const DecodeSampling *cfg) {
    char err[256];
    DecodeState s;
    CHECK(decode_build(&s, mtp_decode_model(m), 8, 1, err, sizeof err) == 0);
    int order[V];
    float p1[V], p2[V];
    int row = decode_prefill(&s, prompt, n, 1);
    decode_sampling_probs(p1, decode_logits(&s, 0, row), V, cfg, order);
    for (int t1 = 0; t1 < V; t1++) {
        decode_forward(&s, (int32_t[]){t1}, 1, 1);
        decode_sampling_probs(p2, decode_logits(&s, 0, 0), V, cfg, order);
        for (int t2 = 0; t2 < V; t2++) joint[t1 * V + t2] = (double)p1[t1] * p2[t2];
        decode_truncate(&s, n);
    }
    decode_free(&s);
}

/* Chi-square statistic of counts against N * expected (cells with expected < 5 pooled), and its
 * critical value at significance 0.001 (Wilson-Hilferty). Returns 1 if the fit is accepted. */
static int chi_square_ok(const long *counts, const double *expected, int cells, long N, double *stat_out) {
    double stat = 0, pooled_e = 0;
    *stat_out = 0;
    long pooled_c = 0;
    int df = -1;
    for (int i = 0; i < cells; i++) {
        double e = expected[i] * N;
        if (e < 5) {
            pooled_e += e, pooled_c += counts[i];
            continue;
        }
        stat += (counts[i] - e) * (counts[i] - e) / e;
        df++;
    }
    if (pooled_e > 0) stat += (pooled_c - pooled_e) * (pooled_c - pooled_e) / pooled_e, df++;
    CHECK_MSG(df >= 5, "only %d degrees of freedom: the distribution is too peaked for the test", df);
    if (df < 1) return 0;
    double z = 3.090232, a = 2.0 / (9.0 * df);
    double crit = df * pow(1 - a + z * sqrt(a), 3);
    *stat_out = stat;
    return stat < crit;
}

/* K = 0: the wrong procedure, t1 from head 1 and t2 straight from head 2's draft. tree: drafts in
 * a tree (SpecInfer's rule) instead of a chain. */
static void run_test(const MtpModel *m, int K, const DecodeTree *tree, const DecodeSampling *cfg, const char *what,
                     int expect_ok) {
    char err[256];
    const int32_t prompt[3] = {1, 7, 3};
    double joint[V * V];
    exact_joint(joint, m, prompt, 3, cfg);
    long counts[V * V] = {0};
    DecodeState s;
    CHECK(decode_build(&s, mtp_decode_model(m), tree ? tree->n : 8, K ? K : 2, err, sizeof err) == 0);
    long proposed = 0, accepted = 0;
    float p1[V], q2[V];
    int order[V];
    if (!K) { /* the drafts' distributions at the prompt */
        int row = decode_prefill(&s, prompt, 3, 2);
        decode_sampling_probs(p1, decode_logits(&s, 0, row), V, cfg, order);
        decode_sampling_probs(q2, decode_logits(&s, 1, row), V, cfg, order);
    }
    for (int r = 0; r < RUNS; r++) {
        MtpRng rng;
        mtp_rng_seed(&rng, 1000 + r);
        int32_t out[2];
        if (!K) {
            double u1 = mtp_rng_uniform(&rng), u2 = mtp_rng_uniform(&rng), a = 0;
            out[0] = out[1] = V - 1;
            for (int v = 0; v < V; v++) if ((a += p1[v]) > u1) { out[0] = v; break; }
            a = 0;
            for (int v = 0; v < V; v++) if ((a += q2[v]) > u2) { out[1] = v; break; }
        } else {
            decode_truncate(&s, 0);
            DecodeStats st;
            const DecodeRequest req = {.prompt = prompt, .n_prompt = 3, .max_new = 2, .lookahead = K, .eos = -1,
                                       .tree = tree, .sampling = *cfg, .rng = &rng};
            int n = decode_sample(&s, &req, out, &st);
            CHECK(n == 2);
            for (int j = 1; j < K; j++) proposed += st.proposed[j], accepted += st.accepted[j];
        }
        counts[out[0] * V + out[1]]++;
    }
    decode_free(&s);
    double stat;
    int ok = chi_square_ok(counts, joint, V * V, RUNS, &stat);
    CHECK_MSG(ok == expect_ok, "%s, lookahead %d%s: chi-square %.1f (%s expected)", what, K, tree ? ", tree" : "", stat,
              expect_ok ? "a fit" : "a misfit");
    if (K > 1) CHECK_MSG(accepted > 0 && accepted < proposed, "%s: %ld of %ld drafts kept", what, accepted, proposed);
}

/* decode_sampling_probs against a reference written here the obvious way: softmax in double, a
 * full sort (probability descending, ties to the lower id), the top-k cut, then the smallest prefix
 * reaching top_p, renormalized. Logits take a few levels only, so that ties are exact and
 * frequent (a cut through a tie is where the order matters) and no two levels round to one
 * probability. Vocabularies up to 32k, as BPE models have. */
static const double *g_ref_p;
static int ref_order(const void *a, const void *b) {
    const int x = *(const int *)a, y = *(const int *)b;
    return g_ref_p[x] > g_ref_p[y] ? -1 : g_ref_p[x] < g_ref_p[y] ? 1 : (x > y) - (x < y);
}

static void reference_probs(double *p, const float *logits, int Vn, const DecodeSampling *cfg, int *order) {
    double mx = logits[0], sum = 0;
    for (int v = 1; v < Vn; v++) mx = logits[v] > mx ? logits[v] : mx;
    for (int v = 0; v < Vn; v++) sum += p[v] = exp((logits[v] - mx) / cfg->temperature);
    for (int v = 0; v < Vn; v++) p[v] /= sum, order[v] = v;
    g_ref_p = p;
    qsort(order, (size_t)Vn, sizeof *order, ref_order);
    int keep = cfg->top_k > 0 && cfg->top_k < Vn ? cfg->top_k : Vn;
    double acc = 0;
    for (int i = 0; i < keep; i++)
        if ((acc += p[order[i]]) >= cfg->top_p) {
            keep = i + 1;
            break;
        }
    double kept = 0;
    for (int i = 0; i < keep; i++) kept += p[order[i]];
    for (int i = 0; i < Vn; i++) p[order[i]] = i < keep ? p[order[i]] / kept : 0.0;
}

static void test_probs_reference(void) {
    const int sizes[5] = {2, 10, 259, 2048, 32768};
    MtpRng r;
    mtp_rng_seed(&r, 99);
    int worst_kept_diff = 0;
    double worst = 0;
    for (int si = 0; si < 5; si++) {
        const int Vn = sizes[si];
        float *logits = malloc(Vn * sizeof(float)), *got = malloc(Vn * sizeof(float));
        double *want = malloc(Vn * sizeof(double));
        int *order = malloc(Vn * sizeof(int)), *order2 = malloc(Vn * sizeof(int));
        for (int trial = 0; trial < 40; trial++) {
            const int levels = 2 + (int)mtp_rng_below(&r, 12);
            for (int v = 0; v < Vn; v++) logits[v] = 0.75f * (float)mtp_rng_below(&r, levels) - 3.0f;
            DecodeSampling cfg = {0.5f + (float)mtp_rng_uniform(&r) * 1.5f, 0, 1.0f};
            if (trial % 3 != 1) cfg.top_k = (int)mtp_rng_below(&r, Vn + 2);
            if (trial % 3 != 0) cfg.top_p = trial % 5 == 0 ? 1.0f : 0.05f + 0.9f * (float)mtp_rng_uniform(&r);
            decode_sampling_probs(got, logits, Vn, &cfg, order);
            reference_probs(want, logits, Vn, &cfg, order2);
            int kept_diff = 0;
            for (int v = 0; v < Vn; v++) {
                kept_diff += (got[v] > 0) != (want[v] > 0);
                const double d = fabs(got[v] - want[v]);
                worst = d > worst ? d : worst;
            }
            worst_kept_diff = kept_diff > worst_kept_diff ? kept_diff : worst_kept_diff;
            CHECK_MSG(kept_diff == 0, "V %d, T %.2f, top-k %d, top-p %.3f: %d tokens kept differently from the "
                      "reference", Vn, cfg.temperature, cfg.top_k, cfg.top_p, kept_diff);
        }
        free(logits), free(got), free(want), free(order), free(order2);
    }
    CHECK_MSG(worst < 1e-5, "probabilities differ from the reference by up to %g", worst);
    fprintf(stderr, "sampling probabilities against the reference: worst difference %g\n", worst);
}

/* ---- the k-th token, k up to 8 ------------------------------------------------------------------ */

enum { K8 = 8, RUNS8 = 12000, MIN_PREFIX = 250, CTX8 = 48 };

/* Chi-square of counts (V) against N * p, cells expected below 5 pooled; *df gets the degrees of
 * freedom (-1 when under 1: nothing to test). Returns 1 when the fit holds at significance 0.001. */
static int fits(const long *counts, const float *p, long N, int *df) {
    double stat = 0, pooled_e = 0;
    long pooled_c = 0;
    *df = -1;
    for (int v = 0; v < V; v++) {
        const double e = (double)p[v] * N;
        if (e < 5) {
            pooled_e += e, pooled_c += counts[v];
            continue;
        }
        stat += (counts[v] - e) * (counts[v] - e) / e, (*df)++;
    }
    if (pooled_e > 0) stat += (pooled_c - pooled_e) * (pooled_c - pooled_e) / pooled_e, (*df)++;
    if (*df < 1) return 1;
    const double z = 3.090232, a = 2.0 / (9.0 * *df);
    return stat < *df * pow(1 - a + z * sqrt(a), 3);
}

/* Samples of 8 tokens at lookahead 8 (or, wrong on purpose, with every draft kept: the block of
 * head 1's token and the 7 drafts, untested). Then for k = 2..8 and each prefix of k-1 tokens seen
 * at least MIN_PREFIX times, the k-th token's counts against head 1's exact distribution after the
 * prompt and that prefix. The k-th token comes from an accepted draft, a draw from the residual
 * after a rejection, or a fresh draw opening a block, so each k mixes all three. Returns the tests
 * that failed; *tests gets how many ran. */
static int kth_token_misfits(const MtpModel *m, const DecodeSampling *cfg, int keep_drafts, int *tests,
                             long *proposed, long *accepted) {
    char err[256];
    const int32_t prompt[3] = {2, 5, 1};
    int32_t(*outs)[K8] = malloc(sizeof(int32_t[K8]) * RUNS8);
    DecodeState s;
    CHECK(decode_build(&s, mtp_decode_model(m), K8, K8, err, sizeof err) == 0);
    int order[V];
    float p[V];
    for (int run = 0; run < RUNS8; run++) {
        MtpRng rng;
        mtp_rng_seed(&rng, 50000 + run);
        decode_truncate(&s, 0);
        DecodeStats st;
        if (keep_drafts) { /* head 1's token, then every head's draft as it is */
            const int row = decode_prefill(&s, prompt, 3, 1);
            for (int j = 0; j < K8; j++) {
                decode_sampling_probs(p, decode_logits(&s, j, row), V, cfg, order);
                double u = mtp_rng_uniform(&rng), acc = 0;
                outs[run][j] = V - 1;
                for (int v = 0; v < V; v++)
                    if ((acc += p[v]) > u) {
                        outs[run][j] = v;
                        break;
                    }
            }
            continue;
        }
        /* 40 tokens, so that later blocks run all 8 rows too; the first 8 are tested */
        int32_t out[40];
        const DecodeRequest req = {.prompt = prompt, .n_prompt = 3, .max_new = 40, .lookahead = K8, .eos = -1,
                                   .sampling = *cfg, .rng = &rng};
        CHECK(decode_sample(&s, &req, out, &st) == 40);
        memcpy(outs[run], out, sizeof outs[run]);
        for (int j = 1; j < K8; j++) proposed[j] += st.proposed[j], accepted[j] += st.accepted[j];
    }
    int misfits = 0;
    *tests = 0;
    unsigned char *done = calloc(RUNS8, 1);
    for (int k = 2; k <= K8; k++) {
        memset(done, 0, RUNS8);
        for (int a = 0; a < RUNS8; a++) { /* each prefix once: the runs that share run a's */
            if (done[a]) continue;
            long counts[V] = {0}, n = 0;
            for (int b = a; b < RUNS8; b++)
                if (!done[b] && memcmp(outs[a], outs[b], (k - 1) * sizeof(int32_t)) == 0)
                    done[b] = 1, counts[outs[b][k - 1]]++, n++;
            if (n < MIN_PREFIX) continue;
            int32_t seq[3 + K8];
            memcpy(seq, prompt, sizeof prompt);
            memcpy(seq + 3, outs[a], (k - 1) * sizeof(int32_t));
            decode_truncate(&s, 0);
            decode_sampling_probs(p, decode_logits(&s, 0, decode_prefill(&s, seq, 3 + k - 1, 1)), V, cfg, order);
            int df;
            const int ok = fits(counts, p, n, &df);
            if (df < 1) continue;
            (*tests)++, misfits += !ok;
        }
    }
    free(done);
    free(outs);
    decode_free(&s);
    return misfits;
}

static void test_kth_tokens(void) {
    char err[256];
    MtpConfig cfg = {{V, 16, 1, 2, 24, CTX8}, {K8, HEAD_LINEAR}};
    MtpModel m;
    CHECK(mtp_model_build(&m, &cfg, err, sizeof err) == 0);
    mtp_model_init(&m, 21);
    MtpRng r;
    mtp_rng_seed(&r, 8);
    for (size_t i = 0; i < m.n_params; i++) m.params[i] += (float)(0.9 * mtp_rng_normal(&r));
    /* drafting heads near head 1 (its matrix plus noise): their drafts are often right, so that
       blocks of 8 accepted tokens occur as well as early rejections */
    for (int h = 1; h < K8; h++)
        for (int i = 0; i < 16 * 16; i++) m.heads.lin[h][i] = m.heads.lin[0][i] + (float)(0.3 * mtp_rng_normal(&r));
    const DecodeSampling sharp = {0.6f, 0, 1.0f};
    long proposed[K8] = {0}, accepted[K8] = {0}, unused[K8] = {0};
    int tests = 0, wrong_tests = 0;
    const int misfits = kth_token_misfits(&m, &sharp, 0, &tests, proposed, accepted);
    /* 0.001 per test: one misfit among a few dozen tests happens by chance about 3% of the time */
    CHECK_MSG(tests >= 10 && misfits <= 1, "lookahead 8: %d of %d conditional tests of tokens 2..8 misfit", misfits,
              tests);
    for (int j = 1; j < K8; j++)
        CHECK_MSG(accepted[j] > 0 && accepted[j] < proposed[j], "head %d: %ld of %ld drafts kept: both kept and "
                  "rejected drafts should occur", j + 1, accepted[j], proposed[j]);
    const int wrong = kth_token_misfits(&m, &sharp, 1, &wrong_tests, unused, unused);
    CHECK_MSG(wrong >= 3, "every draft kept (wrong on purpose): only %d of %d conditional tests misfit", wrong,
              wrong_tests);
    fprintf(stderr, "tokens 2..8 at lookahead 8: %d of %d conditional tests misfit (every draft kept: %d of %d); "
            "head 8 kept %ld of %ld drafts\n", misfits, tests, wrong, wrong_tests, accepted[K8 - 1],
            proposed[K8 - 1]);
    mtp_model_free(&m);
}

int main(void) {
    char err[256];
    CHECK(mtp_core_init(1, MTP_FP32, err, sizeof err) == 0);
    MtpConfig cfg = {{V, 16, 1, 2, 24, CTX}, {3, HEAD_LINEAR}};
    MtpModel m;
    CHECK(mtp_model_build(&m, &cfg, err, sizeof err) == 0);
    mtp_model_init(&m, 9);
    MtpRng r;
    mtp_rng_seed(&r, 5);
    for (size_t i = 0; i < m.n_params; i++) m.params[i] += (float)(0.6 * mtp_rng_normal(&r));
    test_probs_reference();
    DecodeSampling plain = {1.0f, 0, 1.0f}, cut = {1.5f, 6, 0.95f};
    run_test(&m, 1, NULL, &plain, "temperature 1", 1);
    run_test(&m, 3, NULL, &plain, "temperature 1", 1);
    run_test(&m, 3, NULL, &cut, "temperature 1.5, top-k 6, top-p 0.95", 1);
    /* a tree: three drafts of head 2 under the root (often the same token twice), two of head 3
       under the first, one under the second */
    const DecodeTree tree = {7, {-1, 0, 0, 0, 1, 1, 2}, {0, 1, 1, 1, 2, 2, 2}, {0, 0, 1, 2, 0, 1, 0}};
    run_test(&m, 3, &tree, &plain, "temperature 1", 1);
    run_test(&m, 3, &tree, &cut, "temperature 1.5, top-k 6, top-p 0.95", 1);
    /* the test has teeth: the second token taken from head 2's draft is not head-1 sampling */
    run_test(&m, 0, NULL, &plain, "second token from head 2's draft (wrong on purpose)", 0);
    mtp_model_free(&m);
    test_kth_tokens();
    mtp_core_shutdown();
    TEST_DONE();
}
