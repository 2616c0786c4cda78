/* test_tree.c - draft trees: the tree pass, keeping a path, greedy identity, calibration.
 *
 *   - Tree-masked attention: for random trees (1..16 nodes, and 24 past the small-row kernel) on
 *     random models (both head types, 4 heads, head dims 12 and 24, prompts across key tiles), the
 *     logits of every head at every node equal those of the node's root-to-node path run as a
 *     chain over the same cache: bit for bit where the small-row kernel serves the products (every
 *     row summed in the same order at any row count), within 1e-4 where oneDNN does. And the
 *     chain of the deepest path against the full forward (the training pass) within 1e-4.
 *   - Keeping a path: after a tree's pass and decode_keep_path of a random path, a further pass
 *     (a token, then another tree) gives the logits of a fresh engine that ran the path as a chain.
 *   - Greedy identity: small models trained briefly on builtin:arith (both head types) decode with
 *     random trees exactly as head 1 alone, for many prompts, with the context filling up and with
 *     an end token that falls inside accepted paths; and the trees do accept drafts.
 *   - Calibration with a known answer: a model whose linear heads are all copies of head 1 has at
 *     every position the ranks of head 1's own logits; the tally equals ranks computed here one
 *     token at a time, and the rates and the trees' expected tokens per pass equal counts done
 *     here by brute force. */
#include <stdlib.h>
#include <string.h>

#include "decode/decode.h"
#include "mtp/mtp.h"
#include "tests/test.h"

enum { NH = 4, CTX = 96, TMAX = 24 };

static double max_diff(const float *a, const float *b, size_t n) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - b[i]);
        worst = d <= worst ? worst : isnan(d) ? INFINITY : d;
    }
    return worst;
}

/* Tolerance between a row computed in passes of different row counts: 0 where the small-row
 * kernel serves every product of both (up to MTP_SMALL_ROWS_MAX rows). */
static double rows_tol(int rows) {
    return rows <= MTP_SMALL_ROWS_MAX && mtp_small_kernel(mtp_core_precision()) != MTP_SMALL_ONEDNN ? 0.0 : 1e-4;
}

/* A random tree of n nodes with depths below max_depth: each node under a random earlier node
 * that is not at the deepest level, at a rank its siblings do not have (rank 0 half the time,
 * so that trained heads' drafts are accepted now and then). */
static void random_tree(DecodeTree *t, int n, int max_depth, MtpRng *r) {
    decode_tree_chain(t, 1);
    while (t->n < n) {
        const int p = (int)mtp_rng_below(r, t->n);
        const int rank = mtp_rng_below(r, 2) ? 0 : (int)mtp_rng_below(r, DECODE_CAL_RANKS);
        if (t->depth[p] + 1 >= max_depth) continue;
        int taken = 0;
        for (int c = 1; c < t->n; c++) taken |= t->parent[c] == p && t->rank[c] == rank;
        if (taken) continue;
        t->parent[t->n] = p, t->depth[t->n] = t->depth[p] + 1, t->rank[t->n] = rank;
        t->n++;
    }
}

/* The nodes from the root to node, in order; returns how many. */
static int path_to(int *path, const DecodeTree *t, int node) {
    const int m = t->depth[node] + 1;
    for (int k = m - 1; k >= 0; k--) path[k] = node, node = t->parent[node];
    return m;
}

static void random_model(MtpModel *m, int V, int D, int H, HeadType type, uint64_t seed) {
    char err[256];
    MtpConfig cfg = {{V, D, 2, H, 2 * D, CTX}, {NH, type}};
    CHECK(mtp_model_build(m, &cfg, err, sizeof err) == 0);
    mtp_model_init(m, seed);
    MtpRng r;
    mtp_rng_seed(&r, seed + 1);
    for (size_t i = 0; i < m->n_params; i++) m->params[i] += (float)(0.05 * mtp_rng_normal(&r));
}

/* Every head's logits (NH, V) at row of the last forward. */
static void all_logits(float *out, DecodeState *s, int row) {
    const int V = s->model.tc.vocab;
    for (int h = 0; h < NH; h++) memcpy(out + (size_t)h * V, decode_logits(s, h, row), V * sizeof(float));
}

/* The chain engine: prompt, then the tokens of path as one pass; logits of its last row. */
static void chain_logits(float *out, DecodeState *c, const int32_t *prompt, int P, const int32_t *tokens, int m) {
    decode_truncate(c, 0);
    decode_prefill(c, prompt, P, NH);
    decode_forward(c, tokens, m, NH);
    all_logits(out, c, m - 1);
}

static void check_tree_pass(const MtpModel *m, MtpRng *r, const char *what) {
    char err[256];
    const int V = m->cfg.trunk.vocab;
    DecodeState s, c;
    CHECK(decode_build(&s, mtp_decode_model(m), TMAX, NH, err, sizeof err) == 0);
    CHECK(decode_build(&c, mtp_decode_model(m), TMAX, NH, err, sizeof err) == 0);
    float *got = malloc((size_t)NH * V * sizeof(float)), *want = malloc((size_t)NH * V * sizeof(float));
    double worst = 0, worst_full = 0;
    for (int trial = 0; trial < 18; trial++) {
        const int n = trial < 16 ? trial + 1 : TMAX, P = 1 + (int)mtp_rng_below(r, CTX - TMAX - 1);
        DecodeTree t;
        random_tree(&t, n, NH, r);
        int32_t prompt[CTX], tokens[TMAX], path_tokens[TMAX];
        for (int i = 0; i < P; i++) prompt[i] = (int32_t)mtp_rng_below(r, V);
        for (int i = 0; i < n; i++) tokens[i] = (int32_t)mtp_rng_below(r, V);
        decode_truncate(&s, 0);
        decode_prefill(&s, prompt, P, NH);
        decode_forward_tree(&s, tokens, &t, NH);
        CHECK(s.len == P + n);
        for (int i = 0; i < n; i++) {
            int path[TMAX], k = path_to(path, &t, i);
            for (int j = 0; j < k; j++) path_tokens[j] = tokens[path[j]];
            chain_logits(want, &c, prompt, P, path_tokens, k);
            all_logits(got, &s, i);
            const double d = max_diff(got, want, (size_t)NH * V);
            worst = d > worst ? d : worst;
            CHECK_MSG(d <= rows_tol(n), "%s: tree of %d nodes, node %d (depth %d), prompt %d: differs by %g from its "
                      "path run as a chain", what, n, i, t.depth[i], P, d);
        }
        /* the deepest node's path against the training forward over the prompt and the path */
        int path[TMAX], deepest = n - 1, k = path_to(path, &t, deepest);
        int32_t seq[CTX + 1];
        memcpy(seq, prompt, P * sizeof(int32_t));
        for (int j = 0; j < k; j++) seq[P + j] = tokens[path[j]];
        seq[P + k] = 0;
        MtpWorkspace ws;
        CHECK(mtp_workspace_build(&ws, m, 1, P + k) == 0);
        all_logits(got, &s, deepest);
        for (int h = 0; h < NH; h++) {
            mtp_forward_head(&ws, seq, h);
            const double d = max_diff(got + (size_t)h * V, ws.heads.logits + (size_t)(P + k - 1) * V, V);
            worst_full = d > worst_full ? d : worst_full;
            CHECK_MSG(d <= 1e-4, "%s: tree of %d nodes, head %d at its deepest node: %g from the full forward", what,
                      n, h + 1, d);
        }
        mtp_workspace_free(&ws);
    }
    fprintf(stderr, "%s: tree rows against chains: worst %g; against the full forward: worst %g\n", what, worst,
            worst_full);
    free(got), free(want);
    decode_free(&s), decode_free(&c);
}

/* After a tree pass, decode_keep_path of a random path, then a token and another tree: the logits
 * equal a fresh engine's that ran the path as a chain. */
static void check_keep_path(const MtpModel *m, MtpRng *r, const char *what) {
    char err[256];
    const int V = m->cfg.trunk.vocab;
    DecodeState s, c;
    CHECK(decode_build(&s, mtp_decode_model(m), 16, NH, err, sizeof err) == 0);
    CHECK(decode_build(&c, mtp_decode_model(m), 16, NH, err, sizeof err) == 0);
    float *got = malloc((size_t)NH * V * sizeof(float)), *want = malloc((size_t)NH * V * sizeof(float));
    for (int trial = 0; trial < 12; trial++) {
        const int n = 2 + (int)mtp_rng_below(r, 15), P = 1 + (int)mtp_rng_below(r, 40);
        DecodeTree t, t2;
        random_tree(&t, n, NH, r);
        random_tree(&t2, 1 + (int)mtp_rng_below(r, 16), NH, r);
        int32_t prompt[64], tokens[16], tokens2[16], seq[16];
        for (int i = 0; i < P; i++) prompt[i] = (int32_t)mtp_rng_below(r, V);
        for (int i = 0; i < n; i++) tokens[i] = (int32_t)mtp_rng_below(r, V);
        for (int i = 0; i < t2.n; i++) tokens2[i] = (int32_t)mtp_rng_below(r, V);
        int path[16], k = path_to(path, &t, (int)mtp_rng_below(r, n));
        k = 1 + (int)mtp_rng_below(r, k); /* a prefix: where verification stopped */
        for (int j = 0; j < k; j++) seq[j] = tokens[path[j]];
        decode_truncate(&s, 0);
        decode_prefill(&s, prompt, P, NH);
        decode_forward_tree(&s, tokens, &t, NH);
        decode_keep_path(&s, path, k);
        CHECK(s.len == P + k);
        const int32_t x = (int32_t)mtp_rng_below(r, V);
        decode_forward(&s, &x, 1, NH);
        all_logits(got, &s, 0);
        decode_truncate(&c, 0);
        decode_prefill(&c, prompt, P, NH);
        decode_forward(&c, seq, k, NH);
        decode_forward(&c, &x, 1, NH);
        all_logits(want, &c, 0);
        double d = max_diff(got, want, (size_t)NH * V);
        CHECK_MSG(d <= rows_tol(16), "%s: path of %d kept from a tree of %d: next token's logits differ by %g", what,
                  k, n, d);
        /* and a second tree on top: every node as its chain on the same cache */
        decode_forward_tree(&s, tokens2, &t2, NH);
        decode_forward_tree(&c, tokens2, &t2, NH);
        for (int i = 0; i < t2.n; i++) {
            all_logits(got, &s, i), all_logits(want, &c, i);
            d = max_diff(got, want, (size_t)NH * V);
            CHECK_MSG(d <= rows_tol(16), "%s: second tree, node %d: %g", what, i, d);
        }
    }
    free(got), free(want);
    decode_free(&s), decode_free(&c);
}

/* ---- greedy identity on trained models ---------------------------------------------------------- */

enum { SCTX = 48, PROMPTS = 12, MAX_NEW = 80 };

static void train_small(MtpModel *m, const DsCorpus *data, HeadType type) {
    char err[256];
    MtpConfig cfg = {{DS_BYTE_VOCAB, 48, 2, 4, 96, SCTX}, {NH, type}};
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

static void check_greedy_identity(const MtpModel *m, const DsCorpus *data, MtpRng *r, const char *what) {
    char err[256];
    long tokens = 0, forwards = 0, eos_inside = 0;
    for (int p = 0; p < PROMPTS; p++) {
        const int len = 4 + (int)mtp_rng_below(r, 20);
        const int32_t *prompt = data->val + mtp_rng_below(r, data->n_val - len);
        /* half the prompts stop at an end token the arithmetic text is full of */
        const int32_t eos = p % 2 ? ' ' : -1;
        int32_t base[MAX_NEW], got[MAX_NEW];
        DecodeState s;
        DecodeStats st;
        CHECK(decode_build(&s, mtp_decode_model(m), 16, NH, err, sizeof err) == 0);
        DecodeRequest req = {.prompt = prompt, .n_prompt = len, .max_new = MAX_NEW, .lookahead = 1, .eos = eos};
        const int n_base = decode_greedy(&s, &req, base, &st);
        for (int trial = 0; trial < 6; trial++) {
            DecodeTree t;
            random_tree(&t, 1 + (int)mtp_rng_below(r, 16), NH, r);
            decode_truncate(&s, 0);
            req.lookahead = NH, req.tree = &t;
            const int n = decode_greedy(&s, &req, got, &st);
            CHECK_MSG(n == n_base && memcmp(got, base, n * sizeof(int32_t)) == 0,
                      "%s prompt %d, tree of %d nodes: output differs from head 1 alone (%d vs %d tokens)", what, p,
                      t.n, n, n_base);
            tokens += st.tokens, forwards += st.forwards;
            eos_inside += eos >= 0 && n > 0 && got[n - 1] == eos;
            /* sampling with the same tree runs to its end too (its distribution: test_sampling) */
            MtpRng rng;
            mtp_rng_seed(&rng, (uint64_t)p * 100 + trial);
            DecodeRequest sreq = req;
            sreq.sampling = (DecodeSampling){1.0f, 0, 1.0f}, sreq.rng = &rng;
            decode_truncate(&s, 0);
            const int ns = decode_sample(&s, &sreq, got, &st);
            int in_range = ns >= 1 && ns <= MAX_NEW;
            for (int i = 0; i < ns && in_range; i++) in_range = got[i] >= 0 && got[i] < DS_BYTE_VOCAB;
            CHECK_MSG(in_range && (ns == MAX_NEW || st.hit_context || got[ns - 1] == eos) &&
                      s.len <= SCTX && st.tokens == ns, "%s prompt %d: sampling with a tree of %d nodes: %d tokens",
                      what, p, t.n, ns);
        }
        decode_free(&s);
    }
    fprintf(stderr, "%s: random trees: %ld tokens in %ld passes; %ld runs ended at the end token\n", what, tokens,
            forwards, eos_inside);
    CHECK_MSG(tokens > forwards * 5 / 4, "%s: trees accepted too few drafts (%ld tokens, %ld passes)", what, tokens,
              forwards);
    CHECK(eos_inside > 0);
}

/* ---- calibration ---------------------------------------------------------------------------------- */

/* rank of x in logits as the tally counts it */
static int rank_here(const float *logits, int V, int32_t x) {
    int r = 0;
    for (int v = 0; v < V; v++) r += logits[v] > logits[x] || (logits[v] == logits[x] && v < x);
    return r < DECODE_CAL_RANKS ? r : DECODE_CAL_RANKS;
}

static void check_calibration(MtpRng *r) {
    char err[256];
    MtpModel m;
    random_model(&m, 23, 24, 2, HEAD_LINEAR, 31);
    const int V = 23, D = 24;
    for (int h = 1; h < NH; h++) memcpy(m.heads.lin[h], m.heads.lin[0], (size_t)D * D * sizeof(float));
    DecodeState s, one;
    CHECK(decode_build(&s, mtp_decode_model(&m), 5, NH, err, sizeof err) == 0);
    CHECK(decode_build(&one, mtp_decode_model(&m), 1, 1, err, sizeof err) == 0);
    DecodeCalTally tally = {0};
    long expect_n = 0;
    uint8_t *want = malloc((size_t)CTX * 8 * (NH - 1));
    for (int p = 0; p < 8; p++) {
        const int P = 1 + (int)mtp_rng_below(r, 10);
        int32_t seq[CTX];
        for (int i = 0; i < P; i++) seq[i] = (int32_t)mtp_rng_below(r, V);
        DecodeStats st;
        const DecodeRequest req = {.prompt = seq, .n_prompt = P, .max_new = CTX - P, .lookahead = 1, .eos = -1};
        const int n = P + decode_greedy(&one, &req, seq + P, &st);
        /* the ranks here: head 1's logits at every position, one token at a time */
        decode_truncate(&one, 0);
        decode_prefill(&one, seq, P, 1);
        for (int t = P - 1; t <= n - 2; t++) {
            if (t > P - 1) decode_forward(&one, seq + t, 1, 1);
            for (int d = 0; d < NH - 1; d++)
                want[(size_t)expect_n * (NH - 1) + d] =
                    t + d + 2 < n ? (uint8_t)rank_here(decode_logits(&one, 0, 0), V, seq[t + d + 2]) : DECODE_CAL_RANKS;
            expect_n++;
        }
        decode_truncate(&one, 0);
        CHECK(decode_cal_tally(&tally, &s, seq, n, P - 1) == 0);
        CHECK(s.len == 0);
    }
    CHECK(tally.n == expect_n && tally.depth == NH - 1);
    CHECK_MSG(tally.n == expect_n && memcmp(tally.ranks, want, (size_t)expect_n * (NH - 1)) == 0,
              "the tally's ranks differ from head 1's ranks computed one token at a time");
    DecodeCalibration cal;
    CHECK(decode_calibration_build(&cal, &tally, NH, 16) == 0);
    DecodeCalibration none;
    CHECK(decode_calibration_build(&none, &tally, NH + 1, 16) == -1 && decode_calibration_build(&none, &tally, NH, 33) == -1);
    CHECK(decode_calibration_check(&cal, err, sizeof err) == 0);
    CHECK(cal.n_trees == 16 && cal.positions == expect_n);
    /* rates by brute force */
    for (int d = 0; d < NH - 1; d++) {
        long given = 0, hit0 = 0;
        for (long i = 0; i < expect_n; i++) {
            int ok = 1;
            for (int e = 0; e < d; e++) ok &= want[i * (NH - 1) + e] < DECODE_CAL_RANKS;
            given += ok, hit0 += ok && want[i * (NH - 1) + d] == 0;
        }
        CHECK_CLOSE(cal.rate[d][0], given ? (double)hit0 / given : 0.0, 1e-12, 0);
    }
    /* expected tokens per pass of each tree: 1 + the depth of the deepest node each position
       follows, averaged; trees nested and never worse with more nodes */
    for (int k = 0; k < cal.n_trees; k++) {
        const DecodeTree *t = &cal.trees[k];
        double sum = 0;
        for (long i = 0; i < expect_n; i++) {
            int best = 0;
            for (int node = 0; node < t->n; node++) {
                int path[DECODE_TREE_MAX], kk = path_to(path, t, node), ok = 1;
                for (int j = 1; j < kk; j++) ok &= want[i * (NH - 1) + j - 1] == t->rank[path[j]];
                if (ok && kk > best) best = kk;
            }
            sum += best;
        }
        CHECK_CLOSE(cal.expected[k], sum / expect_n, 1e-9, 0);
        if (k) CHECK(memcmp(t->parent, cal.trees[k - 1].parent, (size_t)k * sizeof(int)) == 0);
        if (k) CHECK(cal.expected[k] >= cal.expected[k - 1]);
    }
    fprintf(stderr, "calibration: %ld positions, head 2 top-1 %.2f, tokens per pass: 1 node %.2f, 4 nodes %.2f, 16 "
            "nodes %.2f\n", cal.positions, cal.rate[0][0], cal.expected[0], cal.expected[3], cal.expected[15]);
    free(want);
    decode_cal_tally_free(&tally);
    decode_free(&s), decode_free(&one);
    mtp_model_free(&m);
}

/* Calls outside their preconditions return -1 (or NULL) with a message and change nothing, in
 * Release builds too (no assert stands between them and memory). */
static void check_refusals(void) {
    char err[256];
    MtpModel m;
    random_model(&m, 41, 24, 2, HEAD_LINEAR, 5);
    DecodeState s;
    CHECK(decode_build(&s, mtp_decode_model(&m), 4, NH, err, sizeof err) == 0);
    const int32_t toks[CTX + 1] = {1, 2, 3};
    int refused = 0;
#define REFUSED(call)                                                                     \
    do {                                                                                  \
        s.err[0] = 0;                                                                     \
        const int len_ = s.len;                                                           \
        CHECK_MSG((call) == -1 && s.err[0] && s.len == len_, "%s was not refused", #call); \
        refused++;                                                                        \
    } while (0)
    REFUSED(decode_prefill(&s, toks, 0, 1));
    REFUSED(decode_prefill(&s, toks, CTX + 1, 1));
    REFUSED(decode_prefill(&s, toks, 3, NH + 1));
    CHECK(decode_prefill(&s, toks, 3, 1) == 0 && s.len == 3);
    REFUSED(decode_forward(&s, toks, 0, 1));
    REFUSED(decode_forward(&s, toks, 5, 1)); /* more rows than the engine's 4 */
    REFUSED(decode_truncate(&s, 4));
    REFUSED(decode_truncate(&s, -1));
    DecodeTree t;
    decode_tree_chain(&t, 3);
    t.parent[2] = 2; /* not an earlier node */
    REFUSED(decode_forward_tree(&s, toks, &t, 1));
    decode_tree_chain(&t, 5); /* more nodes than rows */
    REFUSED(decode_forward_tree(&s, toks, &t, 1));
    decode_tree_chain(&t, 3);
    CHECK(decode_forward_tree(&s, toks, &t, 1) == 0 && s.len == 6);
    REFUSED(decode_keep_path(&s, (int[]){1, 2}, 2)); /* not from the root */
    REFUSED(decode_keep_path(&s, (int[]){0, 2, 1}, 3));
    CHECK(decode_logits(&s, NH, 0) == NULL && s.err[0]);
    CHECK(decode_logits(&s, 0, 3) == NULL);
    CHECK(decode_truncate(&s, 0) == 0);
    DecodeStats st;
    int32_t out[8];
    DecodeRequest req = {.prompt = toks, .n_prompt = 0, .max_new = 8, .lookahead = 2, .eos = -1};
    REFUSED(decode_greedy(&s, &req, out, &st));
    req.n_prompt = 3, req.lookahead = 5;
    REFUSED(decode_greedy(&s, &req, out, &st));
    req.lookahead = 2, req.tree = &t; /* depth 2 is not below the lookahead */
    REFUSED(decode_greedy(&s, &req, out, &st));
    req.tree = NULL;
    REFUSED(decode_sample(&s, &req, out, &st)); /* no temperature, no rng */
    CHECK(decode_greedy(&s, &req, out, &st) == 8);
    CHECK(decode_greedy(&s, &req, out, &st) == -1 && strstr(s.err, "not fresh"));
#undef REFUSED
    fprintf(stderr, "%d calls outside their preconditions refused\n", refused);
    decode_free(&s);
    mtp_model_free(&m);
}

int main(void) {
    char err[256];
    CHECK(mtp_core_init(1, MTP_FP32, err, sizeof err) == 0);
    MtpRng r;
    mtp_rng_seed(&r, 77);
    const MtpPrecision precs[2] = {MTP_FP32, MTP_BF16};
    for (int pi = 0; pi < 2; pi++) {
        if (precs[pi] == MTP_BF16 && !mtp_bf16_products()) continue;
        mtp_core_set_precision(precs[pi]);
        for (int type = 0; type < 2; type++) {
            MtpModel m;
            random_model(&m, 41, type ? 48 : 24, 2, (HeadType)type, 11 + type);
            char what[64];
            snprintf(what, sizeof what, "%s heads, %s", heads_type_name((HeadType)type),
                     mtp_precision_name(precs[pi]));
            if (precs[pi] == MTP_FP32) check_tree_pass(&m, &r, what);
            check_keep_path(&m, &r, what);
            mtp_model_free(&m);
        }
    }
    mtp_core_set_precision(MTP_FP32);
    check_refusals();
    check_calibration(&r);
    DsOptions o;
    ds_options_init(&o);
    o.spec = "builtin:arith";
    o.difficulty = 1;
    o.min_tokens = SCTX + 1;
    DsCorpus data;
    CHECK(ds_load(&data, &o, err, sizeof err) == 0);
    for (int type = 0; type < 2; type++) {
        MtpModel m;
        train_small(&m, &data, (HeadType)type);
        check_greedy_identity(&m, &data, &r, heads_type_name((HeadType)type));
        mtp_model_free(&m);
    }
    ds_free(&data);
    mtp_core_shutdown();
    TEST_DONE();
}
