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

int decode_tree_depth(const DecodeTree *t) {
    int d = 0;
    for (int i = 1; i < t->n; i++) d = t->depth[i] > d ? t->depth[i] : d;
    return d;
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

/* Rank of token x among logits (V): how many tokens come before it, most likely first, ties to the
 * lower id (as argmax and the trees' candidates order them), capped at DECODE_CAL_RANKS. */
static int rank_of(const float *logits, int V, int32_t x) {
    int r = 0;
    for (int v = 0; v < V && r < DECODE_CAL_RANKS; v++) r += logits[v] > logits[x] || (logits[v] == logits[x] && v < x);
    return r;
}

int decode_cal_tally(DecodeCalTally *tally, DecodeState *s, const int32_t *seq, int n, int from) {
    const int H = s->n_heads, V = s->model.tc.vocab, depth = H - 1;
    if (s->len != 0 || from < 0 || n > s->model.tc.ctx || (tally->n && tally->depth != depth)) {
        snprintf(s->err, sizeof s->err, "calibration tally: %d tokens from %d (context %d, engine at %d, %d heads "
                 "against the tally's %d)", n, from, s->model.tc.ctx, s->len, H, tally->depth + 1);
        return -1;
    }
    tally->depth = depth;
    if (depth == 0 || from > n - 2) return 0;
    const long need = tally->n + (n - 1 - from);
    if (need > tally->cap) {
        const long cap = need > 2 * tally->cap ? need : 2 * tally->cap;
        uint8_t *r = realloc(tally->ranks, (size_t)cap * depth);
        if (!r) {
            snprintf(s->err, sizeof s->err, "out of memory for the ranks of %ld positions", cap);
            return -1;
        }
        tally->ranks = r, tally->cap = cap;
    }
    /* position from is the prefill's last row; the rest go in passes of max_rows, every head's
       logits computed for every row */
    decode_prefill(s, seq, from + 1, H);
    for (int t = from, row = 0; t <= n - 2; t++, row++) {
        if (t > from && row == s->n_rows) {
            const int R = n - 1 - t < s->max_rows ? n - 1 - t : s->max_rows;
            decode_forward(s, seq + t, R, H);
            row = 0;
        }
        uint8_t *ranks = tally->ranks + (size_t)tally->n++ * depth;
        for (int d = 0; d < depth; d++) /* head d + 2 at position t predicts seq[t + d + 2] */
            ranks[d] = t + d + 2 < n ? (uint8_t)rank_of(decode_logits(s, d + 1, row), V, seq[t + d + 2])
                                     : DECODE_CAL_RANKS;
    }
    decode_truncate(s, 0);
    return 0;
}

void decode_cal_tally_free(DecodeCalTally *tally) {
    free(tally->ranks);
    memset(tally, 0, sizeof *tally);
}

/* The deepest node of t (its first nodes n) that the ranks of one position follow from the root. */
static int deepest_match(const DecodeTree *t, int n, const uint8_t *ranks, int depth) {
    int node = 0;
    for (int c = 1; c < n; c++) /* parents come first: one pass finds the path */
        if (t->parent[c] == node && t->depth[node] < depth && t->rank[c] == ranks[t->depth[node]]) node = c;
    return node;
}

int decode_calibration_build(DecodeCalibration *c, const DecodeCalTally *tally, int heads, int max_nodes) {
    const int depth = heads - 1;
    const long N = tally->n;
    memset(c, 0, sizeof *c);
    if (heads < 1 || heads > HEADS_MAX || max_nodes < 1 || max_nodes > DECODE_TREE_MAX || (N && tally->depth != depth))
        return -1;
    c->heads = heads, c->positions = N;
    /* rates: head d + 2's candidate j right, given heads 2..d+1 had theirs among their candidates */
    for (int d = 0; d < depth; d++) {
        long given = 0, hits[DECODE_CAL_RANKS] = {0};
        for (long i = 0; i < N; i++) {
            const uint8_t *r = tally->ranks + (size_t)i * depth;
            int ok = 1;
            for (int e = 0; e < d && ok; e++) ok = r[e] < DECODE_CAL_RANKS;
            if (!ok) continue;
            given++;
            if (r[d] < DECODE_CAL_RANKS) hits[r[d]]++;
        }
        for (int j = 0; j < DECODE_CAL_RANKS; j++) c->rate[d][j] = given ? (double)hits[j] / given : 0.0;
    }
    /* trees, grown one node at a time: the next node is the child (of a node in the tree, at a
       rank not there yet) whose path the most positions follow; ties to the shallower, earlier
       parent and lower rank. A position that follows the new node's path gains one token. */
    DecodeTree t;
    decode_tree_chain(&t, 1);
    c->trees[0] = t, c->expected[0] = 1.0, c->n_trees = 1;
    long counts[DECODE_TREE_MAX][DECODE_CAL_RANKS];
    for (int k = 1; k < max_nodes; k++) {
        memset(counts, 0, sizeof counts);
        for (long i = 0; i < N; i++) {
            const uint8_t *r = tally->ranks + (size_t)i * depth;
            const int node = deepest_match(&t, t.n, r, depth);
            if (t.depth[node] < depth && r[t.depth[node]] < DECODE_CAL_RANKS) counts[node][r[t.depth[node]]]++;
        }
        int best = -1, best_rank = 0;
        for (int u = 0; u < t.n; u++) {
            if (t.depth[u] >= depth) continue;
            for (int j = 0; j < DECODE_CAL_RANKS; j++) {
                int taken = 0;
                for (int v = u + 1; v < t.n && !taken; v++) taken = t.parent[v] == u && t.rank[v] == j;
                if (taken) continue;
                if (best < 0 || counts[u][j] > counts[best][best_rank] ||
                    (counts[u][j] == counts[best][best_rank] && t.depth[u] < t.depth[best]))
                    best = u, best_rank = j;
            }
        }
        if (best < 0) break; /* every candidate of every head is in (a tiny model) */
        t.parent[t.n] = best, t.depth[t.n] = t.depth[best] + 1, t.rank[t.n] = best_rank;
        t.n++;
        c->trees[k] = t;
        c->expected[k] = c->expected[k - 1] + (N ? (double)counts[best][best_rank] / N : 0.0);
        c->n_trees = k + 1;
    }
    return 0;
}
