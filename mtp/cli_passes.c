/* cli_passes.c - `mtp bench --passes`: the decoding pass at each row count against its floor, the
 * least time the machine needs to read what the pass must read or to do its arithmetic. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "decode/decode.h"
#include "mtp/cli.h"

static const char *PASSES_HELP =
    "usage: mtp bench --passes --model FILE [--rows LIST] [--cache LIST] [options]\n"
    "\n"
    "Time the decoding pass of R rows (R tokens verified at once; the drafts of its last row\n"
    "included) at a short and a long cache length, split it into its parts, and set each time\n"
    "beside its floor: max(bytes the pass must read / read bandwidth, FLOPs / peak).\n"
    "\n"
    "  --model FILE        checkpoint (required)\n"
    "  --rows LIST         comma-separated row counts (default 1,2,4,8,16)\n"
    "  --cache LIST        comma-separated cache lengths (default 32 and the context less the\n"
    "                      largest row count)\n"
    "  --repeats N         passes timed per point; the median is reported (default 30)\n"
    "  --threads P         threads (default: all cores)\n"
    "  --precision P       fp32 (default: an instrument measures the precision it is told),\n"
    "                      bf16, or auto (as mtp bench picks, from a pass of the largest row\n"
    "                      count: bf16 unless fp32 is 10% faster)\n"
    "  --json FILE         also write {\"cpu\":...,\"precision\":P,\"precision_auto\":false,\"peak_gflops\":G,\n"
    "                      \"passes\":[{\"cache_len\":L,\"rows\":R,\"ms\":T,\"floor_ms\":F,\"vs_floor\":T/F,\n"
    "                      \"pass_ratio\":T/T(1 row),\"products_ms\":..,\"attention_ms\":..,\"rest_ms\":..,\n"
    "                      \"drafts_ms\":..},...]}\n"
    "\n"
    "Parts: products = the forward's matrix products (blocks, head 1, unembedding); attention =\n"
    "attention over the cache (RoPE and the cache writes included); rest = the forward's other\n"
    "work (embedding, norms, residuals, SwiGLU); drafts = the drafting heads of the last row.\n"
    "Bytes = the packed matrices the pass uses, each once, and the cache rows attention reads;\n"
    "read bandwidth = those same bytes read in this run (best of 5); peak = oneDNN's product\n"
    "peak measured in this run (2048^3; in bf16 the higher of its bf16 and fp32 peaks).\n";

#define PASSES_MAX_POINTS 16

typedef struct {
    const char *model_path, *rows_list, *cache_list, *json_path, *precision;
    int repeats, threads, help, passes;
    CliPrecision prec; /* auto: picked when the engine is built */
    int rows[PASSES_MAX_POINTS], n_rows, cache[PASSES_MAX_POINTS], n_cache;
} PassesArgs;

/* One point: a pass of rows rows over a cache of cache_len positions. */
typedef struct {
    int cache_len, rows;
    double ms, products_ms, attention_ms, rest_ms, drafts_ms; /* of the median pass */
    double read_ms, flop_ms, floor_ms;
    DecodePassCost cost;
} PassPoint;

typedef struct {
    CliModel cm;
    DecodeState s;
    double peak_gflops;
    PassPoint pt[PASSES_MAX_POINTS * PASSES_MAX_POINTS];
    int n_pt;
} Passes;

/* "a,b,c" of numbers in [lo, hi] into v; the count, or -1. */
static int parse_list(const char *s, int *v, int lo, int hi) {
    int n = 0;
    while (*s && n < PASSES_MAX_POINTS) {
        char *end;
        long x = strtol(s, &end, 10);
        if (end == s || x < lo || x > hi || (*end && *end != ',')) return -1;
        v[n++] = (int)x;
        s = *end ? end + 1 : end;
    }
    return *s ? -1 : n;
}

static int passes_parse(int argc, char **argv, PassesArgs *a) {
    *a = (PassesArgs){.rows_list = "1,2,4,8,16", .precision = "fp32", .repeats = 30};
    CliOpt opts[] = {{"--passes", OPT_FLAG, &a->passes, 0, 0, 0},
                     {"--model", OPT_STR, &a->model_path, 0, 0, 0},
                     {"--rows", OPT_STR, &a->rows_list, 0, 0, 0},
                     {"--cache", OPT_STR, &a->cache_list, 0, 0, 0},
                     {"--repeats", OPT_INT, &a->repeats, 1, 10000, 0},
                     {"--threads", OPT_INT, &a->threads, 1, 4096, 0},
                     {"--precision", OPT_STR, &a->precision, 0, 0, 0},
                     {"--json", OPT_STR, &a->json_path, 0, 0, 0},
                     {0}};
    if (cli_parse("bench", argc, argv, 2, opts, NULL, &a->help)) return EXIT_USAGE;
    if (a->help) return fputs(PASSES_HELP, stdout), 0;
    if (cli_precision_auto("bench", a->precision, &a->prec)) return EXIT_USAGE;
    if (!a->model_path) {
        cli_error("bench", "--model FILE is required (see mtp bench --passes --help)");
        return EXIT_USAGE;
    }
    if ((a->n_rows = parse_list(a->rows_list, a->rows, 1, 256)) < 1) {
        cli_error("bench", "--rows '%s': expected up to %d comma-separated numbers from 1 to 256", a->rows_list,
                  PASSES_MAX_POINTS);
        return EXIT_USAGE;
    }
    return 0;
}

/* The model, the cache lengths (checked against its context) and an engine for the largest pass. */
static int passes_open(PassesArgs *a, Passes *p) {
    const CliOpen how = {.path = a->model_path, .compute = 1, .threads = a->threads, .prec = a->prec.prec};
    int rc = cli_open_model("bench", &how, &p->cm);
    if (rc) return rc;
    const int ctx = p->cm.m.cfg.trunk.ctx;
    int max_rows = 0;
    for (int i = 0; i < a->n_rows; i++) max_rows = a->rows[i] > max_rows ? a->rows[i] : max_rows;
    if (max_rows >= ctx) {
        cli_error("bench", "--rows: %d rows do not fit the model's context of %d after a prompt", max_rows, ctx);
        return EXIT_USAGE;
    }
    const int longest = ctx - max_rows;
    if (a->cache_list) a->n_cache = parse_list(a->cache_list, a->cache, 1, longest);
    else a->cache[0] = 32 < longest ? 32 : longest, a->cache[1] = longest, a->n_cache = 32 < longest ? 2 : 1;
    if (a->n_cache < 1) {
        cli_error("bench", "--cache '%s': expected comma-separated lengths from 1 to %d (the context less %d rows)",
                  a->cache_list, longest, max_rows);
        return EXIT_USAGE;
    }
    char err[512];
    if (cli_build_engine(&p->s, mtp_decode_model(&p->cm.m), max_rows, p->cm.m.cfg.heads.n, &a->prec, err, sizeof err)) {
        cli_error("bench", "%s", err);
        return EXIT_FAIL;
    }
    return 0;
}

static int by_ms(const void *x, const void *y) {
    const double a = ((const PassPoint *)x)->ms, b = ((const PassPoint *)y)->ms;
    return (a > b) - (a < b);
}

/* Times repeats passes of R rows after a cache of len positions; *pt gets the median one. */
static void time_point(DecodeState *s, const int32_t *tokens, int len, int R, int repeats, PassPoint *pt) {
    const int drafts = s->n_heads > 1;
    PassPoint *runs = calloc((size_t)repeats, sizeof *runs);
    if (!runs) return;
    for (int k = -2; k < repeats; k++) { /* two untimed passes create the products' primitives */
        PassPoint *r = &runs[k < 0 ? 0 : k];
        decode_truncate(s, len);
        mtp_timing(1);
        const double t0 = mtp_now(), lazy = s->t_lazy;
        decode_forward(s, tokens, R, 1);
        const double t1 = mtp_now();
        const double products = mtp_timing_total(MTP_TIME_PRODUCTS), attention = mtp_timing_total(MTP_TIME_ATTENTION);
        if (drafts) decode_logits(s, 1, R - 1);
        r->ms = 1e3 * (mtp_now() - t0);
        r->products_ms = 1e3 * products, r->attention_ms = 1e3 * attention;
        r->rest_ms = 1e3 * (t1 - t0) - r->products_ms - r->attention_ms;
        r->drafts_ms = 1e3 * (s->t_lazy - lazy);
    }
    mtp_timing(0);
    qsort(runs, (size_t)repeats, sizeof *runs, by_ms);
    const PassPoint *mid = &runs[repeats / 2];
    pt->ms = mid->ms, pt->products_ms = mid->products_ms, pt->attention_ms = mid->attention_ms;
    pt->rest_ms = mid->rest_ms, pt->drafts_ms = mid->drafts_ms;
    free(runs);
}

/* The floor of a point: reading its bytes (best of 5, timed here) or its arithmetic at the peak. */
static void floor_point(const DecodeState *s, double peak_gflops, PassPoint *pt) {
    const int drafts = s->n_heads > 1;
    double best = 0;
    for (int k = 0; k < 6; k++) { /* the first read brings the buffers where the pass finds them */
        const double t0 = mtp_now();
        decode_read_pass(s, pt->cache_len, pt->rows, drafts);
        const double t = mtp_now() - t0;
        if (k > 0 && (best == 0 || t < best)) best = t;
    }
    pt->cost = decode_pass_cost(s, pt->cache_len, pt->rows, drafts);
    pt->read_ms = 1e3 * best;
    pt->flop_ms = 1e3 * pt->cost.flops / (peak_gflops * 1e9);
    pt->floor_ms = pt->read_ms > pt->flop_ms ? pt->read_ms : pt->flop_ms;
}

/* The peak the floor takes: oneDNN's in the run's precision, and in bf16 the fp32 one where it
 * is higher (bf16 weights can be widened to fp32 in registers). */
static double measure_peak(MtpPrecision prec) {
    double peak = mtp_matmul_gflops(2048, 2048, 2048, 0.5);
    if (prec == MTP_BF16) {
        mtp_core_set_precision(MTP_FP32);
        const double fp32 = mtp_matmul_gflops(2048, 2048, 2048, 0.5);
        mtp_core_set_precision(MTP_BF16);
        peak = fp32 > peak ? fp32 : peak;
    }
    return peak;
}

static int passes_run(const PassesArgs *a, Passes *p) {
    const int ctx = p->cm.m.cfg.trunk.ctx, V = mtp_tokenizer_vocab(p->cm.m.tokenizer);
    int32_t *tokens = malloc((size_t)ctx * sizeof *tokens);
    if (!tokens) {
        cli_error("bench", "out of memory");
        return EXIT_FAIL;
    }
    MtpRng rng;
    mtp_rng_seed(&rng, 1);
    for (int i = 0; i < ctx; i++) tokens[i] = (int32_t)mtp_rng_below(&rng, (uint64_t)V);
    p->peak_gflops = measure_peak(a->prec.prec);
    for (int c = 0; c < a->n_cache; c++) {
        decode_truncate(&p->s, 0);
        decode_prefill(&p->s, tokens, a->cache[c], 1);
        for (int r = 0; r < a->n_rows; r++) {
            PassPoint *pt = &p->pt[p->n_pt++];
            pt->cache_len = a->cache[c], pt->rows = a->rows[r];
            time_point(&p->s, tokens + a->cache[c], a->cache[c], a->rows[r], a->repeats, pt);
            floor_point(&p->s, p->peak_gflops, pt);
        }
    }
    free(tokens);
    return 0;
}

/* The time of a 1-row pass at the same cache length (0 when not measured). */
static double one_row_ms(const Passes *p, int cache_len) {
    for (int i = 0; i < p->n_pt; i++)
        if (p->pt[i].cache_len == cache_len && p->pt[i].rows == 1) return p->pt[i].ms;
    return 0;
}

/* "model name" of /proc/cpuinfo, for the report (benchmark results name their CPU). */
static void cpu_model(char *buf, size_t cap) {
    snprintf(buf, cap, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f)) {
        const char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) != 0 || !colon) continue;
        snprintf(buf, cap, "%s", colon + 2);
        buf[strcspn(buf, "\n\"\\")] = 0;
        break;
    }
    if (f) fclose(f);
}

static int passes_json(const PassesArgs *a, const Passes *p, const char *cpu) {
    FILE *f = fopen(a->json_path, "w");
    if (!f) {
        cli_error("bench", "--json %s: %s", a->json_path, strerror(errno));
        return EXIT_FAIL;
    }
    fprintf(f, "{\"cpu\":\"%s\",", cpu);
    cli_precision_json(f, &a->prec);
    fprintf(f, ",\"threads\":%d,\"peak_gflops\":%.1f,\"kernel\":\"%s\",\"passes\":[", mtp_core_threads(), p->peak_gflops,
            mtp_small_kernel_name(mtp_small_kernel(a->prec.prec)));
    for (int i = 0; i < p->n_pt; i++) {
        const PassPoint *t = &p->pt[i];
        const double one = one_row_ms(p, t->cache_len);
        fprintf(f, "%s{\"cache_len\":%d,\"rows\":%d,\"ms\":%.6f,\"floor_ms\":%.6f,\"vs_floor\":%.4f,\"pass_ratio\":%.4f,"
                   "\"products_ms\":%.6f,\"attention_ms\":%.6f,\"rest_ms\":%.6f,\"drafts_ms\":%.6f,\"read_floor_ms\":%.6f,"
                   "\"flop_floor_ms\":%.6f,\"weight_bytes\":%.0f,\"cache_bytes\":%.0f,\"flops\":%.0f,\"read_gbs\":%.2f}",
                i ? "," : "", t->cache_len, t->rows, t->ms, t->floor_ms, t->ms / t->floor_ms, one > 0 ? t->ms / one : 0,
                t->products_ms, t->attention_ms, t->rest_ms, t->drafts_ms, t->read_ms, t->flop_ms, t->cost.weight_bytes,
                t->cost.cache_bytes, t->cost.flops, (t->cost.weight_bytes + t->cost.cache_bytes) / (t->read_ms * 1e6));
    }
    fprintf(f, "]}\n");
    if (fclose(f)) {
        cli_error("bench", "--json %s: write failed", a->json_path);
        return EXIT_FAIL;
    }
    return 0;
}

static int passes_report(const PassesArgs *a, const Passes *p) {
    char cpu[128];
    cpu_model(cpu, sizeof cpu);
    char prec[128];
    cli_precision_why(prec, sizeof prec, &a->prec);
    printf("mtp bench --passes: %s, %s%s, %d thread%s, CPU %s; peak %.0f GFLOP/s\n", a->model_path,
           a->prec.is_auto ? "precision auto: " : "", prec, mtp_core_threads(), mtp_core_threads() == 1 ? "" : "s", cpu,
           p->peak_gflops);
    printf("products of 1-%d rows: %s kernel\n", MTP_SMALL_ROWS_MAX, mtp_small_kernel_name(mtp_small_kernel(a->prec.prec)));
    printf("cache  rows      ms   floor  vs_floor  ratio | products  attention   rest  drafts (ms) | read GB/s  GFLOP\n");
    for (int i = 0; i < p->n_pt; i++) {
        const PassPoint *t = &p->pt[i];
        const double one = one_row_ms(p, t->cache_len);
        printf("%5d %5d %7.3f %7.3f %8.2fx %5.2fx | %8.3f %10.3f %6.3f %7.3f      | %9.1f %6.3f\n", t->cache_len, t->rows,
               t->ms, t->floor_ms, t->ms / t->floor_ms, one > 0 ? t->ms / one : 0, t->products_ms, t->attention_ms,
               t->rest_ms, t->drafts_ms, (t->cost.weight_bytes + t->cost.cache_bytes) / (t->read_ms * 1e6),
               t->cost.flops / 1e9);
    }
    return a->json_path ? passes_json(a, p, cpu) : 0;
}

int cmd_bench_passes(int argc, char **argv) {
    PassesArgs a;
    int rc = passes_parse(argc, argv, &a);
    if (rc || a.help) return rc;
    Passes *p = calloc(1, sizeof *p);
    if (!p) {
        cli_error("bench", "out of memory");
        return EXIT_FAIL;
    }
    rc = passes_open(&a, p);
    if (rc == 0) rc = passes_run(&a, p);
    if (rc == 0) rc = passes_report(&a, p);
    decode_free(&p->s);
    cli_close_model(&p->cm);
    free(p);
    return rc;
}
