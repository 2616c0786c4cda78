/* block.c - one pre-norm decoder block: RMSNorm, causal attention with RoPE, RMSNorm, SwiGLU.
 *
 * Every product goes through mtp_matmul (oneDNN); for a linear layer y = x W^T with W stored
 * (out, in):   forward  y = matmul(x, W, M, out, in, trans_b)
 *              backward dx = dy W and dW += dy^T x in one mtp_linear_backward
 * Attention runs as batched products over the B*H (sequence, head) pairs in (B, H, T, hd) layout. */
#include <math.h>
#include <string.h>

#include "trunk/trunk.h"


/* Attention's products on (BH, T, hd) and (BH, T, T) operands, fp32 or bf16 (s->bf16), one chunk
 * of query rows at a time. */
static const void *elem(const void *p, size_t i, int bf16) { return (const char *)p + i * (bf16 ? 2 : 4); }

/* A chunk of query rows r0..r0+rows, seeing keys 0..keys. */
typedef struct {
    int r0, rows, keys;
} AttnChunk;

/* The chunk of C rows from r0 (the last of T rows may be shorter); causal: its keys end with it. */
static AttnChunk attn_chunk(int r0, int C, int T) {
    const int rows = T - r0 < C ? T - r0 : C;
    return (AttnChunk){r0, rows, r0 + rows};
}

/* S (or dP) rows of c: out (BH, T, T) block = a (BH, T, hd) rows  b (BH, T, hd)^T */
static void attn_rows_times_keys_t(float *out, const void *a, const void *b, const BlockScratch *s, AttnChunk c) {
    const int BH = s->B * s->H, T = s->T, hd = s->D / s->H, bf16 = s->bf16;
    MtpGemm g = {BH, c.rows, c.keys, hd, 0, 1, 0, hd, hd, T, (long)T * hd, (long)T * hd, (long)T * T, bf16};
    mtp_matmul_strided(out + (size_t)c.r0 * T, elem(a, (size_t)c.r0 * hd, bf16), b, &g);
}

/* out rows of c (BH, T, hd) = P block (BH, rows, keys) @ b (BH, keys, hd) */
static void attn_block_times(float *out, const void *p, const void *b, const BlockScratch *s, AttnChunk c) {
    const int BH = s->B * s->H, T = s->T, hd = s->D / s->H, bf16 = s->bf16;
    MtpGemm g = {BH, c.rows, hd, c.keys, 0, 0, 0, T, hd, hd, (long)T * T, (long)T * hd, (long)T * hd, bf16};
    mtp_matmul_strided(out + (size_t)c.r0 * hd, elem(p, (size_t)c.r0 * T, bf16), b, &g);
}

/* out rows 0..keys (BH, T, hd) (+)= P block^T (BH, keys, rows) @ b rows of c */
static void attn_block_t_times(float *out, const void *p, const void *b, const BlockScratch *s, AttnChunk c,
                               int accumulate) {
    const int BH = s->B * s->H, T = s->T, hd = s->D / s->H, bf16 = s->bf16;
    MtpGemm g = {BH, c.keys, hd, c.rows, 1, 0, accumulate, T, hd, hd, (long)T * T, (long)T * hd, (long)T * hd, bf16};
    mtp_matmul_strided(out, elem(p, (size_t)c.r0 * T, bf16), elem(b, (size_t)c.r0 * hd, bf16), &g);
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

/* Floats taken by n values of attention's operands. */
static size_t attn_floats(size_t n, int bf16) { return bf16 ? (n + 1) / 2 : n; }

size_t block_acts_count(int B, int T, int D, int H, int F, int bf16) {
    size_t M = (size_t)B * T;
    return M * D + M                                   /* ln1, ln1_rstd */
           + 3 * attn_floats(M * D, bf16)              /* q, k, v */
           + attn_floats((size_t)B * H * T * T, bf16)  /* att */
           + M * D + M * D                             /* atty, x_mid */
           + M * D + M                                 /* ln2, ln2_rstd */
           + M * 2 * F + M * F;                        /* h13, g */
}

size_t block_acts_point(BlockActs *a, float *buf, int B, int T, int D, int H, int F, int bf16) {
    size_t M = (size_t)B * T;
    float *p = buf;
    a->ln1 = p, p += M * D;
    a->ln1_rstd = p, p += M;
    a->q = p, p += attn_floats(M * D, bf16);
    a->k = p, p += attn_floats(M * D, bf16);
    a->v = p, p += attn_floats(M * D, bf16);
    a->att = p, p += attn_floats((size_t)B * H * T * T, bf16);
    a->atty = p, p += M * D;
    a->x_mid = p, p += M * D;
    a->ln2 = p, p += M * D;
    a->ln2_rstd = p, p += M;
    a->h13 = p, p += M * 2 * F;
    a->g = p, p += M * F;
    return (size_t)(p - buf);
}

int block_scratch_build(BlockScratch *s, int B, int T, int D, int H, int F, int bf16) {
    memset(s, 0, sizeof *s);
    size_t M = (size_t)B * T, hd = (size_t)D / H, BHTT = (size_t)B * H * T * T;
    size_t n = 2 * T * (hd / 2)                         /* rope tables */
               + 2 * M * 3 * D                          /* qkv, dqkv */
               + 4 * M * D                              /* dq, dk, dv, o */
               + BHTT                                   /* datt */
               + M * D                                  /* dx */
               + M * 2 * F + M * F                      /* dh13, dg */
               + (bf16 ? attn_floats(M * D, 1) + attn_floats(BHTT, 1) : 0); /* o16, ds16 */
    s->mem = mtp_calloc(n, sizeof(float));
    if (!s->mem) return -1;
    s->B = B, s->T = T, s->D = D, s->H = H, s->F = F;
    /* at most 8 chunks: each chunk is its own set of primitives, and few large ones run faster */
    s->attn_chunk = T / 8 > BLOCK_ATTN_CHUNK ? (T + 7) / 8 : BLOCK_ATTN_CHUNK;
    s->bf16 = bf16;
    float *p = s->mem;
    s->cos_tab = p, p += T * (hd / 2);
    s->sin_tab = p, p += T * (hd / 2);
    s->qkv = p, p += M * 3 * D;
    s->dqkv = p, p += M * 3 * D;
    s->dq = p, p += M * D;
    s->dk = p, p += M * D;
    s->dv = p, p += M * D;
    s->o = p, p += M * D;
    s->datt = p, p += BHTT;
    s->dx = p, p += M * D;
    s->dh13 = p, p += M * 2 * F;
    s->dg = p, p += M * F;
    if (bf16) {
        s->o16 = (uint16_t *)p, p += attn_floats(M * D, 1);
        s->ds16 = (uint16_t *)p, p += attn_floats(BHTT, 1);
    }
    mtp_rope_tables(s->cos_tab, s->sin_tab, T, (int)hd);
    return 0;
}

void block_scratch_free(BlockScratch *s) {
    mtp_free(s->mem);
    memset(s, 0, sizeof *s);
}

void block_mlp_forward(float *out, const BlockMlpActs *a, const float *x, const BlockMlp *w, int M) {
    const int D = w->w13.in, F = w->w2.in;
    mtp_rmsnorm_forward(a->ln, a->rstd, x, w->norm, M, D);
    mtp_linear_forward(a->h13, a->ln, M, w->w13, 0);
    mtp_swiglu_forward(a->g, a->h13, M, F);
    if (out != x) memcpy(out, x, (size_t)M * D * sizeof(float));
    mtp_linear_forward(out, a->g, M, w->w2, 1);
}

void block_forward(float *out, BlockActs *a, const float *inp, const BlockWeights *w, BlockScratch *s) {
    const int B = s->B, T = s->T, D = s->D, H = s->H, F = s->F, hd = D / H, M = B * T, BH = B * H;
    // attention: ln1 = rmsnorm(inp); q, k, v = rope(ln1 Wqkv^T); att = softmax(q k^T / sqrt(hd)); o = att v
    mtp_rmsnorm_forward(a->ln1, a->ln1_rstd, inp, w->attn_norm, M, D);
    mtp_matmul(s->qkv, a->ln1, w->wqkv, M, 3 * D, D, 0, 1, 0);
    const int bf = s->bf16, C = s->attn_chunk;
    const float scale = 1.0f / sqrtf((float)hd);
    if (bf) mtp_qkv_split_rope_bf16(a->q, a->k, a->v, s->qkv, s->cos_tab, s->sin_tab, B, T, H, hd);
    else mtp_qkv_split_rope(a->q, a->k, a->v, s->qkv, s->cos_tab, s->sin_tab, B, T, H, hd);
    float *scores = bf ? s->datt : a->att; // in bf16 the fp32 scores are scratch, P is kept rounded
    for (int r0 = 0; r0 < T; r0 += C) attn_rows_times_keys_t(scores, a->q, a->k, s, attn_chunk(r0, C, T));
    if (bf) mtp_causal_softmax_forward_bf16(a->att, scores, BH, T, scale, C);
    else mtp_causal_softmax_forward(a->att, BH, T, scale, C);
    for (int r0 = 0; r0 < T; r0 += C) attn_block_times(s->o, a->att, a->v, s, attn_chunk(r0, C, T));
    mtp_heads_to_rows(a->atty, s->o, B, T, H, hd);
    // x_mid = inp + atty Wo^T
    memcpy(a->x_mid, inp, (size_t)M * D * sizeof(float));
    mtp_matmul(a->x_mid, a->atty, w->wo, M, D, D, 0, 1, 1);
    // mlp: out = x_mid + (silu(ln2 W1^T) * ln2 W3^T) W2^T
    const BlockMlp mlp = {w->mlp_norm, mtp_linear_plain(w->w13, 2 * F, D), mtp_linear_plain(w->w2, D, F)};
    const BlockMlpActs mlp_acts = {a->ln2, a->ln2_rstd, a->h13, a->g};
    block_mlp_forward(out, &mlp_acts, a->x_mid, &mlp, M);
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
    const int bf = s->bf16, C = s->attn_chunk, last = (T - 1) / C * C;
    const float scale = 1.0f / sqrtf((float)hd);
    void *dout = s->o;                                                          // do (BH,T,hd)
    if (bf) mtp_rows_to_heads_bf16(s->o16, s->dx, B, T, H, hd), dout = s->o16;
    else mtp_rows_to_heads(s->o, s->dx, B, T, H, hd);
    // chunks run last to first: the last one covers every key, so it writes all of dv and dk
    // and the earlier ones add into their prefix
    for (int r0 = last; r0 >= 0; r0 -= C) {
        const AttnChunk c = attn_chunk(r0, C, T);
        attn_rows_times_keys_t(s->datt, dout, a->v, s, c);          // dP = do v^T
        attn_block_t_times(s->dv, a->att, dout, s, c, r0 != last); // dv += P^T do
    }
    void *ds = s->datt;                                                         // dS (scaled)
    if (bf) mtp_causal_softmax_backward_bf16(s->ds16, s->datt, a->att, BH, T, scale, C), ds = s->ds16;
    else mtp_causal_softmax_backward(s->datt, a->att, BH, T, scale, C);
    for (int r0 = last; r0 >= 0; r0 -= C) {
        const AttnChunk c = attn_chunk(r0, C, T);
        attn_block_times(s->dq, ds, a->k, s, c);               // dq = dS k
        attn_block_t_times(s->dk, ds, a->q, s, c, r0 != last); // dk += dS^T q
    }
    mtp_qkv_merge_unrope(s->dqkv, s->dq, s->dk, s->dv, s->cos_tab, s->sin_tab, B, T, H, hd);
    mtp_linear_backward(s->dx, dw->wqkv, s->dqkv, a->ln1, w->wqkv, M, D, 3 * D, 0); // dln1 (M,D), dWqkv
    mtp_rmsnorm_backward(dres, dw->attn_norm, s->dx, inp, w->attn_norm, a->ln1_rstd, M, D); // dres = d inp
}

/* ---- inference over a key/value cache --------------------------------------------------------- */

int block_decode_scratch_build(BlockDecodeScratch *s, int R, int T, int D, int H, int F) {
    memset(s, 0, sizeof *s);
    size_t hd = (size_t)D / H;
    const size_t att = mtp_attention_cached_scratch_floats(R, T, H);
    size_t n = 2 * (size_t)T * (hd / 2) + (size_t)R * D + R + (size_t)R * 3 * D + att + (size_t)R * D +
               (size_t)R * 2 * F + (size_t)R * F;
    s->mem = mtp_calloc(n, sizeof(float));
    if (!s->mem) return -1;
    s->R = R, s->T = T, s->D = D, s->H = H, s->F = F;
    float *p = s->mem;
    s->cos_tab = p, p += (size_t)T * (hd / 2);
    s->sin_tab = p, p += (size_t)T * (hd / 2);
    s->ln = p, p += (size_t)R * D;
    s->rstd = p, p += R;
    s->qkv = p, p += (size_t)R * 3 * D;
    s->att = p, p += att;
    s->atty = p, p += (size_t)R * D;
    s->h13 = p, p += (size_t)R * 2 * F;
    s->g = p, p += (size_t)R * F;
    mtp_rope_tables(s->cos_tab, s->sin_tab, T, (int)hd);
    s->attn = (MtpAttnCached){T, H, (int)hd, s->cos_tab, s->sin_tab, s->qkv, s->atty, s->att, NULL};
    return 0;
}

size_t block_packed_bytes(int D, int F, MtpPrecision precision) {
    return mtp_packed_weight_bytes(3 * D, D, precision) + mtp_packed_weight_bytes(D, D, precision) +
           mtp_packed_weight_bytes(2 * F, D, precision) + mtp_packed_weight_bytes(D, F, precision);
}

int block_pack(BlockDecode *b, const BlockWeights *w, int D, int F, MtpPrecision precision, char **cursor) {
    memset(b, 0, sizeof *b);
    b->attn_norm = w->attn_norm, b->mlp_norm = w->mlp_norm;
    /* in the order block_decode reads them */
    b->wqkv = mtp_pack_weight_at(cursor, w->wqkv, 3 * D, D, precision);
    b->wo = mtp_pack_weight_at(cursor, w->wo, D, D, precision);
    b->w13 = mtp_pack_weight_at(cursor, w->w13, 2 * F, D, precision);
    b->w2 = mtp_pack_weight_at(cursor, w->w2, D, F, precision);
    if (b->wqkv && b->wo && b->w13 && b->w2) return 0;
    block_packed_free(b);
    return -1;
}

void block_packed_free(BlockDecode *b) {
    mtp_packed_weight_free(b->wqkv);
    mtp_packed_weight_free(b->wo);
    mtp_packed_weight_free(b->w13);
    mtp_packed_weight_free(b->w2);
    memset(b, 0, sizeof *b);
}

void block_decode_scratch_free(BlockDecodeScratch *s) {
    mtp_free(s->mem);
    memset(s, 0, sizeof *s);
}

void block_decode(BlockDecodeScratch *s, const BlockDecode *b, float *x, int pos0, int R) {
    const int D = s->D;
    // x (R,D) += Wo attn(rmsnorm(x)) over the cache; x += W2 swiglu(rmsnorm(x))
    mtp_rmsnorm_forward(s->ln, s->rstd, x, b->attn_norm, R, D);
    mtp_matmul_packed(s->qkv, s->ln, R, b->wqkv, 0);
    mtp_attention_cached(&s->attn, b->kv, pos0, R);
    mtp_matmul_packed(x, s->atty, R, b->wo, 1);
    const BlockMlp mlp = {b->mlp_norm, mtp_linear_packed(b->w13), mtp_linear_packed(b->w2)};
    const BlockMlpActs mlp_acts = {s->ln, s->rstd, s->h13, s->g};
    block_mlp_forward(x, &mlp_acts, x, &mlp, R);
}
