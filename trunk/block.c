/* block.c - one pre-norm decoder block: RMSNorm, causal attention with RoPE, RMSNorm, SwiGLU.
 *
 * Every product goes through mtp_matmul (oneDNN); for a linear layer y = x W^T with W stored
 * (out, in):   forward  y = matmul(x, W, M, out, in, trans_b)
 *              backward dx = dy W and dW += dy^T x in one mtp_linear_backward
 * Attention runs as batched products over the B*H (sequence, head) pairs in (B, H, T, hd) layout. */
#include <math.h>
#include <string.h>

#include "trunk/trunk.h"


/* S (or dP) rows r0..r0+rows, keys 0..keys: out (BH, T, T) block = a (BH, T, hd) rows  b (BH, T, hd)^T */
static void attn_rows_times_keys_t(float *out, const float *a, const float *b, int BH, int T, int hd, int r0,
                                   int rows, int keys) {
    MtpGemm g = {BH, rows, keys, hd, 0, 1, 0, hd, hd, T, (long)T * hd, (long)T * hd, (long)T * T};
    mtp_matmul_strided(out + (size_t)r0 * T, a + (size_t)r0 * hd, b, &g);
}

/* out rows r0..r0+rows (BH, T, hd) = P block (BH, rows, keys) @ b (BH, keys, hd) */
static void attn_block_times(float *out, const float *p, const float *b, int BH, int T, int hd, int r0, int rows,
                             int keys) {
    MtpGemm g = {BH, rows, hd, keys, 0, 0, 0, T, hd, hd, (long)T * T, (long)T * hd, (long)T * hd};
    mtp_matmul_strided(out + (size_t)r0 * hd, p + (size_t)r0 * T, b, &g);
}

/* out rows 0..keys (BH, T, hd) (+)= P block^T (BH, keys, rows) @ b rows r0..r0+rows */
static void attn_block_t_times(float *out, const float *p, const float *b, int BH, int T, int hd, int r0, int rows,
                               int keys, int accumulate) {
    MtpGemm g = {BH, keys, hd, rows, 1, 0, accumulate, T, hd, hd, (long)T * T, (long)T * hd, (long)T * hd};
    mtp_matmul_strided(out, p + (size_t)r0 * T, b + (size_t)r0 * hd, &g);
}

size_t block_param_count(int D, int F) { return (size_t)D + 3 * (size_t)D * D + (size_t)D * D + D + 2 * (size_t)F * D + (size_t)D * F; }

size_t block_weights_point(BlockWeights *w, float *buf, int D, int F) {
    float *p = buf;
    w->attn_norm = p, p += D;
    w->wqkv = p, p += 3 * (size_t)D * D;
    w->wo = p, p += (size_t)D * D;
    w->mlp_norm = p, p += D;
    w->w13 = p, p += 2 * (size_t)F * D;
    w->w2 = p, p += (size_t)D * F;
    return (size_t)(p - buf);
}

size_t block_acts_count(int B, int T, int D, int H, int F) {
    size_t M = (size_t)B * T;
    return M * D + M            /* ln1, ln1_rstd */
           + 3 * M * D          /* q, k, v */
           + (size_t)B * H * T * T /* att */
           + M * D + M * D      /* atty, x_mid */
           + M * D + M          /* ln2, ln2_rstd */
           + M * 2 * F + M * F; /* h13, g */
}

size_t block_acts_point(BlockActs *a, float *buf, int B, int T, int D, int H, int F) {
    size_t M = (size_t)B * T;
    float *p = buf;
    a->ln1 = p, p += M * D;
    a->ln1_rstd = p, p += M;
    a->q = p, p += M * D;
    a->k = p, p += M * D;
    a->v = p, p += M * D;
    a->att = p, p += (size_t)B * H * T * T;
    a->atty = p, p += M * D;
    a->x_mid = p, p += M * D;
    a->ln2 = p, p += M * D;
    a->ln2_rstd = p, p += M;
    a->h13 = p, p += M * 2 * F;
    a->g = p, p += M * F;
    return (size_t)(p - buf);
}

int block_scratch_build(BlockScratch *s, int B, int T, int D, int H, int F) {
    memset(s, 0, sizeof *s);
    size_t M = (size_t)B * T, hd = (size_t)D / H;
    size_t n = 2 * T * (hd / 2)    /* rope tables */
               + 2 * M * 3 * D     /* qkv, dqkv */
               + 4 * M * D         /* dq, dk, dv, o */
               + (size_t)B * H * T * T /* datt */
               + M * D             /* dx */
               + M * 2 * F + M * F;  /* dh13, dg */
    s->mem = mtp_calloc(n, sizeof(float));
    if (!s->mem) return -1;
    s->B = B, s->T = T, s->D = D, s->H = H, s->F = F;
    s->attn_chunk = BLOCK_ATTN_CHUNK;
    float *p = s->mem;
    s->cos_tab = p, p += T * (hd / 2);
    s->sin_tab = p, p += T * (hd / 2);
    s->qkv = p, p += M * 3 * D;
    s->dqkv = p, p += M * 3 * D;
    s->dq = p, p += M * D;
    s->dk = p, p += M * D;
    s->dv = p, p += M * D;
    s->o = p, p += M * D;
    s->datt = p, p += (size_t)B * H * T * T;
    s->dx = p, p += M * D;
    s->dh13 = p, p += M * 2 * F;
    s->dg = p, p += M * F;
    mtp_rope_tables(s->cos_tab, s->sin_tab, T, (int)hd);
    return 0;
}

void block_scratch_free(BlockScratch *s) {
    mtp_free(s->mem);
    memset(s, 0, sizeof *s);
}

void block_forward(float *out, BlockActs *a, const float *inp, const BlockWeights *w, BlockScratch *s) {
    const int B = s->B, T = s->T, D = s->D, H = s->H, F = s->F, hd = D / H, M = B * T, BH = B * H;
    // attention: ln1 = rmsnorm(inp); q, k, v = rope(ln1 Wqkv^T); att = softmax(q k^T / sqrt(hd)); o = att v
    mtp_rmsnorm_forward(a->ln1, a->ln1_rstd, inp, w->attn_norm, M, D);
    mtp_matmul(s->qkv, a->ln1, w->wqkv, M, 3 * D, D, 0, 1, 0);
    mtp_qkv_split_rope(a->q, a->k, a->v, s->qkv, s->cos_tab, s->sin_tab, B, T, H, hd);
    const int C = s->attn_chunk;
    for (int r0 = 0; r0 < T; r0 += C) {
        int rows = T - r0 < C ? T - r0 : C;
        attn_rows_times_keys_t(a->att, a->q, a->k, BH, T, hd, r0, rows, r0 + rows);
    }
    mtp_causal_softmax_forward(a->att, BH, T, 1.0f / sqrtf((float)hd), C);
    for (int r0 = 0; r0 < T; r0 += C) {
        int rows = T - r0 < C ? T - r0 : C;
        attn_block_times(s->o, a->att, a->v, BH, T, hd, r0, rows, r0 + rows);
    }
    mtp_heads_to_rows(a->atty, s->o, B, T, H, hd);
    // x_mid = inp + atty Wo^T
    memcpy(a->x_mid, inp, (size_t)M * D * sizeof(float));
    mtp_matmul(a->x_mid, a->atty, w->wo, M, D, D, 0, 1, 1);
    // mlp: out = x_mid + (silu(ln2 W1^T) * ln2 W3^T) W2^T
    mtp_rmsnorm_forward(a->ln2, a->ln2_rstd, a->x_mid, w->mlp_norm, M, D);
    mtp_matmul(a->h13, a->ln2, w->w13, M, 2 * F, D, 0, 1, 0);
    mtp_swiglu_forward(a->g, a->h13, M, F);
    memcpy(out, a->x_mid, (size_t)M * D * sizeof(float));
    mtp_matmul(out, a->g, w->w2, M, D, F, 0, 1, 1);
}

void block_backward(float *dres, const BlockWeights *dw, const float *inp, const BlockActs *a,
                    const BlockWeights *w, BlockScratch *s) {
    const int B = s->B, T = s->T, D = s->D, H = s->H, F = s->F, hd = D / H, M = B * T, BH = B * H;
    // mlp: dres = d out
    mtp_linear_backward(s->dg, dw->w2, dres, a->g, w->w2, M, F, D, 0);          // dg (M,F), dW2
    mtp_swiglu_backward(s->dh13, s->dg, a->h13, M, F);            // dh13 (M,2F)
    mtp_linear_backward(s->dx, dw->w13, s->dh13, a->ln2, w->w13, M, D, 2 * F, 0); // dln2 (M,D), dW13
    mtp_rmsnorm_backward(dres, dw->mlp_norm, s->dx, a->x_mid, w->mlp_norm, a->ln2_rstd, M, D); // dres = d x_mid
    // attention
    mtp_linear_backward(s->dx, dw->wo, dres, a->atty, w->wo, M, D, D, 0);        // datty (M,D), dWo
    mtp_rows_to_heads(s->o, s->dx, B, T, H, hd);                  // do (BH,T,hd)
    // chunks run last to first: the last one covers every key, so it writes all of dv and dk
    // and the earlier ones add into their prefix
    const int C = s->attn_chunk, last = (T - 1) / C * C;
    for (int r0 = last; r0 >= 0; r0 -= C) {
        int rows = T - r0 < C ? T - r0 : C, keys = r0 + rows;
        attn_rows_times_keys_t(s->datt, s->o, a->v, BH, T, hd, r0, rows, keys);          // dP = do v^T
        attn_block_t_times(s->dv, a->att, s->o, BH, T, hd, r0, rows, keys, r0 != last); // dv += P^T do
    }
    mtp_causal_softmax_backward(s->datt, a->att, BH, T, 1.0f / sqrtf((float)hd), C); // dS (scaled)
    for (int r0 = last; r0 >= 0; r0 -= C) {
        int rows = T - r0 < C ? T - r0 : C, keys = r0 + rows;
        attn_block_times(s->dq, s->datt, a->k, BH, T, hd, r0, rows, keys);               // dq = dS k
        attn_block_t_times(s->dk, s->datt, a->q, BH, T, hd, r0, rows, keys, r0 != last); // dk += dS^T q
    }
    mtp_qkv_merge_unrope(s->dqkv, s->dq, s->dk, s->dv, s->cos_tab, s->sin_tab, B, T, H, hd);
    mtp_linear_backward(s->dx, dw->wqkv, s->dqkv, a->ln1, w->wqkv, M, D, 3 * D, 0); // dln1 (M,D), dWqkv
    mtp_rmsnorm_backward(dres, dw->attn_norm, s->dx, inp, w->attn_norm, a->ln1_rstd, M, D); // dres = d inp
}
