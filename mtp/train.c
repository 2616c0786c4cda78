/* train.c - AdamW with gradient clipping, the learning-rate schedule, one training step, evaluation.
 *
 * Reduction of the loss: for each head, the mean cross-entropy over the positions that have a
 * target (head i has T-i+1 per row); the training objective is the sum of the heads' means. With
 * gradient accumulation each micro-batch contributes 1/accum of its gradient. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mtp/dist.h"
#include "mtp/mtp.h"

void mtp_train_options_default(MtpTrainOptions *o) {
    o->steps = 1000;
    o->batch = 16;
    o->accum = 1;
    o->warmup = 100;
    o->lr = 1e-3f;
    o->min_lr = 1e-4f;
    o->beta1 = 0.9f;
    o->beta2 = 0.95f;
    o->eps = 1e-8f;
    o->weight_decay = 0.1f;
    o->grad_clip = 1.0f;
    o->seed = 1337;
}

/* Learning rate for the step about to run (0-based): linear warmup to lr over `warmup` steps,
 * then cosine decay to min_lr at the last step. */
float mtp_lr_at(const MtpTrainOptions *o, int step) {
    if (step < o->warmup) return o->lr * (float)(step + 1) / (float)o->warmup;
    int decay_steps = o->steps - o->warmup;
    if (decay_steps <= 1) return o->lr;
    double progress = (double)(step - o->warmup) / (double)(decay_steps - 1);
    if (progress > 1.0) progress = 1.0;
    return (float)(o->min_lr + 0.5 * (o->lr - o->min_lr) * (1.0 + cos(M_PI * progress)));
}

int mtp_trainer_build(MtpTrainer *t, MtpModel *m, const MtpTrainOptions *o, char *err, size_t errlen) {
    memset(t, 0, sizeof *t);
    t->model = m;
    t->opt = *o;
    const int T = m->cfg.trunk.ctx;
    t->grads = mtp_calloc(m->n_params, sizeof(float));
    t->m = mtp_calloc(m->n_params, sizeof(float));
    t->v = mtp_calloc(m->n_params, sizeof(float));
    t->batch = mtp_calloc((size_t)o->batch * (T + 1), sizeof(int32_t));
    if (!t->grads || !t->m || !t->v || !t->batch || mtp_workspace_build(&t->ws, m, o->batch, T)) {
        snprintf(err, errlen, "out of memory for training state (batch %d, ctx %d)", o->batch, T);
        mtp_trainer_free(t);
        return -1;
    }
    mtp_rng_seed(&t->data_rng, o->seed ^ 0xD1B54A32D192ED03ull);
    t->rank = dist_rank(), t->ranks = dist_ranks();
    return 0;
}

void mtp_trainer_free(MtpTrainer *t) {
    mtp_free(t->grads);
    mtp_free(t->m);
    mtp_free(t->v);
    mtp_free(t->batch);
    mtp_workspace_free(&t->ws);
    memset(t, 0, sizeof *t);
}

static void adamw_update(MtpTrainer *t, float lr, float grad_scale) {
    const MtpModel *mdl = t->model;
    const MtpTrainOptions *o = &t->opt;
    int step = t->step + 1; // 1-based for the bias correction
    float bc1 = 1.0f - powf(o->beta1, (float)step), bc2 = 1.0f - powf(o->beta2, (float)step);
    for (int k = 0; k < mdl->n_tensors; k++) {
        const MtpTensor *tn = &mdl->tensors[k];
        float *p = mdl->params + tn->offset, *g = t->grads + tn->offset;
        float *m = t->m + tn->offset, *v = t->v + tn->offset;
        float decay = tn->decay ? o->weight_decay : 0.0f;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < tn->size; i++) {
            float gi = g[i] * grad_scale;
            m[i] = o->beta1 * m[i] + (1.0f - o->beta1) * gi;
            v[i] = o->beta2 * v[i] + (1.0f - o->beta2) * gi * gi;
            float mhat = m[i] / bc1, vhat = v[i] / bc2;
            p[i] -= lr * (mhat / (sqrtf(vhat) + o->eps) + decay * p[i]);
        }
    }
}

/* A range of the gradients is final: start its sum across ranks, and let MPI move the earlier ones on. */
static void start_sum(void *ctx, float *g, size_t n) {
    (void)ctx;
    dist_sum_start(g, n);
    dist_progress();
}

/* This rank's micro-batches of a step, their gradients (scaled for the step's accum * ranks) added
 * into t->grads and their statistics into acc. Every micro-batch of the step is drawn, on every
 * rank: drawing is a copy, and it keeps the data position the same on all ranks. */
static void local_batches(MtpTrainer *t, const DsCorpus *data, HeadStats *acc) {
    const int B = t->opt.batch, T = t->model->cfg.trunk.ctx, n = t->model->cfg.heads.n;
    const int A = t->opt.accum, total = A * t->ranks;
    for (int k = 0; k < total; k++) {
        ds_corpus_sample(t->batch, data, B, T + 1, &t->data_rng);
        t->batches_drawn++;
        if (k / A != t->rank) continue;
        HeadStats hs[HEADS_MAX];
        const int last = k == t->rank * A + A - 1;
        t->ws.grads_ready = t->ranks > 1 && t->overlap && last ? start_sum : NULL;
        mtp_forward_backward(&t->ws, t->grads, t->batch, 1.0f / total, hs);
        t->ws.grads_ready = NULL;
        for (int i = 0; i < n; i++) {
            acc[i].loss += hs[i].loss;
            acc[i].count += hs[i].count;
            acc[i].correct += hs[i].correct;
        }
    }
}

/* The sums over ranks of the gradients and of the statistics (nothing to do alone). */
static double sum_across_ranks(MtpTrainer *t, HeadStats *acc) {
    if (t->ranks == 1) return 0.0;
    const int n = t->model->cfg.heads.n;
    double v[3 * HEADS_MAX]; /* counts are exact in a double up to 2^53 */
    for (int i = 0; i < n; i++) v[3 * i] = acc[i].loss, v[3 * i + 1] = acc[i].count, v[3 * i + 2] = acc[i].correct;
    double waited;
    if (t->overlap) {
        waited = dist_sum_wait(); /* started during the backward */
    } else {
        double t0 = mtp_now();
        dist_sum_floats(t->grads, t->model->n_params);
        waited = mtp_now() - t0;
    }
    dist_sum_doubles(v, 3 * n);
    for (int i = 0; i < n; i++) acc[i] = (HeadStats){v[3 * i], (long)v[3 * i + 1], (long)v[3 * i + 2]};
    return waited;
}

int mtp_train_step(MtpTrainer *t, const DsCorpus *data, MtpStepStats *st) {
    const MtpModel *m = t->model;
    const int B = t->opt.batch, T = m->cfg.trunk.ctx, n = m->cfg.heads.n;
    memset(st, 0, sizeof *st);
    memset(t->grads, 0, m->n_params * sizeof(float));
    HeadStats acc[HEADS_MAX] = {{0}};
    local_batches(t, data, acc);
    st->allreduce_s = sum_across_ranks(t, acc);
    st->tokens = (long)t->opt.accum * t->ranks * B * T;
    for (int i = 0; i < n; i++) {
        st->loss[i] = acc[i].count ? acc[i].loss / acc[i].count : 0.0;
        st->accuracy[i] = acc[i].count ? (double)acc[i].correct / acc[i].count : 0.0;
        st->total_loss += st->loss[i];
    }
    st->grad_norm = sqrt(mtp_sumsq(t->grads, m->n_params));
    st->lr = mtp_lr_at(&t->opt, t->step);
    if (!isfinite(st->grad_norm) || !isfinite(st->total_loss)) return -1;
    float clip = 1.0f;
    if (t->opt.grad_clip > 0 && st->grad_norm > t->opt.grad_clip) clip = (float)(t->opt.grad_clip / st->grad_norm);
    adamw_update(t, st->lr, clip);
    t->step++;
    return 0;
}

long mtp_evaluate(MtpWorkspace *ws, const int32_t *tok, size_t n, int max_batches, double *loss, double *accuracy) {
    const int B = ws->B, T = ws->T, nh = ws->model->cfg.heads.n;
    int32_t *batch = mtp_calloc((size_t)B * (T + 1), sizeof(int32_t));
    HeadStats total[HEADS_MAX] = {{0}};
    if (!batch) return -1;
    for (size_t b = 0; max_batches <= 0 || b < (size_t)max_batches; b++) {
        if (ds_eval_batch(batch, tok, n, B, T + 1, b) == 0) break;
        HeadStats hs[HEADS_MAX];
        mtp_forward_eval(ws, batch, DS_PAD, hs);
        for (int i = 0; i < nh; i++) {
            total[i].loss += hs[i].loss;
            total[i].count += hs[i].count;
            total[i].correct += hs[i].correct;
        }
    }
    for (int i = 0; i < nh; i++) {
        loss[i] = total[i].count ? total[i].loss / total[i].count : 0.0;
        accuracy[i] = total[i].count ? (double)total[i].correct / total[i].count : 0.0;
    }
    mtp_free(batch);
    return total[0].count;
}
