/* test_star.c - what self-training (mtp star) keeps: ds_star_filter keeps exactly the distinct
 * chains whose final answer is the reference; ds_train_problems comes from the training split and
 * ds_problems_drop removes every problem whose question is a held-out one, so that no held-out
 * problem enters training (builtin:arith's two streams and a .jsonl file's lines). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datasets/ds.h"
#include "test.h"

static void test_filter(void) {
    const char *chains[] = {
        "2 + 3 = 5\n#### 5\n",        /* 0: right */
        "2 + 3 = 6\n#### 6\n",        /* 1: wrong */
        "no answer line at all\n",    /* 2: none */
        "2 + 3 = 5\n#### 5\n",        /* 3: a copy of 0 */
        "3 + 2 = 5\n#### 5.\n",       /* 4: right, another chain (the answer normalized) */
        "#### 5\n#### 7\n",           /* 5: wrong: the LAST marker counts */
        "x\0y\n#### 5\n",             /* 6: right, with a NUL byte inside */
        "x\0z\n#### 5\n",             /* 7: right, differs from 6 after the NUL only */
    };
    size_t lens[8];
    for (int i = 0; i < 8; i++) lens[i] = strlen(chains[i]);
    lens[6] = lens[7] = 11;
    int keep[8];
    const int n = ds_star_filter(keep, chains, lens, 8, "5");
    CHECK_MSG(n == 4 && keep[0] == 0 && keep[1] == 4 && keep[2] == 6 && keep[3] == 7, "kept %d: %d %d %d %d", n,
              keep[0], keep[1], keep[2], keep[3]);
    CHECK(ds_star_filter(keep, chains, lens, 8, "6") == 1 && keep[0] == 1);
    CHECK(ds_star_filter(keep, chains, lens, 8, "8") == 0);
    CHECK(ds_star_filter(keep, chains, lens, 8, "") == 0); /* no reference: nothing is right */
    CHECK(ds_star_filter(keep, chains, lens, 0, "5") == 0);
}

/* No held-out question among the training problems once dropped; the training problems are not
   the held-out ones to begin with (other stream or lines); drop keeps the order and the rest. */
static void check_split(const DsOptions *o, int limit, const char *what) {
    char err[512];
    DsProblem *tr, *held;
    int nt, nh;
    if (ds_train_problems(&tr, &nt, o, limit, err, sizeof err) ||
        ds_heldout_problems(&held, &nh, o, 0, err, sizeof err)) {
        CHECK_MSG(0, "%s: %s", what, err);
        return;
    }
    CHECK_MSG(nt == limit && nh > 0, "%s: %d training, %d held-out", what, nt, nh);
    char **before = malloc((size_t)nt * sizeof *before);
    for (int i = 0; i < nt; i++) before[i] = strdup(tr[i].text);
    int overlap = 0; /* training problems whose question is a held-out one */
    for (int i = 0; i < nt; i++) {
        int found = 0;
        for (int j = 0; j < nh && !found; j++)
            found = tr[i].prompt_len == held[j].prompt_len && memcmp(tr[i].text, held[j].text, tr[i].prompt_len) == 0;
        overlap += found;
    }
    const int kept = ds_problems_drop(tr, nt, held, nh);
    CHECK_MSG(kept == nt - overlap, "%s: kept %d of %d, %d overlap", what, kept, nt, overlap);
    int left = 0;
    for (int i = 0; i < kept; i++)
        for (int j = 0; j < nh; j++)
            left += tr[i].prompt_len == held[j].prompt_len && memcmp(tr[i].text, held[j].text, tr[i].prompt_len) == 0;
    CHECK_MSG(left == 0, "%s: %d held-out questions left", what, left);
    int b = 0, in_order = kept > 0; /* the kept ones in their order, untouched */
    for (int i = 0; i < kept && in_order; i++, b++) {
        while (b < nt && strcmp(before[b], tr[i].text) != 0) b++;
        in_order = b < nt;
    }
    CHECK_MSG(in_order, "%s: the kept problems are not the originals in order", what);
    fprintf(stderr, "%s: %d training problems, %d held-out, %d training ones dropped\n", what, nt, nh, overlap);
    for (int i = 0; i < nt; i++) free(before[i]);
    free(before);
    ds_problems_free(tr, kept);
    ds_problems_free(held, nh);
}

static void test_splits(void) {
    DsOptions o;
    ds_options_init(&o);
    o.spec = "builtin:arith";
    o.difficulty = 1; /* short questions, so the two streams repeat some */
    check_split(&o, 2000, "builtin:arith level 1");
    /* a .jsonl file: 50 lines, the last 5 held out; lines 3 and 7 repeat held-out questions */
    char path[] = "/tmp/test_star_XXXXXX";
    const int fd = mkstemp(path);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) return;
    for (int i = 0; i < 50; i++) {
        const int q = i == 2 ? 46 : i == 6 ? 48 : i;
        fprintf(f, "{\"question\":\"q%d?\",\"answer\":\"#### %d\"}\n", q, q);
    }
    fclose(f);
    char spec[64];
    snprintf(spec, sizeof spec, "%s.jsonl", path);
    rename(path, spec);
    ds_options_init(&o);
    o.spec = spec;
    char err[512];
    DsProblem *tr;
    int nt;
    CHECK(ds_train_problems(&tr, &nt, &o, 0, err, sizeof err) == 0 && nt == 45);
    if (nt == 45) CHECK(strncmp(tr[0].text, "q0?\n", 4) == 0 && strncmp(tr[44].text, "q44?\n", 5) == 0);
    ds_problems_free(tr, nt);
    check_split(&o, 45, "a .jsonl file");
    remove(spec);
}

int main(void) {
    test_filter();
    test_splits();
    TEST_DONE();
}
