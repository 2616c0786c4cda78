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

/* ---- the heads' math, one implementation for training and decoding ---------------------------- */

/* Linear heads on M rows of trunk output z (M, D), n of them at once with their matrices stacked
 * in W (n D, D): u (M, n D) = z W^T, and head i's output h (n, M, D): h[i][r] = z[r] + silu(u[r][i]).
 * Training runs one head (n = 1, u kept for the backward pass); decoding drafts with all the
 * drafting heads of one row in one product. */
void heads_linear_forward(float *h, float *u, const float *z, int M, int n, MtpLinear W);

/* The shared output layer: final RMSNorm, then the unembedding. */
typedef struct {
    const float *norm; /* (D) */
    MtpLinear unembed; /* (V, D) */
} HeadsOutput;

/* logits (M, V) of head outputs h (M, D); hn (M, D) and rstd (M) get the normed rows (kept by
 * training for the backward pass). */
void heads_logits(float *logits, float *hn, float *rstd, const float *h, int M, const HeadsOutput *o);

/* ---- training ------------------------------------------------------------------------------- */

/* A training or evaluation pass of the heads on a batch: what its calls share. The weights and
 * their gradients are views into the model's buffers. */
typedef struct {
    const TrunkConfig *tc;
    const HeadsConfig *hc;
    const HeadsWeights *w;  /* parameters */
    const HeadsWeights *dw; /* gradients, added into by heads_train; NULL for evaluation */
    HeadsActs *acts;        /* one head's activations, reused by every head */
    BlockScratch *scratch;  /* shared with the trunk */
    float *dz;              /* (M, D) heads_train writes dL/dz here, summed over the heads */
    /* optional: called by heads_train after head i's backward (its own weights' gradients are
       final; the shared final norm and unembedding only after the last head's) */
    void (*head_done)(void *ctx, int i);
    void *done_ctx;
} HeadsPass;

/* Forward, loss and backward of every head in turn on z (M, D), the trunk output of a batch of
 * tokens (B, T+1): p->dz gets dL/dz; parameter gradients are added into p->dw. The loss of head i
 * is its mean cross-entropy over its counted positions times grad_scale; stats[i] gets the sums. */
void heads_train(const HeadsPass *p, HeadStats *stats, const float *z, const int32_t *tokens, float grad_scale);

/* Forward and loss only, for evaluation: stats[i] for each head. Positions whose target is
 * ignore_target (padding) are left out. */
void heads_eval(const HeadsPass *p, HeadStats *stats, const float *z, const int32_t *tokens, int32_t ignore_target);

/* Forward of head i (0-based) only, leaving its logits (M, V) in p->acts->logits. */
void heads_forward_one(const HeadsPass *p, int i, const float *z);

/* ---- inference ------------------------------------------------------------------------------ */

/* The heads as decoding reads them: heads 0..n-1 of the model with their matrices packed for
 * products of a few rows, and the output layer. */
typedef struct {
    int n;
    BlockDecode blocks[HEADS_MAX];   /* transformer heads (their caches set by the engine) */
    MtpPackedWeight *lin[HEADS_MAX]; /* linear heads */
    MtpPackedWeight *lin_drafts;     /* linear heads 1..n-1 stacked, ((n-1) D, D): one product drafts all */
    MtpPackedWeight *unembed;
    HeadsOutput out;                 /* the model's final norm and the packed unembedding */
} HeadsPacked;

/* Packs heads 0..n-1, then the unembedding, at *cursor (advanced by heads_packed_bytes), or into
 * allocations of their own when cursor is NULL. */
size_t heads_packed_bytes(int n, const TrunkConfig *tc, const HeadsConfig *hc, MtpPrecision precision);
int heads_pack(HeadsPacked *p, int n, const HeadsWeights *w, const TrunkConfig *tc, const HeadsConfig *hc,
               MtpPrecision precision, char **cursor);
void heads_packed_free(HeadsPacked *p);

#endif
