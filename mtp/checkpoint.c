/* checkpoint.c - the checkpoint file: one msgpack map, documented in README.md ("Checkpoint format").
 *
 * Writing uses msgpack-c's packer through MpkWriter (temp file, fsync, rename). Reading walks the
 * mapped file with MpkReader and trusts nothing: every count is bounded by the bytes left, the
 * config is range-checked and the parameter count it implies must fit in the file before anything
 * is allocated, and every tensor's name, dtype, shape, length and CRC-32 is checked. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mtp/core/mpk.h"
#include "mtp/mtp.h"

/* ---- writing -------------------------------------------------------------------------------- */

static void pack_str(msgpack_packer *pk, const char *s) {
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void pack_key_int(msgpack_packer *pk, const char *key, int64_t v) {
    pack_str(pk, key);
    msgpack_pack_int64(pk, v);
}

static void pack_key_uint(msgpack_packer *pk, const char *key, uint64_t v) {
    pack_str(pk, key);
    msgpack_pack_uint64(pk, v);
}

static void pack_key_double(msgpack_packer *pk, const char *key, double v) {
    pack_str(pk, key);
    msgpack_pack_double(pk, v);
}

static void pack_key_str(msgpack_packer *pk, const char *key, const char *v) {
    pack_str(pk, key);
    pack_str(pk, v);
}

/* tensors: [{name, dtype, shape, crc32, data}, ...] with data taken from buf (laid out like params) */
static void pack_tensors(msgpack_packer *pk, const MtpModel *m, const float *buf) {
    msgpack_pack_array(pk, m->n_tensors);
    for (int i = 0; i < m->n_tensors; i++) {
        const MtpTensor *t = &m->tensors[i];
        const float *data = buf + t->offset;
        size_t bytes = t->size * sizeof(float);
        msgpack_pack_map(pk, 5);
        pack_key_str(pk, "name", t->name);
        pack_key_str(pk, "dtype", "f32");
        pack_str(pk, "shape");
        msgpack_pack_array(pk, t->ndim);
        for (int d = 0; d < t->ndim; d++) msgpack_pack_uint32(pk, (uint32_t)t->shape[d]);
        pack_key_uint(pk, "crc32", mpk_crc32(0, data, bytes));
        pack_str(pk, "data");
        msgpack_pack_bin(pk, bytes);
        msgpack_pack_bin_body(pk, data, bytes);
    }
}

/* {type, vocab, bos, eos, pad} for bytes; BPE adds its merges ((n, 2) int32 little-endian) and hash */
static void pack_tokenizer(msgpack_packer *pk, const DsBpe *t) {
    msgpack_pack_map(pk, t ? 7 : 5);
    pack_key_str(pk, "type", t ? "bpe" : "bytes");
    pack_key_int(pk, "vocab", mtp_tokenizer_vocab(t));
    pack_key_int(pk, "bos", DS_BOS);
    pack_key_int(pk, "eos", DS_EOS);
    pack_key_int(pk, "pad", DS_PAD);
    if (!t) return;
    size_t bytes = (size_t)ds_bpe_n_merges(t) * 2 * sizeof(int32_t);
    pack_str(pk, "merges");
    msgpack_pack_bin(pk, bytes);
    msgpack_pack_bin_body(pk, ds_bpe_merges(t), bytes);
    pack_key_uint(pk, "hash", ds_bpe_hash(t));
}

static void pack_options(msgpack_packer *pk, const MtpTrainOptions *o) {
    msgpack_pack_map(pk, 12);
    pack_key_int(pk, "steps", o->steps);
    pack_key_int(pk, "batch", o->batch);
    pack_key_int(pk, "accum", o->accum);
    pack_key_int(pk, "warmup", o->warmup);
    pack_key_double(pk, "lr", o->lr);
    pack_key_double(pk, "min_lr", o->min_lr);
    pack_key_double(pk, "beta1", o->beta1);
    pack_key_double(pk, "beta2", o->beta2);
    pack_key_double(pk, "eps", o->eps);
    pack_key_double(pk, "weight_decay", o->weight_decay);
    pack_key_double(pk, "grad_clip", o->grad_clip);
    pack_key_uint(pk, "seed", o->seed);
}

int mtp_checkpoint_save(const char *path, const MtpModel *m, const MtpTrainer *t, const MtpRunInfo *run,
                        char *err, size_t errlen) {
    MpkWriter w;
    if (mpk_writer_open(&w, path, err, errlen)) return -1;
    msgpack_packer *pk = &w.pk;
    const TrunkConfig *tc = &m->cfg.trunk;

    msgpack_pack_map(pk, t ? 7 : 6);
    pack_key_str(pk, "format", MTP_FORMAT_NAME);
    pack_key_int(pk, "version", MTP_FORMAT_VERSION);

    pack_str(pk, "config");
    msgpack_pack_map(pk, 8);
    pack_key_int(pk, "vocab", tc->vocab);
    pack_key_int(pk, "dim", tc->dim);
    pack_key_int(pk, "layers", tc->layers);
    pack_key_int(pk, "attn_heads", tc->attn_heads);
    pack_key_int(pk, "ffn", tc->ffn);
    pack_key_int(pk, "ctx", tc->ctx);
    pack_key_int(pk, "heads", m->cfg.heads.n);
    pack_key_str(pk, "head_type", heads_type_name(m->cfg.heads.type));

    pack_str(pk, "tokenizer");
    pack_tokenizer(pk, m->tokenizer);

    pack_str(pk, "run");
    msgpack_pack_map(pk, 7);
    pack_key_str(pk, "data", run->data_spec);
    pack_str(pk, "sources");
    int n_src = run->n_sources ? run->n_sources : 1;
    msgpack_pack_array(pk, (size_t)n_src);
    for (int i = 0; i < n_src; i++) {
        msgpack_pack_map(pk, 2);
        pack_key_str(pk, "spec", run->n_sources ? run->sources[i].spec : run->data_spec);
        pack_key_double(pk, "weight", run->n_sources ? run->sources[i].weight : 1.0);
    }
    pack_str(pk, "jsonl");
    msgpack_pack_map(pk, 4);
    pack_key_str(pk, "question", run->jsonl_question);
    pack_key_str(pk, "answer", run->jsonl_answer);
    pack_key_str(pk, "text", run->jsonl_text);
    pack_key_int(pk, "skip_bad_lines", run->skip_bad_lines);
    pack_key_double(pk, "val_frac", run->val_frac);
    pack_key_uint(pk, "data_seed", run->data_seed);
    pack_key_int(pk, "difficulty", run->difficulty);
    pack_key_str(pk, "precision", mtp_precision_name(run->precision));

    pack_str(pk, "tensors");
    pack_tensors(pk, m, m->params);

    if (t) {
        pack_str(pk, "train");
        msgpack_pack_map(pk, 6);
        pack_key_int(pk, "step", t->step);
        pack_key_uint(pk, "batches_drawn", t->batches_drawn);
        pack_str(pk, "rng");
        msgpack_pack_array(pk, 4);
        for (int i = 0; i < 4; i++) msgpack_pack_uint64(pk, t->data_rng.s[i]);
        pack_str(pk, "options");
        pack_options(pk, &t->opt);
        pack_str(pk, "adam_m");
        pack_tensors(pk, m, t->m);
        pack_str(pk, "adam_v");
        pack_tensors(pk, m, t->v);
    }
    return mpk_writer_commit(&w, err, errlen);
}

/* ---- reading -------------------------------------------------------------------------------- */

/* Reads a map key into a NUL-terminated buffer (keys we know are short; longer ones are
 * truncated, which simply makes them unknown). */
static int read_key(MpkReader *r, char *key, size_t cap) {
    const char *s;
    uint32_t n;
    if (mpk_read_str(r, &s, &n)) return -1;
    size_t k = n < cap - 1 ? n : cap - 1;
    memcpy(key, s, k);
    key[k] = 0;
    return 0;
}

static int read_int_in(MpkReader *r, const char *what, int64_t lo, int64_t hi, int64_t *v) {
    if (mpk_read_int(r, v)) return -1;
    if (*v < lo || *v > hi) return mpk_fail(r, "%s = %lld is out of range [%lld, %lld]", what, (long long)*v,
                                            (long long)lo, (long long)hi);
    return 0;
}

static int read_string(MpkReader *r, char *out, size_t cap, const char *what) {
    const char *s;
    uint32_t n;
    if (mpk_read_str(r, &s, &n)) return -1;
    if (n >= cap) return mpk_fail(r, "%s is too long (%u bytes)", what, n);
    memcpy(out, s, n);
    out[n] = 0;
    return 0;
}

static int read_config(MpkReader *r, MtpConfig *c) {
    uint32_t n;
    if (mpk_read_map(r, &n)) return -1;
    int64_t v[7] = {-1, -1, -1, -1, -1, -1, -1};
    static const char *names[7] = {"vocab", "dim", "layers", "attn_heads", "ffn", "ctx", "heads"};
    char head_type[32] = "";
    for (uint32_t i = 0; i < n; i++) {
        char key[32];
        if (read_key(r, key, sizeof key)) return -1;
        int found = 0;
        for (int k = 0; k < 7; k++)
            if (strcmp(key, names[k]) == 0) {
                if (read_int_in(r, key, 0, INT32_MAX, &v[k])) return -1;
                found = 1;
            }
        if (found) continue;
        if (strcmp(key, "head_type") == 0) {
            if (read_string(r, head_type, sizeof head_type, "head_type")) return -1;
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
        char key[32];
        if (read_key(r, key, sizeof key)) return -1;
        if (strcmp(key, "type") == 0) {
            if (read_string(r, type, sizeof type, "tokenizer type")) return -1;
        } else if (strcmp(key, "vocab") == 0) {
            if (read_int_in(r, "tokenizer vocab", 0, INT32_MAX, &tok_vocab)) return -1;
        } else if (strcmp(key, "bos") == 0 || strcmp(key, "eos") == 0 || strcmp(key, "pad") == 0) {
            if (read_int_in(r, key, 0, INT32_MAX, &special[key[0] == 'b' ? 0 : key[0] == 'e' ? 1 : 2])) return -1;
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

static int read_run(MpkReader *r, MtpRunInfo *run) {
    uint32_t n;
    if (mpk_read_map(r, &n)) return -1;
    for (uint32_t i = 0; i < n; i++) {
        char key[32];
        if (read_key(r, key, sizeof key)) return -1;
        int64_t v;
        uint64_t u;
        if (strcmp(key, "data") == 0) {
            if (read_string(r, run->data_spec, sizeof run->data_spec, "run data")) return -1;
        } else if (strcmp(key, "val_frac") == 0) {
            if (mpk_read_double(r, &run->val_frac)) return -1;
        } else if (strcmp(key, "data_seed") == 0) {
            if (mpk_read_uint(r, &u)) return -1;
            run->data_seed = u;
        } else if (strcmp(key, "difficulty") == 0) {
            if (read_int_in(r, "difficulty", 0, 1000, &v)) return -1;
            run->difficulty = (int)v;
        } else if (strcmp(key, "precision") == 0) {
            char p[16];
            if (read_string(r, p, sizeof p, "precision")) return -1;
            run->precision = strcmp(p, "bf16") == 0 ? MTP_BF16 : MTP_FP32;
        } else if (strcmp(key, "sources") == 0) {
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
                    char sk[16];
                    if (read_key(r, sk, sizeof sk)) return -1;
                    if (strcmp(sk, "spec") == 0) {
                        if (read_string(r, s->spec, sizeof s->spec, "run source")) return -1;
                    } else if (strcmp(sk, "weight") == 0) {
                        if (mpk_read_double(r, &s->weight)) return -1;
                        if (!(s->weight > 0) || !isfinite(s->weight)) return mpk_fail(r, "run: source weight %g", s->weight);
                    } else if (mpk_skip(r)) return -1;
                }
            }
        } else if (strcmp(key, "jsonl") == 0) {
            uint32_t m;
            if (mpk_read_map(r, &m)) return -1;
            for (uint32_t j = 0; j < m; j++) {
                char jk[32];
                if (read_key(r, jk, sizeof jk)) return -1;
                char *dst = strcmp(jk, "question") == 0 ? run->jsonl_question : strcmp(jk, "answer") == 0 ? run->jsonl_answer
                          : strcmp(jk, "text") == 0 ? run->jsonl_text : NULL;
                if (dst) {
                    if (read_string(r, dst, sizeof run->jsonl_text, "jsonl field")) return -1;
                } else if (strcmp(jk, "skip_bad_lines") == 0) {
                    if (read_int_in(r, jk, 0, 1, &v)) return -1;
                    run->skip_bad_lines = (int)v;
                } else if (mpk_skip(r)) return -1;
            }
        } else if (mpk_skip(r)) return -1;
    }
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
        uint32_t nk;
        if ((rc = mpk_read_map(r, &nk))) break;
        char name[64] = "", dtype[16] = "";
        int64_t shape[3] = {0, 0, 0};
        int ndim = -1, have_crc = 0;
        uint64_t crc = 0;
        const uint8_t *data = NULL;
        uint32_t len = 0;
        for (uint32_t k = 0; k < nk && rc == 0; k++) {
            char key[16];
            if ((rc = read_key(r, key, sizeof key))) break;
            if (strcmp(key, "name") == 0) rc = read_string(r, name, sizeof name, "tensor name");
            else if (strcmp(key, "dtype") == 0) rc = read_string(r, dtype, sizeof dtype, "dtype");
            else if (strcmp(key, "crc32") == 0) rc = mpk_read_uint(r, &crc), have_crc = 1;
            else if (strcmp(key, "data") == 0) rc = mpk_read_bin(r, &data, &len);
            else if (strcmp(key, "shape") == 0) {
                uint32_t nd;
                if ((rc = mpk_read_array(r, &nd))) break;
                if (nd < 1 || nd > 2) {
                    rc = mpk_fail(r, "tensor %s: %u dimensions", name, nd);
                    break;
                }
                ndim = (int)nd;
                for (uint32_t d = 0; d < nd && rc == 0; d++) rc = read_int_in(r, "shape", 0, INT32_MAX, &shape[d]);
            } else rc = mpk_skip(r);
        }
        if (rc) break;
        const MtpTensor *t = mtp_model_tensor(m, name);
        if (!t) {
            rc = mpk_fail(r, "%s: unknown tensor \"%s\" for this config", what, name);
            break;
        }
        int idx = (int)(t - m->tensors);
        if (seen[idx]) {
            rc = mpk_fail(r, "%s: tensor %s appears twice", what, name);
            break;
        }
        seen[idx] = 1;
        if (strcmp(dtype, "f32") != 0) {
            rc = mpk_fail(r, "tensor %s: dtype \"%s\", expected \"f32\"", name, dtype);
            break;
        }
        if (ndim != t->ndim || shape[0] != t->shape[0] || (ndim == 2 && shape[1] != t->shape[1])) {
            char got[48], want[48];
            if (ndim == 2) snprintf(got, sizeof got, "[%lld, %lld]", (long long)shape[0], (long long)shape[1]);
            else snprintf(got, sizeof got, "[%lld]", (long long)shape[0]);
            if (t->ndim == 2) snprintf(want, sizeof want, "[%d, %d]", t->shape[0], t->shape[1]);
            else snprintf(want, sizeof want, "[%d]", t->shape[0]);
            rc = mpk_fail(r, "tensor %s: shape %s but the config needs %s", name, ndim < 0 ? "missing" : got, want);
            break;
        }
        if (!data || len != t->size * sizeof(float)) {
            rc = mpk_fail(r, "tensor %s: %u data bytes, expected %zu", name, len, t->size * sizeof(float));
            break;
        }
        if (!have_crc || crc != mpk_crc32(0, data, len)) {
            rc = mpk_fail(r, "tensor %s: checksum mismatch (the file is corrupted)", name);
            break;
        }
        memcpy(buf + t->offset, data, len);
    }
    free(seen);
    return rc;
}

static int read_options(MpkReader *r, MtpTrainOptions *o) {
    uint32_t n;
    if (mpk_read_map(r, &n)) return -1;
    for (uint32_t i = 0; i < n; i++) {
        char key[32];
        if (read_key(r, key, sizeof key)) return -1;
        int64_t v = 0;
        double d = 0;
        uint64_t u = 0;
        int rc = 0;
        if (strcmp(key, "steps") == 0) rc = read_int_in(r, key, 0, INT32_MAX, &v), o->steps = (int)v;
        else if (strcmp(key, "batch") == 0) rc = read_int_in(r, key, 1, 1 << 20, &v), o->batch = (int)v;
        else if (strcmp(key, "accum") == 0) rc = read_int_in(r, key, 1, 1 << 20, &v), o->accum = (int)v;
        else if (strcmp(key, "warmup") == 0) rc = read_int_in(r, key, 0, INT32_MAX, &v), o->warmup = (int)v;
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
        char key[32];
        if (read_key(r, key, sizeof key)) return -1;
        int64_t v;
        if (strcmp(key, "step") == 0) {
            if (read_int_in(r, "step", 0, INT32_MAX, &v)) return -1;
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

int mtp_checkpoint_load(const char *path, MtpModel *m, MtpCheckpointExtra *x, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    memset(x, 0, sizeof *x);
    MpkFile f;
    if (mpk_file_map(&f, path, err, errlen)) return -1;
    x->file_size = f.size;
    MpkReader r;
    mpk_reader_init(&r, f.data, f.size);

    /* pass 1: find the top-level values (keys may come in any order; the config must be known
     * before the tensors can be checked) */
    uint32_t n;
    size_t off_format = 0, off_version = 0, off_config = 0, off_tok = 0, off_tensors = 0, off_train = 0,
           off_run = 0;
    int rc = 0;
    if (mpk_peek(&r) != MPK_MAP) {
        snprintf(err, errlen, "%s: not an mtp checkpoint (no msgpack map at byte 0)", path);
        mpk_file_unmap(&f);
        return -1;
    }
    rc = mpk_read_map(&r, &n);
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        char key[32];
        if ((rc = read_key(&r, key, sizeof key))) break;
        size_t off = mpk_offset(&r);
        size_t *slot = strcmp(key, "format") == 0 ? &off_format : strcmp(key, "version") == 0 ? &off_version
                     : strcmp(key, "config") == 0 ? &off_config : strcmp(key, "tokenizer") == 0 ? &off_tok
                     : strcmp(key, "tensors") == 0 ? &off_tensors : strcmp(key, "train") == 0 ? &off_train
                     : strcmp(key, "run") == 0 ? &off_run : NULL;
        if (slot) {
            if (*slot) {
                rc = mpk_fail(&r, "key \"%s\" appears twice", key);
                break;
            }
            *slot = off;
        }
        rc = mpk_skip(&r);
    }
    if (rc == 0 && mpk_left(&r) != 0) rc = mpk_fail(&r, "%zu bytes of trailing data", mpk_left(&r));
    if (rc == 0 && !off_format) rc = mpk_fail(&r, "not an mtp checkpoint (no \"format\" key)");

    /* pass 2: read each part in dependency order */
    MpkReader p;
#define SEEK(off) (mpk_reader_init(&p, f.data, f.size), p.p = p.base + (off), &p)
    if (rc == 0) {
        char fmt[64];
        if (read_string(SEEK(off_format), fmt, sizeof fmt, "format") || strcmp(fmt, MTP_FORMAT_NAME) != 0)
            rc = p.failed ? -1 : mpk_fail(&p, "not an mtp checkpoint (format \"%s\")", fmt);
    }
    if (rc == 0 && (!off_version || !off_config || !off_tok || !off_tensors))
        rc = mpk_fail(&r, "incomplete checkpoint (needs version, config, tokenizer, tensors)");
    int64_t version = 0;
    if (rc == 0 && (rc = mpk_read_int(SEEK(off_version), &version)) == 0 && version != MTP_FORMAT_VERSION)
        rc = mpk_fail(&p, "format version %lld is not supported (this build reads version %d)", (long long)version,
                      MTP_FORMAT_VERSION);
    MtpConfig cfg;
    DsBpe *tok = NULL;
    if (rc == 0) rc = read_config(SEEK(off_config), &cfg);
    if (rc == 0) rc = read_tokenizer(SEEK(off_tok), cfg.trunk.vocab, &tok);
    if (rc == 0) {
        size_t n_params = mtp_param_counts(&cfg).total;
        if (n_params > f.size / sizeof(float))
            rc = mpk_fail(&p, "config needs %zu parameters, more than a %zu-byte file can hold", n_params, f.size);
    }
    if (rc == 0) {
        char msg[200];
        if (mtp_model_build(m, &cfg, msg, sizeof msg)) rc = mpk_fail(&p, "%s", msg);
        else m->tokenizer = tok, tok = NULL;
    }
    ds_bpe_free(tok);
    if (rc == 0) rc = read_tensors(SEEK(off_tensors), m, m->params, "tensors");
    x->run.val_frac = 0.1;
    if (rc == 0 && off_run) rc = read_run(SEEK(off_run), &x->run);
    if (rc == 0 && off_train) rc = read_train(SEEK(off_train), m, x, f.size);
#undef SEEK
    if (rc) {
        snprintf(err, errlen, "%s: %s", path, r.failed ? r.err : p.err);
        mtp_model_free(m);
        mtp_checkpoint_extra_free(x);
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

/* ---- tokenizer files -------------------------------------------------------------------------- */

#define MTP_TOKENIZER_FORMAT "mtp-tokenizer"

int mtp_tokenizer_save(const char *path, const DsBpe *t, char *err, size_t errlen) {
    MpkWriter w;
    if (mpk_writer_open(&w, path, err, errlen)) return -1;
    msgpack_pack_map(&w.pk, 3);
    pack_key_str(&w.pk, "format", MTP_TOKENIZER_FORMAT);
    pack_key_int(&w.pk, "version", 1);
    pack_str(&w.pk, "tokenizer");
    pack_tokenizer(&w.pk, t);
    return mpk_writer_commit(&w, err, errlen);
}

int mtp_tokenizer_load(const char *path, DsBpe **t, char *err, size_t errlen) {
    *t = NULL;
    MpkFile f;
    if (mpk_file_map(&f, path, err, errlen)) return -1;
    MpkReader r;
    mpk_reader_init(&r, f.data, f.size);
    /* find "format" and "tokenizer" among the top-level keys (skipping a checkpoint's tensors
       costs nothing: bins are skipped by length) */
    uint32_t n = 0;
    size_t off_format = 0, off_tok = 0;
    int rc = mpk_peek(&r) == MPK_MAP ? mpk_read_map(&r, &n) : mpk_fail(&r, "not a tokenizer file or checkpoint");
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        char key[32];
        if ((rc = read_key(&r, key, sizeof key))) break;
        if (strcmp(key, "format") == 0) off_format = mpk_offset(&r);
        if (strcmp(key, "tokenizer") == 0) off_tok = mpk_offset(&r);
        rc = mpk_skip(&r);
    }
    MpkReader p;
    char fmt[64] = "";
    if (rc == 0 && !off_format) rc = mpk_fail(&r, "not a tokenizer file or checkpoint (no \"format\")");
    if (rc == 0) {
        mpk_reader_init(&p, f.data, f.size);
        p.p = p.base + off_format;
        rc = read_string(&p, fmt, sizeof fmt, "format");
        if (rc == 0 && strcmp(fmt, MTP_TOKENIZER_FORMAT) != 0 && strcmp(fmt, MTP_FORMAT_NAME) != 0)
            rc = mpk_fail(&p, "format \"%s\" is neither a tokenizer file nor a checkpoint", fmt);
        if (rc == 0 && !off_tok) rc = mpk_fail(&p, "no tokenizer in the file");
        if (rc == 0) {
            p.p = p.base + off_tok;
            rc = read_tokenizer(&p, 0, t);
        }
    }
    if (rc) snprintf(err, errlen, "%s: %s", path, r.failed ? r.err : p.err);
    mpk_file_unmap(&f);
    return rc;
}
