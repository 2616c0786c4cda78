/* cli.c - what the subcommands share (cli.h): option parsing, messages, the corpus options,
 * opening a model, and the prompts of the decoding commands. The commands are in cli_*.c; nothing
 * here knows them. */
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
    case OPT_FLOAT:
    case OPT_DOUBLE: {
        double x = strtod(v, &end);
        if (end == v || *end || errno || !isfinite(x)) break;
        if (x < o->min || x > o->max) {
            cli_error(cmd, "%s must be between %g and %g (got %s)", o->name, o->min, o->max, v);
            return -1;
        }
        if (o->type == OPT_DOUBLE) *(double *)o->target = x;
        else *(float *)o->target = (float)x;
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

int cli_model_data(const char *cmd, const CliData *d, MtpRunInfo *run, DsOptions *o) {
    if (cli_data_apply(cmd, d, run)) return EXIT_USAGE;
    if (mtp_run_data_options(run, o)) return 0;
    cli_error(cmd, "--data is required: the checkpoint does not record its training data");
    return EXIT_USAGE;
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

/* ---- the model a command works on ----------------------------------------------------------- */

int cli_open_model(const char *cmd, const CliOpen *o, CliModel *cm) {
    char err[1024];
    if (mtp_checkpoint_load(o->path, &cm->m, &cm->x, err, sizeof err)) {
        cli_error(cmd, "%s", err);
        return EXIT_FAIL;
    }
    if (!o->train_state) mtp_checkpoint_extra_free(&cm->x); /* the moments go; x.run stays */
    return o->compute ? cli_start_core(cmd, o->threads, o->prec) : 0;
}

int cli_start_core(const char *cmd, int threads, MtpPrecision prec) {
    char err[512];
    if (mtp_core_init(threads, prec, err, sizeof err)) {
        cli_error(cmd, "%s", err);
        return EXIT_FAIL;
    }
    return 0;
}

void cli_close_model(CliModel *cm) {
    mtp_checkpoint_extra_free(&cm->x);
    mtp_model_free(&cm->m);
    mtp_core_shutdown();
}

int cli_lookahead(const char *cmd, int *lookahead, int n_heads) {
    if (!*lookahead) *lookahead = n_heads;
    if (*lookahead <= n_heads) return 0;
    cli_error(cmd, "--lookahead %d is more than the model's %d heads", *lookahead, n_heads);
    return EXIT_USAGE;
}

/* ---- prompts of the decoding commands ------------------------------------------------------- */

#define PROMPTS_MAX_LINE (1 << 20)
#define PROMPTS_WINDOW 64       /* tokens of a window of the validation split, at most */
#define PROMPTS_SPACING 4096    /* tokens between windows */

void cli_prompts_free(CliPrompts *p) {
    for (int i = 0; i < p->n; i++) free(p->tokens[i]);
    p->n = 0;
}

/* Adds BOS + the tokens of bytes (cut to fit the context with room to generate). */
static int prompts_add(CliPrompts *p, const DsBpe *tok, const uint8_t *bytes, size_t n, int ctx) {
    if (p->n == CLI_MAX_PROMPTS) return 0;
    int32_t *t = malloc((n + 1) * sizeof(int32_t));
    if (!t) return -1;
    t[0] = DS_BOS;
    size_t k = 1 + mtp_encode(tok, t + 1, bytes, n);
    if (k > (size_t)ctx / 2) k = (size_t)ctx / 2;
    p->tokens[p->n] = t, p->len[p->n] = (int)k, p->n++;
    return 0;
}

/* One line of a prompts file (no line end): a JSONL record's "question" or "prompt", or the text. */
static int prompts_line(CliPrompts *p, const DsBpe *tok, const char *line, size_t n, int ctx, DsJsonOut *js,
                        char *err, size_t errlen) {
    if (line[0] != '{') return prompts_add(p, tok, (const uint8_t *)line, n, ctx);
    static const char *const keys[2] = {"question", "prompt"};
    if (ds_json_strings(line, n, keys, 2, js, err, errlen)) return -1;
    const int k = js->off[0] >= 0 ? 0 : 1;
    if (js->off[k] < 0) {
        snprintf(err, errlen, "no \"question\" or \"prompt\" field");
        return -1;
    }
    return prompts_add(p, tok, (const uint8_t *)js->data + js->off[k], js->n[k], ctx);
}

/* The next line of f into line (its newline included, NUL bytes kept, which fgets would cut at),
   at most cap bytes of it; 0 at the end of the file. */
static size_t read_line(FILE *f, char *line, size_t cap) {
    size_t n = 0;
    for (int c; n < cap && (c = getc(f)) != EOF;) {
        line[n++] = (char)c;
        if (c == '\n') break;
    }
    line[n] = '\0';
    return n;
}

int cli_prompts_from_file(CliPrompts *p, const DsBpe *tok, const char *path, int ctx, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "--prompts %s: %s", path, strerror(errno));
        return -1;
    }
    char *line = malloc(PROMPTS_MAX_LINE + 2);
    DsJsonOut js = {0};
    int rc = 0, lineno = 0;
    size_t n;
    while (rc == 0 && line && (n = read_line(f, line, PROMPTS_MAX_LINE + 1)) > 0) {
        lineno++;
        if (n > PROMPTS_MAX_LINE) {
            snprintf(err, errlen, "--prompts %s: line %d is longer than %d bytes", path, lineno, PROMPTS_MAX_LINE);
            rc = -1;
            break;
        }
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        char msg[200] = "out of memory";
        if (n && (rc = prompts_line(p, tok, line, n, ctx, &js, msg, sizeof msg)))
            snprintf(err, errlen, "--prompts %s: line %d: %s", path, lineno, msg);
    }
    if (!line) snprintf(err, errlen, "out of memory"), rc = -1;
    else if (rc == 0 && p->n == 0) snprintf(err, errlen, "--prompts %s: no prompts in the file", path), rc = -1;
    free(line);
    ds_json_out_free(&js);
    fclose(f);
    return rc;
}

/* The questions of held-out problems: the first count, or (held_out) the last count after the
 * first CLI_BENCH_PROMPTS. Returns 1 when o has no problems (plain text: windows instead). */
static int prompts_from_problems(CliPrompts *p, const DsOptions *o, const DsBpe *tok, int ctx, int held_out,
                                 int count, char *err, size_t errlen) {
    DsProblem *probs;
    int np;
    if (ds_heldout_problems(&probs, &np, o, held_out ? 0 : count, err, errlen)) return 1;
    int first = 0, rc = 0;
    if (held_out) {
        first = np - count > CLI_BENCH_PROMPTS ? np - count : CLI_BENCH_PROMPTS;
        if (first >= np) {
            snprintf(err, errlen, "the data has %d held-out problems, all among the %d that bench and eval use: give "
                     "--prompts", np, CLI_BENCH_PROMPTS);
            rc = -1;
        }
    }
    for (int i = first; i < np && rc == 0; i++)
        if ((rc = prompts_add(p, tok, (const uint8_t *)probs[i].text, probs[i].prompt_len, ctx)))
            snprintf(err, errlen, "out of memory");
    ds_problems_free(probs, np);
    return rc;
}

int cli_prompts_from_data(CliPrompts *p, const DsOptions *o, const DsBpe *tok, int ctx, int held_out, int count,
                          char *err, size_t errlen) {
    int rc = prompts_from_problems(p, o, tok, ctx, held_out, count, err, errlen);
    if (rc <= 0) return rc;
    DsOptions v = *o;
    v.min_tokens = (size_t)ctx + 1, v.tokenizer = tok, v.val_only = 1, v.quiet = 1;
    DsCorpus c;
    if (ds_load(&c, &v, err, errlen)) return -1;
    const size_t win = ctx / 2 < PROMPTS_WINDOW ? (size_t)ctx / 2 : PROMPTS_WINDOW;
    /* bench's windows start at multiples of the spacing; calibrate's halfway between (no overlap:
       a window is far shorter than the spacing), the last count that fit */
    const size_t start = held_out ? PROMPTS_SPACING / 2 : 0;
    const size_t fit = c.n_val >= start + win ? (c.n_val - start - win) / PROMPTS_SPACING + 1 : 0;
    size_t j = held_out && fit > (size_t)count ? fit - (size_t)count : 0;
    for (; j < fit && p->n < count && p->n < CLI_MAX_PROMPTS; j++) {
        int32_t *t = malloc(win * sizeof *t);
        if (!t) break;
        t[0] = DS_BOS;
        memcpy(t + 1, c.val + start + j * PROMPTS_SPACING, (win - 1) * sizeof *t);
        p->tokens[p->n] = t, p->len[p->n] = (int)win, p->n++;
    }
    ds_free(&c);
    if (p->n == 0) snprintf(err, errlen, "no prompts could be taken from %.200s", o->sources[0].spec);
    return p->n ? 0 : -1;
}
