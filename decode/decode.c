/* decode.c - the inference engine: trunk and heads over key/value caches. */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode/decode.h"

/* Transformer heads among the kept ones carry a cache; linear heads do not. */
static int cached_heads(const DecodeModel *m, int n_heads) { return m->hc.type == HEAD_TRANSFORMER ? n_heads : 0; }

/* Floats of drafts_work per drafting head: a row of h, hn and u, and one rstd. */
#define DECODE_DRAFTS_WORK(D) (3 * (size_t)(D) + 1)

/* Working memory: the caches, then the buffers of the passes, in one allocation. */
static int build_run_state(DecodeState *s, const DecodeModel *m) {
    const TrunkConfig *c = &m->tc;
    const size_t R = (size_t)s->max_rows, RP = (size_t)s->pass_rows, D = c->dim, V = c->vocab, n = s->n_heads;
    const size_t caches = (size_t)c->layers + cached_heads(m, s->n_heads);
    const size_t k_floats = caches * trunk_k_cache_floats(c), v_floats = caches * trunk_v_cache_floats(c);
    s->mem = mtp_calloc(k_floats + v_floats + RP * D + 2 * R * D + R + n * (R * V + RP * D) + n * V +
                            n * DECODE_DRAFTS_WORK(D), sizeof(float));
    if (!s->mem || block_decode_scratch_build(&s->scratch, (int)RP, c->ctx, c->dim, c->attn_heads, c->ffn)) return -1;
    float *p = s->mem;
    s->k_cache = p, p += k_floats;
    s->v_cache = p, p += v_floats;
    s->z = p, p += RP * D;
    s->u = p, p += R * D;
    s->hn = p, p += R * D;
    s->rstd = p, p += R;
    s->logits = p, p += n * R * V;
    s->heads_h = p, p += n * RP * D;
    s->drafts = p, p += n * V;
    s->drafts_work = p;
    return 0;
}

/* Every packed matrix in one allocation, in the order a forward pass reads them; each block gets
 * its layer of the caches. */
static int pack_weights(DecodeState *s, const DecodeModel *m) {
    const TrunkConfig *c = &m->tc;
    const MtpPrecision prec = mtp_core_precision();
    const size_t bytes = (size_t)c->layers * block_packed_bytes(c->dim, c->ffn, prec) +
                         heads_packed_bytes(s->n_heads, c, &m->hc, prec);
    s->packed_mem = mtp_calloc(bytes, 1);
    s->blocks = calloc(c->layers ? c->layers : 1, sizeof(BlockDecode));
    int ok = s->blocks && s->packed_mem;
    char *cursor = s->packed_mem;
    for (int l = 0; l < c->layers && ok; l++)
        ok = block_pack(&s->blocks[l], &m->trunk->blocks[l], c->dim, c->ffn, prec, &cursor) == 0;
    if (ok) ok = heads_pack(&s->heads, s->n_heads, m->heads, c, &m->hc, prec, &cursor) == 0;
    if (!ok) return -1;
    assert(cursor == s->packed_mem + bytes);
    const size_t k_layer = trunk_k_cache_floats(c), v_layer = trunk_v_cache_floats(c);
    for (int l = 0; l < c->layers + cached_heads(m, s->n_heads); l++) {
        BlockDecode *b = l < c->layers ? &s->blocks[l] : &s->heads.blocks[l - c->layers];
        b->kv = (MtpKvLayer){s->k_cache + l * k_layer, s->v_cache + l * v_layer};
    }
    return 0;
}

int decode_build(DecodeState *s, DecodeModel m, int max_rows, int n_heads, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    const int T = m.tc.ctx;
    assert(max_rows >= 1 && n_heads >= 1 && n_heads <= m.hc.n);
    /* pass_rows go through the trunk at once (a prompt of up to that many tokens is one pass);
     * logits are only ever computed for max_rows rows */
    s->model = m, s->max_rows = max_rows, s->n_heads = n_heads, s->drafted_row = -1;
    s->pass_rows = max_rows > DECODE_PREFILL_ROWS ? max_rows : T < DECODE_PREFILL_ROWS ? T : DECODE_PREFILL_ROWS;
    if (build_run_state(s, &s->model)) {
        snprintf(err, errlen, "out of memory for the key/value caches (%d positions)", T);
        decode_free(s);
        return -1;
    }
    if (pack_weights(s, &s->model)) {
        snprintf(err, errlen, "out of memory for the packed weights");
        decode_free(s);
        return -1;
    }
    return 0;
}

void decode_free(DecodeState *s) {
    if (s->blocks)
        for (int l = 0; l < s->model.tc.layers; l++) block_packed_free(&s->blocks[l]);
    free(s->blocks);
    heads_packed_free(&s->heads);
    mtp_free(s->packed_mem);
    mtp_free(s->mem);
    block_decode_scratch_free(&s->scratch);
    memset(s, 0, sizeof *s);
}

/* Head i's output rows in heads_h. */
static float *head_rows(const DecodeState *s, int i) {
    return s->heads_h + (size_t)i * s->pass_rows * s->model.tc.dim;
}

/* The forward pass: runs R new rows (R <= pass_rows) at positions len.. through the trunk and the
 * cached heads, and advances len: z and the transformer heads' outputs for those rows. Linear
 * heads have no cache and run when their logits are asked for. */
static void run_rows(DecodeState *s, const int32_t *tokens, int R) {
    const DecodeModel *m = &s->model;
    const TrunkConfig *c = &m->tc;
    assert(R >= 1 && R <= s->pass_rows && s->len + R <= c->ctx);
    trunk_embed(s->z, tokens, R, m->trunk, c);
    for (int l = 0; l < c->layers; l++) block_decode(&s->scratch, &s->blocks[l], s->z, s->len, R);
    for (int i = 0; i < cached_heads(m, s->n_heads); i++) {
        float *h = head_rows(s, i);
        memcpy(h, s->z, (size_t)R * c->dim * sizeof(float));
        block_decode(&s->scratch, &s->heads.blocks[i], h, s->len, R);
    }
    s->len += R;
}

/* Logits of heads 0..n_logits-1 for rows 0..R-1 of the last run (R <= max_rows). */
static void head_logits(DecodeState *s, int R, int n_logits) {
    const TrunkConfig *c = &s->model.tc;
    assert(R <= s->max_rows && n_logits <= s->n_heads);
    for (int i = 0; i < n_logits; i++) {
        float *h = head_rows(s, i);
        if (s->model.hc.type == HEAD_LINEAR)
            heads_linear_forward(h, s->u, s->z, R, 1, mtp_linear_packed(s->heads.lin[i]));
        heads_logits(s->logits + (size_t)i * s->max_rows * c->vocab, s->hn, s->rstd, h, R, &s->heads.out);
    }
    s->n_rows = R, s->n_logits = n_logits, s->drafted_row = -1;
}

void decode_forward(DecodeState *s, const int32_t *tokens, int R, int n_logits) {
    assert(R >= 1 && R <= s->max_rows);
    run_rows(s, tokens, R);
    head_logits(s, R, n_logits);
}

int decode_prefill(DecodeState *s, const int32_t *tokens, int n, int n_logits) {
    const int D = s->model.tc.dim;
    int R = 0;
    for (int done = 0; done < n; done += R) {
        R = n - done < s->pass_rows ? n - done : s->pass_rows;
        run_rows(s, tokens + done, R);
    }
    /* only the last token's row is read after a prefill: it becomes row 0, the one row whose
     * logits are computed */
    memmove(s->z, s->z + (size_t)(R - 1) * D, D * sizeof(float));
    for (int i = 0; i < cached_heads(&s->model, s->n_heads); i++)
        memmove(head_rows(s, i), head_rows(s, i) + (size_t)(R - 1) * D, D * sizeof(float));
    head_logits(s, 1, n_logits);
    return 0;
}

/* The drafts of one row: logits (n_heads - 1, V) of heads 1.. into s->drafts + V, as one batch of
 * a few products rather than two small ones per head. A linear head runs now on the row's trunk
 * output (it needs no cache); a transformer head's output is kept from the forward. */
static void draft_row(DecodeState *s, int row) {
    const int D = s->model.tc.dim, m = s->n_heads - 1;
    float *h = s->drafts_work, *hn = h + (size_t)m * D, *u = hn + (size_t)m * D, *rstd = u + (size_t)m * D;
    const float *z = s->z + (size_t)row * D;
    if (s->model.hc.type == HEAD_LINEAR)
        heads_linear_forward(h, u, z, 1, m, mtp_linear_packed(s->heads.lin_drafts));
    else
        for (int i = 0; i < m; i++) memcpy(h + (size_t)i * D, head_rows(s, i + 1) + (size_t)row * D, D * sizeof(float));
    heads_logits(s->drafts + s->model.tc.vocab, hn, rstd, h, m, &s->heads.out);
}

const float *decode_logits(DecodeState *s, int head, int row) {
    const int V = s->model.tc.vocab;
    assert(head < s->n_heads && row < s->n_rows);
    if (head < s->n_logits) return s->logits + ((size_t)head * s->max_rows + row) * V;
    if (s->drafted_row != row) {
        /* every drafting head at this row at once: a draft is only read off the row that ends up
         * last, so the other rows' drafts are never spent */
        const double t0 = mtp_now();
        draft_row(s, row);
        s->drafted_row = row;
        s->t_lazy += mtp_now() - t0;
    }
    return s->drafts + (size_t)head * V;
}

void decode_truncate(DecodeState *s, int len) {
    assert(len >= 0 && len <= s->len);
    s->len = len;
}

/* ---- measuring a pass -------------------------------------------------------------------------- */

/* The products of a pass of R rows: the blocks (trunk, then the cached heads), head 1's linear
 * head and the unembedding at R rows; with drafts, the stacked drafting heads at one row and the
 * unembedding again at one row per drafting head (again: its matrix is already counted). */
typedef struct {
    const MtpPackedWeight *w;
    int rows, again;
} PassProduct;

static int pass_products(const DecodeState *s, int R, int drafts, PassProduct *out) {
    const DecodeModel *m = &s->model;
    int n = 0;
    for (int l = 0; l < m->tc.layers + cached_heads(m, s->n_heads); l++) {
        const BlockDecode *b = l < m->tc.layers ? &s->blocks[l] : &s->heads.blocks[l - m->tc.layers];
        const MtpPackedWeight *w[4] = {b->wqkv, b->wo, b->w13, b->w2};
        for (int j = 0; j < 4; j++) out[n++] = (PassProduct){w[j], R, 0};
    }
    if (m->hc.type == HEAD_LINEAR) out[n++] = (PassProduct){s->heads.lin[0], R, 0};
    out[n++] = (PassProduct){s->heads.unembed, R, 0};
    if (drafts && s->n_heads > 1) {
        if (m->hc.type == HEAD_LINEAR) out[n++] = (PassProduct){s->heads.lin_drafts, 1, 0};
        out[n++] = (PassProduct){s->heads.unembed, s->n_heads - 1, 1};
    }
    return n;
}

#define PASS_MAX_PRODUCTS (4 * (TRUNK_MAX_LAYERS + HEADS_MAX) + 4)

DecodePassCost decode_pass_cost(const DecodeState *s, int len, int R, int drafts) {
    const TrunkConfig *c = &s->model.tc;
    const int layers = c->layers + cached_heads(&s->model, s->n_heads);
    DecodePassCost cost = {0, 0, 0};
    PassProduct p[PASS_MAX_PRODUCTS];
    for (int i = 0, n = pass_products(s, R, drafts, p); i < n; i++) {
        size_t bytes;
        mtp_packed_weight_data(p[i].w, &bytes);
        const MtpLinear shape = mtp_linear_packed(p[i].w);
        cost.weight_bytes += p[i].again ? 0 : (double)bytes;
        cost.flops += 2.0 * p[i].rows * shape.out * shape.in;
    }
    cost.cache_bytes = (double)layers * mtp_kv_read_bytes(len + R, c->attn_heads, c->dim / c->attn_heads);
    /* attention: q.k and p.v, each a multiply-add per dimension for every key a row sees */
    const double keys_seen = (double)R * len + (double)R * (R + 1) / 2; /* row r sees len + r + 1 */
    cost.flops += layers * 4.0 * c->dim * keys_seen;
    return cost;
}

void decode_read_pass(const DecodeState *s, int len, int R, int drafts) {
    const TrunkConfig *c = &s->model.tc;
    PassProduct p[PASS_MAX_PRODUCTS];
    for (int i = 0, n = pass_products(s, R, drafts, p); i < n; i++) {
        size_t bytes;
        const void *data = mtp_packed_weight_data(p[i].w, &bytes);
        if (!p[i].again) mtp_read_bytes(data, bytes);
    }
    for (int l = 0; l < c->layers + cached_heads(&s->model, s->n_heads); l++) {
        const BlockDecode *b = l < c->layers ? &s->blocks[l] : &s->heads.blocks[l - c->layers];
        mtp_kv_read(b->kv, len + R, c->ctx, c->attn_heads, c->dim / c->attn_heads);
    }
}

/* ---- greedy generation ------------------------------------------------------------------------ */

static int32_t argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* The proposal read off one row: head 1's next token, then heads 2..K's guesses after it. */
static void propose(int32_t *block, DecodeState *s, int row, int K) {
    const int V = s->model.tc.vocab;
    for (int i = 0; i < K; i++) block[i] = argmax(decode_logits(s, i, row), V);
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

/* Checks the request, runs the prompt's pass and returns the row to read the first block off (the
 * caller sets st->t_prefill: greedy decoding counts its first proposal in). */
static int gen_start(Generation *g, DecodeState *s, const DecodeRequest *req, int32_t *out, DecodeStats *st) {
    assert(s->len == 0 && req->n_prompt >= 1 && req->n_prompt <= s->model.tc.ctx && req->lookahead >= 1 &&
           req->lookahead <= s->max_rows && req->lookahead <= s->n_heads && req->lookahead <= HEADS_MAX);
    *g = (Generation){s, req, out, 0, st, mtp_now()};
    memset(st, 0, sizeof *st);
    s->t_lazy = 0;
    return decode_prefill(s, req->prompt, req->n_prompt, 1);
}

/* Rows the next block may run: the lookahead, less what the context or max_new leave room for.
 * *room gets the positions left in the context. */
static int gen_block_rows(const Generation *g, int *room) {
    const int K = g->req->lookahead;
    *room = g->s->model.tc.ctx - g->s->len;
    int k = K < *room ? K : *room;
    return k < g->req->max_new - g->produced ? k : g->req->max_new - g->produced;
}

/* The forward pass over a block of k proposed tokens, timed. */
static void gen_forward(Generation *g, const int32_t *block, int k) {
    const double t = mtp_now();
    decode_forward(g->s, block, k, 1);
    g->st->t_forward += mtp_now() - t;
    g->st->forwards++;
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

static int gen_finish(Generation *g) {
    DecodeStats *st = g->st;
    st->tokens = g->produced;
    st->t_forward += g->s->t_lazy; /* the drafting heads' share of the passes, run when first read */
    st->t_other = mtp_now() - g->t0 - st->t_prefill - st->t_forward - st->t_sample;
    return g->produced;
}

int decode_greedy(DecodeState *s, const DecodeRequest *req, int32_t *out, DecodeStats *st) {
    const int K = req->lookahead, V = s->model.tc.vocab;
    Generation g;
    int32_t block[HEADS_MAX];
    propose(block, s, gen_start(&g, s, req, out, st), K);
    st->t_prefill = mtp_now() - g.t0;
    s->t_lazy = 0; /* the first drafts belong to the prefill */
    while (g.produced < req->max_new) {
        /* block[0] is head 1's prediction: always right. Past the context it cannot be run, only emitted. */
        int room, k = gen_block_rows(&g, &room);
        /* a first token that ends the generation (the end token, or the last one allowed) is
           emitted as it is: running it would only compute what nobody reads */
        const int last = block[0] == req->eos || req->max_new - g.produced == 1;
        if (last) k = 1;
        int accepted = 1;
        if (room > 0 && !last) {
            gen_forward(&g, block, k);
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
        propose(block, s, accepted - 1, K);
        st->t_sample += mtp_now() - tc - (s->t_lazy - lazy);
    }
    return gen_finish(&g);
}

/* ---- sampling ---------------------------------------------------------------------------------- */

void decode_sampling_probs(float *p, const float *logits, int V, const DecodeSampling *cfg, int *order) {
    float mx = logits[0];
    for (int v = 1; v < V; v++) mx = logits[v] > mx ? logits[v] : mx;
    double sum = 0;
    for (int v = 0; v < V; v++) sum += p[v] = expf((logits[v] - mx) / cfg->temperature);
    for (int v = 0; v < V; v++) p[v] = (float)(p[v] / sum);
    int keep = V;
    if ((cfg->top_k > 0 && cfg->top_k < V) || cfg->top_p < 1.0f) {
        /* most likely first; ties by token id so the cut is deterministic */
        for (int v = 0; v < V; v++) order[v] = v;
        for (int a = 1; a < V; a++) /* insertion sort: vocabularies here are small */
            for (int b = a; b > 0 && (p[order[b]] > p[order[b - 1]] ||
                                      (p[order[b]] == p[order[b - 1]] && order[b] < order[b - 1])); b--) {
                int t = order[b];
                order[b] = order[b - 1], order[b - 1] = t;
            }
        if (cfg->top_k > 0 && cfg->top_k < keep) keep = cfg->top_k;
        double acc = 0;
        for (int i = 0; i < keep; i++)
            if ((acc += p[order[i]]) >= cfg->top_p) {
                keep = i + 1;
                break;
            }
        double kept = 0;
        for (int i = 0; i < keep; i++) kept += p[order[i]];
        for (int i = keep; i < V; i++) p[order[i]] = 0.0f;
        for (int i = 0; i < keep; i++) p[order[i]] = (float)(p[order[i]] / kept);
    }
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
 * then the drafts of heads 2..K with their distributions into w->q. */
static void draw_block(Generation *g, SampleWork *w, int32_t *block, int row, int32_t first) {
    DecodeState *s = g->s;
    const DecodeRequest *req = g->req;
    const int V = s->model.tc.vocab;
    if (first < 0) {
        decode_sampling_probs(w->p, decode_logits(s, 0, row), V, &req->sampling, w->order);
        first = sample_from(w->p, V, 1.0, req->rng);
    }
    block[0] = first;
    for (int j = 1; j < req->lookahead; j++) {
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

int decode_sample(DecodeState *s, const DecodeRequest *req, int32_t *out, DecodeStats *st) {
    const int K = req->lookahead, V = s->model.tc.vocab;
    assert(req->sampling.temperature > 0 && req->rng);
    SampleWork w = {malloc((size_t)(K + 1) * V * sizeof(float)), NULL, malloc((size_t)V * sizeof(int))};
    if (!w.q || !w.order) {
        free(w.q), free(w.order);
        return -1;
    }
    w.p = w.q + (size_t)K * V;
    Generation g;
    int row = gen_start(&g, s, req, out, st);
    st->t_prefill = mtp_now() - g.t0;
    s->t_lazy = 0;
    int32_t block[HEADS_MAX], first = -1; /* the block's first token when it came from a rejection */
    for (;;) {
        double tc = mtp_now(), lazy = s->t_lazy;
        draw_block(&g, &w, block, row, first);
        st->t_sample += mtp_now() - tc - (s->t_lazy - lazy);
        if (g.produced >= req->max_new) break;
        int room, k = gen_block_rows(&g, &room), accepted = 1;
        first = -1;
        if (room > 0) {
            gen_forward(&g, block, k);
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
