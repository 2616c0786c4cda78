/* cli_star.c - `mtp star`: self-training on verified chains of thought (STaR, Zelikman et al. 2022;
 * rejection-sampling fine-tuning, Yuan et al. 2023). Each round samples chains for training
 * problems, keeps the distinct ones whose answer is right, fine-tunes every head on them with the
 * trainer of mtp train, measures held-out accuracy (greedy and majority of the samples) and writes
 * PREFIX.roundN.mtp and a line of PREFIX.jsonl. Held-out problems never enter training: their
 * questions are dropped from the training problems. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "decode/decode.h"
#include "mtp/cli.h"

static const char *STAR_HELP =
    "usage: mtp star --model FILE --data builtin:arith|FILE.jsonl --rounds R --samples K\n"
    "                [--difficulty N] [--steps S] --out PREFIX [options]\n"
    "\n"
    "Self-training on the model's own verified chains of thought. Each round:\n"
    "  1. samples K chains (exact speculative sampling at the lookahead) for each training\n"
    "     problem (builtin:arith's training stream, or a .jsonl file's training lines);\n"
    "  2. keeps the distinct chains whose final answer is right;\n"
    "  3. fine-tunes the model on them (every head, the trainer of mtp train) for S steps;\n"
    "  4. measures held-out accuracy: greedy, and the majority of K samples;\n"
    "  5. writes PREFIX.roundN.mtp (atomically) and one line of PREFIX.jsonl.\n"
    "Round 0's line is the model as given. Held-out problems never enter training: a training\n"
    "problem with a held-out question is dropped. Run the same command again to resume after\n"
    "the last round written.\n"
    "\n"
    "  --model FILE        the starting checkpoint (required)\n"
    "  --data SPEC         builtin:arith or a .jsonl file of problems with \"####\" answers\n"
    "                      (default: the model's training data); --fields, --skip-bad-lines\n"
    "  --difficulty N      builtin:arith level 1..8, 0 = mixed 1..5 (default: as trained)\n"
    "  --rounds R          rounds (required)\n"
    "  --samples K         chains sampled per problem, and the votes of the held-out majority\n"
    "                      (required)\n"
    "  --out PREFIX        writes PREFIX.round1.mtp ... and PREFIX.jsonl (required)\n"
    "  --problems N        training problems (default 256)\n"
    "  --eval-limit N      held-out problems measured each round (default 100)\n"
    "  --steps S           fine-tuning steps per round (default 100)\n"
    "  --lr LR             fine-tuning learning rate, constant (default 1e-4); the AdamW moments\n"
    "                      of the checkpoint go on when it has them, else 10 warmup steps first\n"
    "  --batch B           rows per fine-tuning step (default 8)\n"
    "  --temperature T     sampling temperature (default 0.7); --top-p P (default 1)\n"
    "  --lookahead K       tokens drafted per pass when sampling (default: all heads)\n"
    "  --max-tokens N      stop a chain after N tokens (default: until the context is full)\n"
    "  --seed S            seed of the samples and of the fine-tuning (default 1)\n"
    "  --threads P         threads (default: all cores); --precision fp32 (default) or bf16\n"
    "  --reference         a control for measuring: fine-tune on every training problem's\n"
    "                      reference chain instead of sampled ones (supervised, same steps)\n"
    "\n"
    "PREFIX.jsonl: a line {\"type\":\"run\",...options} then per round {\"type\":\"round\",\"round\":N,\n"
    "\"problems\":P,\"solved\":S,\"new_solved\":N,\"chains_kept\":C,\"train_tokens\":T,\"steps\":S,\n"
    "\"loss\":L,\"heldout_problems\":H,\"greedy_accuracy\":G,\"majority_accuracy\":M,\"seconds\":s,\n"
    "\"solved_set\":HEX}; loss is head 1's mean over the round's fine-tuning steps.\n";

typedef struct {
    const char *model_path, *out, *precision;
    CliData data;
    int rounds, samples, difficulty, problems, eval_limit, steps, batch, lookahead, max_tokens, threads, help;
    int difficulty_given, reference;
    float temperature, top_p, lr;
    uint64_t seed;
    MtpPrecision prec;
} StarArgs;

typedef struct {
    int solved, new_solved, kept, steps;
    long train_tokens;
    double loss, greedy, majority, seconds;
} RoundResult;

typedef struct {
    CliModel cm;
    DsOptions dopt;
    DsProblem *train, *held;
    int n_train, n_held, dropped, max_new, first_round;
    unsigned char *solved_ever; /* per training problem: a right chain in an earlier round */
    unsigned char *solved_now;  /* ... in this round (logged, so that a resumed run knows them) */
    int32_t *prompt, *chains;   /* a prompt; K chains of max_new tokens */
    int *chain_len;
    uint8_t *texts;             /* the K chains' bytes, text_cap each (text_len[k] of them) */
    size_t *text_len;
    size_t text_cap;
    int32_t *ft;                /* the fine-tuning records, one after the other */
    size_t n_ft, cap_ft;
    MtpTrainer tr;              /* fine-tuning: built at the first round that trains, kept after */
    int have_tr;
    char log_path[4096 + 16];
} Star;

static int star_parse(int argc, char **argv, StarArgs *a) {
    *a = (StarArgs){.precision = "fp32", .problems = 256, .eval_limit = 100, .steps = 100, .batch = 8,
                    .temperature = 0.7f, .top_p = 1.0f, .lr = 1e-4f, .seed = 1};
    CliOpt opts[] = {{"--model", OPT_STR, &a->model_path, 0, 0, 0},
                     CLI_DATA_OPTS(&a->data),
                     {"--difficulty", OPT_INT, &a->difficulty, 0, DS_ARITH_MAX_DIFFICULTY, 0},
                     {"--rounds", OPT_INT, &a->rounds, 1, 1000, 0},
                     {"--samples", OPT_INT, &a->samples, 1, 1024, 0},
                     {"--out", OPT_STR, &a->out, 0, 0, 0},
                     {"--problems", OPT_INT, &a->problems, 1, 1 << 24, 0},
                     {"--eval-limit", OPT_INT, &a->eval_limit, 1, 1 << 24, 0},
                     {"--steps", OPT_INT, &a->steps, 0, 1 << 24, 0},
                     {"--lr", OPT_FLOAT, &a->lr, 0, 1, 0},
                     {"--batch", OPT_INT, &a->batch, 1, 4096, 0},
                     {"--temperature", OPT_FLOAT, &a->temperature, 1e-3, 100, 0},
                     {"--top-p", OPT_FLOAT, &a->top_p, 1e-6, 1, 0},
                     {"--lookahead", OPT_INT, &a->lookahead, 1, HEADS_MAX, 0},
                     {"--max-tokens", OPT_INT, &a->max_tokens, 1, 1 << 24, 0},
                     {"--seed", OPT_U64, &a->seed, 0, 0, 0},
                     {"--threads", OPT_INT, &a->threads, 1, 4096, 0},
                     {"--precision", OPT_STR, &a->precision, 0, 0, 0},
                     {"--reference", OPT_FLAG, &a->reference, 0, 0, 0},
                     {0}};
    if (cli_parse("star", argc, argv, 2, opts, NULL, &a->help)) return EXIT_USAGE;
    if (a->help) return fputs(STAR_HELP, stdout), 0;
    a->difficulty_given = cli_opt(opts, "--difficulty")->given;
    const char *missing = !a->model_path ? "--model FILE" : !a->rounds ? "--rounds R" : !a->samples ? "--samples K"
                                                                        : !a->out ? "--out PREFIX" : NULL;
    if (missing) {
        cli_error("star", "%s is required (see mtp star --help)", missing);
        return EXIT_USAGE;
    }
    return cli_precision("star", a->precision, &a->prec) ? EXIT_USAGE : 0;
}

static void round_path(char *buf, size_t cap, const char *prefix, int r) {
    snprintf(buf, cap, "%s.round%d.mtp", prefix, r);
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* The last round already written (0: none): the run resumes after it. */
static int last_round(const StarArgs *a) {
    char path[4096 + 32];
    int r = 0;
    for (;; r++) {
        round_path(path, sizeof path, a->out, r + 1);
        if (!file_exists(path)) return r;
    }
}

/* The training problems (without held-out questions) and the held-out ones, and room to decode. */
static int star_problems(const StarArgs *a, Star *s) {
    char err[1024];
    DsProblem *all_held = NULL;
    int n_all = 0;
    /* every held-out question, then enough training problems to keep --problems after dropping those */
    if (ds_heldout_problems(&all_held, &n_all, &s->dopt, 0, err, sizeof err) ||
        ds_heldout_problems(&s->held, &s->n_held, &s->dopt, a->eval_limit, err, sizeof err) ||
        ds_train_problems(&s->train, &s->n_train, &s->dopt, a->problems + n_all, err, sizeof err)) {
        ds_problems_free(all_held, n_all);
        cli_error("star", "%s", err);
        return EXIT_FAIL;
    }
    const int before = s->n_train;
    s->n_train = ds_problems_drop(s->train, s->n_train, all_held, n_all);
    s->dropped = before - s->n_train;
    ds_problems_free(all_held, n_all);
    for (; s->n_train > a->problems; s->n_train--) free(s->train[s->n_train - 1].text); /* the extra ones */
    if (s->n_train == 0) {
        cli_error("star", "every training problem's question is also a held-out one: nothing to train on");
        return EXIT_FAIL;
    }
    const int K = a->samples;
    s->max_new = a->max_tokens ? a->max_tokens : s->cm.m.cfg.trunk.ctx;
    s->text_cap = (size_t)s->max_new * DS_BPE_MAX_CHUNK + 1;
    s->prompt = malloc((size_t)(s->cm.m.cfg.trunk.ctx + 1) * sizeof *s->prompt);
    s->chains = malloc((size_t)K * s->max_new * sizeof *s->chains);
    s->chain_len = calloc((size_t)K, sizeof *s->chain_len);
    s->text_len = calloc((size_t)K, sizeof *s->text_len);
    s->texts = malloc((size_t)K * s->text_cap);
    s->solved_ever = calloc((size_t)s->n_train, 1);
    s->solved_now = calloc((size_t)s->n_train, 1);
    if (!s->prompt || !s->chains || !s->chain_len || !s->text_len || !s->texts || !s->solved_ever || !s->solved_now) {
        cli_error("star", "out of memory");
        return EXIT_FAIL;
    }
    return 0;
}

/* The prompt of problem p (BOS + its question) into s->prompt; its length, or 0 when it leaves no
 * room in the context to answer. */
static int encode_prompt(Star *s, const DsProblem *p) {
    s->prompt[0] = DS_BOS;
    if (p->prompt_len + 1 >= (size_t)s->cm.m.cfg.trunk.ctx) return 0;
    const int n = 1 + (int)mtp_encode(s->cm.m.tokenizer, s->prompt + 1, (const uint8_t *)p->text, p->prompt_len);
    return n < s->cm.m.cfg.trunk.ctx ? n : 0;
}

/* The draws of sample k of problem i in round r (stream 0: training, 1: held-out votes). */
static void star_rng(MtpRng *rng, uint64_t seed, int stream, int r, int i, int k) {
    mtp_rng_seed(rng, seed ^ (uint64_t)(r + 1) * 0x9E3779B97F4A7C15ull ^ (uint64_t)(i + 1) * 0xC2B2AE3D27D4EB4Full ^
                          (uint64_t)(k + 1) * 0x165667B19E3779F9ull ^ (uint64_t)stream << 62);
}

/* K chains of the prompt (n tokens) into s->chains / s->texts; greedy when rng is NULL (one chain).
 * Returns 0, or -1 with e->err. */
static int decode_chains(Star *s, DecodeState *e, const StarArgs *a, int n, int K, int stream, int r, int i) {
    for (int k = 0; k < K; k++) {
        MtpRng rng;
        DecodeRequest req = {.prompt = s->prompt, .n_prompt = n, .max_new = s->max_new, .lookahead = a->lookahead,
                             .eos = DS_EOS, .draft_min_p = CLI_DRAFT_MIN_P};
        if (stream >= 0) {
            star_rng(&rng, a->seed, stream, r, i, k);
            req.rng = &rng, req.sampling = (DecodeSampling){a->temperature, 0, a->top_p};
        }
        DecodeStats st;
        decode_truncate(e, 0);
        int32_t *out = s->chains + (size_t)k * s->max_new;
        const int got = stream >= 0 ? decode_sample(e, &req, out, &st) : decode_greedy(e, &req, out, &st);
        if (got < 0) return -1;
        s->chain_len[k] = got;
        uint8_t *text = s->texts + (size_t)k * s->text_cap;
        s->text_len[k] = mtp_decode(s->cm.m.tokenizer, text, s->text_cap - 1, out, (size_t)got);
        text[s->text_len[k]] = 0;
    }
    return 0;
}

/* Appends the record BOS, prompt, chain (and EOS unless the chain ends with it) to the fine-tuning
 * tokens. */
static int add_record(Star *s, int n_prompt, const int32_t *chain, int len) {
    const size_t need = s->n_ft + (size_t)n_prompt + (size_t)len + 1;
    if (need > s->cap_ft) {
        size_t cap = s->cap_ft ? 2 * s->cap_ft : 1 << 16;
        while (cap < need) cap *= 2;
        int32_t *p = realloc(s->ft, cap * sizeof *p);
        if (!p) return -1;
        s->ft = p, s->cap_ft = cap;
    }
    memcpy(s->ft + s->n_ft, s->prompt, (size_t)n_prompt * sizeof *s->ft);
    s->n_ft += (size_t)n_prompt;
    memcpy(s->ft + s->n_ft, chain, (size_t)len * sizeof *s->ft);
    s->n_ft += (size_t)len;
    if (len == 0 || chain[len - 1] != DS_EOS) s->ft[s->n_ft++] = DS_EOS;
    return 0;
}

/* Step 1 and 2: K chains per training problem; the distinct right ones become records. */
/* --reference: the problems' own chains (their text after the prompt) as the records. */
static int reference_records(Star *s, RoundResult *res) {
    size_t longest = 1;
    for (int i = 0; i < s->n_train; i++)
        if (s->train[i].len - s->train[i].prompt_len > longest) longest = s->train[i].len - s->train[i].prompt_len;
    int32_t *chain = malloc(longest * sizeof *chain); /* at most a token per byte */
    if (!chain) return cli_error("star", "out of memory"), EXIT_FAIL;
    for (int i = 0; i < s->n_train; i++) {
        const DsProblem *p = &s->train[i];
        const int n = encode_prompt(s, p);
        if (!n) continue;
        size_t len = mtp_encode(s->cm.m.tokenizer, chain, (const uint8_t *)p->text + p->prompt_len,
                                p->len - p->prompt_len);
        if ((size_t)n + len >= (size_t)s->cm.m.cfg.trunk.ctx) continue; /* as sampling would be cut */
        if (add_record(s, n, chain, (int)len)) return free(chain), cli_error("star", "out of memory"), EXIT_FAIL;
        res->kept++, res->solved++;
    }
    free(chain);
    res->train_tokens = (long)s->n_ft;
    return 0;
}

static int star_collect(const StarArgs *a, Star *s, DecodeState *e, int r, RoundResult *res) {
    const int K = a->samples;
    s->n_ft = 0;
    if (a->reference) return reference_records(s, res);
    const char *texts[K];
    int keep[K];
    for (int i = 0; i < s->n_train; i++) {
        const int n = encode_prompt(s, &s->train[i]);
        if (!n) continue;
        if (decode_chains(s, e, a, n, K, 0, r, i)) return cli_error("star", "%s", e->err), EXIT_FAIL;
        for (int k = 0; k < K; k++) texts[k] = (const char *)s->texts + (size_t)k * s->text_cap;
        const int kept = ds_star_filter(keep, texts, s->text_len, K, s->train[i].answer);
        for (int j = 0; j < kept; j++)
            if (add_record(s, n, s->chains + (size_t)keep[j] * s->max_new, s->chain_len[keep[j]]))
                return cli_error("star", "out of memory"), EXIT_FAIL;
        res->kept += kept;
        res->solved += kept > 0;
        res->new_solved += kept > 0 && !s->solved_ever[i];
        s->solved_now[i] = kept > 0;
    }
    for (int i = 0; i < s->n_train; i++) s->solved_ever[i] |= s->solved_now[i];
    res->train_tokens = (long)s->n_ft;
    return 0;
}

/* The trainer of the fine-tuning, built once: it goes on with the checkpoint's AdamW moments and
 * step when it has them (a trained model, or a round written by this command), so the first
 * updates are as small as the run's last ones were; fresh moments start with 10 warmup steps. */
static int star_trainer(const StarArgs *a, Star *s) {
    if (s->have_tr) return 0;
    MtpTrainOptions o;
    mtp_train_options_default(&o);
    o.steps = a->steps, o.batch = a->batch, o.accum = 1, o.lr = o.min_lr = a->lr;
    o.warmup = a->steps < 10 ? a->steps : 10;
    char err[1024];
    if (mtp_trainer_build(&s->tr, &s->cm.m, &o, err, sizeof err)) return cli_error("star", "%s", err), EXIT_FAIL;
    if (s->cm.x.has_train) {
        mtp_trainer_restore(&s->tr, &s->cm.x);
        mtp_checkpoint_extra_free(&s->cm.x); /* the moments now live in the trainer */
    }
    s->have_tr = 1;
    return 0;
}

/* Step 3: S steps of the trainer on the records (a corpus of its own, drawn from as mtp train
 * draws from its training split). */
static int star_finetune(const StarArgs *a, Star *s, int r, RoundResult *res) {
    const int T = s->cm.m.cfg.trunk.ctx;
    if (a->steps == 0 || s->n_ft < (size_t)T + 1) return 0; /* too few right chains to fill one window */
    int rc = star_trainer(a, s);
    if (rc) return rc;
    /* batch order: from the seed and the round, so a resumed run draws the same */
    mtp_rng_seed(&s->tr.data_rng, (a->seed + (uint64_t)r) ^ 0xD1B54A32D192ED03ull);
    DsCorpus c = {.train = s->ft, .n_train = s->n_ft, .n_parts = 0};
    double loss = 0;
    for (int step = 0; step < a->steps && rc == 0; step++) {
        MtpStepStats st;
        if (mtp_train_step(&s->tr, &c, &st)) {
            cli_error("star", "round %d: fine-tuning diverged at step %d (loss or gradient not finite); try a "
                      "lower --lr", r, step + 1);
            rc = EXIT_FAIL;
        }
        loss += st.loss[0];
    }
    res->steps = a->steps, res->loss = loss / a->steps; /* head 1's mean over the round's steps */
    return rc;
}

/* Step 4: held-out accuracy, greedy (lookahead greedy = head 1's) and the majority of K samples. */
static int star_evaluate(const StarArgs *a, Star *s, DecodeState *e, int r, RoundResult *res) {
    const int K = a->samples;
    const char *answers[K];
    char votes[K][64];
    for (int k = 0; k < K; k++) answers[k] = votes[k];
    long greedy = 0, majority = 0, n = 0;
    for (int i = 0; i < s->n_held; i++) {
        const DsProblem *p = &s->held[i];
        const int np = encode_prompt(s, p);
        if (!np) continue;
        if (decode_chains(s, e, a, np, 1, -1, r, i)) return cli_error("star", "%s", e->err), EXIT_FAIL;
        char answer[64];
        greedy += ds_answer_extract((const char *)s->texts, s->text_len[0], answer, sizeof answer) >= 0 &&
                  strcmp(answer, p->answer) == 0;
        if (decode_chains(s, e, a, np, K, 1, r, i)) return cli_error("star", "%s", e->err), EXIT_FAIL;
        for (int k = 0; k < K; k++)
            if (ds_answer_extract((const char *)s->texts + (size_t)k * s->text_cap, s->text_len[k], votes[k], 64) < 0)
                votes[k][0] = '\0';
        const int m = ds_vote_majority(answers, K);
        majority += m >= 0 && strcmp(answers[m], p->answer) == 0;
        n++;
    }
    res->greedy = n ? (double)greedy / n : 0;
    res->majority = n ? (double)majority / n : 0;
    return 0;
}

/* ---- the log, resuming ------------------------------------------------------------------------- */

/* s as the body of a JSON string into buf at n (escapes for quotes, backslashes, control bytes). */
static size_t put_json(char *buf, size_t cap, size_t n, const char *s) {
    for (; *s && n + 8 < cap; s++) {
        const unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') buf[n++] = '\\', buf[n++] = (char)c;
        else if (c < 0x20) n += (size_t)snprintf(buf + n, cap - n, "\\u%04x", c);
        else buf[n++] = (char)c;
    }
    buf[n] = '\0';
    return n;
}

/* The options that decide the rounds' results, as the JSONL "run" line (without --rounds, which a
 * resumed run may raise). */
static void run_line(char *buf, size_t cap, const StarArgs *a, const Star *s) {
    size_t n = (size_t)snprintf(buf, cap, "{\"type\":\"run\",\"model\":\"");
    n = put_json(buf, cap, n, a->model_path);
    n += (size_t)snprintf(buf + n, cap - n, "\",\"data\":[");
    for (int i = 0; i < s->dopt.n_sources && n + 16 < cap; i++) {
        n += (size_t)snprintf(buf + n, cap - n, "%s\"", i ? "," : "");
        n = put_json(buf, cap, n, s->dopt.sources[i].spec);
        n += (size_t)snprintf(buf + n, cap - n, "\"");
    }
    if (n < cap)
        snprintf(buf + n, cap - n,
                 "],\"difficulty\":%d,\"samples\":%d,\"problems\":%d,\"eval_limit\":%d,\"steps\":%d,\"lr\":%g,"
                 "\"batch\":%d,\"temperature\":%g,\"top_p\":%g,\"lookahead\":%d,\"max_tokens\":%d,\"seed\":%llu,"
                 "\"precision\":\"%s\",\"reference\":%s}",
                 s->dopt.difficulty, a->samples, a->problems, a->eval_limit, a->steps, a->lr, a->batch,
                 a->temperature, a->top_p, a->lookahead, a->max_tokens, (unsigned long long)a->seed,
                 mtp_precision_name(a->prec), a->reference ? "true" : "false");
}

/* The problems with a right chain this round, as hex digits of 4 problems each (problem 4j+b is
 * bit b of digit j), into the log line: a resumed run reads them back (read_solved). */
static void put_solved(FILE *log, const Star *s) {
    fputs(",\"solved_set\":\"", log);
    for (int j = 0; j < (s->n_train + 3) / 4; j++) {
        int d = 0;
        for (int b = 0; b < 4 && 4 * j + b < s->n_train; b++) d |= s->solved_now[4 * j + b] << b;
        fputc("0123456789abcdef"[d], log);
    }
    fputc('"', log);
}

static void read_solved(Star *s, const char *line) {
    static const char KEY[] = "\"solved_set\":\"";
    const char *at = strstr(line, KEY);
    if (!at) return;
    at += sizeof KEY - 1;
    for (int j = 0; at[j] && at[j] != '"' && 4 * j < s->n_train; j++) {
        const char c = at[j];
        const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : 0;
        for (int b = 0; b < 4 && 4 * j + b < s->n_train; b++) s->solved_ever[4 * j + b] |= (d >> b) & 1;
    }
}

/* Resuming after round last: the saved log must start with this run's line. */
static int same_run(const char *path, const char *want) {
    char line[8192];
    FILE *in = fopen(path, "r");
    const int same = in && fgets(line, sizeof line, in) && strcspn(line, "\n") == strlen(want) &&
                     strncmp(line, want, strlen(want)) == 0;
    if (in) fclose(in);
    return same;
}

/* The log of this run, rewritten atomically: its run line, then (resuming after round last) the
 * saved lines of rounds up to last; a line of a round whose checkpoint is missing is dropped, as
 * that round is done again. *log is left open to append. Returns 0, or the exit status after
 * printing the error. */
static int open_log(const StarArgs *a, Star *s, int last, FILE **log) {
    char want[8192], line[8192], tmp[4096 + 32];
    run_line(want, sizeof want, a, s);
    if (last && !same_run(s->log_path, want)) {
        cli_error("star", "%s was written by a run with other options (its first line): give the same options to "
                  "resume, or another --out", s->log_path);
        return EXIT_USAGE;
    }
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", s->log_path, (long)getpid());
    FILE *out = fopen(tmp, "w");
    if (!out) return cli_error("star", "cannot write %s: %s", s->log_path, strerror(errno)), EXIT_FAIL;
    fprintf(out, "%s\n", want);
    FILE *in = last ? fopen(s->log_path, "r") : NULL;
    while (in && fgets(line, sizeof line, in)) {
        const char *at = strstr(line, "\"round\":");
        if (at && atoi(at + 8) <= last) fputs(line, out), read_solved(s, line);
    }
    if (in) fclose(in);
    if (fflush(out) || fsync(fileno(out)) || rename(tmp, s->log_path)) {
        cli_error("star", "cannot write %s: %s", s->log_path, strerror(errno));
        fclose(out);
        unlink(tmp);
        return EXIT_FAIL;
    }
    *log = out; /* open on the renamed file: appends go to PREFIX.jsonl */
    return 0;
}

static void log_round(FILE *log, int r, const Star *s, const RoundResult *res) {
    fprintf(log, "{\"type\":\"round\",\"round\":%d,\"problems\":%d,\"solved\":%d,\"new_solved\":%d,\"chains_kept\":%d,"
                 "\"train_tokens\":%ld,\"steps\":%d,\"loss\":%.6f,\"heldout_problems\":%d,\"greedy_accuracy\":%.6f,"
                 "\"majority_accuracy\":%.6f,\"seconds\":%.2f",
            r, r ? s->n_train : 0, res->solved, res->new_solved, res->kept, res->train_tokens, res->steps, res->loss,
            s->n_held, res->greedy, res->majority, res->seconds);
    if (r > 0) put_solved(log, s);
    fputs("}\n", log);
    fflush(log);
    fsync(fileno(log));
}

/* ---- rounds ------------------------------------------------------------------------------------ */

static int build_engine(const StarArgs *a, Star *s, DecodeState *e) {
    char err[1024];
    if (decode_build(e, mtp_decode_model(&s->cm.m), a->lookahead, a->lookahead, err, sizeof err))
        return cli_error("star", "%s", err), EXIT_FAIL;
    return 0;
}

/* Round 0 measures the model as given; rounds 1.. collect, fine-tune, measure and save. */
static int star_round(const StarArgs *a, Star *s, int r, FILE *log) {
    RoundResult res = {0};
    const double t0 = mtp_now();
    DecodeState e = {0};
    int rc = 0;
    if (r > 0) {
        rc = build_engine(a, s, &e);
        if (rc == 0) rc = star_collect(a, s, &e, r, &res);
        decode_free(&e); /* the weights change: the engine packed the old ones */
        if (rc == 0) rc = star_finetune(a, s, r, &res);
    }
    if (rc == 0) rc = build_engine(a, s, &e);
    if (rc == 0) rc = star_evaluate(a, s, &e, r, &res);
    decode_free(&e);
    if (rc) return rc;
    res.seconds = mtp_now() - t0;
    char path[4096 + 32], err[1024];
    round_path(path, sizeof path, a->out, r);
    if (r > 0 && mtp_checkpoint_save(path, &s->cm.m, s->have_tr ? &s->tr : NULL, &s->cm.x.run, err, sizeof err))
        return cli_error("star", "%s", err), EXIT_FAIL;
    log_round(log, r, s, &res);
    if (ferror(log)) return cli_error("star", "writing %s failed", s->log_path), EXIT_FAIL;
    if (r == 0)
        fprintf(stderr, "mtp star: round 0 (the model as given): held-out greedy %.1f%%, majority@%d %.1f%% (%.0f s)\n",
                100 * res.greedy, a->samples, 100 * res.majority, res.seconds);
    else
        fprintf(stderr,
                "mtp star: round %d/%d: %d of %d problems with a right chain (%d never before), %d chains kept "
                "(%ld tokens); %d fine-tuning steps%s, loss %.4f; held-out greedy %.1f%%, majority@%d %.1f%%; "
                "wrote %s (%.0f s)\n",
                r, a->rounds, res.solved, s->n_train, res.new_solved, res.kept, res.train_tokens, res.steps,
                res.steps ? "" : " (too few chains)", res.loss, 100 * res.greedy, a->samples, 100 * res.majority,
                path, res.seconds);
    return 0;
}

/* The model (the last round written, when resuming), the problems, the log. */
static int star_open(StarArgs *a, Star *s, FILE **log) {
    const int last = last_round(a);
    char path[4096 + 32];
    round_path(path, sizeof path, a->out, last);
    const CliOpen how = {.path = last ? path : a->model_path, .train_state = 1, .compute = 1, .threads = a->threads,
                         .prec = a->prec};
    int rc = cli_open_model("star", &how, &s->cm);
    if (rc || (rc = cli_lookahead("star", &a->lookahead, s->cm.m.cfg.heads.n)) ||
        (rc = cli_model_data("star", &a->data, &s->cm.x.run, &s->dopt)))
        return rc;
    if (a->difficulty_given) s->dopt.difficulty = s->cm.x.run.difficulty = a->difficulty;
    snprintf(s->log_path, sizeof s->log_path, "%s.jsonl", a->out);
    if ((rc = star_problems(a, s))) return rc;
    s->first_round = last + 1;
    if (last >= a->rounds) {
        fprintf(stderr, "mtp star: %s already holds round %d of %d: nothing to do\n", a->out, last, a->rounds);
        return 0;
    }
    if ((rc = open_log(a, s, last, log))) return rc;
    fprintf(stderr, "mtp star: %s, %d training problems (%d dropped: held-out questions), %d held-out, %d samples "
            "each, lookahead %d, %d thread%s\n", last ? path : a->model_path, s->n_train, s->dropped, s->n_held,
            a->samples, a->lookahead, mtp_core_threads(), mtp_core_threads() == 1 ? "" : "s");
    if (last) fprintf(stderr, "mtp star: resuming after round %d\n", last);
    return 0;
}

int cmd_star(int argc, char **argv) {
    StarArgs a;
    int rc = star_parse(argc, argv, &a);
    if (rc || a.help) return rc;
    Star s = {0};
    FILE *log = NULL;
    rc = star_open(&a, &s, &log);
    for (int r = s.first_round == 1 ? 0 : s.first_round; rc == 0 && log && r <= a.rounds; r++)
        rc = star_round(&a, &s, r, log);
    if (log) fclose(log);
    free(s.prompt), free(s.chains), free(s.chain_len), free(s.text_len), free(s.texts), free(s.solved_ever);
    free(s.solved_now);
    free(s.ft);
    if (s.have_tr) mtp_trainer_free(&s.tr);
    ds_problems_free(s.train, s.n_train);
    ds_problems_free(s.held, s.n_held);
    cli_close_model(&s.cm);
    return rc;
}
