/* cli_generate.c - `mtp generate`: continue a prompt, greedy or sampled, with head 1 alone or with the
 * extra heads drafting; the text streams to stdout. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "decode/decode.h"
#include "mtp/cli.h"

static const char *GENERATE_HELP =
    "usage: mtp generate --model FILE (--prompt TEXT | --prompt-file F) [options]\n"
    "\n"
    "Continue a prompt, streaming the text to stdout: greedy (head 1's most likely token each\n"
    "time) or sampled (--temperature > 0). With --lookahead K > 1 the extra heads draft K tokens\n"
    "at once and one forward pass verifies them: greedy output is the same as with --lookahead 1\n"
    "(blockwise parallel decoding); sampled output has exactly head 1's distribution (speculative\n"
    "sampling: a draft x is kept with probability min(1, p(x)/q(x)), else the token is drawn from\n"
    "max(0, p - q)). Either way it takes fewer forward passes.\n"
    "\n"
    "  --model FILE        checkpoint to decode with (required)\n"
    "  --prompt TEXT       the prompt (any bytes; encoded with the model's tokenizer)\n"
    "  --prompt-file F     read the prompt from a file instead\n"
    "  --max-tokens N      generate at most N tokens (default 256); stops early at the end of an\n"
    "                      example (EOS) or when the context is full (said on stderr)\n"
    "  --lookahead K       tokens drafted per forward pass, 1..heads (default: all heads);\n"
    "                      1 = plain decoding with head 1 alone\n"
    "  --tree N            draft a tree of N nodes per pass instead of a chain: several\n"
    "                      candidates of each head, verified in one pass; N from the\n"
    "                      checkpoint's calibration (mtp calibrate), pruned to the lookahead;\n"
    "                      0 = a chain. Default: with a calibration, the size with the most\n"
    "                      expected tokens per ms on this machine (passes of each size timed\n"
    "                      at load; --stats says which and why), else a chain. Greedy output\n"
    "                      is unchanged; sampling with a tree uses SpecInfer's rule and stays\n"
    "                      exactly head 1's distribution\n"
    "  --draft-min-p P     chains only (ignored with a tree): end a draft before the first head\n"
    "                      whose most likely token has probability below P (default 0.2; 0: off)\n"
    "  --temperature T     0 = greedy (default); > 0 samples from softmax(logits / T)\n"
    "  --top-k K           sample among the K most likely tokens only (default 0: all)\n"
    "  --top-p P           sample among the smallest set of tokens reaching probability P\n"
    "                      (default 1: all)\n"
    "  --seed S            seed of the sampling (default 1)\n"
    "  --threads P         threads (default: all cores)\n"
    "  --precision P       auto (default), fp32 or bf16 matrix products: bf16 weights stream\n"
    "                      half the bytes; the rest of the model stays fp32. auto times a pass\n"
    "                      of K rows (K the lookahead) in both and keeps bf16 unless fp32 is\n"
    "                      10% faster (fp32 on CPUs without bf16 products; --stats says\n"
    "                      which). Greedy output equals --lookahead 1's in the same\n"
    "                      precision: give one to compare outputs across lookaheads\n"
    "  --stats             print tokens/s, forward passes, tokens (and rows) per forward\n"
    "                      pass, each head's acceptance, the tree and what auto picked to\n"
    "                      stderr\n";

typedef struct {
    const char *model_path, *prompt, *prompt_file, *precision;
    int max_tokens, lookahead, threads, stats, help, top_k;
    float temperature, top_p;
    uint64_t seed;
    CliTreeArgs tree;
    CliPrecision prec; /* auto: picked when the engine is built */
} GenerateArgs;

typedef struct {
    CliModel cm;
    char *text;            /* --prompt-file's bytes */
    int32_t *tokens, *out; /* BOS + the prompt's tokens; the tokens generated */
    size_t n_prompt;
    int n;                 /* tokens generated */
    CliTree tr;            /* the draft tree, or a chain */
    DecodeStats st;
    double seconds;
} Generate;

/* ctx: the model's tokenizer (NULL: bytes); a token is at most DS_BPE_MAX_CHUNK bytes */
static void emit_bytes(void *ctx, const int32_t *tokens, int n) {
    uint8_t buf[HEADS_MAX * DS_BPE_MAX_CHUNK];
    size_t k = mtp_decode(ctx, buf, sizeof buf, tokens, (size_t)n);
    fwrite(buf, 1, k < sizeof buf ? k : sizeof buf, stdout);
    fflush(stdout);
}

/* Reads a whole file (at most max bytes) into a new buffer; NULL with a message on failure. */
static char *read_prompt_file(const char *path, size_t max, size_t *n, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "--prompt-file %s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(max + 1);
    size_t got = buf ? fread(buf, 1, max + 1, f) : 0;
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        snprintf(err, errlen, "--prompt-file %s: cannot read it", path);
        free(buf);
        return NULL;
    }
    if (got > max) {
        snprintf(err, errlen, "--prompt-file %s: longer than the model's context (%zu tokens)", path, max);
        free(buf);
        return NULL;
    }
    *n = got;
    return buf;
}

static int generate_parse(int argc, char **argv, GenerateArgs *a) {
    *a = (GenerateArgs){
        .max_tokens = 256, .precision = "auto", .top_p = 1.0f, .seed = 1, .tree = CLI_TREE_ARGS_DEFAULT};
    CliOpt opts[] = {{"--model", OPT_STR, &a->model_path, 0, 0, 0},
                     {"--prompt", OPT_STR, &a->prompt, 0, 0, 0},
                     {"--prompt-file", OPT_STR, &a->prompt_file, 0, 0, 0},
                     {"--max-tokens", OPT_INT, &a->max_tokens, 1, 1 << 24, 0},
                     {"--lookahead", OPT_INT, &a->lookahead, 1, HEADS_MAX, 0},
                     CLI_TREE_OPTS(&a->tree),
                     {"--temperature", OPT_FLOAT, &a->temperature, 0, 100, 0},
                     {"--top-k", OPT_INT, &a->top_k, 0, 1 << 30, 0},
                     {"--top-p", OPT_FLOAT, &a->top_p, 1e-6, 1, 0},
                     {"--seed", OPT_U64, &a->seed, 0, 0, 0},
                     {"--threads", OPT_INT, &a->threads, 1, 4096, 0},
                     {"--precision", OPT_STR, &a->precision, 0, 0, 0},
                     {"--stats", OPT_FLAG, &a->stats, 0, 0, 0},
                     {0}};
    if (cli_parse("generate", argc, argv, 2, opts, NULL, &a->help)) return EXIT_USAGE;
    if (a->help) return fputs(GENERATE_HELP, stdout), 0;
    if (cli_precision_auto("generate", a->precision, &a->prec)) return EXIT_USAGE;
    if (!a->model_path) {
        cli_error("generate", "--model FILE is required (see mtp generate --help)");
        return EXIT_USAGE;
    }
    if (a->temperature == 0 && (cli_opt(opts, "--top-k")->given || cli_opt(opts, "--top-p")->given)) {
        cli_error("generate", "--top-k and --top-p apply to sampling: give --temperature > 0 too");
        return EXIT_USAGE;
    }
    if (!a->prompt == !a->prompt_file) {
        cli_error("generate", "give exactly one of --prompt TEXT and --prompt-file F");
        return EXIT_USAGE;
    }
    return 0;
}

/* The model (a->lookahead resolved against its heads, the tree it asks for), and the prompt as
 * BOS + its tokens (as every training example starts), which must leave room for one token. */
static int generate_open(GenerateArgs *a, Generate *g) {
    const CliOpen how = {.path = a->model_path, .compute = 1, .threads = a->threads, .prec = a->prec.prec};
    int rc = cli_open_model("generate", &how, &g->cm);
    if (rc || (rc = cli_lookahead("generate", &a->lookahead, g->cm.m.cfg.heads.n)) ||
        (rc = cli_tree_plan("generate", a->model_path, &a->tree, &g->cm, a->lookahead, &g->tr)))
        return rc;
    const MtpModel *m = &g->cm.m;
    const int ctx = m->cfg.trunk.ctx;
    size_t n_bytes = a->prompt ? strlen(a->prompt) : 0;
    /* a token is at most DS_BPE_MAX_CHUNK bytes: a longer file cannot fit the context */
    size_t max_bytes = ((size_t)ctx - 1) * (m->tokenizer ? DS_BPE_MAX_CHUNK : 1);
    char err[512];
    if (a->prompt_file && !(g->text = read_prompt_file(a->prompt_file, max_bytes, &n_bytes, err, sizeof err))) {
        cli_error("generate", "%s", err);
        return EXIT_FAIL;
    }
    if (n_bytes == 0) {
        cli_error("generate", "the prompt is empty");
        return EXIT_USAGE;
    }
    const uint8_t *bytes = (const uint8_t *)(a->prompt ? a->prompt : g->text);
    g->tokens = malloc((n_bytes + 1) * sizeof(int32_t));
    if (g->tokens) {
        g->tokens[0] = DS_BOS;
        g->n_prompt = 1 + mtp_encode(m->tokenizer, g->tokens + 1, bytes, n_bytes);
        if (g->n_prompt > (size_t)ctx) {
            cli_error("generate", "the prompt is %zu tokens; the model's context is %d", g->n_prompt, ctx);
            return EXIT_USAGE;
        }
    }
    g->out = malloc((size_t)a->max_tokens * sizeof(int32_t));
    if (!g->tokens || !g->out) {
        cli_error("generate", "out of memory");
        return EXIT_FAIL;
    }
    return 0;
}

/* Greedy or sampled, the text streamed to stdout as it comes: all of the command's decoding. */
static int generate_run(GenerateArgs *a, Generate *g) {
    const MtpModel *m = &g->cm.m;
    DecodeState s = {0};
    char err[512];
    if (cli_build_engine(&s, mtp_decode_model(m), g->tr.max_rows, a->lookahead, &a->prec, err, sizeof err)) {
        cli_error("generate", "%s", err);
        decode_free(&s);
        return EXIT_FAIL;
    }
    int rc = cli_tree_pick("generate", &g->tr, &s, &g->cm.x.cal);
    if (rc) {
        decode_free(&s);
        return rc;
    }
    MtpRng rng;
    mtp_rng_seed(&rng, a->seed);
    const DecodeRequest req = {.prompt = g->tokens, .n_prompt = (int)g->n_prompt, .max_new = a->max_tokens,
                               .lookahead = a->lookahead, .eos = DS_EOS, .tree = cli_tree_request(&g->tr),
                               .draft_min_p = a->tree.draft_min_p, .emit = emit_bytes, .emit_ctx = m->tokenizer,
                               .sampling = {a->temperature, a->top_k, a->top_p}, .rng = &rng};
    double t0 = mtp_now();
    g->n = a->temperature > 0 ? decode_sample(&s, &req, g->out, &g->st) : decode_greedy(&s, &req, g->out, &g->st);
    g->seconds = mtp_now() - t0;
    if (g->n < 0) cli_error("generate", "%s", s.err);
    decode_free(&s);
    if (g->n >= 0) return 0;
    return EXIT_FAIL;
}

static void generate_report(const GenerateArgs *a, const Generate *g) {
    const DecodeStats *st = &g->st;
    if (isatty(STDOUT_FILENO)) fputc('\n', stdout);
    if (st->hit_context)
        fprintf(stderr, "mtp generate: stopped at the context length (%d tokens)\n", g->cm.m.cfg.trunk.ctx);
    if (!a->stats) return;
    char tree[64] = "";
    if (g->tr.use) snprintf(tree, sizeof tree, ", tree of %d node%s", g->tr.t.n, g->tr.t.n == 1 ? "" : "s");
    fprintf(stderr, "mtp generate: %d tokens in %.3f s (%.1f tokens/s; prefill %.3f s), lookahead %d%s\n", g->n,
            g->seconds, g->n / g->seconds, st->t_prefill, a->lookahead, tree);
    char why[512];
    if (a->prec.is_auto) {
        cli_precision_why(why, sizeof why, &a->prec);
        fprintf(stderr, "  precision auto: %s\n", why);
    }
    cli_tree_why(why, sizeof why, &g->tr, &g->cm.x.cal);
    fprintf(stderr, "  %s\n", why);
    fprintf(stderr, "  forward passes %ld, tokens per forward pass %.2f", st->forwards,
            st->forwards ? (double)g->n / st->forwards : 0.0);
    if (g->tr.use || a->tree.draft_min_p > 0) /* a chain's rows are its drafts: fewer only when cut */
        fprintf(stderr, ", rows per forward pass %.2f", st->forwards ? (double)st->rows / st->forwards : 0.0);
    fputc('\n', stderr);
    for (int j = 1; j < a->lookahead; j++)
        fprintf(stderr, "  head %d acceptance %.1f%% (%ld of %ld drafts)\n", j + 1,
                st->proposed[j] ? 100.0 * st->accepted[j] / st->proposed[j] : 0.0, st->accepted[j], st->proposed[j]);
}

int cmd_generate(int argc, char **argv) {
    GenerateArgs a;
    int rc = generate_parse(argc, argv, &a);
    if (rc || a.help) return rc;
    Generate g = {0};
    rc = generate_open(&a, &g);
    if (rc == 0) rc = generate_run(&a, &g);
    if (rc == 0) generate_report(&a, &g);
    free(g.text);
    free(g.tokens);
    free(g.out);
    cli_close_model(&g.cm);
    return rc;
}
