/* cli_generate.c - `mtp generate`: greedy decoding, single-head or with the extra heads drafting. */
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
    "  --temperature T     0 = greedy (default); > 0 samples from softmax(logits / T)\n"
    "  --top-k K           sample among the K most likely tokens only (default 0: all)\n"
    "  --top-p P           sample among the smallest set of tokens reaching probability P\n"
    "                      (default 1: all)\n"
    "  --seed S            seed of the sampling (default 1)\n"
    "  --threads P         threads (default: all cores)\n"
    "  --precision P       fp32 (default) or bf16 matrix products: bf16 weights stream half the\n"
    "                      bytes; the rest of the model stays fp32\n"
    "  --stats             print tokens/s, forward passes, tokens per forward pass and each\n"
    "                      head's acceptance to stderr\n";

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

int cmd_generate(int argc, char **argv) {
    const char *model_path = NULL, *prompt = NULL, *prompt_file = NULL;
    int max_tokens = 256, lookahead = 0, threads = 0, stats = 0, help = 0, top_k = 0;
    const char *precision = "fp32";
    MtpPrecision prec;
    float temperature = 0.0f, top_p = 1.0f;
    uint64_t seed = 1;
    CliOpt opts[] = {{"--model", OPT_STR, &model_path, 0, 0, 0},
                     {"--prompt", OPT_STR, &prompt, 0, 0, 0},
                     {"--prompt-file", OPT_STR, &prompt_file, 0, 0, 0},
                     {"--max-tokens", OPT_INT, &max_tokens, 1, 1 << 24, 0},
                     {"--lookahead", OPT_INT, &lookahead, 1, HEADS_MAX, 0},
                     {"--temperature", OPT_FLOAT, &temperature, 0, 100, 0},
                     {"--top-k", OPT_INT, &top_k, 0, 1 << 30, 0},
                     {"--top-p", OPT_FLOAT, &top_p, 1e-6, 1, 0},
                     {"--seed", OPT_U64, &seed, 0, 0, 0},
                     {"--threads", OPT_INT, &threads, 1, 4096, 0},
                     {"--precision", OPT_STR, &precision, 0, 0, 0},
                     {"--stats", OPT_FLAG, &stats, 0, 0, 0},
                     {0}};
    if (cli_parse("generate", argc, argv, 2, opts, NULL, &help)) return EXIT_USAGE;
    if (help) return fputs(GENERATE_HELP, stdout), 0;
    if (cli_precision("generate", precision, &prec)) return EXIT_USAGE;
    if (!model_path) {
        cli_error("generate", "--model FILE is required (see mtp generate --help)");
        return EXIT_USAGE;
    }
    if (temperature == 0 && (cli_opt(opts, "--top-k")->given || cli_opt(opts, "--top-p")->given)) {
        cli_error("generate", "--top-k and --top-p apply to sampling: give --temperature > 0 too");
        return EXIT_USAGE;
    }
    if (!prompt == !prompt_file) {
        cli_error("generate", "give exactly one of --prompt TEXT and --prompt-file F");
        return EXIT_USAGE;
    }
    char err[512];
    MtpModel m;
    MtpCheckpointExtra x;
    if (mtp_checkpoint_load(model_path, &m, &x, err, sizeof err)) {
        cli_error("generate", "%s", err);
        return EXIT_FAIL;
    }
    mtp_checkpoint_extra_free(&x);
    const int n_heads = m.cfg.heads.n, ctx = m.cfg.trunk.ctx;
    int rc = EXIT_FAIL;
    char *text = NULL;
    int32_t *tokens = NULL, *out = NULL;
    DecodeState s = {0};
    if (!lookahead) lookahead = n_heads;
    if (lookahead > n_heads) {
        cli_error("generate", "--lookahead %d is more than the model's %d heads", lookahead, n_heads);
        rc = EXIT_USAGE;
        goto done;
    }
    size_t n_bytes = prompt ? strlen(prompt) : 0;
    /* a token is at most DS_BPE_MAX_CHUNK bytes: a longer file cannot fit the context */
    size_t max_bytes = ((size_t)ctx - 1) * (m.tokenizer ? DS_BPE_MAX_CHUNK : 1);
    if (prompt_file && !(text = read_prompt_file(prompt_file, max_bytes, &n_bytes, err, sizeof err))) {
        cli_error("generate", "%s", err);
        goto done;
    }
    const uint8_t *bytes = (const uint8_t *)(prompt ? prompt : text);
    if (n_bytes == 0) {
        cli_error("generate", "the prompt is empty");
        rc = EXIT_USAGE;
        goto done;
    }
    /* the prompt is BOS + its tokens (as every training example starts); it must leave room for one token */
    tokens = malloc((n_bytes + 1) * sizeof(int32_t));
    size_t n_prompt = tokens ? 1 + mtp_encode(m.tokenizer, tokens + 1, bytes, n_bytes) : 0;
    if (tokens && n_prompt > (size_t)ctx) {
        cli_error("generate", "the prompt is %zu tokens; the model's context is %d", n_prompt, ctx);
        rc = EXIT_USAGE;
        goto done;
    }
    out = malloc((size_t)max_tokens * sizeof(int32_t));
    if (!tokens || !out || mtp_core_init(threads, prec, err, sizeof err) ||
        decode_build(&s, mtp_decode_model(&m), lookahead, lookahead, err, sizeof err)) {
        cli_error("generate", "%s", tokens && out ? err : "out of memory");
        goto done;
    }
    tokens[0] = DS_BOS;
    DecodeStats st;
    DecodeRequest req = {.prompt = tokens, .n_prompt = (int)n_prompt, .max_new = max_tokens, .lookahead = lookahead,
                         .eos = DS_EOS, .emit = emit_bytes, .emit_ctx = m.tokenizer};
    double t0 = mtp_now();
    int n;
    if (temperature > 0) {
        MtpRng rng;
        mtp_rng_seed(&rng, seed);
        req.sampling = (DecodeSampling){temperature, top_k, top_p}, req.rng = &rng;
        n = decode_sample(&s, &req, out, &st);
        if (n < 0) {
            cli_error("generate", "out of memory");
            goto done;
        }
    } else {
        n = decode_greedy(&s, &req, out, &st);
    }
    double dt = mtp_now() - t0;
    if (isatty(STDOUT_FILENO)) fputc('\n', stdout);
    if (st.hit_context) fprintf(stderr, "mtp generate: stopped at the context length (%d tokens)\n", ctx);
    if (stats) {
        fprintf(stderr, "mtp generate: %d tokens in %.3f s (%.1f tokens/s; prefill %.3f s), lookahead %d\n", n, dt,
                n / dt, st.t_prefill, lookahead);
        fprintf(stderr, "  forward passes %ld, tokens per forward pass %.2f\n", st.forwards,
                st.forwards ? (double)n / st.forwards : 0.0);
        for (int j = 1; j < lookahead; j++)
            fprintf(stderr, "  head %d acceptance %.1f%% (%ld of %ld drafts)\n", j + 1,
                    st.proposed[j] ? 100.0 * st.accepted[j] / st.proposed[j] : 0.0, st.accepted[j], st.proposed[j]);
    }
    rc = 0;
done:
    decode_free(&s);
    free(text);
    free(tokens);
    free(out);
    mtp_model_free(&m);
    mtp_core_shutdown();
    return rc;
}
