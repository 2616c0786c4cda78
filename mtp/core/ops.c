/* ops.c - the per-token layers: norms, rotary embedding, attention softmax, SwiGLU, loss.
 *
 * Each is a plain loop over rows, parallelised with OpenMP. Reductions across rows (a norm's
 * weight gradient, the summed loss) are done column-wise or into per-row arrays summed serially,
 * so results are identical whatever the thread count and schedule. */
#include <assert.h>
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "mtp/core/core.h"

/* ---- RMSNorm -------------------------------------------------------------------------------- */

void mtp_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int M, int D) {
    // out (M,D), rstd (M), inp (M,D), weight (D)
#pragma omp parallel for schedule(static) if ((size_t)M * D >= MTP_PARALLEL_MIN)
    for (int m = 0; m < M; m++) {
        const float *x = inp + (size_t)m * D;
        float *o = out + (size_t)m * D;
        float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
        for (int d = 0; d < D; d++) ss += x[d] * x[d];
        float r = 1.0f / sqrtf(ss / D + MTP_RMS_EPS);
        for (int d = 0; d < D; d++) o[d] = x[d] * r * weight[d];
        rstd[m] = r;
    }
}

void mtp_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                          const float *rstd, int M, int D) {
    // y = x * r * w, r = (mean(x^2) + eps)^-1/2
    // dx = r * (dy*w) - x * r^3 / D * sum(dy*w*x)
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
        const float *x = inp + (size_t)m * D, *dy = dout + (size_t)m * D;
        float *dx = dinp + (size_t)m * D;
        float r = rstd[m];
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int d = 0; d < D; d++) dot += dy[d] * weight[d] * x[d];
        float c = dot * r * r * r / D;
        for (int d = 0; d < D; d++) dx[d] += r * dy[d] * weight[d] - c * x[d];
    }
    /* the weight gradient sums over rows: split by columns so each sum runs in row order */
    enum { COLS = 16 };
    int nblocks = (D + COLS - 1) / COLS;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < nblocks; b++) {
        int d0 = b * COLS, d1 = d0 + COLS < D ? d0 + COLS : D;
        float acc[COLS] = {0};
        for (int m = 0; m < M; m++) {
            const float *x = inp + (size_t)m * D, *dy = dout + (size_t)m * D;
            float r = rstd[m];
            for (int d = d0; d < d1; d++) acc[d - d0] += dy[d] * x[d] * r;
        }
        for (int d = d0; d < d1; d++) dweight[d] += acc[d - d0];
    }
}

/* ---- elementwise ---------------------------------------------------------------------------- */

void mtp_add_inplace(float *out, const float *a, size_t n) {
#pragma omp parallel for schedule(static) if (n >= MTP_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) out[i] += a[i];
}

static inline float silu(float x) { return x / (1.0f + mtp_expf(-x)); }

void mtp_swiglu_forward(float *g, const float *h13, int M, int F) {
#pragma omp parallel for schedule(static) if ((size_t)M * F >= MTP_PARALLEL_MIN)
    for (int m = 0; m < M; m++) {
        const float *h1 = h13 + (size_t)m * 2 * F, *h3 = h1 + F;
        float *o = g + (size_t)m * F;
#pragma omp simd
        for (int f = 0; f < F; f++) o[f] = silu(h1[f]) * h3[f];
    }
}

void mtp_swiglu_backward(float *dh13, const float *dg, const float *h13, int M, int F) {
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
        const float *h1 = h13 + (size_t)m * 2 * F, *h3 = h1 + F, *dgm = dg + (size_t)m * F;
        float *d1 = dh13 + (size_t)m * 2 * F, *d3 = d1 + F;
#pragma omp simd
        for (int f = 0; f < F; f++) {
            float s = 1.0f / (1.0f + mtp_expf(-h1[f]));
            float si = h1[f] * s;
            d3[f] = dgm[f] * si;
            d1[f] = dgm[f] * h3[f] * s * (1.0f + h1[f] * (1.0f - s));
        }
    }
}

void mtp_silu_residual_forward(float *out, const float *inp, const float *u, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= MTP_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) out[i] = inp[i] + silu(u[i]);
}

void mtp_silu_backward(float *du, const float *dout, const float *u, size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + mtp_expf(-u[i]));
        du[i] = dout[i] * s * (1.0f + u[i] * (1.0f - s));
    }
}

/* ---- rotary embedding and head layout ------------------------------------------------------- */

void mtp_rope_tables(float *cos_tab, float *sin_tab, int T, int hd) {
    int half = hd / 2;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            double freq = pow(10000.0, -2.0 * i / hd);
            cos_tab[t * half + i] = (float)cos(t * freq);
            sin_tab[t * half + i] = (float)sin(t * freq);
        }
}


static inline void rope_unrotate(float *dst, const float *src, const float *c, const float *s, int half) {
    for (int i = 0; i < half; i++) {
        float y0 = src[2 * i], y1 = src[2 * i + 1];
        dst[2 * i] = y0 * c[i] + y1 * s[i];
        dst[2 * i + 1] = -y0 * s[i] + y1 * c[i];
    }
}

/* qkv (B*T, 3*D) -> q, k, v (B, H, T, hd), RoPE on q and k; stored as fp32 or (bf16) bfloat16 */
static void qkv_split_rope(void *q, void *k, void *v, int bf16, const float *qkv, const float *cos_tab,
                           const float *sin_tab, int B, int T, int H, int hd) {
    int D = H * hd, half = hd / 2;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const float *row = qkv + ((size_t)b * T + t) * 3 * D;
            const float *c = cos_tab + (size_t)t * half, *s = sin_tab + (size_t)t * half;
            float tmp[3 * 512]; /* one head's q, k, v: the trunk's config allows head dims up to 512 */
            for (int h = 0; h < H; h++) {
                size_t o = (((size_t)b * H + h) * T + t) * hd;
                mtp_rope_rotate(tmp, row + h * hd, c, s, half);
                mtp_rope_rotate(tmp + hd, row + D + h * hd, c, s, half);
                memcpy(tmp + 2 * hd, row + 2 * D + h * hd, hd * sizeof(float));
                float *outs[3] = {q, k, v};
                for (int m = 0; m < 3; m++) {
                    if (bf16) {
                        uint16_t *dst = (uint16_t *)outs[m] + o;
#pragma omp simd
                        for (int d = 0; d < hd; d++) dst[d] = mtp_f32_to_bf16(tmp[m * hd + d]);
                    } else {
                        memcpy(outs[m] + o, tmp + m * hd, hd * sizeof(float));
                    }
                }
            }
        }
}

void mtp_qkv_split_rope(float *q, float *k, float *v, const float *qkv, const float *cos_tab,
                        const float *sin_tab, int B, int T, int H, int hd) {
    qkv_split_rope(q, k, v, 0, qkv, cos_tab, sin_tab, B, T, H, hd);
}

void mtp_qkv_split_rope_bf16(uint16_t *q, uint16_t *k, uint16_t *v, const float *qkv, const float *cos_tab,
                             const float *sin_tab, int B, int T, int H, int hd) {
    qkv_split_rope(q, k, v, 1, qkv, cos_tab, sin_tab, B, T, H, hd);
}

void mtp_qkv_merge_unrope(float *dqkv, const float *dq, const float *dk, const float *dv, const float *cos_tab,
                          const float *sin_tab, int B, int T, int H, int hd) {
    int D = H * hd, half = hd / 2;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            float *row = dqkv + ((size_t)b * T + t) * 3 * D;
            const float *c = cos_tab + (size_t)t * half, *s = sin_tab + (size_t)t * half;
            for (int h = 0; h < H; h++) {
                size_t o = (((size_t)b * H + h) * T + t) * hd;
                rope_unrotate(row + h * hd, dq + o, c, s, half);
                rope_unrotate(row + D + h * hd, dk + o, c, s, half);
                memcpy(row + 2 * D + h * hd, dv + o, hd * sizeof(float));
            }
        }
}

void mtp_heads_to_rows(float *rows, const float *bhtd, int B, int T, int H, int hd) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++)
                memcpy(rows + ((size_t)b * T + t) * H * hd + h * hd, bhtd + (((size_t)b * H + h) * T + t) * hd,
                       hd * sizeof(float));
}

void mtp_rows_to_heads(float *bhtd, const float *rows, int B, int T, int H, int hd) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++)
                memcpy(bhtd + (((size_t)b * H + h) * T + t) * hd, rows + ((size_t)b * T + t) * H * hd + h * hd,
                       hd * sizeof(float));
}

void mtp_rows_to_heads_bf16(uint16_t *bhtd, const float *rows, int B, int T, int H, int hd) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++) {
                uint16_t *dst = bhtd + (((size_t)b * H + h) * T + t) * hd;
                const float *src = rows + ((size_t)b * T + t) * H * hd + h * hd;
#pragma omp simd
                for (int d = 0; d < hd; d++) dst[d] = mtp_f32_to_bf16(src[d]);
            }
}

/* ---- causal softmax ------------------------------------------------------------------------- */

/* Row i of a causal softmax: row[0..i] becomes exp(scale * s - max), and 1/sum is returned. */
static inline float causal_exp_row(float *row, int i, float scale) {
    float mx = -FLT_MAX;
#pragma omp simd reduction(max : mx)
    for (int j = 0; j <= i; j++) mx = row[j] * scale > mx ? row[j] * scale : mx;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j <= i; j++) {
        float e = mtp_expf(row[j] * scale - mx);
        row[j] = e;
        sum += e;
    }
    return 1.0f / sum;
}

/* End of the keys that query row i's chunk computes: columns i+1 .. end-1 are zeroed. */
static inline int chunk_end(int i, int chunk, int T) { return (i / chunk + 1) * chunk < T ? (i / chunk + 1) * chunk : T; }

void mtp_causal_softmax_forward(float *att, int BH, int T, float scale, int chunk) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int bh = 0; bh < BH; bh++)
        for (int i = 0; i < T; i++) {
            float *row = att + ((size_t)bh * T + i) * T;
            float inv = causal_exp_row(row, i, scale);
#pragma omp simd
            for (int j = 0; j <= i; j++) row[j] *= inv;
            for (int j = i + 1, end = chunk_end(i, chunk, T); j < end; j++) row[j] = 0.0f;
        }
}

void mtp_causal_softmax_forward_bf16(uint16_t *att, float *scores, int BH, int T, float scale, int chunk) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int bh = 0; bh < BH; bh++)
        for (int i = 0; i < T; i++) {
            float *row = scores + ((size_t)bh * T + i) * T;
            uint16_t *out = att + ((size_t)bh * T + i) * T;
            float inv = causal_exp_row(row, i, scale);
#pragma omp simd
            for (int j = 0; j <= i; j++) out[j] = mtp_f32_to_bf16(row[j] * inv);
            for (int j = i + 1, end = chunk_end(i, chunk, T); j < end; j++) out[j] = 0;
        }
}

void mtp_causal_softmax_backward(float *datt, const float *att, int BH, int T, float scale, int chunk) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int bh = 0; bh < BH; bh++)
        for (int i = 0; i < T; i++) {
            float *d = datt + ((size_t)bh * T + i) * T;
            const float *p = att + ((size_t)bh * T + i) * T;
            float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
            for (int j = 0; j <= i; j++) dot += p[j] * d[j];
#pragma omp simd
            for (int j = 0; j <= i; j++) d[j] = p[j] * (d[j] - dot) * scale;
            for (int j = i + 1, end = chunk_end(i, chunk, T); j < end; j++) d[j] = 0.0f;
        }
}

void mtp_causal_softmax_backward_bf16(uint16_t *ds, const float *dp, const uint16_t *att, int BH, int T,
                                      float scale, int chunk) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int bh = 0; bh < BH; bh++)
        for (int i = 0; i < T; i++) {
            size_t o = ((size_t)bh * T + i) * T;
            const float *d = dp + o;
            const uint16_t *p = att + o;
            uint16_t *out = ds + o;
            float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
            for (int j = 0; j <= i; j++) dot += mtp_bf16_to_f32(p[j]) * d[j];
#pragma omp simd
            for (int j = 0; j <= i; j++) out[j] = mtp_f32_to_bf16(mtp_bf16_to_f32(p[j]) * (d[j] - dot) * scale);
            for (int j = i + 1, end = chunk_end(i, chunk, T); j < end; j++) out[j] = 0;
        }
}

/* ---- cross-entropy -------------------------------------------------------------------------- */

/* One row: returns the loss, writes the gradient in place when grad_scale != 0 (or leaves logits
 * untouched when grad == 0), and whether argmax == target. */
static double ce_row(float *logits, int32_t target, int V, float grad_scale, int write_grad, int *correct) {
    float mx = -FLT_MAX;
    int arg = 0;
    for (int v = 0; v < V; v++)
        if (logits[v] > mx) {
            mx = logits[v];
            arg = v;
        }
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int v = 0; v < V; v++) sum += mtp_expf(logits[v] - mx);
    double loss = log((double)sum) + mx - logits[target];
    *correct = arg == target;
    if (write_grad) {
        float inv = 1.0f / sum * grad_scale;
#pragma omp simd
        for (int v = 0; v < V; v++) logits[v] = mtp_expf(logits[v] - mx) * inv;
        logits[target] -= grad_scale;
    }
    return loss;
}

/* Rows go in blocks of CE_BLOCK, their losses summed in row order after each block: the same
 * total for any thread count, and no allocation that could fail. */
enum { CE_BLOCK = 256 };

static double ce_rows(float *logits, const int32_t *targets, int M, int V, float grad_scale, int write_grad,
                      long *correct) {
    double total = 0.0;
    long n_ok = 0;
    for (int m0 = 0; m0 < M; m0 += CE_BLOCK) {
        const int rows = M - m0 < CE_BLOCK ? M - m0 : CE_BLOCK;
        double row_loss[CE_BLOCK];
        char row_ok[CE_BLOCK];
#pragma omp parallel for schedule(static)
        for (int i = 0; i < rows; i++) {
            const int m = m0 + i;
            float *row = logits + (size_t)m * V;
            int ok = 0;
            if (targets[m] < 0) {
                row_loss[i] = 0.0;
                if (write_grad) memset(row, 0, (size_t)V * sizeof(float));
            } else {
                assert(targets[m] < V);
                row_loss[i] = ce_row(row, targets[m], V, grad_scale, write_grad, &ok);
            }
            row_ok[i] = (char)ok;
        }
        for (int i = 0; i < rows; i++) total += row_loss[i], n_ok += row_ok[i];
    }
    if (correct) *correct = n_ok;
    return total;
}

double mtp_cross_entropy(float *logits, const int32_t *targets, int M, int V, float grad_scale, long *correct) {
    return ce_rows(logits, targets, M, V, grad_scale, 1, correct);
}

double mtp_cross_entropy_loss(const float *logits, const int32_t *targets, int M, int V, long *correct) {
    return ce_rows((float *)logits, targets, M, V, 0.0f, 0, correct);
}

/* ---- reductions ----------------------------------------------------------------------------- */

double mtp_sumsq(const float *x, size_t n) {
    /* fixed-size chunks summed in order: the same result for any thread count; the chunks' sums go
       in groups on the stack (no allocation that could fail) */
    enum { CHUNK = 1 << 14, GROUP = 256 };
    const size_t nchunks = (n + CHUNK - 1) / CHUNK;
    double total = 0.0;
    for (size_t g0 = 0; g0 < nchunks; g0 += GROUP) {
        const size_t g = nchunks - g0 < GROUP ? nchunks - g0 : GROUP;
        double part[GROUP];
#pragma omp parallel for schedule(static)
        for (size_t c = 0; c < g; c++) {
            const size_t i0 = (g0 + c) * CHUNK, i1 = i0 + CHUNK < n ? i0 + CHUNK : n;
            double s = 0.0;
            for (size_t i = i0; i < i1; i++) s += (double)x[i] * x[i];
            part[c] = s;
        }
        for (size_t c = 0; c < g; c++) total += part[c];
    }
    return total;
}
