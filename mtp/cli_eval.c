/* cli_eval.c - `mtp eval`: loss and top-1 accuracy of every head on the validation split. --task
 * answers (generated chains of thought) is its own command behind the same name: cli_answers.c. */
#include <math.h>
#include <string.h>

#include "mtp/cli.h"

static const char *EVAL_HELP =
    "usage: mtp eval --model FILE [--data SPEC ...] [options]\n"
    "       mtp eval --task answers --model FILE [--data SPEC] [options] (mtp eval --task answers --help)\n"
    "\n"
    "Loss and top-1 accuracy of every head on the validation split: head i is scored\n"
    "against token t+i. For a file the split is its last --val-frac (the last lines of a\n"
    ".jsonl file); for builtin:arith it is the generator's validation stream (same data seed\n"
    "and difficulty as training). Text is encoded with the model's tokenizer.\n"
    "\n"
    "  --model FILE        checkpoint to evaluate (required)\n"
    "  --task T            loss (default) or answers (accuracy of generated chains of thought)\n"
    "  --data SPEC         a source as in mtp train, repeatable (default: the model's training data)\n"
    "  --fields Q,A | T    JSONL fields (default: as trained)\n"
    "  --skip-bad-lines    skip malformed JSONL lines (default: as trained)\n"
    "  --batches K         evaluate at most K batches (default 32; 0 = the whole split)\n"
    "  --batch B           rows per batch (default 8)\n"
    "  --val-frac F        validation fraction of a file (default: as trained)\n"
    "  --threads P         threads (default: all cores)\n"
    "  --precision P       fp32 or bf16 matrix products (default fp32)\n"
    "  --json              print {\"heads\":[{\"head\":1,\"loss\":L,\"accuracy\":A},...],\"tokens\":N}\n";

typedef struct {
    const char *model_path, *precision, *task;
    CliData data;
    int batches, batch, threads, json, help, val_frac_given;
    double val_frac;
    MtpPrecision prec;
} EvalArgs;

typedef struct {
    CliModel cm;
    DsCorpus corpus;
    MtpWorkspace ws;
    double loss[HEADS_MAX], acc[HEADS_MAX];
    long tokens;
} Eval;

/* --task picks the evaluation before anything is parsed: answers has options of its own. */
static int eval_task(int argc, char **argv, int *answers) {
    *answers = 0;
    for (int i = 2; i < argc; i++) {
        const char *t = strncmp(argv[i], "--task=", 7) == 0 ? argv[i] + 7
                      : strcmp(argv[i], "--task") == 0 && i + 1 < argc ? argv[i + 1] : NULL;
        if (!t) continue;
        if (strcmp(t, "answers") == 0) return *answers = 1, 0;
        if (strcmp(t, "loss") != 0) {
            cli_error("eval", "--task must be loss or answers (got '%s')", t);
            return EXIT_USAGE;
        }
    }
    return 0;
}

static int eval_parse(int argc, char **argv, EvalArgs *a) {
    *a = (EvalArgs){.precision = "fp32", .task = "loss", .batches = 32, .batch = 8, .val_frac = 0.1};
    CliOpt opts[] = {{"--model", OPT_STR, &a->model_path, 0, 0, 0},
                     {"--task", OPT_STR, &a->task, 0, 0, 0},
                     CLI_DATA_OPTS(&a->data),
                     {"--batches", OPT_INT, &a->batches, 0, 1e9, 0},
                     {"--batch", OPT_INT, &a->batch, 1, 4096, 0},
                     {"--val-frac", OPT_DOUBLE, &a->val_frac, 1e-6, 0.999999, 0},
                     {"--threads", OPT_INT, &a->threads, 1, 4096, 0},
                     {"--precision", OPT_STR, &a->precision, 0, 0, 0},
                     {"--json", OPT_FLAG, &a->json, 0, 0, 0},
                     {0}};
    if (cli_parse("eval", argc, argv, 2, opts, NULL, &a->help)) return EXIT_USAGE;
    if (a->help) return fputs(EVAL_HELP, stdout), 0;
    a->val_frac_given = cli_opt(opts, "--val-frac")->given;
    if (!a->model_path) {
        cli_error("eval", "--model FILE is required (see mtp eval --help)");
        return EXIT_USAGE;
    }
    return cli_precision("eval", a->precision, &a->prec) ? EXIT_USAGE : 0;
}

/* The model, then its validation split, then a workspace for a batch. */
static int eval_open(const EvalArgs *a, Eval *e) {
    const CliOpen how = {.path = a->model_path, .compute = 1, .threads = a->threads, .prec = a->prec};
    int rc = cli_open_model("eval", &how, &e->cm);
    const MtpModel *m = &e->cm.m;
    DsOptions dopt;
    if (rc || (rc = cli_model_data("eval", &a->data, &e->cm.x.run, &dopt))) return rc;
    if (a->val_frac_given) dopt.val_frac = a->val_frac;
    dopt.min_tokens = (size_t)m->cfg.trunk.ctx + 1;
    dopt.tokenizer = m->tokenizer;
    dopt.val_only = 1;
    char err[512];
    if (ds_load(&e->corpus, &dopt, err, sizeof err)) {
        cli_error("eval", "%s", err);
        return EXIT_FAIL;
    }
    if (mtp_workspace_build(&e->ws, m, a->batch, m->cfg.trunk.ctx)) {
        cli_error("eval", "out of memory for a batch of %d x %d", a->batch, m->cfg.trunk.ctx);
        return EXIT_FAIL;
    }
    return 0;
}

static int eval_run(const EvalArgs *a, Eval *e) {
    e->tokens = mtp_evaluate(&e->ws, e->corpus.val, e->corpus.n_val, a->batches, e->loss, e->acc);
    if (e->tokens >= 0) return 0;
    cli_error("eval", "out of memory");
    return EXIT_FAIL;
}

static void eval_report(const EvalArgs *a, const Eval *e) {
    const int n = e->cm.m.cfg.heads.n;
    if (a->json) {
        printf("{\"heads\":[");
        for (int i = 0; i < n; i++) {
            /* JSON has no NaN: a model with non-finite weights reports null */
            printf("%s{\"head\":%d,\"loss\":", i ? "," : "", i + 1);
            if (isfinite(e->loss[i])) printf("%.6f", e->loss[i]);
            else printf("null");
            printf(",\"accuracy\":%.6f}", e->acc[i]);
        }
        printf("],\"tokens\":%ld}\n", e->tokens);
    } else {
        printf("%s on %s (validation split, %ld tokens)\n", a->model_path, e->corpus.desc, e->tokens);
        printf("head  predicts  loss (nats/token)  accuracy\n");
        for (int i = 0; i < n; i++)
            printf("%4d  t+%-7d %17.4f  %7.2f%%\n", i + 1, i + 1, e->loss[i], 100.0 * e->acc[i]);
    }
}

int cmd_eval(int argc, char **argv) {
    int answers, rc = eval_task(argc, argv, &answers);
    if (rc || answers) return rc ? rc : cmd_eval_answers(argc, argv);
    EvalArgs a;
    if ((rc = eval_parse(argc, argv, &a)) || a.help) return rc;
    Eval e = {0};
    rc = eval_open(&a, &e);
    if (rc == 0) rc = eval_run(&a, &e);
    if (rc == 0) eval_report(&a, &e);
    mtp_workspace_free(&e.ws);
    ds_free(&e.corpus);
    cli_close_model(&e.cm);
    return rc;
}
