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
    "                [--samples K [--temperature T] [--top-p P] [--seed S] [--plot FILE]]\n"
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
    "voting (self-consistency: the majority answer of several sampled chains):\n"
    "  --samples K         sample K chains per problem (exact speculative sampling at the\n"
    "                      lookahead) instead of one greedy chain; the answer is the majority of\n"
    "                      their answers (chains without one do not vote; a tie goes to the\n"
    "                      answer that reached the count first). Reports majority@k and pass@k\n"
    "                      for k = 1, 2, 4, ..., K from the same samples, with the wall seconds\n"
    "                      per problem at the lookahead and at lookahead 1\n"
    "  --temperature T     sampling temperature (default 0.7)\n"
    "  --top-k N           sample among the N most likely tokens (default 0: all)\n"
    "  --top-p P           sample among the smallest set of probability P (default 1: all)\n"
    "  --seed S            seed of the samples (default 1); sample s of problem i has its own\n"
    "                      stream, so a run is reproducible and --limit keeps the samples\n"
    "  --baseline N        time lookahead 1 on the first N problems (default 4), the same samples\n"
    "                      drawn again head 1 alone; its time per token scales the curve\n"
    "  --plot FILE         draw majority@k against seconds per problem at lookahead 1 and at the\n"
    "                      lookahead (FILE.png or FILE.svg; needs gnuplot)\n"
    "  --json              print one JSON object: problems, correct, accuracy, no_answer,\n"
    "                      hit_context, skipped, mean_chain_tokens, mean_chain_bytes,\n"
    "                      lookahead, tokens_per_s, tokens_per_forward, baseline_tokens_per_s,\n"
    "                      speedup, identical, tree_nodes (0: no tree) and with a tree\n"
    "                      tree_tokens_per_s, tree_tokens_per_forward, tree_rows_per_forward,\n"
    "                      tree_speedup (against lookahead 1), tree_speedup_vs_chain,\n"
    "                      tree_identical. With --samples: problems, samples, lookahead,\n"
    "                      temperature, top_k, top_p, seed, curve: [{k, majority_accuracy,\n"
    "                      pass_at_k, seconds_per_problem, baseline_seconds_per_problem}],\n"
    "                      mean_chain_tokens, no_answer_rate, tokens_per_forward, speedup,\n"
    "                      baseline_problems\n";

typedef struct {
    const char *model_path, *precision, *task;
    CliData data;
    int limit, lookahead, max_tokens, threads, json, verbose, help, difficulty;
    int val_frac_given, difficulty_given;
    double val_frac;
    CliTreeArgs tree;
    MtpPrecision prec;
    int samples, top_k, baseline; /* voting (--samples K > 0) */
    float temperature, top_p;
    uint64_t seed;
    const char *plot;
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
    /* voting: per problem decoded (done_n of them) and sample, its answer ("" for none) and seconds */
    char (*votes)[64];
    const char **vote_ptr;           /* votes as strings, for ds_vote_* */
    double *vote_s;
    int *vote_prob;                  /* the problem index of each row of votes */
    Timing base_k, base_1;           /* the baseline problems' samples at the lookahead and at 1 */
    long base_n;
} Answers;

static int answers_parse(int argc, char **argv, AnswersArgs *a) {
    *a = (AnswersArgs){.precision = "fp32", .val_frac = 0.1, .tree = CLI_TREE_ARGS_DEFAULT, .temperature = 0.7f,
                       .top_p = 1.0f, .seed = 1, .baseline = 4};
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
                     {"--samples", OPT_INT, &a->samples, 1, 1 << 16, 0},
                     {"--temperature", OPT_FLOAT, &a->temperature, 1e-3, 100, 0},
                     {"--top-k", OPT_INT, &a->top_k, 0, 1 << 30, 0},
                     {"--top-p", OPT_FLOAT, &a->top_p, 1e-6, 1, 0},
                     {"--seed", OPT_U64, &a->seed, 0, 0, 0},
                     {"--baseline", OPT_INT, &a->baseline, 0, 1e9, 0},
                     {"--plot", OPT_STR, &a->plot, 0, 0, 0},
                     {0}};
    if (cli_parse("eval", argc, argv, 2, opts, NULL, &a->help)) return EXIT_USAGE;
    if (a->help) return fputs(ANSWERS_HELP, stdout), 0;
    static const char *const voting[] = {"--temperature", "--top-k", "--top-p", "--seed", "--baseline", "--plot"};
    for (size_t i = 0; i < sizeof voting / sizeof *voting && !a->samples; i++)
        if (cli_opt(opts, voting[i])->given) {
            cli_error("eval", "%s applies to voting: give --samples K too", voting[i]);
            return EXIT_USAGE;
        }
    if (a->samples && cli_opt(opts, "--tree")->given) {
        cli_error("eval", "--tree applies to greedy decoding; --samples samples chains");
        return EXIT_USAGE;
    }
    if (a->samples) a->tree.nodes = 0; /* chains: no tree to plan or time */
    if (a->plot && cli_plot_check("eval", a->plot)) return EXIT_USAGE;
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

/* Decoding of one prompt as how asks (its lookahead, tree, draft_min_p; sampled when it has an
 * rng, else greedy); returns the tokens generated (into out), and their time; -1 with s->err for a
 * request the engine refuses. */
static int generate(DecodeState *s, const int32_t *prompt, int n, int max_new, DecodeRequest how, int32_t *out,
                    Timing *t, int *hit_context) {
    decode_truncate(s, 0);
    DecodeStats st;
    double t0 = mtp_now();
    how.prompt = prompt, how.n_prompt = n, how.max_new = max_new, how.eos = DS_EOS;
    int got = how.rng ? decode_sample(s, &how, out, &st) : decode_greedy(s, &how, out, &st);
    if (got < 0) return -1;
    t->seconds += mtp_now() - t0;
    t->tokens += got;
    t->forwards += st.forwards; /* after the prompt's pass, as mtp bench counts them */
    t->rows += st.rows;
    if (hit_context) *hit_context = st.hit_context;
    return got;
}

/* The answer of a chain (got tokens in out_k) into answer ("" when it has none); its bytes. */
static size_t chain_answer(Answers *e, int got, char answer[64]) {
    size_t len = mtp_decode(e->cm.m.tokenizer, e->text, (size_t)e->max_new * DS_BPE_MAX_CHUNK, e->out_k, (size_t)got);
    e->text[len] = 0;
    if (ds_answer_extract((const char *)e->text, len, answer, 64) < 0) answer[0] = '\0';
    return len;
}

/* Problem i's chain (got tokens in out_k): its answer against the reference, into the tallies. */
static void answers_score(const AnswersArgs *a, Answers *e, int i, int got, int hit, int tty) {
    const DsProblem *p = &e->probs[i];
    char answer[64];
    const size_t len = chain_answer(e, got, answer);
    const int has = answer[0] != '\0';
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

/* ---- voting ------------------------------------------------------------------------------------ */

/* The draws of sample k of problem i: a stream of its own, so that a run is reproducible and a
   sample does not depend on the problems or samples before it (--limit keeps them). */
static void sample_rng(MtpRng *r, uint64_t seed, int i, int k) {
    mtp_rng_seed(r, seed ^ (uint64_t)(i + 1) * 0x9E3779B97F4A7C15ull ^ (uint64_t)(k + 1) * 0xC2B2AE3D27D4EB4Full);
}

/* Room for every problem's votes and their times. */
static int votes_alloc(const AnswersArgs *a, Answers *e) {
    const size_t cells = (size_t)e->n_probs * (size_t)a->samples;
    if (cells > ((size_t)1 << 26)) {
        cli_error("eval", "%d problems x %d samples is too many to keep (at most 2^26); use --limit", e->n_probs,
                  a->samples);
        return EXIT_USAGE;
    }
    e->votes = calloc(cells ? cells : 1, sizeof *e->votes);
    e->vote_s = calloc(cells ? cells : 1, sizeof *e->vote_s);
    e->vote_prob = calloc((size_t)e->n_probs + 1, sizeof *e->vote_prob);
    e->vote_ptr = malloc((cells ? cells : 1) * sizeof *e->vote_ptr);
    if (!e->votes || !e->vote_s || !e->vote_prob || !e->vote_ptr) return cli_error("eval", "out of memory"), EXIT_FAIL;
    for (size_t c = 0; c < cells; c++) e->vote_ptr[c] = e->votes[c];
    return 0;
}

/* Problem i (its prompt, n tokens, in e->prompt): --samples chains at the lookahead, each one's
 * answer and time; on the first --baseline problems the same draws again with head 1 alone. */
static int vote_problem(const AnswersArgs *a, Answers *e, int i, int n, DecodeState *sk, DecodeState *s1, int tty) {
    const int K = a->samples, row = (int)e->done_n, base = a->lookahead > 1 && row < a->baseline;
    DecodeRequest how = {.lookahead = a->lookahead, .draft_min_p = a->tree.draft_min_p,
                         .sampling = {a->temperature, a->top_k, a->top_p}};
    MtpRng rng;
    how.rng = &rng;
    for (int k = 0; k < K; k++) {
        Timing t = {0};
        int hit = 0;
        sample_rng(&rng, a->seed, i, k);
        const int got = generate(sk, e->prompt, n, e->max_new, how, e->out_k, &t, &hit);
        if (got < 0) return cli_error("eval", "%s", sk->err), EXIT_FAIL;
        e->tk.seconds += t.seconds, e->tk.tokens += t.tokens, e->tk.forwards += t.forwards, e->tk.rows += t.rows;
        e->vote_s[(size_t)row * K + k] = t.seconds;
        char *answer = e->votes[(size_t)row * K + k];
        e->chain_bytes += (long)chain_answer(e, got, answer);
        e->no_answer += !answer[0], e->hit_ctx += hit;
        if (a->verbose)
            fprintf(stderr, "%sproblem %d sample %d: %s (%d tokens%s)\n", tty ? "\r\033[K" : "", i + 1, k + 1,
                    answer[0] ? answer : "no answer", got, hit ? ", context full" : "");
        if (!base) continue;
        e->base_k.seconds += t.seconds, e->base_k.tokens += t.tokens;
        DecodeRequest one = how;
        one.lookahead = 1, one.draft_min_p = 0;
        sample_rng(&rng, a->seed, i, k);
        if (generate(s1, e->prompt, n, e->max_new, one, e->out_1, &e->base_1, NULL) < 0)
            return cli_error("eval", "%s", s1->err), EXIT_FAIL;
    }
    const char *const *answers = e->vote_ptr + (size_t)row * K;
    const int m = ds_vote_majority(answers, K);
    const int ok = m >= 0 && strcmp(answers[m], e->probs[i].answer) == 0;
    if (a->verbose)
        fprintf(stderr, "problem %d: %s (reference %s, majority %s)\n", i + 1, ok ? "right" : "wrong",
                e->probs[i].answer, m >= 0 ? answers[m] : "none");
    e->correct += ok, e->vote_prob[row] = i, e->base_n += base, e->done_n++;
    return 0;
}

/* Every problem decoded at the lookahead, at lookahead 1 and with the tree, alternately (or, with
 * --samples, sampled): all of the command's decoding is here. */
static int answers_run(const AnswersArgs *a, Answers *e) {
    const int K = a->lookahead, ctx = e->cm.m.cfg.trunk.ctx;
    DecodeState sk = {0}, s1 = {0}, st = {0};
    int rc = answers_engines(a, e, &sk, &s1, &st);
    if (rc == 0 && a->samples) rc = votes_alloc(a, e);
    const char *src = e->dopt.n_sources == 1 ? e->dopt.sources[0].spec : "the data";
    if (!a->json && rc == 0 && a->samples)
        fprintf(stderr, "mtp eval: %d held-out problem%s from %s, %d samples each (temperature %g, top-k %d, top-p %g) "
                "at lookahead %d, %d thread%s\n", e->n_probs, e->n_probs == 1 ? "" : "s", src, a->samples,
                a->temperature, a->top_k, a->top_p, K, mtp_core_threads(), mtp_core_threads() == 1 ? "" : "s");
    else if (!a->json && rc == 0) {
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
        if (a->samples) rc = vote_problem(a, e, i, n, &sk, &s1, tty);
        else answers_problem(a, e, i, n, &sk, &s1, &st, tty);
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

/* ---- the voting report ------------------------------------------------------------------------ */

#define VOTE_MAX_POINTS 24

typedef struct {
    int n, k[VOTE_MAX_POINTS];
    double majority[VOTE_MAX_POINTS], pass[VOTE_MAX_POINTS], seconds[VOTE_MAX_POINTS], base[VOTE_MAX_POINTS];
    double speedup; /* lookahead 1's time per token over the lookahead's, on the baseline problems */
} VoteCurve;

/* k = 1, 2, 4, ..., and K; majority@k and pass@k; seconds per problem for the first k samples, and
 * at lookahead 1: the same times scaled by the time per token measured on the baseline problems
 * (the two samplers draw from one distribution, so their chains have the same lengths on average). */
static void vote_curve(const AnswersArgs *a, const Answers *e, VoteCurve *c) {
    const int K = a->samples, n = (int)e->done_n;
    c->n = 0;
    for (int k = 1; k < K && c->n < VOTE_MAX_POINTS - 1; k *= 2) c->k[c->n++] = k;
    c->k[c->n++] = K;
    const char **refs = malloc((size_t)(n ? n : 1) * sizeof *refs);
    if (!refs) return (void)(c->n = 0);
    for (int r = 0; r < n; r++) refs[r] = e->probs[e->vote_prob[r]].answer;
    ds_vote_curve(c->majority, c->pass, e->vote_ptr, refs, n, K, c->k, c->n);
    free(refs);
    const double per_tok_k = e->base_k.tokens ? e->base_k.seconds / (double)e->base_k.tokens : 0;
    const double per_tok_1 = e->base_1.tokens ? e->base_1.seconds / (double)e->base_1.tokens : 0;
    c->speedup = a->lookahead == 1 ? 1.0 : per_tok_k > 0 && per_tok_1 > 0 ? per_tok_1 / per_tok_k : 0;
    for (int j = 0; j < c->n; j++) {
        double sum = 0;
        for (int r = 0; r < n; r++)
            for (int k = 0; k < c->k[j]; k++) sum += e->vote_s[(size_t)r * K + k];
        c->seconds[j] = n ? sum / n : 0;
        c->base[j] = c->seconds[j] * c->speedup;
    }
}

static int vote_plot(const AnswersArgs *a, const VoteCurve *c) {
    double acc[VOTE_MAX_POINTS];
    for (int j = 0; j < c->n; j++) acc[j] = 100 * c->majority[j];
    char title[600], spec[64];
    snprintf(spec, sizeof spec, "lookahead %d (speculative sampling)", a->lookahead);
    snprintf(title, sizeof title, "%s: majority vote of k samples (temperature %g)", a->model_path, a->temperature);
    const CliSeries series[2] = {{"lookahead 1 (head 1 alone)", c->base, acc, c->k, c->n},
                                 {spec, c->seconds, acc, c->k, c->n}};
    const CliFigure fig = {.title = title, .xlabel = "wall seconds per problem", .ylabel = "accuracy (%)",
                           .label_name = "k", .logx = 1, .series = series, .n_series = a->lookahead > 1 ? 2 : 1};
    char err[1024];
    if (c->n == 0 || c->seconds[0] <= 0 || (a->lookahead > 1 && c->base[0] <= 0)) {
        cli_error("eval", "--plot %s: no times to draw", a->plot);
        return EXIT_FAIL;
    }
    if (cli_plot(a->plot, &fig, err, sizeof err)) return cli_error("eval", "%s", err), EXIT_FAIL;
    return 0;
}

static void vote_json(const AnswersArgs *a, const Answers *e, const VoteCurve *c, double mean_tok, double tpf) {
    printf("{\"task\":\"answers\",\"problems\":%ld,\"samples\":%d,\"lookahead\":%d,\"temperature\":%g,"
           "\"top_k\":%d,\"top_p\":%g,\"seed\":%llu,\"correct\":%ld,\"accuracy\":%.6f,\"curve\":[",
           e->done_n, a->samples, a->lookahead, a->temperature, a->top_k, a->top_p, (unsigned long long)a->seed,
           e->correct, c->n ? c->majority[c->n - 1] : 0.0);
    for (int j = 0; j < c->n; j++)
        printf("%s{\"k\":%d,\"majority_accuracy\":%.6f,\"pass_at_k\":%.6f,\"seconds_per_problem\":%.6f,"
               "\"baseline_seconds_per_problem\":%.6f}",
               j ? "," : "", c->k[j], c->majority[j], c->pass[j], c->seconds[j], c->base[j]);
    const double cells = (double)e->done_n * a->samples;
    printf("],\"mean_chain_tokens\":%.2f,\"no_answer_rate\":%.6f,\"hit_context\":%ld,\"skipped\":%ld,"
           "\"tokens_per_forward\":%.4f,\"speedup\":%.4f,\"baseline_problems\":%ld}\n",
           mean_tok, cells > 0 ? e->no_answer / cells : 0, e->hit_ctx, e->skipped, tpf, c->speedup, e->base_n);
}

static int vote_report(const AnswersArgs *a, const Answers *e) {
    VoteCurve c;
    vote_curve(a, e, &c);
    const double cells = (double)e->done_n * a->samples;
    const double mean_tok = cells > 0 ? e->tk.tokens / cells : 0;
    const double tpf = e->tk.forwards ? (double)e->tk.tokens / (double)e->tk.forwards : 0;
    if (a->json) vote_json(a, e, &c, mean_tok, tpf);
    else {
        printf("problems       %ld (%ld skipped: prompt longer than the context), %d samples each\n", e->done_n,
               e->skipped, a->samples);
        printf("     k  majority@k   pass@k   s/problem at lookahead %d   at lookahead 1\n", a->lookahead);
        for (int j = 0; j < c.n; j++)
            printf("%6d  %9.1f%%  %6.1f%%  %26.3f  %15.3f\n", c.k[j], 100 * c.majority[j], 100 * c.pass[j],
                   c.seconds[j], c.base[j]);
        printf("chains         %.1f tokens on average, %.2f tokens per forward pass, %.1f%% without an answer\n",
               mean_tok, tpf, cells > 0 ? 100 * e->no_answer / cells : 0);
        if (a->lookahead > 1)
            printf("speedup        %.2fx against lookahead 1 (time per token, %ld problems x %d samples each way)\n",
                   c.speedup, e->base_n, a->samples);
    }
    return a->plot ? vote_plot(a, &c) : 0;
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
    if (rc == 0) rc = a.samples ? vote_report(&a, &e) : answers_report(&a, &e);
    free(e.prompt), free(e.out_k), free(e.out_1), free(e.out_t), free(e.text);
    free(e.votes), free(e.vote_ptr), free(e.vote_s), free(e.vote_prob);
    ds_problems_free(e.probs, e.n_probs);
    cli_close_model(&e.cm);
    return rc;
}
