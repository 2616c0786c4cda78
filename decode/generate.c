/* generate.c - generation on the engine: greedy decoding and sampling, each with a chain of drafts
 * (blockwise parallel decoding, speculative sampling) or a tree of them (Medusa's trees, verified
 * with SpecInfer's rule when sampling). Whatever the drafts, the output is head 1's: greedy output
 * token for token, sampled output in distribution. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode/decode.h"

static int32_t argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* top (k) = the k most likely tokens of logits x, most likely first, ties to the lower id (top[0]
 * is argmax's). */
static void top_tokens(int32_t *top, const float *x, int n, int k) {
    int have = 0;
    for (int v = 0; v < n; v++) {
        if (have == k && !(x[v] > x[top[k - 1]])) continue;
        int j = have < k ? have++ : k - 1;
        for (; j > 0 && x[v] > x[top[j - 1]]; j--) top[j] = top[j - 1];
        top[j] = v;
    }
}

/* The probability of the most likely token of logits x (softmax at temperature 1). It runs for
 * every drafting head of every pass: the vectorized exp and a float sum, not libm's expf over the
 * vocabulary in a serial double sum. */
static float top_probability(const float *x, int n) {
    float mx = x[0];
    for (int v = 1; v < n; v++) mx = x[v] > mx ? x[v] : mx;
    float sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int v = 0; v < n; v++) sum += mtp_expf(x[v] - mx);
    return 1.0f / sum;
}

/* Tokens a chain drafts at row: all K, or with min_p > 0 those before the first head whose most
 * likely token is less probable than min_p (at least 1: head 1's token is no draft). */
static int chain_length(DecodeState *s, int row, int K, float min_p) {
    if (min_p <= 0) return K;
    for (int i = 1; i < K; i++)
        if (top_probability(decode_logits(s, i, row), s->model.tc.vocab) < min_p) return i;
    return K;
}

/* One generation under way: what greedy decoding and sampling share. */
typedef struct {
    DecodeState *s;
    const DecodeRequest *req;
    int32_t *out;
    int produced;
    DecodeStats *st;
    double t0;
} Generation;

/* What decode_greedy and decode_sample refuse: the reason into s->err, 0 when the request runs. */
static int bad_request(DecodeState *s, const DecodeRequest *req) {
    const int ctx = s->model.tc.ctx, K = req->lookahead;
    const char *why = NULL;
    char msg[160] = "";
    if (s->len != 0) why = "the engine is not fresh (decode_truncate(s, 0) first)";
    else if (!req->prompt || req->n_prompt < 1 || req->n_prompt > ctx) why = "the prompt is empty or longer than the context";
    else if (req->max_new < 0) why = "max_new is negative";
    else if (K < 1 || K > s->max_rows || K > s->n_heads) why = "the lookahead is not one the engine was built for";
    else if (req->tree && decode_tree_check(req->tree, K, msg, sizeof msg)) why = msg;
    else if (req->tree && req->tree->n > s->max_rows) why = "the tree has more nodes than the engine has rows";
    if (why)
        snprintf(s->err, sizeof s->err, "request (prompt %d tokens, lookahead %d, tree %d nodes; engine of %d rows, "
                 "%d heads, context %d): %s", req->n_prompt, K, req->tree ? req->tree->n : 0, s->max_rows, s->n_heads,
                 ctx, why);
    return why != NULL;
}

/* Checks the request, runs the prompt's pass and returns the row to read the first block off (the
 * caller sets st->t_prefill: greedy decoding counts its first proposal in), or -1 with s->err. */
static int gen_start(Generation *g, DecodeState *s, const DecodeRequest *req, int32_t *out, DecodeStats *st) {
    memset(st, 0, sizeof *st);
    if (bad_request(s, req)) return -1;
    *g = (Generation){s, req, out, 0, st, mtp_now()};
    s->t_lazy = 0;
    return decode_prefill(s, req->prompt, req->n_prompt, 1);
}

/* Rows the next block may run: k tokens, less what the context or max_new leave room for.
 * *room gets the positions left in the context. */
static int gen_block_rows(const Generation *g, int k, int *room) {
    *room = g->s->model.tc.ctx - g->s->len;
    k = k < *room ? k : *room;
    return k < g->req->max_new - g->produced ? k : g->req->max_new - g->produced;
}

/* The tree the next pass runs: the request's, cut to the rows the context leaves and to the
 * depths the tokens still allowed can use. */
static void gen_pass_tree(const Generation *g, DecodeTree *t, int room) {
    const int remaining = g->req->max_new - g->produced, rows = room < g->s->max_rows ? room : g->s->max_rows;
    decode_tree_prune(t, g->req->tree, rows, remaining < g->req->lookahead ? remaining : g->req->lookahead);
}

/* The forward pass over a block of k proposed tokens (a chain), or over a tree's nodes, timed. */
static void gen_forward(Generation *g, const int32_t *block, int k, const DecodeTree *tree) {
    const double t = mtp_now();
    if (tree) decode_forward_tree(g->s, block, tree, 1);
    else decode_forward(g->s, block, k, 1);
    g->st->t_forward += mtp_now() - t;
    g->st->forwards++;
    g->st->rows += k;
}

/* After a verification: emits block[0..accepted), cut after an end token, rolls the caches back
 * over the k - accepted rejected rows, and returns 1 when generation is over. */
static int settle(Generation *g, const int32_t *block, int accepted, int k, int out_of_room) {
    int take = accepted, stop = out_of_room;
    for (int j = 0; j < accepted; j++)
        if (block[j] == g->req->eos) {
            take = j + 1, stop = 1;
            break;
        }
    memcpy(g->out + g->produced, block, take * sizeof(int32_t));
    if (g->req->emit) g->req->emit(g->req->emit_ctx, block, take);
    g->produced += take;
    if (stop) return 1;
    if (accepted < k) decode_truncate(g->s, g->s->len - (k - accepted));
    return 0;
}

/* After a tree's pass: keeps the accepted path (path[0..m) of nodes) in the caches, counts it, and
 * emits its tokens as settle does. Returns 1 when generation is over. */
static int settle_path(Generation *g, const DecodeTree *t, const int32_t *tokens, const int *path, int m) {
    int32_t kept[DECODE_TREE_MAX];
    for (int i = 0; i < m; i++) kept[i] = tokens[path[i]];
    decode_keep_path(g->s, path, m);
    for (int d = 1; d <= decode_tree_depth(t); d++) g->st->accepted[d] += d < m;
    return settle(g, kept, m, m, 0);
}

static int gen_finish(Generation *g) {
    DecodeStats *st = g->st;
    st->tokens = g->produced;
    st->t_forward += g->s->t_lazy; /* the drafting heads' share of the passes, run when first read */
    st->t_other = mtp_now() - g->t0 - st->t_prefill - st->t_forward - st->t_sample;
    return g->produced;
}

/* ---- greedy generation ------------------------------------------------------------------------ */

/* The proposal read off one row: head 1's next token, then heads 2..k's guesses after it. */
static void propose(int32_t *block, DecodeState *s, int row, int k) {
    const int V = s->model.tc.vocab;
    for (int i = 0; i < k; i++) block[i] = argmax(decode_logits(s, i, row), V);
}

/* The tokens of a tree's nodes read off one row: the root given, node i the rank[i]-th most likely
 * token of head depth[i] + 1. */
static void tree_tokens(int32_t *tokens, DecodeState *s, const DecodeTree *t, int row, int32_t root) {
    const int V = s->model.tc.vocab;
    int32_t top[HEADS_MAX][DECODE_CAL_RANKS];
    int ranks[HEADS_MAX] = {0};
    for (int i = 1; i < t->n; i++)
        ranks[t->depth[i]] = t->rank[i] + 1 > ranks[t->depth[i]] ? t->rank[i] + 1 : ranks[t->depth[i]];
    for (int d = 1; d <= decode_tree_depth(t); d++)
        if (ranks[d]) top_tokens(top[d], decode_logits(s, d, row), V, ranks[d]);
    tokens[0] = root;
    for (int i = 1; i < t->n; i++) tokens[i] = top[t->depth[i]][t->rank[i]];
}

/* The child of node under which tokens has x, or -1. */
static int child_with(const DecodeTree *t, const int32_t *tokens, int node, int32_t x) {
    for (int c = node + 1; c < t->n; c++)
        if (t->parent[c] == node && tokens[c] == x) return c;
    return -1;
}

/* Greedy decoding with a tree of drafts per pass: the longest path whose every token is head 1's
 * argmax at its parent stands, and head 1's argmax at its last node is the next root. */
static int greedy_tree(DecodeState *s, const DecodeRequest *req, int32_t *out, DecodeStats *st) {
    const int V = s->model.tc.vocab;
    Generation g;
    int row = gen_start(&g, s, req, out, st);
    if (row < 0) return -1;
    int32_t root = argmax(decode_logits(s, 0, row), V), tokens[DECODE_TREE_MAX];
    st->t_prefill = mtp_now() - g.t0;
    while (g.produced < req->max_new) {
        const int room = s->model.tc.ctx - s->len, last = root == req->eos || req->max_new - g.produced == 1;
        if (room <= 0 || last) { /* the root is emitted as it is: running it would compute what nobody reads */
            st->hit_context |= room <= 0;
            settle(&g, &root, 1, 1, 1);
            break;
        }
        DecodeTree t;
        gen_pass_tree(&g, &t, room);
        double tc = mtp_now(), lazy = s->t_lazy;
        tree_tokens(tokens, s, &t, row, root);
        st->t_sample += mtp_now() - tc - (s->t_lazy - lazy);
        gen_forward(&g, tokens, t.n, &t);
        tc = mtp_now();
        int path[DECODE_TREE_MAX], m = 1, node = 0;
        path[0] = 0;
        for (;;) {
            const int32_t next = argmax(decode_logits(s, 0, node), V);
            const int c = child_with(&t, tokens, node, next);
            if (c < 0) {
                root = next;
                break;
            }
            path[m++] = node = c;
        }
        st->t_sample += mtp_now() - tc;
        for (int d = 1; d <= decode_tree_depth(&t); d++) st->proposed[d]++;
        if (settle_path(&g, &t, tokens, path, m)) break;
        row = node;
    }
    return gen_finish(&g);
}

int decode_greedy(DecodeState *s, const DecodeRequest *req, int32_t *out, DecodeStats *st) {
    if (req->tree) return greedy_tree(s, req, out, st);
    const int K = req->lookahead, V = s->model.tc.vocab;
    Generation g;
    int32_t block[HEADS_MAX];
    const int row = gen_start(&g, s, req, out, st);
    if (row < 0) return -1;
    int drafted = chain_length(s, row, K, req->draft_min_p);
    propose(block, s, row, drafted);
    st->t_prefill = mtp_now() - g.t0;
    s->t_lazy = 0; /* the first drafts belong to the prefill */
    while (g.produced < req->max_new) {
        /* block[0] is head 1's prediction: always right. Past the context it cannot be run, only emitted. */
        int room, k = gen_block_rows(&g, drafted, &room);
        /* a first token that ends the generation (the end token, or the last one allowed) is
           emitted as it is: running it would only compute what nobody reads */
        const int last = block[0] == req->eos || req->max_new - g.produced == 1;
        if (last) k = 1;
        int accepted = 1;
        if (room > 0 && !last) {
            gen_forward(&g, block, k, NULL);
            /* block[j] stands if head 1, run on block[0..j), predicts it */
            const double tc = mtp_now();
            while (accepted < k && argmax(decode_logits(s, 0, accepted - 1), V) == block[accepted]) accepted++;
            st->t_sample += mtp_now() - tc;
            for (int j = 1; j < k; j++) st->proposed[j]++, st->accepted[j] += j < accepted;
        } else if (room <= 0) {
            st->hit_context = 1;
        }
        if (settle(&g, block, accepted, k, room <= 0) || g.produced >= req->max_new) break;
        const double tc = mtp_now(), lazy = s->t_lazy;
        drafted = chain_length(s, accepted - 1, K, req->draft_min_p);
        propose(block, s, accepted - 1, drafted);
        st->t_sample += mtp_now() - tc - (s->t_lazy - lazy);
    }
    return gen_finish(&g);
}
/* ---- sampling ---------------------------------------------------------------------------------- */

/* qsort_r's order of tokens: most likely first, ties to the lower id (the cut is deterministic) */
static int by_probability(const void *a, const void *b, void *p) {
    const int x = *(const int *)a, y = *(const int *)b;
    const float px = ((const float *)p)[x], py = ((const float *)p)[y];
    return px > py ? -1 : px < py ? 1 : (x > y) - (x < y);
}

/* The tokens a top-k / top-p cut may keep, most likely first, into order: those at or above a
 * threshold that halves from the largest probability until they hold k tokens or reach mass top_p
 * (whichever the cut needs first). Every token below the threshold comes after all of these, so
 * sorting these alone gives the cut of a full sort, in O(V) per halving plus a sort of the few
 * kept: about what a draft's distribution needs at any vocabulary. Returns how many. */
static int cut_candidates(int *order, const float *p, int V, int k, float top_p, float mx) {
    for (float t = mx;; t *= 0.5f) {
        int m = 0;
        double mass = 0;
        for (int v = 0; v < V; v++)
            if (p[v] >= t) order[m++] = v, mass += p[v];
        if (m >= k || mass >= top_p || t == 0.0f) {
            qsort_r(order, (size_t)m, sizeof *order, by_probability, (void *)p);
            return m;
        }
    }
}

void decode_sampling_probs(float *p, const float *logits, int V, const DecodeSampling *cfg, int *order) {
    float mx = logits[0];
    for (int v = 1; v < V; v++) mx = logits[v] > mx ? logits[v] : mx;
    double sum = 0;
    for (int v = 0; v < V; v++) sum += p[v] = expf((logits[v] - mx) / cfg->temperature);
    float pmax = 0;
    for (int v = 0; v < V; v++) p[v] = (float)(p[v] / sum), pmax = p[v] > pmax ? p[v] : pmax;
    const int k = cfg->top_k > 0 && cfg->top_k < V ? cfg->top_k : V;
    if (k == V && cfg->top_p >= 1.0f) return;
    int keep = cut_candidates(order, p, V, k, cfg->top_p, pmax);
    keep = keep < k ? keep : k;
    double acc = 0;
    for (int i = 0; i < keep; i++)
        if ((acc += p[order[i]]) >= cfg->top_p) {
            keep = i + 1;
            break;
        }
    double kept = 0;
    for (int i = 0; i < keep; i++) kept += p[order[i]];
    /* the kept tokens are those before the last kept one in the order, (p, id) */
    const float last_p = p[order[keep - 1]];
    const int last_id = order[keep - 1];
    for (int v = 0; v < V; v++)
        p[v] = p[v] > last_p || (p[v] == last_p && v <= last_id) ? (float)(p[v] / kept) : 0.0f;
}

/* A draw from p (V, summing to total). */
static int32_t sample_from(const float *p, int V, double total, MtpRng *rng) {
    double u = mtp_rng_uniform(rng) * total, acc = 0;
    int last = 0;
    for (int v = 0; v < V; v++) {
        if (p[v] <= 0) continue;
        last = v;
        if ((acc += p[v]) > u) return v;
    }
    return last; /* rounding left u at the very top */
}

/* Sampling's working memory: q[j] (V) head j's draft distribution, p (V) head 1's, order (V). */
typedef struct {
    float *q, *p;
    int *order;
} SampleWork;

/* The block drawn at row: head 1's token (first, unless a rejection already chose it: first >= 0),
 * then the drafts of heads 2..k with their distributions into w->q. */
static void draw_block(Generation *g, SampleWork *w, int32_t *block, int k, int row, int32_t first) {
    DecodeState *s = g->s;
    const DecodeRequest *req = g->req;
    const int V = s->model.tc.vocab;
    if (first < 0) {
        decode_sampling_probs(w->p, decode_logits(s, 0, row), V, &req->sampling, w->order);
        first = sample_from(w->p, V, 1.0, req->rng);
    }
    block[0] = first;
    for (int j = 1; j < k; j++) {
        float *qj = w->q + (size_t)j * V;
        decode_sampling_probs(qj, decode_logits(s, j, row), V, &req->sampling, w->order);
        block[j] = sample_from(qj, V, 1.0, req->rng);
    }
}

/* Verifies block[1..k) after its forward pass: block[j] stands with probability min(1, p/q); a
 * rejection draws the block's next first token from max(0, p - q) into *first. Returns the
 * tokens accepted (block[0] included). */
static int verify_sampled(Generation *g, SampleWork *w, const int32_t *block, int k, int32_t *first) {
    DecodeState *s = g->s;
    const DecodeRequest *req = g->req;
    const int V = s->model.tc.vocab;
    float *p = w->p;
    int accepted = 1;
    for (; accepted < k; accepted++) {
        const int j = accepted;
        const float *qj = w->q + (size_t)j * V;
        decode_sampling_probs(p, decode_logits(s, 0, j - 1), V, &req->sampling, w->order);
        g->st->proposed[j]++;
        const int32_t x = block[j];
        if (mtp_rng_uniform(req->rng) * qj[x] < p[x]) {
            g->st->accepted[j]++;
            continue;
        }
        double total = 0;
        for (int v = 0; v < V; v++) total += p[v] = p[v] > qj[v] ? p[v] - qj[v] : 0.0f;
        *first = total > 0 ? sample_from(p, V, total, req->rng) : x; /* total 0 means p == q: x stands */
        break;
    }
    return accepted;
}

/* p = norm(max(0, p - q)), the distribution left after a draft from q was rejected; returns its
 * total before normalizing (0 when p <= q everywhere, i.e. p == q: no rejection was possible). */
static double residual(float *p, const float *q, int V) {
    double total = 0;
    for (int v = 0; v < V; v++) total += p[v] = p[v] > q[v] ? p[v] - q[v] : 0.0f;
    if (total > 0)
        for (int v = 0; v < V; v++) p[v] = (float)(p[v] / total);
    return total;
}

/* Sampling with a tree of drafts per pass, SpecInfer's multi-step speculative sampling (Miao et al.
 * 2024): every node below the root is a draw from its head's distribution q, siblings drawn
 * independently. From the root down, a node's children are tried in turn against head 1's
 * distribution p at the node: child x stands with probability min(1, p(x) / q(x)); a rejection
 * leaves p = norm(max(0, p - q)) for the next child; when none stands, the next token is drawn
 * from what p is left, and the pass ends. Each step outputs exactly p, as one draft does in
 * speculative sampling, so the output is distributed as head-1 sampling. */
static int sample_tree(DecodeState *s, const DecodeRequest *req, int32_t *out, DecodeStats *st, SampleWork *w) {
    const int V = s->model.tc.vocab;
    Generation g;
    int row = gen_start(&g, s, req, out, st);
    if (row < 0) return -1;
    st->t_prefill = mtp_now() - g.t0;
    s->t_lazy = 0;
    int32_t first = -1, tokens[DECODE_TREE_MAX]; /* first: the next root, when a rejection drew it */
    while (g.produced < req->max_new) {
        double tc = mtp_now(), lazy = s->t_lazy;
        const int room = s->model.tc.ctx - s->len;
        DecodeTree t;
        gen_pass_tree(&g, &t, room > 0 ? room : 1);
        draw_block(&g, w, tokens, 1, row, first); /* the root; then the heads' distributions and draws */
        for (int d = 1; d <= decode_tree_depth(&t); d++)
            decode_sampling_probs(w->q + (size_t)d * V, decode_logits(s, d, row), V, &req->sampling, w->order);
        for (int i = 1; i < t.n; i++) tokens[i] = sample_from(w->q + (size_t)t.depth[i] * V, V, 1.0, req->rng);
        st->t_sample += mtp_now() - tc - (s->t_lazy - lazy);
        if (room <= 0) {
            st->hit_context = 1;
            settle(&g, tokens, 1, 1, 1);
            break;
        }
        gen_forward(&g, tokens, t.n, &t);
        tc = mtp_now();
        int path[DECODE_TREE_MAX], m = 1, node = 0;
        path[0] = 0, first = -1;
        for (int stood = 1; stood && first < 0;) {
            stood = 0;
            int has_child = 0;
            decode_sampling_probs(w->p, decode_logits(s, 0, node), V, &req->sampling, w->order);
            for (int c = node + 1; c < t.n && !stood; c++) {
                if (t.parent[c] != node) continue;
                const float *q = w->q + (size_t)t.depth[c] * V;
                const int32_t x = tokens[c];
                has_child = 1;
                if (mtp_rng_uniform(req->rng) * q[x] < w->p[x] || residual(w->p, q, V) <= 0)
                    stood = 1, path[m++] = node = c;
            }
            /* no child stood: the next token comes from what is left of p (a leaf: from p itself,
               drawn at the next block) */
            if (!stood && has_child) first = sample_from(w->p, V, 1.0, req->rng);
        }
        st->t_sample += mtp_now() - tc;
        for (int d = 1; d <= decode_tree_depth(&t); d++) st->proposed[d]++;
        if (settle_path(&g, &t, tokens, path, m)) break;
        row = node;
    }
    return gen_finish(&g);
}

int decode_sample(DecodeState *s, const DecodeRequest *req, int32_t *out, DecodeStats *st) {
    const int K = req->lookahead, V = s->model.tc.vocab;
    memset(st, 0, sizeof *st);
    if (!(req->sampling.temperature > 0) || !req->rng) {
        snprintf(s->err, sizeof s->err, "sampling needs a temperature above 0 (got %g) and an rng",
                 (double)req->sampling.temperature);
        return -1;
    }
    if (bad_request(s, req)) return -1; /* before sizing the buffers by its lookahead */
    SampleWork w = {malloc((size_t)(K + 1) * V * sizeof(float)), NULL, malloc((size_t)V * sizeof(int))};
    if (!w.q || !w.order) {
        free(w.q), free(w.order);
        snprintf(s->err, sizeof s->err, "out of memory for sampling's distributions (%d x %d floats)", K + 1, V);
        return -1;
    }
    w.p = w.q + (size_t)K * V;
    if (req->tree) {
        const int n = sample_tree(s, req, out, st, &w);
        free(w.q), free(w.order);
        return n;
    }
    Generation g;
    int row = gen_start(&g, s, req, out, st);
    if (row < 0) {
        free(w.q), free(w.order);
        return -1;
    }
    st->t_prefill = mtp_now() - g.t0;
    s->t_lazy = 0;
    int32_t block[HEADS_MAX], first = -1; /* the block's first token when it came from a rejection */
    for (;;) {
        double tc = mtp_now(), lazy = s->t_lazy;
        const int drafted = chain_length(s, row, K, req->draft_min_p);
        draw_block(&g, &w, block, drafted, row, first);
        st->t_sample += mtp_now() - tc - (s->t_lazy - lazy);
        if (g.produced >= req->max_new) break;
        int room, k = gen_block_rows(&g, drafted, &room), accepted = 1;
        first = -1;
        if (room > 0) {
            gen_forward(&g, block, k, NULL);
            tc = mtp_now();
            accepted = verify_sampled(&g, &w, block, k, &first);
            st->t_sample += mtp_now() - tc;
        } else {
            st->hit_context = 1;
        }
        if (settle(&g, block, accepted, k, room <= 0)) break;
        row = accepted - 1;
    }
    free(w.q), free(w.order);
    return gen_finish(&g);
}
