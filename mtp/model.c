/* model.c - trunk + heads as one model: parameters, their names, and a forward/backward pass. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mtp/mtp.h"

int mtp_config_check(const MtpConfig *c, char *err, size_t errlen) {
    if (trunk_config_check(&c->trunk, err, errlen) || heads_config_check(&c->heads, err, errlen)) return -1;
    /* a tensor's data is one msgpack bin in the checkpoint, whose length is 32 bits: msgpack-c would
       write a larger one with its length cut, and the file would not load */
    const TrunkConfig *t = &c->trunk;
    const size_t widest = (size_t)t->dim * (t->vocab > t->ffn ? (t->vocab > t->dim ? t->vocab : t->dim)
                                                              : (t->ffn > t->dim ? t->ffn : t->dim));
    if (widest * sizeof(float) > UINT32_MAX) {
        snprintf(err, errlen, "a tensor of %zu floats (dim %d by vocab %d or ffn %d) is over the checkpoint's limit "
                 "of 4 GiB per tensor", widest, t->dim, t->vocab, t->ffn);
        return -1;
    }
    return 0;
}

MtpParamCounts mtp_param_counts(const MtpConfig *c) {
    const TrunkConfig *t = &c->trunk;
    MtpParamCounts p;
    p.embedding = (size_t)t->vocab * t->dim;
    p.trunk = (size_t)t->layers * block_param_count(t->dim, t->ffn);
    p.final_norm = t->dim;
    p.unembedding = (size_t)t->vocab * t->dim;
    p.heads = heads_param_count(t, &c->heads) - p.final_norm - p.unembedding;
    p.total = p.embedding + p.trunk + p.heads + p.final_norm + p.unembedding;
    return p;
}

DecodeModel mtp_decode_model(const MtpModel *m) {
    return (DecodeModel){m->cfg.trunk, m->cfg.heads, &m->trunk, &m->heads};
}

void mtp_model_views(const MtpModel *m, float *buf, TrunkWeights *tw, BlockWeights *blocks, HeadsWeights *hw) {
    tw->blocks = blocks;
    size_t used = trunk_weights_point(tw, buf, &m->cfg.trunk);
    heads_weights_point(hw, buf + used, &m->cfg.trunk, &m->cfg.heads);
}

/* ---- the tensor table: names and shapes as the checkpoint stores them ------------------------- */

static void add_tensor(MtpModel *m, const float *base, const float *p, int decay, int d0, int d1, const char *fmt,
                       ...) {
    MtpTensor *t = &m->tensors[m->n_tensors++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->ndim = d1 ? 2 : 1;
    t->shape[0] = d0, t->shape[1] = d1;
    t->offset = (size_t)(p - base);
    t->size = (size_t)d0 * (d1 ? d1 : 1);
    t->decay = decay;
}

static void add_block_tensors(MtpModel *m, const BlockWeights *b, const char *prefix, int idx) {
    const int D = m->cfg.trunk.dim, F = m->cfg.trunk.ffn;
    const float *base = m->params;
    add_tensor(m, base, b->attn_norm, 0, D, 0, "%s.%d.attn_norm", prefix, idx);
    add_tensor(m, base, b->wqkv, 1, D, D, "%s.%d.wq", prefix, idx);
    add_tensor(m, base, b->wqkv + (size_t)D * D, 1, D, D, "%s.%d.wk", prefix, idx);
    add_tensor(m, base, b->wqkv + 2 * (size_t)D * D, 1, D, D, "%s.%d.wv", prefix, idx);
    add_tensor(m, base, b->wo, 1, D, D, "%s.%d.wo", prefix, idx);
    add_tensor(m, base, b->mlp_norm, 0, D, 0, "%s.%d.mlp_norm", prefix, idx);
    add_tensor(m, base, b->w13, 1, F, D, "%s.%d.w1", prefix, idx);
    add_tensor(m, base, b->w13 + (size_t)F * D, 1, F, D, "%s.%d.w3", prefix, idx);
    add_tensor(m, base, b->w2, 1, D, F, "%s.%d.w2", prefix, idx);
}

int mtp_model_build(MtpModel *m, const MtpConfig *cfg, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    if (mtp_config_check(cfg, err, errlen)) return -1;
    m->cfg = *cfg;
    const TrunkConfig *tc = &cfg->trunk;
    m->n_params = mtp_param_counts(cfg).total;
    int max_tensors = 1 + 9 * tc->layers + 9 * cfg->heads.n + 2;
    m->params = mtp_calloc(m->n_params, sizeof(float));
    m->trunk_blocks = calloc(tc->layers ? tc->layers : 1, sizeof(BlockWeights));
    m->tensors = calloc(max_tensors, sizeof(MtpTensor));
    if (!m->params || !m->trunk_blocks || !m->tensors) {
        snprintf(err, errlen, "out of memory for %zu parameters", m->n_params);
        mtp_model_free(m);
        return -1;
    }
    mtp_model_views(m, m->params, &m->trunk, m->trunk_blocks, &m->heads);

    add_tensor(m, m->params, m->trunk.tok_emb, 0, tc->vocab, tc->dim, "tok_emb");
    for (int l = 0; l < tc->layers; l++) add_block_tensors(m, &m->trunk.blocks[l], "trunk", l);
    for (int i = 0; i < cfg->heads.n; i++) {
        if (cfg->heads.type == HEAD_TRANSFORMER) add_block_tensors(m, &m->heads.blocks[i], "heads", i + 1);
        else add_tensor(m, m->params, m->heads.lin[i], 1, tc->dim, tc->dim, "heads.%d.w", i + 1);
    }
    add_tensor(m, m->params, m->heads.final_norm, 0, tc->dim, 0, "final_norm");
    add_tensor(m, m->params, m->heads.unembed, 1, tc->vocab, tc->dim, "unembed");
    return 0;
}

void mtp_model_free(MtpModel *m) {
    ds_bpe_free(m->tokenizer);
    mtp_free(m->params);
    free(m->trunk_blocks);
    free(m->tensors);
    memset(m, 0, sizeof *m);
}

const MtpTensor *mtp_model_tensor(const MtpModel *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

void mtp_model_init(MtpModel *m, uint64_t seed) {
    MtpRng rng;
    mtp_rng_seed(&rng, seed);
    /* residual-stream writers (wo, w2, linear heads) are scaled down by the number of blocks a
     * path through the model crosses, as in GPT-2, so the stream's variance stays put at init */
    int depth = m->cfg.trunk.layers + 1;
    float std = 0.02f, out_std = 0.02f / sqrtf(2.0f * depth);
    for (int i = 0; i < m->n_tensors; i++) {
        const MtpTensor *t = &m->tensors[i];
        float *p = m->params + t->offset;
        if (t->ndim == 1) {
            for (size_t j = 0; j < t->size; j++) p[j] = 1.0f;
            continue;
        }
        const char *dot = strrchr(t->name, '.');
        const char *leaf = dot ? dot + 1 : t->name;
        float s = (strcmp(leaf, "wo") == 0 || strcmp(leaf, "w2") == 0 || strcmp(leaf, "w") == 0) ? out_std : std;
        for (size_t j = 0; j < t->size; j++) p[j] = (float)(s * mtp_rng_normal(&rng));
    }
}

/* ---- workspace and passes ------------------------------------------------------------------- */

int mtp_workspace_build(MtpWorkspace *w, const MtpModel *m, int B, int T) {
    memset(w, 0, sizeof *w);
    const TrunkConfig *tc = &m->cfg.trunk;
    w->model = m, w->B = B, w->T = T;
    /* in bf16 precision attention keeps its operands rounded (half the memory, no conversions) */
    const int bf16 = mtp_core_precision() == MTP_BF16;
    if (trunk_acts_build(&w->trunk, tc, B, T, bf16) || heads_acts_build(&w->heads, tc, &m->cfg.heads, B, T, bf16) ||
        block_scratch_build(&w->scratch, B, T, tc->dim, tc->attn_heads, tc->ffn, bf16))
        goto fail;
    w->dz = mtp_calloc((size_t)B * T * tc->dim, sizeof(float));
    w->inputs = mtp_calloc((size_t)B * T, sizeof(int32_t));
    if (!w->dz || !w->inputs) goto fail;
    return 0;
fail:
    mtp_workspace_free(w);
    return -1;
}

void mtp_workspace_free(MtpWorkspace *w) {
    trunk_acts_free(&w->trunk);
    heads_acts_free(&w->heads);
    block_scratch_free(&w->scratch);
    mtp_free(w->dz);
    mtp_free(w->inputs);
    memset(w, 0, sizeof *w);
}

/* The inputs of a batch: tokens (B, T+1) less each row's last token, into ws->inputs (B, T). */
static void take_inputs(MtpWorkspace *ws, const int32_t *tokens) {
    for (int b = 0; b < ws->B; b++)
        memcpy(ws->inputs + (size_t)b * ws->T, tokens + (size_t)b * (ws->T + 1), ws->T * sizeof(int32_t));
}

/* The passes of the trunk and the heads over ws, their gradients added into tg and hg (NULL: a
 * forward-only pass). */
static void passes(MtpWorkspace *ws, const TrunkWeights *tg, const HeadsWeights *hg, TrunkPass *tp, HeadsPass *hp) {
    const MtpModel *m = ws->model;
    *tp = (TrunkPass){.c = &m->cfg.trunk, .w = &m->trunk, .dw = tg, .acts = &ws->trunk, .scratch = &ws->scratch};
    *hp = (HeadsPass){.tc = &m->cfg.trunk, .hc = &m->cfg.heads, .w = &m->heads, .dw = hg, .acts = &ws->heads,
                      .scratch = &ws->scratch, .dz = ws->dz};
}

/* The gradient views of a pass, for the ranges handed to ws->grads_ready. */
typedef struct {
    MtpWorkspace *ws;
    float *grads;
    const TrunkWeights *tg;
    const HeadsWeights *hg;
} ReadyCtx;

/* Head i's weights are final after its backward; the last head's range runs on to the end of the
 * buffer: the final norm and the unembedding, which every head adds into. */
static void head_ready(void *ctx, int i) {
    const ReadyCtx *r = ctx;
    const MtpConfig *c = &r->ws->model->cfg;
    const size_t n_params = r->ws->model->n_params;
    float *g = c->heads.type == HEAD_TRANSFORMER ? r->hg->blocks[i].attn_norm : r->hg->lin[i];
    size_t n = c->heads.type == HEAD_TRANSFORMER ? block_param_count(c->trunk.dim, c->trunk.ffn)
                                                 : (size_t)c->trunk.dim * c->trunk.dim;
    if (i == c->heads.n - 1) n = n_params - (size_t)(g - r->grads);
    r->ws->grads_ready(r->ws->ready_ctx, g, n);
}

static void block_ready(void *ctx, int l) {
    const ReadyCtx *r = ctx;
    const TrunkConfig *c = &r->ws->model->cfg.trunk;
    r->ws->grads_ready(r->ws->ready_ctx, r->tg->blocks[l].attn_norm, block_param_count(c->dim, c->ffn));
}

void mtp_forward_backward(MtpWorkspace *ws, float *grads, const int32_t *tokens, float grad_scale, HeadStats *stats) {
    TrunkWeights tg;
    HeadsWeights hg;
    BlockWeights gblocks[TRUNK_MAX_LAYERS];
    mtp_model_views(ws->model, grads, &tg, gblocks, &hg);
    TrunkPass trunk;
    HeadsPass heads;
    passes(ws, &tg, &hg, &trunk, &heads);
    ReadyCtx ready = {ws, grads, &tg, &hg};
    if (ws->grads_ready) {
        trunk.block_done = block_ready, trunk.done_ctx = &ready;
        heads.head_done = head_ready, heads.done_ctx = &ready;
    }

    take_inputs(ws, tokens);
    trunk_forward(&trunk, ws->inputs);
    heads_train(&heads, stats, trunk_output(&ws->trunk, trunk.c), tokens, grad_scale);
    trunk_backward(&trunk, ws->inputs, ws->dz);
    if (ws->grads_ready) ws->grads_ready(ws->ready_ctx, tg.tok_emb, (size_t)ws->model->cfg.trunk.vocab * ws->model->cfg.trunk.dim);
}

void mtp_forward_eval(MtpWorkspace *ws, const int32_t *tokens, int32_t ignore_target, HeadStats *stats) {
    TrunkPass trunk;
    HeadsPass heads;
    passes(ws, NULL, NULL, &trunk, &heads);
    take_inputs(ws, tokens);
    trunk_forward(&trunk, ws->inputs);
    heads_eval(&heads, stats, trunk_output(&ws->trunk, trunk.c), tokens, ignore_target);
}

void mtp_forward_head(MtpWorkspace *ws, const int32_t *tokens, int i) {
    TrunkPass trunk;
    HeadsPass heads;
    passes(ws, NULL, NULL, &trunk, &heads);
    take_inputs(ws, tokens);
    trunk_forward(&trunk, ws->inputs);
    heads_forward_one(&heads, i, trunk_output(&ws->trunk, trunk.c));
}

/* ---- tokenizers and run data ------------------------------------------------------------------ */

size_t mtp_encode(const DsBpe *t, int32_t *out, const uint8_t *bytes, size_t n) {
    return t ? ds_bpe_encode(t, out, bytes, n) : ds_encode_bytes(out, bytes, n);
}

size_t mtp_decode(const DsBpe *t, uint8_t *out, size_t cap, const int32_t *ids, size_t n) {
    if (t) return ds_bpe_decode(t, out, cap, ids, n);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < 256) {
            if (k < cap) out[k] = (uint8_t)ids[i];
            k++;
        }
    return k;
}

int mtp_tokenizer_vocab(const DsBpe *t) { return t ? ds_bpe_vocab(t) : DS_BYTE_VOCAB; }

int mtp_run_data_options(const MtpRunInfo *run, DsOptions *o) {
    ds_options_init(o);
    o->n_sources = run->n_sources;
    memcpy(o->sources, run->sources, sizeof o->sources);
    if (o->n_sources == 0 && run->data_spec[0]) {
        snprintf(o->sources[0].spec, sizeof o->sources[0].spec, "%s", run->data_spec);
        o->sources[0].weight = 1.0;
        o->n_sources = 1;
    }
    o->val_frac = run->val_frac;
    o->seed = run->data_seed;
    o->difficulty = run->difficulty;
    if (run->jsonl_question[0]) o->jsonl.question = run->jsonl_question;
    if (run->jsonl_answer[0]) o->jsonl.answer = run->jsonl_answer;
    if (run->jsonl_text[0]) o->jsonl.text = run->jsonl_text;
    o->jsonl.skip_bad_lines = run->skip_bad_lines;
    return o->n_sources;
}

void mtp_run_set_sources(MtpRunInfo *run, const DsSource *src, int n) {
    run->n_sources = n;
    for (int i = 0; i < n; i++) run->sources[i] = src[i];
    snprintf(run->data_spec, sizeof run->data_spec, "%s", n ? src[0].spec : "");
}
