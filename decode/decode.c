/* decode.c - the inference engine: trunk and heads over key/value caches. */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "decode/decode.h"

/* Transformer heads among the kept ones carry a cache; linear heads do not. */
static int cached_heads(const MtpModel *m, int n_heads) { return m->cfg.heads.type == HEAD_TRANSFORMER ? n_heads : 0; }

int decode_build(DecodeState *s, const MtpModel *m, int max_rows, int n_heads, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    const TrunkConfig *c = &m->cfg.trunk;
    assert(max_rows >= 1 && n_heads >= 1 && n_heads <= m->cfg.heads.n);
    const size_t R = (size_t)max_rows, D = c->dim, T = c->ctx, V = c->vocab;
    const size_t caches = (size_t)c->layers + cached_heads(m, n_heads);
    s->mem = mtp_calloc(2 * caches * T * D + 3 * R * D + R + (size_t)n_heads * R * V, sizeof(float));
    if (!s->mem || block_decode_scratch_build(&s->scratch, max_rows, c->ctx, c->dim, c->attn_heads, c->ffn)) {
        snprintf(err, errlen, "out of memory for the key/value caches (%zu positions)", T);
        decode_free(s);
        return -1;
    }
    s->model = m, s->max_rows = max_rows, s->n_heads = n_heads;
    float *p = s->mem;
    s->k_cache = p, p += caches * T * D;
    s->v_cache = p, p += caches * T * D;
    s->z = p, p += R * D;
    s->h = p, p += R * D;
    s->hn = p, p += R * D;
    s->rstd = p, p += R;
    s->logits = p, p += (size_t)n_heads * R * V;
    return 0;
}

void decode_free(DecodeState *s) {
    mtp_free(s->mem);
    block_decode_scratch_free(&s->scratch);
    memset(s, 0, sizeof *s);
}

void decode_forward(DecodeState *s, const int32_t *tokens, int R, int n_logits) {
    const MtpModel *m = s->model;
    const TrunkConfig *c = &m->cfg.trunk;
    assert(R >= 1 && R <= s->max_rows && s->len + R <= c->ctx && n_logits <= s->n_heads);
    const size_t cache = (size_t)c->ctx * c->dim;
    trunk_decode(s->z, tokens, s->len, R, s->k_cache, s->v_cache, &m->trunk, c, &s->scratch);
    for (int i = 0; i < s->n_heads; i++) {
        int cached = m->cfg.heads.type == HEAD_TRANSFORMER;
        float *kc = cached ? s->k_cache + (size_t)(c->layers + i) * cache : NULL;
        float *vc = cached ? s->v_cache + (size_t)(c->layers + i) * cache : NULL;
        heads_decode_one(s->h, s->z, i, s->len, R, kc, vc, &m->heads, &m->cfg.heads, &s->scratch);
        if (i < n_logits)
            heads_decode_logits(s->logits + (size_t)i * s->max_rows * c->vocab, s->hn, s->rstd, s->h, R, &m->heads, c);
    }
    s->len += R;
}

void decode_prefill(DecodeState *s, const int32_t *tokens, int n, int n_logits) {
    for (int done = 0; done < n;) {
        int R = n - done < s->max_rows ? n - done : s->max_rows;
        decode_forward(s, tokens + done, R, done + R == n ? n_logits : 0);
        done += R;
    }
}

const float *decode_logits(const DecodeState *s, int head, int row) {
    const int V = s->model->cfg.trunk.vocab;
    return s->logits + ((size_t)head * s->max_rows + row) * V;
}

void decode_truncate(DecodeState *s, int len) {
    assert(len >= 0 && len <= s->len);
    s->len = len;
}
