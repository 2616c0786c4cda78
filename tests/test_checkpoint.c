/* test_checkpoint.c - the checkpoint file through the C API (mtp_checkpoint_save / _load).
 *
 *  - round trip: config, every parameter, Adam moments, step, rng, batches drawn, options and run
 *    info come back bit for bit (both head types); a save without a trainer loads with no train
 *    state; saving the same state twice gives the same bytes; no temp file is left behind;
 *  - resume: 3 steps + save + load into a fresh model and trainer + 3 steps == 6 steps straight
 *    (per-step losses and final parameters bitwise equal);
 *  - interoperability: msgpack-c's own unpacker reads the whole file, the documented keys are
 *    there, each tensor's bytes are the model's floats and its crc32 is the standard CRC-32.
 *  - tokenizers: a BPE tokenizer and a run with several sources and JSONL fields round-trip; a
 *    tokenizer file round-trips; mtp_tokenizer_load reads a checkpoint's tokenizer; a model
 *    narrower than its tokenizer, bad merges and a wrong hash are refused.
 *  - calibration: mtp_checkpoint_save_calibrated's calibration comes back bit for bit (depths
 *    recomputed from the parents; 1 to 5 heads, with and without train state, no trees); a file
 *    without one loads with has_calibration 0; the writer refuses a calibration the loader would;
 *    msgpack-c finds the documented layout.
 * Damaged and crafted files: test_checkpoint_damage.c. TEST_VERBOSE=1 prints expected errors. */
#include "tests/ckpt_test.h"

/* ---- round trip ----------------------------------------------------------------------------- */

static void test_round_trip(HeadType ht) {
    const char *tn = heads_type_name(ht);
    MtpModel m;
    MtpTrainer t;
    if (build_trained(&m, &t, ht, 2, NULL)) {
        CHECK(0);
        return;
    }
    CHECK(any_nonzero(t.m, m.n_params) && any_nonzero(t.v, m.n_params));
    MtpRunInfo run = small_run();
    if (ht == HEAD_LINEAR) run.precision = MTP_FP32, run.difficulty = 0;
    char p1[600], p2[600], p3[600], err[512];
    path_in(p1, sizeof p1, "rt_full.ckpt");
    path_in(p2, sizeof p2, "rt_weights.ckpt");
    path_in(p3, sizeof p3, "rt_full_again.ckpt");
    CHECK_MSG(mtp_checkpoint_save(p1, &m, &t, &run, err, sizeof err) == 0, "%s: %s", tn, err);
    CHECK_MSG(mtp_checkpoint_save(p2, &m, NULL, &run, err, sizeof err) == 0, "%s: %s", tn, err);
    CHECK_MSG(mtp_checkpoint_save(p3, &m, &t, &run, err, sizeof err) == 0, "%s: %s", tn, err);
    CHECK_MSG(count_tmp_files() == 0, "%s: temp files left behind", tn);

    /* full checkpoint */
    MtpModel l;
    MtpCheckpointExtra x;
    int rc = mtp_checkpoint_load(p1, &l, &x, err, sizeof err);
    CHECK_MSG(rc == 0, "%s: load: %s", tn, err);
    if (rc == 0) {
        CHECK(same_config(&l.cfg, &m.cfg));
        CHECK(l.n_params == m.n_params && l.n_tensors == m.n_tensors);
        CHECK(memcmp(l.params, m.params, m.n_params * sizeof(float)) == 0);
        int tensors_same = 1;
        for (int i = 0; i < m.n_tensors && i < l.n_tensors; i++)
            if (strcmp(l.tensors[i].name, m.tensors[i].name) || l.tensors[i].offset != m.tensors[i].offset)
                tensors_same = 0;
        CHECK(tensors_same);
        CHECK(x.has_train == 1);
        CHECK(x.m && memcmp(x.m, t.m, m.n_params * sizeof(float)) == 0);
        CHECK(x.v && memcmp(x.v, t.v, m.n_params * sizeof(float)) == 0);
        CHECK(x.step == 2 && t.step == 2);
        CHECK(memcmp(&x.data_rng, &t.data_rng, sizeof x.data_rng) == 0);
        CHECK(x.batches_drawn == 4 && t.batches_drawn == 4);
        CHECK(same_options(&x.opt, &t.opt));
        CHECK_MSG(same_run(&x.run, &run), "%s: run info '%s' %g %llu %d %d", tn, x.run.data_spec, x.run.val_frac,
                  (unsigned long long)x.run.data_seed, x.run.difficulty, (int)x.run.precision);
        size_t sz;
        uint8_t *b = read_all(p1, &sz);
        CHECK(b && x.file_size == sz);
        free(b);
        mtp_checkpoint_extra_free(&x);
        CHECK(x.m == NULL && x.v == NULL && x.has_train == 0);
        mtp_model_free(&l);
    }

    /* weights only */
    rc = mtp_checkpoint_load(p2, &l, &x, err, sizeof err);
    CHECK_MSG(rc == 0, "%s: load: %s", tn, err);
    if (rc == 0) {
        CHECK(same_config(&l.cfg, &m.cfg));
        CHECK(memcmp(l.params, m.params, m.n_params * sizeof(float)) == 0);
        CHECK(x.has_train == 0 && x.m == NULL && x.v == NULL);
        CHECK(same_run(&x.run, &run));
        mtp_checkpoint_extra_free(&x);
        mtp_model_free(&l);
    }

    /* saving the same state twice gives the same bytes (no timestamps, no uninitialised padding) */
    size_t n1, n3;
    uint8_t *b1 = read_all(p1, &n1), *b3 = read_all(p3, &n3);
    CHECK(b1 && b3 && n1 == n3 && memcmp(b1, b3, n1) == 0);
    free(b1);
    free(b3);

    /* saving over an existing file replaces it (atomically) and leaves nothing else behind */
    MtpStepStats s;
    mtp_train_step(&t, &g_corpus, &s);
    CHECK(mtp_checkpoint_save(p1, &m, &t, &run, err, sizeof err) == 0);
    CHECK(count_tmp_files() == 0);
    rc = mtp_checkpoint_load(p1, &l, &x, err, sizeof err);
    CHECK_MSG(rc == 0, "%s", err);
    if (rc == 0) {
        CHECK(x.step == 3 && memcmp(l.params, m.params, m.n_params * sizeof(float)) == 0);
        mtp_checkpoint_extra_free(&x);
        mtp_model_free(&l);
    }

    /* a save that cannot happen fails with a message and creates nothing */
    char bad[700];
    snprintf(bad, sizeof bad, "%s/no-such-dir/x.ckpt", g_dir);
    err[0] = 0;
    CHECK(mtp_checkpoint_save(bad, &m, &t, &run, err, sizeof err) == -1);
    CHECK(err[0] != 0 && strchr(err, '\n') == NULL);
    CHECK(access(bad, F_OK) != 0);
    /* over a directory: fails, the directory stays, no temp file is left */
    snprintf(bad, sizeof bad, "%s/a-dir.ckpt", g_dir);
    mkdir(bad, 0755);
    err[0] = 0;
    CHECK(mtp_checkpoint_save(bad, &m, &t, &run, err, sizeof err) == -1);
    CHECK(err[0] != 0 && strchr(err, '\n') == NULL);
    struct stat st;
    CHECK(stat(bad, &st) == 0 && S_ISDIR(st.st_mode));
    CHECK(count_tmp_files() == 0);
    rmdir(bad);

    unlink(p1);
    unlink(p2);
    unlink(p3);
    mtp_trainer_free(&t);
    mtp_model_free(&m);
}

/* Weights-only round trip of unusual shapes: no trunk blocks, one head, one attention head, ctx 1. */
static void test_round_trip_shapes(void) {
    static const int shapes[][8] = {
        /* dim layers attn_heads ffn ctx heads type */
        {32, 0, 2, 64, 16, 1, HEAD_LINEAR},
        {16, 1, 1, 8, 1, 1, HEAD_TRANSFORMER},
        {8, 3, 4, 24, 4, 5, HEAD_TRANSFORMER},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        MtpConfig c;
        memset(&c, 0, sizeof c);
        c.trunk.vocab = DS_BYTE_VOCAB;
        c.trunk.dim = shapes[i][0];
        c.trunk.layers = shapes[i][1];
        c.trunk.attn_heads = shapes[i][2];
        c.trunk.ffn = shapes[i][3];
        c.trunk.ctx = shapes[i][4];
        c.heads.n = shapes[i][5];
        c.heads.type = (HeadType)shapes[i][6];
        MtpModel m, l;
        MtpCheckpointExtra x;
        char err[512], p[600];
        if (mtp_model_build(&m, &c, err, sizeof err)) {
            CHECK_MSG(0, "shape %zu: %s", i, err);
            continue;
        }
        mtp_model_init(&m, 5 + i);
        MtpRunInfo run;
        memset(&run, 0, sizeof run);
        path_in(p, sizeof p, "shape.ckpt");
        DecodeCalibration cal; /* 1 head: no rates, the root alone; 5 heads: 4 rows, 32 trees */
        make_calibration(&cal, c.heads.n, DECODE_TREE_MAX);
        CHECK(cal.n_trees == (c.heads.n == 1 ? 1 : DECODE_TREE_MAX));
        CHECK_MSG(mtp_checkpoint_save_calibrated(p, &m, NULL, &run, &cal, err, sizeof err) == 0, "shape %zu: %s", i,
                  err);
        int rc = mtp_checkpoint_load(p, &l, &x, err, sizeof err);
        CHECK_MSG(rc == 0, "shape %zu: %s", i, err);
        if (rc == 0) {
            CHECK(same_config(&l.cfg, &m.cfg) && l.n_params == m.n_params);
            CHECK(memcmp(l.params, m.params, m.n_params * sizeof(float)) == 0);
            CHECK(x.has_train == 0 && x.run.data_spec[0] == 0 && x.run.precision == MTP_FP32);
            CHECK_MSG(x.has_calibration && same_calibration(&x.cal, &cal), "shape %zu: calibration differs", i);
            mtp_checkpoint_extra_free(&x);
            mtp_model_free(&l);
        }
        unlink(p);
        mtp_model_free(&m);
    }
}

/* ---- decoding calibration ------------------------------------------------------------------- */

/* 1 when the calibration's largest tree branches (a node whose parent is not the node before). */
static int branches(const DecodeCalibration *c) {
    const DecodeTree *t = &c->trees[c->n_trees - 1];
    for (int i = 1; i < t->n; i++)
        if (t->parent[i] != i - 1) return 1;
    return 0;
}

static void test_calibration(HeadType ht) {
    const char *tn = heads_type_name(ht);
    MtpModel m;
    MtpTrainer t;
    if (build_trained(&m, &t, ht, 1, NULL)) {
        CHECK(0);
        return;
    }
    MtpRunInfo run = small_run();
    DecodeCalibration cal;
    char err[512], p1[600], p2[600], p3[600], p4[600];
    make_calibration(&cal, m.cfg.heads.n, DECODE_TREE_MAX);
    CHECK_MSG(decode_calibration_check(&cal, err, sizeof err) == 0, "%s: the test's calibration: %s", tn, err);
    CHECK(cal.n_trees >= 3 && branches(&cal));
    path_in(p1, sizeof p1, "cal_full.ckpt");
    path_in(p2, sizeof p2, "cal_weights.ckpt");
    path_in(p3, sizeof p3, "cal_full_again.ckpt");
    path_in(p4, sizeof p4, "cal_none.ckpt");
    CHECK_MSG(mtp_checkpoint_save_calibrated(p1, &m, &t, &run, &cal, err, sizeof err) == 0, "%s: %s", tn, err);
    CHECK_MSG(mtp_checkpoint_save_calibrated(p2, &m, NULL, &run, &cal, err, sizeof err) == 0, "%s: %s", tn, err);
    CHECK_MSG(mtp_checkpoint_save_calibrated(p3, &m, &t, &run, &cal, err, sizeof err) == 0, "%s: %s", tn, err);
    CHECK_MSG(mtp_checkpoint_save(p4, &m, &t, &run, err, sizeof err) == 0, "%s: %s", tn, err);

    const char *paths[3] = {p1, p2, p4};
    for (int i = 0; i < 3; i++) {
        MtpModel l;
        MtpCheckpointExtra x;
        int rc = mtp_checkpoint_load(paths[i], &l, &x, err, sizeof err);
        CHECK_MSG(rc == 0, "%s: load: %s", tn, err);
        if (rc) continue;
        CHECK(memcmp(l.params, m.params, m.n_params * sizeof(float)) == 0);
        CHECK(x.has_train == (i != 1));
        CHECK(x.has_train == 0 || (memcmp(x.m, t.m, m.n_params * sizeof(float)) == 0 && x.step == 1));
        if (i < 2) {
            CHECK_MSG(x.has_calibration == 1 && same_calibration(&x.cal, &cal), "%s: %s: calibration differs", tn,
                      paths[i]);
            /* what commands that do not resume do (cli_open_model): the moments go, the calibration stays */
            mtp_checkpoint_extra_free(&x);
            CHECK(x.has_train == 0 && x.has_calibration == 1 && same_calibration(&x.cal, &cal));
        } else CHECK_MSG(x.has_calibration == 0, "%s: a file without a calibration has one", tn);
        mtp_checkpoint_extra_free(&x);
        mtp_model_free(&l);
    }

    /* the same state twice: the same bytes; without the calibration: the file of mtp_checkpoint_save */
    size_t n1, n3, n4;
    uint8_t *b1 = read_all(p1, &n1), *b3 = read_all(p3, &n3), *b4 = read_all(p4, &n4);
    CHECK(b1 && b3 && n1 == n3 && memcmp(b1, b3, n1) == 0);
    CHECK(b4 && n4 < n1);

    /* a calibration without trees */
    DecodeCalibration none = cal;
    none.n_trees = 0;
    CHECK(mtp_checkpoint_save_calibrated(p2, &m, NULL, &run, &none, err, sizeof err) == 0);
    MtpModel l;
    MtpCheckpointExtra x;
    int rc = mtp_checkpoint_load(p2, &l, &x, err, sizeof err);
    CHECK_MSG(rc == 0, "%s: no trees: %s", tn, err);
    if (rc == 0) {
        CHECK(x.has_calibration == 1 && x.cal.n_trees == 0 && same_calibration(&x.cal, &none));
        mtp_checkpoint_extra_free(&x);
        mtp_model_free(&l);
    }

    /* the writer refuses what the loader would: nothing written, the file there untouched */
    DecodeCalibration bad = cal;
    bad.heads = m.cfg.heads.n + 1; /* consistent in itself, not this model's */
    err[0] = 0;
    CHECK(mtp_checkpoint_save_calibrated(p1, &m, &t, &run, &bad, err, sizeof err) == -1 && strstr(err, "heads") &&
          strchr(err, '\n') == NULL);
    bad = cal;
    bad.rate[0][3] = 1.5;
    err[0] = 0;
    CHECK(mtp_checkpoint_save_calibrated(p1, &m, &t, &run, &bad, err, sizeof err) == -1 && strstr(err, "1.5"));
    if (getenv("TEST_VERBOSE")) fprintf(stderr, "  expected: %s\n", err);
    bad = cal;
    bad.trees[2].parent[2] = 2;
    CHECK(mtp_checkpoint_save_calibrated(p1, &m, &t, &run, &bad, err, sizeof err) == -1 &&
          strstr(err, "not an earlier node"));
    uint8_t *again = read_all(p1, &n3);
    CHECK(again && n3 == n1 && memcmp(again, b1, n1) == 0);
    CHECK(count_tmp_files() == 0);
    free(again);

    /* set_calibration (mtp calibrate): a file without one gets it, in place, with the weights and
       the train state kept: the very bytes save_calibrated writes; NULL takes it out again */
    CHECK_MSG(mtp_checkpoint_set_calibration(p4, p4, &cal, err, sizeof err) == 0, "%s: %s", tn, err);
    again = read_all(p4, &n3);
    CHECK_MSG(again && n3 == n1 && memcmp(again, b1, n1) == 0, "%s: set_calibration wrote another file", tn);
    free(again);
    CHECK(mtp_checkpoint_set_calibration(p1, p3, NULL, err, sizeof err) == 0);
    again = read_all(p3, &n3);
    CHECK(again && n3 == n4 && memcmp(again, b4, n4) == 0);
    free(again);
    CHECK(mtp_checkpoint_set_calibration(p1, p3, &bad, err, sizeof err) == -1 && strstr(err, "not an earlier node"));
    CHECK(count_tmp_files() == 0);
    free(b1);
    free(b3);
    free(b4);

    unlink(p1), unlink(p2), unlink(p3), unlink(p4);
    mtp_trainer_free(&t);
    mtp_model_free(&m);
}

/* ---- resume == uninterrupted ---------------------------------------------------------------- */

static void test_resume(HeadType ht) {
    const char *tn = heads_type_name(ht);
    MtpModel ma, mb;
    MtpTrainer ta, tb;
    MtpStepStats sa[6], sb[6];
    memset(sa, 0, sizeof sa);
    memset(sb, 0, sizeof sb);
    if (build_trained(&ma, &ta, ht, 6, sa)) {
        CHECK(0);
        return;
    }
    if (build_trained(&mb, &tb, ht, 3, sb)) {
        CHECK(0);
        return;
    }
    char p[600], err[512];
    path_in(p, sizeof p, "resume.ckpt");
    MtpRunInfo run = small_run();
    CHECK_MSG(mtp_checkpoint_save(p, &mb, &tb, &run, err, sizeof err) == 0, "%s", err);
    mtp_trainer_free(&tb);
    mtp_model_free(&mb);

    /* a fresh model and trainer from the file, as cli_train.c does */
    MtpModel mc;
    MtpCheckpointExtra x;
    int rc = mtp_checkpoint_load(p, &mc, &x, err, sizeof err);
    CHECK_MSG(rc == 0, "%s: %s", tn, err);
    if (rc) {
        mtp_trainer_free(&ta);
        mtp_model_free(&ma);
        return;
    }
    MtpTrainer tc;
    CHECK(x.has_train);
    CHECK(mtp_trainer_build(&tc, &mc, &x.opt, err, sizeof err) == 0);
    mtp_trainer_restore(&tc, &x);
    mtp_checkpoint_extra_free(&x);
    for (int i = 3; i < 6; i++) mtp_train_step(&tc, &g_corpus, &sb[i]);

    for (int i = 0; i < 6; i++) {
        int same = memcmp(sa[i].loss, sb[i].loss, sizeof sa[i].loss) == 0 && sa[i].total_loss == sb[i].total_loss &&
                   sa[i].grad_norm == sb[i].grad_norm && sa[i].lr == sb[i].lr;
        CHECK_MSG(same, "%s: step %d: loss %.9g vs %.9g, grad norm %.9g vs %.9g", tn, i + 1, sa[i].total_loss,
                  sb[i].total_loss, sa[i].grad_norm, sb[i].grad_norm);
    }
    /* the run is not trivially constant: losses move */
    CHECK(sa[5].total_loss != sa[0].total_loss);
    CHECK(tc.step == 6 && ta.step == 6 && tc.batches_drawn == ta.batches_drawn);
    CHECK(memcmp(&tc.data_rng, &ta.data_rng, sizeof ta.data_rng) == 0);
    CHECK_MSG(memcmp(mc.params, ma.params, ma.n_params * sizeof(float)) == 0, "%s: final parameters differ", tn);
    CHECK(memcmp(tc.m, ta.m, ma.n_params * sizeof(float)) == 0);
    CHECK(memcmp(tc.v, ta.v, ma.n_params * sizeof(float)) == 0);

    unlink(p);
    mtp_trainer_free(&tc);
    mtp_model_free(&mc);
    mtp_trainer_free(&ta);
    mtp_model_free(&ma);
}



/* Checks a tensors array read by msgpack-c against the model (and moments buffer), and records
 * where each tensor's data lies in the file. */
static void check_tensor_array(const msgpack_object *arr, const MtpModel *m, const float *buf, const uint8_t *file,
                               size_t file_n, const char *what) {
    CHECK_MSG(arr && arr->type == MSGPACK_OBJECT_ARRAY && arr->via.array.size == (uint32_t)m->n_tensors, "%s", what);
    if (!arr || arr->type != MSGPACK_OBJECT_ARRAY) return;
    int ok_names = 1, ok_data = 1, ok_crc = 1, ok_shape = 1, ok_ref = 1;
    for (uint32_t i = 0; i < arr->via.array.size && i < (uint32_t)m->n_tensors; i++) {
        const msgpack_object *t = &arr->via.array.ptr[i];
        const MtpTensor *mt = &m->tensors[i];
        if (!obj_str_eq(map_get(t, "name"), mt->name) || !obj_str_eq(map_get(t, "dtype"), "f32")) ok_names = 0;
        const msgpack_object *sh = map_get(t, "shape");
        if (!sh || sh->type != MSGPACK_OBJECT_ARRAY || sh->via.array.size != (uint32_t)mt->ndim) ok_shape = 0;
        else
            for (int d = 0; d < mt->ndim; d++) {
                int64_t v;
                if (!obj_int(&sh->via.array.ptr[d], &v) || v != mt->shape[d]) ok_shape = 0;
            }
        const msgpack_object *data = map_get(t, "data");
        int64_t crc;
        if (!data || data->type != MSGPACK_OBJECT_BIN || data->via.bin.size != mt->size * sizeof(float)) {
            ok_data = 0;
            continue;
        }
        const uint8_t *dp = (const uint8_t *)data->via.bin.ptr;
        /* little-endian f32, row-major: the same bytes as the floats in memory on this machine */
        if (memcmp(dp, buf + mt->offset, data->via.bin.size) != 0) ok_data = 0;
        if (!obj_int(map_get(t, "crc32"), &crc) || (uint64_t)crc != ref_crc32(dp, data->via.bin.size)) ok_crc = 0;
        if (dp >= file && dp + data->via.bin.size <= file + file_n) {
            if (g_n_data < (int)(sizeof g_data / sizeof g_data[0]))
                g_data[g_n_data++] = (Range){(size_t)(dp - file), (size_t)(dp - file) + data->via.bin.size};
        } else ok_ref = 0;
    }
    CHECK_MSG(ok_names, "%s: names or dtypes differ", what);
    CHECK_MSG(ok_shape, "%s: shapes differ", what);
    CHECK_MSG(ok_data, "%s: data differs", what);
    CHECK_MSG(ok_crc, "%s: crc32 is not the standard CRC-32 of the data", what);
    CHECK_MSG(ok_ref, "%s: msgpack-c did not reference the file for bin data", what);
}

/* The calibration as README documents it: {version 1, heads, positions, ranks 8, rates (heads-1)
 * x 8 float64, trees [{parent, rank, expected float64}], no depth}. */
static void check_calibration_object(const msgpack_object *o, const DecodeCalibration *c) {
    CHECK(o && o->type == MSGPACK_OBJECT_MAP && o->via.map.size == 6);
    if (!o || o->type != MSGPACK_OBJECT_MAP) return;
    int64_t v = 0;
    CHECK(obj_int(map_get(o, "version"), &v) && v == 1);
    CHECK(obj_int(map_get(o, "heads"), &v) && v == c->heads);
    CHECK(obj_int(map_get(o, "positions"), &v) && v == c->positions);
    CHECK(obj_int(map_get(o, "ranks"), &v) && v == DECODE_CAL_RANKS);
    const msgpack_object *rates = map_get(o, "rates"), *trees = map_get(o, "trees");
    int ok_rates = rates && rates->type == MSGPACK_OBJECT_ARRAY && rates->via.array.size == (uint32_t)c->heads - 1;
    for (int d = 0; ok_rates && d + 1 < c->heads; d++) {
        const msgpack_object *row = &rates->via.array.ptr[d];
        ok_rates = row->type == MSGPACK_OBJECT_ARRAY && row->via.array.size == DECODE_CAL_RANKS;
        for (int j = 0; ok_rates && j < DECODE_CAL_RANKS; j++)
            ok_rates = row->via.array.ptr[j].type == MSGPACK_OBJECT_FLOAT64 &&
                       row->via.array.ptr[j].via.f64 == c->rate[d][j];
    }
    CHECK_MSG(ok_rates, "calibration rates are not (heads-1) x %d float64", DECODE_CAL_RANKS);
    int ok_trees = trees && trees->type == MSGPACK_OBJECT_ARRAY && trees->via.array.size == (uint32_t)c->n_trees;
    for (int k = 0; ok_trees && k < c->n_trees; k++) {
        const msgpack_object *tr = &trees->via.array.ptr[k], *e = map_get(tr, "expected");
        const msgpack_object *lists[2] = {map_get(tr, "parent"), map_get(tr, "rank")};
        const int *want[2] = {c->trees[k].parent, c->trees[k].rank};
        ok_trees = tr->type == MSGPACK_OBJECT_MAP && tr->via.map.size == 3 && !map_get(tr, "depth") && e &&
                   e->type == MSGPACK_OBJECT_FLOAT64 && e->via.f64 == c->expected[k];
        for (int a = 0; ok_trees && a < 2; a++) {
            const msgpack_object *l = lists[a];
            ok_trees = l && l->type == MSGPACK_OBJECT_ARRAY && l->via.array.size == (uint32_t)k + 1;
            for (int i = 0; ok_trees && i <= k; i++) ok_trees = obj_int(&l->via.array.ptr[i], &v) && v == want[a][i];
        }
    }
    CHECK_MSG(ok_trees, "calibration trees differ from the documented layout");
}

static void test_msgpack_c_reads(const char *path, const MtpModel *m, const MtpTrainer *t,
                                 const DecodeCalibration *cal) {
    size_t n;
    uint8_t *buf = read_all(path, &n);
    CHECK(buf != NULL);
    if (!buf) return;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    msgpack_unpack_return ret = msgpack_unpack_next(&u, (const char *)buf, n, &off);
    CHECK_MSG(ret == MSGPACK_UNPACK_SUCCESS, "msgpack_unpack_next returned %d", (int)ret);
    CHECK(off == n);
    if (ret == MSGPACK_UNPACK_SUCCESS) {
        const msgpack_object *root = &u.data;
        CHECK(root->type == MSGPACK_OBJECT_MAP);
        CHECK(obj_str_eq(map_get(root, "format"), "mtp-checkpoint"));
        int64_t v = 0;
        CHECK(obj_int(map_get(root, "version"), &v) && v == 1);
        const msgpack_object *cfg = map_get(root, "config");
        CHECK(cfg && cfg->type == MSGPACK_OBJECT_MAP);
        int64_t dim = 0, vocab = 0, heads = 0;
        CHECK(obj_int(map_get(cfg, "dim"), &dim) && dim == m->cfg.trunk.dim);
        CHECK(obj_int(map_get(cfg, "vocab"), &vocab) && vocab == DS_BYTE_VOCAB);
        CHECK(obj_int(map_get(cfg, "heads"), &heads) && heads == m->cfg.heads.n);
        CHECK(obj_str_eq(map_get(cfg, "head_type"), heads_type_name(m->cfg.heads.type)));
        const msgpack_object *tok = map_get(root, "tokenizer");
        CHECK(tok && obj_str_eq(map_get(tok, "type"), "bytes"));
        CHECK(map_get(root, "tensors") != NULL);
        g_n_data = 0;
        check_tensor_array(map_get(root, "tensors"), m, m->params, buf, n, "tensors");
        const msgpack_object *tr = map_get(root, "train");
        CHECK(tr && tr->type == MSGPACK_OBJECT_MAP);
        int64_t step = -1;
        CHECK(obj_int(map_get(tr, "step"), &step) && step == t->step);
        check_tensor_array(map_get(tr, "adam_m"), m, t->m, buf, n, "adam_m");
        check_tensor_array(map_get(tr, "adam_v"), m, t->v, buf, n, "adam_v");
        CHECK(g_n_data == 3 * m->n_tensors);
        check_calibration_object(map_get(root, "calibration"), cal);
    }
    msgpack_unpacked_destroy(&u);
    free(buf);
}



/* ---- tokenizers ----------------------------------------------------------------------------- */

/* a crafted tokenizer file: {"format":"mtp-tokenizer","version":1,"tokenizer":{bpe, merges, vocab, hash}} */
static void write_tokenizer_file(const char *path, const int32_t *merges, int n_merges, int vocab, uint64_t hash) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "format", 6), msgpack_pack_str_with_body(&pk, "mtp-tokenizer", 13);
    msgpack_pack_str_with_body(&pk, "version", 7), msgpack_pack_int(&pk, 1);
    msgpack_pack_str_with_body(&pk, "tokenizer", 9);
    msgpack_pack_map(&pk, 4);
    msgpack_pack_str_with_body(&pk, "type", 4), msgpack_pack_str_with_body(&pk, "bpe", 3);
    msgpack_pack_str_with_body(&pk, "vocab", 5), msgpack_pack_int(&pk, vocab);
    msgpack_pack_str_with_body(&pk, "merges", 6), msgpack_pack_bin_with_body(&pk, merges, (size_t)n_merges * 8);
    msgpack_pack_str_with_body(&pk, "hash", 4), msgpack_pack_uint64(&pk, hash);
    write_all(path, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

static void test_tokenizer_round_trip(void) {
    static const char text[] = "the cat sat on the mat; the cat ate the rat. 12 + 34 = 46\n#### 46\n";
    char err[512], ck[600], tf[600];
    DsBpe *tok = NULL;
    CHECK_MSG(ds_bpe_train(&tok, (const uint8_t *)text, sizeof text - 1, 270, err, sizeof err) == 0, "%s", err);
    if (!tok) return;
    const int V = ds_bpe_vocab(tok);
    CHECK(V > DS_BYTE_VOCAB);
    MtpConfig cfg = small_cfg(HEAD_LINEAR);
    cfg.trunk.vocab = V;
    MtpModel m;
    CHECK(mtp_model_build(&m, &cfg, err, sizeof err) == 0);
    mtp_model_init(&m, 7);
    m.tokenizer = tok;
    MtpRunInfo run = small_run();
    DsSource src[2] = {{"a/b.jsonl", 0.7}, {"builtin:arith", 0.3}};
    mtp_run_set_sources(&run, src, 2);
    snprintf(run.jsonl_question, sizeof run.jsonl_question, "q");
    snprintf(run.jsonl_answer, sizeof run.jsonl_answer, "a");
    run.skip_bad_lines = 1;
    path_in(ck, sizeof ck, "tok.ckpt");
    path_in(tf, sizeof tf, "tok.tokenizer");
    CHECK_MSG(mtp_checkpoint_save(ck, &m, NULL, &run, err, sizeof err) == 0, "%s", err);
    MtpModel l;
    MtpCheckpointExtra x;
    int rc = mtp_checkpoint_load(ck, &l, &x, err, sizeof err);
    CHECK_MSG(rc == 0, "%s", err);
    if (rc == 0) {
        CHECK(l.tokenizer && ds_bpe_hash(l.tokenizer) == ds_bpe_hash(tok) && ds_bpe_vocab(l.tokenizer) == V);
        CHECK(l.tokenizer && ds_bpe_n_merges(l.tokenizer) == ds_bpe_n_merges(tok) &&
              memcmp(ds_bpe_merges(l.tokenizer), ds_bpe_merges(tok), (size_t)ds_bpe_n_merges(tok) * 8) == 0);
        CHECK(x.run.n_sources == 2 && strcmp(x.run.sources[0].spec, "a/b.jsonl") == 0 &&
              x.run.sources[0].weight == 0.7 && strcmp(x.run.sources[1].spec, "builtin:arith") == 0 &&
              x.run.sources[1].weight == 0.3 && strcmp(x.run.data_spec, "a/b.jsonl") == 0);
        CHECK(strcmp(x.run.jsonl_question, "q") == 0 && strcmp(x.run.jsonl_answer, "a") == 0 &&
              x.run.jsonl_text[0] == 0 && x.run.skip_bad_lines == 1);
        DsOptions o;
        CHECK(mtp_run_data_options(&x.run, &o) == 2 && strcmp(o.jsonl.question, "q") == 0 &&
              strcmp(o.jsonl.text, "text") == 0 && o.jsonl.skip_bad_lines == 1);
        mtp_checkpoint_extra_free(&x);
        mtp_model_free(&l);
    }
    /* the tokenizer alone: from the checkpoint, and through a tokenizer file */
    DsBpe *t2 = NULL;
    CHECK_MSG(mtp_tokenizer_load(ck, &t2, err, sizeof err) == 0 && t2 && ds_bpe_hash(t2) == ds_bpe_hash(tok), "%s", err);
    ds_bpe_free(t2), t2 = NULL;
    CHECK_MSG(mtp_tokenizer_save(tf, tok, err, sizeof err) == 0, "%s", err);
    CHECK_MSG(mtp_tokenizer_load(tf, &t2, err, sizeof err) == 0 && t2 && ds_bpe_hash(t2) == ds_bpe_hash(tok), "%s", err);
    ds_bpe_free(t2), t2 = NULL;
    /* a byte model's tokenizer is NULL */
    m.tokenizer = NULL;
    CHECK(mtp_tokenizer_save(tf, NULL, err, sizeof err) == 0);
    t2 = (DsBpe *)1;
    CHECK(mtp_tokenizer_load(tf, &t2, err, sizeof err) == 0 && t2 == NULL);
    /* bad files: a checkpoint file is not a tokenizer when it has no format; crafted merges */
    const int32_t *good = ds_bpe_merges(tok);
    int nm = ds_bpe_n_merges(tok);
    int32_t *bad = malloc((size_t)nm * 8);
    memcpy(bad, good, (size_t)nm * 8);
    bad[0] = 259 + 5; /* merge 0 uses a token made later */
    write_tokenizer_file(tf, bad, nm, V, ds_bpe_hash(tok));
    CHECK(mtp_tokenizer_load(tf, &t2, err, sizeof err) == -1 && t2 == NULL && strstr(err, "merge 0"));
    write_tokenizer_file(tf, good, nm, V, ds_bpe_hash(tok) ^ 1);
    CHECK(mtp_tokenizer_load(tf, &t2, err, sizeof err) == -1 && strstr(err, "hash"));
    write_tokenizer_file(tf, good, nm, V + 1, ds_bpe_hash(tok));
    CHECK(mtp_tokenizer_load(tf, &t2, err, sizeof err) == -1 && strstr(err, "vocab"));
    write_tokenizer_file(tf, good, nm - 1, V - 1, ds_bpe_hash(tok)); /* consistent, but not the hash of these merges */
    CHECK(mtp_tokenizer_load(tf, &t2, err, sizeof err) == -1 && strstr(err, "hash"));
    if (getenv("TEST_VERBOSE")) fprintf(stderr, "  expected: %s\n", err);
    free(bad);
    /* a model narrower than its tokenizer */
    mtp_model_free(&m);
    cfg.trunk.vocab = V - 1;
    CHECK(mtp_model_build(&m, &cfg, err, sizeof err) == 0);
    m.tokenizer = tok;
    CHECK(mtp_checkpoint_save(ck, &m, NULL, &run, err, sizeof err) == 0);
    CHECK(mtp_checkpoint_load(ck, &l, &x, err, sizeof err) == -1 && strstr(err, "smaller than the tokenizer"));
    mtp_model_free(&m); /* frees tok */
    unlink(ck), unlink(tf);
}

int main(void) {
    int rc = ckpt_test_begin("test_checkpoint");
    if (rc) return rc;
    test_round_trip(HEAD_TRANSFORMER);
    test_round_trip(HEAD_LINEAR);
    test_round_trip_shapes();
    test_resume(HEAD_TRANSFORMER);
    test_resume(HEAD_LINEAR);
    test_tokenizer_round_trip();
    test_calibration(HEAD_TRANSFORMER);
    test_calibration(HEAD_LINEAR);
    MtpModel m;
    MtpTrainer t;
    DecodeCalibration cal;
    char good[600];
    size_t n;
    uint8_t *buf = ckpt_test_good(&m, &t, &cal, good, sizeof good, &n);
    if (buf) {
        test_msgpack_c_reads(good, &m, &t, &cal);
        free(buf);
        unlink(good);
        mtp_trainer_free(&t);
        mtp_model_free(&m);
    } else CHECK(0);
    ckpt_test_end();
    TEST_DONE();
}
