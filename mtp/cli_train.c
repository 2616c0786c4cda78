/* cli_train.c - `mtp train`: build or resume a model, train it, show progress, save checkpoints. */
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mtp/cli.h"
#include "mtp/core/mpk.h"
#include "mtp/dist.h"
#include "mtp/mtp.h"

static const char *TRAIN_HELP =
    "usage: mtp train --data SPEC[:WEIGHT] [--data ...] --out FILE [options]\n"
    "\n"
    "Train a transformer with n output heads (head i predicts token t+i). The loss is the sum\n"
    "over heads of each head's mean cross-entropy over the positions that have a target.\n"
    "\n"
    "data:\n"
    "  --data SPEC[:W]      a source, required unless --resume; repeat it to mix sources,\n"
    "                       rows drawn with probability W / sum of weights (default W 1):\n"
    "                       a .jsonl/.ndjson file (one record per line), builtin:arith\n"
    "                       (generated arithmetic with worked solutions), or any other\n"
    "                       file (bytes); e.g. --data a.txt:0.7 --data builtin:arith:0.3\n"
    "  --fields Q,A | T     JSONL fields: a question/answer pair rendered as question,\n"
    "                       newline, answer (default question,answer), or one text field\n"
    "                       (default text); a line with neither is bad\n"
    "  --skip-bad-lines     skip (and count) malformed JSONL lines instead of stopping\n"
    "  --val-frac F         validation fraction at the end of each file (default 0.1)\n"
    "  --difficulty N       builtin:arith level 1..8 (6..8: chains of thousands of\n"
    "                       bytes), 0 = mixed levels 1..5 (default 0)\n"
    "  --data-seed S        builtin:arith generator seed (default 1)\n"
    "  --tokenizer T        bytes (default), bpe:N (byte-level BPE with N tokens,\n"
    "                       257..65536, learned on the training split and stored in the\n"
    "                       checkpoint), or FILE (the tokenizer of a tokenizer file or\n"
    "                       checkpoint)\n"
    "  --token-cache FILE   the tokenized corpus, memory-mapped: built once, rebuilt when the\n"
    "                       data changes; none = in memory. Default: a file of the folder\n"
    "                       every model shares (see mtp cache --help), named by the corpus,\n"
    "                       tokenizer and split\n"
    "model:\n"
    "  --heads N            output heads (default 4)\n"
    "  --head-type T        transformer (one block per head, default) or linear (x + silu(Wx))\n"
    "  --layers L           trunk blocks (default 4)\n"
    "  --dim D              model width (default 256)\n"
    "  --attn-heads H       attention heads, must divide dim (default 8)\n"
    "  --ffn F              SwiGLU hidden width (default 688)\n"
    "  --ctx T              context length (default 256)\n"
    "  --vocab N            output width (default: the tokenizer's, 259 for bytes); a larger\n"
    "                       one leaves the ids past the tokenizer's unused (benchmark shapes)\n"
    "training:\n"
    "  --batch B            sequences per micro-batch (default 16)\n"
    "  --accum K            micro-batches per optimizer step (default 1)\n"
    "  --steps S            total optimizer steps (default 1000); with --resume, train up to S\n"
    "  --lr LR              peak learning rate (default 1e-3)\n"
    "  --min-lr LR          learning rate at the end of the cosine decay (default lr/10)\n"
    "  --warmup W           linear warmup steps (default 100, at most steps)\n"
    "  --weight-decay WD    AdamW decoupled weight decay on matrices (default 0.1)\n"
    "  --grad-clip C        clip the global gradient norm to C, 0 = off (default 1.0)\n"
    "  --seed S             seed of weight init and batch sampling (default 1337)\n"
    "  --threads P          threads for everything (default: all cores)\n"
    "  --precision P        auto (default), fp32 or bf16 matrix products (bf16: fp32\n"
    "                       accumulation, fp32 master weights). auto times products of the\n"
    "                       run's shape in both (about 0.2 s) and takes bf16 only where it\n"
    "                       is 10% faster (fp32 on CPUs without bf16 products), said on\n"
    "                       stderr; give fp32 or bf16 for runs identical across machines.\n"
    "                       --resume keeps the checkpoint's precision unless --precision\n"
    "                       is given\n"
    "checkpoints and logs:\n"
    "  --out FILE           checkpoint to write (required; default with --resume: that file)\n"
    "  --resume FILE        continue a run from its checkpoint, bit for bit\n"
    "  --save-every K       also save every K steps (default 0: only at the end)\n"
    "  --eval-every K       validation loss every K steps (default 100, 0 = only at the end)\n"
    "  --eval-batches K     validation batches per evaluation (default 8)\n"
    "  --log FILE.jsonl     append one JSON object per step and per evaluation\n"
    "\n"
    "Ctrl-C (SIGINT) or SIGTERM saves a checkpoint to --out and exits with status 130;\n--resume continues it.\n"
    "\n"
    "mpirun -np P mtp train ... trains one model with P data-parallel ranks: --batch and\n"
    "--accum are per rank, the global batch is batch x accum x P rows, the same run as one\n"
    "process with --accum accum x P (see README, Training on several cores or machines).\n"
    "Rank 0 prints, logs and saves. mpirun SIGKILLs the ranks 1 s after forwarding Ctrl-C:\n"
    "give it --mca odls_base_sigkill_timeout 60 for the ranks to save first.\n";

static volatile sig_atomic_t g_interrupted = 0;
static void on_sigint(int sig) { (void)sig, g_interrupted = 1; }

#define TRAIN_MAX_OPTS 40
#define MTP_ALLREDUCE_OVERLAP 0 /* the default of MTP_ALLREDUCE: blocking, measured faster here (README, MPI) */

typedef struct {
    CliData data;
    const char *out, *resume, *log, *head_type, *precision, *tokenizer, *token_cache;
    double val_frac; /* exact, as given: a library caller's 0.1 finds the same token cache */
    float min_lr;
    int difficulty;
    uint64_t data_seed;
    MtpConfig cfg;
    MtpTrainOptions opt;
    int threads, save_every, eval_every, eval_batches, help;
    CliPrecision prec; /* auto: picked in train_open, once the core runs */
    CliOpt opts[TRAIN_MAX_OPTS]; /* the option table: which flags were given decides what a resume keeps */
} TrainArgs;

typedef struct {
    CliModel cm;      /* built for a new run, loaded with --resume */
    MtpRunInfo run;   /* saved with every checkpoint */
    DsCorpus data;
    MtpTrainer tr;
    FILE *log;
    int tty;
    double t0;        /* the loop's start, its first step, and the tokens it has trained on */
    int first_step;
    long tokens_done;
    int stop;           /* the ranks agreed to stop on a signal */
    double allreduce_s; /* waiting for the gradients' sums, over the run */
} Train;

static void fmt_duration(char *buf, size_t n, double s) {
    if (!isfinite(s) || s < 0) snprintf(buf, n, "?");
    else if (s < 60) snprintf(buf, n, "%.0fs", s);
    else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(buf, n, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
}

static void print_losses(FILE *f, const double *loss, int n) {
    for (int i = 0; i < n; i++) fprintf(f, "%s%.3f", i ? " " : "", loss[i]);
}

/* JSON has no NaN or infinity: a diverged value is logged as null */
static void log_json_number(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, "%.6f", v);
    else fputs("null", f);
}

static void log_json_array(FILE *f, const double *v, int n) {
    fputc('[', f);
    for (int i = 0; i < n; i++) {
        if (i) fputc(',', f);
        log_json_number(f, v[i]);
    }
    fputc(']', f);
}

/* Validation on the trainer's workspace; prints a line and logs it. */
static void run_eval(MtpTrainer *t, const DsCorpus *data, int batches, FILE *log, int tty) {
    const int n = t->model->cfg.heads.n;
    double loss[HEADS_MAX], acc[HEADS_MAX];
    long tokens = mtp_evaluate(&t->ws, data->val, data->n_val, batches, loss, acc);
    if (tty) fputs("\r\033[K", stderr);
    fprintf(stderr, "step %d: validation loss per head ", t->step);
    print_losses(stderr, loss, n);
    fprintf(stderr, " | head-1 accuracy %.1f%% (%ld tokens)\n", 100.0 * acc[0], tokens);
    if (log) {
        fprintf(log, "{\"type\":\"eval\",\"step\":%d,\"loss\":", t->step);
        log_json_array(log, loss, n);
        fprintf(log, ",\"accuracy\":");
        log_json_array(log, acc, n);
        fprintf(log, ",\"tokens\":%ld}\n", tokens);
        fflush(log);
    }
}

/* Every rank calls it; rank 0 writes. With several ranks it first checks that they all hold the
 * same weights (a CRC of them): they apply the same update to the same sums, so a difference means
 * a broken reduction, and such a checkpoint is not written. */
static int save(const char *path, MtpTrainer *t, const MtpRunInfo *run, int tty) {
    char err[512];
    if (t->ranks > 1 && !dist_same_u64(mpk_crc32(0, t->model->params, t->model->n_params * sizeof(float)))) {
        cli_error("train", "rank %d: the ranks' weights differ at step %d (a reduction that is not the same on "
                  "every rank); not saved, %s keeps its previous contents", t->rank, t->step, path);
        return -1;
    }
    /* the others wait for the write: one exiting first (130 after a signal) would make mpirun end
       the job, rank 0's save included; a failed write aborts them all from rank 0 */
    if (t->rank != 0) return dist_barrier(), 0;
    if (mtp_checkpoint_save(path, t->model, t, run, err, sizeof err)) {
        if (tty) fputs("\r\033[K", stderr);
        cli_error("train", "saving checkpoint: %s", err);
        return -1;
    }
    dist_barrier();
    return 0;
}

/* --tokenizer SPEC names the tokenizer m has: "bytes", "bpe:N" (N tokens), or a tokenizer file or
 * checkpoint whose merges hash the same. */
static int same_tokenizer(const char *spec, const MtpModel *m) {
    if (strcmp(spec, "bytes") == 0) return m->tokenizer == NULL;
    if (strncmp(spec, "bpe:", 4) == 0) return m->tokenizer && atoi(spec + 4) == ds_bpe_vocab(m->tokenizer) - 3;
    DsBpe *t = NULL;
    char err[512];
    if (mtp_tokenizer_load(spec, &t, err, sizeof err)) return 0;
    const int same = (t == NULL) == (m->tokenizer == NULL) && (!t || ds_bpe_hash(t) == ds_bpe_hash(m->tokenizer));
    ds_bpe_free(t);
    return same;
}

/* With --resume, the model's shape and the run's settings come from the checkpoint: a flag given
 * with the value saved is accepted (the same command can be run again with --resume added), one
 * with another value is an error naming the saved value, rather than silently ignored. */
static int check_resume_conflicts(const TrainArgs *a, const MtpModel *m, const MtpCheckpointExtra *x) {
    const CliOpt *opts = a->opts;
    const MtpConfig *ck = &m->cfg;
    const MtpTrainOptions *o = &x->opt;
    struct { const char *flag; double given, saved; } f[] = {
        {"--dim", a->cfg.trunk.dim, ck->trunk.dim},       {"--layers", a->cfg.trunk.layers, ck->trunk.layers},
        {"--attn-heads", a->cfg.trunk.attn_heads, ck->trunk.attn_heads},
        {"--ffn", a->cfg.trunk.ffn, ck->trunk.ffn},       {"--ctx", a->cfg.trunk.ctx, ck->trunk.ctx},
        {"--heads", a->cfg.heads.n, ck->heads.n},         {"--vocab", a->cfg.trunk.vocab, ck->trunk.vocab},
        {"--batch", a->opt.batch, o->batch},              {"--accum", a->opt.accum, o->accum},
        {"--warmup", a->opt.warmup, o->warmup},           {"--difficulty", a->difficulty, x->run.difficulty},
        {"--lr", a->opt.lr, o->lr},                       {"--min-lr", a->min_lr, o->min_lr},
        {"--weight-decay", a->opt.weight_decay, o->weight_decay},
        {"--grad-clip", a->opt.grad_clip, o->grad_clip},  {"--val-frac", (float)a->val_frac, (float)x->run.val_frac}, /* older runs saved a float */
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (cli_opt(opts, f[i].flag)->given && f[i].given != f[i].saved) {
            cli_error("train", "%s %.7g differs from the run being resumed (%.7g): a resumed run keeps its settings",
                      f[i].flag, f[i].given, f[i].saved);
            return -1;
        }
    struct { const char *flag; uint64_t given, saved; } seeds[] = {
        {"--seed", a->opt.seed, o->seed}, {"--data-seed", a->data_seed, x->run.data_seed}};
    for (size_t i = 0; i < 2; i++)
        if (cli_opt(opts, seeds[i].flag)->given && seeds[i].given != seeds[i].saved) {
            cli_error("train", "%s %llu differs from the run being resumed (%llu): a resumed run keeps its settings",
                      seeds[i].flag, (unsigned long long)seeds[i].given, (unsigned long long)seeds[i].saved);
            return -1;
        }
    if (cli_opt(opts, "--head-type")->given && strcmp(a->head_type, heads_type_name(ck->heads.type)) != 0) {
        cli_error("train", "--head-type %s differs from the run being resumed (%s)", a->head_type,
                  heads_type_name(ck->heads.type));
        return -1;
    }
    if (cli_opt(opts, "--tokenizer")->given && !same_tokenizer(a->tokenizer, m)) {
        char saved[32] = "bytes";
        if (m->tokenizer) snprintf(saved, sizeof saved, "a BPE of %d tokens", ds_bpe_vocab(m->tokenizer) - 3);
        cli_error("train", "--tokenizer %s differs from the run being resumed (%s)", a->tokenizer, saved);
        return -1;
    }
    return 0;
}

/* --tokenizer for a new run: bpe:N learns one on the training text, anything else but "bytes" is a
   tokenizer file or checkpoint. Returns 0, or the exit status after printing the error. */
static int make_tokenizer(const char *spec, const MtpRunInfo *run, DsBpe **tok) {
    char err[1024];
    *tok = NULL;
    if (strcmp(spec, "bytes") == 0) return 0;
    if (strncmp(spec, "bpe:", 4) != 0) {
        if (mtp_tokenizer_load(spec, tok, err, sizeof err)) {
            cli_error("train", "--tokenizer %s", err);
            return EXIT_FAIL;
        }
        return 0;
    }
    return cli_learn_bpe("train", "--tokenizer", spec, run, tok);
}

static int train_parse(int argc, char **argv, TrainArgs *a) {
    *a = (TrainArgs){.head_type = "transformer", .precision = "auto", .val_frac = 0.1, .min_lr = -1.0f,
                     .data_seed = 1, .cfg = {{DS_BYTE_VOCAB, 256, 4, 8, 688, 256}, {4, HEAD_TRANSFORMER}},
                     .eval_every = 100, .eval_batches = 8};
    mtp_train_options_default(&a->opt);
    const CliOpt opts[] = {
        CLI_DATA_OPTS(&a->data),
        {"--tokenizer", OPT_STR, &a->tokenizer, 0, 0, 0},
        {"--token-cache", OPT_STR, &a->token_cache, 0, 0, 0},
        {"--val-frac", OPT_DOUBLE, &a->val_frac, 1e-6, 0.999999, 0},
        {"--difficulty", OPT_INT, &a->difficulty, 0, DS_ARITH_MAX_DIFFICULTY, 0},
        {"--data-seed", OPT_U64, &a->data_seed, 0, 0, 0},
        {"--out", OPT_STR, &a->out, 0, 0, 0},
        {"--heads", OPT_INT, &a->cfg.heads.n, 1, HEADS_MAX, 0},
        {"--head-type", OPT_STR, &a->head_type, 0, 0, 0},
        {"--layers", OPT_INT, &a->cfg.trunk.layers, 0, TRUNK_MAX_LAYERS, 0},
        {"--dim", OPT_INT, &a->cfg.trunk.dim, 2, TRUNK_MAX_DIM, 0},
        {"--attn-heads", OPT_INT, &a->cfg.trunk.attn_heads, 1, TRUNK_MAX_DIM, 0},
        {"--ffn", OPT_INT, &a->cfg.trunk.ffn, 1, TRUNK_MAX_FFN, 0},
        {"--ctx", OPT_INT, &a->cfg.trunk.ctx, 1, TRUNK_MAX_CTX, 0},
        {"--vocab", OPT_INT, &a->cfg.trunk.vocab, DS_BYTE_VOCAB, 65536, 0},
        {"--batch", OPT_INT, &a->opt.batch, 1, 65536, 0},
        {"--accum", OPT_INT, &a->opt.accum, 1, 65536, 0},
        {"--steps", OPT_INT, &a->opt.steps, 1, 1e9, 0},
        {"--lr", OPT_FLOAT, &a->opt.lr, 0, 10, 0},
        {"--min-lr", OPT_FLOAT, &a->min_lr, 0, 10, 0},
        {"--warmup", OPT_INT, &a->opt.warmup, 0, 1e9, 0},
        {"--weight-decay", OPT_FLOAT, &a->opt.weight_decay, 0, 10, 0},
        {"--grad-clip", OPT_FLOAT, &a->opt.grad_clip, 0, 1e9, 0},
        {"--seed", OPT_U64, &a->opt.seed, 0, 0, 0},
        {"--threads", OPT_INT, &a->threads, 1, 4096, 0},
        {"--precision", OPT_STR, &a->precision, 0, 0, 0},
        {"--resume", OPT_STR, &a->resume, 0, 0, 0},
        {"--eval-every", OPT_INT, &a->eval_every, 0, 1e9, 0},
        {"--eval-batches", OPT_INT, &a->eval_batches, 1, 1e9, 0},
        {"--save-every", OPT_INT, &a->save_every, 0, 1e9, 0},
        {"--log", OPT_STR, &a->log, 0, 0, 0},
        {0}};
    _Static_assert(sizeof opts <= sizeof a->opts, "TRAIN_MAX_OPTS is too small");
    memcpy(a->opts, opts, sizeof opts);
    if (cli_parse("train", argc, argv, 2, a->opts, NULL, &a->help)) return EXIT_USAGE;
    if (a->help) return fputs(TRAIN_HELP, stdout), 0;
    return 0;
}

/* What the options say without a model: checked before any file is read. */
static int train_check(TrainArgs *a) {
    if (cli_precision_auto("train", a->precision, &a->prec)) return EXIT_USAGE;
    if (heads_type_parse(a->head_type, &a->cfg.heads.type)) {
        cli_error("train", "--head-type must be transformer or linear (got '%s')", a->head_type);
        return EXIT_USAGE;
    }
    if (!a->out) a->out = a->resume;
    if (!a->out) {
        cli_error("train", "--out FILE is required (see mtp train --help)");
        return EXIT_USAGE;
    }
    struct stat st;
    if (stat(a->out, &st) == 0 && S_ISDIR(st.st_mode)) {
        cli_error("train", "--out %s is a directory", a->out);
        return EXIT_USAGE;
    }
    /* find out now, not after an hour of training, that the checkpoint cannot be written */
    char dir[4096];
    mpk_dir_of(a->out, dir, sizeof dir);
    if (access(dir, W_OK | X_OK) != 0) {
        cli_error("train", "--out %s: cannot write to directory %s: %s", a->out, dir, strerror(errno));
        return EXIT_USAGE;
    }
    const char *cache = a->token_cache;
    if (cache && (strcmp(cache, a->out) == 0 || (a->resume && strcmp(cache, a->resume) == 0))) {
        cli_error("train", "--token-cache %s is the checkpoint's own path; give the cache another name", cache);
        return EXIT_USAGE;
    }
    return 0;
}

/* A run saved by R ranks with --accum A drew A*R micro-batches a step: its data position counts
 * steps of that global batch. P ranks continue it with --accum A*R/P when P divides A*R (the same
 * micro-batches, summed in another order: equal to a few roundings, bitwise only with P = R);
 * otherwise the position would mean another thing, and the resume is refused naming R. */
static int resume_ranks(const char *path, MtpCheckpointExtra *ck) {
    const int saved = ck->run.ranks > 1 ? ck->run.ranks : 1, now = dist_ranks();
    if (saved == now) return 0;
    const long global = (long)ck->opt.accum * saved;
    if (global % now) {
        cli_error("train", "%s was trained by %d rank%s with --accum %d (%ld micro-batch%s a step), which %d ranks "
                  "cannot share evenly: resume it with %d rank%s (or a number that divides %ld)", path, saved,
                  saved == 1 ? "" : "s", ck->opt.accum, global, global == 1 ? "" : "es", now, saved, saved == 1 ? "" : "s", global);
        return -1;
    }
    ck->opt.accum = (int)(global / now);
    if (dist_rank() == 0)
        fprintf(stderr, "mtp train: %s was trained by %d rank%s with --accum %d; %d rank%s continue%s it with --accum %d "
                "(the same global batch)\n", path, saved, saved == 1 ? "" : "s", (int)(global / saved), now,
                now == 1 ? "" : "s", now == 1 ? "s" : "", ck->opt.accum);
    return 0;
}

/* --resume: the model, its optimizer state and its run's settings from the checkpoint; --steps,
 * --precision and the corpus options may change. */
static int train_resume(TrainArgs *a, Train *t) {
    const CliOpen how = {.path = a->resume, .train_state = 1}; /* the core starts in train_open */
    int rc = cli_open_model("train", &how, &t->cm);
    if (rc) return rc;
    MtpCheckpointExtra *ck = &t->cm.x;
    if (!ck->has_train) {
        cli_error("train", "%s has no training state to resume from", a->resume);
        return EXIT_FAIL;
    }
    if (resume_ranks(a->resume, ck)) return EXIT_USAGE;
    if (check_resume_conflicts(a, &t->cm.m, ck)) return EXIT_USAGE;
    t->run = ck->run;
    int steps = cli_opt(a->opts, "--steps")->given ? a->opt.steps : ck->opt.steps;
    a->opt = ck->opt;
    a->opt.steps = steps;
    if (!cli_opt(a->opts, "--precision")->given) a->prec = (CliPrecision){.prec = ck->run.precision};
    return cli_data_apply("train", &a->data, &t->run) ? EXIT_USAGE : 0;
}

/* A new run: its data, its tokenizer (learned first with bpe:N), and a model initialised from --seed. */
static int train_new(TrainArgs *a, Train *t) {
    if (!a->data.data.n) {
        cli_error("train", "--data SPEC is required (see mtp train --help)");
        return EXIT_USAGE;
    }
    t->run.val_frac = a->val_frac;
    t->run.data_seed = a->data_seed;
    t->run.difficulty = a->difficulty;
    if (cli_data_apply("train", &a->data, &t->run)) return EXIT_USAGE;
    DsBpe *tok = NULL;
    int rc = a->tokenizer ? make_tokenizer(a->tokenizer, &t->run, &tok) : 0;
    if (rc) return rc;
    char err[1024];
    int tok_vocab = mtp_tokenizer_vocab(tok);
    if (!cli_opt(a->opts, "--vocab")->given) a->cfg.trunk.vocab = tok_vocab;
    else if (a->cfg.trunk.vocab < tok_vocab) {
        cli_error("train", "--vocab %d is smaller than the tokenizer's vocabulary (%d)", a->cfg.trunk.vocab, tok_vocab);
        rc = EXIT_USAGE;
    }
    if (rc == 0 && mtp_config_check(&a->cfg, err, sizeof err)) {
        cli_error("train", "%s", err);
        rc = EXIT_USAGE;
    }
    a->opt.min_lr = a->min_lr >= 0 ? a->min_lr : a->opt.lr / 10;
    if (a->opt.warmup > a->opt.steps) a->opt.warmup = a->opt.steps;
    if (rc == 0 && mtp_model_build(&t->cm.m, &a->cfg, err, sizeof err)) {
        cli_error("train", "%s", err);
        rc = EXIT_FAIL;
    }
    if (rc) {
        ds_bpe_free(tok);
        return rc;
    }
    t->cm.m.tokenizer = tok;
    mtp_model_init(&t->cm.m, a->opt.seed);
    return 0;
}

/* The log's first record of each invocation (a resumed run adds one): where it starts and with what
 * precision, and what auto measured to pick it. */
static void log_run(FILE *log, const TrainArgs *a, const Train *t) {
    fprintf(log, "{\"type\":\"run\",\"step\":%d,\"steps\":%d,\"threads\":%d,", t->tr.step, a->opt.steps,
            mtp_core_threads());
    cli_precision_json(log, &a->prec);
    if (t->tr.ranks > 1) fprintf(log, ",\"ranks\":%d,\"global_batch\":%d", t->tr.ranks, a->opt.batch * a->opt.accum * t->tr.ranks);
    fprintf(log, "}\n");
    fflush(log);
}

static void train_announce(const TrainArgs *a, const Train *t) {
    const MtpModel *m = &t->cm.m;
    const int n = m->cfg.heads.n;
    MtpParamCounts pc = mtp_param_counts(&m->cfg);
    char tok_desc[32] = "bytes";
    if (m->tokenizer) snprintf(tok_desc, sizeof tok_desc, "bpe:%d", 256 + ds_bpe_n_merges(m->tokenizer));
    const int th = mtp_core_threads(), R = t->tr.ranks;
    char par[64], global[128] = ""; /* ranks and the global batch said only with MPI: one process prints as ever */
    snprintf(par, sizeof par, "%d thread%s", th, th == 1 ? "" : "s");
    if (R > 1) {
        snprintf(par, sizeof par, "%d ranks x %d thread%s", R, th, th == 1 ? "" : "s");
        snprintf(global, sizeof global, " | global batch %d rows = --batch %d x --accum %d x %d ranks",
                 a->opt.batch * a->opt.accum * R, a->opt.batch, a->opt.accum, R);
    }
    fprintf(stderr, "mtp train: %s | tokenizer %s | %.2fM parameters, %d %s head%s | %s, %s%s\n", t->data.desc,
            tok_desc, pc.total / 1e6, n, heads_type_name(m->cfg.heads.type), n == 1 ? "" : "s", par,
            mtp_precision_name(a->prec.prec), global);
    if (a->prec.is_auto) {
        char why[128];
        cli_precision_why(why, sizeof why, &a->prec);
        fprintf(stderr, "mtp train: precision auto: %s\n", why);
    }
    if (t->tr.step >= a->opt.steps)
        fprintf(stderr, "mtp train: the checkpoint is already at step %d of %d; nothing to train\n", t->tr.step,
                a->opt.steps);
    else if (a->resume)
        fprintf(stderr, "mtp train: resuming %s at step %d of %d\n", a->resume, t->tr.step, a->opt.steps);
}

/* --threads, or for one of several ranks OMP_NUM_THREADS, or the cores it sees shared by the ranks
 * on its machine (all of them would oversubscribe the cores P times); 0 alone: all cores. */
static int rank_threads(int threads) {
    if (threads || dist_ranks() == 1) return threads;
    const char *env = getenv("OMP_NUM_THREADS");
    if (env && atoi(env) > 0) return atoi(env);
    const int share = omp_get_num_procs() / dist_local_ranks();
    return share > 0 ? share : 1;
}

/* The core and the precision (picked now with auto: the trainer's memory depends on it), the
 * corpus (through its token cache), the trainer (restored on --resume) and --log. */
static int train_open(TrainArgs *a, Train *t) {
    t->tty = isatty(STDERR_FILENO);
    int rc = cli_start_core("train", rank_threads(a->threads), a->prec.prec);
    if (rc) return rc;
    const TrunkConfig *c = &t->cm.m.cfg.trunk; /* the largest product of a block: the SwiGLU's input */
    cli_pick_products(&a->prec, a->opt.batch * c->ctx, 2 * c->ffn, c->dim);
    if (dist_ranks() > 1) { /* every rank measured; all take rank 0's pick, or their sums would not match */
        dist_bcast(&a->prec, sizeof a->prec);
        mtp_core_set_precision(a->prec.prec);
    }
    t->run.precision = a->prec.prec; /* the checkpoint records the pick, never "auto" */
    t->run.ranks = dist_ranks();
    if (dist_rank() > 0) dist_barrier(); /* the token cache: rank 0 builds it (below), then the others map it */
    char err[1024];
    DsOptions dopt;
    mtp_run_data_options(&t->run, &dopt);
    dopt.min_tokens = (size_t)t->cm.m.cfg.trunk.ctx + 1;
    dopt.tokenizer = t->cm.m.tokenizer;
    char cache[8192];
    if (a->token_cache) snprintf(cache, sizeof cache, "%s", a->token_cache);
    else if (ds_cache_default_path(cache, sizeof cache, &dopt, err, sizeof err)) { /* the shared folder */
        cli_error("train", "%s", err);
        return EXIT_FAIL;
    }
    if (strcmp(cache, "none") != 0) dopt.cache_path = cache;
    if (ds_load(&t->data, &dopt, err, sizeof err) || mtp_trainer_build(&t->tr, &t->cm.m, &a->opt, err, sizeof err)) {
        cli_error("train", "%s", err);
        return EXIT_FAIL;
    }
    if (dist_rank() == 0) dist_barrier(); /* the cache is whole: the other ranks may map it */
    /* MTP_ALLREDUCE=blocking|overlap: how the gradients' sum runs (README: measured both) */
    const char *how = getenv("MTP_ALLREDUCE");
    t->tr.overlap = how ? strcmp(how, "overlap") == 0 : MTP_ALLREDUCE_OVERLAP;
    if (a->resume) {
        mtp_trainer_restore(&t->tr, &t->cm.x);
        mtp_checkpoint_extra_free(&t->cm.x);
    }
    if (dist_rank() > 0) return 0; /* one writer: rank 0 logs, prints and saves */
    if (a->log && !(t->log = fopen(a->log, "a"))) {
        cli_error("train", "cannot open --log %s: %s", a->log, strerror(errno));
        return EXIT_FAIL;
    }
    if (t->log) log_run(t->log, a, t);
    train_announce(a, t);
    return 0;
}

static void log_step(FILE *log, int step, const MtpStepStats *s, int n, double dt, double flops, int ranks) {
    fprintf(log, "{\"type\":\"step\",\"step\":%d,\"loss\":", step);
    log_json_array(log, s->loss, n);
    fprintf(log, ",\"total_loss\":");
    log_json_number(log, s->total_loss);
    fprintf(log, ",\"lr\":%.6g,\"grad_norm\":", s->lr);
    log_json_number(log, s->grad_norm);
    fprintf(log, ",\"tokens\":%ld,\"step_s\":%.4f,\"tokens_per_s\":%.1f,\"matmul_flops\":%.0f", s->tokens, dt,
            s->tokens / dt, flops);
    /* with ranks: rank 0's wait for the gradients' sum, and its products (each rank computes 1/ranks) */
    if (ranks > 1) fprintf(log, ",\"allreduce_s\":%.4f", s->allreduce_s);
    fputs("}\n", log);
    fflush(log);
}

/* One live line on a terminal (redrawn at most 10 times a second), a line every ~10 s (and the
 * first and last) otherwise. */
static void show_progress(const TrainArgs *a, const Train *t, const MtpStepStats *s, double elapsed,
                          double *last_print) {
    const int step = t->tr.step;
    double now = mtp_now();
    if (!(now - *last_print >= (t->tty ? 0.1 : 10.0) || step == t->first_step + 1 || step == a->opt.steps)) return;
    char eta[32];
    fmt_duration(eta, sizeof eta, (a->opt.steps - step) * (elapsed / (step - t->first_step)));
    fprintf(stderr, "%sstep %d/%d | loss ", t->tty ? "\r\033[K" : "", step, a->opt.steps);
    print_losses(stderr, s->loss, t->cm.m.cfg.heads.n);
    fprintf(stderr, " | %.0f tok/s | ETA %s%s", t->tokens_done / elapsed, eta, t->tty ? "" : "\n");
    *last_print = now;
}

/* Steps until --steps or a signal, with progress, validation and --save-every checkpoints. */
static int train_run(const TrainArgs *a, Train *t) {
    struct sigaction sa = {0};
    sa.sa_handler = on_sigint;
    sa.sa_flags = SA_RESETHAND; /* a second Ctrl-C kills at once; saves are atomic, so nothing is lost */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    MtpTrainer *tr = &t->tr;
    t->t0 = mtp_now();
    t->first_step = tr->step;
    double last_print = 0;
    /* the ranks stop at the same step: each may get the signal in another one */
    while (tr->step < a->opt.steps && !(t->stop = dist_any(g_interrupted))) {
        double ts = mtp_now(), flops0 = mtp_matmul_flops();
        MtpStepStats s;
        int diverged = mtp_train_step(tr, &t->data, &s) != 0;
        double dt = mtp_now() - ts, step_flops = mtp_matmul_flops() - flops0;
        t->tokens_done += s.tokens;
        double elapsed = mtp_now() - t->t0;
        t->allreduce_s += s.allreduce_s;
        if (t->log) log_step(t->log, tr->step + diverged, &s, t->cm.m.cfg.heads.n, dt, step_flops, tr->ranks);
        if (diverged) { /* the same on every rank: they hold the same sums */
            if (t->tty) fputs("\r\033[K", stderr);
            cli_error("train", "training diverged at step %d (loss or gradient not finite; try a lower --lr): "
                      "stopped without saving, %s keeps its previous contents", tr->step + 1, a->out);
            return EXIT_FAIL;
        }
        if (tr->rank == 0) show_progress(a, t, &s, elapsed, &last_print);
        if (tr->rank == 0 && a->eval_every > 0 && tr->step % a->eval_every == 0 && tr->step < a->opt.steps)
            run_eval(tr, &t->data, a->eval_batches, t->log, t->tty);
        if (a->save_every > 0 && tr->step % a->save_every == 0 && tr->step < a->opt.steps &&
            save(a->out, tr, &t->run, t->tty))
            return EXIT_FAIL;
    }
    if (t->tty && tr->rank == 0) fputc('\n', stderr);
    return 0;
}

/* The last checkpoint: after a signal, or after a final validation. */
static int train_finish(const TrainArgs *a, Train *t) {
    MtpTrainer *tr = &t->tr;
    if (dist_any(t->stop || g_interrupted)) { /* a signal after the last step counts too, on every rank */
        if (save(a->out, tr, &t->run, 0)) return EXIT_FAIL;
        if (tr->rank > 0) return EXIT_INTERRUPTED;
        fprintf(stderr, "mtp train: interrupted at step %d; saved %s (continue with --resume %s)\n", tr->step, a->out,
                a->out);
        return EXIT_INTERRUPTED;
    }
    if (tr->step > t->first_step && tr->rank == 0) run_eval(tr, &t->data, a->eval_batches, t->log, 0);
    if (save(a->out, tr, &t->run, 0)) return EXIT_FAIL;
    if (tr->rank > 0) return 0;
    double elapsed = mtp_now() - t->t0;
    fprintf(stderr, "mtp train: saved %s at step %d (%.1f s, %.0f tok/s)\n", a->out, tr->step, elapsed,
            elapsed > 0 ? t->tokens_done / elapsed : 0.0);
    if (tr->ranks > 1 && elapsed > 0)
        fprintf(stderr, "mtp train: %d ranks: rank 0 waited %.2f s (%.1f%% of the run) for the gradients' sums\n",
                tr->ranks, t->allreduce_s, 100.0 * t->allreduce_s / elapsed);
    return 0;
}

int cmd_train(int argc, char **argv) {
    char err[256];
    if (dist_init(err, sizeof err)) { /* mpirun started it: join the other ranks */
        cli_error("train", "%s", err);
        return EXIT_FAIL;
    }
    TrainArgs a;
    int rc = train_parse(argc, argv, &a);
    if (rc == 0 && !a.help) rc = train_check(&a);
    Train t = {0};
    if (rc == 0 && !a.help) rc = a.resume ? train_resume(&a, &t) : train_new(&a, &t);
    if (rc == 0 && !a.help) rc = train_open(&a, &t);
    if (rc == 0 && !a.help) rc = train_run(&a, &t);
    if (rc == 0 && !a.help) rc = train_finish(&a, &t);
    if (t.log) fclose(t.log);
    /* a failure on one rank (its message printed) ends them all: the others may be waiting for it */
    if (rc && rc != EXIT_INTERRUPTED && dist_ranks() > 1) dist_abort(rc);
    mtp_trainer_free(&t.tr);
    ds_free(&t.data);
    cli_close_model(&t.cm);
    dist_finalize();
    return rc;
}
