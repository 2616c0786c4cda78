/* decode.c - the inference engine: trunk and heads over key/value caches. */
#include <assert.h>
#include <math.h>
#include <stdarg.h>
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
    if (max_rows < 1 || n_heads < 1 || n_heads > m.hc.n) {
        snprintf(err, errlen, "an engine of %d rows keeping %d heads (the model has %d)", max_rows, n_heads, m.hc.n);
        return -1;
    }
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

/* Fails a call: the reason into s->err, -1. */
static int fail(DecodeState *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(DecodeState *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof s->err, fmt, ap);
    va_end(ap);
    return -1;
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

/* What a pass of R rows needs: rows within max_rows, room in the context, heads kept. */
static int check_pass(DecodeState *s, int R, int n_logits) {
    if (R < 1 || R > s->max_rows)
        return fail(s, "a pass of %d rows (the engine runs 1..%d)", R, s->max_rows);
    if (s->len + R > s->model.tc.ctx)
        return fail(s, "a pass of %d rows at position %d goes past the context (%d)", R, s->len, s->model.tc.ctx);
    if (n_logits < 1 || n_logits > s->n_heads)
        return fail(s, "logits of %d heads asked of an engine keeping %d", n_logits, s->n_heads);
    return 0;
}

int decode_forward(DecodeState *s, const int32_t *tokens, int R, int n_logits) {
    if (check_pass(s, R, n_logits)) return -1;
    run_rows(s, tokens, R);
    head_logits(s, R, n_logits);
    return 0;
}

int decode_prefill(DecodeState *s, const int32_t *tokens, int n, int n_logits) {
    const int D = s->model.tc.dim;
    if (n < 1) return fail(s, "a prompt of %d tokens (at least 1)", n);
    if (s->len + n > s->model.tc.ctx)
        return fail(s, "a prompt of %d tokens at position %d goes past the context (%d)", n, s->len, s->model.tc.ctx);
    if (n_logits < 1 || n_logits > s->n_heads)
        return fail(s, "logits of %d heads asked of an engine keeping %d", n_logits, s->n_heads);
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
    if (head < 0 || head >= s->n_heads || row < 0 || row >= s->n_rows) {
        fail(s, "logits of head %d at row %d (the engine keeps %d heads; the last pass ran %d rows)", head + 1, row,
             s->n_heads, s->n_rows);
        return NULL;
    }
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

int decode_truncate(DecodeState *s, int len) {
    if (len < 0 || len > s->len) return fail(s, "a rollback to %d positions of %d", len, s->len);
    s->len = len;
    return 0;
}

/* ---- draft trees --------------------------------------------------------------------------------- */

int decode_forward_tree(DecodeState *s, const int32_t *tokens, const DecodeTree *t, int n_logits) {
    char msg[160];
    if (decode_tree_check(t, DECODE_TREE_MAX, msg, sizeof msg)) return fail(s, "%s", msg);
    if (check_pass(s, t->n, n_logits)) return -1;
    MtpAttnTree mask;
    for (int i = 0; i < t->n; i++) {
        mask.depth[i] = t->depth[i];
        mask.ancestors[i] = (i ? mask.ancestors[t->parent[i]] : 0) | (uint64_t)1 << i;
    }
    /* every block reads the mask through the scratch their attention shares, for this pass only */
    s->scratch.attn.tree = &mask;
    run_rows(s, tokens, t->n);
    s->scratch.attn.tree = NULL;
    head_logits(s, t->n, n_logits);
    return 0;
}

int decode_keep_path(DecodeState *s, const int *path, int m) {
    const DecodeModel *md = &s->model;
    const TrunkConfig *c = &md->tc;
    const int len0 = s->len - s->n_rows;
    if (m < 1 || m > s->n_rows || path[0] != 0 || len0 < 0)
        return fail(s, "a path of %d nodes kept from a pass of %d rows (it starts at the root, node 0)", m, s->n_rows);
    for (int k = 1; k < m; k++)
        if (path[k] <= path[k - 1] || path[k] >= s->n_rows)
            return fail(s, "path node %d is %d: nodes go up, below %d", k, path[k], s->n_rows);
    for (int k = 1; k < m; k++) {
        /* path[k] >= k: moving in order never overwrites a position still to be read */
        if (path[k] == k) continue;
        for (int l = 0; l < c->layers + cached_heads(md, s->n_heads); l++) {
            const BlockDecode *b = l < c->layers ? &s->blocks[l] : &s->heads.blocks[l - c->layers];
            mtp_kv_move(b->kv, len0 + path[k], len0 + k, c->ctx, c->attn_heads, c->dim / c->attn_heads);
        }
    }
    s->len = len0 + m;
    return 0;
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
