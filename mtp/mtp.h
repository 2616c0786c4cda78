/* mtp.h - the whole model (trunk + heads), its training, and its checkpoint file.
 *
 * Layers sit below (mtp/core, trunk/, heads/, datasets/); the command line (main.c) sits on top
 * and talks to this header only. */
#ifndef MTP_MTP_H
#define MTP_MTP_H

#include <stdint.h>

#include "datasets/ds.h"
#include "decode/decode.h"
#include "heads/heads.h"
#include "trunk/trunk.h"

#define MTP_FORMAT_NAME "mtp-checkpoint"
#define MTP_FORMAT_VERSION 1
#define MTP_CALIBRATION_VERSION 1 /* of a checkpoint's "calibration" map */

typedef struct {
    TrunkConfig trunk;
    HeadsConfig heads;
} MtpConfig;

int mtp_config_check(const MtpConfig *c, char *err, size_t errlen);

/* One named parameter tensor: a view of the parameter buffer. */
typedef struct {
    char name[48];
    int ndim;
    int shape[2];
    size_t offset; /* in floats, into params (and into grads / optimizer moments alike) */
    size_t size;   /* in floats */
    int decay;     /* AdamW weight decay applies: matrices yes; norms and the token embedding no */
} MtpTensor;

typedef struct {
    MtpConfig cfg;
    size_t n_params;
    float *params;                /* every parameter, one allocation */
    TrunkWeights trunk;           /* views into params */
    BlockWeights *trunk_blocks;
    HeadsWeights heads;
    MtpTensor *tensors;
    int n_tensors;
    DsBpe *tokenizer;             /* its text encoding, owned: NULL for bytes, else byte-level BPE */
} MtpModel;

/* Parameter counts by part, for `mtp info`. */
typedef struct {
    size_t embedding, trunk, heads, final_norm, unembedding, total;
} MtpParamCounts;

MtpParamCounts mtp_param_counts(const MtpConfig *c);
/* Allocates zeroed parameters and the tensor table; -1 with a message on bad config or no memory. */
int mtp_model_build(MtpModel *m, const MtpConfig *cfg, char *err, size_t errlen);
void mtp_model_free(MtpModel *m);
/* Normal(0, 0.02) matrices, output projections scaled by 1/sqrt(2 * blocks), norms = 1. */
void mtp_model_init(MtpModel *m, uint64_t seed);
/* The model as the inference engine (decode/) takes it: its configuration and weight views. */
DecodeModel mtp_decode_model(const MtpModel *m);
/* Points trunk/heads weight views into any buffer laid out like params (the gradients). */
void mtp_model_views(const MtpModel *m, float *buf, TrunkWeights *tw, BlockWeights *blocks, HeadsWeights *hw);
const MtpTensor *mtp_model_tensor(const MtpModel *m, const char *name);

/* ---- forward / backward on batches ---------------------------------------------------------- */

/* A model's forward and backward passes on batches of B rows of T tokens: the model, and the
 * activations and working memory of its passes (llm.c's GPT2 struct, less the parameters and
 * gradients, which the model and the trainer own). */
typedef struct {
    const MtpModel *model;
    int B, T;
    TrunkActs trunk;
    HeadsActs heads;
    BlockScratch scratch;
    float *dz;       /* (M, D) */
    int32_t *inputs; /* (B, T) */
    /* optional: mtp_forward_backward calls it for each range of the gradient buffer whose
       gradients are final, in the backward's order (heads, the trunk's blocks last to first, the
       token embedding); the trainer starts their sum across ranks there */
    void (*grads_ready)(void *ctx, float *g, size_t n);
    void *ready_ctx;
} MtpWorkspace;

/* Sized for the current core precision: build it after mtp_core_init / mtp_core_set_precision. */
int mtp_workspace_build(MtpWorkspace *w, const MtpModel *m, int B, int T);
void mtp_workspace_free(MtpWorkspace *w);

/* tokens (B, T+1). Gradients are added into grads (laid out like params); stats (n heads). */
void mtp_forward_backward(MtpWorkspace *ws, float *grads, const int32_t *tokens, float grad_scale, HeadStats *stats);
/* Loss and accuracy only; positions whose target is ignore_target (padding) are left out. */
void mtp_forward_eval(MtpWorkspace *ws, const int32_t *tokens, int32_t ignore_target, HeadStats *stats);
/* The logits (B*T, V) of head i (0-based) alone on tokens (B, T+1), in ws->heads.logits (tests
 * compare them with the inference engine's). */
void mtp_forward_head(MtpWorkspace *ws, const int32_t *tokens, int i);

/* ---- training ------------------------------------------------------------------------------- */

typedef struct {
    int steps;          /* total optimizer steps */
    int batch;          /* rows per micro-batch */
    int accum;          /* micro-batches per optimizer step */
    int warmup;         /* linear warmup steps */
    float lr, min_lr;   /* peak and final learning rate (cosine decay) */
    float beta1, beta2, eps, weight_decay, grad_clip;
    uint64_t seed;      /* weight init and batch sampling */
} MtpTrainOptions;

void mtp_train_options_default(MtpTrainOptions *o);
float mtp_lr_at(const MtpTrainOptions *o, int step);

typedef struct {
    MtpModel *model;
    MtpTrainOptions opt;
    float *grads, *m, *v; /* laid out like params */
    MtpWorkspace ws;
    int32_t *batch;       /* (B, T+1) */
    int step;             /* optimizer steps completed */
    MtpRng data_rng;      /* batch sampling: its state is the data position */
    uint64_t batches_drawn;
    int rank, ranks;      /* data parallel (mtp/dist.h): this process's share of each step; 0 of 1 alone */
    int overlap;          /* with ranks: sum each bucket of gradients (a block's) as soon as the last
                             micro-batch's backward has made it final, overlapping the rest of the
                             backward; 0: one blocking sum after it */
} MtpTrainer;

typedef struct {
    double loss[HEADS_MAX];     /* mean cross-entropy per head over the step */
    double accuracy[HEADS_MAX];
    double total_loss;          /* sum over heads of their mean */
    double grad_norm;           /* before clipping */
    float lr;
    long tokens;                /* input tokens processed (by every rank) */
    double allreduce_s;         /* waiting for the sum of the gradients across ranks (0 alone) */
} MtpStepStats;

int mtp_trainer_build(MtpTrainer *t, MtpModel *m, const MtpTrainOptions *o, char *err, size_t errlen);
void mtp_trainer_free(MtpTrainer *t);
/* One optimizer step (accum micro-batches) on batches sampled from the training split. With R
 * ranks (mpirun), rank r computes micro-batches r*accum .. r*accum+accum-1 of the accum*R that a
 * single process with --accum accum*R would, every rank draws all of them (the data position is
 * that run's), and the gradients and statistics are summed across ranks: every rank then applies
 * the same update. Returns -1, leaving the weights and optimizer state untouched, when the loss or the gradient is
 * not finite (the run has diverged). */
int mtp_train_step(MtpTrainer *t, const DsCorpus *data, MtpStepStats *st);

/* Mean loss and accuracy per head over up to max_batches sequential validation batches
 * (0 = the whole split). Returns the number of target tokens of head 1 evaluated. */
long mtp_evaluate(MtpWorkspace *ws, const int32_t *tok, size_t n, int max_batches, double *loss, double *accuracy);

/* ---- checkpoint ----------------------------------------------------------------------------- */

/* What a checkpoint records about the training run besides the weights. */
typedef struct {
    char data_spec[DS_MAX_SPEC];  /* the first source's spec (what version-1 files without "sources" have) */
    int n_sources;                /* 0: data_spec alone, weight 1 */
    DsSource sources[DS_MAX_SOURCES];
    double val_frac;
    uint64_t data_seed;
    int difficulty;
    char jsonl_question[64], jsonl_answer[64], jsonl_text[64]; /* "" = the default field */
    int skip_bad_lines;
    MtpPrecision precision;
    int ranks;                    /* the data-parallel ranks (mpirun -np) that trained it; 0 or 1: one
                                     process. Written only when > 1, so one process's files are as before */
} MtpRunInfo;

/* The corpus options of a run (its sources, split, seed, JSONL fields): fills o, whose JSONL field
   names then point into run. Returns the number of sources (0 when the run records none). */
int mtp_run_data_options(const MtpRunInfo *run, DsOptions *o);
/* Sets the run's sources (and data_spec) from a list. */
void mtp_run_set_sources(MtpRunInfo *run, const DsSource *src, int n);

/* ---- tokenizers ------------------------------------------------------------------------------- */

/* Text <-> ids with a model's tokenizer (t NULL: bytes). encode writes at most n ids for n bytes;
   decode is like ds_bpe_decode (returns the full length, writes at most cap). */
size_t mtp_encode(const DsBpe *t, int32_t *out, const uint8_t *bytes, size_t n);
size_t mtp_decode(const DsBpe *t, uint8_t *out, size_t cap, const int32_t *ids, size_t n);
int mtp_tokenizer_vocab(const DsBpe *t);   /* DS_BYTE_VOCAB for bytes */

/* A tokenizer file: {"format": "mtp-tokenizer", "version": 1, "tokenizer": {...}} with the tokenizer
   map a checkpoint has. Written atomically. */
int mtp_tokenizer_save(const char *path, const DsBpe *t, char *err, size_t errlen);
/* Reads the tokenizer of a tokenizer file or of a checkpoint (without loading its weights).
   *t = NULL for the byte tokenizer. */
int mtp_tokenizer_load(const char *path, DsBpe **t, char *err, size_t errlen);

/* Writes the model (and, when t != NULL, the optimizer state, step and data position)
 * atomically: a temp file beside path, fsync, rename. */
int mtp_checkpoint_save(const char *path, const MtpModel *m, const MtpTrainer *t, const MtpRunInfo *run,
                        char *err, size_t errlen);
/* The same with a decoding calibration (what mtp calibrate measured on these weights) under the
 * key "calibration"; cal NULL writes none (mtp_checkpoint_save). A calibration that fails
 * decode_calibration_check, or is for another number of heads than the model's, is refused
 * (-1 with a message, nothing written). */
int mtp_checkpoint_save_calibrated(const char *path, const MtpModel *m, const MtpTrainer *t, const MtpRunInfo *run,
                                   const DecodeCalibration *cal, char *err, size_t errlen);

/* A loaded checkpoint: the model, and the training state when the file has one. */
typedef struct {
    int has_train;
    MtpTrainOptions opt;
    int step;
    MtpRng data_rng;
    uint64_t batches_drawn;
    float *m, *v;        /* optimizer moments (n_params each), owned; NULL without train state */
    MtpRunInfo run;
    int has_calibration; /* the file has a calibration (checked: decode_calibration_check passes, the
                            model's heads), in cal */
    DecodeCalibration cal;
    size_t file_size;
} MtpCheckpointExtra;

/* Validates everything (format, version, config, every tensor's name, dtype, shape and checksum,
 * the calibration) and builds the model. -1 with a one-line message (with the byte offset) on any problem. */
int mtp_checkpoint_load(const char *path, MtpModel *m, MtpCheckpointExtra *extra, char *err, size_t errlen);
/* Frees the optimizer moments (has_train becomes 0); run and the calibration stay. */
void mtp_checkpoint_extra_free(MtpCheckpointExtra *x);
/* Rewrites the checkpoint at path into out (which may be path: atomically, as every save) with
 * cal (NULL: none) as its calibration, the weights, the run and any train state as they were. */
int mtp_checkpoint_set_calibration(const char *path, const char *out, const DecodeCalibration *cal, char *err,
                                   size_t errlen);
/* Puts a loaded train state (x->has_train) into a trainer built for the same model: optimizer
 * moments, step, data position. The run then continues exactly where it was saved. */
void mtp_trainer_restore(MtpTrainer *t, const MtpCheckpointExtra *x);

#endif
