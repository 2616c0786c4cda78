/* test_sampling.c - speculative sampling keeps head 1's distribution.
 *
 * On a tiny model (vocabulary 10, random weights spread so that the heads disagree with head 1 and
 * drafts are both kept and rejected), the first two tokens sampled after a fixed prompt, over many
 * runs with deterministic seeds, are compared with the exact head-1 distribution
 * p(t1) p(t2 | t1), computed from the model, by a chi-square test at significance 0.001 (cells
 * expected below 5 pooled). Done for lookahead 1 (plain sampling) and lookahead 3, with a chain
 * of drafts and with a tree of them (SpecInfer's multi-candidate rule), at temperature 1 and with
 * top-k / top-p. Taking the second token from head 2's draft instead (what keeping
 * every draft would do) must fail the same test. */
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
    mtp_core_shutdown();
    TEST_DONE();
}
