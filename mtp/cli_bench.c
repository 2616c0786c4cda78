/* cli_bench.c - `mtp bench`: decoding speed at each lookahead against lookahead 1, and of a draft
 * tree against the chain at its lookahead, same prompts, same run. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "decode/decode.h"
#include "mtp/cli.h"

static const char *BENCH_HELP =
    "usage: mtp bench --model FILE [options]\n"
    "\n"
    "Decode the same prompts greedily at each lookahead and compare with lookahead 1 (head 1\n"
    "alone), measured in the same run; with a draft tree (--tree, or the checkpoint's calibration),\n"
    "also with the tree at the largest lookahead, against lookahead 1 and against that chain.\n"
    "\n"
    "  --model FILE        checkpoint (required)\n"
    "  --prompts FILE      prompts, one per line, or JSONL with a \"question\" or \"prompt\"\n"
    "                      string field (a line starting with '{'; a malformed one is an error\n"
    "                      naming its line and byte) (default: 16 questions from the model's\n"
    "                      training source)\n"
    "  --max-tokens N      tokens per prompt (default 256; fewer when an example ends or the\n"
    "                      context fills up)\n"
    "  --lookahead LIST    comma-separated lookaheads (default 1..heads); 1 is always measured\n"
    "  --tree N            also decode with the draft tree of N nodes of the checkpoint's\n"
    "                      calibration (mtp calibrate), pruned to the largest lookahead; 0 = no\n"
    "                      tree. Default: with a calibration, the size with the most expected\n"
    "                      tokens per ms (passes of each size timed; the pick is printed above\n"
    "                      the table), else none\n"
    "  --draft-min-p P     chains only (ignored by the tree): end a draft before the first head\n"
    "                      whose most likely token has probability below P (default 0.2; 0: off)\n"
    "  --repeats R         timing repeats, taken round-robin over the lookaheads; tokens/s is\n"
    "                      the median (default 3)\n"
    "  --threads P         threads (default: all cores)\n"
    "  --precision P       auto (default), fp32 or bf16 matrix products: bf16 weights stream\n"
    "                      half the bytes; the rest of the model stays fp32. auto picks per\n"
    "                      lookahead K from a pass of K rows timed in both: bf16 unless fp32\n"
    "                      is 10% faster (fp32 on CPUs without bf16 products), printed above\n"
    "                      the table; speedups compare the lookaheads as picked\n"
    "  --json FILE         also write {\"runs\":[{\"lookahead\":K,\"tokens_per_s\":X,\"speedup\":S,\n"
    "                      \"tokens_per_forward\":F,\"bound\":B,\"identical\":true,\"head_acceptance\":[...],\n"
    "                      \"precision\":P,\"precision_auto\":true,\"pass_ms\":{\"fp32\":..,\"bf16\":..},\n"
    "                      \"tree_nodes\":N (0: a chain),\"rows_per_forward\":R, and for a tree\n"
    "                      \"speedup_vs_chain\":C,\"tree_picked\":true},...]}\n"
    "  --passes            time single decoding passes of 1..16 rows against their floor instead\n"
    "                      (mtp bench --passes --help)\n"
    "\n"
    "Columns: run (a chain, or \"tree N\": N nodes at that lookahead); tokens/s (median over\n"
    "repeats); speedup = tokens/s / tokens/s at lookahead 1; vs chain = a tree's tokens/s / the\n"
    "chain's at its lookahead; rows/forward = rows a forward pass ran (a tree's nodes, a chain's\n"
    "drafts plus one);\n"
    "tokens per forward pass = every token emitted (the always-correct first of each block\n"
    "included) / forward passes after the prefill; acceptance of head i = share of its drafts\n"
    "that head 1 confirmed; bound = tokens per forward x t(single-head forward) / t(forward at\n"
    "this lookahead), the speedup if nothing but forward passes took time (a forward pass\n"
    "includes the drafting heads, which run only for the row a draft is read from); the time\n"
    "split is prefill / forward passes / choosing tokens (argmax) / the rest (bookkeeping), in\n"
    "seconds over all prompts; identical = the output equals lookahead 1's, token for token (in the\n"
    "same precision: where auto picked another one for lookahead 1, an untimed run of lookahead 1 in\n"
    "this one gives the output to compare with).\n";

/* Without --prompts: the questions of the first held-out problems of the training data
 * (builtin:arith, .jsonl), or else 64-token windows of its validation split. */
static int prompts_from_source(CliPrompts *p, const MtpModel *m, const MtpCheckpointExtra *x, int ctx, char *err,
                               size_t errlen) {
    DsOptions o;
    if (mtp_run_data_options(&x->run, &o) == 0) {
        snprintf(err, errlen, "the checkpoint records no training data: give --prompts");
        return -1;
    }
    return cli_prompts_from_data(p, &o, m->tokenizer, ctx, 0, CLI_BENCH_PROMPTS, err, errlen);
}

typedef struct {
    double rate, prefill, forward, sample, other; /* one repeat: tokens/s and seconds over all prompts */
} Repeat;

typedef struct {
    int K;
    const DecodeTree *tree; /* NULL: a chain */
    float draft_min_p;
    CliPrecision prec; /* with auto, this lookahead's own pick */
    DecodeState state;
    Repeat rep[64];
    double tokens_per_s, speedup, tokens_per_forward, bound, rows_per_forward, speedup_vs_chain;
    double t_prefill, t_forward, t_sample, t_other, forward_s; /* of the median repeat */
    long tokens, forwards, rows, proposed[HEADS_MAX], accepted[HEADS_MAX];
    int identical;
} BenchRun;

/* tokens/s and the time split of the median repeat (by rate). */
static void bench_summarize(BenchRun *r, int repeats) {
    Repeat sorted[64];
    memcpy(sorted, r->rep, repeats * sizeof(Repeat));
    for (int a = 1; a < repeats; a++) /* insertion sort: at most 64 */
        for (int b = a; b > 0 && sorted[b].rate < sorted[b - 1].rate; b--) {
            Repeat tmp = sorted[b];
            sorted[b] = sorted[b - 1], sorted[b - 1] = tmp;
        }
    const Repeat *mid = &sorted[repeats / 2];
    r->tokens_per_s = mid->rate;
    r->t_prefill = mid->prefill, r->t_forward = mid->forward, r->t_sample = mid->sample, r->t_other = mid->other;
    r->tokens_per_forward = r->forwards ? (double)r->tokens / r->forwards : 0;
    r->rows_per_forward = r->forwards ? (double)r->rows / r->forwards : 0;
    r->forward_s = r->forwards ? r->t_forward / r->forwards : 0;
}

static int parse_lookaheads(const char *s, int *ks, int n_heads) {
    int n = 0;
    ks[n++] = 1;
    while (*s) {
        char *end;
        long k = strtol(s, &end, 10);
        if (end == s || k < 1 || k > n_heads || (*end && *end != ',')) return -1;
        int seen = 0;
        for (int i = 0; i < n; i++) seen |= ks[i] == k;
        if (!seen) ks[n++] = (int)k;
        s = *end ? end + 1 : end;
    }
    return n;
}

typedef struct {
    const char *model_path, *prompts_path, *list, *json_path, *precision;
    int max_tokens, repeats, threads, help;
    CliTreeArgs tree;
    CliPrecision prec; /* auto: picked per lookahead when its engine is built */
} BenchArgs;

typedef struct {
    CliModel cm;
    int ks[HEADS_MAX + 1], nk; /* the lookaheads, 1 first */
    CliTree tr;                /* the tree at the largest lookahead, or none */
    int nr;                    /* runs: a chain per lookahead, then the tree's */
    CliPrompts pr;
    int32_t **outs[2], *out_n[2], *scratch; /* lookahead 1's outputs in each precision (MtpPrecision) */
    BenchRun runs[HEADS_MAX + 2];
} Bench;

static int bench_parse(int argc, char **argv, BenchArgs *a) {
    *a = (BenchArgs){.precision = "auto", .max_tokens = 256, .repeats = 3, .tree = CLI_TREE_ARGS_DEFAULT};
    CliOpt opts[] = {{"--model", OPT_STR, &a->model_path, 0, 0, 0},
                     {"--prompts", OPT_STR, &a->prompts_path, 0, 0, 0},
                     {"--max-tokens", OPT_INT, &a->max_tokens, 1, 1 << 20, 0},
                     {"--lookahead", OPT_STR, &a->list, 0, 0, 0},
                     CLI_TREE_OPTS(&a->tree),
                     {"--repeats", OPT_INT, &a->repeats, 1, 64, 0},
                     {"--threads", OPT_INT, &a->threads, 1, 4096, 0},
                     {"--precision", OPT_STR, &a->precision, 0, 0, 0},
                     {"--json", OPT_STR, &a->json_path, 0, 0, 0},
                     {0}};
    if (cli_parse("bench", argc, argv, 2, opts, NULL, &a->help)) return EXIT_USAGE;
    if (a->help) return fputs(BENCH_HELP, stdout), 0;
    if (cli_precision_auto("bench", a->precision, &a->prec)) return EXIT_USAGE;
    if (!a->model_path) {
        cli_error("bench", "--model FILE is required (see mtp bench --help)");
        return EXIT_USAGE;
    }
    return 0;
}

/* The model, the lookaheads (and the tree), the prompts and room for the outputs. */
static int bench_open(const BenchArgs *a, Bench *b) {
    const CliOpen how = {.path = a->model_path, .compute = 1, .threads = a->threads, .prec = a->prec.prec};
    int rc = cli_open_model("bench", &how, &b->cm);
    if (rc) return rc;
    const MtpModel *m = &b->cm.m;
    const int n_heads = m->cfg.heads.n, ctx = m->cfg.trunk.ctx;
    if (a->list) b->nk = parse_lookaheads(a->list, b->ks, n_heads);
    else
        for (b->nk = 0; b->nk < n_heads; b->nk++) b->ks[b->nk] = b->nk + 1;
    if (b->nk < 0) {
        cli_error("bench", "--lookahead '%s': expected a comma-separated list of numbers from 1 to %d", a->list,
                  n_heads);
        return EXIT_USAGE;
    }
    int top = 1; /* the largest lookahead: the tree's */
    for (int i = 0; i < b->nk; i++) top = b->ks[i] > top ? b->ks[i] : top;
    if ((rc = cli_tree_plan("bench", a->model_path, &a->tree, &b->cm, top, &b->tr))) return rc;
    b->nr = b->nk + (b->tr.use || b->tr.to_time);
    char err[512];
    if (a->prompts_path ? cli_prompts_from_file(&b->pr, m->tokenizer, a->prompts_path, ctx, err, sizeof err)
                        : prompts_from_source(&b->pr, m, &b->cm.x, ctx, err, sizeof err)) {
        cli_error("bench", "%s", err);
        return EXIT_FAIL;
    }
    const int n = b->pr.n;
    b->scratch = malloc((size_t)a->max_tokens * sizeof(int32_t));
    if (!b->scratch) {
        cli_error("bench", "out of memory");
        return EXIT_FAIL;
    }
    fprintf(stderr, "mtp bench: %s, %d prompt%s, up to %d tokens each, %d repeat%s, %d thread%s\n", a->model_path, n,
            n == 1 ? "" : "s", a->max_tokens, a->repeats, a->repeats == 1 ? "" : "s", mtp_core_threads(),
            mtp_core_threads() == 1 ? "" : "s");
    return 0;
}

/* Repeat k of lookahead r->K over every prompt. The first repeat's outputs are compared with
 * lookahead 1's in the same precision (outs, which lookahead 1's first repeat fills, or
 * bench_reference). */
static void bench_repeat(BenchRun *r, int k, const CliPrompts *pr, int max_new, int32_t **outs, int *out_n,
                         int32_t *scratch) {
    mtp_core_set_precision(r->prec.prec); /* the precision its engine was built in */
    Repeat *rep = &r->rep[k];
    double t = 0;
    long tokens = 0, forwards = 0, rows = 0;
    memset(rep, 0, sizeof *rep);
    for (int i = 0; i < pr->n; i++) {
        decode_truncate(&r->state, 0);
        DecodeStats st;
        double t0 = mtp_now();
        const DecodeRequest req = {.prompt = pr->tokens[i], .n_prompt = pr->len[i], .max_new = max_new,
                                   .lookahead = r->K, .eos = DS_EOS, .tree = r->tree, .draft_min_p = r->draft_min_p};
        int n = decode_greedy(&r->state, &req, scratch, &st);
        t += mtp_now() - t0;
        rep->prefill += st.t_prefill, rep->forward += st.t_forward, rep->sample += st.t_sample, rep->other += st.t_other;
        tokens += n, forwards += st.forwards, rows += st.rows;
        if (k > 0) continue;
        if (r->K == 1 && !r->tree) memcpy(outs[i], scratch, n * sizeof(int32_t)), out_n[i] = n;
        else if (n != out_n[i] || memcmp(outs[i], scratch, n * sizeof(int32_t))) r->identical = 0;
        for (int j = 1; j < r->K; j++) r->proposed[j] += st.proposed[j], r->accepted[j] += st.accepted[j];
    }
    rep->rate = tokens / t;
    r->tokens = tokens, r->forwards = forwards, r->rows = rows; /* greedy: the same in every repeat */
}

/* Room for the outputs of every prompt in precision p. */
static int outs_alloc(Bench *b, MtpPrecision p, int max_tokens) {
    const int n = b->pr.n;
    b->outs[p] = calloc(n, sizeof *b->outs[p]);
    b->out_n[p] = calloc(n, sizeof *b->out_n[p]);
    for (int i = 0; b->outs[p] && i < n; i++)
        if (!(b->outs[p][i] = malloc((size_t)max_tokens * sizeof(int32_t)))) return -1;
    return b->outs[p] && b->out_n[p] ? 0 : -1;
}

/* Lookahead 1's outputs in precision p, decoded untimed: auto picked another precision for
 * lookahead 1, and the lookaheads that run in p are compared with these. */
static int bench_reference(const BenchArgs *a, Bench *b, MtpPrecision p) {
    DecodeState s;
    CliPrecision fixed = {.prec = p};
    char err[512];
    if (cli_build_engine(&s, mtp_decode_model(&b->cm.m), 1, 1, &fixed, err, sizeof err)) {
        cli_error("bench", "%s", err);
        return EXIT_FAIL;
    }
    for (int i = 0; i < b->pr.n; i++) {
        decode_truncate(&s, 0);
        DecodeStats st;
        const DecodeRequest req = {.prompt = b->pr.tokens[i], .n_prompt = b->pr.len[i], .max_new = a->max_tokens,
                                   .lookahead = 1, .eos = DS_EOS};
        b->out_n[p][i] = decode_greedy(&s, &req, b->outs[p][i], &st);
    }
    decode_free(&s);
    return 0;
}

/* Room for lookahead 1's outputs in each precision the lookaheads run in, and those of a precision
 * lookahead 1 does not run in decoded now. */
static int bench_outputs(const BenchArgs *a, Bench *b) {
    for (int i = 0; i < b->nr; i++) {
        const MtpPrecision p = b->runs[i].prec.prec;
        if (b->outs[p]) continue;
        if (outs_alloc(b, p, a->max_tokens)) {
            cli_error("bench", "out of memory");
            return EXIT_FAIL;
        }
        if (p != b->runs[0].prec.prec && bench_reference(a, b, p)) return EXIT_FAIL;
    }
    return 0;
}

/* Run i's engine: a chain's at its lookahead, or after them the tree's, with rows for its nodes
 * (or for the sizes the pick times: without --tree the tree is picked on this engine). */
static int bench_build(const BenchArgs *a, Bench *b, int i, int *built) {
    BenchRun *r = &b->runs[i];
    const int tree = i == b->nk;
    memset(r, 0, sizeof *r);
    r->K = tree ? b->tr.K : b->ks[i], r->identical = 1, r->prec = a->prec;
    r->draft_min_p = tree ? 0 : a->tree.draft_min_p;
    char err[512];
    if (cli_build_engine(&r->state, mtp_decode_model(&b->cm.m), tree ? b->tr.max_rows : r->K, r->K, &r->prec, err,
                         sizeof err)) {
        cli_error("bench", "%s", err);
        return EXIT_FAIL;
    }
    *built = i + 1;
    if (!tree) return 0;
    const int rc = cli_tree_pick("bench", &b->tr, &r->state, &b->cm.x.cal);
    r->tree = cli_tree_request(&b->tr);
    return rc;
}

/* Every run's state first (with auto, each in the precision its passes run faster in), then the
 * repeats round-robin over them: a slow spell of the machine then lands on all runs alike
 * instead of on one. All of the command's decoding. */
static int bench_run(const BenchArgs *a, Bench *b) {
    int rc = 0, built = 0;
    for (int i = 0; i < b->nr && rc == 0; i++) rc = bench_build(a, b, i, &built);
    if (rc == 0) rc = bench_outputs(a, b);
    /* warm-up, untimed: creates the products' primitives, touches the caches */
    for (int i = 0; i < b->nr && rc == 0; i++) {
        BenchRun *r = &b->runs[i];
        mtp_core_set_precision(r->prec.prec);
        DecodeStats st;
        const DecodeRequest req = {.prompt = b->pr.tokens[0], .n_prompt = b->pr.len[0], .max_new = a->max_tokens,
                                   .lookahead = r->K, .eos = DS_EOS, .tree = r->tree, .draft_min_p = r->draft_min_p};
        decode_greedy(&r->state, &req, b->scratch, &st);
        decode_truncate(&r->state, 0);
    }
    for (int k = 0; k < a->repeats && rc == 0; k++)
        for (int i = 0; i < b->nr; i++)
            bench_repeat(&b->runs[i], k, &b->pr, a->max_tokens, b->outs[b->runs[i].prec.prec],
                         b->out_n[b->runs[i].prec.prec], b->scratch);
    for (int i = 0; i < built; i++) decode_free(&b->runs[i].state);
    return rc;
}

/* "chain" or "tree N" (the nodes it ran) */
static const char *run_label(char *buf, size_t n, const BenchRun *r) {
    if (r->tree) snprintf(buf, n, "tree %d", r->tree->n);
    else snprintf(buf, n, "chain");
    return buf;
}

static void bench_table(const Bench *b) {
    char label[32], why[512];
    for (int i = 0; i < b->nr && b->runs[0].prec.is_auto; i++) {
        cli_precision_why(why, sizeof why, &b->runs[i].prec);
        if (!b->runs[i].tree) printf("precision auto, lookahead %d: %s\n", b->runs[i].K, why);
        else printf("precision auto, %s: %s\n", run_label(label, sizeof label, &b->runs[i]), why);
    }
    if (b->nr > b->nk) {
        cli_tree_why(why, sizeof why, &b->tr, &b->cm.x.cal);
        printf("%s\n", why);
    }
    printf("run     lookahead  tokens/s  speedup  vs chain  tok/forward  rows/forward  bound  identical  "
           "prefill/forward/choose/other s  acceptance of heads 2..K\n");
    for (int i = 0; i < b->nr; i++) {
        const BenchRun *r = &b->runs[i];
        char vs[16] = "-";
        if (r->tree) snprintf(vs, sizeof vs, "%.2fx", r->speedup_vs_chain);
        printf("%-7s %9d %9.0f %7.2fx %9s %12.2f %13.2f %5.2fx %10s  %7.3f/%6.3f/%6.3f/%6.3f  ",
               run_label(label, sizeof label, r), r->K, r->tokens_per_s, r->speedup, vs, r->tokens_per_forward,
               r->rows_per_forward, r->bound, r->identical ? "yes" : "NO", r->t_prefill, r->t_forward, r->t_sample,
               r->t_other);
        for (int j = 1; j < r->K; j++)
            printf("%s%.0f%%", j > 1 ? " " : "", r->proposed[j] ? 100.0 * r->accepted[j] / r->proposed[j] : 0.0);
        printf("\n");
    }
}

static int bench_json(const char *path, const Bench *b) {
    FILE *f = fopen(path, "w");
    if (!f) {
        cli_error("bench", "--json %s: %s", path, strerror(errno));
        return EXIT_FAIL;
    }
    fprintf(f, "{\"runs\":[");
    for (int i = 0; i < b->nr; i++) {
        const BenchRun *r = &b->runs[i];
        fprintf(f, "%s{\"lookahead\":%d,\"tokens_per_s\":%.1f,\"speedup\":%.4f,\"tokens_per_forward\":%.4f,"
                   "\"bound\":%.4f,\"identical\":%s,\"head_acceptance\":[",
                i ? "," : "", r->K, r->tokens_per_s, r->speedup, r->tokens_per_forward, r->bound,
                r->identical ? "true" : "false");
        for (int j = 1; j < r->K; j++)
            fprintf(f, "%s%.4f", j > 1 ? "," : "", r->proposed[j] ? (double)r->accepted[j] / r->proposed[j] : 0.0);
        fprintf(f, "],\"tokens\":%ld,\"forwards\":%ld,\"prefill_s\":%.4f,\"forward_s\":%.4f,\"choose_s\":%.4f,"
                   "\"other_s\":%.4f,",
                r->tokens, r->forwards, r->t_prefill, r->t_forward, r->t_sample, r->t_other);
        cli_precision_json(f, &r->prec);
        fprintf(f, ",\"tree_nodes\":%d,\"rows_per_forward\":%.4f", r->tree ? r->tree->n : 0, r->rows_per_forward);
        if (r->tree)
            fprintf(f, ",\"speedup_vs_chain\":%.4f,\"tree_picked\":%s", r->speedup_vs_chain,
                    b->tr.given ? "false" : "true");
        fputc('}', f);
    }
    fprintf(f, "]}\n");
    if (fclose(f)) {
        cli_error("bench", "--json %s: write failed", path);
        return EXIT_FAIL;
    }
    return 0;
}

/* Each run's median repeat against lookahead 1's (and a tree's against the chain at its
 * lookahead): the table, and --json. */
static int bench_report(const BenchArgs *a, Bench *b) {
    const BenchRun *one = &b->runs[0];
    for (int i = 0; i < b->nr; i++) {
        BenchRun *r = &b->runs[i];
        bench_summarize(r, a->repeats);
        r->speedup = r->tokens_per_s / one->tokens_per_s;
        r->bound = one->forward_s > 0 && r->forward_s > 0 ? r->tokens_per_forward * one->forward_s / r->forward_s : 0;
        for (int j = 0; r->tree && j < b->nk; j++) /* the tree's lookahead is the largest: it has a chain */
            if (b->runs[j].K == r->K) r->speedup_vs_chain = r->tokens_per_s / b->runs[j].tokens_per_s;
    }
    bench_table(b);
    return a->json_path ? bench_json(a->json_path, b) : 0;
}

int cmd_bench(int argc, char **argv) {
    for (int i = 2; i < argc; i++) /* --passes measures single passes instead: cli_passes.c */
        if (strcmp(argv[i], "--passes") == 0) return cmd_bench_passes(argc, argv);
    static Bench b; /* static: every lookahead's timings and the prompt table, a quarter of a MB */
    BenchArgs a;
    int rc = bench_parse(argc, argv, &a);
    if (rc || a.help) return rc;
    rc = bench_open(&a, &b);
    if (rc == 0) rc = bench_run(&a, &b);
    if (rc == 0) rc = bench_report(&a, &b);
    for (int p = 0; p < 2; p++) {
        for (int i = 0; b.outs[p] && i < b.pr.n; i++) free(b.outs[p][i]);
        free(b.outs[p]), free(b.out_n[p]);
    }
    free(b.scratch);
    cli_prompts_free(&b.pr);
    cli_close_model(&b.cm);
    return rc;
}
