/* cli_tree.c - the draft tree of generate, bench and eval --task answers (cli.h, CliTree). The
 * trees come from the checkpoint's calibration (mtp calibrate), which says how many tokens a pass
 * of each tree yields on the model's own text; what a pass of so many rows costs depends on the
 * machine, so without --tree the size is picked by timing passes on the engine that will decode. */
#include <stdio.h>
#include <string.h>

#include "mtp/cli.h"

/* t is the chain of t->n nodes. */
static int is_chain(const DecodeTree *t) {
    for (int i = 1; i < t->n; i++)
        if (t->parent[i] != i - 1 || t->rank[i] != 0) return 0;
    return 1;
}

int cli_tree_plan(const char *cmd, const char *path, const CliTreeArgs *a, const CliModel *cm, int K, CliTree *tr) {
    memset(tr, 0, sizeof *tr);
    tr->max_rows = tr->K = K;
    const DecodeCalibration *cal = &cm->x.cal;
    if (a->nodes > 0 && !cm->x.has_calibration) {
        cli_error(cmd, "--tree %d: %s has no calibration: run mtp calibrate --model %s first", a->nodes, path, path);
        return EXIT_USAGE;
    }
    if (a->nodes > 0 && a->nodes > cal->n_trees) {
        cli_error(cmd, "--tree %d: the calibration of %s has trees of 1..%d nodes", a->nodes, path, cal->n_trees);
        return EXIT_USAGE;
    }
    tr->chain_why = a->nodes == 0 ? "--tree 0" : !cm->x.has_calibration ? "no calibration" : "lookahead 1";
    if (a->nodes == 0 || !cm->x.has_calibration || (a->nodes < 0 && K == 1)) return 0; /* a chain */
    if (a->nodes > 0) {
        tr->use = tr->given = 1, tr->nodes = a->nodes;
        decode_tree_prune(&tr->t, &cal->trees[a->nodes - 1], a->nodes, K);
        tr->expected = tr->t.n == a->nodes ? cal->expected[a->nodes - 1] : 0;
        tr->max_rows = K > tr->t.n ? K : tr->t.n;
        return 0;
    }
    /* the trees grow a node at a time, so those that fit the lookahead as they are (whose expected
       tokens the calibration knows) are the first ones */
    while (tr->to_time < cal->n_trees && decode_tree_depth(&cal->trees[tr->to_time]) < K) tr->to_time++;
    tr->max_rows = K > tr->to_time ? K : tr->to_time;
    return 0;
}

int cli_tree_pick(const char *cmd, CliTree *tr, DecodeState *s, const DecodeCalibration *cal) {
    if (!tr->to_time) return 0;
    if ((tr->n_timed = cli_time_passes(s, tr->to_time, tr->ms)) < 0) {
        cli_error(cmd, "out of memory");
        return EXIT_FAIL;
    }
    int best = 0; /* ties to the smaller tree */
    for (int k = 1; k < tr->n_timed; k++)
        if (cal->expected[k] / tr->ms[k] > cal->expected[best] / tr->ms[best]) best = k;
    tr->use = 1, tr->nodes = best + 1, tr->t = cal->trees[best], tr->expected = cal->expected[best];
    return 0;
}

const DecodeTree *cli_tree_request(const CliTree *tr) { return tr->use ? &tr->t : NULL; }

/* "; LABEL: E, T ms: R tokens/ms" for the tree of k + 1 nodes, timed */
static size_t why_size(char *buf, size_t n, const char *label, const CliTree *tr, const DecodeCalibration *cal,
                       int k) {
    int w = snprintf(buf, n, "; %s: %.2f, %.3f ms: %.1f tokens/ms", label, cal->expected[k], tr->ms[k],
                     cal->expected[k] / tr->ms[k]);
    return w < 0 ? 0 : (size_t)w < n ? (size_t)w : n;
}

void cli_tree_why(char *buf, size_t n, const CliTree *tr, const DecodeCalibration *cal) {
    if (!tr->use) {
        snprintf(buf, n, "chain of %d (%s)", tr->K, tr->chain_why);
        return;
    }
    if (tr->given) {
        if (tr->t.n < tr->nodes)
            snprintf(buf, n, "tree: %d of %d nodes (--tree %d, pruned to lookahead %d)", tr->t.n, tr->nodes, tr->nodes,
                     tr->K);
        else snprintf(buf, n, "tree: %d nodes (--tree %d; expected %.2f tokens per pass)", tr->t.n, tr->nodes,
                      tr->expected);
        return;
    }
    const int k = tr->nodes - 1;
    size_t w = (size_t)snprintf(buf, n, "tree: %d node%s (expected %.2f tokens per pass, pass %.3f ms: %.1f tokens/ms",
                                tr->nodes, tr->nodes == 1 ? "" : "s", tr->expected, tr->ms[k],
                                tr->expected / tr->ms[k]);
    if (w < n && k > 0) w += why_size(buf + w, n - w, "1 node", tr, cal, 0);
    char label[32];
    snprintf(label, sizeof label, "chain of %d", tr->K);
    if (w < n && tr->K - 1 != k && tr->K <= tr->n_timed && is_chain(&cal->trees[tr->K - 1]))
        w += why_size(buf + w, n - w, label, tr, cal, tr->K - 1);
    if (w < n) snprintf(buf + w, n - w, ")");
}
