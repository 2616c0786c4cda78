/* ckpt_test.h - what tests/test_checkpoint.c and tests/test_checkpoint_damage.c share: scratch
 * files, a small model, corpus and trainer, the checks every failing load must pass, and readers
 * of msgpack-c's object tree. Header-only (static inline), included by those two programs alone. */
#ifndef MTP_TESTS_CKPT_TEST_H
#define MTP_TESTS_CKPT_TEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* mkdtemp */
#endif

#include "mtp/core/mpk.h"
#include "mtp/mtp.h"
#include "tests/test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


/* ---- files ---------------------------------------------------------------------------------- */

static char g_dir[512];

static inline void path_in(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", g_dir, name); }

static inline uint8_t *read_all(const char *path, size_t *n) {
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(sz > 0 ? (size_t)sz : 1);
    if (b && sz > 0 && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) *n = (size_t)sz;
    return b;
}

static inline void write_all(const char *path, const void *data, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
        exit(99);
    }
    const uint8_t *p = data;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) {
            fprintf(stderr, "write %s failed\n", path);
            exit(99);
        }
        p += w, n -= (size_t)w;
    }
    close(fd);
}

static inline int count_tmp_files(void) {
    DIR *d = opendir(g_dir);
    int n = 0;
    if (!d) return -1;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

static inline void remove_dir(void) {
    DIR *d = opendir(g_dir);
    if (!d) return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) rmdir(p);
        else unlink(p);
    }
    closedir(d);
    rmdir(g_dir);
}

/* ---- model, data, trainer ------------------------------------------------------------------- */

static inline MtpConfig small_cfg(HeadType ht) {
    MtpConfig c;
    memset(&c, 0, sizeof c);
    c.trunk.vocab = DS_BYTE_VOCAB;
    c.trunk.dim = 32;
    c.trunk.layers = ht == HEAD_TRANSFORMER ? 2 : 1;
    c.trunk.attn_heads = ht == HEAD_TRANSFORMER ? 4 : 2;
    c.trunk.ffn = 64;
    c.trunk.ctx = 16;
    c.heads.n = ht == HEAD_TRANSFORMER ? 2 : 3;
    c.heads.type = ht;
    return c;
}

static inline MtpTrainOptions small_opt(void) {
    MtpTrainOptions o;
    mtp_train_options_default(&o);
    o.steps = 6;
    o.batch = 2;
    o.accum = 2;
    o.warmup = 2;
    o.lr = 3e-3f;
    o.min_lr = 3e-4f;
    o.beta1 = 0.85f;
    o.beta2 = 0.97f;
    o.eps = 1e-7f;
    o.weight_decay = 0.05f;
    o.grad_clip = 0.5f;
    o.seed = 4242;
    return o;
}

static inline MtpRunInfo small_run(void) {
    MtpRunInfo r;
    memset(&r, 0, sizeof r);
    snprintf(r.data_spec, sizeof r.data_spec, "%s", "some/corpus file.txt");
    r.val_frac = 0.125;
    r.data_seed = 0xFEDCBA9876543210ull;
    r.difficulty = 3;
    r.precision = MTP_BF16;
    return r;
}

/* A corpus of generated arithmetic text, built in memory. */
static DsCorpus g_corpus;

static inline void make_corpus(void) {
    size_t cap = 24000, n = 0;
    uint8_t *text = malloc(cap);
    char ex[4096];
    MtpRng rng;
    mtp_rng_seed(&rng, 77);
    while (n < cap - sizeof ex) {
        size_t len = ds_arith_example(ex, sizeof ex, &rng, 2);
        if (len >= sizeof ex) continue;
        memcpy(text + n, ex, len);
        n += len;
    }
    size_t n_val = n / 8, n_train = n - n_val;
    g_corpus.train = malloc(n_train * sizeof(int32_t));
    g_corpus.val = malloc(n_val * sizeof(int32_t));
    g_corpus.n_train = ds_encode_bytes(g_corpus.train, text, n_train);
    g_corpus.n_val = ds_encode_bytes(g_corpus.val, text + n_train, n_val);
    free(text);
}

static inline int build_trained(MtpModel *m, MtpTrainer *t, HeadType ht, int steps, MtpStepStats *stats) {
    char err[256];
    MtpConfig c = small_cfg(ht);
    if (mtp_model_build(m, &c, err, sizeof err)) {
        fprintf(stderr, "model build: %s\n", err);
        return -1;
    }
    mtp_model_init(m, 1234);
    MtpTrainOptions o = small_opt();
    if (mtp_trainer_build(t, m, &o, err, sizeof err)) {
        fprintf(stderr, "trainer build: %s\n", err);
        mtp_model_free(m);
        return -1;
    }
    for (int i = 0; i < steps; i++) {
        MtpStepStats s;
        mtp_train_step(t, &g_corpus, &s);
        if (stats) stats[i] = s;
    }
    return 0;
}

/* ---- a decoding calibration, by hand ---------------------------------------------------------- */

/* A calibration for a model of `heads` heads with up to max_trees trees, filled by hand (mtp
 * calibrate measures one): rates that fall with the rank and the head (values a float32 would
 * not hold exactly), the trees of 1 and 2 nodes chains (decode_tree_chain), the larger ones the
 * first nodes of one branching tree grown by a fixed rule, and expected tokens per pass in
 * [1, heads]. Fewer trees than max_trees when the heads allow no more nodes (1 head: 1 tree). */
static inline void make_calibration(DecodeCalibration *c, int heads, int max_trees) {
    memset(c, 0, sizeof *c);
    c->heads = heads;
    c->positions = 12345 + 1000L * heads;
    for (int d = 0; d + 1 < heads; d++)
        for (int j = 0; j < DECODE_CAL_RANKS; j++) c->rate[d][j] = 0.9 / (j + 1) / (d + 1.1);
    /* the branching tree: node i's parent is an earlier node with room for a child (depth below
       heads - 1, fewer than DECODE_CAL_RANKS children), picked by an LCG; its rank is the count
       of its parent's children before it */
    DecodeTree b;
    int kids[DECODE_TREE_MAX] = {0};
    decode_tree_chain(&b, 1);
    uint32_t lcg = 12345;
    while (b.n < DECODE_TREE_MAX) {
        int cand[DECODE_TREE_MAX], nc = 0;
        for (int i = 0; i < b.n; i++)
            if (b.depth[i] + 1 < heads && kids[i] < DECODE_CAL_RANKS) cand[nc++] = i;
        if (nc == 0) break;
        lcg = lcg * 1103515245u + 12345u;
        const int p = cand[(lcg >> 16) % (uint32_t)nc];
        b.parent[b.n] = p, b.depth[b.n] = b.depth[p] + 1, b.rank[b.n] = kids[p]++;
        b.n++;
    }
    c->n_trees = max_trees < b.n ? max_trees : b.n;
    for (int k = 0; k < c->n_trees; k++) {
        DecodeTree *t = &c->trees[k];
        if (k < 2 && k < heads) decode_tree_chain(t, k + 1);
        else {
            memset(t, 0, sizeof *t);
            t->n = k + 1;
            for (int i = 0; i <= k; i++) t->parent[i] = b.parent[i], t->depth[i] = b.depth[i], t->rank[i] = b.rank[i];
        }
        c->expected[k] = 1 + (heads - 1) * (k / (k + 3.0));
    }
}

/* Every field equal, bit for bit: the rates heads 2..heads have, the trees' nodes (depths
 * included) and expected tokens per pass. */
static inline int same_calibration(const DecodeCalibration *a, const DecodeCalibration *b) {
    if (a->heads != b->heads || a->positions != b->positions || a->n_trees != b->n_trees) return 0;
    for (int d = 0; d + 1 < a->heads; d++)
        if (memcmp(a->rate[d], b->rate[d], sizeof a->rate[d]) != 0) return 0;
    for (int k = 0; k < a->n_trees; k++) {
        const DecodeTree *s = &a->trees[k], *t = &b->trees[k];
        if (s->n != t->n || memcmp(&a->expected[k], &b->expected[k], sizeof(double)) != 0) return 0;
        for (int i = 0; i < s->n; i++)
            if (s->parent[i] != t->parent[i] || s->depth[i] != t->depth[i] || s->rank[i] != t->rank[i]) return 0;
    }
    return 1;
}

/* ---- checks shared by every failing load ---------------------------------------------------- */

/* One line, not empty, names the path; the outputs are left empty. */
static inline int good_failure(int rc, const char *err, const char *path, const MtpModel *m, const MtpCheckpointExtra *x) {
    return rc == -1 && err[0] != 0 && strchr(err, '\n') == NULL && strstr(err, path) != NULL && m->params == NULL &&
           m->tensors == NULL && x->m == NULL && x->v == NULL && x->has_train == 0 && x->has_calibration == 0;
}

/* Loads path expecting failure with a message containing want (and want2 if not NULL). */
static inline void expect_load_fail(const char *path, const char *want, const char *want2, const char *what) {
    MtpModel m;
    MtpCheckpointExtra x;
    char err[512];
    memset(err, 0, sizeof err);
    int rc = mtp_checkpoint_load(path, &m, &x, err, sizeof err);
    CHECK_MSG(good_failure(rc, err, path, &m, &x), "%s: rc %d, message '%s'", what, rc, err);
    if (getenv("TEST_VERBOSE")) fprintf(stderr, "%-32s -> %s\n", what, err);
    if (want) CHECK_MSG(strstr(err, want) != NULL, "%s: message '%s' lacks '%s'", what, err, want);
    if (want2) CHECK_MSG(strstr(err, want2) != NULL, "%s: message '%s' lacks '%s'", what, err, want2);
    if (rc == 0) {
        mtp_checkpoint_extra_free(&x);
        mtp_model_free(&m);
    }
}

static inline int same_config(const MtpConfig *a, const MtpConfig *b) {
    return a->trunk.vocab == b->trunk.vocab && a->trunk.dim == b->trunk.dim && a->trunk.layers == b->trunk.layers &&
           a->trunk.attn_heads == b->trunk.attn_heads && a->trunk.ffn == b->trunk.ffn && a->trunk.ctx == b->trunk.ctx &&
           a->heads.n == b->heads.n && a->heads.type == b->heads.type;
}

static inline int same_options(const MtpTrainOptions *a, const MtpTrainOptions *b) {
    return a->steps == b->steps && a->batch == b->batch && a->accum == b->accum && a->warmup == b->warmup &&
           a->lr == b->lr && a->min_lr == b->min_lr && a->beta1 == b->beta1 && a->beta2 == b->beta2 &&
           a->eps == b->eps && a->weight_decay == b->weight_decay && a->grad_clip == b->grad_clip &&
           a->seed == b->seed;
}

static inline int same_run(const MtpRunInfo *a, const MtpRunInfo *b) {
    return strcmp(a->data_spec, b->data_spec) == 0 && a->val_frac == b->val_frac && a->data_seed == b->data_seed &&
           a->difficulty == b->difficulty && a->precision == b->precision;
}

static inline int any_nonzero(const float *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0.0f) return 1;
    return 0;
}


/* ---- msgpack-c reads the file ---------------------------------------------------------------- */

static inline uint32_t ref_crc32(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return ~c;
}

static inline const msgpack_object *map_get(const msgpack_object *o, const char *key) {
    if (!o || o->type != MSGPACK_OBJECT_MAP) return NULL;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(key) &&
            memcmp(k->via.str.ptr, key, k->via.str.size) == 0)
            return &o->via.map.ptr[i].val;
    }
    return NULL;
}

static inline int obj_str_eq(const msgpack_object *o, const char *s) {
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) && memcmp(o->via.str.ptr, s, o->via.str.size) == 0;
}

static inline int obj_int(const msgpack_object *o, int64_t *v) {
    if (!o) return 0;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) *v = (int64_t)o->via.u64;
    else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) *v = o->via.i64;
    else return 0;
    return 1;
}

/* byte ranges of tensor data in the file, for the flip test */
typedef struct {
    size_t start, end;
} Range;
static Range g_data[1024];
static int g_n_data;

/* ---- set-up shared by both programs --------------------------------------------------------- */

/* Scratch folder in TMPDIR (default /tmp), core on one thread (MTP_TEST_THREADS=N for more), and
 * the small corpus. Returns 0, or 99 (ctest: failed to start) after printing why. */
static inline int ckpt_test_begin(const char *name) {
    const char *tmp = getenv("TMPDIR");
    char tmpl[400];
    snprintf(tmpl, sizeof tmpl, "%s/mtp_%s.XXXXXX", tmp && *tmp ? tmp : "/tmp", name);
    if (!mkdtemp(tmpl)) {
        perror("mkdtemp");
        return 99;
    }
    snprintf(g_dir, sizeof g_dir, "%s", tmpl);
    /* One thread unless MTP_TEST_THREADS says otherwise: nothing here depends on the thread count
     * (cli_resume.sh checks resuming with 2 threads), and on a machine shared with other work
     * spinning OpenMP threads make a 2-thread run of this test ten times slower. */
    const char *env = getenv("MTP_TEST_THREADS");
    int threads = env && atoi(env) > 0 ? atoi(env) : 1;
    char err[256];
    if (mtp_core_init(threads, MTP_FP32, err, sizeof err)) {
        fprintf(stderr, "mtp_core_init: %s\n", err);
        return 99;
    }
    make_corpus();
    return 0;
}

static inline void ckpt_test_end(void) {
    free(g_corpus.train);
    free(g_corpus.val);
    mtp_core_shutdown();
    remove_dir();
}

/* A trained 2-step linear-head model saved with its train state and a calibration (cal, from
 * make_calibration: every tree the 3 heads allow up to DECODE_TREE_MAX) to good.ckpt in the
 * scratch folder; returns the file's bytes (free them) or NULL. m and t stay built for comparisons. */
static inline uint8_t *ckpt_test_good(MtpModel *m, MtpTrainer *t, DecodeCalibration *cal, char *path, size_t cap,
                                      size_t *n) {
    char err[512];
    *n = 0;
    if (build_trained(m, t, HEAD_LINEAR, 2, NULL) != 0) return NULL;
    path_in(path, cap, "good.ckpt");
    MtpRunInfo run = small_run();
    make_calibration(cal, m->cfg.heads.n, DECODE_TREE_MAX);
    CHECK_MSG(mtp_checkpoint_save_calibrated(path, m, t, &run, cal, err, sizeof err) == 0, "%s", err);
    uint8_t *buf = read_all(path, n);
    CHECK(buf && *n > 4096);
    return buf;
}

#endif
