/* heads.h - the n output heads of a multi-token prediction model.
 *
 * Every head reads the same trunk output z; head i (1-based) predicts token t+i. Two types:
 *   transformer: one more decoder block per head (Gloeckle et al. 2024);
 *   linear:      h = z + silu(z W^T) with one (D, D) matrix per head (Medusa's residual block).
 * All heads share one final RMSNorm and one unembedding matrix (V, D).
 *
 * Training runs the heads one at a time (heads_train): forward, loss and backward of head i down
 * to z, accumulated into dL/dz, before head i+1 starts. The activations of a head (its block, its
 * logits) therefore exist once, whatever n is: peak memory grows with n only by the heads' weights. */
#ifndef MTP_HEADS_H
#define MTP_HEADS_H

#include "trunk/trunk.h"

typedef enum { HEAD_TRANSFORMER = 0, HEAD_LINEAR = 1 } HeadType;

#define HEADS_MAX 64

typedef struct {
    int n;         /* number of heads, 1..HEADS_MAX */
    HeadType type;
} HeadsConfig;

const char *heads_type_name(HeadType t);
/* "transformer" / "linear" -> type; returns -1 for anything else */
int heads_type_parse(const char *s, HeadType *t);
int heads_config_check(const HeadsConfig *h, char *err, size_t errlen);

typedef struct {
    BlockWeights blocks[HEADS_MAX]; /* transformer heads */
    float *lin[HEADS_MAX];          /* linear heads: (D, D) each */
    float *final_norm;              /* (D) */
    float *unembed;                 /* (V, D) */
} HeadsWeights;

size_t heads_param_count(const TrunkConfig *tc, const HeadsConfig *hc);
size_t heads_weights_point(HeadsWeights *w, float *buf, const TrunkConfig *tc, const HeadsConfig *hc);

/* Activations of one head at a time, reused by every head. */
typedef struct {
    int B, T;
    BlockActs block;    /* transformer heads */
    float *u;           /* (M, D) linear heads: z W^T */
    float *h;           /* (M, D) head output */
    float *hn, *hn_rstd;/* (M, D), (M) after the final norm */
    float *logits;      /* (M, V), becomes dlogits in the backward pass */
    float *dh;          /* (M, D) */
    float *dhn;         /* (M, D) */
    int32_t *targets;   /* (M) */
    float *mem;
} HeadsActs;

int heads_acts_build(HeadsActs *a, const TrunkConfig *tc, const HeadsConfig *hc, int B, int T, int bf16);
void heads_acts_free(HeadsActs *a);

typedef struct {
    double loss;  /* summed cross-entropy over counted positions */
    long count;   /* positions with a target */
    long correct; /* positions whose argmax equals the target */
} HeadStats;

/* Targets of head i (1-based) for a batch of B rows of T+1 tokens: targets (B*T) = tokens[b][t+i],
 * or -1 where t+i > T (past the row: left out of the loss). */
void heads_targets(int32_t *targets, const int32_t *tokens, int B, int T, int i);

/* Forward, loss and backward of every head in turn. z (M, D) is the trunk output, tokens (B, T+1).
 * dz (M, D) is overwritten with dL/dz; parameter gradients are added into dw. The loss of head i
 * is its mean cross-entropy over its counted positions times grad_scale; stats[i] gets the sums. */
void heads_train(float *dz, HeadStats *stats, const float *z, const int32_t *tokens, const HeadsWeights *w,
                 const HeadsWeights *dw, const TrunkConfig *tc, const HeadsConfig *hc, HeadsActs *a,
                 BlockScratch *s, float grad_scale);

/* Forward and loss only, for evaluation: stats[i] for each head. Positions whose target is
 * ignore_target (padding) are left out. */
void heads_eval(HeadStats *stats, const float *z, const int32_t *tokens, int32_t ignore_target, const HeadsWeights *w,
                const TrunkConfig *tc, const HeadsConfig *hc, HeadsActs *a, BlockScratch *s);

/* Forward of head i (0-based) only, leaving its logits (M, V) in a->logits. */
void heads_forward_one(HeadsActs *a, int i, const float *z, const HeadsWeights *w, const TrunkConfig *tc,
                       const HeadsConfig *hc, BlockScratch *s);

/* ---- inference ------------------------------------------------------------------------------ */

/* The heads' matrices packed for products of a few rows: heads 0..n-1 of the model. */
typedef struct {
    int n;
    BlockPacked blocks[HEADS_MAX];  /* transformer heads */
    MtpPackedWeight *lin[HEADS_MAX]; /* linear heads */
    MtpPackedWeight *lin_drafts;     /* linear heads 1..n-1 stacked, ((n-1) D, D): one product drafts all */
    MtpPackedWeight *unembed;
} HeadsPacked;

/* Packs heads 0..n-1, then the unembedding, at *cursor (advanced by heads_packed_bytes), or into
 * allocations of their own when cursor is NULL. */
size_t heads_packed_bytes(int n, const TrunkConfig *tc, const HeadsConfig *hc, MtpPrecision precision);
int heads_pack(HeadsPacked *p, int n, const HeadsWeights *w, const TrunkConfig *tc, const HeadsConfig *hc,
               MtpPrecision precision, char **cursor);
void heads_packed_free(HeadsPacked *p);

/* Head i (0-based) on R rows of trunk output z (R, D) at positions pos0..: its output into h (R, D).
 * A transformer head writes the rows' keys and values into its caches k_cache, v_cache (one layer each);
 * linear heads have no cache (pass NULL). */
void heads_decode_one(float *h, const float *z, int i, int pos0, int R, float *k_cache, float *v_cache,
                      const HeadsWeights *w, const HeadsPacked *p, const HeadsConfig *hc, BlockDecodeScratch *s);
/* The drafts of one row: logits (n-1, V) of heads 1..n-1 (0-based), as one batch of a few products
 * rather than two small ones per head. z (D) is the row's trunk output (linear heads run here), or
 * hs[i] (D) head i's output at the row, kept from the forward (transformer heads; hs[0] unused).
 * work: heads_drafts_work_floats(). */
size_t heads_drafts_work_floats(int n, const TrunkConfig *tc);
void heads_decode_drafts(float *logits, float *work, const float *z, const float *const *hs, int n,
                         const HeadsWeights *w, const HeadsPacked *p, const TrunkConfig *tc, const HeadsConfig *hc);
/* logits (R, V) of head outputs h (R, D) through the shared final norm and unembedding;
 * hn (R, D) and rstd (R) are scratch. */
void heads_decode_logits(float *logits, float *hn, float *rstd, const float *h, int R, const HeadsWeights *w,
                         const HeadsPacked *p, const TrunkConfig *tc);

#endif
