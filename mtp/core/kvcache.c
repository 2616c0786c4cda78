/* kvcache.c - attention of a few new rows over a key/value cache (inference).
 *
 * Decoding runs 1..8 rows at a time against up to ctx cached positions, between products that
 * stream megabytes of weights through the caches of the CPU: what matters here is reading the
 * keys and values as runs of memory and keeping the sums in registers. Keys sit in tiles of
 * MTP_KV_TILE positions, so the scores of a tile are a vector accumulated over the head's
 * dimensions; values are per head, padded to whole vectors, so a weighted sum is a vector
 * multiply-add per position. The rows of a pass go together (up to ROWS: a lookahead of up to 8
 * reads each key tile and value row once for all its rows); the sums of each row run in the same
 * order whatever the rows beside it, so a row's output does not depend on them. Groups of 16 rows
 * ran slower (16 row pointers and 16-row sums do not fit the registers: a big model's 8-row pass
 * spent 1.24 ms in attention against 0.88 in groups of 4; groups of 8 with the queries
 * transposed, as here, 0.98-1.26). The probabilities stay in the rows' score arrays (no
 * transposed copy: 3-8% less time for 1-16 rows over 400 positions, hd 32, in cache, on the AMD
 * EPYC Zen 4).
 *
 * The new rows may also be the nodes of a draft tree (MtpAttnTree): each then sees the cache and
 * its ancestors only. The scores are computed for every row up to its own as for a sequence; the
 * mask acts in the softmax, which gathers a row's visible scores first so that it runs over the
 * same values in the same order as its chain would, and leaves zero probabilities elsewhere: a
 * tree's row is bit for bit its chain's row. */
#include <assert.h>
#include <float.h>
#include <math.h>
#include <string.h>

#include "mtp/core/core.h"

/* MTP_KV_TILE floats: GCC's vector extension, a zmm register with AVX-512, two ymm with AVX2.
 * aligned(4): loads and stores make no alignment assumption. */
typedef float VTile __attribute__((vector_size(MTP_KV_TILE * sizeof(float)), aligned(4)));

enum { ROWS = 8 }; /* rows that share one read of the cache */

static size_t round_tile(size_t n) { return (n + MTP_KV_TILE - 1) / MTP_KV_TILE * MTP_KV_TILE; }

size_t mtp_k_cache_floats(int T, int H, int hd) { return (size_t)H * round_tile(T) * hd; }
size_t mtp_v_cache_floats(int T, int H, int hd) { return (size_t)H * T * round_tile(hd); }
/* the rows' scores, then probabilities (R, H, T) */
size_t mtp_attention_cached_scratch_floats(int R, int T, int H) { return (size_t)R * H * round_tile(T); }

size_t mtp_kv_read_bytes(int n, int H, int hd) {
    return (size_t)H * (round_tile(n) * hd + (size_t)n * round_tile(hd)) * sizeof(float);
}

void mtp_kv_read(MtpKvLayer kv, int n, int T, int H, int hd) {
    const size_t Tp = round_tile(T), hdp = round_tile(hd);
    for (int h = 0; h < H; h++) { /* each head's keys and values are one run each */
        mtp_read_bytes(kv.k + (size_t)h * Tp * hd, round_tile(n) * hd * sizeof(float));
        mtp_read_bytes(kv.v + (size_t)h * T * hdp, (size_t)n * hdp * sizeof(float));
    }
}

/* Both loops below are inlined with n, the rows in use, a constant (see attend), so that the
 * accumulators of those rows, and only those, live in registers. */
#define INLINE static inline __attribute__((always_inline))

/* att[r] (tiles t0..t0+nt) = q[r] . keys, for rows r < n: n * nt sums in flight, each a vector
 * multiply-add per dimension. The queries come transposed, qT (hd, n): the n values a dimension
 * multiplies are neighbours at fixed offsets of one pointer (n row pointers took registers the
 * sums need). */
INLINE void score_tiles(float *const att[ROWS], const float *qT, const int n, const float *kh, int t0, const int nt,
                        int hd) {
    const float *tile = kh + (size_t)t0 * hd * MTP_KV_TILE;
    VTile acc[ROWS][4];
    for (int r = 0; r < n; r++)
        for (int u = 0; u < nt; u++) acc[r][u] = (VTile){0};
    const float *qd = qT;
    for (int d = 0; d < hd; d++, qd += n)
        for (int u = 0; u < nt; u++) {
            VTile k = *(const VTile *)(tile + ((size_t)u * hd + d) * MTP_KV_TILE);
            for (int r = 0; r < n; r++) acc[r][u] += qd[r] * k;
        }
    for (int r = 0; r < n; r++)
        for (int u = 0; u < nt; u++) *(VTile *)(att[r] + (size_t)(t0 + u) * MTP_KV_TILE) = acc[r][u];
}

INLINE void scores(float *const att[ROWS], const float *qT, const int n, const float *kh, int n_tiles, int hd) {
    /* enough independent sums to hide the latency of an add, at most 16 in registers */
    const int nt = n <= 4 ? 4 : n <= 8 ? 2 : 1;
    int t = 0;
    for (; t + nt <= n_tiles; t += nt) score_tiles(att, qT, n, kh, t, nt, hd);
    for (; t < n_tiles; t++) score_tiles(att, qT, n, kh, t, 1, hd);
}

/* out[r] (dims c0.. of nc tiles) = sum over positions j <= last of p[r][j] v_j, for rows r < n:
 * p[r][j] is 0 past row r's own position and where a tree's row does not look (row_probs), and
 * adding a zero product leaves a sum as it was, so every row's sum is its own, with no test per
 * position. Reads the values as one run. */
INLINE void weighted_values(float *const out[ROWS], float *const p[ROWS], const int last, const int n,
                            const float *vh, int hdp, int hd, int c0, const int nc) {
    VTile acc[ROWS][4];
    for (int r = 0; r < n; r++)
        for (int c = 0; c < nc; c++) acc[r][c] = (VTile){0};
    for (int j = 0; j <= last; j++) {
        const float *v = vh + (size_t)j * hdp + c0;
        for (int c = 0; c < nc; c++) {
            VTile vc = *(const VTile *)(v + c * MTP_KV_TILE);
            for (int r = 0; r < n; r++) acc[r][c] += p[r][j] * vc;
        }
    }
    for (int r = 0; r < n; r++)
        for (int c = 0; c < nc; c++) {
            const int w = hd - c0 - c * MTP_KV_TILE < MTP_KV_TILE ? hd - c0 - c * MTP_KV_TILE : MTP_KV_TILE;
            memcpy(out[r] + c0 + c * MTP_KV_TILE, &acc[r][c], (size_t)w * sizeof(float));
        }
}

/* A row's scores a (positions 0..last_all) become its probabilities, in place. As a sequence, the
 * row sees positions 0..last (zero after). As a tree's row it sees the positions below pos0 and the
 * rows in anc (bit b: the row at pos0 + b): their scores are first gathered in order after the
 * cache's, so that the softmax runs over the very scores, in the very order, that the chain of its
 * ancestors gives as a sequence, and the probabilities then go back to their rows' positions (zero
 * at the others). */
static void row_probs(float *a, int last, int last_all, int pos0, uint64_t anc, float scale) {
    int seen = last;
    if (anc) {
        seen = pos0 - 1;
        for (int j = pos0; j <= last; j++)
            if (anc >> (j - pos0) & 1) a[++seen] = a[j];
    }
    float mx = -FLT_MAX, sum = 0.0f;
#pragma omp simd reduction(max : mx)
    for (int j = 0; j <= seen; j++) mx = a[j] > mx ? a[j] : mx;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j <= seen; j++) sum += a[j] = mtp_expf((a[j] - mx) * scale);
    const float inv = 1.0f / sum;
    const int shared = anc ? pos0 : last + 1; /* positions whose probability stays where it is */
#pragma omp simd
    for (int j = 0; j < shared; j++) a[j] *= inv;
    if (!anc) {
        for (int j = last + 1; j <= last_all; j++) a[j] = 0.0f;
        return;
    }
    float tail[MTP_TREE_ROWS_MAX];
    memcpy(tail, a + pos0, (size_t)(seen + 1 - pos0) * sizeof(float));
    for (int j = pos0, k = 0; j <= last_all; j++) a[j] = j <= last && (anc >> (j - pos0) & 1) ? tail[k++] * inv : 0.0f;
}

/* One head, rows r < n: scores, softmax over positions 0..last[r] (a tree's rows: over their
 * ancestors, anc[r]; anc NULL for a sequence), and the weighted values.
 * o[r]: the row's query in, its output out; a[r]: its scores, then its probabilities. */
INLINE void attend(float *const a[ROWS], float *const o[ROWS], const int last[ROWS], const int n, const uint64_t *anc,
                   int pos0, const float *kh, const float *vh, int hd, float scale) {
    float qT[512 * ROWS]; /* head dims up to 512 (mtp_attention_cached) */
    for (int r = 0; r < n; r++)
        for (int d = 0; d < hd; d++) qT[d * n + r] = o[r][d];
    scores(a, qT, n, kh, (last[n - 1] + MTP_KV_TILE) / MTP_KV_TILE, hd);
    for (int i = 0; i < n; i++) row_probs(a[i], last[i], last[n - 1], pos0, anc ? anc[i] : 0, scale);
    const int hdp = (int)round_tile(hd), nc = n <= 4 ? 4 : n <= 8 ? 2 : 1; /* at most 16 sums */
    for (int c0 = 0; c0 < hdp; c0 += nc * MTP_KV_TILE) {
        const int left = (hdp - c0) / MTP_KV_TILE;
        switch (left < nc ? left : nc) {
        case 1: weighted_values(o, a, last[n - 1], n, vh, hdp, hd, c0, 1); break;
        case 2: weighted_values(o, a, last[n - 1], n, vh, hdp, hd, c0, 2); break;
        case 3: weighted_values(o, a, last[n - 1], n, vh, hdp, hd, c0, 3); break;
        default: weighted_values(o, a, last[n - 1], n, vh, hdp, hd, c0, 4); break;
        }
    }
}

void mtp_attention_cached(const MtpAttnCached *ac, MtpKvLayer kv, int pos0, int R) {
    const int T = ac->T, H = ac->H, hd = ac->hd;
    const float *qkv = ac->qkv, *cos_tab = ac->cos_tab, *sin_tab = ac->sin_tab;
    float *out = ac->out, *att = ac->att, *k_cache = kv.k, *v_cache = kv.v;
    const double t0 = mtp_timing_start();
    const int D = H * hd, half = hd / 2, hdp = (int)round_tile(hd), Tp = (int)round_tile(T);
    const float scale = 1.0f / sqrtf((float)hd);
    assert(pos0 >= 0 && R >= 1 && pos0 + R <= T && hd % 2 == 0 && hd <= 512 && (!ac->tree || R <= MTP_TREE_ROWS_MAX));
    /* the new rows: rotated queries into out (until each (row, head) overwrites its own), keys and
     * values into the caches */
    for (int r = 0; r < R; r++) {
        const float *row = qkv + (size_t)r * 3 * D;
        const int pos = pos0 + r, at = ac->tree ? pos0 + ac->tree->depth[r] : pos; /* its slot, its position */
        const float *c = cos_tab + (size_t)at * half, *s = sin_tab + (size_t)at * half;
        float k[512];
        for (int h = 0; h < H; h++) {
            mtp_rope_rotate(out + (size_t)r * D + h * hd, row + h * hd, c, s, half);
            mtp_rope_rotate(k, row + D + h * hd, c, s, half);
            float *kt = k_cache + ((size_t)h * Tp + pos / MTP_KV_TILE * MTP_KV_TILE) * hd + pos % MTP_KV_TILE;
            for (int d = 0; d < hd; d++) kt[(size_t)d * MTP_KV_TILE] = k[d];
            memcpy(v_cache + ((size_t)h * T + pos) * hdp, row + 2 * D + h * hd, hd * sizeof(float));
        }
    }
    /* heads split over the threads where the rows and the cache make it worth waking them */
#pragma omp parallel for schedule(static) if ((size_t)R * (pos0 + R) * D >= 4 * MTP_PARALLEL_MIN)
    for (int h = 0; h < H; h++) {
        const float *kh = k_cache + (size_t)h * Tp * hd, *vh = v_cache + (size_t)h * T * hdp;
        for (int r0 = 0; r0 < R; r0 += ROWS) {
            const int n = R - r0 < ROWS ? R - r0 : ROWS;
            float *a[ROWS], *o[ROWS]; /* o: the rows' queries, then their outputs */
            int last[ROWS];
            const uint64_t *anc = ac->tree ? ac->tree->ancestors + r0 : NULL;
            for (int i = 0; i < n; i++) {
                a[i] = att + ((size_t)(r0 + i) * H + h) * Tp;
                o[i] = out + (size_t)(r0 + i) * D + h * hd;
                last[i] = pos0 + r0 + i;
            }
            switch (n) { /* n a constant in each: its sums in registers */
            case 1: attend(a, o, last, 1, anc, pos0, kh, vh, hd, scale); break;
            case 2: attend(a, o, last, 2, anc, pos0, kh, vh, hd, scale); break;
            case 3: attend(a, o, last, 3, anc, pos0, kh, vh, hd, scale); break;
            case 4: attend(a, o, last, 4, anc, pos0, kh, vh, hd, scale); break;
            case 5: attend(a, o, last, 5, anc, pos0, kh, vh, hd, scale); break;
            case 6: attend(a, o, last, 6, anc, pos0, kh, vh, hd, scale); break;
            case 7: attend(a, o, last, 7, anc, pos0, kh, vh, hd, scale); break;
            default: attend(a, o, last, ROWS, anc, pos0, kh, vh, hd, scale); break;
            }
        }
    }
    mtp_timing_stop(MTP_TIME_ATTENTION, t0);
}

void mtp_kv_move(MtpKvLayer kv, int from, int to, int T, int H, int hd) {
    const size_t Tp = round_tile(T), hdp = round_tile(hd);
    assert(from >= 0 && from < T && to >= 0 && to < T);
    for (int h = 0; h < H; h++) {
        float *kh = kv.k + (size_t)h * Tp * hd;
        const float *src = kh + (size_t)from / MTP_KV_TILE * MTP_KV_TILE * hd + from % MTP_KV_TILE;
        float *dst = kh + (size_t)to / MTP_KV_TILE * MTP_KV_TILE * hd + to % MTP_KV_TILE;
        for (int d = 0; d < hd; d++) dst[(size_t)d * MTP_KV_TILE] = src[(size_t)d * MTP_KV_TILE];
        float *vh = kv.v + (size_t)h * T * hdp;
        memcpy(vh + (size_t)to * hdp, vh + (size_t)from * hdp, hdp * sizeof(float));
    }
}
