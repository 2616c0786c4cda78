/* cli.h - what the subcommands of the `mtp` executable share: option parsing, messages, and the
 * model a command opens. The helpers live in cli.c (and cli_precision.c: --precision auto's
 * measurements), each command in its own cli_*.c, and main.c dispatches to them:
 * cli.c <- cli_*.c <- main.c.
 *
 * Each subcommand declares a table of options; cli_parse fills the targets, rejects unknown flags,
 * missing values and bad numbers with a one-line error, and records which flags were given (a
 * resumed run must know whether --dim came from the user or from the default).
 *
 * A command reads parse, open, run, report. Parse returns an exit status (0 with the help flag
 * set once --help is printed); open loads what the command works on and checks it, so that a
 * bad option or file stops the command before any work; run does the work (a decoding command
 * makes every decode_* call there); report prints; one cleanup path frees what open took. */
#ifndef MTP_CLI_H
#define MTP_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "mtp/core/core.h"
#include "mtp/mtp.h"

/* exit codes */
#define EXIT_USAGE 2       /* bad command line */
#define EXIT_FAIL 1        /* bad input file, I/O error */
#define EXIT_INTERRUPTED 130

/* ---- option parsing ------------------------------------------------------------------------- */

typedef enum { OPT_INT, OPT_U64, OPT_FLOAT, OPT_DOUBLE, OPT_STR, OPT_FLAG, OPT_STRS } CliOptType;

/* OPT_STRS: an option that may be repeated ("--data a.txt --data b.txt"), values in order */
#define CLI_MAX_STRS 16
typedef struct {
    const char *v[CLI_MAX_STRS];
    int n;
} CliStrs;

typedef struct {
    const char *name;  /* "--dim" */
    CliOptType type;
    void *target;      /* int*, uint64_t*, float*, double*, const char**, int* (flag), CliStrs* */
    double min, max;   /* numeric range (inclusive) */
    int given;         /* set by cli_parse: times given */
} CliOpt;

/* Parses argv[first..argc) into opts. Positional arguments go to *positional (at most one, NULL
 * if none). "--help"/"-h" sets *help. Returns 0, or -1 after printing "mtp CMD: error: ..." */
int cli_parse(const char *cmd, int argc, char **argv, int first, CliOpt *opts, const char **positional, int *help);
/* The option record for name (for ->given). */
const CliOpt *cli_opt(const CliOpt *opts, const char *name);

/* --precision: "fp32" or "bf16" into *p; otherwise -1 after printing the error. */
int cli_precision(const char *cmd, const char *s, MtpPrecision *p);

/* --precision of the commands that pick it when asked (train, generate, bench: "auto", their
 * default): the precision given, or the one auto picked by measuring on this machine, and what it
 * measured (cli_precision.c). */
typedef struct {
    MtpPrecision prec; /* given, or picked (fp32 until auto has picked) */
    int is_auto;       /* --precision auto */
    int measured;      /* auto timed both precisions (0: no bf16 products on this CPU: fp32 untimed) */
    double fp32, bf16; /* what auto measured: GFLOP/s of the products (train), or ms of a decoding pass */
    int rows;          /* the rows of that decoding pass; 0 for products */
} CliPrecision;

/* --precision fp32|bf16|auto into *p; otherwise -1 after printing the error. */
int cli_precision_auto(const char *cmd, const char *s, CliPrecision *p);
/* train --precision auto: times (M, K) x (K, N) products (the run's own shape, fewer rows where
 * that is over a GFLOP a product) in fp32 and in bf16, about 0.1 s each, and picks bf16 only when
 * it is 10% faster. Leaves the core in the precision picked; nothing happens unless p->is_auto. */
void cli_pick_products(CliPrecision *p, int M, int N, int K);
/* The decoding engine of generate and bench: decode_build(s, m, max_rows, n_heads, ...) in p->prec,
 * or with auto in fp32 and in bf16, keeping the one whose pass of max_rows rows (after a short
 * prefill; the fastest of 9, the two engines taking turns) is faster: bf16 unless fp32 is 10%
 * faster. Leaves the core in the engine's precision and the engine fresh (len 0). Returns 0, or -1
 * with the message in err. */
int cli_build_engine(DecodeState *s, DecodeModel m, int max_rows, int n_heads, CliPrecision *p, char *err,
                     size_t errlen);
/* Passes of 1..n rows on s (n <= s->max_rows; at most the context) timed as auto times them,
 * after a prompt of half the context (where a long generation is on average; each row attends to
 * the whole cache): the fastest of 9 each, the sizes taking turns in rounds;
 * ms[R - 1] for R rows, in the core's precision (the engine's). Leaves s fresh. Returns the sizes
 * timed, or -1 when out of memory. */
int cli_time_passes(DecodeState *s, int n, double *ms);
/* What a command reports: "bf16", and after auto "bf16 (products 191 GFLOP/s bf16, 98 fp32)" or
 * "bf16 (3-row pass 0.412 ms bf16, 0.731 ms fp32)": the pick and why. */
void cli_precision_why(char *buf, size_t n, const CliPrecision *p);
/* The same as JSON members: "precision":"bf16","precision_auto":true and, when auto measured,
 * "products_gflops" or "pass_ms" ({"fp32":x,"bf16":y}). */
void cli_precision_json(FILE *f, const CliPrecision *p);

/* "mtp CMD: error: <message>" on stderr */
void cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- data ----------------------------------------------------------------------------------- */

/* The corpus options shared by train, eval and tokenize: --data (repeatable, SPEC[:WEIGHT]),
   --fields Q,A | T, --skip-bad-lines. Fills run's sources and JSONL fields from them (only the
   ones given); -1 after printing the error. */
#define CLI_DATA_OPTS(d)                                                                          \
    {"--data", OPT_STRS, &(d)->data, 0, 0, 0}, {"--fields", OPT_STR, &(d)->fields, 0, 0, 0},     \
    {"--skip-bad-lines", OPT_FLAG, &(d)->skip_bad_lines, 0, 0, 0}
typedef struct {
    CliStrs data;
    const char *fields;
    int skip_bad_lines;
} CliData;
int cli_data_apply(const char *cmd, const CliData *d, MtpRunInfo *run);
/* The data a model is evaluated on: run (what its checkpoint records) with the corpus options
 * given applied, into *o. Returns 0, or EXIT_USAGE after printing the error (a bad option, or no
 * data at all). */
int cli_model_data(const char *cmd, const CliData *d, MtpRunInfo *run, DsOptions *o);

/* spec "bpe:N": a byte-level BPE of N tokens learned on the run's training text (at most
   DS_BPE_SAMPLE_BYTES of it), with a line on stderr. Returns 0, or the exit status after printing
   the error (flag names the option in it). */
int cli_learn_bpe(const char *cmd, const char *flag, const char *spec, const MtpRunInfo *run, DsBpe **tok);

/* ---- the model a command works on ----------------------------------------------------------- */

typedef struct {
    MtpModel m;            /* with its tokenizer (m.tokenizer; NULL: bytes) */
    MtpCheckpointExtra x;  /* what the file records besides the weights; x.run: its training run */
} CliModel;

/* How a command opens the model it works on. */
typedef struct {
    const char *path;  /* --model FILE */
    int train_state;   /* keep the optimizer moments: train resumes from them, info reports the
                          state; the other commands drop them at once (they are the size of two models) */
    int compute;       /* start the core (every command that runs the model; not info, nor train,
                          whose resumed run takes its precision from the checkpoint) */
    int threads;       /* --threads, 0: all cores */
    MtpPrecision prec; /* --precision: of the matrix products, and of the weights decoding packs */
} CliOpen;

/* Opens a model: loads the checkpoint (the model with its tokenizer, and what the file records
 * of its run) and, with o->compute, starts the core with the threads and precision asked for.
 * Returns 0, or EXIT_FAIL after printing the error; cli_close_model either way. */
int cli_open_model(const char *cmd, const CliOpen *o, CliModel *cm);
/* mtp_core_init with --threads and --precision (cli_open_model's second half, for mtp train).
 * Returns 0, or EXIT_FAIL after printing the error. */
int cli_start_core(const char *cmd, int threads, MtpPrecision prec);
/* Frees the model and the checkpoint's extras, and stops the core if it was started. */
void cli_close_model(CliModel *cm);

/* --lookahead K of a decoding command: 0 (not given) becomes all of the model's heads. Returns 0,
 * or EXIT_USAGE after printing the error when the model has fewer heads than K. */
int cli_lookahead(const char *cmd, int *lookahead, int n_heads);

/* ---- draft trees of the decoding commands (cli_tree.c) --------------------------------------- */

/* --draft-min-p's default: a chain's draft ends before the first head whose most likely token is
 * less probable than this. Measured (tests/bench/RESULTS-trees.md, AMD EPYC Zen 4, bf16, lookahead
 * 4): 0.2 was faster than no cut on all three bench models (GSM8K bytes and BPE, builtin:arith),
 * where 0.3 and 0.4 lost on one of them. */
#define CLI_DRAFT_MIN_P 0.2f

/* --tree N and --draft-min-p P of generate, bench and eval --task answers */
#define CLI_TREE_OPTS(a)                                                                          \
    {"--tree", OPT_INT, &(a)->nodes, 0, DECODE_TREE_MAX, 0},                                      \
    {"--draft-min-p", OPT_FLOAT, &(a)->draft_min_p, 0, 1, 0}
#define CLI_TREE_ARGS_DEFAULT {.nodes = -1, .draft_min_p = CLI_DRAFT_MIN_P}
typedef struct {
    int nodes;         /* --tree N: nodes of the draft tree, 0 = a chain; -1 (not given): picked */
    float draft_min_p; /* --draft-min-p: chains only */
} CliTreeArgs;

/* The draft tree of a decoding run at lookahead K: the checkpoint's calibration's tree of the
 * size asked for, or without --tree the size with the most expected tokens per millisecond on the
 * run's engine (cal.expected of the tree over the time of a pass of as many rows); a chain where
 * there is no calibration, or with --tree 0. */
typedef struct {
    int use;          /* decode with t (0: a chain) */
    DecodeTree t;     /* the calibration's tree, pruned to depths below K */
    int nodes;        /* the size asked for or picked (t.n is less where pruning dropped nodes) */
    int given;        /* --tree N > 0 */
    int to_time;      /* without --tree: the sizes 1..to_time the pick times (trees that fit K) */
    int max_rows;     /* what the run's engine needs: K, the tree's nodes, the sizes timed */
    int K;
    const char *chain_why; /* a chain: "no calibration", "--tree 0" or "lookahead 1" */
    double expected;  /* tokens per pass the calibration expects of t (0: unknown, t was pruned) */
    int n_timed;      /* after the pick: ms[R - 1], the pass of R rows, R = 1..n_timed */
    double ms[DECODE_TREE_MAX];
} CliTree;

/* Before the engine is built: what --tree asks of the model at lookahead K. Returns 0, or
 * EXIT_USAGE after printing the error (--tree N > 0 on a checkpoint without a calibration, or
 * larger than its trees). */
int cli_tree_plan(const char *cmd, const char *path, const CliTreeArgs *a, const CliModel *cm, int K, CliTree *tr);
/* On the run's engine s (built with tr->max_rows rows, in the core's precision): without --tree,
 * times the sizes and picks one. Returns 0, or EXIT_FAIL after printing the error. */
int cli_tree_pick(const char *cmd, CliTree *tr, DecodeState *s, const DecodeCalibration *cal);
/* The tree for DecodeRequest.tree: NULL for a chain. */
const DecodeTree *cli_tree_request(const CliTree *tr);
/* What decodes and why: "tree: 6 nodes (expected 2.71 tokens per pass, pass 0.41 ms: 6.6
 * tokens/ms; 1 node: 1.00, 0.20 ms: 5.0 tokens/ms)", "tree: 8 nodes (--tree 8; expected ...)",
 * "chain of 4 (no calibration)". */
void cli_tree_why(char *buf, size_t n, const CliTree *tr, const DecodeCalibration *cal);

/* ---- prompts of the decoding commands -------------------------------------------------------- */

/* Prompts, each BOS + its tokens under the model's tokenizer, cut to half the context (room to
 * generate). */
#define CLI_MAX_PROMPTS 4096
typedef struct {
    int32_t *tokens[CLI_MAX_PROMPTS];
    int len[CLI_MAX_PROMPTS];
    int n;
} CliPrompts;

/* bench's prompts without --prompts (eval --task answers starts with the same problems): the first
 * CLI_BENCH_PROMPTS held-out problems, or as many windows of the validation split */
#define CLI_BENCH_PROMPTS 16

void cli_prompts_free(CliPrompts *p);
/* --prompts FILE: one prompt per line, or JSONL lines (starting with '{') with a "question" or
 * "prompt" string field. Returns 0, or -1 with the message (naming the line and byte) in err. */
int cli_prompts_from_file(CliPrompts *p, const DsBpe *tok, const char *path, int ctx, char *err, size_t errlen);
/* Prompts from data o (a model's training data): the questions of its held-out problems
 * (builtin:arith, .jsonl), or else windows of up to 64 tokens of its validation split.
 * held_out 0 (bench): the first count problems, or windows at offsets 0, 4096, ...; held_out 1
 * (calibrate): none of those CLI_BENCH_PROMPTS, but the last count problems after them, or the last
 * count windows at offsets 2048, 6144, ... (between bench's). Returns 0, or -1 with the message. */
int cli_prompts_from_data(CliPrompts *p, const DsOptions *o, const DsBpe *tok, int ctx, int held_out, int count,
                          char *err, size_t errlen);

/* ---- figures (cli_plot.c) --------------------------------------------------------------------- */

/* A line of a figure: n points (x, y), each labeled with label[j] when label is given. */
typedef struct {
    const char *title;
    const double *x, *y;
    const int *label;
    int n;
} CliSeries;

typedef struct {
    const char *title, *xlabel, *ylabel;
    const char *label_name; /* the points' labels read "label_name=value" */
    int logx;               /* a base-2 logarithmic x axis */
    const CliSeries *series;
    int n_series;
} CliFigure;

/* --plot FILE: a .png or .svg name, and gnuplot on PATH; else -1 after printing the error (so a
 * long run does not end without its picture). */
int cli_plot_check(const char *cmd, const char *path);
/* Draws fig into path (PNG or SVG by its extension) with gnuplot, atomically; -1 with a message. */
int cli_plot(const char *path, const CliFigure *fig, char *err, size_t errlen);

/* ---- the commands (each in its cli_*.c, called by main.c) ----------------------------------- */

int cmd_train(int argc, char **argv);      /* cli_train.c */
int cmd_eval(int argc, char **argv);       /* cli_eval.c */
int cmd_eval_answers(int argc, char **argv); /* cli_answers.c: mtp eval --task answers */
int cmd_info(int argc, char **argv);       /* cli_info.c */
int cmd_generate(int argc, char **argv);   /* cli_generate.c */
int cmd_bench(int argc, char **argv);      /* cli_bench.c */
int cmd_bench_passes(int argc, char **argv); /* cli_passes.c: mtp bench --passes */
int cmd_tokenize(int argc, char **argv);   /* cli_tokenize.c */
int cmd_calibrate(int argc, char **argv);  /* cli_calibrate.c */
int cmd_cache(int argc, char **argv);      /* cli_cache.c */
int cmd_star(int argc, char **argv);       /* cli_star.c */

#endif
