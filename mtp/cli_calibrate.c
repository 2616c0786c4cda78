/* cli_calibrate.c - `mtp calibrate`: measure on a model's own greedy text how often each drafting
 * head's candidates are right, grow the draft trees that pay most from that, and store them in
 * the checkpoint, where generate, bench and eval --task answers find them (--tree). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "decode/decode.h"
#include "mtp/cli.h"

static const char *CALIBRATE_HELP =
    "usage: mtp calibrate --model FILE [options]\n"
    "\n"
    "Decode prompts greedily with every head drafting, rank each drafting head's candidates at\n"
    "every position of the text and find the right one (the token head 1 wrote there), then grow\n"
    "draft trees of 1..--max-nodes nodes from those counts (each time the node whose path is right\n"
    "most often) and write them with their expected tokens per pass into the checkpoint, under\n"
    "\"calibration\". generate, bench and eval --task answers then decode with a tree (--tree).\n"
    "\n"
    "  --model FILE        checkpoint to calibrate (required)\n"
    "  --prompts FILE      prompts as mtp bench reads them, the whole file (default: held-out\n"
    "                      problems of the model's training data, not the 16 that bench and eval\n"
    "                      use first: the last --limit of the others; for plain text, windows of\n"
    "                      its validation split between bench's)\n"
    "  --data SPEC         take the prompts from this data instead, repeatable (as mtp eval)\n"
    "  --fields Q,A | T    JSONL fields (default: as trained)\n"
    "  --skip-bad-lines    skip malformed JSONL lines\n"
    "  --limit N           prompts taken from the data (default 64)\n"
    "  --max-tokens N      tokens generated per prompt (default 256; fewer when an example ends\n"
    "                      or the context fills up)\n"
    "  --max-nodes N       the largest tree, 1..32 nodes (default 16)\n"
    "  --out FILE          write the calibrated checkpoint here (default: the --model file,\n"
    "                      rewritten atomically; every other key is kept as it was)\n"
    "  --threads P         threads (default: all cores)\n"
    "  --precision P       auto (default), fp32 or bf16, as mtp generate\n"
    "  --json FILE         also write {\"positions\":N,\"rates\":[[...],...],\"trees\":[{\"nodes\":k,\n"
    "                      \"expected_tokens_per_pass\":E,\"parent\":[...],\"rank\":[...]},...]}\n"
    "\n"
    "The table gives, per drafting head h, how often its candidate j (0: its most likely token)\n"
    "was the right one, given that heads 2..h-1 had theirs among their first 8; and per tree size\n"
    "the tokens a pass yields on this text and the tree, as parent:rank of nodes 1.. (node 0 is\n"
    "head 1's token; a node's depth d means head d+1's candidate of that rank).\n";

typedef struct {
    const char *model_path, *prompts_path, *out_path, *json_path, *precision;
    CliData data;
    int limit, max_tokens, max_nodes, threads, help;
    CliPrecision prec; /* auto: picked when the engine is built */
} CalibrateArgs;

typedef struct {
    CliModel cm;
    CliPrompts pr;
    int32_t *seq;         /* a prompt, then its greedy continuation */
    DecodeCalTally tally;
    DecodeCalibration cal;
    long tokens;          /* generated, over all prompts */
    double seconds;
} Calibrate;

static int calibrate_parse(int argc, char **argv, CalibrateArgs *a) {
    *a = (CalibrateArgs){.precision = "auto", .limit = 64, .max_tokens = 256, .max_nodes = 16};
    CliOpt opts[] = {{"--model", OPT_STR, &a->model_path, 0, 0, 0},
                     {"--prompts", OPT_STR, &a->prompts_path, 0, 0, 0},
                     CLI_DATA_OPTS(&a->data),
                     {"--limit", OPT_INT, &a->limit, 1, CLI_MAX_PROMPTS, 0},
                     {"--max-tokens", OPT_INT, &a->max_tokens, 1, 1 << 20, 0},
                     {"--max-nodes", OPT_INT, &a->max_nodes, 1, DECODE_TREE_MAX, 0},
                     {"--out", OPT_STR, &a->out_path, 0, 0, 0},
                     {"--threads", OPT_INT, &a->threads, 1, 4096, 0},
                     {"--precision", OPT_STR, &a->precision, 0, 0, 0},
                     {"--json", OPT_STR, &a->json_path, 0, 0, 0},
                     {0}};
    if (cli_parse("calibrate", argc, argv, 2, opts, NULL, &a->help)) return EXIT_USAGE;
    if (a->help) return fputs(CALIBRATE_HELP, stdout), 0;
    if (cli_precision_auto("calibrate", a->precision, &a->prec)) return EXIT_USAGE;
    if (!a->model_path) {
        cli_error("calibrate", "--model FILE is required (see mtp calibrate --help)");
        return EXIT_USAGE;
    }
    const CliData *d = &a->data;
    if (a->prompts_path && (d->data.n || d->fields || d->skip_bad_lines || cli_opt(opts, "--limit")->given)) {
        cli_error("calibrate", "--prompts FILE is used whole: --data, --fields, --skip-bad-lines and --limit choose "
                               "prompts from data instead");
        return EXIT_USAGE;
    }
    if (!a->out_path) a->out_path = a->model_path;
    return 0;
}

/* The model (with more than one head: the others draft) and the prompts. */
static int calibrate_open(const CalibrateArgs *a, Calibrate *c) {
    const CliOpen how = {.path = a->model_path, .compute = 1, .threads = a->threads, .prec = a->prec.prec};
    int rc = cli_open_model("calibrate", &how, &c->cm);
    if (rc) return rc;
    const MtpModel *m = &c->cm.m;
    const int ctx = m->cfg.trunk.ctx;
    if (m->cfg.heads.n == 1) {
        cli_error("calibrate", "nothing to calibrate: the model has one head");
        return EXIT_USAGE;
    }
    char err[1024];
    DsOptions o;
    if (!a->prompts_path && (rc = cli_model_data("calibrate", &a->data, &c->cm.x.run, &o))) return rc;
    if (a->prompts_path ? cli_prompts_from_file(&c->pr, m->tokenizer, a->prompts_path, ctx, err, sizeof err)
                        : cli_prompts_from_data(&c->pr, &o, m->tokenizer, ctx, 1, a->limit, err, sizeof err)) {
        cli_error("calibrate", "%s", err);
        return EXIT_FAIL;
    }
    if (!(c->seq = malloc(((size_t)ctx / 2 + (size_t)a->max_tokens) * sizeof *c->seq))) {
        cli_error("calibrate", "out of memory");
        return EXIT_FAIL;
    }
    const int n = c->pr.n, threads = mtp_core_threads();
    fprintf(stderr, "mtp calibrate: %s, %d prompt%s, up to %d tokens each, %d thread%s\n", a->model_path, n,
            n == 1 ? "" : "s", a->max_tokens, threads, threads == 1 ? "" : "s");
    return 0;
}

/* Prompt i's greedy text with every head drafting (a chain: head 1's own greedy output), then the
 * ranks of the right tokens along it into the tally. Returns -1 when out of memory. */
static int calibrate_prompt(const CalibrateArgs *a, Calibrate *c, DecodeState *s, int i) {
    const int np = c->pr.len[i], ctx = c->cm.m.cfg.trunk.ctx;
    memcpy(c->seq, c->pr.tokens[i], (size_t)np * sizeof *c->seq);
    const DecodeRequest req = {.prompt = c->seq, .n_prompt = np, .max_new = a->max_tokens,
                               .lookahead = s->n_heads, .eos = DS_EOS};
    DecodeStats st;
    decode_truncate(s, 0);
    const int got = decode_greedy(s, &req, c->seq + np, &st);
    if (got < 0) return -1; /* the message is in s->err */
    c->tokens += got;
    decode_truncate(s, 0);
    /* the last token may lie past the context (emitted, never run) */
    return decode_cal_tally(&c->tally, s, c->seq, np + got < ctx ? np + got : ctx, np - 1);
}

/* Every prompt decoded and tallied, with progress on stderr; then the calibration: all of the
 * command's decoding is here. */
static int calibrate_run(const CalibrateArgs *a, Calibrate *c) {
    const int H = c->cm.m.cfg.heads.n;
    DecodeState s = {0};
    char err[512];
    CliPrecision prec = a->prec;
    if (cli_build_engine(&s, mtp_decode_model(&c->cm.m), H, H, &prec, err, sizeof err)) {
        cli_error("calibrate", "%s", err);
        return EXIT_FAIL;
    }
    if (prec.is_auto) {
        cli_precision_why(err, sizeof err, &prec);
        fprintf(stderr, "mtp calibrate: precision auto: %s\n", err);
    }
    const int tty = isatty(STDERR_FILENO);
    double t0 = mtp_now(), last_note = t0;
    int rc = 0;
    for (int i = 0; i < c->pr.n && rc == 0; i++) {
        if (calibrate_prompt(a, c, &s, i)) {
            cli_error("calibrate", "%s", s.err);
            rc = EXIT_FAIL;
        }
        const double now = mtp_now();
        if (now - last_note >= (tty ? 0.2 : 10.0) && i + 1 < c->pr.n) {
            fprintf(stderr, "%s%d/%d prompts, %ld positions%s", tty ? "\r\033[K" : "", i + 1, c->pr.n, c->tally.n,
                    tty ? "" : "\n");
            last_note = now;
        }
    }
    if (tty) fputs("\r\033[K", stderr);
    c->seconds = mtp_now() - t0;
    decode_free(&s);
    if (rc == 0 && c->tally.n == 0) {
        cli_error("calibrate", "no positions to measure: the prompts leave no room to generate");
        rc = EXIT_FAIL;
    }
    if (rc == 0 && decode_calibration_build(&c->cal, &c->tally, H, a->max_nodes)) {
        cli_error("calibrate", "cannot build trees of %d nodes for %d heads", a->max_nodes, H);
        rc = EXIT_FAIL;
    }
    return rc;
}

/* The rates per drafting head and the trees with their tokens per pass, on stdout. */
static void calibrate_table(const DecodeCalibration *cal) {
    printf("head  right candidate, by rank (given heads 2..h-1 had theirs among their first %d)\n", DECODE_CAL_RANKS);
    printf("     ");
    for (int j = 0; j < DECODE_CAL_RANKS; j++) printf(" %6d", j);
    printf("     any\n");
    for (int d = 0; d + 1 < cal->heads; d++) {
        double any = 0;
        printf("%4d ", d + 2);
        for (int j = 0; j < DECODE_CAL_RANKS; j++) printf(" %5.1f%%", 100 * cal->rate[d][j]), any += cal->rate[d][j];
        printf("  %5.1f%%\n", 100 * any);
    }
    printf("nodes  tokens/pass  tree (parent:rank of nodes 1..)\n");
    for (int k = 0; k < cal->n_trees; k++) {
        const DecodeTree *t = &cal->trees[k];
        printf("%5d  %11.3f", t->n, cal->expected[k]);
        for (int i = 1; i < t->n; i++) printf("%s%d:%d", i == 1 ? "  " : " ", t->parent[i], t->rank[i]);
        printf("\n");
    }
}

static int calibrate_json(const char *path, const DecodeCalibration *cal) {
    FILE *f = fopen(path, "w");
    if (!f) {
        cli_error("calibrate", "--json %s: %s", path, strerror(errno));
        return EXIT_FAIL;
    }
    fprintf(f, "{\"heads\":%d,\"positions\":%ld,\"rates\":[", cal->heads, cal->positions);
    for (int d = 0; d + 1 < cal->heads; d++) {
        fprintf(f, "%s[", d ? "," : "");
        for (int j = 0; j < DECODE_CAL_RANKS; j++) fprintf(f, "%s%.6f", j ? "," : "", cal->rate[d][j]);
        fputc(']', f);
    }
    fprintf(f, "],\"trees\":[");
    for (int k = 0; k < cal->n_trees; k++) {
        const DecodeTree *t = &cal->trees[k];
        fprintf(f, "%s{\"nodes\":%d,\"expected_tokens_per_pass\":%.6f,\"parent\":[", k ? "," : "", t->n,
                cal->expected[k]);
        for (int i = 0; i < t->n; i++) fprintf(f, "%s%d", i ? "," : "", t->parent[i]);
        fprintf(f, "],\"rank\":[");
        for (int i = 0; i < t->n; i++) fprintf(f, "%s%d", i ? "," : "", t->rank[i]);
        fprintf(f, "]}");
    }
    fprintf(f, "]}\n");
    if (fclose(f)) {
        cli_error("calibrate", "--json %s: write failed", path);
        return EXIT_FAIL;
    }
    return 0;
}

/* The table, --json, and the checkpoint rewritten with the calibration. */
static int calibrate_report(const CalibrateArgs *a, const Calibrate *c) {
    fprintf(stderr, "mtp calibrate: %ld positions of %ld generated tokens in %.1f s\n", c->cal.positions, c->tokens,
            c->seconds);
    calibrate_table(&c->cal);
    fflush(stdout);
    int rc = a->json_path ? calibrate_json(a->json_path, &c->cal) : 0;
    char err[1024];
    if (rc == 0 && mtp_checkpoint_set_calibration(a->model_path, a->out_path, &c->cal, err, sizeof err)) {
        cli_error("calibrate", "%s", err);
        rc = EXIT_FAIL;
    }
    if (rc == 0)
        fprintf(stderr, "mtp calibrate: wrote the calibration (trees of 1..%d nodes) into %s\n", c->cal.n_trees,
                a->out_path);
    return rc;
}

int cmd_calibrate(int argc, char **argv) {
    static Calibrate c; /* static: the prompt table, tens of KB */
    CalibrateArgs a;
    int rc = calibrate_parse(argc, argv, &a);
    if (rc || a.help) return rc;
    rc = calibrate_open(&a, &c);
    if (rc == 0) rc = calibrate_run(&a, &c);
    if (rc == 0) rc = calibrate_report(&a, &c);
    free(c.seq);
    decode_cal_tally_free(&c.tally);
    cli_prompts_free(&c.pr);
    cli_close_model(&c.cm);
    return rc;
}
