/* tree.c - draft trees: their shape, and calibration, which measures which trees pay on a model.
 *
 * A tree's node is a token at a depth: the root is head 1's next token, a node at depth d one of
 * head d+1's candidates. The engine runs a tree as the rows of one pass (decode.c); this file
 * only knows shapes and counts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode/decode.h"

int decode_tree_check(const DecodeTree *t, int max_depth, char *err, size_t errlen) {
    if (t->n < 1 || t->n > DECODE_TREE_MAX) {
        snprintf(err, errlen, "a tree has 1..%d nodes, not %d", DECODE_TREE_MAX, t->n);
        return -1;
    }
    if (t->parent[0] != -1 || t->depth[0] != 0 || t->rank[0] != 0) {
        snprintf(err, errlen, "node 0 must be the root (parent -1, depth 0, rank 0)");
        return -1;
    }
    for (int i = 1; i < t->n; i++) {
        const int p = t->parent[i];
        if (p < 0 || p >= i) {
            snprintf(err, errlen, "node %d: parent %d is not an earlier node", i, p);
            return -1;
        }
        if (t->depth[i] != t->depth[p] + 1 || t->depth[i] >= max_depth) {
            snprintf(err, errlen, "node %d: depth %d (its parent's is %d, and depths stay below %d)", i, t->depth[i],
                     t->depth[p], max_depth);
            return -1;
        }
        if (t->rank[i] < 0 || t->rank[i] >= DECODE_CAL_RANKS) {
            snprintf(err, errlen, "node %d: rank %d is not in 0..%d", i, t->rank[i], DECODE_CAL_RANKS - 1);
            return -1;
        }
        for (int j = 1; j < i; j++)
            if (t->parent[j] == p && t->rank[j] == t->rank[i]) {
                snprintf(err, errlen, "nodes %d and %d: the same candidate (rank %d) under node %d", j, i, t->rank[i], p);
                return -1;
            }
    }
    return 0;
}

void decode_tree_chain(DecodeTree *t, int k) {
    memset(t, 0, sizeof *t);
    t->n = k;
    for (int i = 0; i < k; i++) t->parent[i] = i - 1, t->depth[i] = i, t->rank[i] = 0;
}

void decode_tree_prune(DecodeTree *dst, const DecodeTree *src, int max_nodes, int max_depth) {
    int index[DECODE_TREE_MAX]; /* src node -> dst node, or -1 */
    DecodeTree t = {0};
    for (int i = 0; i < src->n; i++) {
        index[i] = -1;
        if (t.n == max_nodes || src->depth[i] >= max_depth) continue;
        /* a kept node's parent was kept: it comes earlier and is shallower */
        index[i] = t.n;
        t.parent[t.n] = i ? index[src->parent[i]] : -1;
        t.depth[t.n] = src->depth[i];
        t.rank[t.n] = src->rank[i];
        t.n++;
    }
    *dst = t;
}

/* ---- calibration ------------------------------------------------------------------------------- */

int decode_calibration_check(const DecodeCalibration *c, char *err, size_t errlen) {
    if (c->heads < 1 || c->heads > HEADS_MAX || c->positions < 0 || c->n_trees < 0 || c->n_trees > DECODE_TREE_MAX) {
        snprintf(err, errlen, "calibration: %d heads, %ld positions, %d trees", c->heads, c->positions, c->n_trees);
        return -1;
    }
    for (int d = 0; d + 1 < c->heads; d++)
        for (int j = 0; j < DECODE_CAL_RANKS; j++)
            if (!(c->rate[d][j] >= 0 && c->rate[d][j] <= 1)) {
                snprintf(err, errlen, "calibration: rate of head %d's candidate %d is %g, not in [0, 1]", d + 2, j,
                         c->rate[d][j]);
                return -1;
            }
    for (int k = 0; k < c->n_trees; k++) {
        char msg[160];
        if (c->trees[k].n != k + 1) {
            snprintf(err, errlen, "calibration: tree %d has %d nodes, not %d", k, c->trees[k].n, k + 1);
            return -1;
        }
        if (decode_tree_check(&c->trees[k], c->heads, msg, sizeof msg)) {
            snprintf(err, errlen, "calibration: tree of %d nodes: %s", k + 1, msg);
            return -1;
        }
        if (!(c->expected[k] >= 1 && c->expected[k] <= c->heads)) {
            snprintf(err, errlen, "calibration: tree of %d nodes expects %g tokens per pass, not in [1, %d]", k + 1,
                     c->expected[k], c->heads);
            return -1;
        }
    }
    return 0;
}
