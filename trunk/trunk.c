/* trunk.c - token embedding followed by L decoder blocks; its output z feeds every head. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trunk/trunk.h"


static int check_range(const char *name, int v, int lo, int hi, char *err, size_t errlen) {
    if (v < lo || v > hi) {
        snprintf(err, errlen, "%s must be between %d and %d (got %d)", name, lo, hi, v);
        return -1;
    }
    return 0;
}

int trunk_config_check(const TrunkConfig *c, char *err, size_t errlen) {
    if (check_range("vocab", c->vocab, 2, TRUNK_MAX_VOCAB, err, errlen) ||
        check_range("dim", c->dim, 2, TRUNK_MAX_DIM, err, errlen) ||
        check_range("layers", c->layers, 0, TRUNK_MAX_LAYERS, err, errlen) ||
        check_range("attn-heads", c->attn_heads, 1, c->dim, err, errlen) ||
        check_range("ffn", c->ffn, 1, TRUNK_MAX_FFN, err, errlen) ||
        check_range("ctx", c->ctx, 1, TRUNK_MAX_CTX, err, errlen))
        return -1;
    if (c->dim % c->attn_heads != 0) {
        snprintf(err, errlen, "dim %d is not divisible by attn-heads %d", c->dim, c->attn_heads);
        return -1;
    }
    if (c->dim / c->attn_heads > TRUNK_MAX_HEAD_DIM) {
        snprintf(err, errlen, "head dim %d (dim / attn-heads) must be at most %d: use more attention heads",
                 c->dim / c->attn_heads, TRUNK_MAX_HEAD_DIM);
        return -1;
    }
    if ((c->dim / c->attn_heads) % 2 != 0) {
        snprintf(err, errlen, "head dim %d (dim / attn-heads) must be even for rotary embedding",
                 c->dim / c->attn_heads);
        return -1;
    }
    return 0;
}

size_t trunk_param_count(const TrunkConfig *c) {
    return (size_t)c->vocab * c->dim + (size_t)c->layers * block_param_count(c->dim, c->ffn);
}

size_t trunk_weights_point(TrunkWeights *w, float *buf, const TrunkConfig *c) {
    float *p = buf;
    w->tok_emb = p, p += (size_t)c->vocab * c->dim;
    for (int l = 0; l < c->layers; l++) p += block_weights_point(&w->blocks[l], p, c->dim, c->ffn);
    return (size_t)(p - buf);
}

int trunk_acts_build(TrunkActs *a, const TrunkConfig *c, int B, int T, int bf16) {
    memset(a, 0, sizeof *a);
    const int D = c->dim, L = c->layers;
    size_t M = (size_t)B * T;
    size_t per_block = block_acts_count(B, T, D, c->attn_heads, c->ffn, bf16);
    a->blocks = calloc(L ? L : 1, sizeof(BlockActs));
    a->mem = mtp_calloc((L + 1) * M * D + L * per_block, sizeof(float));
    if (!a->blocks || !a->mem) {
        trunk_acts_free(a);
        return -1;
    }
    a->B = B, a->T = T;
    float *p = a->mem;
    a->res = p, p += (L + 1) * M * D;
    for (int l = 0; l < L; l++) p += block_acts_point(&a->blocks[l], p, B, T, D, c->attn_heads, c->ffn, bf16);
    return 0;
}

void trunk_acts_free(TrunkActs *a) {
    mtp_free(a->mem);
    free(a->blocks);
    memset(a, 0, sizeof *a);
}

float *trunk_output(const TrunkActs *a, const TrunkConfig *c) {
    return a->res + (size_t)c->layers * a->B * a->T * c->dim;
}

void trunk_forward(const TrunkPass *p, const int32_t *tokens) {
    const TrunkActs *a = p->acts;
    const TrunkWeights *w = p->w;
    const int D = p->c->dim, M = a->B * a->T;
    // res[0] (M,D) = tok_emb[tokens]
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) memcpy(a->res + (size_t)m * D, w->tok_emb + (size_t)tokens[m] * D, D * sizeof(float));
    for (int l = 0; l < p->c->layers; l++) {
        const float *inp = a->res + (size_t)l * M * D;
        block_forward(a->res + (size_t)(l + 1) * M * D, &a->blocks[l], inp, &w->blocks[l], p->scratch);
    }
}

void trunk_backward(const TrunkPass *p, const int32_t *tokens, float *dz) {
    const TrunkActs *a = p->acts;
    const int D = p->c->dim, M = a->B * a->T;
    for (int l = p->c->layers - 1; l >= 0; l--) {
        block_backward(dz, &p->dw->blocks[l], a->res + (size_t)l * M * D, &a->blocks[l], &p->w->blocks[l], p->scratch);
        if (p->block_done) p->block_done(p->done_ctx, l);
    }
    // dtok_emb[tokens[m]] += dz[m]: split by columns so each row's sum runs in token order
    enum { COLS = 16 };
    int nblocks = (D + COLS - 1) / COLS;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < nblocks; b++) {
        int d0 = b * COLS, d1 = d0 + COLS < D ? d0 + COLS : D;
        for (int m = 0; m < M; m++) {
            float *g = p->dw->tok_emb + (size_t)tokens[m] * D;
            const float *d = dz + (size_t)m * D;
            for (int j = d0; j < d1; j++) g[j] += d[j];
        }
    }
}

size_t trunk_k_cache_floats(const TrunkConfig *c) {
    return mtp_k_cache_floats(c->ctx, c->attn_heads, c->dim / c->attn_heads);
}

size_t trunk_v_cache_floats(const TrunkConfig *c) {
    return mtp_v_cache_floats(c->ctx, c->attn_heads, c->dim / c->attn_heads);
}

void trunk_embed(float *x, const int32_t *tokens, int R, const TrunkWeights *w, const TrunkConfig *c) {
    const int D = c->dim;
    for (int r = 0; r < R; r++) memcpy(x + (size_t)r * D, w->tok_emb + (size_t)tokens[r] * D, D * sizeof(float));
}
