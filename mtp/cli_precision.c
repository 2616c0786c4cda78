/* cli_precision.c - --precision auto (cli.h): train, generate and bench pick fp32 or bf16 by
 * measuring, on this machine, the work the command is about to do. Neither is faster everywhere:
 * oneDNN's bf16 products run at about twice its fp32 ones on CPUs with AVX512_BF16 (AMD Zen 4) but
 * below them where bf16 is emulated (Intel Xeon without AMX: 73 against 134 GFLOP/s a core), and a
 * decoding pass, bound by streaming the weights, gains from bf16's half the bytes only where its
 * kernels read them fast. Each pick has a side it keeps unless the other wins by 10%, so that a
 * close call does not flip from one run to the next. */
#include <stdlib.h>
#include <string.h>

#include "mtp/cli.h"

#define AUTO_MARGIN 1.10      /* the other precision must be this much faster to be picked */
#define AUTO_SECONDS 0.1      /* of products, per precision (train) */
#define AUTO_GFLOP 1.0        /* at most this much a product: fewer rows than the run's above it */
#define AUTO_PREFILL 32       /* cache positions before the timed decoding passes */
#define AUTO_ROUNDS 3         /* rounds of passes, the two engines taking turns ... */
#define AUTO_PASSES 3         /* ... timed passes per engine a round: the fastest of 9 counts */

int cli_precision_auto(const char *cmd, const char *s, CliPrecision *p) {
    *p = (CliPrecision){.prec = MTP_FP32, .is_auto = strcmp(s, "auto") == 0};
    if (p->is_auto || strcmp(s, "fp32") == 0) return 0;
    if (strcmp(s, "bf16") == 0) {
        p->prec = MTP_BF16;
        return 0;
    }
    cli_error(cmd, "--precision must be auto, fp32 or bf16 (got '%s')", s);
    return -1;
}

void cli_pick_products(CliPrecision *p, int M, int N, int K) {
    if (!p->is_auto) return;
    p->prec = MTP_FP32;
    if (mtp_bf16_products()) {
        /* a product of a GFLOP keeps the measurement short on one core and large enough to run
           the kernels the run's products run */
        const double most = AUTO_GFLOP * 1e9 / (2.0 * N * K);
        const int rows = M < most ? M : most >= 1 ? (int)most : 1;
        mtp_core_set_precision(MTP_FP32);
        p->fp32 = mtp_matmul_gflops(rows, N, K, AUTO_SECONDS);
        mtp_core_set_precision(MTP_BF16);
        p->bf16 = mtp_matmul_gflops(rows, N, K, AUTO_SECONDS);
        p->measured = 1;
        if (p->bf16 > AUTO_MARGIN * p->fp32) p->prec = MTP_BF16;
    }
    mtp_core_set_precision(p->prec);
}

/* Passes of R rows at positions len.. as a decoding step runs them (the forward of the rows, then
 * the drafts of the last one), the first untimed: it brings back into the caches the weights the
 * other engine's passes pushed out. Returns the fastest in seconds. */
static double fastest_pass(DecodeState *s, const int32_t *tokens, int len, int R) {
    double best = 1e30;
    for (int k = -1; k < AUTO_PASSES; k++) {
        decode_truncate(s, len);
        const double t0 = mtp_now();
        decode_forward(s, tokens + len, R, 1);
        if (s->n_heads > 1) decode_logits(s, 1, R - 1);
        const double t = mtp_now() - t0;
        if (k >= 0 && t < best) best = t;
    }
    return best;
}

/* Tokens for timed passes of up to R rows after a prompt of *len (up to prefill) tokens, within
 * the context; NULL when out of memory. */
static int32_t *pass_tokens(int ctx, int R, int prefill, int *len) {
    *len = ctx - R < prefill ? ctx - R : prefill;
    int32_t *tokens = malloc((size_t)(*len + R) * sizeof *tokens);
    for (int i = 0; tokens && i < *len + R; i++)
        tokens[i] = (int32_t)((i * 37 + 11) % 256); /* bytes: in every vocabulary */
    return tokens;
}

/* Passes of R rows (the engines' max_rows, at most the context) on both engines after a prompt
 * of up to AUTO_PREFILL tokens, taking turns in rounds so that a slow spell of the machine lands on
 * both; ms[p] gets the fastest of each (the pass the least other work got in the way of). */
static int time_engines(DecodeState *e, double *ms) {
    const int ctx = e[0].model.tc.ctx, R = e[0].max_rows < ctx ? e[0].max_rows : ctx;
    int len;
    int32_t *tokens = pass_tokens(ctx, R, AUTO_PREFILL, &len);
    if (!tokens) return -1;
    for (int p = 0; p < 2; p++) {
        ms[p] = 1e30;
        decode_truncate(&e[p], 0);
        if (len > 0) decode_prefill(&e[p], tokens, len, 1);
    }
    for (int r = 0; r < AUTO_ROUNDS; r++)
        for (int p = 0; p < 2; p++) {
            mtp_core_set_precision((MtpPrecision)p);
            const double t = 1e3 * fastest_pass(&e[p], tokens, len, R);
            ms[p] = t < ms[p] ? t : ms[p];
        }
    free(tokens);
    return R;
}

int cli_time_passes(DecodeState *s, int n, double *ms) {
    const int ctx = s->model.tc.ctx;
    n = n < ctx ? n : ctx;
    int len;
    /* a tree's rows each attend to the whole cache: time them where a long generation is on
       average, in the middle of the context */
    int32_t *tokens = pass_tokens(ctx, n, ctx / 2 > AUTO_PREFILL ? ctx / 2 : AUTO_PREFILL, &len);
    if (!tokens) return -1;
    decode_truncate(s, 0);
    if (len > 0) decode_prefill(s, tokens, len, 1);
    for (int R = 1; R <= n; R++) ms[R - 1] = 1e30;
    for (int r = 0; r < AUTO_ROUNDS; r++) /* the sizes take turns, as the precisions do above */
        for (int R = 1; R <= n; R++) {
            const double t = 1e3 * fastest_pass(s, tokens, len, R);
            ms[R - 1] = t < ms[R - 1] ? t : ms[R - 1];
        }
    decode_truncate(s, 0);
    free(tokens);
    return n;
}

int cli_build_engine(DecodeState *s, DecodeModel m, int max_rows, int n_heads, CliPrecision *p, char *err,
                     size_t errlen) {
    if (!p->is_auto || !mtp_bf16_products()) {
        if (p->is_auto) p->prec = MTP_FP32, p->measured = 0;
        mtp_core_set_precision(p->prec);
        return decode_build(s, m, max_rows, n_heads, err, errlen);
    }
    DecodeState e[2]; /* indexed by MtpPrecision: an engine packs its weights in the core's precision */
    for (int i = 0; i < 2; i++) {
        mtp_core_set_precision((MtpPrecision)i);
        if (decode_build(&e[i], m, max_rows, n_heads, err, errlen)) {
            if (i) decode_free(&e[0]);
            return -1;
        }
    }
    double ms[2];
    if ((p->rows = time_engines(e, ms)) < 0) {
        decode_free(&e[0]), decode_free(&e[1]);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    p->fp32 = ms[MTP_FP32], p->bf16 = ms[MTP_BF16], p->measured = 1;
    /* bf16 reads half the bytes: it stays unless fp32 is clearly faster */
    p->prec = AUTO_MARGIN * p->fp32 < p->bf16 ? MTP_FP32 : MTP_BF16;
    decode_free(&e[!p->prec]);
    *s = e[p->prec]; /* the state points to its memory, never into itself: the copy is the engine */
    decode_truncate(s, 0);
    mtp_core_set_precision(p->prec);
    return 0;
}

void cli_precision_why(char *buf, size_t n, const CliPrecision *p) {
    const char *name = mtp_precision_name(p->prec);
    if (!p->is_auto) snprintf(buf, n, "%s", name);
    else if (!p->measured) snprintf(buf, n, "%s (no bf16 products on this CPU)", name);
    else if (p->rows == 0) /* GFLOP/s: higher is faster */
        snprintf(buf, n, "%s (products %.0f GFLOP/s bf16, %.0f fp32%s)", name, p->bf16, p->fp32,
                 p->prec == MTP_FP32 && p->bf16 > p->fp32 ? ": bf16 not 10% faster" : "");
    else /* ms: lower is faster */
        snprintf(buf, n, "%s (%d-row pass %.3f ms bf16, %.3f ms fp32%s)", name, p->rows, p->bf16, p->fp32,
                 p->prec == MTP_BF16 && p->fp32 < p->bf16 ? ": fp32 not 10% faster" : "");
}

void cli_precision_json(FILE *f, const CliPrecision *p) {
    fprintf(f, "\"precision\":\"%s\",\"precision_auto\":%s", mtp_precision_name(p->prec),
            p->is_auto ? "true" : "false");
    if (p->measured)
        fprintf(f, ",\"%s\":{\"fp32\":%.*f,\"bf16\":%.*f}", p->rows ? "pass_ms" : "products_gflops", p->rows ? 4 : 1,
                p->fp32, p->rows ? 4 : 1, p->bf16);
}
