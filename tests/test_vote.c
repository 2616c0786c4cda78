/* test_vote.c - self-consistency voting (answer.c): the majority and tie rules on constructed
 * answer lists, and majority@k / pass@k of ds_vote_curve against a direct computation written
 * another way (counts per distinct answer, the tie broken by the index where each answer reached
 * the top count). */
#include <stdlib.h>
#include <string.h>

#include "datasets/ds.h"
#include "mtp/core/rng.h"
#include "test.h"

/* The majority as the rule states it, computed differently: the top count over distinct answers,
   then among the answers with that count the one whose count-th occurrence comes first. */
static const char *direct_majority(const char *const *a, int n) {
    int top = 0;
    for (int i = 0; i < n; i++) {
        if (!a[i][0]) continue;
        int c = 0;
        for (int j = 0; j < n; j++) c += strcmp(a[j], a[i]) == 0;
        if (c > top) top = c;
    }
    if (!top) return NULL;
    int best_at = n;
    const char *best = NULL;
    for (int i = 0; i < n; i++) {
        if (!a[i][0]) continue;
        int c = 0, at = -1;
        for (int j = 0; j < n && at < 0; j++)
            if (strcmp(a[j], a[i]) == 0 && ++c == top) at = j;
        if (at >= 0 && at < best_at) best_at = at, best = a[i];
    }
    return best;
}

static const char *majority_of(const char *const *a, int n) {
    const int m = ds_vote_majority(a, n);
    return m < 0 ? NULL : a[m];
}

static void test_rules(void) {
    const char *none[] = {"", "", ""};
    CHECK(ds_vote_majority(none, 3) == -1);
    CHECK(ds_vote_majority(none, 0) == -1);
    const char *one[] = {"", "7", ""};
    CHECK(ds_vote_majority(one, 3) == 1);
    const char *plain[] = {"3", "5", "5", "3", "5"};
    CHECK(strcmp(majority_of(plain, 5), "5") == 0);
    CHECK(ds_vote_majority(plain, 5) == 1); /* the index of its first occurrence */
    /* a tie goes to the answer that reached the count first: B has 2 at index 2, A at index 3 */
    const char *tie[] = {"A", "B", "B", "A"};
    CHECK(strcmp(majority_of(tie, 4), "B") == 0);
    const char *tie1[] = {"A", "B"};
    CHECK(strcmp(majority_of(tie1, 2), "A") == 0);
    /* chains without an answer do not vote, even when they are the most common */
    const char *abstain[] = {"", "", "", "9", "", "4", "4"};
    CHECK(strcmp(majority_of(abstain, 7), "4") == 0);
    CHECK(strcmp(majority_of(abstain, 4), "9") == 0);
    const char *late[] = {"1", "2", "2", "1", "1"};
    CHECK(strcmp(majority_of(late, 5), "1") == 0); /* 3 beats 2, whenever it came */
    CHECK(strcmp(majority_of(late, 4), "2") == 0);
}

static void test_curve(void) {
    enum { P = 40, N = 16 };
    static const char *const POOL[] = {"", "1", "2", "3", "17", "-4"};
    const char *ans[P * N], *refs[P];
    MtpRng r;
    mtp_rng_seed(&r, 11);
    for (int p = 0; p < P; p++) {
        refs[p] = POOL[1 + mtp_rng_below(&r, 5)];
        const int spread = 1 + (int)mtp_rng_below(&r, 5); /* some problems agree more than others */
        for (int s = 0; s < N; s++) ans[p * N + s] = POOL[mtp_rng_below(&r, (uint64_t)spread + 1)];
    }
    const int ks[] = {1, 2, 4, 8, 16, 3};
    double maj[6], pass[6];
    ds_vote_curve(maj, pass, ans, refs, P, N, ks, 6);
    for (int j = 0; j < 6; j++) {
        int want_maj = 0, want_pass = 0;
        for (int p = 0; p < P; p++) {
            const char *m = direct_majority(ans + p * N, ks[j]);
            want_maj += m && strcmp(m, refs[p]) == 0;
            int any = 0;
            for (int s = 0; s < ks[j]; s++) any |= strcmp(ans[p * N + s], refs[p]) == 0;
            want_pass += any;
        }
        CHECK_MSG(maj[j] == (double)want_maj / P, "majority@%d %g, direct %g", ks[j], maj[j], (double)want_maj / P);
        CHECK_MSG(pass[j] == (double)want_pass / P, "pass@%d %g, direct %g", ks[j], pass[j], (double)want_pass / P);
        if (j > 0 && j < 5) CHECK(pass[j] >= pass[j - 1]); /* pass@k never falls as k grows */
    }
    CHECK(maj[0] == pass[0]); /* one sample: its answer is the majority */
    /* every problem's majority is checked too, not only the counts */
    for (int p = 0; p < P; p++)
        for (int k = 1; k <= N; k++) {
            const char *a = majority_of(ans + p * N, k), *b = direct_majority(ans + p * N, k);
            CHECK_MSG((a == NULL) == (b == NULL) && (!a || strcmp(a, b) == 0), "problem %d, k %d", p, k);
        }
}

int main(void) {
    test_rules();
    test_curve();
    TEST_DONE();
}
