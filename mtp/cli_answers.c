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
    long tokens, forwards, bytes;
    double seconds;
} Timing;

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

int cmd_eval_answers(int argc, char **argv) {
    const char *model_path = NULL, *precision = "fp32", *task = NULL;
    CliData data = {0};
    int limit = 0, lookahead = 0, max_tokens = 0, threads = 0, json = 0, verbose = 0, help = 0, difficulty = 0;
    float val_frac = 0.1f;
    CliOpt opts[] = {{"--model", OPT_STR, &model_path, 0, 0, 0},
                     {"--task", OPT_STR, &task, 0, 0, 0},
                     CLI_DATA_OPTS(&data),
                     {"--val-frac", OPT_FLOAT, &val_frac, 1e-6, 0.999999, 0},
                     {"--limit", OPT_INT, &limit, 0, 1e9, 0},
                     {"--difficulty", OPT_INT, &difficulty, 0, DS_ARITH_MAX_DIFFICULTY, 0},
                     {"--lookahead", OPT_INT, &lookahead, 1, HEADS_MAX, 0},
                     {"--max-tokens", OPT_INT, &max_tokens, 1, 1 << 24, 0},
                     {"--threads", OPT_INT, &threads, 1, 4096, 0},
                     {"--precision", OPT_STR, &precision, 0, 0, 0},
                     {"--verbose", OPT_FLAG, &verbose, 0, 0, 0},
                     {"--json", OPT_FLAG, &json, 0, 0, 0},
                     {0}};
    if (cli_parse("eval", argc, argv, 2, opts, NULL, &help)) return EXIT_USAGE;
    if (help) return fputs(ANSWERS_HELP, stdout), 0;
    if (!model_path) {
        cli_error("eval", "--model FILE is required (see mtp eval --task answers --help)");
        return EXIT_USAGE;
    }
    MtpPrecision prec;
    if (cli_precision("eval", precision, &prec)) return EXIT_USAGE;
    char err[1024];
    MtpModel m;
    MtpCheckpointExtra x;
    if (mtp_checkpoint_load(model_path, &m, &x, err, sizeof err)) {
        cli_error("eval", "%s", err);
        return EXIT_FAIL;
    }
    mtp_checkpoint_extra_free(&x); /* only x.run is used below, and it stays */
    const int ctx = m.cfg.trunk.ctx, n_heads = m.cfg.heads.n;
    int rc = EXIT_FAIL, n_probs = 0;
    DsProblem *probs = NULL;
    DecodeState sk = {0}, s1 = {0};
    int32_t *prompt = NULL, *out_k = NULL, *out_1 = NULL;
    uint8_t *text = NULL;
    if (!lookahead) lookahead = n_heads;
    if (lookahead > n_heads) {
        cli_error("eval", "--lookahead %d is more than the model's %d heads", lookahead, n_heads);
        rc = EXIT_USAGE;
        goto done;
    }
    DsOptions dopt;
    if (cli_data_apply("eval", &data, &x.run)) {
        rc = EXIT_USAGE;
        goto done;
    }
    if (!mtp_run_data_options(&x.run, &dopt)) {
        cli_error("eval", "--data is required: the checkpoint does not record its training data");
        rc = EXIT_USAGE;
        goto done;
    }
    if (cli_opt(opts, "--val-frac")->given) dopt.val_frac = val_frac;
    if (cli_opt(opts, "--difficulty")->given) dopt.difficulty = difficulty;
    if (ds_heldout_problems(&probs, &n_probs, &dopt, limit, err, sizeof err)) {
        cli_error("eval", "%s", err);
        goto done;
    }
    const int max_new = max_tokens ? max_tokens : ctx;
    size_t max_prompt = 1;
    for (int i = 0; i < n_probs; i++)
        if (probs[i].prompt_len + 1 > max_prompt) max_prompt = probs[i].prompt_len + 1;
    prompt = malloc(max_prompt * sizeof *prompt);
    out_k = malloc((size_t)max_new * sizeof *out_k);
    out_1 = malloc((size_t)max_new * sizeof *out_1);
    text = malloc((size_t)max_new * DS_BPE_MAX_CHUNK + 1);
    if (!prompt || !out_k || !out_1 || !text) {
        cli_error("eval", "out of memory");
        goto done;
    }
    if (mtp_core_init(threads, prec, err, sizeof err) || decode_build(&sk, mtp_decode_model(&m), lookahead, lookahead, err, sizeof err) ||
        (lookahead > 1 && decode_build(&s1, mtp_decode_model(&m), 1, 1, err, sizeof err))) {
        cli_error("eval", "%s", err);
        goto done;
    }
    const char *src = dopt.n_sources == 1 ? dopt.sources[0].spec : "the data";
    if (!json)
        fprintf(stderr, "mtp eval: %d held-out problem%s from %s, lookahead %d%s, %d thread%s\n", n_probs,
                n_probs == 1 ? "" : "s", src, lookahead, lookahead > 1 ? " and 1" : "", mtp_core_threads(),
                mtp_core_threads() == 1 ? "" : "s");
    const int tty = isatty(STDERR_FILENO) && !json;
    Timing tk = {0}, t1 = {0};
    long correct = 0, no_answer = 0, hit_ctx = 0, skipped = 0, identical = 0, done_n = 0, chain_bytes = 0;
    double last_note = mtp_now();
    for (int i = 0; i < n_probs; i++) {
        const DsProblem *p = &probs[i];
        prompt[0] = DS_BOS;
        int n = 1 + (int)mtp_encode(m.tokenizer, prompt + 1, (const uint8_t *)p->text, p->prompt_len);
        if (n >= ctx) { /* no room to answer */
            skipped++;
            continue;
        }
        int hit = 0; /* decoding stops by itself when the context is full, and says so */
        int got = generate(&sk, prompt, n, max_new, lookahead, out_k, &tk, &hit);
        if (lookahead > 1) {
            int got1 = generate(&s1, prompt, n, max_new, 1, out_1, &t1, NULL);
            identical += got1 == got && memcmp(out_1, out_k, (size_t)got * sizeof *out_k) == 0;
        }
        size_t len = mtp_decode(m.tokenizer, text, (size_t)max_new * DS_BPE_MAX_CHUNK, out_k, (size_t)got);
        text[len] = 0;
        char answer[64];
        int has = ds_answer_extract((const char *)text, len, answer, sizeof answer) >= 0;
        int ok = has && strcmp(answer, p->answer) == 0;
        correct += ok, no_answer += !has, hit_ctx += hit, done_n++, chain_bytes += (long)len;
        tk.bytes += (long)len;
        if (verbose)
            fprintf(stderr, "%sproblem %d: %s (reference %s, generated %s, %d tokens%s)\n", tty ? "\r\033[K" : "",
                    i + 1, ok ? "right" : "wrong", p->answer, has ? answer : "no answer", got,
                    hit ? ", context full" : "");
        double now = mtp_now();
        if (!json && !verbose && (now - last_note >= (tty ? 0.2 : 10.0))) {
            fprintf(stderr, "%s%d/%d problems, %ld right%s", tty ? "\r\033[K" : "", i + 1, n_probs, correct,
                    tty ? "" : "\n");
            last_note = now;
        }
    }
    if (tty && !verbose) fputs("\r\033[K", stderr);
    const double acc = done_n ? (double)correct / (double)done_n : 0;
    const double rate_k = tk.seconds > 0 ? tk.tokens / tk.seconds : 0;
    const double rate_1 = lookahead > 1 ? (t1.seconds > 0 ? t1.tokens / t1.seconds : 0) : rate_k;
    const double speedup = lookahead > 1 ? (tk.seconds > 0 ? t1.seconds / tk.seconds : 0) : 1.0;
    const double tpf = tk.forwards ? (double)tk.tokens / (double)tk.forwards : 0;
    if (lookahead == 1) identical = done_n;
    const double mean_tok = done_n ? (double)tk.tokens / (double)done_n : 0;
    const double mean_bytes = done_n ? (double)chain_bytes / (double)done_n : 0;
    if (json) {
        printf("{\"task\":\"answers\",\"problems\":%ld,\"correct\":%ld,\"accuracy\":%.6f,\"no_answer\":%ld,"
               "\"hit_context\":%ld,\"skipped\":%ld,\"mean_chain_tokens\":%.2f,\"mean_chain_bytes\":%.2f,"
               "\"lookahead\":%d,\"tokens_per_s\":%.2f,\"tokens_per_forward\":%.4f,\"baseline_tokens_per_s\":%.2f,"
               "\"speedup\":%.4f,\"identical\":%ld}\n",
               done_n, correct, acc, no_answer, hit_ctx, skipped, mean_tok, mean_bytes, lookahead, rate_k, tpf,
               rate_1, speedup, identical);
    } else {
        printf("problems       %ld (%ld skipped: prompt longer than the context)\n", done_n, skipped);
        printf("accuracy       %.1f%% (%ld right, %ld without a \"####\" answer, %ld stopped by the context)\n",
               100 * acc, correct, no_answer, hit_ctx);
        printf("chain length   %.1f tokens, %.1f bytes on average\n", mean_tok, mean_bytes);
        printf("lookahead %-4d %.1f tokens/s, %.2f tokens per forward pass\n", lookahead, rate_k, tpf);
        if (lookahead > 1) {
            printf("lookahead 1    %.1f tokens/s\n", rate_1);
            printf("speedup        %.2fx; greedy outputs identical for %ld of %ld problems\n", speedup, identical,
                   done_n);
        }
    }
    rc = identical == done_n ? 0 : EXIT_FAIL;
    if (rc) cli_error("eval", "lookahead %d changed the greedy output of %ld problems", lookahead, done_n - identical);
done:
    decode_free(&sk);
    decode_free(&s1);
    free(prompt), free(out_k), free(out_1), free(text);
    ds_problems_free(probs, n_probs);
    mtp_model_free(&m);
    mtp_core_shutdown();
    return rc;
}
