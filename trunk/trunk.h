/* trunk.h - the shared transformer trunk: token embedding and L Llama-style decoder blocks.
 *
 * A block is pre-norm: x = x + Wo attn(rmsnorm(x)); x = x + W2 (silu(W1 n) * W3 n), n = rmsnorm(x),
 * causal multi-head attention with rotary position embedding, no biases. The block is also the
 * body of a `transformer` output head (heads/), so its forward/backward pair is public here.
 *
 * Memory follows llm.c: the caller owns one parameter buffer and one gradient buffer; the structs
 * below only point into them. Activations saved for the backward pass live in one allocation per
 * trunk (TrunkActs), scratch shared by every block in one more (BlockScratch). */
#ifndef MTP_TRUNK_H
#define MTP_TRUNK_H

#include <stddef.h>
#include <stdint.h>

#include "mtp/core/core.h"

typedef struct {
    int vocab;      /* V: token ids 0..V-1 */
    int dim;        /* D: model width */
    int layers;     /* L: trunk blocks */
    int attn_heads; /* H: attention heads; D % H == 0 and the head dim D/H is even */
    int ffn;        /* F: hidden width of the SwiGLU MLP */
    int ctx;        /* T: context length */
} TrunkConfig;

/* Limits keep every size product far from overflow: a crafted checkpoint header or a typo on the
 * command line gets an error, not a 100 GB allocation. */
#define TRUNK_MAX_VOCAB (1 << 20)
#define TRUNK_MAX_DIM 16384
#define TRUNK_MAX_LAYERS 256
#define TRUNK_MAX_FFN 65536
#define TRUNK_MAX_CTX 65536
#define TRUNK_MAX_HEAD_DIM 512 /* dim / attn-heads; per-head loops keep one head's vectors on the stack */

/* Checks sizes and relations; writes a one-line message naming the offending field. */
int trunk_config_check(const TrunkConfig *c, char *err, size_t errlen);

/* ---- one block ------------------------------------------------------------------------------ */

/* Parameters of one block, in this order inside the caller's buffer. wq, wk, wv are adjacent and
 * so form wqkv (3D, D) for one product; w1, w3 likewise form w13 (2F, D). */
typedef struct {
    float *attn_norm; /* (D) */
    float *wqkv;      /* (3D, D): wq, wk, wv */
    float *wo;        /* (D, D) */
    float *mlp_norm;  /* (D) */
    float *w13;       /* (2F, D): w1 (gate), w3 (up) */
    float *w2;        /* (D, F) */
} BlockWeights;

size_t block_param_count(int D, int F);
/* Points w into buf (which must hold block_param_count floats); returns the floats consumed. */
size_t block_weights_point(BlockWeights *w, float *buf, int D, int F);

/* Activations one block saves for its backward pass. */
typedef struct {
    float *ln1, *ln1_rstd; /* (M, D), (M) */
    /* attention's operands, fp32 or (attention in bf16) bfloat16 values: they only ever feed
     * matrix products, so in bf16 they are stored rounded, at half the memory */
    void *q, *k, *v;       /* (B, H, T, hd) each, q and k after RoPE */
    void *att;             /* (B, H, T, T) attention probabilities */
    float *atty;           /* (M, D) attention output, heads concatenated */
    float *x_mid;          /* (M, D) residual stream after attention */
    float *ln2, *ln2_rstd; /* (M, D), (M) */
    float *h13;            /* (M, 2F) [gate | up] before the SwiGLU */
    float *g;              /* (M, F) SwiGLU output */
} BlockActs;

/* The MLP half of a block, one implementation for training and decoding:
 * out (M, D) = x + W2 (silu(W1 n) * W3 n), n = rmsnorm(x) * norm. The matrices are plain in
 * training and packed at inference (MtpLinear). */
typedef struct {
    const float *norm; /* (D) */
    MtpLinear w13;     /* (2F, D): w1 (gate), w3 (up) */
    MtpLinear w2;      /* (D, F) */
} BlockMlp;

/* What the MLP half writes on the way: the norm, the gate/up values and the SwiGLU output, which
 * training keeps for the backward pass and decoding overwrites at every block. */
typedef struct {
    float *ln, *rstd; /* (M, D), (M) */
    float *h13;       /* (M, 2F) */
    float *g;         /* (M, F) */
} BlockMlpActs;

/* out may be x (decoding adds into the residual stream in place). */
void block_mlp_forward(float *out, const BlockMlpActs *a, const float *x, const BlockMlp *w, int M);

/* Sizes in floats; bf16 = attention's operands are stored in bfloat16 (see BlockScratch). */
size_t block_acts_count(int B, int T, int D, int H, int F, int bf16);
size_t block_acts_point(BlockActs *a, float *buf, int B, int T, int D, int H, int F, int bf16);

/* Causal attention runs in chunks of query rows: the rows of a chunk only see keys up to the
 * chunk's end, so blocks above the diagonal are never computed (for T = 256, chunks of 64 do
 * 10/16 of the full T x T work). Chunks are 64 rows, or T/8 for long contexts. */
#define BLOCK_ATTN_CHUNK 64

/* Working memory shared by all blocks of a model (forward and backward), sized for (B, T). */
typedef struct {
    int B, T, D, H, F;
    int attn_chunk;           /* query rows per attention chunk (tests vary it) */
    int bf16;                 /* attention's products take bfloat16 operands (bf16 training) */
    float *cos_tab, *sin_tab; /* (T, hd/2) RoPE tables */
    float *qkv;               /* (M, 3D) */
    float *dqkv;              /* (M, 3D) */
    float *dq, *dk, *dv;      /* (B, H, T, hd) */
    float *o;                 /* (B, H, T, hd) attention output / its gradient */
    float *datt;              /* (B, H, T, T) scores (forward) and their gradient (backward) */
    uint16_t *o16, *ds16;     /* bf16 only: (B, H, T, hd) attention-output gradient, (B, H, T, T) dS */
    float *dx;                /* (M, D) */
    float *dh13;              /* (M, 2F) */
    float *dg;                /* (M, F) */
    float *mem;
} BlockScratch;

/* bf16: run attention's products on bfloat16 operands (the activations must be built alike). */
int block_scratch_build(BlockScratch *s, int B, int T, int D, int H, int F, int bf16);
void block_scratch_free(BlockScratch *s);

/* out (M, D) = block(inp (M, D)); saves into a. out must not alias inp. */
void block_forward(float *out, BlockActs *a, const float *inp, const BlockWeights *w, BlockScratch *s);
/* Backward through the block, in place on the residual gradient: dres (M, D) holds d loss / d out
 * on entry and d loss / d inp on return. Parameter gradients are added into dw. */
void block_backward(float *dres, const BlockWeights *dw, const float *inp, const BlockActs *a,
                    const BlockWeights *w, BlockScratch *s);

/* ---- one block at inference, over a key/value cache ------------------------------------------ */

/* Working memory for running up to R rows at a time through blocks at inference, shared by every
 * block of a model. */
typedef struct {
    int R, T, D, H, F;
    float *cos_tab, *sin_tab; /* (T, hd/2) RoPE tables */
    float *ln, *rstd;         /* (R, D), (R) */
    float *qkv;               /* (R, 3D) */
    float *att;               /* (R, H, T rounded up to a tile) attention weights */
    float *atty;              /* (R, D) */
    float *h13, *g;           /* (R, 2F), (R, F) */
    MtpAttnCached attn;       /* attention over a cache on the buffers above */
    float *mem;
} BlockDecodeScratch;

int block_decode_scratch_build(BlockDecodeScratch *s, int R, int T, int D, int H, int F);
void block_decode_scratch_free(BlockDecodeScratch *s);

/* A block as decoding reads it: its norms (the model's fp32 weights), its matrices packed for
 * products of a few rows (mtp_pack_weight_at), and its key/value cache. */
typedef struct {
    const float *attn_norm, *mlp_norm;
    MtpPackedWeight *wqkv, *wo, *w13, *w2;
    MtpKvLayer kv; /* set by the engine that owns the caches */
} BlockDecode;

/* Packs w's matrices at *cursor (advanced by block_packed_bytes), or into allocations of their
 * own when cursor is NULL. kv is left empty. */
size_t block_packed_bytes(int D, int F, MtpPrecision precision);
int block_pack(BlockDecode *b, const BlockWeights *w, int D, int F, MtpPrecision precision, char **cursor);
void block_packed_free(BlockDecode *b);

/* Runs x (R, D), the residual stream of R rows at positions pos0..pos0+R-1, through the block in
 * place, writing the rows' keys and values into b->kv at positions pos0.. (what was there is
 * overwritten: rolling back a cache is only a change of length). */
void block_decode(BlockDecodeScratch *s, const BlockDecode *b, float *x, int pos0, int R);

/* ---- the trunk ------------------------------------------------------------------------------ */

typedef struct {
    float *tok_emb;         /* (V, D) */
    BlockWeights *blocks;   /* L of them */
} TrunkWeights;

size_t trunk_param_count(const TrunkConfig *c);
/* Points w into buf; w->blocks must have room for c->layers entries. Returns floats consumed. */
size_t trunk_weights_point(TrunkWeights *w, float *buf, const TrunkConfig *c);

/* Residual stream and saved activations of the trunk for batches of B rows of T tokens. */
typedef struct {
    int B, T;
    float *res;        /* (L+1, M, D): res[0] embeddings, res[l+1] output of block l; res[L] is z */
    BlockActs *blocks; /* L of them */
    float *mem;
} TrunkActs;

/* bf16: attention's operands stored in bfloat16 (must match the BlockScratch). */
int trunk_acts_build(TrunkActs *a, const TrunkConfig *c, int B, int T, int bf16);
void trunk_acts_free(TrunkActs *a);
/* The trunk output z (M, D) of the last forward pass. */
float *trunk_output(const TrunkActs *a, const TrunkConfig *c);

/* A training or evaluation pass of the trunk: what its calls share (llm.c's model struct, for the
 * trunk). The weights and their gradients are views into the model's buffers. */
typedef struct {
    const TrunkConfig *c;
    const TrunkWeights *w;  /* parameters */
    const TrunkWeights *dw; /* gradients, added into by trunk_backward; NULL for a forward-only pass */
    TrunkActs *acts;        /* sized for the batch */
    BlockScratch *scratch;  /* shared with the heads */
    /* optional: called by trunk_backward once block l's gradients are final (their sum across
       data-parallel ranks can start while the blocks below run) */
    void (*block_done)(void *ctx, int l);
    void *done_ctx;
} TrunkPass;

/* Embeds tokens (B, T) and runs all blocks; z = trunk_output(). */
void trunk_forward(const TrunkPass *p, const int32_t *tokens);
/* Backward from dz (M, D), which is consumed (used as working memory); adds into p->dw. */
void trunk_backward(const TrunkPass *p, const int32_t *tokens, float *dz);

/* Inference: the key and value caches of one block (mtp_k_cache_floats, mtp_v_cache_floats for the
 * trunk's shape). */
size_t trunk_k_cache_floats(const TrunkConfig *c);
size_t trunk_v_cache_floats(const TrunkConfig *c);
/* x (R, D) = the token embeddings of tokens (R): the residual stream a pass starts from. */
void trunk_embed(float *x, const int32_t *tokens, int R, const TrunkWeights *w, const TrunkConfig *c);

#endif
