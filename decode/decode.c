/* decode.c - the inference engine: trunk and heads over key/value caches. */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode/decode.h"

/* Transformer heads among the kept ones carry a cache; linear heads do not. */
static int cached_heads(const MtpModel *m, int n_heads) { return m->cfg.heads.type == HEAD_TRANSFORMER ? n_heads : 0; }

int decode_build(DecodeState *s, const MtpModel *m, int max_rows, int n_heads, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    const TrunkConfig *c = &m->cfg.trunk;
    assert(max_rows >= 1 && n_heads >= 1 && n_heads <= m->cfg.heads.n);
    /* RP rows go through the trunk at once (a prompt of up to RP tokens is one pass); logits are
     * only ever computed for R rows */
    const size_t R = (size_t)max_rows, D = c->dim, T = c->ctx, V = c->vocab;
    const size_t RP = R > DECODE_PREFILL_ROWS ? R : T < DECODE_PREFILL_ROWS ? T : DECODE_PREFILL_ROWS;
    const size_t caches = (size_t)c->layers + cached_heads(m, n_heads);
    const size_t k_floats = caches * trunk_k_cache_floats(c), v_floats = caches * trunk_v_cache_floats(c);
    const size_t drafts = (size_t)n_heads * V + heads_drafts_work_floats(n_heads, c);
    s->mem = mtp_calloc(k_floats + v_floats + RP * D + 2 * R * D + R + (size_t)n_heads * (R * V + RP * D) + drafts,
                        sizeof(float));
    if (!s->mem || block_decode_scratch_build(&s->scratch, (int)RP, c->ctx, c->dim, c->attn_heads, c->ffn)) {
        snprintf(err, errlen, "out of memory for the key/value caches (%zu positions)", T);
        decode_free(s);
        return -1;
    }
    s->model = m, s->max_rows = max_rows, s->pass_rows = (int)RP, s->n_heads = n_heads;
    float *p = s->mem;
    s->k_cache = p, p += k_floats;
    s->v_cache = p, p += v_floats;
    s->z = p, p += RP * D;
    s->h = p, p += R * D;
    s->hn = p, p += R * D;
    s->rstd = p, p += R;
    s->logits = p, p += (size_t)n_heads * R * V;
    s->heads_h = p, p += (size_t)n_heads * RP * D;
    s->drafts = p, p += (size_t)n_heads * V;
    s->drafts_work = p;
    s->drafted_row = -1;
    MtpPrecision prec = mtp_core_precision();
    /* every packed matrix in one allocation, in the order a forward pass reads them */
    size_t packed_bytes = (size_t)c->layers * block_packed_bytes(c->dim, c->ffn, prec) +
                          heads_packed_bytes(n_heads, c, &m->cfg.heads, prec);
    s->packed_mem = mtp_calloc(packed_bytes, 1);
    s->trunk_packed = calloc(c->layers ? c->layers : 1, sizeof(BlockPacked));
    int ok = s->trunk_packed && s->packed_mem;
    char *cursor = s->packed_mem;
    for (int l = 0; l < c->layers && ok; l++)
        ok = block_pack(&s->trunk_packed[l], &m->trunk.blocks[l], c->dim, c->ffn, prec, &cursor) == 0;
    if (ok) ok = heads_pack(&s->heads_packed, n_heads, &m->heads, c, &m->cfg.heads, prec, &cursor) == 0;
    assert(!ok || cursor == s->packed_mem + packed_bytes);
    if (!ok) {
        snprintf(err, errlen, "out of memory for the packed weights");
        decode_free(s);
        return -1;
    }
    return 0;
}

void decode_free(DecodeState *s) {
    if (s->trunk_packed)
        for (int l = 0; l < s->model->cfg.trunk.layers; l++) block_packed_free(&s->trunk_packed[l]);
    free(s->trunk_packed);
    heads_packed_free(&s->heads_packed);
    mtp_free(s->packed_mem);
    mtp_free(s->mem);
    block_decode_scratch_free(&s->scratch);
    memset(s, 0, sizeof *s);
}

/* Runs R new rows (R <= pass_rows) through the trunk and the cached heads and advances len: z and
 * the transformer heads' outputs for those rows; linear heads have no cache and run when asked. */
static void run_rows(DecodeState *s, const int32_t *tokens, int R) {
    const MtpModel *m = s->model;
    const TrunkConfig *c = &m->cfg.trunk;
    assert(R >= 1 && R <= s->pass_rows && s->len + R <= c->ctx);
    const size_t k_layer = trunk_k_cache_floats(c), v_layer = trunk_v_cache_floats(c);
    trunk_decode(s->z, tokens, s->len, R, s->k_cache, s->v_cache, &m->trunk, s->trunk_packed, c, &s->scratch);
    for (int i = 0; i < cached_heads(m, s->n_heads); i++)
        heads_decode_one(s->heads_h + (size_t)i * s->pass_rows * c->dim, s->z, i, s->len, R,
                         s->k_cache + (size_t)(c->layers + i) * k_layer, s->v_cache + (size_t)(c->layers + i) * v_layer,
                         &m->heads, &s->heads_packed, &m->cfg.heads, &s->scratch);
    s->len += R;
}

/* Logits of heads 0..n_logits-1 for rows 0..R-1 of the last run (R <= max_rows). */
static void head_logits(DecodeState *s, int R, int n_logits) {
    const MtpModel *m = s->model;
    const TrunkConfig *c = &m->cfg.trunk;
    assert(R <= s->max_rows && n_logits <= s->n_heads);
    for (int i = 0; i < n_logits; i++) {
        float *h = s->heads_h + (size_t)i * s->pass_rows * c->dim;
        if (m->cfg.heads.type == HEAD_LINEAR)
            heads_decode_one(h, s->z, i, 0, R, NULL, NULL, &m->heads, &s->heads_packed, &m->cfg.heads, &s->scratch);
        heads_decode_logits(s->logits + (size_t)i * s->max_rows * c->vocab, s->hn, s->rstd, h, R, &m->heads,
                            &s->heads_packed, c);
    }
    s->n_rows = R, s->n_logits = n_logits, s->drafted_row = -1;
}

void decode_forward(DecodeState *s, const int32_t *tokens, int R, int n_logits) {
    assert(R >= 1 && R <= s->max_rows);
    run_rows(s, tokens, R);
    head_logits(s, R, n_logits);
}

int decode_prefill(DecodeState *s, const int32_t *tokens, int n, int n_logits) {
    const int D = s->model->cfg.trunk.dim;
    int R = 0;
    for (int done = 0; done < n; done += R) {
        R = n - done < s->pass_rows ? n - done : s->pass_rows;
        run_rows(s, tokens + done, R);
    }
    /* only the last token's row is read after a prefill: it becomes row 0, the one row whose
     * logits are computed */
    memmove(s->z, s->z + (size_t)(R - 1) * D, D * sizeof(float));
    for (int i = 0; i < cached_heads(s->model, s->n_heads); i++) {
        float *h = s->heads_h + (size_t)i * s->pass_rows * D;
        memmove(h, h + (size_t)(R - 1) * D, D * sizeof(float));
    }
    head_logits(s, 1, n_logits);
    return 0;
}

const float *decode_logits(DecodeState *s, int head, int row) {
    const MtpModel *m = s->model;
    const int V = m->cfg.trunk.vocab, D = m->cfg.trunk.dim;
    assert(head < s->n_heads && row < s->n_rows);
    if (head < s->n_logits) return s->logits + ((size_t)head * s->max_rows + row) * V;
    if (s->drafted_row != row) {
        /* every drafting head at this row at once (a draft is only read off the row that ends up
         * last, so the other rows' drafts are never spent): a linear head runs now on the row's
         * trunk output (at position len - n_rows + row; it needs no cache), a transformer head's
         * output is kept from the forward */
        const double t0 = mtp_now();
        const float *hs[HEADS_MAX];
        for (int i = 0; i < s->n_heads; i++) hs[i] = s->heads_h + ((size_t)i * s->pass_rows + row) * D;
        heads_decode_drafts(s->drafts + V, s->drafts_work, s->z + (size_t)row * D, hs, s->n_heads, &m->heads,
                            &s->heads_packed, &m->cfg.trunk, &m->cfg.heads);
        s->drafted_row = row;
        s->t_lazy += mtp_now() - t0;
    }
    return s->drafts + (size_t)head * V;
}

void decode_truncate(DecodeState *s, int len) {
    assert(len >= 0 && len <= s->len);
    s->len = len;
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
    const int V = s->model->cfg.trunk.vocab;
    for (int i = 0; i < K; i++) block[i] = argmax(decode_logits(s, i, row), V);
}

/* After a verification: emits block[0..accepted), cut after an end token, rolls the caches back
 * over the k - accepted rejected rows, and returns 1 when generation is over. */
static int settle(DecodeState *s, const int32_t *block, int accepted, int k, int out_of_room, int32_t eos,
                  int32_t *out, int *produced, DecodeEmit emit, void *emit_ctx) {
    int take = accepted, stop = out_of_room;
    for (int j = 0; j < accepted; j++)
        if (block[j] == eos) {
            take = j + 1, stop = 1;
            break;
        }
    memcpy(out + *produced, block, take * sizeof(int32_t));
    if (emit) emit(emit_ctx, block, take);
    *produced += take;
    if (stop) return 1;
    if (accepted < k) decode_truncate(s, s->len - (k - accepted));
    return 0;
}

int decode_greedy(DecodeState *s, const int32_t *prompt, int n, int max_new, int lookahead, int32_t eos,
                  int32_t *out, DecodeStats *st, DecodeEmit emit, void *emit_ctx) {
    const int K = lookahead, ctx = s->model->cfg.trunk.ctx;
    assert(s->len == 0 && n >= 1 && n <= ctx && K >= 1 && K <= s->max_rows && K <= s->n_heads && K <= HEADS_MAX);
    memset(st, 0, sizeof *st);
    s->t_lazy = 0;
    int32_t block[HEADS_MAX];
    double t0 = mtp_now();
    propose(block, s, decode_prefill(s, prompt, n, 1), K);
    st->t_prefill = mtp_now() - t0;
    s->t_lazy = 0; /* the first drafts belong to the prefill */
    int produced = 0;
    while (produced < max_new) {
        /* block[0] is head 1's prediction: always right. Past the context it cannot be run, only emitted. */
        int room = ctx - s->len, k = K < room ? K : room;
        if (k > max_new - produced) k = max_new - produced;
        /* a first token that ends the generation (the end token, or the last one allowed) is
           emitted as it is: running it would only compute what nobody reads */
        const int last = block[0] == eos || max_new - produced == 1;
        if (last) k = 1;
        int accepted = 1;
        if (room > 0 && !last) {
            double tf = mtp_now();
            decode_forward(s, block, k, 1);
            st->t_forward += mtp_now() - tf;
            st->forwards++;
            /* block[j] stands if head 1, run on block[0..j), predicts it */
            const int V = s->model->cfg.trunk.vocab;
            const double tc = mtp_now();
            while (accepted < k && argmax(decode_logits(s, 0, accepted - 1), V) == block[accepted]) accepted++;
            st->t_sample += mtp_now() - tc;
            for (int j = 1; j < k; j++) st->proposed[j]++, st->accepted[j] += j < accepted;
        } else if (room <= 0) {
            st->hit_context = 1;
        }
        if (settle(s, block, accepted, k, room <= 0, eos, out, &produced, emit, emit_ctx) || produced >= max_new) break;
        const double tc = mtp_now(), lazy = s->t_lazy;
        propose(block, s, accepted - 1, K);
        st->t_sample += mtp_now() - tc - (s->t_lazy - lazy);
    }
    st->tokens = produced;
    st->t_forward += s->t_lazy; /* the drafting heads' share of the passes, run when first read */
    st->t_other = mtp_now() - t0 - st->t_prefill - st->t_forward - st->t_sample;
    return produced;
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

int decode_sample(DecodeState *s, const int32_t *prompt, int n, int max_new, int lookahead, int32_t eos,
                  const DecodeSampling *cfg, MtpRng *rng, int32_t *out, DecodeStats *st, DecodeEmit emit,
                  void *emit_ctx) {
    const int K = lookahead, ctx = s->model->cfg.trunk.ctx, V = s->model->cfg.trunk.vocab;
    assert(s->len == 0 && n >= 1 && n <= ctx && K >= 1 && K <= s->max_rows && K <= s->n_heads && K <= HEADS_MAX);
    assert(cfg->temperature > 0);
    memset(st, 0, sizeof *st);
    s->t_lazy = 0;
    float *q = malloc((size_t)(K + 1) * V * sizeof(float)); /* q[j] (V): head j's draft distribution; q[K]: p */
    int *order = malloc((size_t)V * sizeof(int));
    if (!q || !order) {
        free(q), free(order);
        return -1;
    }
    float *p = q + (size_t)K * V;
    int32_t block[HEADS_MAX];
    double t0 = mtp_now();
    int row = decode_prefill(s, prompt, n, 1);
    st->t_prefill = mtp_now() - t0;
    s->t_lazy = 0;
    int32_t first = -1; /* the block's first token when it came from a rejection */
    int produced = 0;
    for (;;) {
        /* the block drawn at `row`: head 1's token (unless a rejection already chose it), then drafts */
        double tc = mtp_now(), lazy = s->t_lazy;
        if (first < 0) {
            decode_sampling_probs(p, decode_logits(s, 0, row), V, cfg, order);
            first = sample_from(p, V, 1.0, rng);
        }
        block[0] = first;
        for (int j = 1; j < K; j++) {
            decode_sampling_probs(q + (size_t)j * V, decode_logits(s, j, row), V, cfg, order);
            block[j] = sample_from(q + (size_t)j * V, V, 1.0, rng);
        }
        st->t_sample += mtp_now() - tc - (s->t_lazy - lazy);
        if (produced >= max_new) break;
        int room = ctx - s->len, k = K < room ? K : room;
        if (k > max_new - produced) k = max_new - produced;
        int accepted = 1;
        first = -1;
        if (room > 0) {
            double tf = mtp_now();
            decode_forward(s, block, k, 1);
            st->t_forward += mtp_now() - tf;
            st->forwards++;
            /* block[j] stands with probability min(1, p/q); a rejection draws from max(0, p - q) */
            tc = mtp_now();
            for (; accepted < k; accepted++) {
                const int j = accepted;
                const float *qj = q + (size_t)j * V;
                decode_sampling_probs(p, decode_logits(s, 0, j - 1), V, cfg, order);
                st->proposed[j]++;
                const int32_t x = block[j];
                if (mtp_rng_uniform(rng) * qj[x] < p[x]) {
                    st->accepted[j]++;
                    continue;
                }
                double total = 0;
                for (int v = 0; v < V; v++) total += p[v] = p[v] > qj[v] ? p[v] - qj[v] : 0.0f;
                first = total > 0 ? sample_from(p, V, total, rng) : x; /* total 0 means p == q: x stands */
                break;
            }
            st->t_sample += mtp_now() - tc;
        } else {
            st->hit_context = 1;
        }
        if (settle(s, block, accepted, k, room <= 0, eos, out, &produced, emit, emit_ctx)) break;
        row = accepted - 1;
    }
    free(q), free(order);
    st->tokens = produced;
    st->t_forward += s->t_lazy; /* the drafting heads' share of the passes, run when first read */
    st->t_other = mtp_now() - t0 - st->t_prefill - st->t_forward - st->t_sample;
    return produced;
}
