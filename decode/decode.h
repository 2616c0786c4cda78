/* decode.h - the inference engine: a model with key/value caches, run a few rows at a time.
 *
 * DecodeState is the engine's one context, as llama2.c's Transformer is: the model's configuration
 * and weights (DecodeModel), its matrices packed for products of a few rows, the key/value caches
 * and the working memory of a pass. Every function takes it and what varies per call.
 *
 * There is one key/value cache per block, the layers one after another, laid out as
 * mtp_attention_cached reads them (keys in tiles of positions, values per head): a pair per trunk
 * block and one per transformer head kept in step, heads 1..n_heads, the ones a lookahead of
 * n_heads needs (lookahead 1 keeps head 1 alone and never runs the others).
 * decode_forward runs R new tokens at positions len..len+R-1 through the trunk and those heads and
 * advances len; decode_truncate moves len back, which is all a rollback of rejected positions
 * takes: their cache rows are overwritten by the next forward. decode_forward_tree runs the nodes
 * of a draft tree instead, each over its ancestors only, and decode_keep_path closes the cache up
 * over the path verification kept.
 *
 * The engine sits below the model module (mtp/): it knows the trunk's and the heads' types, not
 * MtpModel, which hands it a DecodeModel (mtp_decode_model). */
#ifndef MTP_DECODE_H
#define MTP_DECODE_H

#include "heads/heads.h"

/* What the engine decodes with: a model's configuration and weights. The weights stay the
 * caller's (the model's parameter buffer): the engine packs its own copy of the matrices and reads
 * the norms and the token embedding in place, so they must outlive it and not change. */
typedef struct {
    TrunkConfig tc;
    HeadsConfig hc;
    const TrunkWeights *trunk;
    const HeadsWeights *heads;
} DecodeModel;

typedef struct {
    DecodeModel model;
    int max_rows;    /* R: rows per decode_forward */
    int pass_rows;   /* rows per pass of a prefill: max(R, the context up to DECODE_PREFILL_ROWS) */
    int n_heads;     /* heads run (and cached) at every position: 1..n */
    int len;         /* positions in the caches */

    /* the model as a pass reads it: every matrix packed once, all in one allocation in the order
     * of a pass; every block with its key/value cache */
    BlockDecode *blocks;   /* (L) the trunk's blocks */
    HeadsPacked heads;     /* the kept heads (transformer heads with their caches) and the output layer */
    char *packed_mem;

    /* working memory of the passes, llama2.c's RunState */
    BlockDecodeScratch scratch;
    float *k_cache, *v_cache; /* (L + transformer heads kept) layers' caches (trunk_k/v_cache_floats each) */
    float *z;        /* (pass_rows, D) trunk output of the last forward */
    float *u, *hn, *rstd; /* (R, D), (R, D), (R) head work */
    float *heads_h;  /* (n_heads, pass_rows, D) heads' outputs of the last forward */
    float *logits;   /* (n_heads, R, V) */
    int n_rows, n_logits; /* rows of the last forward; heads whose logits it computed for every row */
    float *drafts;        /* (n_heads, V) drafting heads' logits at drafted_row (row 0 unused) */
    float *drafts_work;   /* the drafts' working rows: h, hn, u (n_heads - 1, D) and rstd (n_heads - 1) */
    int drafted_row;      /* row of the last forward whose drafts are in drafts, or -1 */
    double t_lazy;        /* seconds decode_logits spent computing drafting heads' logits */
    char err[320];        /* what the last call that returned -1 (or NULL) found wrong */
    float *mem;
} DecodeState;

/* n_heads: heads to keep in step (1..model's n). Packs the weights (the model must not change
 * afterwards) in the core's precision. Returns -1 with a message when out of memory. */
int decode_build(DecodeState *s, DecodeModel m, int max_rows, int n_heads, char *err, size_t errlen);
void decode_free(DecodeState *s);

/* Runs tokens (R <= max_rows, len + R <= ctx) at positions len..len+R-1 and advances len. Every
 * kept head runs on every row (their caches stay complete); the logits of heads 1..n_logits
 * (n_logits <= n_heads) are computed for every row.
 *
 * Every entry point checks what it is given: a call outside its preconditions (here a row count,
 * the context or n_logits out of range; below an empty prompt, a malformed tree or path, a bad
 * request) changes nothing and returns -1 (or NULL) with the reason in s->err. */
int decode_forward(DecodeState *s, const int32_t *tokens, int R, int n_logits);
/* Prompt prefill: n tokens (len + n <= ctx) in one pass, or in passes of pass_rows for a prompt
 * longer than DECODE_PREFILL_ROWS (the attention's scratch grows with rows x context). Afterwards
 * the last token's row is row 0, with logits of heads 1..n_logits and drafts of the others; the
 * other rows are not kept. Returns that row, 0. */
#define DECODE_PREFILL_ROWS 512
int decode_prefill(DecodeState *s, const int32_t *tokens, int n, int n_logits);
/* Logits (V) of head (0-based) for row r of the last forward: computed by the forward for heads
 * below its n_logits; for the others, on the first call for that row, every drafting head's at
 * once, for that row alone (valid until the next forward or a call for another row). NULL for a
 * head not kept or a row the last forward did not run. */
const float *decode_logits(DecodeState *s, int head, int row);
/* Rolls the caches back to len positions (0 <= len <= s->len). */
int decode_truncate(DecodeState *s, int len);

/* ---- draft trees ------------------------------------------------------------------------------- */

/* A draft tree (Medusa's, Cai et al. 2024): node 0, the root, is head 1's next token; a node at
 * depth d >= 1 is one of head d+1's candidates (its rank-th most likely token) read off the same
 * row as the root, placed after its parent. A pass runs every node as one row: each row attends to
 * the cache and to its own ancestors only, at the position of its depth. The nodes come parents
 * first (parent[i] < i), so the first k nodes of a tree are a tree, and a chain of lookahead K is
 * the tree of K nodes one below the other, each of rank 0. */
#define DECODE_TREE_MAX 32 /* nodes */
#define DECODE_CAL_RANKS 8 /* a head's candidates a tree may hold (and a calibration measures) */

typedef struct {
    int n;                       /* nodes, the root included: 1..DECODE_TREE_MAX */
    int parent[DECODE_TREE_MAX]; /* node i's parent (< i); -1 for the root */
    int depth[DECODE_TREE_MAX];  /* 0 for the root, parent's + 1 */
    int rank[DECODE_TREE_MAX];   /* 0-based rank of the node's token among its head's candidates; 0 for the root */
} DecodeTree;

/* 0 when t is a tree as above whose depths are below max_depth (the heads a pass has) and whose
 * siblings have distinct ranks below DECODE_CAL_RANKS; otherwise -1 with what is wrong. */
int decode_tree_check(const DecodeTree *t, int max_depth, char *err, size_t errlen);
/* The depth of t's deepest node. */
int decode_tree_depth(const DecodeTree *t);
/* The chain of k nodes (1 <= k <= DECODE_TREE_MAX). */
void decode_tree_chain(DecodeTree *t, int k);
/* dst = the first nodes of src whose depth is below max_depth, at most max_nodes of them
 * (max_nodes >= 1): a tree again, for a pass near the end of the context or of the output. */
void decode_tree_prune(DecodeTree *dst, const DecodeTree *src, int max_nodes, int max_depth);

/* Runs the t->n nodes of a tree (tokens: one per node) as rows 0..t->n-1 of one pass at positions
 * len.. (len + t->n <= ctx, t->n <= max_rows), each row over the cache and its ancestors at
 * position len + its depth, and advances len by t->n; logits as decode_forward. Only the path
 * decode_keep_path keeps is valid afterwards. A chain tree computes what decode_forward does. */
int decode_forward_tree(DecodeState *s, const int32_t *tokens, const DecodeTree *t, int n_logits);
/* After a tree's pass from len0 = s->len - t->n: keeps nodes path[0..m) (path[0] = 0, each node
 * the child of the one before) and drops the others. Their keys and values move to positions
 * len0..len0+m-1 of every cache and len becomes len0 + m; the rows of the pass stay readable
 * (decode_logits) by node index until the next forward. */
int decode_keep_path(DecodeState *s, const int *path, int m);

/* ---- calibration: which trees pay, measured ---------------------------------------------------- */

/* What mtp calibrate measured on a model (stored in its checkpoint under "calibration"). Along
 * greedy text, at each position the drafting heads' candidates are ranked and the one that
 * verification would accept (the next tokens of the text) is found, if among the first
 * DECODE_CAL_RANKS: rate[d][j] is how often head d+2's (d = 0: head 2) j-th candidate is the
 * right one, given that heads 2..d+1 had the right one among theirs. trees[k] is the tree of k+1
 * nodes with the most tokens per pass on that text (grown greedily, as Medusa's: the next node is
 * the one whose path is right most often), expected[k] its tokens per pass there. */
typedef struct {
    int heads;      /* the model's heads (depth of the trees: at most heads) */
    long positions; /* positions measured */
    double rate[HEADS_MAX][DECODE_CAL_RANKS];
    int n_trees;    /* trees[0..n_trees) */
    DecodeTree trees[DECODE_TREE_MAX];
    double expected[DECODE_TREE_MAX];
} DecodeCalibration;

/* 0 when c is consistent (sizes, rates in [0, 1], every tree checks and has k+1 nodes, expected
 * within [1, heads]); otherwise -1 with what is wrong. For readers of stored calibrations. */
int decode_calibration_check(const DecodeCalibration *c, char *err, size_t errlen);

/* The ranks a calibration counts: at each position measured, the rank (0..DECODE_CAL_RANKS-1,
 * or DECODE_CAL_RANKS: not among the candidates) of the right token of heads 2..heads. */
typedef struct {
    int depth;      /* heads - 1 ranks per position */
    long n, cap;    /* positions */
    uint8_t *ranks; /* (n, depth) */
} DecodeCalTally;

/* Adds positions from..n-2 of seq (n <= ctx tokens; every token after position from is head 1's
 * greedy continuation: a prompt of from + 1 tokens and what decode_greedy made of it) to the
 * tally, running seq through s (fresh, built with every head) in passes of max_rows; leaves s
 * fresh. The right token of head i (1-based) at position t is seq[t + i] (past the end: none).
 * Returns -1 when out of memory. */
int decode_cal_tally(DecodeCalTally *tally, DecodeState *s, const int32_t *seq, int n, int from);
void decode_cal_tally_free(DecodeCalTally *tally);
/* The calibration of a tally: rates, and trees of 1..max_nodes nodes. Returns -1 (c empty) unless
 * 1 <= heads <= HEADS_MAX, 1 <= max_nodes <= DECODE_TREE_MAX and the tally counts heads - 1 ranks. */
int decode_calibration_build(DecodeCalibration *c, const DecodeCalTally *tally, int heads, int max_nodes);

/* ---- greedy generation ------------------------------------------------------------------------ */

typedef struct {
    long tokens;                /* tokens generated */
    long forwards;              /* forward passes after the prefill */
    long rows;                  /* rows those passes ran (tree nodes, or drafts plus one) */
    long proposed[HEADS_MAX];   /* drafts of head i (0-based; head 0 is never a draft) verified */
    long accepted[HEADS_MAX];   /* ... and accepted */
    int hit_context;            /* stopped because the context was full */
    /* seconds: the prompt's pass; the forward passes (drafting heads run lazily included); choosing
     * tokens (argmax, or sampling and the acceptance draws); the rest (bookkeeping, emitting) */
    double t_prefill, t_forward, t_sample, t_other;
} DecodeStats;

/* ---- measuring a pass (mtp bench --passes) ---------------------------------------------------- */

/* A pass of R rows over a cache of len positions: decode_forward of the rows (head 1's logits), and
 * with drafts the drafting heads of its last row (decode_logits of head 2 there). What it must do
 * at least: read the packed matrices it uses, each once, and the cache rows attention reads
 * (len + R positions of every cached layer, read once for all rows); and its FLOPs (every product,
 * and attention's two products per cached layer). */
typedef struct {
    double weight_bytes, cache_bytes, flops;
} DecodePassCost;

DecodePassCost decode_pass_cost(const DecodeState *s, int len, int R, int drafts);
/* Reads the bytes decode_pass_cost counts, once, where the pass reads them (timed, the read
 * bandwidth over the pass's own buffers). */
void decode_read_pass(const DecodeState *s, int len, int R, int drafts);

/* Called with each run of accepted tokens, in order (for streaming). */
typedef void (*DecodeEmit)(void *ctx, const int32_t *tokens, int n);

typedef struct {
    float temperature; /* > 0 */
    int top_k;         /* keep the k most likely tokens (0: all) */
    float top_p;       /* keep the smallest set whose probability reaches top_p (1: all) */
} DecodeSampling;

/* What one generation asks for. */
typedef struct {
    const int32_t *prompt; /* n_prompt tokens, 1 <= n_prompt <= ctx */
    int n_prompt;
    int max_new;           /* generate at most this many tokens (the capacity of the output) */
    int lookahead;         /* K: tokens proposed per forward pass; 1 = head 1 alone */
    int32_t eos;           /* stop after this token (-1: none) */
    const DecodeTree *tree; /* verify a tree of drafts per pass instead of a chain (NULL: chain);
                               its depth below lookahead */
    float draft_min_p;      /* chains: end a draft before the first head whose most likely token
                               has a probability below this (0: always the whole lookahead) */
    DecodeEmit emit;       /* optional: called with each run of accepted tokens, for streaming */
    void *emit_ctx;
    DecodeSampling sampling; /* decode_sample only */
    MtpRng *rng;             /* decode_sample only: its draws */
} DecodeRequest;

/* Greedy decoding of req: up to max_new tokens after the prompt, stopping after an end token
 * (eos >= 0) or when the context is full. lookahead 1 is plain next-token decoding with head 1
 * alone; lookahead K > 1 is blockwise parallel decoding (Stern et al. 2018): heads 1..K propose K
 * tokens, one forward pass over them verifies them with head 1, the longest agreeing prefix is
 * kept, and the same pass gives the next proposal, so each pass yields 1..K tokens and the output
 * is head 1's greedy output. s must be fresh (len 0), built with max_rows >= K and n_heads >= K
 * (and max_rows >= the tree's nodes, its depth below K). Returns the number of tokens written to
 * out (capacity max_new), or -1 with s->err for a request it cannot run (an empty or too long
 * prompt, a lookahead or tree the engine was not built for, a malformed tree). */
int decode_greedy(DecodeState *s, const DecodeRequest *req, int32_t *out, DecodeStats *st);

/* ---- sampling ---------------------------------------------------------------------------------- */

/* p (V) = the distribution a head's logits give under cfg: softmax(logits / T), cut to the top_k
 * most likely tokens and to the smallest set reaching top_p, renormalized. order (V) is scratch. */
void decode_sampling_probs(float *p, const float *logits, int V, const DecodeSampling *cfg, int *order);

/* Sampling, the counterpart of decode_greedy, under req->sampling with req->rng's draws.
 * lookahead 1 samples from head 1; lookahead K > 1 is speculative sampling with the exact rule:
 * the draft x of head j is kept with probability min(1, p(x) / q(x)), q being head j's
 * distribution (under the same sampling settings) where it drafted and p head 1's at that
 * position; on rejection the token is drawn from norm(max(0, p - q)) and the block ends. The
 * output is distributed exactly as head-1 sampling. Returns -1 with s->err when out of memory or for
 * a request decode_greedy would refuse, or without a temperature above 0 and an rng. */
int decode_sample(DecodeState *s, const DecodeRequest *req, int32_t *out, DecodeStats *st);

#endif
