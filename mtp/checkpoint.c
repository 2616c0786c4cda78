/* checkpoint.c - the checkpoint file: one msgpack map, documented in README.md ("Checkpoint format").
 *
 * Writing uses msgpack-c's packer through MpkWriter (temp file, fsync, rename). Reading walks the
 * mapped file with MpkReader and trusts nothing: every count is bounded by the bytes left, the
 * config is range-checked and the parameter count it implies must fit in the file before anything
 * is allocated, every tensor's name, dtype, shape, length and CRC-32 is checked, and a decoding
 * calibration, when there is one, is bounded while read and then checked whole. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mtp/core/mpk.h"
#include "mtp/mtp.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the checkpoint stores little-endian float32 tensors, written and read as the memory holds them"
#endif

/* ---- writing -------------------------------------------------------------------------------- */

/* tensors: [{name, dtype, shape, crc32, data}, ...] with data taken from buf (laid out like params) */
static void pack_tensors(msgpack_packer *pk, const MtpModel *m, const float *buf) {
    msgpack_pack_array(pk, m->n_tensors);
    for (int i = 0; i < m->n_tensors; i++) {
        const MtpTensor *t = &m->tensors[i];
        const float *data = buf + t->offset;
        size_t bytes = t->size * sizeof(float);
        msgpack_pack_map(pk, 5);
        mpk_pack_key_str(pk, "name", t->name);
        mpk_pack_key_str(pk, "dtype", "f32");
        mpk_pack_str(pk, "shape");
        msgpack_pack_array(pk, t->ndim);
        for (int d = 0; d < t->ndim; d++) msgpack_pack_uint32(pk, (uint32_t)t->shape[d]);
        mpk_pack_key_uint(pk, "crc32", mpk_crc32(0, data, bytes));
        mpk_pack_key_bin(pk, "data", data, bytes);
    }
}

/* {type, vocab, bos, eos, pad} for bytes; BPE adds its merges ((n, 2) int32 little-endian) and hash */
static void pack_tokenizer(msgpack_packer *pk, const DsBpe *t) {
    msgpack_pack_map(pk, t ? 7 : 5);
    mpk_pack_key_str(pk, "type", t ? "bpe" : "bytes");
    mpk_pack_key_int(pk, "vocab", mtp_tokenizer_vocab(t));
    mpk_pack_key_int(pk, "bos", DS_BOS);
    mpk_pack_key_int(pk, "eos", DS_EOS);
    mpk_pack_key_int(pk, "pad", DS_PAD);
    if (!t) return;
    mpk_pack_key_bin(pk, "merges", ds_bpe_merges(t), (size_t)ds_bpe_n_merges(t) * 2 * sizeof(int32_t));
    mpk_pack_key_uint(pk, "hash", ds_bpe_hash(t));
}

static void pack_config(msgpack_packer *pk, const MtpConfig *c) {
    const TrunkConfig *tc = &c->trunk;
    msgpack_pack_map(pk, 8);
    mpk_pack_key_int(pk, "vocab", tc->vocab);
    mpk_pack_key_int(pk, "dim", tc->dim);
    mpk_pack_key_int(pk, "layers", tc->layers);
    mpk_pack_key_int(pk, "attn_heads", tc->attn_heads);
    mpk_pack_key_int(pk, "ffn", tc->ffn);
    mpk_pack_key_int(pk, "ctx", tc->ctx);
    mpk_pack_key_int(pk, "heads", c->heads.n);
    mpk_pack_key_str(pk, "head_type", heads_type_name(c->heads.type));
}

/* What the model was trained on: the data sources with their weights, and the options that make
   the same corpus again (eval and resume rebuild it from these). */
static void pack_run(msgpack_packer *pk, const MtpRunInfo *run) {
    msgpack_pack_map(pk, run->ranks > 1 ? 8 : 7);
    mpk_pack_key_str(pk, "data", run->data_spec);
    mpk_pack_str(pk, "sources");
    int n_src = run->n_sources ? run->n_sources : 1;
    msgpack_pack_array(pk, (size_t)n_src);
    for (int i = 0; i < n_src; i++) {
        msgpack_pack_map(pk, 2);
        mpk_pack_key_str(pk, "spec", run->n_sources ? run->sources[i].spec : run->data_spec);
        mpk_pack_key_double(pk, "weight", run->n_sources ? run->sources[i].weight : 1.0);
    }
    mpk_pack_str(pk, "jsonl");
    msgpack_pack_map(pk, 4);
    mpk_pack_key_str(pk, "question", run->jsonl_question);
    mpk_pack_key_str(pk, "answer", run->jsonl_answer);
    mpk_pack_key_str(pk, "text", run->jsonl_text);
    mpk_pack_key_int(pk, "skip_bad_lines", run->skip_bad_lines);
    mpk_pack_key_double(pk, "val_frac", run->val_frac);
    mpk_pack_key_uint(pk, "data_seed", run->data_seed);
    mpk_pack_key_int(pk, "difficulty", run->difficulty);
    mpk_pack_key_str(pk, "precision", mtp_precision_name(run->precision));
    if (run->ranks > 1) mpk_pack_key_int(pk, "ranks", run->ranks); /* the data position is per its global batch */
}

static void pack_options(msgpack_packer *pk, const MtpTrainOptions *o) {
    msgpack_pack_map(pk, 12);
    mpk_pack_key_int(pk, "steps", o->steps);
    mpk_pack_key_int(pk, "batch", o->batch);
    mpk_pack_key_int(pk, "accum", o->accum);
    mpk_pack_key_int(pk, "warmup", o->warmup);
    mpk_pack_key_double(pk, "lr", o->lr);
    mpk_pack_key_double(pk, "min_lr", o->min_lr);
    mpk_pack_key_double(pk, "beta1", o->beta1);
    mpk_pack_key_double(pk, "beta2", o->beta2);
    mpk_pack_key_double(pk, "eps", o->eps);
    mpk_pack_key_double(pk, "weight_decay", o->weight_decay);
    mpk_pack_key_double(pk, "grad_clip", o->grad_clip);
    mpk_pack_key_uint(pk, "seed", o->seed);
}

/* The train state resume needs: step, data position, options and optimizer moments. */
static void pack_train(msgpack_packer *pk, const MtpModel *m, const MtpTrainer *t) {
    msgpack_pack_map(pk, 6);
    mpk_pack_key_int(pk, "step", t->step);
    mpk_pack_key_uint(pk, "batches_drawn", t->batches_drawn);
    mpk_pack_str(pk, "rng");
    msgpack_pack_array(pk, 4);
    for (int i = 0; i < 4; i++) msgpack_pack_uint64(pk, t->data_rng.s[i]);
    mpk_pack_str(pk, "options");
    pack_options(pk, &t->opt);
    mpk_pack_str(pk, "adam_m");
    pack_tensors(pk, m, t->m);
    mpk_pack_str(pk, "adam_v");
    pack_tensors(pk, m, t->v);
}

/* What mtp calibrate measured: {version, heads, positions, ranks, rates: (heads-1) x ranks,
   trees: [{parent, rank, expected}, ...]}; a tree's depths follow from its parents. */
static void pack_calibration(msgpack_packer *pk, const DecodeCalibration *c) {
    msgpack_pack_map(pk, 6);
    mpk_pack_key_int(pk, "version", MTP_CALIBRATION_VERSION);
    mpk_pack_key_int(pk, "heads", c->heads);
    mpk_pack_key_int(pk, "positions", c->positions);
    mpk_pack_key_int(pk, "ranks", DECODE_CAL_RANKS);
    mpk_pack_str(pk, "rates");
    msgpack_pack_array(pk, (size_t)(c->heads - 1));
    for (int d = 0; d + 1 < c->heads; d++) {
        msgpack_pack_array(pk, DECODE_CAL_RANKS);
        for (int j = 0; j < DECODE_CAL_RANKS; j++) msgpack_pack_double(pk, c->rate[d][j]);
    }
    mpk_pack_str(pk, "trees");
    msgpack_pack_array(pk, (size_t)c->n_trees);
    for (int k = 0; k < c->n_trees; k++) {
        const DecodeTree *t = &c->trees[k];
        msgpack_pack_map(pk, 3);
        mpk_pack_str(pk, "parent");
        msgpack_pack_array(pk, (size_t)t->n);
        for (int i = 0; i < t->n; i++) msgpack_pack_int(pk, t->parent[i]);
        mpk_pack_str(pk, "rank");
        msgpack_pack_array(pk, (size_t)t->n);
        for (int i = 0; i < t->n; i++) msgpack_pack_int(pk, t->rank[i]);
        mpk_pack_key_double(pk, "expected", c->expected[k]);
    }
}

int mtp_checkpoint_save(const char *path, const MtpModel *m, const MtpTrainer *t, const MtpRunInfo *run,
                        char *err, size_t errlen) {
    return mtp_checkpoint_save_calibrated(path, m, t, run, NULL, err, errlen);
}

int mtp_checkpoint_save_calibrated(const char *path, const MtpModel *m, const MtpTrainer *t, const MtpRunInfo *run,
                                   const DecodeCalibration *cal, char *err, size_t errlen) {
    if (cal) { /* what the loader would refuse is not written */
        char msg[200];
        if (decode_calibration_check(cal, msg, sizeof msg)) {
            snprintf(err, errlen, "%s: not saved: %s", path, msg);
            return -1;
        }
        if (cal->heads != m->cfg.heads.n) {
            snprintf(err, errlen, "%s: not saved: the calibration is for %d heads, the model has %d", path, cal->heads,
                     m->cfg.heads.n);
            return -1;
        }
    }
    MpkWriter w;
    if (mpk_writer_open(&w, path, err, errlen)) return -1;
    msgpack_packer *pk = &w.pk;
    msgpack_pack_map(pk, 6 + (t != NULL) + (cal != NULL));
    mpk_pack_key_str(pk, "format", MTP_FORMAT_NAME);
    mpk_pack_key_int(pk, "version", MTP_FORMAT_VERSION);
    mpk_pack_str(pk, "config");
    pack_config(pk, &m->cfg);
    mpk_pack_str(pk, "tokenizer");
    pack_tokenizer(pk, m->tokenizer);
    mpk_pack_str(pk, "run");
    pack_run(pk, run);
    if (cal) {
        mpk_pack_str(pk, "calibration");
        pack_calibration(pk, cal);
    }
    mpk_pack_str(pk, "tensors");
    pack_tensors(pk, m, m->params);
    if (t) {
        mpk_pack_str(pk, "train");
        pack_train(pk, m, t);
    }
    return mpk_writer_commit(&w, err, errlen);
}

/* ---- reading -------------------------------------------------------------------------------- */

static int read_config(MpkReader *r, MtpConfig *c) {
    uint32_t n;
    if (mpk_read_map(r, &n)) return -1;
    int64_t v[7] = {-1, -1, -1, -1, -1, -1, -1};
    static const char *names[7] = {"vocab", "dim", "layers", "attn_heads", "ffn", "ctx", "heads"};
    char head_type[32] = "";
    for (uint32_t i = 0; i < n; i++) {
        char key[MPK_KEY_CAP];
        if (mpk_read_key(r, key, sizeof key)) return -1;
        int found = 0;
        for (int k = 0; k < 7; k++)
            if (strcmp(key, names[k]) == 0) {
                if (mpk_read_int_in(r, key, 0, INT32_MAX, &v[k])) return -1;
                found = 1;
            }
        if (found) continue;
        if (strcmp(key, "head_type") == 0) {
            if (mpk_read_cstr(r, head_type, sizeof head_type, "head_type")) return -1;
        } else if (mpk_skip(r)) return -1;
    }
    for (int k = 0; k < 7; k++)
        if (v[k] < 0) return mpk_fail(r, "config has no \"%s\"", names[k]);
    *c = (MtpConfig){{(int)v[0], (int)v[1], (int)v[2], (int)v[3], (int)v[4], (int)v[5]}, {(int)v[6], 0}};
    if (heads_type_parse(head_type, &c->heads.type)) return mpk_fail(r, "config: unknown head_type \"%s\"", head_type);
    char msg[200];
    if (mtp_config_check(c, msg, sizeof msg)) return mpk_fail(r, "config: %s", msg);
    return 0;
}

/* Reads a tokenizer map into *out (NULL for bytes). vocab is the model's output width (a model may
   be wider than its tokenizer, mtp train --vocab: those ids never occur), or 0 for a tokenizer file. */
static int read_tokenizer(MpkReader *r, int vocab, DsBpe **out) {
    *out = NULL;
    uint32_t n;
    if (mpk_read_map(r, &n)) return -1;
    char type[32] = "";
    int64_t tok_vocab = -1, special[3] = {-1, -1, -1};
    const uint8_t *merges = NULL;
    uint32_t merges_len = 0;
    uint64_t hash = 0;
    int have_hash = 0;
    for (uint32_t i = 0; i < n; i++) {
        char key[MPK_KEY_CAP];
        if (mpk_read_key(r, key, sizeof key)) return -1;
        if (strcmp(key, "type") == 0) {
            if (mpk_read_cstr(r, type, sizeof type, "tokenizer type")) return -1;
        } else if (strcmp(key, "vocab") == 0) {
            if (mpk_read_int_in(r, "tokenizer vocab", 0, INT32_MAX, &tok_vocab)) return -1;
        } else if (strcmp(key, "bos") == 0 || strcmp(key, "eos") == 0 || strcmp(key, "pad") == 0) {
            if (mpk_read_int_in(r, key, 0, INT32_MAX, &special[key[0] == 'b' ? 0 : key[0] == 'e' ? 1 : 2])) return -1;
        } else if (strcmp(key, "merges") == 0) {
            if (mpk_read_bin(r, &merges, &merges_len)) return -1;
        } else if (strcmp(key, "hash") == 0) {
            if (mpk_read_uint(r, &hash)) return -1;
            have_hash = 1;
        } else if (mpk_skip(r)) return -1;
    }
    if ((special[0] >= 0 && special[0] != DS_BOS) || (special[1] >= 0 && special[1] != DS_EOS) ||
        (special[2] >= 0 && special[2] != DS_PAD))
        return mpk_fail(r, "tokenizer specials (bos %lld, eos %lld, pad %lld) differ from this build's (%d, %d, %d)",
                        (long long)special[0], (long long)special[1], (long long)special[2], DS_BOS, DS_EOS, DS_PAD);
    if (strcmp(type, "bytes") == 0) {
        if (tok_vocab != DS_BYTE_VOCAB || (vocab && vocab < DS_BYTE_VOCAB))
            return mpk_fail(r, "byte tokenizer needs vocab %d and a model vocab of at least that (tokenizer says "
                            "%lld, config %d)", DS_BYTE_VOCAB, (long long)tok_vocab, vocab);
        return 0;
    }
    if (strcmp(type, "bpe") != 0) return mpk_fail(r, "unknown tokenizer type \"%s\"", type);
    if (!merges || merges_len % (2 * sizeof(int32_t)) != 0 || merges_len / 8 > DS_BPE_MAX_MERGES)
        return mpk_fail(r, "bpe tokenizer: merges must be (n, 2) int32 with n <= %d (%u bytes)", DS_BPE_MAX_MERGES,
                        merges_len);
    int n_merges = (int)(merges_len / 8);
    int32_t *list = malloc(merges_len ? merges_len : 1); /* the bin may be unaligned in the file */
    if (!list) return mpk_fail(r, "out of memory");
    memcpy(list, merges, merges_len);
    char msg[200];
    DsBpe *t = NULL;
    int rc = ds_bpe_from_merges(&t, list, n_merges, msg, sizeof msg);
    free(list);
    if (rc) return mpk_fail(r, "bpe tokenizer: %s", msg);
    const char *bad = NULL;
    if (tok_vocab != ds_bpe_vocab(t)) bad = "its vocab does not match its merges";
    else if (have_hash && hash != ds_bpe_hash(t)) bad = "its hash does not match its merges (the file is corrupted)";
    else if (vocab && vocab < ds_bpe_vocab(t)) bad = "the model's vocab is smaller than the tokenizer's";
    if (bad) {
        ds_bpe_free(t);
        if (vocab) return mpk_fail(r, "bpe tokenizer (vocab %lld, %d merges, model vocab %d): %s", (long long)tok_vocab,
                                   n_merges, vocab, bad);
        return mpk_fail(r, "bpe tokenizer (vocab %lld, %d merges): %s", (long long)tok_vocab, n_merges, bad);
    }
    *out = t;
    return 0;
}

/* run.sources: [{spec, weight}, ...] */
static int read_run_sources(MpkReader *r, MtpRunInfo *run) {
    uint32_t m;
    if (mpk_read_array(r, &m)) return -1;
    if (m > DS_MAX_SOURCES) return mpk_fail(r, "run: %u data sources, at most %d", m, DS_MAX_SOURCES);
    run->n_sources = (int)m;
    for (uint32_t j = 0; j < m; j++) {
        uint32_t nk;
        if (mpk_read_map(r, &nk)) return -1;
        DsSource *s = &run->sources[j];
        s->weight = 1.0;
        for (uint32_t k = 0; k < nk; k++) {
            char key[MPK_KEY_CAP];
            if (mpk_read_key(r, key, sizeof key)) return -1;
            if (strcmp(key, "spec") == 0) {
                if (mpk_read_cstr(r, s->spec, sizeof s->spec, "run source")) return -1;
            } else if (strcmp(key, "weight") == 0) {
                if (mpk_read_double(r, &s->weight)) return -1;
                if (!(s->weight > 0) || !isfinite(s->weight)) return mpk_fail(r, "run: source weight %g", s->weight);
            } else if (mpk_skip(r)) return -1;
        }
    }
    return 0;
}

/* run.jsonl: {question, answer, text, skip_bad_lines} */
static int read_run_jsonl(MpkReader *r, MtpRunInfo *run) {
    uint32_t m;
    if (mpk_read_map(r, &m)) return -1;
    for (uint32_t j = 0; j < m; j++) {
        char key[MPK_KEY_CAP];
        if (mpk_read_key(r, key, sizeof key)) return -1;
        char *dst = strcmp(key, "question") == 0 ? run->jsonl_question : strcmp(key, "answer") == 0 ? run->jsonl_answer
                  : strcmp(key, "text") == 0 ? run->jsonl_text : NULL;
        int64_t v;
        if (dst) {
            if (mpk_read_cstr(r, dst, sizeof run->jsonl_text, "jsonl field")) return -1;
        } else if (strcmp(key, "skip_bad_lines") == 0) {
            if (mpk_read_int_in(r, key, 0, 1, &v)) return -1;
            run->skip_bad_lines = (int)v;
        } else if (mpk_skip(r)) return -1;
    }
    return 0;
}

static int read_run(MpkReader *r, MtpRunInfo *run) {
    uint32_t n;
    if (mpk_read_map(r, &n)) return -1;
    for (uint32_t i = 0; i < n; i++) {
        char key[MPK_KEY_CAP];
        if (mpk_read_key(r, key, sizeof key)) return -1;
        int64_t v;
        uint64_t u;
        if (strcmp(key, "data") == 0) {
            if (mpk_read_cstr(r, run->data_spec, sizeof run->data_spec, "run data")) return -1;
        } else if (strcmp(key, "val_frac") == 0) {
            if (mpk_read_double(r, &run->val_frac)) return -1;
        } else if (strcmp(key, "data_seed") == 0) {
            if (mpk_read_uint(r, &u)) return -1;
            run->data_seed = u;
        } else if (strcmp(key, "difficulty") == 0) {
            if (mpk_read_int_in(r, "difficulty", 0, 1000, &v)) return -1;
            run->difficulty = (int)v;
        } else if (strcmp(key, "precision") == 0) {
            char p[16];
            if (mpk_read_cstr(r, p, sizeof p, "precision")) return -1;
            run->precision = strcmp(p, "bf16") == 0 ? MTP_BF16 : MTP_FP32;
        } else if (strcmp(key, "ranks") == 0) {
            if (mpk_read_int_in(r, "ranks", 1, 1 << 24, &v)) return -1;
            run->ranks = (int)v;
        } else if (strcmp(key, "sources") == 0) {
            if (read_run_sources(r, run)) return -1;
        } else if (strcmp(key, "jsonl") == 0) {
            if (read_run_jsonl(r, run)) return -1;
        } else if (mpk_skip(r)) return -1;
    }
    return 0;
}

/* One entry of a tensors array, as the file has it. */
typedef struct {
    char name[64], dtype[16];
    int ndim;             /* -1: no shape */
    int64_t shape[3];
    int have_crc;
    uint64_t crc;
    const uint8_t *data;  /* in the mapped file */
    uint32_t len;
} TensorEntry;

static int read_shape(MpkReader *r, TensorEntry *e) {
    uint32_t nd;
    if (mpk_read_array(r, &nd)) return -1;
    if (nd < 1 || nd > 2) return mpk_fail(r, "tensor %s: %u dimensions", e->name, nd);
    e->ndim = (int)nd;
    for (uint32_t d = 0; d < nd; d++)
        if (mpk_read_int_in(r, "shape", 0, INT32_MAX, &e->shape[d])) return -1;
    return 0;
}

/* {name, dtype, shape, crc32, data} into e, unchecked. */
static int read_tensor_entry(MpkReader *r, TensorEntry *e) {
    *e = (TensorEntry){.ndim = -1};
    uint32_t nk;
    if (mpk_read_map(r, &nk)) return -1;
    int rc = 0;
    for (uint32_t k = 0; k < nk && rc == 0; k++) {
        char key[MPK_KEY_CAP];
        if ((rc = mpk_read_key(r, key, sizeof key))) break;
        if (strcmp(key, "name") == 0) rc = mpk_read_cstr(r, e->name, sizeof e->name, "tensor name");
        else if (strcmp(key, "dtype") == 0) rc = mpk_read_cstr(r, e->dtype, sizeof e->dtype, "dtype");
        else if (strcmp(key, "crc32") == 0) rc = mpk_read_uint(r, &e->crc), e->have_crc = 1;
        else if (strcmp(key, "data") == 0) rc = mpk_read_bin(r, &e->data, &e->len);
        else if (strcmp(key, "shape") == 0) rc = read_shape(r, e);
        else rc = mpk_skip(r);
    }
    return rc;
}

/* Checks entry e against the model's table (seen: the tensors already read) and copies its data
   into buf. */
static int place_tensor(MpkReader *r, const MtpModel *m, const TensorEntry *e, unsigned char *seen, float *buf,
                        const char *what) {
    const MtpTensor *t = mtp_model_tensor(m, e->name);
    if (!t) return mpk_fail(r, "%s: unknown tensor \"%s\" for this config", what, e->name);
    int idx = (int)(t - m->tensors);
    if (seen[idx]) return mpk_fail(r, "%s: tensor %s appears twice", what, e->name);
    seen[idx] = 1;
    if (strcmp(e->dtype, "f32") != 0)
        return mpk_fail(r, "tensor %s: dtype \"%s\", expected \"f32\"", e->name, e->dtype);
    if (e->ndim != t->ndim || e->shape[0] != t->shape[0] || (e->ndim == 2 && e->shape[1] != t->shape[1])) {
        char got[48], want[48];
        if (e->ndim == 2) snprintf(got, sizeof got, "[%lld, %lld]", (long long)e->shape[0], (long long)e->shape[1]);
        else snprintf(got, sizeof got, "[%lld]", (long long)e->shape[0]);
        if (t->ndim == 2) snprintf(want, sizeof want, "[%d, %d]", t->shape[0], t->shape[1]);
        else snprintf(want, sizeof want, "[%d]", t->shape[0]);
        return mpk_fail(r, "tensor %s: shape %s but the config needs %s", e->name, e->ndim < 0 ? "missing" : got, want);
    }
    if (!e->data || e->len != t->size * sizeof(float))
        return mpk_fail(r, "tensor %s: %u data bytes, expected %zu", e->name, e->len, t->size * sizeof(float));
    if (!e->have_crc || e->crc != mpk_crc32(0, e->data, e->len))
        return mpk_fail(r, "tensor %s: checksum mismatch (the file is corrupted)", e->name);
    memcpy(buf + t->offset, e->data, e->len);
    return 0;
}

/* Reads a tensors array into buf (laid out like params), checking it against the model's table. */
static int read_tensors(MpkReader *r, const MtpModel *m, float *buf, const char *what) {
    uint32_t n;
    if (mpk_read_array(r, &n)) return -1;
    if (n != (uint32_t)m->n_tensors)
        return mpk_fail(r, "%s: %u tensors but the config needs %d", what, n, m->n_tensors);
    unsigned char *seen = calloc(m->n_tensors, 1);
    if (!seen) return mpk_fail(r, "out of memory");
    int rc = 0;
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        TensorEntry e;
        rc = read_tensor_entry(r, &e);
        if (rc == 0) rc = place_tensor(r, m, &e, seen, buf, what);
    }
    free(seen);
    return rc;
}

static int read_options(MpkReader *r, MtpTrainOptions *o) {
    uint32_t n;
    if (mpk_read_map(r, &n)) return -1;
    for (uint32_t i = 0; i < n; i++) {
        char key[MPK_KEY_CAP];
        if (mpk_read_key(r, key, sizeof key)) return -1;
        int64_t v = 0;
        double d = 0;
        uint64_t u = 0;
        int rc = 0;
        if (strcmp(key, "steps") == 0) rc = mpk_read_int_in(r, key, 0, INT32_MAX, &v), o->steps = (int)v;
        else if (strcmp(key, "batch") == 0) rc = mpk_read_int_in(r, key, 1, 1 << 20, &v), o->batch = (int)v;
        else if (strcmp(key, "accum") == 0) rc = mpk_read_int_in(r, key, 1, 1 << 20, &v), o->accum = (int)v;
        else if (strcmp(key, "warmup") == 0) rc = mpk_read_int_in(r, key, 0, INT32_MAX, &v), o->warmup = (int)v;
        else if (strcmp(key, "seed") == 0) rc = mpk_read_uint(r, &u), o->seed = u;
        else {
            float *f = strcmp(key, "lr") == 0 ? &o->lr : strcmp(key, "min_lr") == 0 ? &o->min_lr
                     : strcmp(key, "beta1") == 0 ? &o->beta1 : strcmp(key, "beta2") == 0 ? &o->beta2
                     : strcmp(key, "eps") == 0 ? &o->eps : strcmp(key, "weight_decay") == 0 ? &o->weight_decay
                     : strcmp(key, "grad_clip") == 0 ? &o->grad_clip : NULL;
            if (f) {
                /* ranges as the command line accepts them; the float must be finite too */
                double lo = 0, hi = 10;
                if (f == &o->beta1 || f == &o->beta2) hi = 0.999999;
                if (f == &o->grad_clip) hi = 1e9;
                rc = mpk_read_double(r, &d);
                if (!rc && !isfinite((float)d)) rc = mpk_fail(r, "train option %s = %g is not finite", key, d);
                else if (!rc && !(d >= lo && d <= hi))
                    rc = mpk_fail(r, "train option %s = %g is out of range [%g, %g]", key, d, lo, hi);
                *f = (float)d;
            } else rc = mpk_skip(r);
        }
        if (rc) return -1;
    }
    return 0;
}

static int read_train(MpkReader *r, const MtpModel *m, MtpCheckpointExtra *x, size_t file_size) {
    uint32_t n;
    if (mpk_read_map(r, &n)) return -1;
    /* two moments of n_params floats each must be in the file before we allocate them */
    if (m->n_params > file_size / (3 * sizeof(float)))
        return mpk_fail(r, "train state: the file is too small to hold optimizer moments for %zu parameters",
                        m->n_params);
    x->m = mtp_calloc(m->n_params, sizeof(float));
    x->v = mtp_calloc(m->n_params, sizeof(float));
    if (!x->m || !x->v) return mpk_fail(r, "out of memory for optimizer state");
    int have_m = 0, have_v = 0, have_rng = 0, have_step = 0;
    mtp_train_options_default(&x->opt);
    for (uint32_t i = 0; i < n; i++) {
        char key[MPK_KEY_CAP];
        if (mpk_read_key(r, key, sizeof key)) return -1;
        int64_t v;
        if (strcmp(key, "step") == 0) {
            if (mpk_read_int_in(r, "step", 0, INT32_MAX, &v)) return -1;
            x->step = (int)v, have_step = 1;
        } else if (strcmp(key, "batches_drawn") == 0) {
            if (mpk_read_uint(r, &x->batches_drawn)) return -1;
        } else if (strcmp(key, "rng") == 0) {
            uint32_t k;
            if (mpk_read_array(r, &k)) return -1;
            if (k != 4) return mpk_fail(r, "rng state has %u words, expected 4", k);
            for (int j = 0; j < 4; j++)
                if (mpk_read_uint(r, &x->data_rng.s[j])) return -1;
            have_rng = 1;
        } else if (strcmp(key, "options") == 0) {
            if (read_options(r, &x->opt)) return -1;
        } else if (strcmp(key, "adam_m") == 0) {
            if (read_tensors(r, m, x->m, "adam_m")) return -1;
            have_m = 1;
        } else if (strcmp(key, "adam_v") == 0) {
            if (read_tensors(r, m, x->v, "adam_v")) return -1;
            have_v = 1;
        } else if (mpk_skip(r)) return -1;
    }
    if (!have_m || !have_v || !have_rng || !have_step)
        return mpk_fail(r, "train state is incomplete (needs step, rng, adam_m, adam_v)");
    x->has_train = 1;
    return 0;
}

/* Top-level keys of a checkpoint. */
enum { TOP_FORMAT, TOP_VERSION, TOP_CONFIG, TOP_TOKENIZER, TOP_TENSORS, TOP_TRAIN, TOP_RUN, TOP_CALIBRATION, TOP_N };
static const char *const top_keys[TOP_N] = {"format", "version", "config", "tokenizer", "tensors", "train", "run",
                                            "calibration"};

/* Pass 1 over a top-level map: the offset of the value of each key in names (0 when absent), so
   that pass 2 can read them in dependency order whatever order the file has them in. With unique,
   a key given twice is an error; without, the last one counts. */
static int index_keys(MpkReader *r, const char *const *names, int n_names, size_t *off, int unique) {
    uint32_t n;
    if (mpk_read_map(r, &n)) return -1;
    for (uint32_t i = 0; i < n; i++) {
        char key[MPK_KEY_CAP];
        if (mpk_read_key(r, key, sizeof key)) return -1;
        for (int k = 0; k < n_names; k++)
            if (strcmp(key, names[k]) == 0) {
                if (unique && off[k]) return mpk_fail(r, "key \"%s\" appears twice", key);
                off[k] = mpk_offset(r);
            }
        if (mpk_skip(r)) return -1;
    }
    return 0;
}

/* Points p at offset off of the file: pass 2 reads each part with a fresh reader. */
static MpkReader *seek(MpkReader *p, const MpkFile *f, size_t off) {
    mpk_reader_init(p, f->data, f->size);
    p->p = p->base + off;
    return p;
}

/* An array of 1..DECODE_TREE_MAX ints in [lo, hi] (a tree's parents or ranks) into v, its length
   into *n. */
static int read_node_ints(MpkReader *r, int k, const char *what, int lo, int hi, int *v, int *n) {
    uint32_t len;
    if (mpk_read_array(r, &len)) return -1;
    if (len < 1 || len > DECODE_TREE_MAX)
        return mpk_fail(r, "calibration: tree %d: %u %s entries (a tree has 1..%d nodes)", k, len, what,
                        DECODE_TREE_MAX);
    char name[64];
    snprintf(name, sizeof name, "calibration: tree %d: %s", k, what);
    for (uint32_t i = 0; i < len; i++) {
        int64_t x;
        if (mpk_read_int_in(r, name, lo, hi, &x)) return -1;
        v[i] = (int)x;
    }
    *n = (int)len;
    return 0;
}

/* trees[k]: {parent, rank, expected}. The depths are not stored: they follow from the parents. */
static int read_cal_tree(MpkReader *r, int k, DecodeTree *t, double *expected) {
    uint32_t nk;
    if (mpk_read_map(r, &nk)) return -1;
    int n_parent = 0, n_rank = 0, have_expected = 0;
    for (uint32_t i = 0; i < nk; i++) {
        char key[MPK_KEY_CAP];
        if (mpk_read_key(r, key, sizeof key)) return -1;
        if (strcmp(key, "parent") == 0) {
            if (read_node_ints(r, k, "parent", -1, DECODE_TREE_MAX - 1, t->parent, &n_parent)) return -1;
        } else if (strcmp(key, "rank") == 0) {
            if (read_node_ints(r, k, "rank", 0, DECODE_CAL_RANKS - 1, t->rank, &n_rank)) return -1;
        } else if (strcmp(key, "expected") == 0) {
            if (mpk_read_double(r, expected)) return -1;
            have_expected = 1;
        } else if (mpk_skip(r)) return -1;
    }
    if (!n_parent || !n_rank || !have_expected)
        return mpk_fail(r, "calibration: tree %d needs parent, rank and expected", k);
    if (n_parent != n_rank) return mpk_fail(r, "calibration: tree %d has %d parents and %d ranks", k, n_parent, n_rank);
    t->n = n_parent;
    for (int i = 0; i < t->n; i++) { /* a parent that is not an earlier node is decode_tree_check's to name */
        const int p = t->parent[i];
        t->depth[i] = p >= 0 && p < i ? t->depth[p] + 1 : 0;
    }
    return 0;
}

/* Keys of the calibration map, every one needed. */
enum { CAL_VERSION, CAL_HEADS, CAL_POSITIONS, CAL_RANKS, CAL_RATES, CAL_TREES, CAL_N };
static const char *const cal_keys[CAL_N] = {"version", "heads", "positions", "ranks", "rates", "trees"};

/* The calibration map at offset at into c (zeroed), for a model of model_heads heads: its keys
   found first, then read in dependency order (version, ranks and heads bound the arrays), then
   checked whole by decode_calibration_check. */
static int read_calibration(MpkReader *p, const MpkFile *f, size_t at, int model_heads, DecodeCalibration *c) {
    size_t off[CAL_N] = {0};
    if (index_keys(seek(p, f, at), cal_keys, CAL_N, off, 1)) return -1;
    for (int k = 0; k < CAL_N; k++)
        if (!off[k]) return mpk_fail(seek(p, f, at), "calibration has no \"%s\"", cal_keys[k]);
    int64_t version, ranks, heads, positions;
    if (mpk_read_int(seek(p, f, off[CAL_VERSION]), &version)) return -1;
    if (version != MTP_CALIBRATION_VERSION)
        return mpk_fail(p, "calibration version %lld is not supported (this build reads version %d)",
                        (long long)version, MTP_CALIBRATION_VERSION);
    if (mpk_read_int_in(seek(p, f, off[CAL_RANKS]), "calibration ranks", 0, INT32_MAX, &ranks)) return -1;
    if (ranks != DECODE_CAL_RANKS)
        return mpk_fail(p, "calibration: %lld ranks per head, this build reads %d", (long long)ranks, DECODE_CAL_RANKS);
    if (mpk_read_int_in(seek(p, f, off[CAL_HEADS]), "calibration heads", 1, HEADS_MAX, &heads)) return -1;
    if (heads != model_heads)
        return mpk_fail(p, "calibration: measured with %lld heads, the model has %d", (long long)heads, model_heads);
    if (mpk_read_int_in(seek(p, f, off[CAL_POSITIONS]), "calibration positions", 0, LONG_MAX, &positions)) return -1;
    c->heads = (int)heads;
    c->positions = (long)positions;

    uint32_t rows, cols;
    if (mpk_read_array(seek(p, f, off[CAL_RATES]), &rows)) return -1;
    if (rows != (uint32_t)(heads - 1))
        return mpk_fail(p, "calibration: %u rows of rates, %lld heads have %lld", rows, (long long)heads,
                        (long long)heads - 1);
    for (uint32_t d = 0; d < rows; d++) {
        if (mpk_read_array(p, &cols)) return -1;
        if (cols != DECODE_CAL_RANKS)
            return mpk_fail(p, "calibration: %u rates of head %u, not %d", cols, d + 2, DECODE_CAL_RANKS);
        for (int j = 0; j < DECODE_CAL_RANKS; j++)
            if (mpk_read_double(p, &c->rate[d][j])) return -1;
    }

    uint32_t n_trees;
    if (mpk_read_array(seek(p, f, off[CAL_TREES]), &n_trees)) return -1;
    if (n_trees > DECODE_TREE_MAX) return mpk_fail(p, "calibration: %u trees, at most %d", n_trees, DECODE_TREE_MAX);
    for (uint32_t k = 0; k < n_trees; k++)
        if (read_cal_tree(p, (int)k, &c->trees[k], &c->expected[k])) return -1;
    c->n_trees = (int)n_trees;

    char msg[256];
    if (decode_calibration_check(c, msg, sizeof msg)) return mpk_fail(seek(p, f, at), "%s", msg);
    return 0;
}

/* Pass 2, the model: version, config, tokenizer, then the tensors checked against the config. */
static int read_model(MpkReader *p, const MpkFile *f, const size_t *off, MtpModel *m) {
    int64_t version = 0;
    if (mpk_read_int(seek(p, f, off[TOP_VERSION]), &version)) return -1;
    if (version != MTP_FORMAT_VERSION)
        return mpk_fail(p, "format version %lld is not supported (this build reads version %d)", (long long)version,
                        MTP_FORMAT_VERSION);
    MtpConfig cfg;
    DsBpe *tok = NULL;
    if (read_config(seek(p, f, off[TOP_CONFIG]), &cfg)) return -1;
    if (read_tokenizer(seek(p, f, off[TOP_TOKENIZER]), cfg.trunk.vocab, &tok)) return -1;
    size_t n_params = mtp_param_counts(&cfg).total;
    char msg[200];
    int rc = 0;
    if (n_params > f->size / sizeof(float))
        rc = mpk_fail(p, "config needs %zu parameters, more than a %zu-byte file can hold", n_params, f->size);
    else if (mtp_model_build(m, &cfg, msg, sizeof msg)) rc = mpk_fail(p, "%s", msg);
    else m->tokenizer = tok, tok = NULL;
    ds_bpe_free(tok);
    if (rc) return -1;
    return read_tensors(seek(p, f, off[TOP_TENSORS]), m, m->params, "tensors");
}

int mtp_checkpoint_load(const char *path, MtpModel *m, MtpCheckpointExtra *x, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    memset(x, 0, sizeof *x);
    MpkFile f;
    if (mpk_file_map(&f, path, err, errlen)) return -1;
    x->file_size = f.size;
    MpkReader r, p; /* r: pass 1 over the whole map; p: pass 2, one part at a time */
    mpk_reader_init(&r, f.data, f.size);
    mpk_reader_init(&p, f.data, f.size);
    if (mpk_peek(&r) != MPK_MAP) {
        snprintf(err, errlen, "%s: not an mtp checkpoint (no msgpack map at byte 0)", path);
        mpk_file_unmap(&f);
        return -1;
    }
    size_t off[TOP_N] = {0};
    int rc = index_keys(&r, top_keys, TOP_N, off, 1);
    if (rc == 0 && mpk_left(&r) != 0) rc = mpk_fail(&r, "%zu bytes of trailing data", mpk_left(&r));
    if (rc == 0 && !off[TOP_FORMAT]) rc = mpk_fail(&r, "not an mtp checkpoint (no \"format\" key)");
    char fmt[64];
    if (rc == 0 && (mpk_read_cstr(seek(&p, &f, off[TOP_FORMAT]), fmt, sizeof fmt, "format") ||
                    strcmp(fmt, MTP_FORMAT_NAME) != 0))
        rc = p.failed ? -1 : mpk_fail(&p, "not an mtp checkpoint (format \"%s\")", fmt);
    if (rc == 0 && (!off[TOP_VERSION] || !off[TOP_CONFIG] || !off[TOP_TOKENIZER] || !off[TOP_TENSORS]))
        rc = mpk_fail(&r, "incomplete checkpoint (needs version, config, tokenizer, tensors)");
    if (rc == 0) rc = read_model(&p, &f, off, m);
    x->run.val_frac = 0.1;
    if (rc == 0 && off[TOP_RUN]) rc = read_run(seek(&p, &f, off[TOP_RUN]), &x->run);
    if (rc == 0 && off[TOP_CALIBRATION]) {
        rc = read_calibration(&p, &f, off[TOP_CALIBRATION], m->cfg.heads.n, &x->cal);
        x->has_calibration = rc == 0;
    }
    if (rc == 0 && off[TOP_TRAIN]) rc = read_train(seek(&p, &f, off[TOP_TRAIN]), m, x, f.size);
    if (rc) {
        snprintf(err, errlen, "%s: %s", path, r.failed ? r.err : p.err);
        mtp_model_free(m);
        mtp_checkpoint_extra_free(x);
        x->has_calibration = 0;
        memset(&x->cal, 0, sizeof x->cal);
    }
    mpk_file_unmap(&f);
    return rc;
}

void mtp_checkpoint_extra_free(MtpCheckpointExtra *x) {
    mtp_free(x->m);
    mtp_free(x->v);
    x->m = x->v = NULL;
    x->has_train = 0;
}

void mtp_trainer_restore(MtpTrainer *t, const MtpCheckpointExtra *x) {
    memcpy(t->m, x->m, t->model->n_params * sizeof(float));
    memcpy(t->v, x->v, t->model->n_params * sizeof(float));
    t->step = x->step;
    t->data_rng = x->data_rng;
    t->batches_drawn = x->batches_drawn;
}

int mtp_checkpoint_set_calibration(const char *path, const char *out, const DecodeCalibration *cal, char *err,
                                   size_t errlen) {
    MtpModel m;
    MtpCheckpointExtra x;
    if (mtp_checkpoint_load(path, &m, &x, err, errlen)) return -1;
    /* the train state goes back as it came: pack_train reads only these of a trainer */
    MtpTrainer t = {.model = &m, .opt = x.opt, .m = x.m, .v = x.v, .step = x.step, .data_rng = x.data_rng,
                    .batches_drawn = x.batches_drawn};
    const int rc = mtp_checkpoint_save_calibrated(out, &m, x.has_train ? &t : NULL, &x.run, cal, err, errlen);
    mtp_checkpoint_extra_free(&x);
    mtp_model_free(&m);
    return rc;
}

/* ---- tokenizer files -------------------------------------------------------------------------- */

#define MTP_TOKENIZER_FORMAT "mtp-tokenizer"

int mtp_tokenizer_save(const char *path, const DsBpe *t, char *err, size_t errlen) {
    MpkWriter w;
    if (mpk_writer_open(&w, path, err, errlen)) return -1;
    msgpack_pack_map(&w.pk, 3);
    mpk_pack_key_str(&w.pk, "format", MTP_TOKENIZER_FORMAT);
    mpk_pack_key_int(&w.pk, "version", 1);
    mpk_pack_str(&w.pk, "tokenizer");
    pack_tokenizer(&w.pk, t);
    return mpk_writer_commit(&w, err, errlen);
}

int mtp_tokenizer_load(const char *path, DsBpe **t, char *err, size_t errlen) {
    *t = NULL;
    MpkFile f;
    if (mpk_file_map(&f, path, err, errlen)) return -1;
    MpkReader r, p;
    mpk_reader_init(&r, f.data, f.size);
    mpk_reader_init(&p, f.data, f.size);
    /* find "format" and "tokenizer" among the top-level keys (skipping a checkpoint's tensors
       costs nothing: bins are skipped by length) */
    static const char *const keys[2] = {"format", "tokenizer"};
    size_t off[2] = {0, 0};
    int rc = mpk_peek(&r) == MPK_MAP ? index_keys(&r, keys, 2, off, 0)
                                      : mpk_fail(&r, "not a tokenizer file or checkpoint");
    char fmt[64] = "";
    if (rc == 0 && !off[0]) rc = mpk_fail(&r, "not a tokenizer file or checkpoint (no \"format\")");
    if (rc == 0) rc = mpk_read_cstr(seek(&p, &f, off[0]), fmt, sizeof fmt, "format");
    if (rc == 0 && strcmp(fmt, MTP_TOKENIZER_FORMAT) != 0 && strcmp(fmt, MTP_FORMAT_NAME) != 0)
        rc = mpk_fail(&p, "format \"%s\" is neither a tokenizer file nor a checkpoint", fmt);
    if (rc == 0 && !off[1]) rc = mpk_fail(&p, "no tokenizer in the file");
    if (rc == 0) rc = read_tokenizer(seek(&p, &f, off[1]), 0, t);
    if (rc) snprintf(err, errlen, "%s: %s", path, r.failed ? r.err : p.err);
    mpk_file_unmap(&f);
    return rc;
}
