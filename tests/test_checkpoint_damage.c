/* test_checkpoint_damage.c - damaged, crafted and foreign files given to mtp_checkpoint_load:
 * every truncation in the first 2 KB and a few hundred more, a few hundred single-byte flips (every
 * flip inside tensor data must be caught by the checksum; any flip that loads must give back the
 * exact same weights), crafted headers declaring huge counts, configs that imply billions of
 * parameters in a small file, hand-written checkpoints with tensors that do not match the config,
 * and files that are not checkpoints at all. The good file holds a decoding calibration, so the
 * sweeps run through it too, and every byte of it is flipped once; hand-written calibrations that
 * break each rule (a parent that is not earlier, a rate of 1.5, 33 trees, another model's heads,
 * an unknown version, ...) or are cut short must fail, unknown keys in them must not. Every failure
 * must be -1 with a one-line message naming the path, and the outputs must be left empty.
 * TEST_VERBOSE=1 prints every message. */
#include "tests/ckpt_test.h"

/* Records where every tensor's data lies in the file (tensors, adam_m, adam_v), for the flips. */
static void find_tensor_data(const uint8_t *buf, size_t n) {
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    g_n_data = 0;
    if (msgpack_unpack_next(&u, (const char *)buf, n, &off) == MSGPACK_UNPACK_SUCCESS) {
        const msgpack_object *tr = map_get(&u.data, "train");
        const msgpack_object *arrays[3] = {map_get(&u.data, "tensors"), tr ? map_get(tr, "adam_m") : NULL,
                                           tr ? map_get(tr, "adam_v") : NULL};
        for (int k = 0; k < 3; k++) {
            if (!arrays[k] || arrays[k]->type != MSGPACK_OBJECT_ARRAY) continue;
            for (uint32_t i = 0; i < arrays[k]->via.array.size; i++) {
                const msgpack_object *d = map_get(&arrays[k]->via.array.ptr[i], "data");
                if (!d || d->type != MSGPACK_OBJECT_BIN || g_n_data >= (int)(sizeof g_data / sizeof g_data[0])) continue;
                size_t start = (size_t)((const uint8_t *)d->via.bin.ptr - buf);
                g_data[g_n_data++] = (Range){start, start + d->via.bin.size};
            }
        }
    }
    msgpack_unpacked_destroy(&u);
    CHECK(g_n_data > 0);
}

/* ---- truncation and flipped bytes ----------------------------------------------------------- */

static int cmp_desc(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The file is written once and cut shorter and shorter (offsets in decreasing order). */
static void test_truncated(const uint8_t *buf, size_t n) {
    char p[600], err[512];
    path_in(p, sizeof p, "truncated.ckpt");
    size_t offs[8192];
    int k = 0;
    for (size_t i = 0; i < 2048 && i < n; i++) offs[k++] = i;
    for (int i = 0; i < 300; i++) offs[k++] = 2048 + (n - 2048) * (size_t)i / 300;
    for (size_t i = 1; i <= 16 && i < n; i++) offs[k++] = n - i;
    /* at multiples of the page size a read past the end of the mapping faults, even without ASan */
    for (size_t i = 4096; i < n && k < (int)(sizeof offs / sizeof offs[0]); i += 4096) offs[k++] = i;
    qsort(offs, (size_t)k, sizeof offs[0], cmp_desc);
    write_all(p, buf, n);
    int bad = 0, tested = 0;
    for (int i = 0; i < k; i++) {
        if (offs[i] >= n || (i > 0 && offs[i] == offs[i - 1])) continue;
        if (truncate(p, (off_t)offs[i]) != 0) {
            CHECK_MSG(0, "truncate %s: %s", p, strerror(errno));
            break;
        }
        MtpModel m;
        MtpCheckpointExtra x;
        memset(err, 0, sizeof err);
        int rc = mtp_checkpoint_load(p, &m, &x, err, sizeof err);
        tested++;
        if (!good_failure(rc, err, p, &m, &x)) {
            if (bad++ < 10) CHECK_MSG(0, "truncated at %zu of %zu: rc %d, '%s'", offs[i], n, rc, err);
            if (rc == 0) mtp_checkpoint_extra_free(&x), mtp_model_free(&m);
        }
    }
    CHECK_MSG(bad == 0, "%d of %d truncations not rejected cleanly", bad, tested);
    CHECK(tested > 2300);
    unlink(p);
}

static void expect_whole_file(const char *p, const uint8_t *buf, size_t n) {
    size_t got;
    uint8_t *b = read_all(p, &got);
    CHECK(b && got == n && memcmp(b, buf, n) == 0);
    free(b);
}

static int in_data(size_t pos) {
    for (int i = 0; i < g_n_data; i++)
        if (pos >= g_data[i].start && pos < g_data[i].end) return 1;
    return 0;
}

/* A damaged file that loads anyway: the weights and moments exact, and a calibration, if one
   came back, one that passes its checks for this model. */
static int loaded_intact(const MtpModel *m, const MtpCheckpointExtra *ex, const MtpModel *ref, const MtpTrainer *tref) {
    char msg[256];
    return m->n_params == ref->n_params && memcmp(m->params, ref->params, ref->n_params * sizeof(float)) == 0 &&
           (!ex->has_train || (memcmp(ex->m, tref->m, ref->n_params * sizeof(float)) == 0 &&
                               memcmp(ex->v, tref->v, ref->n_params * sizeof(float)) == 0)) &&
           (!ex->has_calibration ||
            (decode_calibration_check(&ex->cal, msg, sizeof msg) == 0 && ex->cal.heads == ref->cfg.heads.n));
}

/* The bytes of the calibration's value: from after its key to the "tensors" key the writer puts
   after it. */
static int find_calibration(const uint8_t *buf, size_t n, size_t *start, size_t *end) {
    static const uint8_t key[] = {0xab, 'c', 'a', 'l', 'i', 'b', 'r', 'a', 't', 'i', 'o', 'n'};
    static const uint8_t next[] = {0xa7, 't', 'e', 'n', 's', 'o', 'r', 's'};
    const uint8_t *k = memmem(buf, n, key, sizeof key);
    if (!k) return -1;
    *start = (size_t)(k - buf) + sizeof key;
    const uint8_t *e = memmem(buf + *start, n - *start, next, sizeof next);
    if (!e) return -1;
    *end = (size_t)(e - buf);
    return 0;
}

/* Every byte of the calibration flipped once (by a random nonzero mask): each load fails cleanly
   or gives back a consistent calibration with the weights intact. */
static void test_flipped_calibration(const uint8_t *buf, size_t n, const MtpModel *ref, const MtpTrainer *tref,
                                     const DecodeCalibration *cal) {
    size_t start, end;
    CHECK(find_calibration(buf, n, &start, &end) == 0 && end > start + 200);
    if (find_calibration(buf, n, &start, &end)) return;
    char p[600], err[512];
    path_in(p, sizeof p, "flipped_cal.ckpt");
    write_all(p, buf, n);
    int fd = open(p, O_WRONLY);
    CHECK(fd >= 0);
    if (fd < 0) return;
    MtpRng rng;
    mtp_rng_seed(&rng, 77);
    int failed = 0, same = 0, changed = 0, bad = 0;
    for (size_t pos = start; pos < end; pos++) {
        uint8_t x = (uint8_t)(1 + mtp_rng_below(&rng, 255)), flipped = buf[pos] ^ x;
        if (pwrite(fd, &flipped, 1, (off_t)pos) != 1) break;
        MtpModel m;
        MtpCheckpointExtra ex;
        memset(err, 0, sizeof err);
        int rc = mtp_checkpoint_load(p, &m, &ex, err, sizeof err), ok;
        if (rc == 0) {
            ok = loaded_intact(&m, &ex, ref, tref) && ex.has_calibration;
            if (ex.has_calibration && same_calibration(&ex.cal, cal)) same++;
            else changed++;
            mtp_checkpoint_extra_free(&ex), mtp_model_free(&m);
        } else ok = good_failure(rc, err, p, &m, &ex), failed++;
        if (!ok && bad++ < 10) CHECK_MSG(0, "calibration flip 0x%02x at %zu: rc %d, '%s'", x, pos, rc, err);
        if (pwrite(fd, &buf[pos], 1, (off_t)pos) != 1) break;
    }
    close(fd);
    expect_whole_file(p, buf, n);
    CHECK_MSG(bad == 0, "%d calibration flips mishandled", bad);
    CHECK(failed > 0 && changed > 0);
    fprintf(stderr, "calibration flips: %zu bytes: %d refused, %d loaded changed, %d loaded the same\n", end - start,
            failed, changed, same);
    unlink(p);
}

static void test_flipped(const uint8_t *buf, size_t n, const MtpModel *ref, const MtpTrainer *tref) {
    char p[600], err[512];
    path_in(p, sizeof p, "flipped.ckpt");
    /* written once; each flip is written in place and undone after the load */
    write_all(p, buf, n);
    int fd = open(p, O_WRONLY);
    CHECK(fd >= 0);
    if (fd < 0) return;
    MtpRng rng;
    mtp_rng_seed(&rng, 2024);
    int n_data = 0, n_other = 0, n_loaded = 0, bad = 0;
    for (int it = 0; it < 500; it++) {
        size_t pos;
        if (it < 200 && g_n_data > 0) { /* forced into tensor data */
            const Range *r = &g_data[mtp_rng_below(&rng, (uint64_t)g_n_data)];
            pos = r->start + (size_t)mtp_rng_below(&rng, r->end - r->start);
        } else { /* outside tensor data: anywhere, or in the structured head of the file */
            do pos = (size_t)mtp_rng_below(&rng, it < 350 ? n : (n < 4096 ? n : 4096));
            while (in_data(pos));
        }
        uint8_t x = (uint8_t)(1 + mtp_rng_below(&rng, 255));
        uint8_t flipped = buf[pos] ^ x;
        if (pwrite(fd, &flipped, 1, (off_t)pos) != 1) {
            CHECK_MSG(0, "pwrite: %s", strerror(errno));
            break;
        }
        MtpModel m;
        MtpCheckpointExtra ex;
        memset(err, 0, sizeof err);
        int rc = mtp_checkpoint_load(p, &m, &ex, err, sizeof err);
        int data = in_data(pos), ok;
        if (data) {
            n_data++;
            ok = good_failure(rc, err, p, &m, &ex) && strstr(err, "checksum") != NULL;
        } else {
            n_other++;
            if (rc == 0) {
                /* harmless (say an option value or the run info): the weights and moments must be exact */
                n_loaded++;
                ok = loaded_intact(&m, &ex, ref, tref);
            } else ok = good_failure(rc, err, p, &m, &ex);
        }
        if (!ok && bad++ < 10)
            CHECK_MSG(0, "flip 0x%02x at %zu (%s tensor data): rc %d, '%s'", x, pos, data ? "in" : "outside", rc, err);
        if (rc == 0) mtp_checkpoint_extra_free(&ex), mtp_model_free(&m);
        if (pwrite(fd, &buf[pos], 1, (off_t)pos) != 1) {
            CHECK_MSG(0, "pwrite: %s", strerror(errno));
            break;
        }
    }
    close(fd);
    /* every flip was undone */
    expect_whole_file(p, buf, n);
    CHECK_MSG(bad == 0, "%d of 500 flips mishandled", bad);
    CHECK(n_data >= 200 && n_other >= 100);
    fprintf(stderr, "flips: %d in tensor data, %d elsewhere (%d of those loaded)\n", n_data, n_other, n_loaded);
    unlink(p);
}

/* ---- hand-written checkpoints --------------------------------------------------------------- */

static void pk_str(msgpack_packer *pk, const char *s) { msgpack_pack_str_with_body(pk, s, strlen(s)); }
static void pk_kv_int(msgpack_packer *pk, const char *k, int64_t v) {
    pk_str(pk, k);
    msgpack_pack_int64(pk, v);
}
static void pk_kv_str(msgpack_packer *pk, const char *k, const char *v) {
    pk_str(pk, k);
    pk_str(pk, v);
}
static void raw(msgpack_sbuffer *sb, const void *p, size_t n) { msgpack_sbuffer_write(sb, (const char *)p, n); }

static void pack_config(msgpack_packer *pk, int vocab, int dim, int layers, int attn, int ffn, int ctx, int heads,
                        const char *head_type) {
    msgpack_pack_map(pk, 8);
    pk_kv_int(pk, "vocab", vocab);
    pk_kv_int(pk, "dim", dim);
    pk_kv_int(pk, "layers", layers);
    pk_kv_int(pk, "attn_heads", attn);
    pk_kv_int(pk, "ffn", ffn);
    pk_kv_int(pk, "ctx", ctx);
    pk_kv_int(pk, "heads", heads);
    pk_kv_str(pk, "head_type", head_type);
}

static void pack_tokenizer(msgpack_packer *pk, const char *type, int vocab) {
    msgpack_pack_map(pk, 5);
    pk_kv_str(pk, "type", type);
    pk_kv_int(pk, "vocab", vocab);
    pk_kv_int(pk, "bos", DS_BOS);
    pk_kv_int(pk, "eos", DS_EOS);
    pk_kv_int(pk, "pad", DS_PAD);
}

/* what to do to one tensor (the target) */
typedef enum {
    TM_NONE,
    TM_SHAPE,      /* shape [dim, dim-1] */
    TM_DTYPE,      /* "f16" */
    TM_RENAME,     /* name + "x" */
    TM_OMIT,       /* left out (one tensor fewer) */
    TM_DUP,        /* written twice, the next tensor left out */
    TM_SHORT_DATA, /* data one float short */
    TM_BAD_CRC,    /* crc32 + 1 */
    TM_NO_DATA,
    TM_NO_SHAPE,
    TM_NO_CRC,
    TM_SHAPE3,     /* three dimensions */
    TM_EXTRA_KEY,  /* an unknown key in the tensor's map: fine */
    TM_REORDER,    /* keys in reverse order: fine */
    TM_HUGE_BIN,   /* data is bin32 declaring 0xFFFFFFFF bytes */
} TensorMut;

/* what to do to the whole file */
typedef enum {
    FM_NONE,
    FM_REVERSED,    /* top-level keys in reverse order: fine */
    FM_EXTRA_KEY,   /* an unknown top-level key (with nested values): fine */
    FM_DUP_KEY,     /* "config" twice */
    FM_FORMAT,      /* format "mtp-checkpoint-x" */
    FM_FORMAT_INT,  /* format 7 */
    FM_VERSION2,
    FM_NO_VERSION,
    FM_NO_TOKENIZER,
    FM_NO_FORMAT,
    FM_TRAILING,    /* a byte after the map */
    FM_TOK_TYPE,    /* tokenizer "bpe" */
    FM_TOK_VOCAB,   /* tokenizer vocab 300 */
    FM_HEAD_TYPE,   /* head_type "conv" */
    FM_CFG_DIV,     /* dim 32, attn_heads 5 */
    FM_CFG_NEG,     /* layers -1 */
    FM_CFG_NO_DIM,
    FM_HUGE_CFG,    /* dims implying billions of parameters */
    FM_HUGE_TENSOR, /* a tensor too large for a msgpack bin */
    FM_TENSORS_HUGE,/* tensors: array32 declaring 0xFFFFFFFF */
    FM_DEEP,        /* an unknown key holding 100000 nested arrays */
    /* a "calibration" key (make_calibration's for the model's heads, 9 trees), with one defect */
    FM_CAL_OK,
    FM_CAL_REORDER,     /* keys in reverse order (trees before heads), unknown keys in it and in a tree: fine */
    FM_CAL_PARENT,      /* tree 3's node 3 has parent 3 */
    FM_CAL_PARENT_BIG,  /* a parent of 40 */
    FM_CAL_RATE,        /* rate of head 3's candidate 2 is 1.5 */
    FM_CAL_TREES,       /* 33 trees */
    FM_CAL_HEADS,       /* heads one more than the model's */
    FM_CAL_VERSION,     /* version 2 */
    FM_CAL_RANKS,       /* ranks 16 */
    FM_CAL_NODES,       /* tree 1 has 3 nodes */
    FM_CAL_BIG_TREE,    /* tree 0 has 33 parents and ranks */
    FM_CAL_RANK_LEN,    /* tree 2 has a rank fewer than parents */
    FM_CAL_SIBLINGS,    /* tree 2: two children of the root with the same rank */
    FM_CAL_DEPTH,       /* tree 3 a chain one deeper than the heads allow */
    FM_CAL_EXPECTED,    /* tree 4 expects NaN tokens per pass */
    FM_CAL_EXPECTED_BIG,/* tree 4 expects more tokens per pass than there are heads */
    FM_CAL_ROWS,        /* a row of rates per head, one too many */
    FM_CAL_COLS,        /* 7 rates per head */
    FM_CAL_POSITIONS,   /* positions -1 */
    FM_CAL_NO_TREES,    /* no "trees" key */
    FM_CAL_NO_EXPECTED, /* tree 0 without "expected" */
    FM_CAL_DUP,         /* "heads" twice */
    FM_CAL_NOT_MAP,     /* calibration is a str */
    FM_CAL_HUGE,        /* trees is array32 declaring 0xFFFFFFFF */
    FM_TRAIN_SMALL, /* train section without moments in a file too small for them */
    FM_TRAIN_NO_RNG,
    FM_TRAIN_RNG3,
    FM_TRAIN_LR_NAN,
    FM_TRAIN_LR_HUGE, /* lr 1e300: finite as a double, infinite as the float it is stored in */
    FM_TRAIN_ADAM_SHAPE, /* adam_m's target tensor has the wrong shape */
    FM_TRAIN_OK,    /* a complete train section: fine */
} FileMut;

static void pack_tensor(msgpack_packer *pk, const MtpTensor *t, const float *buf, TensorMut mut, msgpack_sbuffer *sb) {
    size_t bytes = t->size * sizeof(float);
    const float *data = buf + t->offset;
    uint32_t crc = mpk_crc32(0, data, bytes);
    char name[64];
    snprintf(name, sizeof name, "%s%s", t->name, mut == TM_RENAME ? "x" : "");
    int nk = 5 - (mut == TM_NO_DATA) - (mut == TM_NO_SHAPE) - (mut == TM_NO_CRC) + (mut == TM_EXTRA_KEY);
    msgpack_pack_map(pk, (size_t)nk);
    for (int pass = 0; pass < 6; pass++) {
        int f = mut == TM_REORDER ? 5 - pass : pass;
        switch (f) {
        case 0: pk_kv_str(pk, "name", name); break;
        case 1: pk_kv_str(pk, "dtype", mut == TM_DTYPE ? "f16" : "f32"); break;
        case 2:
            if (mut == TM_NO_SHAPE) break;
            pk_str(pk, "shape");
            if (mut == TM_SHAPE3) {
                msgpack_pack_array(pk, 3);
                for (int d = 0; d < 3; d++) msgpack_pack_uint32(pk, 1);
            } else {
                msgpack_pack_array(pk, (size_t)t->ndim);
                for (int d = 0; d < t->ndim; d++)
                    msgpack_pack_uint32(pk, (uint32_t)(t->shape[d] - (mut == TM_SHAPE && d == t->ndim - 1)));
            }
            break;
        case 3:
            if (mut == TM_NO_CRC) break;
            pk_kv_int(pk, "crc32", (int64_t)crc + (mut == TM_BAD_CRC));
            break;
        case 4:
            if (mut == TM_NO_DATA) break;
            pk_str(pk, "data");
            if (mut == TM_HUGE_BIN) {
                static const uint8_t h[] = {0xc6, 0xff, 0xff, 0xff, 0xff};
                raw(sb, h, sizeof h);
                raw(sb, data, 64);
            } else {
                size_t nb = mut == TM_SHORT_DATA ? bytes - 4 : bytes;
                msgpack_pack_bin(pk, nb);
                msgpack_pack_bin_body(pk, data, nb);
            }
            break;
        case 5:
            if (mut != TM_EXTRA_KEY) break;
            pk_str(pk, "comment");
            msgpack_pack_array(pk, 2);
            msgpack_pack_nil(pk);
            pk_str(pk, "unknown keys are skipped");
            break;
        }
    }
}

static void pack_tensor_list(msgpack_packer *pk, msgpack_sbuffer *sb, const MtpModel *m, const float *buf, int target,
                             TensorMut mut) {
    msgpack_pack_array(pk, (size_t)(m->n_tensors - (mut == TM_OMIT)));
    for (int i = 0; i < m->n_tensors; i++) {
        if (i == target && mut == TM_OMIT) continue;
        if (mut == TM_DUP && i == target + 1) {
            pack_tensor(pk, &m->tensors[target], buf, TM_NONE, sb);
            continue;
        }
        pack_tensor(pk, &m->tensors[i], buf, i == target ? mut : TM_NONE, sb);
    }
}

static int is_cal(FileMut fm) { return fm >= FM_CAL_OK && fm <= FM_CAL_HUGE; }

/* A tree as README has it: {parent, rank, expected}, n nodes of t (more than t has: zeros);
   rank_n ranks; with extra an unknown key first and the keys in reverse order. */
static void pack_cal_tree(msgpack_packer *pk, const DecodeTree *t, int n, int rank_n, double expected, int extra,
                          int no_expected) {
    msgpack_pack_map(pk, (size_t)(3 + extra - no_expected));
    if (extra) {
        pk_str(pk, "note");
        msgpack_pack_array(pk, 1);
        msgpack_pack_map(pk, 0);
    }
    for (int f = 0; f < 3; f++)
        switch (extra ? 2 - f : f) {
        case 0:
            pk_str(pk, "parent");
            msgpack_pack_array(pk, (size_t)n);
            for (int i = 0; i < n; i++) msgpack_pack_int(pk, i < DECODE_TREE_MAX ? t->parent[i] : 0);
            break;
        case 1:
            pk_str(pk, "rank");
            msgpack_pack_array(pk, (size_t)rank_n);
            for (int i = 0; i < rank_n; i++) msgpack_pack_int(pk, i < DECODE_TREE_MAX ? t->rank[i] : 0);
            break;
        case 2:
            if (no_expected) break;
            pk_str(pk, "expected");
            msgpack_pack_double(pk, expected);
            break;
        }
}

/* The calibration of make_calibration(heads, 9) as README documents it, written here (not by
   mtp_checkpoint_save_calibrated), with the defect fm names. */
static void pack_calibration(msgpack_packer *pk, msgpack_sbuffer *sb, int heads, FileMut fm) {
    if (fm == FM_CAL_NOT_MAP) {
        pk_str(pk, "none");
        return;
    }
    DecodeCalibration c;
    make_calibration(&c, heads, 9);
    if (fm == FM_CAL_PARENT) c.trees[3].parent[3] = 3;
    if (fm == FM_CAL_PARENT_BIG) c.trees[5].parent[4] = 40;
    if (fm == FM_CAL_RATE) c.rate[1][2] = 1.5;
    if (fm == FM_CAL_SIBLINGS) c.trees[2].parent[2] = 0, c.trees[2].rank[2] = c.trees[2].rank[1] = 1;
    if (fm == FM_CAL_DEPTH) decode_tree_chain(&c.trees[heads], heads + 1);
    if (fm == FM_CAL_EXPECTED) c.expected[4] = NAN;
    if (fm == FM_CAL_EXPECTED_BIG) c.expected[4] = heads + 0.5;
    const int reorder = fm == FM_CAL_REORDER;
    const int n_keys = 6 - (fm == FM_CAL_NO_TREES) + (fm == FM_CAL_DUP) + reorder;
    msgpack_pack_map(pk, (size_t)n_keys);
    if (reorder) { /* an unknown key first */
        pk_str(pk, "measured_on");
        msgpack_pack_map(pk, 1);
        pk_kv_str(pk, "data", "builtin:arith");
    }
    for (int f = 0; f < 6; f++)
        switch (reorder ? 5 - f : f) {
        case 0: pk_kv_int(pk, "version", fm == FM_CAL_VERSION ? 2 : 1); break;
        case 1:
            pk_kv_int(pk, "heads", fm == FM_CAL_HEADS ? heads + 1 : heads);
            if (fm == FM_CAL_DUP) pk_kv_int(pk, "heads", heads);
            break;
        case 2: pk_kv_int(pk, "positions", fm == FM_CAL_POSITIONS ? -1 : c.positions); break;
        case 3: pk_kv_int(pk, "ranks", fm == FM_CAL_RANKS ? 16 : DECODE_CAL_RANKS); break;
        case 4: {
            const int rows = heads - 1 + (fm == FM_CAL_ROWS), cols = DECODE_CAL_RANKS - (fm == FM_CAL_COLS);
            pk_str(pk, "rates");
            msgpack_pack_array(pk, (size_t)rows);
            for (int d = 0; d < rows; d++) {
                msgpack_pack_array(pk, (size_t)cols);
                for (int j = 0; j < cols; j++) msgpack_pack_double(pk, d < HEADS_MAX ? c.rate[d][j] : 0);
            }
            break;
        }
        case 5: {
            if (fm == FM_CAL_NO_TREES) break;
            pk_str(pk, "trees");
            if (fm == FM_CAL_HUGE) {
                static const uint8_t h[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
                raw(sb, h, sizeof h);
                break;
            }
            const int n_trees = fm == FM_CAL_TREES ? DECODE_TREE_MAX + 1 : c.n_trees;
            msgpack_pack_array(pk, (size_t)n_trees);
            for (int k = 0; k < n_trees; k++) {
                const int kk = k < c.n_trees ? k : c.n_trees - 1;
                const DecodeTree *t = fm == FM_CAL_NODES && k == 1 ? &c.trees[2] : &c.trees[kk];
                int n = t->n;
                if (fm == FM_CAL_NODES && k == 1) n = 3;
                if (fm == FM_CAL_BIG_TREE && k == 0) n = DECODE_TREE_MAX + 1;
                const int rank_n = fm == FM_CAL_RANK_LEN && k == 2 ? n - 1 : n;
                pack_cal_tree(pk, t, n, rank_n, c.expected[kk], reorder && k == 1, fm == FM_CAL_NO_EXPECTED && k == 0);
            }
            break;
        }
        }
}

/* Writes a checkpoint of model m (and fake moments: m's own parameters) with one defect. */
static void craft(const char *path, const MtpModel *m, FileMut fm, int target, TensorMut tm) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    const TrunkConfig *c = &m->cfg.trunk;
    int with_train = fm >= FM_TRAIN_SMALL;
    enum { K_FORMAT, K_VERSION, K_CONFIG, K_TOKENIZER, K_RUN, K_CAL, K_TENSORS, K_TRAIN, K_EXTRA, K_DUP, K_PAD, K_N };
    int order[K_N], n = 0;
    for (int k = 0; k < K_N; k++) {
        if (k == K_VERSION && fm == FM_NO_VERSION) continue;
        if (k == K_TOKENIZER && fm == FM_NO_TOKENIZER) continue;
        if (k == K_FORMAT && fm == FM_NO_FORMAT) continue;
        if (k == K_TRAIN && !with_train) continue;
        if (k == K_CAL && !is_cal(fm)) continue;
        if (k == K_EXTRA && fm != FM_EXTRA_KEY && fm != FM_DEEP) continue;
        if (k == K_DUP && fm != FM_DUP_KEY) continue;
        order[n++] = k;
    }
    if (fm == FM_REVERSED)
        for (int i = 0; i < n / 2; i++) {
            int tmp = order[i];
            order[i] = order[n - 1 - i];
            order[n - 1 - i] = tmp;
        }
    msgpack_pack_map(&pk, (size_t)n);
    for (int i = 0; i < n; i++) {
        switch (order[i]) {
        case K_FORMAT:
            pk_str(&pk, "format");
            if (fm == FM_FORMAT_INT) msgpack_pack_int(&pk, 7);
            else pk_str(&pk, fm == FM_FORMAT ? "mtp-checkpoint-x" : "mtp-checkpoint");
            break;
        case K_VERSION: pk_kv_int(&pk, "version", fm == FM_VERSION2 ? 2 : 1); break;
        case K_CONFIG:
        case K_DUP:
            pk_str(&pk, "config");
            if (fm == FM_HUGE_CFG) pack_config(&pk, DS_BYTE_VOCAB, 16384, 256, 128, 32768, 16, 4, "transformer");
            else if (fm == FM_HUGE_TENSOR) pack_config(&pk, DS_BYTE_VOCAB, 16384, 1, 128, 65536, 16, 4, "transformer");
            else if (fm == FM_CFG_DIV) pack_config(&pk, c->vocab, c->dim, c->layers, 5, c->ffn, c->ctx, m->cfg.heads.n,
                                                  heads_type_name(m->cfg.heads.type));
            else if (fm == FM_CFG_NO_DIM) {
                msgpack_pack_map(&pk, 7);
                pk_kv_int(&pk, "vocab", c->vocab);
                pk_kv_int(&pk, "layers", c->layers);
                pk_kv_int(&pk, "attn_heads", c->attn_heads);
                pk_kv_int(&pk, "ffn", c->ffn);
                pk_kv_int(&pk, "ctx", c->ctx);
                pk_kv_int(&pk, "heads", m->cfg.heads.n);
                pk_kv_str(&pk, "head_type", heads_type_name(m->cfg.heads.type));
            } else
                pack_config(&pk, c->vocab, c->dim, fm == FM_CFG_NEG ? -1 : c->layers, c->attn_heads, c->ffn, c->ctx,
                            m->cfg.heads.n, fm == FM_HEAD_TYPE ? "conv" : heads_type_name(m->cfg.heads.type));
            break;
        case K_TOKENIZER:
            pk_str(&pk, "tokenizer");
            pack_tokenizer(&pk, fm == FM_TOK_TYPE ? "bpe" : "bytes", fm == FM_TOK_VOCAB ? 300 : DS_BYTE_VOCAB);
            break;
        case K_RUN:
            pk_str(&pk, "run");
            msgpack_pack_map(&pk, 2);
            pk_kv_str(&pk, "data", "builtin:arith");
            pk_kv_int(&pk, "difficulty", 2);
            break;
        case K_CAL:
            pk_str(&pk, "calibration");
            pack_calibration(&pk, &sb, m->cfg.heads.n, fm);
            break;
        case K_TENSORS:
            pk_str(&pk, "tensors");
            if (fm == FM_TENSORS_HUGE) {
                static const uint8_t h[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
                raw(&sb, h, sizeof h);
            } else if (fm == FM_HUGE_CFG || fm == FM_HUGE_TENSOR) msgpack_pack_array(&pk, 0);
            else pack_tensor_list(&pk, &sb, m, m->params, target, tm);
            break;
        case K_TRAIN:
            pk_str(&pk, "train");
            if (fm == FM_TRAIN_SMALL) {
                msgpack_pack_map(&pk, 1);
                pk_kv_int(&pk, "step", 5);
                break;
            }
            msgpack_pack_map(&pk, fm == FM_TRAIN_NO_RNG ? 5 : 6);
            pk_kv_int(&pk, "step", 5);
            pk_kv_int(&pk, "batches_drawn", 10);
            if (fm != FM_TRAIN_NO_RNG) {
                pk_str(&pk, "rng");
                int words = fm == FM_TRAIN_RNG3 ? 3 : 4;
                msgpack_pack_array(&pk, (size_t)words);
                for (int w = 0; w < words; w++) msgpack_pack_uint64(&pk, 0x1111111111111111ull * (uint64_t)(w + 1));
            }
            pk_str(&pk, "options");
            msgpack_pack_map(&pk, 2);
            pk_kv_int(&pk, "batch", 3);
            pk_str(&pk, "lr");
            msgpack_pack_double(&pk, fm == FM_TRAIN_LR_NAN ? NAN : fm == FM_TRAIN_LR_HUGE ? 1e300 : 0.5);
            pk_str(&pk, "adam_m");
            pack_tensor_list(&pk, &sb, m, m->params, target, fm == FM_TRAIN_ADAM_SHAPE ? TM_SHAPE : TM_NONE);
            pk_str(&pk, "adam_v");
            pack_tensor_list(&pk, &sb, m, m->params, -1, TM_NONE);
            break;
        case K_PAD: {
            /* an unknown key holding 32 KB, so that a file with a tensor missing or short still
             * passes the "parameters fit in the file" check and reaches the tensor checks */
            static uint8_t zeros[32768];
            pk_str(&pk, "padding");
            msgpack_pack_bin_with_body(&pk, zeros, sizeof zeros);
            break;
        }
        case K_EXTRA:
            pk_str(&pk, "notes");
            if (fm == FM_DEEP) {
                uint8_t *deep = malloc(100000);
                memset(deep, 0x91, 100000);
                raw(&sb, deep, 100000);
                free(deep);
                msgpack_pack_nil(&pk);
            } else {
                msgpack_pack_map(&pk, 2);
                pk_kv_str(&pk, "author", "test");
                pk_str(&pk, "list");
                msgpack_pack_array(&pk, 3);
                msgpack_pack_double(&pk, 1.5);
                msgpack_pack_bin_with_body(&pk, "xyz", 3);
                msgpack_pack_map(&pk, 0);
            }
            break;
        }
    }
    if (fm == FM_TRAILING) raw(&sb, "\0", 1);
    write_all(path, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

static void expect_load_ok(const char *path, const MtpModel *ref, const char *what, int want_train) {
    MtpModel m;
    MtpCheckpointExtra x;
    char err[512];
    int rc = mtp_checkpoint_load(path, &m, &x, err, sizeof err);
    CHECK_MSG(rc == 0, "%s: %s", what, err);
    if (rc) return;
    CHECK_MSG(same_config(&m.cfg, &ref->cfg) && memcmp(m.params, ref->params, ref->n_params * sizeof(float)) == 0,
              "%s: weights differ", what);
    CHECK_MSG(x.has_train == want_train, "%s: has_train %d", what, x.has_train);
    if (want_train && x.has_train) {
        CHECK(x.step == 5 && x.batches_drawn == 10 && x.data_rng.s[3] == 0x4444444444444444ull);
        CHECK(x.opt.batch == 3 && x.opt.lr == 0.5f && x.opt.accum == 1); /* unset options take defaults */
        CHECK(memcmp(x.m, ref->params, ref->n_params * sizeof(float)) == 0);
    }
    CHECK(strcmp(x.run.data_spec, "builtin:arith") == 0 && x.run.difficulty == 2 && x.run.val_frac == 0.1);
    mtp_checkpoint_extra_free(&x);
    mtp_model_free(&m);
}

static void test_crafted(void) {
    char err[256];
    MtpConfig c = small_cfg(HEAD_TRANSFORMER);
    MtpModel m;
    if (mtp_model_build(&m, &c, err, sizeof err)) {
        CHECK_MSG(0, "%s", err);
        return;
    }
    mtp_model_init(&m, 99);
    char p[600];
    path_in(p, sizeof p, "crafted.ckpt");
    const MtpTensor *wq = mtp_model_tensor(&m, "trunk.0.wq");
    CHECK(wq != NULL);
    if (!wq) return;
    int ti = (int)(wq - m.tensors);

    /* the writer itself is right: an unmodified crafted file loads */
    craft(p, &m, FM_NONE, -1, TM_NONE);
    expect_load_ok(p, &m, "crafted baseline", 0);
    craft(p, &m, FM_REVERSED, -1, TM_NONE);
    expect_load_ok(p, &m, "top-level keys reversed", 0);
    craft(p, &m, FM_EXTRA_KEY, -1, TM_NONE);
    expect_load_ok(p, &m, "unknown top-level key", 0);
    craft(p, &m, FM_NONE, ti, TM_EXTRA_KEY);
    expect_load_ok(p, &m, "unknown key in a tensor", 0);
    craft(p, &m, FM_NONE, ti, TM_REORDER);
    expect_load_ok(p, &m, "tensor keys reversed", 0);
    craft(p, &m, FM_TRAIN_OK, -1, TM_NONE);
    expect_load_ok(p, &m, "complete train section", 1);

    /* tensors that do not match the config: the message names the tensor */
    static const struct {
        TensorMut mut;
        const char *name, *want, *want2;
    } tcases[] = {
        {TM_SHAPE, "shape [32, 31]", "trunk.0.wq", "shape [32, 31]"},
        {TM_DTYPE, "dtype f16", "trunk.0.wq", "f16"},
        {TM_RENAME, "renamed trunk.0.wqx", "trunk.0.wqx", "unknown tensor"},
        {TM_OMIT, "left out", "tensors", "the config needs"},
        {TM_DUP, "written twice", "trunk.0.wq", "twice"},
        {TM_SHORT_DATA, "data one float short", "trunk.0.wq", "data bytes"},
        {TM_BAD_CRC, "crc32 off by one", "trunk.0.wq", "checksum"},
        {TM_NO_DATA, "no data key", "trunk.0.wq", "data"},
        {TM_NO_SHAPE, "no shape key", "trunk.0.wq", "shape"},
        {TM_NO_CRC, "no crc32 key", "trunk.0.wq", "checksum"},
        {TM_SHAPE3, "three dimensions", "trunk.0.wq", "dimensions"},
        {TM_HUGE_BIN, "data is bin32 of 0xFFFFFFFF bytes", NULL, NULL},
    };
    for (size_t i = 0; i < sizeof tcases / sizeof tcases[0]; i++) {
        char what[96];
        snprintf(what, sizeof what, "trunk.0.wq: %s", tcases[i].name);
        craft(p, &m, FM_NONE, ti, tcases[i].mut);
        expect_load_fail(p, tcases[i].want, tcases[i].want2, what);
    }
    /* a wrong tensor in the first and in the last position too */
    craft(p, &m, FM_NONE, 0, TM_SHAPE);
    expect_load_fail(p, "tok_emb", "shape", "tok_emb shape");
    craft(p, &m, FM_NONE, m.n_tensors - 1, TM_DTYPE);
    expect_load_fail(p, "unembed", "f16", "unembed dtype");
    craft(p, &m, FM_NONE, m.n_tensors - 1, TM_OMIT);
    expect_load_fail(p, "tensors", NULL, "last tensor missing");

    /* the whole file */
    static const struct {
        FileMut mut;
        const char *name, *want, *want2;
    } fcases[] = {
        {FM_DUP_KEY, "config key twice", "config", "twice"},
        {FM_FORMAT, "format mtp-checkpoint-x", "not an mtp checkpoint", "mtp-checkpoint-x"},
        {FM_FORMAT_INT, "format is an integer", "expected str", NULL},
        {FM_VERSION2, "version 2", "version 2", NULL},
        {FM_NO_VERSION, "no version key", "version", NULL},
        {FM_NO_TOKENIZER, "no tokenizer key", "tokenizer", NULL},
        {FM_NO_FORMAT, "no format key", "format", NULL},
        {FM_TRAILING, "a byte after the map", "trailing", NULL},
        {FM_TOK_TYPE, "tokenizer type bpe", "bpe", NULL},
        {FM_TOK_VOCAB, "tokenizer vocab 300", "300", NULL},
        {FM_HEAD_TYPE, "head_type conv", "conv", NULL},
        {FM_CFG_DIV, "dim 32 attn_heads 5", "divisible", NULL},
        {FM_CFG_NEG, "layers -1", "layers", NULL},
        {FM_CFG_NO_DIM, "config without dim", "dim", NULL},
        {FM_HUGE_CFG, "dim 16384 layers 256 ffn 32768 in a small file", "parameters", NULL},
        {FM_HUGE_TENSOR, "a tensor of 4 GiB (dim 16384 by ffn 65536)", "4 GiB per tensor", NULL},
        {FM_TENSORS_HUGE, "tensors is array32 of 0xFFFFFFFF", NULL, NULL},
        {FM_DEEP, "100000 nested arrays", NULL, NULL},
        {FM_TRAIN_SMALL, "train state without room for moments", "optimizer moments", NULL},
        {FM_TRAIN_NO_RNG, "train state without rng", "incomplete", NULL},
        {FM_TRAIN_RNG3, "rng of 3 words", "3 words", NULL},
        {FM_TRAIN_LR_NAN, "option lr NaN", "lr", "not finite"},
        {FM_TRAIN_LR_HUGE, "option lr 1e300 (inf as a float)", "lr", NULL},
        {FM_TRAIN_ADAM_SHAPE, "adam_m trunk.0.wq shape [32, 31]", "trunk.0.wq", "shape"},
    };
    for (size_t i = 0; i < sizeof fcases / sizeof fcases[0]; i++) {
        char what[96];
        snprintf(what, sizeof what, "file: %s", fcases[i].name);
        craft(p, &m, fcases[i].mut, ti, TM_NONE);
        expect_load_fail(p, fcases[i].want, fcases[i].want2, what);
    }
    unlink(p);
    mtp_model_free(&m);
}

/* Loads path, which must succeed with ref's weights and the calibration want (NULL: none). */
static void expect_calibration(const char *path, const MtpModel *ref, const DecodeCalibration *want, const char *what) {
    MtpModel m;
    MtpCheckpointExtra x;
    char err[512];
    int rc = mtp_checkpoint_load(path, &m, &x, err, sizeof err);
    CHECK_MSG(rc == 0, "%s: %s", what, err);
    if (rc) return;
    CHECK_MSG(memcmp(m.params, ref->params, ref->n_params * sizeof(float)) == 0, "%s: weights differ", what);
    if (want) CHECK_MSG(x.has_calibration && same_calibration(&x.cal, want), "%s: calibration differs", what);
    else CHECK_MSG(!x.has_calibration, "%s: a calibration where the file has none", what);
    mtp_checkpoint_extra_free(&x);
    mtp_model_free(&m);
}

/* Hand-written calibrations in a model of 3 heads: the documented layout loads (keys in any order,
   unknown keys skipped, depths recomputed); each broken rule gives a message that says which;
   every cut inside the calibration fails. */
static void test_crafted_calibration(void) {
    char err[256], p[600];
    MtpConfig c = small_cfg(HEAD_LINEAR);
    MtpModel m;
    if (mtp_model_build(&m, &c, err, sizeof err)) {
        CHECK_MSG(0, "%s", err);
        return;
    }
    mtp_model_init(&m, 98);
    CHECK(m.cfg.heads.n == 3);
    DecodeCalibration want;
    make_calibration(&want, m.cfg.heads.n, 9);
    path_in(p, sizeof p, "crafted_cal.ckpt");
    craft(p, &m, FM_NONE, -1, TM_NONE);
    expect_calibration(p, &m, NULL, "no calibration key");
    craft(p, &m, FM_CAL_OK, -1, TM_NONE);
    expect_calibration(p, &m, &want, "calibration baseline");
    craft(p, &m, FM_CAL_REORDER, -1, TM_NONE);
    expect_calibration(p, &m, &want, "calibration keys reversed, unknown keys");

    static const struct {
        FileMut mut;
        const char *name, *want, *want2;
    } cases[] = {
        {FM_CAL_PARENT, "tree 3: node 3's parent is 3", "tree of 4 nodes", "not an earlier node"},
        {FM_CAL_PARENT_BIG, "a parent of 40", "tree 5: parent = 40", "out of range"},
        {FM_CAL_RATE, "a rate of 1.5", "candidate 2 is 1.5", NULL},
        {FM_CAL_TREES, "33 trees", "33 trees", NULL},
        {FM_CAL_HEADS, "heads 4 in a 3-head model", "4 heads", "model has 3"},
        {FM_CAL_VERSION, "version 2", "calibration version 2", NULL},
        {FM_CAL_RANKS, "ranks 16", "16 ranks", NULL},
        {FM_CAL_NODES, "tree 1 of 3 nodes", "tree 1 has 3 nodes", NULL},
        {FM_CAL_BIG_TREE, "a tree of 33 nodes", "33 parent entries", NULL},
        {FM_CAL_RANK_LEN, "a rank fewer than parents", "3 parents and 2 ranks", NULL},
        {FM_CAL_SIBLINGS, "siblings of the same rank", "same candidate", NULL},
        {FM_CAL_DEPTH, "a chain deeper than the heads", "depth 3", NULL},
        {FM_CAL_EXPECTED, "expected NaN", "tree of 5 nodes", "nan"},
        {FM_CAL_EXPECTED_BIG, "expected 3.5 of 3 heads", "3.5", NULL},
        {FM_CAL_ROWS, "3 rows of rates for 3 heads", "3 rows of rates", NULL},
        {FM_CAL_COLS, "7 rates per head", "7 rates", NULL},
        {FM_CAL_POSITIONS, "positions -1", "positions", NULL},
        {FM_CAL_NO_TREES, "no trees key", "no \"trees\"", NULL},
        {FM_CAL_NO_EXPECTED, "a tree without expected", "tree 0 needs", NULL},
        {FM_CAL_DUP, "heads twice", "heads", "twice"},
        {FM_CAL_NOT_MAP, "calibration is a str", "expected map", NULL},
        {FM_CAL_HUGE, "trees is array32 of 0xFFFFFFFF", NULL, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char what[96];
        snprintf(what, sizeof what, "calibration: %s", cases[i].name);
        craft(p, &m, cases[i].mut, -1, TM_NONE);
        expect_load_fail(p, cases[i].want, cases[i].want2, what);
    }

    /* cut anywhere inside the calibration */
    craft(p, &m, FM_CAL_OK, -1, TM_NONE);
    size_t n, start = 0, end = 0;
    uint8_t *buf = read_all(p, &n);
    int found = buf && find_calibration(buf, n, &start, &end) == 0;
    CHECK(found);
    int bad = 0, cuts = 0;
    for (size_t cut = end; found && cut > start - 12; cut--) { /* from the end of its value to inside its key */
        if (truncate(p, (off_t)cut) != 0) break;
        MtpModel l;
        MtpCheckpointExtra x;
        char msg[512] = "";
        int rc = mtp_checkpoint_load(p, &l, &x, msg, sizeof msg);
        cuts++;
        if (!good_failure(rc, msg, p, &l, &x) && bad++ < 5) CHECK_MSG(0, "calibration cut at %zu: '%s'", cut, msg);
        if (rc == 0) mtp_checkpoint_extra_free(&x), mtp_model_free(&l);
    }
    CHECK_MSG(bad == 0 && cuts > 200, "%d of %d cuts in the calibration not rejected", bad, cuts);
    free(buf);
    unlink(p);
    mtp_model_free(&m);
}

/* Tiny files with huge declared counts, written byte by byte. */
static void test_tiny_huge(void) {
    char p[600];
    path_in(p, sizeof p, "tiny.ckpt");
    static const uint8_t map32[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0xa6, 'f', 'o', 'r', 'm', 'a', 't'};
    write_all(p, map32, sizeof map32);
    expect_load_fail(p, NULL, NULL, "map32 0xFFFFFFFF");
    write_all(p, map32, 5);
    expect_load_fail(p, NULL, NULL, "map32 0xFFFFFFFF alone");
    static const uint8_t bin32[] = {0x81, 0xa6, 'f', 'o', 'r', 'm', 'a', 't', 0xc6, 0xff, 0xff, 0xff, 0xff, 1, 2, 3};
    write_all(p, bin32, sizeof bin32);
    expect_load_fail(p, NULL, NULL, "bin32 0xFFFFFFFF");
    static const uint8_t str32[] = {0x81, 0xdb, 0xff, 0xff, 0xff, 0xff, 'a', 'b'};
    write_all(p, str32, sizeof str32);
    expect_load_fail(p, NULL, NULL, "str32 key 0xFFFFFFFF");
    static const uint8_t arr32[] = {0x81, 0xa1, 'x', 0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0};
    write_all(p, arr32, sizeof arr32);
    expect_load_fail(p, NULL, NULL, "array32 0xFFFFFFFF");
    static const uint8_t emptymap[] = {0x80};
    write_all(p, emptymap, 1);
    expect_load_fail(p, "format", NULL, "empty map");
    static const uint8_t bad[] = {0xc1};
    write_all(p, bad, 1);
    expect_load_fail(p, NULL, NULL, "0xc1");
    unlink(p);
}

/* Files that are not checkpoints. */
static void test_not_checkpoints(const uint8_t *good, size_t n) {
    char p[600];
    path_in(p, sizeof p, "text.ckpt");
    const char *text = "this is a text file, not a checkpoint\n";
    write_all(p, text, strlen(text));
    expect_load_fail(p, "not an mtp checkpoint", NULL, "text file");
    const char *json = "{\"format\": \"mtp-checkpoint\"}\n";
    write_all(p, json, strlen(json));
    expect_load_fail(p, "not an mtp checkpoint", NULL, "json file");
    write_all(p, "", 0);
    expect_load_fail(p, "empty", NULL, "empty file");
    path_in(p, sizeof p, "missing.ckpt");
    expect_load_fail(p, NULL, NULL, "missing file");
    path_in(p, sizeof p, "a-directory.ckpt");
    mkdir(p, 0755);
    expect_load_fail(p, "directory", NULL, "directory");
    rmdir(p);
    /* a good checkpoint with a byte appended, and two checkpoints back to back */
    path_in(p, sizeof p, "double.ckpt");
    uint8_t *b = malloc(2 * n);
    memcpy(b, good, n);
    memcpy(b + n, good, n);
    write_all(p, b, n + 1);
    expect_load_fail(p, "trailing", NULL, "one byte appended");
    write_all(p, b, 2 * n);
    expect_load_fail(p, "trailing", NULL, "two checkpoints concatenated");
    free(b);
    unlink(p);
}


int main(void) {
    int rc = ckpt_test_begin("test_checkpoint_damage");
    if (rc) return rc;
    MtpModel m;
    MtpTrainer t;
    DecodeCalibration cal;
    char good[600];
    size_t n;
    uint8_t *buf = ckpt_test_good(&m, &t, &cal, good, sizeof good, &n);
    if (buf && n > 4096) {
        find_tensor_data(buf, n);
        CHECK(g_n_data == 3 * m.n_tensors);
        expect_calibration(good, &m, &cal, "the good file");
        test_truncated(buf, n);
        test_flipped(buf, n, &m, &t);
        test_flipped_calibration(buf, n, &m, &t, &cal);
        test_not_checkpoints(buf, n);
    } else CHECK(0);
    if (buf) {
        free(buf);
        unlink(good);
        mtp_trainer_free(&t);
        mtp_model_free(&m);
    }
    test_tiny_huge();
    test_crafted();
    test_crafted_calibration();
    ckpt_test_end();
    TEST_DONE();
}
