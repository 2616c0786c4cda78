/* cli_answers.c - `mtp eval --task answers`: generate the chain of thought of held-out problems,
 * check the final answer, and time decoding at a lookahead against lookahead 1. */
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
    "and at lookahead 1 (plain decoding), alternately, for the speedup; greedy outputs must be\n"
    "identical, and the count of identical ones is reported.\n"
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
    "  --max-tokens N      stop a chain after N tokens (default: until the context is full)\n"
    "  --threads P         threads (default: all cores)\n"
    "  --precision P       fp32 (default) or bf16 matrix products\n"
    "  --verbose           a line per problem: its reference and generated answers\n"
    "  --json              print one JSON object: problems, correct, accuracy, no_answer,\n"
    "                      hit_context, skipped, mean_chain_tokens, mean_chain_bytes,\n"
    "                      lookahead, tokens_per_s, tokens_per_forward, baseline_tokens_per_s,\n"
    "                      speedup, identical\n";

typedef struct {
    const char *model_path, *precision, *task;
    CliData data;
    int limit, lookahead, max_tokens, threads, json, verbose, help, difficulty;
    int val_frac_given, difficulty_given;
    float val_frac;
    MtpPrecision prec;
} AnswersArgs;

typedef struct {
    long tokens, forwards, bytes;
    double seconds;
} Timing;

typedef struct {
    CliModel cm;
    DsOptions dopt; /* the problems' data */
    DsProblem *probs;
    int n_probs, max_new;
    int32_t *prompt, *out_k, *out_1; /* BOS + a question; the chains at the lookahead and at 1 */
    uint8_t *text;                   /* a chain's bytes */
    Timing tk, t1;                   /* at the lookahead, at lookahead 1 */
    long correct, no_answer, hit_ctx, skipped, identical, done_n, chain_bytes;
} Answers;

static int answers_parse(int argc, char **argv, AnswersArgs *a) {
    *a = (AnswersArgs){.precision = "fp32", .val_frac = 0.1f};
    CliOpt opts[] = {{"--model", OPT_STR, &a->model_path, 0, 0, 0},
                     {"--task", OPT_STR, &a->task, 0, 0, 0},
                     CLI_DATA_OPTS(&a->data),
                     {"--val-frac", OPT_FLOAT, &a->val_frac, 1e-6, 0.999999, 0},
                     {"--limit", OPT_INT, &a->limit, 0, 1e9, 0},
                     {"--difficulty", OPT_INT, &a->difficulty, 0, DS_ARITH_MAX_DIFFICULTY, 0},
                     {"--lookahead", OPT_INT, &a->lookahead, 1, HEADS_MAX, 0},
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

/* The model (a->lookahead resolved against its heads), the problems and room to decode them. */
static int answers_open(AnswersArgs *a, Answers *e) {
    const CliOpen how = {.path = a->model_path, .compute = 1, .threads = a->threads, .prec = a->prec};
    int rc = cli_open_model("eval", &how, &e->cm);
    if (rc || (rc = cli_lookahead("eval", &a->lookahead, e->cm.m.cfg.heads.n)) ||
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
    e->text = malloc((size_t)e->max_new * DS_BPE_MAX_CHUNK + 1);
    if (!e->prompt || !e->out_k || !e->out_1 || !e->text) {
        cli_error("eval", "out of memory");
        return EXIT_FAIL;
    }
    return 0;
}

/* Greedy decoding of one prompt; returns the tokens generated (into out), and their time. */
static int generate(DecodeState *s, const int32_t *prompt, int n, int max_new, int K, int32_t *out, Timing *t,
                    int *hit_context) {
    decode_truncate(s, 0);
    DecodeStats st;
    double t0 = mtp_now();
    const DecodeRequest req = {.prompt = prompt, .n_prompt = n, .max_new = max_new, .lookahead = K, .eos = DS_EOS};
    int got = decode_greedy(s, &req, out, &st);
    t->seconds += mtp_now() - t0;
    t->tokens += got;
    t->forwards += st.forwards; /* after the prompt's pass, as mtp bench counts them */
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

/* Every problem decoded at the lookahead and at lookahead 1, alternately: all of the command's
 * decoding is here. */
static int answers_run(const AnswersArgs *a, Answers *e) {
    const int K = a->lookahead, ctx = e->cm.m.cfg.trunk.ctx;
    DecodeState sk = {0}, s1 = {0};
    char err[1024];
    const DecodeModel dm = mtp_decode_model(&e->cm.m);
    if (decode_build(&sk, dm, K, K, err, sizeof err) || (K > 1 && decode_build(&s1, dm, 1, 1, err, sizeof err))) {
        cli_error("eval", "%s", err);
        decode_free(&sk);
        decode_free(&s1);
        return EXIT_FAIL;
    }
    const char *src = e->dopt.n_sources == 1 ? e->dopt.sources[0].spec : "the data";
    if (!a->json)
        fprintf(stderr, "mtp eval: %d held-out problem%s from %s, lookahead %d%s, %d thread%s\n", e->n_probs,
                e->n_probs == 1 ? "" : "s", src, K, K > 1 ? " and 1" : "", mtp_core_threads(),
                mtp_core_threads() == 1 ? "" : "s");
    const int tty = isatty(STDERR_FILENO) && !a->json;
    double last_note = mtp_now();
    for (int i = 0; i < e->n_probs; i++) {
        const DsProblem *p = &e->probs[i];
        e->prompt[0] = DS_BOS;
        int n = 1 + (int)mtp_encode(e->cm.m.tokenizer, e->prompt + 1, (const uint8_t *)p->text, p->prompt_len);
        if (n >= ctx) { /* no room to answer */
            e->skipped++;
            continue;
        }
        int hit = 0; /* decoding stops by itself when the context is full, and says so */
        int got = generate(&sk, e->prompt, n, e->max_new, K, e->out_k, &e->tk, &hit);
        if (K > 1) {
            int got1 = generate(&s1, e->prompt, n, e->max_new, 1, e->out_1, &e->t1, NULL);
            e->identical += got1 == got && memcmp(e->out_1, e->out_k, (size_t)got * sizeof *e->out_k) == 0;
        }
        answers_score(a, e, i, got, hit, tty);
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
    return 0;
}

/* Accuracy and speed; EXIT_FAIL when the lookahead changed a greedy output. */
static int answers_report(const AnswersArgs *a, const Answers *e) {
    const int K = a->lookahead;
    const long n = e->done_n, identical = K == 1 ? n : e->identical;
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
               "\"speedup\":%.4f,\"identical\":%ld}\n",
               n, e->correct, acc, e->no_answer, e->hit_ctx, e->skipped, mean_tok, mean_bytes, K, rate_k, tpf, rate_1,
               speedup, identical);
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
    }
    if (identical == n) return 0;
    cli_error("eval", "lookahead %d changed the greedy output of %ld problems", K, n - identical);
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
    free(e.prompt), free(e.out_k), free(e.out_1), free(e.text);
    ds_problems_free(e.probs, e.n_probs);
    cli_close_model(&e.cm);
    return rc;
}
