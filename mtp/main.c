/* main.c - the `mtp` command: option parsing, `mtp info`, `mtp eval`, and dispatch.
 * `mtp train` lives in cli_train.c. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "mtp/cli.h"
#include "mtp/mtp.h"

/* ---- option parsing ------------------------------------------------------------------------- */

void cli_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "mtp %s: error: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_precision(const char *cmd, const char *s, MtpPrecision *p) {
    if (strcmp(s, "fp32") == 0) *p = MTP_FP32;
    else if (strcmp(s, "bf16") == 0) *p = MTP_BF16;
    else {
        cli_error(cmd, "--precision must be fp32 or bf16 (got '%s')", s);
        return -1;
    }
    return 0;
}

const CliOpt *cli_opt(const CliOpt *opts, const char *name) {
    for (const CliOpt *o = opts; o->name; o++)
        if (strcmp(o->name, name) == 0) return o;
    return NULL;
}

static int parse_value(const char *cmd, CliOpt *o, const char *v) {
    char *end;
    errno = 0;
    switch (o->type) {
    case OPT_INT:
    case OPT_U64: {
        if (o->type == OPT_U64) {
            unsigned long long x = strtoull(v, &end, 10);
            if (*v == '-' || end == v || *end || errno) break;
            *(uint64_t *)o->target = x;
            return 0;
        }
        long long x = strtoll(v, &end, 10);
        if (end == v || *end || errno) break;
        if (x < o->min || x > o->max) {
            cli_error(cmd, "%s must be between %.0f and %.0f (got %s)", o->name, o->min, o->max, v);
            return -1;
        }
        *(int *)o->target = (int)x;
        return 0;
    }
    case OPT_FLOAT: {
        double x = strtod(v, &end);
        if (end == v || *end || errno || !isfinite(x)) break;
        if (x < o->min || x > o->max) {
            cli_error(cmd, "%s must be between %g and %g (got %s)", o->name, o->min, o->max, v);
            return -1;
        }
        *(float *)o->target = (float)x;
        return 0;
    }
    case OPT_STR:
        if (!*v) {
            cli_error(cmd, "%s needs a non-empty value", o->name);
            return -1;
        }
        *(const char **)o->target = v;
        return 0;
    case OPT_FLAG:
    case OPT_STRS: /* handled by cli_parse */
        break;
    }
    cli_error(cmd, "%s: '%s' is not a valid %s", o->name, v,
              o->type == OPT_FLOAT ? "number" : o->type == OPT_U64 ? "non-negative integer" : "integer");
    return -1;
}

int cli_data_apply(const char *cmd, const CliData *d, MtpRunInfo *run) {
    char err[DS_MAX_SPEC + 128];
    if (d->data.n) {
        DsSource src[DS_MAX_SOURCES];
        for (int i = 0; i < d->data.n; i++)
            if (ds_source_parse(&src[i], d->data.v[i], err, sizeof err)) {
                cli_error(cmd, "%s", err);
                return -1;
            }
        mtp_run_set_sources(run, src, d->data.n);
    }
    if (d->fields) {
        /* "QUESTION,ANSWER" names the template's two fields; one name is the text field */
        const char *comma = strchr(d->fields, ',');
        size_t cap = sizeof run->jsonl_text;
        size_t a = comma ? (size_t)(comma - d->fields) : strlen(d->fields), b = comma ? strlen(comma + 1) : 0;
        if (a == 0 || (comma && (b == 0 || strchr(comma + 1, ','))) || a >= cap || b >= cap) {
            cli_error(cmd, "--fields must be QUESTION,ANSWER or TEXT: field names of 1..%zu bytes (got '%s')", cap - 1,
                      d->fields);
            return -1;
        }
        if (comma) {
            snprintf(run->jsonl_question, cap, "%.*s", (int)a, d->fields);
            snprintf(run->jsonl_answer, cap, "%s", comma + 1);
        } else {
            snprintf(run->jsonl_text, cap, "%s", d->fields);
        }
    }
    if (d->skip_bad_lines) run->skip_bad_lines = 1;
    return 0;
}

int cli_learn_bpe(const char *cmd, const char *flag, const char *spec, const MtpRunInfo *run, DsBpe **tok) {
    *tok = NULL;
    char *end = NULL;
    long n = strncmp(spec, "bpe:", 4) == 0 ? strtol(spec + 4, &end, 10) : 0;
    if (!end || end == spec + 4 || *end || n < DS_BPE_MIN_VOCAB || n > DS_BPE_MAX_VOCAB) {
        cli_error(cmd, "%s %s: the vocabulary must be bpe:N with N from %d to %d", flag, spec, DS_BPE_MIN_VOCAB,
                  DS_BPE_MAX_VOCAB);
        return EXIT_USAGE;
    }
    DsOptions o;
    mtp_run_data_options(run, &o);
    char err[DS_MAX_SPEC + 256];
    uint8_t *text = NULL;
    size_t len = 0;
    double t0 = mtp_now();
    int rc = ds_training_text(&text, &len, &o, DS_BPE_SAMPLE_BYTES, err, sizeof err) ||
             ds_bpe_train(tok, text, len, (int)n, err, sizeof err);
    free(text);
    if (rc) {
        cli_error(cmd, "%s %s: %s", flag, spec, err);
        return EXIT_FAIL;
    }
    int size = 256 + ds_bpe_n_merges(*tok);
    fprintf(stderr, "mtp %s: learned a BPE tokenizer of %d tokens on %.1f MB of training text in %.1f s%s\n", cmd, size,
            len / 1e6, mtp_now() - t0, size < n ? " (no pair repeats beyond that)" : "");
    return 0;
}

int cli_parse(const char *cmd, int argc, char **argv, int first, CliOpt *opts, const char **positional, int *help) {
    if (positional) *positional = NULL;
    *help = 0;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            *help = 1;
            return 0;
        }
        if (strncmp(a, "--", 2) != 0) {
            if (positional && !*positional) {
                *positional = a;
                continue;
            }
            cli_error(cmd, "unexpected argument '%s' (see mtp %s --help)", a, cmd);
            return -1;
        }
        /* --name=value or --name value */
        char name[64];
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        if (len >= sizeof name) len = sizeof name - 1;
        memcpy(name, a, len);
        name[len] = 0;
        CliOpt *o = (CliOpt *)cli_opt(opts, name);
        if (!o) {
            cli_error(cmd, "unknown option '%s' (see mtp %s --help)", name, cmd);
            return -1;
        }
        if (o->given && o->type != OPT_STRS) {
            cli_error(cmd, "%s given twice", name);
            return -1;
        }
        o->given++;
        if (o->type == OPT_FLAG) {
            if (eq) {
                cli_error(cmd, "%s takes no value", name);
                return -1;
            }
            *(int *)o->target = 1;
            continue;
        }
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v) {
            cli_error(cmd, "%s needs a value", name);
            return -1;
        }
        if (o->type == OPT_STRS) {
            CliStrs *l = o->target;
            if (!*v) {
                cli_error(cmd, "%s needs a non-empty value", name);
                return -1;
            }
            if (l->n >= CLI_MAX_STRS) {
                cli_error(cmd, "%s given more than %d times", name, CLI_MAX_STRS);
                return -1;
            }
            l->v[l->n++] = v;
        } else if (parse_value(cmd, o, v)) return -1;
    }
    return 0;
}

/* ---- mtp info ------------------------------------------------------------------------------- */

static const char *INFO_HELP =
    "usage: mtp info FILE [--json]\n"
    "\n"
    "Print a checkpoint's configuration and parameter counts (embedding, trunk, heads,\n"
    "unembedding), and its training state if it has one.\n"
    "\n"
    "  --json    one JSON object on stdout instead of text\n";

int cmd_info(int argc, char **argv) {
    int json = 0, help = 0;
    const char *path = NULL;
    CliOpt opts[] = {{"--json", OPT_FLAG, &json, 0, 0, 0}, {0}};
    if (cli_parse("info", argc, argv, 2, opts, &path, &help)) return EXIT_USAGE;
    if (help) return fputs(INFO_HELP, stdout), 0;
    if (!path) {
        cli_error("info", "missing checkpoint FILE (see mtp info --help)");
        return EXIT_USAGE;
    }
    MtpModel m;
    MtpCheckpointExtra x;
    char err[512];
    if (mtp_checkpoint_load(path, &m, &x, err, sizeof err)) {
        cli_error("info", "%s", err);
        return EXIT_FAIL;
    }
    const TrunkConfig *c = &m.cfg.trunk;
    MtpParamCounts p = mtp_param_counts(&m.cfg);
    if (json) {
        printf("{\"format\":\"%s\",\"version\":%d,\"file_bytes\":%zu,", MTP_FORMAT_NAME, MTP_FORMAT_VERSION, x.file_size);
        printf("\"config\":{\"vocab\":%d,\"dim\":%d,\"layers\":%d,\"attn_heads\":%d,\"ffn\":%d,\"ctx\":%d,"
               "\"heads\":%d,\"head_type\":\"%s\"},",
               c->vocab, c->dim, c->layers, c->attn_heads, c->ffn, c->ctx, m.cfg.heads.n,
               heads_type_name(m.cfg.heads.type));
        if (m.tokenizer)
            printf("\"tokenizer\":{\"type\":\"bpe\",\"vocab\":%d,\"merges\":%d},", ds_bpe_vocab(m.tokenizer),
                   ds_bpe_n_merges(m.tokenizer));
        else printf("\"tokenizer\":{\"type\":\"bytes\",\"vocab\":%d},", DS_BYTE_VOCAB);
        printf("\"params\":{\"embedding\":%zu,\"trunk\":%zu,\"heads\":%zu,\"final_norm\":%zu,\"unembedding\":%zu,"
               "\"total\":%zu},",
               p.embedding, p.trunk, p.heads, p.final_norm, p.unembedding, p.total);
        printf("\"train\":");
        if (x.has_train) printf("{\"step\":%d,\"steps\":%d}", x.step, x.opt.steps);
        else printf("null");
        printf("}\n");
    } else {
        printf("%s: mtp checkpoint version %d, %zu bytes\n", path, MTP_FORMAT_VERSION, x.file_size);
        char tok[64] = "byte tokenizer";
        if (m.tokenizer) snprintf(tok, sizeof tok, "BPE tokenizer of %d tokens", 256 + ds_bpe_n_merges(m.tokenizer));
        printf("config:     vocab %d (%s), dim %d, layers %d, attn-heads %d, ffn %d, ctx %d\n", c->vocab, tok, c->dim,
               c->layers, c->attn_heads, c->ffn, c->ctx);
        printf("heads:      %d %s head%s (head i predicts token t+i)\n", m.cfg.heads.n,
               heads_type_name(m.cfg.heads.type), m.cfg.heads.n == 1 ? "" : "s");
        printf("parameters: %12zu total\n", p.total);
        printf("  embedding   %12zu\n  trunk       %12zu\n  heads       %12zu\n  final norm  %12zu\n"
               "  unembedding %12zu\n",
               p.embedding, p.trunk, p.heads, p.final_norm, p.unembedding);
        if (x.has_train)
            printf("training:   step %d of %d, data %s%s, %s\n", x.step, x.opt.steps, x.run.data_spec,
                   x.run.n_sources > 1 ? " (and more)" : "", mtp_precision_name(x.run.precision));
        else
            printf("training:   no optimizer state (cannot be resumed)\n");
    }
    mtp_checkpoint_extra_free(&x);
    mtp_model_free(&m);
    return 0;
}

/* ---- mtp eval ------------------------------------------------------------------------------- */

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

int cmd_eval(int argc, char **argv) {
    /* --task picks the evaluation: answers has its own options (cli_answers.c) */
    for (int i = 2; i < argc; i++) {
        const char *t = strncmp(argv[i], "--task=", 7) == 0 ? argv[i] + 7
                      : strcmp(argv[i], "--task") == 0 && i + 1 < argc ? argv[i + 1] : NULL;
        if (!t) continue;
        if (strcmp(t, "answers") == 0) return cmd_eval_answers(argc, argv);
        if (strcmp(t, "loss") != 0) {
            cli_error("eval", "--task must be loss or answers (got '%s')", t);
            return EXIT_USAGE;
        }
    }
    const char *model_path = NULL, *precision = "fp32", *task = "loss";
    CliData data = {0};
    int batches = 32, batch = 8, threads = 0, json = 0, help = 0;
    float val_frac = 0.1f;
    CliOpt opts[] = {{"--model", OPT_STR, &model_path, 0, 0, 0},
                     {"--task", OPT_STR, &task, 0, 0, 0},
                     CLI_DATA_OPTS(&data),
                     {"--batches", OPT_INT, &batches, 0, 1e9, 0},
                     {"--batch", OPT_INT, &batch, 1, 4096, 0},
                     {"--val-frac", OPT_FLOAT, &val_frac, 1e-6, 0.999999, 0},
                     {"--threads", OPT_INT, &threads, 1, 4096, 0},
                     {"--precision", OPT_STR, &precision, 0, 0, 0},
                     {"--json", OPT_FLAG, &json, 0, 0, 0},
                     {0}};
    if (cli_parse("eval", argc, argv, 2, opts, NULL, &help)) return EXIT_USAGE;
    if (help) return fputs(EVAL_HELP, stdout), 0;
    if (!model_path) {
        cli_error("eval", "--model FILE is required (see mtp eval --help)");
        return EXIT_USAGE;
    }
    MtpPrecision prec;
    if (cli_precision("eval", precision, &prec)) return EXIT_USAGE;
    char err[512];
    MtpModel m;
    MtpCheckpointExtra x;
    if (mtp_checkpoint_load(model_path, &m, &x, err, sizeof err)) {
        cli_error("eval", "%s", err);
        return EXIT_FAIL;
    }
    int rc = EXIT_FAIL;
    DsCorpus corpus = {0};
    MtpWorkspace ws = {0};
    DsOptions dopt;
    if (cli_data_apply("eval", &data, &x.run)) {
        rc = EXIT_USAGE;
        goto done;
    }
    int have_data = mtp_run_data_options(&x.run, &dopt);
    if (cli_opt(opts, "--val-frac")->given) dopt.val_frac = val_frac;
    dopt.min_tokens = (size_t)m.cfg.trunk.ctx + 1;
    dopt.tokenizer = m.tokenizer;
    dopt.val_only = 1;
    if (!have_data) {
        cli_error("eval", "--data is required: the checkpoint does not record its training data");
        rc = EXIT_USAGE;
        goto done;
    }
    if (mtp_core_init(threads, prec, err, sizeof err)) {
        cli_error("eval", "%s", err);
        goto done;
    }
    if (ds_load(&corpus, &dopt, err, sizeof err)) {
        cli_error("eval", "%s", err);
        goto done;
    }
    if (mtp_workspace_build(&ws, &m, batch, m.cfg.trunk.ctx)) {
        cli_error("eval", "out of memory for a batch of %d x %d", batch, m.cfg.trunk.ctx);
        goto done;
    }
    double loss[HEADS_MAX], acc[HEADS_MAX];
    long tokens = mtp_evaluate(&ws, corpus.val, corpus.n_val, batches, loss, acc);
    if (tokens < 0) {
        cli_error("eval", "out of memory");
        goto done;
    }
    const int n = m.cfg.heads.n;
    if (json) {
        printf("{\"heads\":[");
        for (int i = 0; i < n; i++) {
            /* JSON has no NaN: a model with non-finite weights reports null */
            printf("%s{\"head\":%d,\"loss\":", i ? "," : "", i + 1);
            if (isfinite(loss[i])) printf("%.6f", loss[i]);
            else printf("null");
            printf(",\"accuracy\":%.6f}", acc[i]);
        }
        printf("],\"tokens\":%ld}\n", tokens);
    } else {
        printf("%s on %s (validation split, %ld tokens)\n", model_path, corpus.desc, tokens);
        printf("head  predicts  loss (nats/token)  accuracy\n");
        for (int i = 0; i < n; i++) printf("%4d  t+%-7d %17.4f  %7.2f%%\n", i + 1, i + 1, loss[i], 100.0 * acc[i]);
    }
    rc = 0;
done:
    mtp_workspace_free(&ws);
    ds_free(&corpus);
    mtp_checkpoint_extra_free(&x);
    mtp_model_free(&m);
    mtp_core_shutdown();
    return rc;
}

/* ---- dispatch ------------------------------------------------------------------------------- */

static const char *MAIN_HELP =
    "usage: mtp COMMAND [options]\n"
    "\n"
    "Train transformer language models with multi-token prediction (n output heads,\n"
    "head i predicts token t+i) on the CPU.\n"
    "\n"
    "commands:\n"
    "  train     train a model (or resume one) and write a checkpoint\n"
    "  eval      loss and accuracy of every head on validation data\n"
    "  info      print a checkpoint's configuration and parameter counts\n"
    "  generate  continue a prompt (greedy; the extra heads draft with --lookahead)\n"
    "  bench     decoding speed at each lookahead against lookahead 1\n"
    "  tokenize  show how a model's tokenizer splits a text\n"
    "\n"
    "Run 'mtp COMMAND --help' for the options of a command.\n";

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        fputs(MAIN_HELP, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "train") == 0) return cmd_train(argc, argv);
    if (strcmp(cmd, "eval") == 0) return cmd_eval(argc, argv);
    if (strcmp(cmd, "info") == 0) return cmd_info(argc, argv);
    if (strcmp(cmd, "generate") == 0) return cmd_generate(argc, argv);
    if (strcmp(cmd, "bench") == 0) return cmd_bench(argc, argv);
    if (strcmp(cmd, "tokenize") == 0) return cmd_tokenize(argc, argv);
    fprintf(stderr, "mtp: error: unknown command '%s' (commands: train, eval, info, generate, bench, tokenize; see mtp --help)\n",
            cmd);
    return EXIT_USAGE;
}
