/* smallrows_tiles.h - one instruction set's tiles of the small-row kernel (see smallrows.c).
 *
 * smallrows.c includes this file once per instruction set, between a `#pragma GCC target` and its
 * pop, with these defined:
 *   ISA(name)           the name with the instruction set's suffix (tile_avx512, ...)
 *   VL                  lanes of a vector register: 16 floats (AVX-512) or 8 (AVX2)
 *   ROW_GROUP           rows one tile holds in registers (a product of more rows runs in groups)
 *   TILE_PANELS(R)      panels of 16 columns a tile of R rows works on at once
 *   SMALL_IN_REGISTER   keeps a loaded vector in a register (smallrows.c says why)
 *   HAS_DOT             defined where the CPU has vdpbf16ps (AVX512_BF16)
 * The vectors are GCC's vector extension, VL lanes each; a panel's 16 columns are VP of them. */

#define VP (16 / VL) /* vectors per panel */
typedef float ISA(VF) __attribute__((vector_size(VL * 4)));
typedef float ISA(VFu) __attribute__((vector_size(VL * 4), aligned(4))); /* C's rows: no alignment */
typedef uint32_t ISA(VU) __attribute__((vector_size(VL * 4)));

/* C's row r, columns col..col+VL-1 (those below N) get the sums v, or add them. */
static inline __attribute__((always_inline)) void ISA(store)(const SmallProduct *p, int r, int col, ISA(VF) v) {
    const int width = p->N - col < VL ? p->N - col : VL;
    float *dst = p->C + (size_t)r * p->N + col;
    if (width == VL) {
        ISA(VFu) *d = (ISA(VFu) *)dst;
        *d = p->accumulate ? *d + v : v;
    } else if (width > 0) {
        float lane[VL];
        memcpy(lane, &v, sizeof lane);
        for (int j = 0; j < width; j++) dst[j] = p->accumulate ? dst[j] + lane[j] : lane[j];
    }
}

/* acc[r][c][h] = sum over k of A[r][k] W[k][16 (p0 + c) + VL h ...], the sums in ascending k,
 * one multiply-add per k (two per pair of bf16 weights, in the same order). Then C gets them (or
 * adds them). R, CT and kind are constants once inlined, so the accumulators are registers and
 * every loop over them unrolls. */
static inline __attribute__((always_inline)) void ISA(tile)(const SmallProduct *p, int r0, const int R, int p0,
                                                            const int CT, const SmallKind kind, int ahead) {
    typedef ISA(VF) VF;
    typedef ISA(VU) VU;
    VF acc[ROW_GROUP][4][VP];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < CT; c++)
            for (int h = 0; h < VP; h++) acc[r][c][h] = (VF){0};
    /* lanes (floats, or bf16 pairs) of a row of the layout, and where each panel's 16 start */
    const size_t Kq = kind == SMALL_FP32 ? (size_t)p->Kp : (size_t)p->Kp / 2;
    size_t at[4];
    for (int c = 0; c < CT; c++)
        at[c] = (size_t)(p0 + c) / SMALL_SUB * Kq * MTP_SMALL_BLOCK + (size_t)(p0 + c) % SMALL_SUB * 16;
    /* ahead: the same panels of the next block, which this tile asks the memory for as it goes */
    const size_t next = ahead ? Kq * MTP_SMALL_BLOCK : 0;
    if (kind == SMALL_FP32) {
        const float *W = (const float *)p->W, *ak = p->A + r0; /* ak: input k of the R rows, ak[0..R) */
        for (int k = 0; k < p->K; k++, ak += p->lda) {
            VF w[4][VP];
            for (int c = 0; c < CT; c++) {
                for (int h = 0; h < VP; h++) {
                    w[c][h] = *(const VF *)(W + at[c] + (size_t)k * MTP_SMALL_BLOCK + h * VL);
                    SMALL_IN_REGISTER(w[c][h]);
                }
                if (ahead) __builtin_prefetch(W + at[c] + next + (size_t)k * MTP_SMALL_BLOCK, 0, 1);
            }
            for (int r = 0; r < R; r++) {
                const float a = ak[r];
                for (int c = 0; c < CT; c++)
                    for (int h = 0; h < VP; h++) acc[r][c][h] += a * w[c][h];
            }
        }
    } else if (kind == SMALL_BF16_WIDEN) {
        /* a 64-byte row of a bf16 panel holds inputs k, k+1 of its 16 columns, interleaved: as 16
         * 32-bit lanes, the low half is the weight of k, the high half that of k+1. Shifting and
         * masking turns each into the fp32 it stands for. */
        const uint32_t *W = (const uint32_t *)p->W;
        const float *ak = p->A + r0;
        for (int kk = 0; kk < (p->K + 1) / 2; kk++, ak += 2 * p->lda) {
            VF w0[4][VP], w1[4][VP];
            for (int c = 0; c < CT; c++) {
                for (int h = 0; h < VP; h++) {
                    const VU u = *(const VU *)(W + at[c] + (size_t)kk * MTP_SMALL_BLOCK + h * VL);
                    w0[c][h] = (VF)(u << 16);
                    w1[c][h] = (VF)(u & 0xffff0000u);
                }
                if (ahead) __builtin_prefetch(W + at[c] + next + (size_t)kk * MTP_SMALL_BLOCK, 0, 1);
            }
            for (int r = 0; r < R; r++) {
                const float a0 = ak[r], a1 = ak[p->lda + r];
                for (int c = 0; c < CT; c++)
                    for (int h = 0; h < VP; h++) acc[r][c][h] += a0 * w0[c][h];
                for (int c = 0; c < CT; c++)
                    for (int h = 0; h < VP; h++) acc[r][c][h] += a1 * w1[c][h];
            }
        }
    }
#ifdef HAS_DOT
    else {
        /* vdpbf16ps: each lane adds the products of a pair of bf16 inputs with its pair of weights;
         * the rows were rounded to bf16 pairs (p->A16). AVX-512 only: one vector per panel. */
        const uint32_t *W = (const uint32_t *)p->W, *ak = (const uint32_t *)p->A16 + r0;
        for (int kk = 0; kk < (p->K + 1) / 2; kk++, ak += p->lda) {
            __m512i w[4];
            for (int c = 0; c < CT; c++) {
                w[c] = _mm512_load_si512((const void *)(W + at[c] + (size_t)kk * MTP_SMALL_BLOCK));
                SMALL_IN_REGISTER(w[c]);
                if (ahead) __builtin_prefetch(W + at[c] + next + (size_t)kk * MTP_SMALL_BLOCK, 0, 1);
            }
            for (int r = 0; r < R; r++) {
                const __m512bh a = (__m512bh)_mm512_set1_epi32((int)ak[r]);
                for (int c = 0; c < CT; c++)
                    acc[r][c][0] = (VF)_mm512_dpbf16_ps((__m512)acc[r][c][0], a, (__m512bh)w[c]);
            }
        }
    }
#endif
    for (int c = 0; c < CT; c++)
        for (int h = 0; h < VP; h++)
            for (int r = 0; r < R; r++) ISA(store)(p, r0 + r, (p0 + c) * 16 + h * VL, acc[r][c][h]);
}

/* Rows r0..r0+R-1 against panels pa..pb-1, TILE_PANELS(R) panels at a time. */
static inline __attribute__((always_inline)) void ISA(panels)(const SmallProduct *p, int r0, const int R, int pa,
                                                              int pb, const SmallKind kind, int ahead) {
    const int CT = TILE_PANELS(R);
    int q = pa;
    for (; q + CT <= pb; q += CT) ISA(tile)(p, r0, R, q, CT, kind, ahead);
    for (; q < pb; q++) ISA(tile)(p, r0, R, q, 1, kind, ahead);
}

/* One row group: R (1..ROW_GROUP) made a constant. */
static void ISA(row_group)(const SmallProduct *p, int r0, int R, int pa, int pb, SmallKind kind, int ahead) {
#ifdef HAS_DOT /* this instruction set's include serves the bf16 dot products alone */
#define SMALL_CASE(n)                                                                                             \
    case n: ISA(panels)(p, r0, n, pa, pb, SMALL_BF16_DOT, ahead); break;
#else
#define SMALL_CASE(n)                                                                                             \
    case n:                                                                                                       \
        if (kind == SMALL_FP32) ISA(panels)(p, r0, n, pa, pb, SMALL_FP32, ahead);                                 \
        else ISA(panels)(p, r0, n, pa, pb, SMALL_BF16_WIDEN, ahead);                                              \
        break;
#endif
    switch (R) {
        SMALL_CASE(1) SMALL_CASE(2) SMALL_CASE(3)
#if ROW_GROUP > 3
        SMALL_CASE(4)
#endif
    default: assert(0 && "rows outside 1..ROW_GROUP");
    }
#undef SMALL_CASE
}

/* The product over panels pa..pb-1. A product of up to ROW_GROUP rows is one stream through the
 * weights. More rows go through them a block at a time (SMALL_SUB panels: 64 columns of 1376 fp32
 * inputs are 352 KB, which stay in the core's L2 cache while every row group reads them), and the
 * second row group asks the memory for the next block meanwhile: the first group's read of a block
 * then overlaps the other groups' arithmetic on the one before. */
static void ISA(product)(const SmallProduct *p, int pa, int pb, SmallKind kind) {
    if (p->M <= ROW_GROUP) {
        ISA(row_group)(p, 0, p->M, pa, pb, kind, 0);
        return;
    }
    /* groups as even as they go (6 rows: 3 + 3, not 4 + 2: a group of 2 reads the block from L2 for
     * half the arithmetic of one of 4, and 6 rows ran slower than 8) */
    const int groups = (p->M + ROW_GROUP - 1) / ROW_GROUP;
    for (int q = pa; q < pb; q += SMALL_SUB) {
        const int qe = q + SMALL_SUB < pb ? q + SMALL_SUB : pb;
        for (int g = 0, r0 = 0; g < groups; g++) {
            const int rows = (p->M - r0) / (groups - g) + ((p->M - r0) % (groups - g) != 0);
            ISA(row_group)(p, r0, rows, q, qe, kind, qe < pb);
            r0 += rows;
        }
    }
}

#undef VP
