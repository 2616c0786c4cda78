/* cli_answers.c - `mtp eval --task answers`: generate the chain of thought of held-out problems,
 * check the final answer, and time decoding at a lookahead (and with a draft tree) against
 * lookahead 1. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "decode/decode.h"
#include "mtp/cli.h"

static const char *ANSWERS_HELP =
    "usage: mtp eval --task answers --model FILE [--data SPEC] [--limit N] [--lookahead K] [--json]\n"
    "\n"
    "For each held-out problem (the validation lines of a .jsonl file, or builtin:arith's\n"
    "validation examples), generate the chain of thought greedily from the question (the\n"
    "record's prompt after BOS) until EOS or the context is full, take the number after the\n"
    "last \"####\", and compare it with the reference's. Every problem is decoded at lookahead K\n"
    "and at lookahead 1 (plain decoding), alternately, for the speedup, and with a draft tree\n"
    "when there is one (--tree); greedy outputs must be identical, and the count of identical\n"
    "ones is reported.\n"
    "\n"
    "  --model FILE        checkpoint (required)\n"
    "  --data SPEC         problems: a .jsonl file or builtin:arith, repeatable (default: the\n"
    "                      model's training data); the held-out split is the validation split\n"
    "  --fields Q,A | T    JSONL fields (default: as trained)\n"
    "  --skip-bad-lines    skip malformed JSONL lines\n"
    "  --val-frac F        held-out fraction of a .jsonl file (default: as trained)\n"
    "  --difficulty N      builtin:arith level of the problems, 0 = mixed 1..5 (default: as\n"
    "                      trained)\n"
    "  --limit N           the first N problems (default 0: all)\n"
    "  --lookahead K       tokens drafted per forward pass, 1..heads (default: all heads)\n"
    "  --tree N            also decode with the draft tree of N nodes of the checkpoint's\n"
    "                      calibration (mtp calibrate), pruned to the lookahead; 0 = none.\n"
    "                      Default: with a calibration, the size with the most expected tokens\n"
    "                      per ms (passes of each size timed), else none\n"
    "  --draft-min-p P     the chain at the lookahead only (ignored by the tree): end a draft\n"
    "                      before the first head whose most likely token has probability below\n"
    "                      P (default 0.2; 0: off)\n"
    "  --max-tokens N      stop a chain after N tokens (default: until the context is full)\n"
    "  --threads P         threads (default: all cores)\n"
    "  --precision P       fp32 (default) or bf16 matrix products\n"
    "  --verbose           a line per problem: its reference and generated answers\n"
    "  --json              print one JSON object: problems, correct, accuracy, no_answer,\n"
    "                      hit_context, skipped, mean_chain_tokens, mean_chain_bytes,\n"
    "                      lookahead, tokens_per_s, tokens_per_forward, baseline_tokens_per_s,\n"
    "                      speedup, identical, tree_nodes (0: no tree) and with a tree\n"
    "                      tree_tokens_per_s, tree_tokens_per_forward, tree_rows_per_forward,\n"
    "                      tree_speedup (against lookahead 1), tree_speedup_vs_chain,\n"
    "                      tree_identical\n";

typedef struct {
    const char *model_path, *precision, *task;
    CliData data;
    int limit, lookahead, max_tokens, threads, json, verbose, help, difficulty;
    int val_frac_given, difficulty_given;
    double val_frac;
    CliTreeArgs tree;
    MtpPrecision prec;
} AnswersArgs;

typedef struct {
    long tokens, forwards, rows, bytes;
    double seconds;
} Timing;

typedef struct {
    CliModel cm;
    DsOptions dopt; /* the problems' data */
    DsProblem *probs;
    int n_probs, max_new;
    int32_t *prompt, *out_k, *out_1, *out_t; /* BOS + a question; the chains at the lookahead, at 1, with the tree */
    uint8_t *text;                   /* a chain's bytes */
    CliTree tr;                      /* the draft tree at the lookahead, or none */
    Timing tk, t1, tt;               /* at the lookahead, at lookahead 1, with the tree */
    long correct, no_answer, hit_ctx, skipped, identical, identical_t, done_n, chain_bytes;
} Answers;

static int answers_parse(int argc, char **argv, AnswersArgs *a) {
    *a = (AnswersArgs){.precision = "fp32", .val_frac = 0.1, .tree = CLI_TREE_ARGS_DEFAULT};
    CliOpt opts[] = {{"--model", OPT_STR, &a->model_path, 0, 0, 0},
                     {"--task", OPT_STR, &a->task, 0, 0, 0},
                     CLI_DATA_OPTS(&a->data),
                     {"--val-frac", OPT_DOUBLE, &a->val_frac, 1e-6, 0.999999, 0},
                     {"--limit", OPT_INT, &a->limit, 0, 1e9, 0},
                     {"--difficulty", OPT_INT, &a->difficulty, 0, DS_ARITH_MAX_DIFFICULTY, 0},
                     {"--lookahead", OPT_INT, &a->lookahead, 1, HEADS_MAX, 0},
                     CLI_TREE_OPTS(&a->tree),
                     {"--max-tokens", OPT_INT, &a->max_tokens, 1, 1 << 24, 0},
                     {"--threads", OPT_INT, &a->threads, 1, 4096, 0},
                     {"--precision", OPT_STR, &a->precision, 0, 0, 0},
                     {"--verbose", OPT_FLAG, &a->verbose, 0, 0, 0},
                     {"--json", OPT_FLAG, &a->json, 0, 0, 0},
                     {0}};
    if (cli_parse("eval", argc, argv, 2, opts, NULL, &a->help)) return EXIT_USAGE;
    if (a->help) return fputs(ANSWERS_HELP, stdout), 0;
    a->val_frac_given = cli_opt(opts, "--val-frac")->given;
    a->difficulty_given = cli_opt(opts, "--difficulty")->given;
    if (!a->model_path) {
        cli_error("eval", "--model FILE is required (see mtp eval --task answers --help)");
        return EXIT_USAGE;
    }
    return cli_precision("eval", a->precision, &a->prec) ? EXIT_USAGE : 0;
}

/* The model (a->lookahead resolved against its heads, the tree it asks for), the problems and room
 * to decode them. */
static int answers_open(AnswersArgs *a, Answers *e) {
    const CliOpen how = {.path = a->model_path, .compute = 1, .threads = a->threads, .prec = a->prec};
    int rc = cli_open_model("eval", &how, &e->cm);
    if (rc || (rc = cli_lookahead("eval", &a->lookahead, e->cm.m.cfg.heads.n)) ||
        (rc = cli_tree_plan("eval", a->model_path, &a->tree, &e->cm, a->lookahead, &e->tr)) ||
        (rc = cli_model_data("eval", &a->data, &e->cm.x.run, &e->dopt)))
        return rc;
    if (a->val_frac_given) e->dopt.val_frac = a->val_frac;
    if (a->difficulty_given) e->dopt.difficulty = a->difficulty;
    char err[1024];
    if (ds_heldout_problems(&e->probs, &e->n_probs, &e->dopt, a->limit, err, sizeof err)) {
        cli_error("eval", "%s", err);
        return EXIT_FAIL;
    }
    e->max_new = a->max_tokens ? a->max_tokens : e->cm.m.cfg.trunk.ctx;
    size_t max_prompt = 1;
    for (int i = 0; i < e->n_probs; i++)
        if (e->probs[i].prompt_len + 1 > max_prompt) max_prompt = e->probs[i].prompt_len + 1;
    e->prompt = malloc(max_prompt * sizeof *e->prompt);
    e->out_k = malloc((size_t)e->max_new * sizeof *e->out_k);
    e->out_1 = malloc((size_t)e->max_new * sizeof *e->out_1);
    e->out_t = malloc((size_t)e->max_new * sizeof *e->out_t);
    e->text = malloc((size_t)e->max_new * DS_BPE_MAX_CHUNK + 1);
    if (!e->prompt || !e->out_k || !e->out_1 || !e->out_t || !e->text) {
        cli_error("eval", "out of memory");
        return EXIT_FAIL;
    }
    return 0;
}

/* Greedy decoding of one prompt as how asks (its lookahead, tree, draft_min_p); returns the tokens
 * generated (into out), and their time. */
static int generate(DecodeState *s, const int32_t *prompt, int n, int max_new, DecodeRequest how, int32_t *out,
                    Timing *t, int *hit_context) {
    decode_truncate(s, 0);
    DecodeStats st;
    double t0 = mtp_now();
    how.prompt = prompt, how.n_prompt = n, how.max_new = max_new, how.eos = DS_EOS;
    int got = decode_greedy(s, &how, out, &st);
    t->seconds += mtp_now() - t0;
    t->tokens += got;
    t->forwards += st.forwards; /* after the prompt's pass, as mtp bench counts them */
    t->rows += st.rows;
    if (hit_context) *hit_context = st.hit_context;
    return got;
}

/* Problem i's chain (got tokens in out_k): its answer against the reference, into the tallies. */
static void answers_score(const AnswersArgs *a, Answers *e, int i, int got, int hit, int tty) {
    const DsProblem *p = &e->probs[i];
    size_t len = mtp_decode(e->cm.m.tokenizer, e->text, (size_t)e->max_new * DS_BPE_MAX_CHUNK, e->out_k, (size_t)got);
    e->text[len] = 0;
    char answer[64];
    int has = ds_answer_extract((const char *)e->text, len, answer, sizeof answer) >= 0;
    int ok = has && strcmp(answer, p->answer) == 0;
    e->correct += ok, e->no_answer += !has, e->hit_ctx += hit, e->done_n++, e->chain_bytes += (long)len;
    e->tk.bytes += (long)len;
    if (a->verbose)
        fprintf(stderr, "%sproblem %d: %s (reference %s, generated %s, %d tokens%s)\n", tty ? "\r\033[K" : "", i + 1,
                ok ? "right" : "wrong", p->answer, has ? answer : "no answer", got, hit ? ", context full" : "");
}

/* The engines: at the lookahead, at lookahead 1 (when it is another), and the tree's (when there
 * is one: without --tree, its size is picked on this engine). Returns 0, or EXIT_FAIL after
 * printing the error; the caller frees them either way. */
static int answers_engines(const AnswersArgs *a, Answers *e, DecodeState *sk, DecodeState *s1, DecodeState *st) {
    const int K = a->lookahead;
    char err[1024];
    const DecodeModel dm = mtp_decode_model(&e->cm.m);
    if (decode_build(sk, dm, K, K, err, sizeof err) || (K > 1 && decode_build(s1, dm, 1, 1, err, sizeof err)) ||
        ((e->tr.use || e->tr.to_time) && decode_build(st, dm, e->tr.max_rows, K, err, sizeof err))) {
        cli_error("eval", "%s", err);
        return EXIT_FAIL;
    }
    return e->tr.use || e->tr.to_time ? cli_tree_pick("eval", &e->tr, st, &e->cm.x.cal) : 0;
}

/* Problem i (its prompt, n tokens, in e->prompt) decoded at the lookahead, at lookahead 1 and with
 * the tree, one after the other; the outputs compared, the answer scored. */
static void answers_problem(const AnswersArgs *a, Answers *e, int i, int n, DecodeState *sk, DecodeState *s1,
                            DecodeState *st, int tty) {
    const int K = a->lookahead;
    const DecodeRequest at_k = {.lookahead = K, .draft_min_p = a->tree.draft_min_p}, at_1 = {.lookahead = 1},
                        tree = {.lookahead = K, .tree = cli_tree_request(&e->tr)};
    int hit = 0; /* decoding stops by itself when the context is full, and says so */
    const int got = generate(sk, e->prompt, n, e->max_new, at_k, e->out_k, &e->tk, &hit);
    if (K > 1) {
        const int got1 = generate(s1, e->prompt, n, e->max_new, at_1, e->out_1, &e->t1, NULL);
        e->identical += got1 == got && memcmp(e->out_1, e->out_k, (size_t)got * sizeof *e->out_k) == 0;
    }
    if (e->tr.use) { /* against lookahead 1's output (the chain's, when that is lookahead 1) */
        const int got_t = generate(st, e->prompt, n, e->max_new, tree, e->out_t, &e->tt, NULL);
        const int32_t *ref = K > 1 ? e->out_1 : e->out_k;
        e->identical_t += got_t == got && memcmp(ref, e->out_t, (size_t)got * sizeof *e->out_t) == 0;
    }
    answers_score(a, e, i, got, hit, tty);
}

/* Every problem decoded at the lookahead, at lookahead 1 and with the tree, alternately: all of the
 * command's decoding is here. */
static int answers_run(const AnswersArgs *a, Answers *e) {
    const int K = a->lookahead, ctx = e->cm.m.cfg.trunk.ctx;
    DecodeState sk = {0}, s1 = {0}, st = {0};
    int rc = answers_engines(a, e, &sk, &s1, &st);
    const char *src = e->dopt.n_sources == 1 ? e->dopt.sources[0].spec : "the data";
    if (!a->json && rc == 0) {
        fprintf(stderr, "mtp eval: %d held-out problem%s from %s, lookahead %d%s, %d thread%s\n", e->n_probs,
                e->n_probs == 1 ? "" : "s", src, K, K > 1 ? " and 1" : "", mtp_core_threads(),
                mtp_core_threads() == 1 ? "" : "s");
        char why[512];
        cli_tree_why(why, sizeof why, &e->tr, &e->cm.x.cal);
        fprintf(stderr, "mtp eval: %s\n", why);
    }
    const int tty = isatty(STDERR_FILENO) && !a->json;
    double last_note = mtp_now();
    for (int i = 0; i < e->n_probs && rc == 0; i++) {
        const DsProblem *p = &e->probs[i];
        e->prompt[0] = DS_BOS;
        int n = 1 + (int)mtp_encode(e->cm.m.tokenizer, e->prompt + 1, (const uint8_t *)p->text, p->prompt_len);
        if (n >= ctx) { /* no room to answer */
            e->skipped++;
            continue;
        }
        answers_problem(a, e, i, n, &sk, &s1, &st, tty);
        double now = mtp_now();
        if (!a->json && !a->verbose && (now - last_note >= (tty ? 0.2 : 10.0))) {
            fprintf(stderr, "%s%d/%d problems, %ld right%s", tty ? "\r\033[K" : "", i + 1, e->n_probs, e->correct,
                    tty ? "" : "\n");
            last_note = now;
        }
    }
    if (tty && !a->verbose) fputs("\r\033[K", stderr);
    decode_free(&sk);
    decode_free(&s1);
    decode_free(&st);
    return rc;
}

/* The tree's part of the report: JSON members (after the others), or lines of text. */
static void answers_tree_report(const AnswersArgs *a, const Answers *e) {
    const Timing *t = &e->tt, *one = a->lookahead > 1 ? &e->t1 : &e->tk;
    const int nodes = e->tr.use ? e->tr.t.n : 0;
    const double rate = t->seconds > 0 ? t->tokens / t->seconds : 0;
    const double speedup = t->seconds > 0 ? one->seconds / t->seconds : 0;
    const double vs_chain = t->seconds > 0 ? e->tk.seconds / t->seconds : 0;
    const double tpf = t->forwards ? (double)t->tokens / (double)t->forwards : 0;
    const double rpf = t->forwards ? (double)t->rows / (double)t->forwards : 0;
    if (a->json) {
        printf(",\"tree_nodes\":%d", nodes);
        if (nodes)
            printf(",\"tree_tokens_per_s\":%.2f,\"tree_tokens_per_forward\":%.4f,\"tree_rows_per_forward\":%.4f,"
                   "\"tree_speedup\":%.4f,\"tree_speedup_vs_chain\":%.4f,\"tree_identical\":%ld",
                   rate, tpf, rpf, speedup, vs_chain, e->identical_t);
    } else if (nodes) {
        printf("tree of %-5d %.1f tokens/s, %.2f tokens and %.2f rows per forward pass\n", nodes, rate, tpf, rpf);
        printf("tree speedup   %.2fx against lookahead 1, %.2fx against the chain of %d; greedy outputs identical "
               "for %ld of %ld problems\n", speedup, vs_chain, a->lookahead, e->identical_t, e->done_n);
    }
}

/* Accuracy and speed; EXIT_FAIL when the lookahead or the tree changed a greedy output. */
static int answers_report(const AnswersArgs *a, const Answers *e) {
    const int K = a->lookahead;
    const long n = e->done_n, identical = K == 1 ? n : e->identical, identical_t = e->tr.use ? e->identical_t : n;
    const double acc = n ? (double)e->correct / (double)n : 0;
    const double rate_k = e->tk.seconds > 0 ? e->tk.tokens / e->tk.seconds : 0;
    const double rate_1 = K > 1 ? (e->t1.seconds > 0 ? e->t1.tokens / e->t1.seconds : 0) : rate_k;
    const double speedup = K > 1 ? (e->tk.seconds > 0 ? e->t1.seconds / e->tk.seconds : 0) : 1.0;
    const double tpf = e->tk.forwards ? (double)e->tk.tokens / (double)e->tk.forwards : 0;
    const double mean_tok = n ? (double)e->tk.tokens / (double)n : 0;
    const double mean_bytes = n ? (double)e->chain_bytes / (double)n : 0;
    if (a->json) {
        printf("{\"task\":\"answers\",\"problems\":%ld,\"correct\":%ld,\"accuracy\":%.6f,\"no_answer\":%ld,"
               "\"hit_context\":%ld,\"skipped\":%ld,\"mean_chain_tokens\":%.2f,\"mean_chain_bytes\":%.2f,"
               "\"lookahead\":%d,\"tokens_per_s\":%.2f,\"tokens_per_forward\":%.4f,\"baseline_tokens_per_s\":%.2f,"
               "\"speedup\":%.4f,\"identical\":%ld",
               n, e->correct, acc, e->no_answer, e->hit_ctx, e->skipped, mean_tok, mean_bytes, K, rate_k, tpf, rate_1,
               speedup, identical);
        answers_tree_report(a, e);
        printf("}\n");
    } else {
        printf("problems       %ld (%ld skipped: prompt longer than the context)\n", n, e->skipped);
        printf("accuracy       %.1f%% (%ld right, %ld without a \"####\" answer, %ld stopped by the context)\n",
               100 * acc, e->correct, e->no_answer, e->hit_ctx);
        printf("chain length   %.1f tokens, %.1f bytes on average\n", mean_tok, mean_bytes);
        printf("lookahead %-4d %.1f tokens/s, %.2f tokens per forward pass\n", K, rate_k, tpf);
        if (K > 1) {
            printf("lookahead 1    %.1f tokens/s\n", rate_1);
            printf("speedup        %.2fx; greedy outputs identical for %ld of %ld problems\n", speedup, identical, n);
        }
        answers_tree_report(a, e);
    }
    if (identical == n && identical_t == n) return 0;
    if (identical != n) cli_error("eval", "lookahead %d changed the greedy output of %ld problems", K, n - identical);
    else
        cli_error("eval", "the tree of %d nodes changed the greedy output of %ld problems", e->tr.t.n, n - identical_t);
    return EXIT_FAIL;
}

int cmd_eval_answers(int argc, char **argv) {
    AnswersArgs a;
    int rc = answers_parse(argc, argv, &a);
    if (rc || a.help) return rc;
    Answers e = {0};
    rc = answers_open(&a, &e);
    if (rc == 0) rc = answers_run(&a, &e);
    if (rc == 0) rc = answers_report(&a, &e);
    free(e.prompt), free(e.out_k), free(e.out_1), free(e.out_t), free(e.text);
    ds_problems_free(e.probs, e.n_probs);
    cli_close_model(&e.cm);
    return rc;
}
