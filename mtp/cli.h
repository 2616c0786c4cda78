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

typedef enum { OPT_INT, OPT_U64, OPT_FLOAT, OPT_STR, OPT_FLAG } CliOptType;

typedef struct {
    const char *name;  /* "--dim" */
    CliOptType type;
    void *target;      /* int*, uint64_t*, float*, const char**, int* (flag) */
    double min, max;   /* numeric range (inclusive) */
    int given;         /* set by cli_parse */
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

/* exit codes */
#define EXIT_USAGE 2       /* bad command line */
#define EXIT_FAIL 1        /* bad input file, I/O error */
#define EXIT_INTERRUPTED 130

#endif
