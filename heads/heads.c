/* heads.c - n output heads on one trunk, trained one head at a time. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heads/heads.h"

const char *heads_type_name(HeadType t) { return t == HEAD_LINEAR ? "linear" : "transformer"; }

int heads_type_parse(const char *s, HeadType *t) {
    if (strcmp(s, "transformer") == 0) *t = HEAD_TRANSFORMER;
    else if (strcmp(s, "linear") == 0) *t = HEAD_LINEAR;
    else return -1;
    return 0;
}

int heads_config_check(const HeadsConfig *h, char *err, size_t errlen) {
    if (h->n < 1 || h->n > HEADS_MAX) {
        snprintf(err, errlen, "heads must be between 1 and %d (got %d)", HEADS_MAX, h->n);
        return -1;
    }
    if (h->type != HEAD_TRANSFORMER && h->type != HEAD_LINEAR) {
        snprintf(err, errlen, "unknown head type %d", (int)h->type);
        return -1;
    }
    return 0;
}

static size_t one_head_params(const TrunkConfig *tc, const HeadsConfig *hc) {
    return hc->type == HEAD_TRANSFORMER ? block_param_count(tc->dim, tc->ffn) : (size_t)tc->dim * tc->dim;
}

size_t heads_param_count(const TrunkConfig *tc, const HeadsConfig *hc) {
    return (size_t)hc->n * one_head_params(tc, hc) + tc->dim + (size_t)tc->vocab * tc->dim;
}

size_t heads_weights_point(HeadsWeights *w, float *buf, const TrunkConfig *tc, const HeadsConfig *hc) {
    const int D = tc->dim;
    float *p = buf;
    for (int i = 0; i < hc->n; i++) {
        if (hc->type == HEAD_TRANSFORMER) p += block_weights_point(&w->blocks[i], p, D, tc->ffn);
        else w->lin[i] = p, p += (size_t)D * D;
    }
    w->final_norm = p, p += D;
    w->unembed = p, p += (size_t)tc->vocab * D;
    return (size_t)(p - buf);
}

int heads_acts_build(HeadsActs *a, const TrunkConfig *tc, const HeadsConfig *hc, int B, int T, int bf16) {
    memset(a, 0, sizeof *a);
    const int D = tc->dim, V = tc->vocab;
    size_t M = (size_t)B * T;
    size_t block = hc->type == HEAD_TRANSFORMER ? block_acts_count(B, T, D, tc->attn_heads, tc->ffn, bf16) : 0;
    size_t u = hc->type == HEAD_LINEAR ? M * D : 0;
    size_t n = block + u + M * D /* h */ + M * D + M /* hn, rstd */ + M * V + 2 * M * D /* dh, dhn */ + M /* targets */;
    a->mem = mtp_calloc(n, sizeof(float));
    if (!a->mem) return -1;
    a->B = B, a->T = T;
    float *p = a->mem;
    if (block) p += block_acts_point(&a->block, p, B, T, D, tc->attn_heads, tc->ffn, bf16);
    if (u) a->u = p, p += u;
    a->h = p, p += M * D;
    a->hn = p, p += M * D;
    a->hn_rstd = p, p += M;
    a->logits = p, p += M * V;
    a->dh = p, p += M * D;
    a->dhn = p, p += M * D;
    a->targets = (int32_t *)p, p += M;
    return 0;
}

void heads_acts_free(HeadsActs *a) {
    mtp_free(a->mem);
    memset(a, 0, sizeof *a);
}

void heads_targets(int32_t *targets, const int32_t *tokens, int B, int T, int i) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) targets[b * T + t] = t + i <= T ? tokens[(size_t)b * (T + 1) + t + i] : -1;
}

void heads_linear_forward(float *h, float *u, const float *z, int M, int n, MtpLinear W) {
    const int D = W.in;
    mtp_linear_forward(u, z, M, W, 0); // u (M, nD) = z W^T
    if (n == 1) {
        mtp_silu_residual_forward(h, z, u, (size_t)M * D);
        return;
    }
    for (int i = 0; i < n; i++)
        for (int r = 0; r < M; r++)
            mtp_silu_residual_forward(h + ((size_t)i * M + r) * D, z + (size_t)r * D, u + ((size_t)r * n + i) * D, D);
}

void heads_logits(float *logits, float *hn, float *rstd, const float *h, int M, const HeadsOutput *o) {
    mtp_rmsnorm_forward(hn, rstd, h, o->norm, M, o->unembed.in);
    mtp_linear_forward(logits, hn, M, o->unembed, 0);
}

void heads_forward_one(const HeadsPass *p, int i, const float *z) {
    const int D = p->tc->dim, V = p->tc->vocab;
    HeadsActs *a = p->acts;
    const HeadsWeights *w = p->w;
    const int M = a->B * a->T;
    if (p->hc->type == HEAD_TRANSFORMER) block_forward(a->h, &a->block, z, &w->blocks[i], p->scratch);
    else heads_linear_forward(a->h, a->u, z, M, 1, mtp_linear_plain(w->lin[i], D, D));
    const HeadsOutput out = {w->final_norm, mtp_linear_plain(w->unembed, V, D)};
    heads_logits(a->logits, a->hn, a->hn_rstd, a->h, M, &out);
}

/* Positions of the batch that have a target. */
static long count_targets(const int32_t *targets, int M) {
    long count = 0;
    for (int m = 0; m < M; m++) count += targets[m] >= 0;
    return count;
}

void heads_train(const HeadsPass *p, HeadStats *stats, const float *z, const int32_t *tokens, float grad_scale) {
    HeadsActs *a = p->acts;
    const HeadsWeights *w = p->w, *dw = p->dw;
    const int D = p->tc->dim, V = p->tc->vocab, B = a->B, T = a->T, M = B * T;
    float *dz = p->dz;
    memset(dz, 0, (size_t)M * D * sizeof(float));
    for (int i = 0; i < p->hc->n; i++) {
        heads_forward_one(p, i, z);
        heads_targets(a->targets, tokens, B, T, i + 1);
        long count = count_targets(a->targets, M), correct = 0;
        float scale = count ? grad_scale / (float)count : 0.0f;
        double loss = mtp_cross_entropy(a->logits, a->targets, M, V, scale, &correct); // logits -> dlogits
        stats[i] = (HeadStats){loss, count, correct};
        // back through the unembedding and the shared final norm
        mtp_linear_backward(a->dhn, dw->unembed, a->logits, a->hn, w->unembed, M, D, V, 0); // dhn, dunembed
        memset(a->dh, 0, (size_t)M * D * sizeof(float));
        mtp_rmsnorm_backward(a->dh, dw->final_norm, a->dhn, a->h, w->final_norm, a->hn_rstd, M, D);
        if (p->hc->type == HEAD_TRANSFORMER) {
            block_backward(a->dh, &dw->blocks[i], z, &a->block, &w->blocks[i], p->scratch); // dh -> dL/dz of this head
            mtp_add_inplace(dz, a->dh, (size_t)M * D);
        } else {
            // h = z + silu(u), u = z W^T: dz += dh + du W, dW += du^T z
            mtp_silu_backward(a->dhn, a->dh, a->u, (size_t)M * D); // du, reusing dhn
            mtp_add_inplace(dz, a->dh, (size_t)M * D);
            mtp_linear_backward(dz, dw->lin[i], a->dhn, z, w->lin[i], M, D, D, 1);
        }
        if (p->head_done) p->head_done(p->done_ctx, i);
    }
}

void heads_eval(const HeadsPass *p, HeadStats *stats, const float *z, const int32_t *tokens, int32_t ignore_target) {
    HeadsActs *a = p->acts;
    const int V = p->tc->vocab, B = a->B, T = a->T, M = B * T;
    for (int i = 0; i < p->hc->n; i++) {
        heads_forward_one(p, i, z);
        heads_targets(a->targets, tokens, B, T, i + 1);
        for (int m = 0; m < M; m++)
            if (a->targets[m] == ignore_target) a->targets[m] = -1;
        long correct = 0;
        double loss = mtp_cross_entropy_loss(a->logits, a->targets, M, V, &correct);
        stats[i] = (HeadStats){loss, count_targets(a->targets, M), correct};
    }
}

size_t heads_packed_bytes(int n, const TrunkConfig *tc, const HeadsConfig *hc, MtpPrecision precision) {
    const int D = tc->dim;
    size_t heads = hc->type == HEAD_TRANSFORMER ? (size_t)n * block_packed_bytes(D, tc->ffn, precision)
                                                 : (size_t)n * mtp_packed_weight_bytes(D, D, precision) +
                                                       (n > 1 ? mtp_packed_weight_bytes((n - 1) * D, D, precision) : 0);
    return heads + mtp_packed_weight_bytes(tc->vocab, D, precision);
}

int heads_pack(HeadsPacked *p, int n, const HeadsWeights *w, const TrunkConfig *tc, const HeadsConfig *hc,
               MtpPrecision precision, char **cursor) {
    memset(p, 0, sizeof *p);
    p->n = n;
    const int D = tc->dim;
    int ok = 1;
    for (int i = 0; i < n && ok; i++) {
        if (hc->type == HEAD_TRANSFORMER)
            ok = block_pack(&p->blocks[i], &w->blocks[i], D, tc->ffn, precision, cursor) == 0;
        else
            ok = (p->lin[i] = mtp_pack_weight_at(cursor, w->lin[i], D, D, precision)) != NULL;
    }
    if (ok && hc->type == HEAD_LINEAR && n > 1) {
        /* the heads' matrices follow one another in the parameters, so heads 1..n-1 are one matrix */
        for (int i = 2; i < n; i++) assert(w->lin[i] == w->lin[1] + (size_t)(i - 1) * D * D);
        ok = (p->lin_drafts = mtp_pack_weight_at(cursor, w->lin[1], (n - 1) * D, D, precision)) != NULL;
    }
    if (ok) ok = (p->unembed = mtp_pack_weight_at(cursor, w->unembed, tc->vocab, D, precision)) != NULL;
    if (ok) p->out = (HeadsOutput){w->final_norm, mtp_linear_packed(p->unembed)};
    if (ok) return 0;
    heads_packed_free(p);
    return -1;
}

void heads_packed_free(HeadsPacked *p) {
    for (int i = 0; i < p->n; i++) {
        block_packed_free(&p->blocks[i]);
        mtp_packed_weight_free(p->lin[i]);
    }
    mtp_packed_weight_free(p->lin_drafts);
    mtp_packed_weight_free(p->unembed);
    memset(p, 0, sizeof *p);
}
