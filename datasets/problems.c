/* problems.c - held-out questions with their reference answers (ds.h, "held-out problems"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/sources_internal.h"
#include "mtp/core/core.h"

typedef struct {
    DsProblem *p;
    int n, cap, limit;
} Problems;

static int full(const Problems *ps) { return ps->limit > 0 && ps->n >= ps->limit; }

/* Adds a copy of text when it has an answer; -1 only when out of memory. */
static int add(Problems *ps, const char *text, size_t len, size_t prompt_len) {
    char answer[64];
    if (full(ps) || ds_answer_extract(text, len, answer, sizeof answer) < 0) return 0;
    if (ps->n == ps->cap) {
        int cap = ps->cap ? 2 * ps->cap : 256;
        DsProblem *q = realloc(ps->p, (size_t)cap * sizeof *q);
        if (!q) return -1;
        ps->p = q, ps->cap = cap;
    }
    DsProblem *q = &ps->p[ps->n];
    if (!(q->text = malloc(len + 1))) return -1;
    memcpy(q->text, text, len);
    q->text[len] = 0;
    q->len = len, q->prompt_len = prompt_len;
    memcpy(q->answer, answer, sizeof answer);
    ps->n++;
    return 0;
}

/* builtin:arith's examples of one split: the streams the corpus has (validation: its own seed). */
static int from_arith(Problems *ps, const DsOptions *o, int train, char *err, size_t errlen) {
    MtpRng rng;
    mtp_rng_seed(&rng, train ? o->seed : o->seed ^ DS_ARITH_VAL_SEED_XOR);
    const size_t bytes = train ? DS_ARITH_TRAIN_BYTES : DS_ARITH_VAL_BYTES;
    size_t cap = 1 << 16, text = 0;
    char *buf = malloc(cap);
    if (!buf) return mtp_fail(err, errlen, "out of memory");
    int rc = 0;
    while (rc == 0 && text < bytes && !full(ps)) {
        size_t len = ds_arith_example(buf, cap, &rng, o->difficulty);
        if (len >= cap) continue; /* no level writes that much */
        const char *nl = memchr(buf, '\n', len);
        rc = add(ps, buf, len, nl ? (size_t)(nl - buf) + 1 : len);
        text += len;
    }
    free(buf);
    return rc ? mtp_fail(err, errlen, "out of memory") : 0;
}

static int from_jsonl(Problems *ps, const char *path, const DsOptions *o, int train, char *err, size_t errlen) {
    long lines = ds_count_lines(path, err, errlen);
    if (lines < 0) return -1;
    long first_val = ds_jsonl_train_lines(lines, o->val_frac) + 1;
    DsJsonl *j = NULL;
    if (ds_jsonl_open(&j, path, &o->jsonl, err, errlen)) return -1;
    DsRecord rec;
    int r = 0, rc = 0;
    while (rc == 0 && !full(ps) && (r = ds_jsonl_next(j, &rec, err, errlen)) == 1)
        if ((rec.line >= first_val) != train && add(ps, rec.text, rec.len, rec.prompt_len))
            rc = mtp_fail(err, errlen, "out of memory");
    if (rc == 0 && r < 0) rc = -1;
    ds_jsonl_close(j);
    return rc;
}

static int split_problems(DsProblem **out, int *n, const DsOptions *opt, int limit, int train, char *err,
                          size_t errlen) {
    *out = NULL, *n = 0;
    Problems ps = {.limit = limit};
    int nsrc = opt->n_sources, rc = 0;
    DsSource one;
    const DsSource *src = opt->sources;
    if (nsrc == 0 && opt->spec) { /* the shorthand of DsOptions */
        snprintf(one.spec, sizeof one.spec, "%s", opt->spec);
        src = &one, nsrc = 1;
    }
    for (int i = 0; i < nsrc && rc == 0 && !full(&ps); i++) {
        DsSourceKind k = ds_source_kind(src[i].spec);
        if (k == DS_SRC_ARITH) rc = from_arith(&ps, opt, train, err, errlen);
        else if (k == DS_SRC_JSONL) rc = from_jsonl(&ps, src[i].spec, opt, train, err, errlen);
    }
    if (rc == 0 && ps.n == 0)
        rc = mtp_fail(err, errlen, "%s has no %s problems with a \"####\" answer: use a .jsonl file or "
                      "builtin:arith", nsrc == 1 ? src[0].spec : "the data", train ? "training" : "held-out");
    if (rc) {
        ds_problems_free(ps.p, ps.n);
        return -1;
    }
    *out = ps.p, *n = ps.n;
    return 0;
}

int ds_heldout_problems(DsProblem **out, int *n, const DsOptions *opt, int limit, char *err, size_t errlen) {
    return split_problems(out, n, opt, limit, 0, err, errlen);
}

int ds_train_problems(DsProblem **out, int *n, const DsOptions *opt, int limit, char *err, size_t errlen) {
    return split_problems(out, n, opt, limit, 1, err, errlen);
}

int ds_problems_drop(DsProblem *p, int n, const DsProblem *drop, int n_drop) {
    int kept = 0;
    for (int i = 0; i < n; i++) {
        int found = 0;
        for (int j = 0; j < n_drop && !found; j++)
            found = p[i].prompt_len == drop[j].prompt_len && memcmp(p[i].text, drop[j].text, p[i].prompt_len) == 0;
        if (found) free(p[i].text);
        else p[kept++] = p[i];
    }
    return kept;
}

void ds_problems_free(DsProblem *p, int n) {
    for (int i = 0; p && i < n; i++) free(p[i].text);
    free(p);
}
