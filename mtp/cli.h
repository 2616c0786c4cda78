/* cli.h - what the subcommands of the `mtp` executable share: option parsing and messages.
 *
 * Each subcommand declares a table of options; cli_parse fills the targets, rejects unknown flags,
 * missing values and bad numbers with a one-line error, and records which flags were given (a
 * resumed run must know whether --dim came from the user or from the default). */
#ifndef MTP_CLI_H
#define MTP_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "mtp/core/core.h"
#include "mtp/mtp.h"

typedef enum { OPT_INT, OPT_U64, OPT_FLOAT, OPT_STR, OPT_FLAG, OPT_STRS } CliOptType;

/* OPT_STRS: an option that may be repeated ("--data a.txt --data b.txt"), values in order */
#define CLI_MAX_STRS 16
typedef struct {
    const char *v[CLI_MAX_STRS];
    int n;
} CliStrs;

typedef struct {
    const char *name;  /* "--dim" */
    CliOptType type;
    void *target;      /* int*, uint64_t*, float*, const char**, int* (flag), CliStrs* */
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

/* "mtp CMD: error: <message>" on stderr */
void cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_eval_answers(int argc, char **argv);

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

/* spec "bpe:N": a byte-level BPE of N tokens learned on the run's training text (at most
   DS_BPE_SAMPLE_BYTES of it), with a line on stderr. Returns 0, or the exit status after printing
   the error (flag names the option in it). */
int cli_learn_bpe(const char *cmd, const char *flag, const char *spec, const MtpRunInfo *run, DsBpe **tok);

/* exit codes */
#define EXIT_USAGE 2       /* bad command line */
#define EXIT_FAIL 1        /* bad input file, I/O error */
#define EXIT_INTERRUPTED 130

#endif
