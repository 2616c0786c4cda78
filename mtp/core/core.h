/* core.h - the core operations every layer is built from.
 *
 * Two kinds of work live here:
 *   - dense matrix products, all through oneDNN (mtp_matmul*): one primitive per distinct shape,
 *     created on first use and cached for the life of the process;
 *   - everything else (norms, rotary embedding, attention softmax, SwiGLU, cross-entropy):
 *     plain loops parallelised with OpenMP, written so their results do not depend on scheduling
 *     (every reduction has a fixed order for a given thread count).
 *
 * Conventions: row-major, outputs first, then inputs, then sizes. "M" is the number of token
 * rows (batch * sequence). A weight matrix W of a linear layer is stored (out, in), as PyTorch
 * stores nn.Linear, and y = x W^T. */
#ifndef MTP_CORE_H
#define MTP_CORE_H

#include <stddef.h>
#include <stdint.h>

#include "mtp/core/rng.h"

typedef enum { MTP_FP32 = 0, MTP_BF16 = 1 } MtpPrecision;

/* ---- setup ---------------------------------------------------------------------------------- */

/* Sets the OpenMP thread count (oneDNN shares the same OpenMP runtime), creates the oneDNN
 * engine and stream, and selects the precision of matrix products. threads <= 0 means all cores.
 * Returns 0, or -1 with a message if oneDNN cannot be initialised. Call once, before any op. */
int mtp_core_init(int threads, MtpPrecision precision, char *err, size_t errlen);
void mtp_core_shutdown(void);
int mtp_core_threads(void);
MtpPrecision mtp_core_precision(void);
void mtp_core_set_precision(MtpPrecision precision);
const char *mtp_precision_name(MtpPrecision p);
/* Whether oneDNN has bf16 matrix products on this CPU (AVX-512 at least); where it has none, the
 * first bf16 product stops the process with an error. */
int mtp_bf16_products(void);

/* ---- matrix products (oneDNN) --------------------------------------------------------------- */

/* C (M,N) = op(A) op(B), or C += op(A) op(B) with accumulate.
 * A is stored (M,K), or (K,M) when trans_a; B is stored (K,N), or (N,K) when trans_b.
 * In bf16 precision both operands are rounded to bfloat16 and the product accumulates in fp32. */
void mtp_matmul(float *C, const float *A, const float *B, int M, int N, int K, int trans_a, int trans_b,
                int accumulate);
/* Backward of a linear layer y (M, out) = x (M, in) W^T, W stored (out, in):
 * dx = dy W (dx += dy W with accumulate_dx), and dW += dy^T x. In bf16, dy is rounded once for
 * both products. */
void mtp_linear_backward(float *dx, float *dW, const float *dy, const float *x, const float *W, int M, int in,
                         int out, int accumulate_dx);

/* A batched product over strided operands, BLAS style: for b < batch,
 * C_b = op(A_b) op(B_b) (+ C_b), where A_b = A + b * stride_a is stored (M, K) with row stride lda,
 * or (K, M) when trans_a; B_b likewise (K, N) / (N, K) with ldb; C_b (M, N) fp32 with row stride
 * ldc. A and B are fp32, or bfloat16 (uint16_t) values when bf16 is set: attention keeps its
 * operands rounded, so they are never converted at product time.
 * Lets attention work on blocks of its (T, T) matrices in place. */
typedef struct {
    int batch, M, N, K, trans_a, trans_b, accumulate;
    long lda, ldb, ldc, stride_a, stride_b, stride_c;
    int bf16;
} MtpGemm;
void mtp_matmul_strided(float *C, const void *A, const void *B, const MtpGemm *g);

/* A weight matrix W (N, K), stored (out, in), copied once into the layout oneDNN's kernels read
 * fastest (format_tag_any + one reorder), rounded to bf16 in bf16 precision: with it a product of
 * a few rows costs about what one row does, where plain row-major weights are re-packed on every
 * call. For inference, where weights do not change. */
typedef struct MtpPackedWeight MtpPackedWeight;
/* Packs W at *cursor (64-byte aligned), which then moves past mtp_packed_weight_bytes() (a 64-byte
 * multiple); with a NULL cursor, into its own allocation. The caller's memory outlives the handle.
 * A model's packed matrices share one allocation this way, laid out in the order a forward pass
 * reads them: a one-row pass is bound by streaming its weights, and one run of memory streams
 * about a fifth faster than matrices scattered over the heap (measured at 24 MB of weights). */
size_t mtp_packed_weight_bytes(int N, int K, MtpPrecision precision);
MtpPackedWeight *mtp_pack_weight_at(char **cursor, const float *W, int N, int K, MtpPrecision precision);
void mtp_packed_weight_free(MtpPackedWeight *pw);
/* C (M, N) = A (M, K) W^T, or C += with accumulate. */
void mtp_matmul_packed(float *C, const float *A, int M, const MtpPackedWeight *pw, int accumulate);

/* ---- products of a few rows (own kernel, smallrows.c) ------------------------------------------ */

/* Products of 1..MTP_SMALL_ROWS_MAX rows on packed weights run on a kernel that reads each weight
 * once for all rows, where the CPU has one (AVX2 at least); larger products, and every product
 * with MTP_SMALL_KERNEL=onednn, run on oneDNN. A matrix packed while a kernel serves its precision
 * is laid out for it (oneDNN's BA16a64b, or BA16a64b2a in bf16), which oneDNN reads as well. A
 * row's result does not depend on the rows that share its product. */
#define MTP_SMALL_ROWS_MAX 16
/* Output columns per block of the layout: 64 (BA16a64b, BA16a64b2a, oneDNN's own choice: the 64
 * outputs of an input in one 256-byte run, so a tile of a block reads one stream) or 16 (BA16a16b,
 * BA16a16b2a: one 16-column panel after another). 64 read 1-8 rows faster from memory and 16 as
 * fast (smallrows.c); 16 is kept for CPUs yet to be measured. */
#ifndef MTP_SMALL_BLOCK
#define MTP_SMALL_BLOCK 64
#endif
typedef enum { MTP_SMALL_ONEDNN, MTP_SMALL_AVX2, MTP_SMALL_AVX512, MTP_SMALL_AVX512_DOT } MtpSmallKernel;
/* The kernel serving precision p: chosen on first call from the CPU's features (see smallrows.c). */
MtpSmallKernel mtp_small_kernel(MtpPrecision p);
const char *mtp_small_kernel_name(MtpSmallKernel k); /* "onednn", "avx2", "avx512", "avx512-dot" */
/* Makes k serve p (tests, benchmarks); -1 when this CPU cannot run it. Matrices packed before keep
 * their layout: a matrix laid out for oneDNN's choice stays with oneDNN. */
int mtp_small_kernel_use(MtpPrecision p, MtpSmallKernel k);
/* C (M, N) = A (M, K) W^T, or C += with accumulate, for W laid out as above (M <= MTP_SMALL_ROWS_MAX). */
void mtp_small_matmul(float *C, const float *A, int M, const void *W, int N, int K, MtpPrecision p, int accumulate);
/* Products reading at least this many bytes of weights are split over the core's threads by output
 * columns (default 256 KB; tests set 0 to split everything). */
void mtp_small_parallel_bytes(size_t bytes);
void mtp_small_shutdown(void);

/* A linear layer's matrix W (out, in) as its products read it: plain fp32 in training, where W
 * changes every step, or packed once for inference. The layers built on it (the SwiGLU MLP, the
 * linear heads, the final norm and unembedding) are then one implementation for both. */
typedef struct {
    const float *w;                /* (out, in) plain, or NULL when packed */
    const MtpPackedWeight *packed; /* or packed (mtp_pack_weight_at) */
    int out, in;
} MtpLinear;
static inline MtpLinear mtp_linear_plain(const float *w, int out, int in) { return (MtpLinear){w, NULL, out, in}; }
MtpLinear mtp_linear_packed(const MtpPackedWeight *pw);
/* y (M, out) = x (M, in) W^T, or y += with accumulate. */
void mtp_linear_forward(float *y, const float *x, int M, MtpLinear W, int accumulate);

/* The error convention of every module: writes a one-line message into err (when errlen > 0)
 * and returns -1. */
int mtp_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Floating-point operations issued to oneDNN so far (2*M*N*K per product), for MFU reports. */
double mtp_matmul_flops(void);
/* Name of the oneDNN implementation chosen for the most recently created primitive ("brg:avx512_core_bf16"). */
const char *mtp_matmul_last_impl(void);
/* Number of primitives created so far (tests check that repeated calls create none). */
int mtp_matmul_primitive_count(void);

/* ---- bfloat16 ------------------------------------------------------------------------------- */

static inline uint16_t mtp_f32_to_bf16(float f) {
    union { float f; uint32_t u; } v = {f};
    uint32_t rounded = (v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16; /* round to nearest even */
    uint32_t nan = (v.u >> 16) | 0x40;                               /* NaN stays a (quiet) NaN */
    return (uint16_t)((v.u & 0x7fffffffu) > 0x7f800000u ? nan : rounded); /* a select: vectorizes */
}
static inline float mtp_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v = {(uint32_t)h << 16};
    return v.f;
}
void mtp_round_to_bf16(uint16_t *out, const float *in, size_t n);

/* ---- fast exp ------------------------------------------------------------------------------- */

/* e^x to within about 2 ulp for x in [-87, 88] (clamped outside), in straight-line arithmetic
 * that the compiler vectorizes, unlike libm's expf: softmax, SiLU and the loss spend most of
 * their time here. */
static inline float mtp_expf(float x) {
    x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
    /* x = n ln2 + r with |r| <= ln2/2; the magic constant rounds n to nearest */
    float n = (x * 1.44269504f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693145752f - n * 1.42860677e-6f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.66666667e-1f + r * (4.16666667e-2f +
              r * (8.33333333e-3f + r * 1.38888889e-3f)))));
    union { uint32_t u; float f; } scale = {(uint32_t)((int32_t)n + 127) << 23};
    return p * scale.f;
}

/* ---- per-token layers (OpenMP loops) -------------------------------------------------------- */

/* Loops over fewer values than this run on one thread: waking a second costs more than it saves
 * (a decoding pass's per-row work is a few thousand values; two threads decoded a small model
 * slower than one). A row's result is the same either way. */
#define MTP_PARALLEL_MIN 32768

#define MTP_RMS_EPS 1e-5f

/* out (M,D) = inp / rms(inp) * weight; rstd (M) keeps 1/rms for the backward pass */
void mtp_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int M, int D);
/* dinp (M,D) += ..., dweight (D) += ...; dinp must not alias dout */
void mtp_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                          const float *rstd, int M, int D);

/* out += a */
void mtp_add_inplace(float *out, const float *a, size_t n);

/* SwiGLU: h13 (M, 2F) holds [h1 | h3] per row; g (M,F) = silu(h1) * h3 */
void mtp_swiglu_forward(float *g, const float *h13, int M, int F);
/* dh13 (M, 2F) = d/dh13 given dg (M,F) */
void mtp_swiglu_backward(float *dh13, const float *dg, const float *h13, int M, int F);

/* SiLU residual of a linear head: out (M,D) = inp + silu(u) */
void mtp_silu_residual_forward(float *out, const float *inp, const float *u, size_t n);
/* du = dout * silu'(u) */
void mtp_silu_backward(float *du, const float *dout, const float *u, size_t n);

/* ---- attention pieces ----------------------------------------------------------------------- */

/* Rotary tables for positions 0..T-1 and head dimension hd (pairs (2i, 2i+1)), base 10000:
 * cos_tab, sin_tab (T, hd/2). */
void mtp_rope_tables(float *cos_tab, float *sin_tab, int T, int hd);
/* One head's vector rotated at one position: c, s are that position's rows of the tables. */
static inline void mtp_rope_rotate(float *dst, const float *src, const float *c, const float *s, int half) {
    for (int i = 0; i < half; i++) {
        float x0 = src[2 * i], x1 = src[2 * i + 1];
        dst[2 * i] = x0 * c[i] - x1 * s[i];
        dst[2 * i + 1] = x0 * s[i] + x1 * c[i];
    }
}

/* Split qkv (B*T, 3*D) rows into q, k, v (B, H, T, hd), applying RoPE to q and k. */
void mtp_qkv_split_rope(float *q, float *k, float *v, const float *qkv, const float *cos_tab,
                        const float *sin_tab, int B, int T, int H, int hd);
/* Backward of the above: dqkv (B*T, 3*D) from dq, dk, dv (B, H, T, hd) (RoPE undone on dq, dk). */
void mtp_qkv_merge_unrope(float *dqkv, const float *dq, const float *dk, const float *dv, const float *cos_tab,
                          const float *sin_tab, int B, int T, int H, int hd);

/* The same writing q, k, v as bfloat16 (attention in bf16). */
void mtp_qkv_split_rope_bf16(uint16_t *q, uint16_t *k, uint16_t *v, const float *qkv, const float *cos_tab,
                             const float *sin_tab, int B, int T, int H, int hd);

/* (B, H, T, hd) <-> (B*T, H*hd) */
void mtp_heads_to_rows(float *rows, const float *bhtd, int B, int T, int H, int hd);
void mtp_rows_to_heads(float *bhtd, const float *rows, int B, int T, int H, int hd);
void mtp_rows_to_heads_bf16(uint16_t *bhtd, const float *rows, int B, int T, int H, int hd);

/* Causal softmax in place over att (BH, T, T) holding raw scores q.k: row i becomes
 * softmax_j<=i(scale * s_ij) followed by zeros up to the end of its chunk: attention runs in row
 * chunks of `chunk` rows whose keys stop at the chunk's last row, so the columns past that are
 * never computed nor read (chunk = T: whole rows). */
void mtp_causal_softmax_forward(float *att, int BH, int T, float scale, int chunk);
/* datt (BH,T,T) holds dP on entry and dS (already times scale) on return, within the same chunks. */
void mtp_causal_softmax_backward(float *datt, const float *att, int BH, int T, float scale, int chunk);
/* bf16 variants: P written rounded from the fp32 scores (which are used as working memory), and
 * dS written rounded from dP and the rounded P. */
void mtp_causal_softmax_forward_bf16(uint16_t *att, float *scores, int BH, int T, float scale, int chunk);
void mtp_causal_softmax_backward_bf16(uint16_t *ds, const float *dp, const uint16_t *att, int BH, int T,
                                      float scale, int chunk);

/* ---- attention over a key/value cache (inference, kvcache.c) -------------------------------- */

/* One layer's cache for T positions of H heads of hd dims. Keys are kept in tiles of
 * MTP_KV_TILE positions, (H, T/tile, hd, tile): a query's scores for a tile are hd
 * multiply-adds of one vector each, and a pass over the keys reads one run of memory. Values
 * are (H, T, hd rounded up to the tile), so a head's values are one run too. Rolling the cache
 * back is only a change of length: later writes overwrite what was there. */
#define MTP_KV_TILE 16
size_t mtp_k_cache_floats(int T, int H, int hd);
size_t mtp_v_cache_floats(int T, int H, int hd);
/* Scratch mtp_attention_cached needs for R rows. */
size_t mtp_attention_cached_scratch_floats(int R, int T, int H);

/* One layer's key and value caches. */
typedef struct {
    float *k, *v; /* mtp_k_cache_floats, mtp_v_cache_floats */
} MtpKvLayer;

/* New rows that form a tree (draft trees, decode/) rather than a sequence: row r sits at position
 * pos0 + depth[r] and sees the cache below pos0 and the new rows whose bits are set in
 * ancestors[r] (its own included, none after it). */
#define MTP_TREE_ROWS_MAX 64
typedef struct {
    int depth[MTP_TREE_ROWS_MAX];
    uint64_t ancestors[MTP_TREE_ROWS_MAX];
} MtpAttnTree;

/* What attention over a cache works with besides the cache: the sizes, the rotary tables, the
 * new rows' projections and where their output goes, and scratch. Every layer of a model shares
 * one (the rows pass through the layers one after another). */
typedef struct {
    int T, H, hd;                   /* cache positions, heads, head dim */
    const float *cos_tab, *sin_tab; /* (T, hd/2) rotary tables */
    const float *qkv;               /* (R, 3D) in: the new rows' raw projections */
    float *out;                     /* (R, D) out: their attention output, heads concatenated */
    float *att;                     /* scratch: mtp_attention_cached_scratch_floats */
    const MtpAttnTree *tree;        /* NULL: the new rows are a sequence; else the tree they form */
} MtpAttnCached;

/* Attention for R new rows against a cache of T positions: their keys and values are written into
 * kv at positions pos0..pos0+R-1 (row r at pos0 + r), and ac->out gets each row's attention. As a
 * sequence (ac->tree NULL), row r is at position pos0 + r and sees positions 0..pos0+r. As a tree,
 * row r is at position pos0 + depth[r] (RoPE) and sees the cache below pos0 and its ancestors'
 * rows: its output is bit for bit what the chain of its ancestors and itself gives as a sequence
 * (its probabilities are computed over the same scores in the same order). */
void mtp_attention_cached(const MtpAttnCached *ac, MtpKvLayer kv, int pos0, int R);
/* Copies position from's key and value to position to (a tree's kept path closing up). */
void mtp_kv_move(MtpKvLayer kv, int from, int to, int T, int H, int hd);

/* ---- loss ----------------------------------------------------------------------------------- */

/* Softmax cross-entropy over logits (M, V) for targets (M), in place: logits become dlogits =
 * (softmax - onehot) * grad_scale. Rows with target < 0 are left out (zero gradient, no loss).
 * Returns the summed loss over counted rows; *correct gets the number of rows whose argmax equals
 * the target. The sum is reduced in a fixed order. */
double mtp_cross_entropy(float *logits, const int32_t *targets, int M, int V, float grad_scale, long *correct);
/* Loss only (logits untouched). */
double mtp_cross_entropy_loss(const float *logits, const int32_t *targets, int M, int V, long *correct);

/* ---- measuring a pass (mtp bench --passes; measure.c) ----------------------------------------- */

/* While timing is on, mtp_matmul_packed and mtp_attention_cached add their seconds to the totals
 * of their part: a benchmark splits a decoding pass with them. Off by default. */
typedef enum { MTP_TIME_PRODUCTS, MTP_TIME_ATTENTION, MTP_TIME_PARTS } MtpTimePart;
void mtp_timing(int on); /* turns timing on or off, and zeroes the totals */
double mtp_timing_start(void); /* the time now, when timing is on */
void mtp_timing_stop(MtpTimePart part, double t0);
double mtp_timing_total(MtpTimePart part);

/* Reads n bytes at p once, as a streaming product does; time it to measure read bandwidth. */
void mtp_read_bytes(const void *p, size_t n);
/* What attention reads of one layer's caches (of T positions) for positions 0..n-1, keys in whole
 * tiles: its bytes, and one read of them (kvcache.c, which knows the layout). */
size_t mtp_kv_read_bytes(int n, int H, int hd);
void mtp_kv_read(MtpKvLayer kv, int n, int T, int H, int hd);
/* Where a packed matrix's bytes are (*bytes of them): a pass reads them all. */
const void *mtp_packed_weight_data(const MtpPackedWeight *pw, size_t *bytes);
/* GFLOP/s of (M, K) x (K, N) products through mtp_matmul in the core's precision: the best of 5
 * repeats taking about seconds in all. */
double mtp_matmul_gflops(int M, int N, int K, double seconds);

/* ---- small utilities ------------------------------------------------------------------------ */

/* 64-byte aligned, zeroed allocation; NULL on failure or overflow of n*size. */
void *mtp_calloc(size_t n, size_t size);
void mtp_free(void *p);
/* Monotonic wall-clock seconds. */
double mtp_now(void);
/* sum of squares of x in double with a fixed reduction order */
double mtp_sumsq(const float *x, size_t n);

#endif
