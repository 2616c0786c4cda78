/* cli_tokenize.c - `mtp tokenize`: show how a tokenizer splits a text, or learn a BPE tokenizer
 * into a tokenizer file. */
#include <stdlib.h>
#include <string.h>

#include "mtp/cli.h"

static const char *TOKENIZE_HELP =
    "usage: mtp tokenize (--model FILE | --tokenizer FILE) (--text T | --file F) [--json]\n"
    "       mtp tokenize --learn bpe:N --data SPEC [--data ...] --out FILE\n"
    "\n"
    "Show the tokens of a text: each token's id and its bytes (C escapes for the rest), then\n"
    "the count and bytes per token. The text is encoded as it is, without the BOS that\n"
    "training and generation put first. --learn learns a byte-level BPE tokenizer of N tokens\n"
    "on the training split of the data (as mtp train --tokenizer bpe:N does) and writes it as\n"
    "a tokenizer file for mtp train --tokenizer FILE.\n"
    "\n"
    "  --model FILE        a checkpoint: use its tokenizer\n"
    "  --tokenizer FILE    a tokenizer file (or a checkpoint)\n"
    "  --text T            the text to encode\n"
    "  --file F            ... or a file's bytes\n"
    "  --json              print {\"tokens\":[ids],\"pieces\":[strings],\"bytes\":N}\n"
    "  --learn bpe:N       learn a tokenizer (N from 257 to 65536)\n"
    "  --data SPEC[:W]     its training data, as in mtp train (repeatable)\n"
    "  --fields, --skip-bad-lines, --val-frac F, --difficulty N, --data-seed S: as in mtp train\n"
    "  --out FILE          the tokenizer file to write\n";

/* bytes as a C string body: printable ASCII as is, the rest escaped */
static void put_escaped(FILE *f, const uint8_t *b, int n, int json) {
    for (int i = 0; i < n; i++) {
        uint8_t c = b[i];
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c == '\n') fputs("\\n", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c == '\r') fputs("\\r", f);
        else if (c >= 0x20 && c < 0x7f) fputc(c, f);
        else if (json) fprintf(f, "\\u%04x", c); /* JSON strings are text: one code point per byte */
        else fprintf(f, "\\x%02x", c);
    }
}

typedef struct {
    const char *model, *tok_path, *text, *file, *learn_spec, *out;
    CliData data;
    double val_frac;
    int difficulty, json, help;
    uint64_t seed;
} TokenizeArgs;

typedef struct {
    DsBpe *tok;      /* NULL: bytes */
    uint8_t *bytes;  /* --file's bytes (NULL with --text) */
    int32_t *ids;
    size_t n, k;     /* bytes, tokens */
} Tokenize;

static int tokenize_parse(int argc, char **argv, TokenizeArgs *a) {
    *a = (TokenizeArgs){.val_frac = 0.1, .seed = 1};
    CliOpt opts[] = {{"--model", OPT_STR, &a->model, 0, 0, 0},
                     {"--tokenizer", OPT_STR, &a->tok_path, 0, 0, 0},
                     {"--text", OPT_STR, &a->text, 0, 0, 0},
                     {"--file", OPT_STR, &a->file, 0, 0, 0},
                     {"--json", OPT_FLAG, &a->json, 0, 0, 0},
                     {"--learn", OPT_STR, &a->learn_spec, 0, 0, 0},
                     CLI_DATA_OPTS(&a->data),
                     {"--val-frac", OPT_DOUBLE, &a->val_frac, 1e-6, 0.999999, 0},
                     {"--difficulty", OPT_INT, &a->difficulty, 0, DS_ARITH_MAX_DIFFICULTY, 0},
                     {"--data-seed", OPT_U64, &a->seed, 0, 0, 0},
                     {"--out", OPT_STR, &a->out, 0, 0, 0},
                     {0}};
    if (cli_parse("tokenize", argc, argv, 2, opts, NULL, &a->help)) return EXIT_USAGE;
    if (a->help) return fputs(TOKENIZE_HELP, stdout), 0;
    return 0;
}

/* --learn: a BPE tokenizer learned on the data, written to --out. */
static int tokenize_learn(const TokenizeArgs *a) {
    char err[1024];
    MtpRunInfo run = {.val_frac = a->val_frac, .data_seed = a->seed, .difficulty = a->difficulty};
    if (cli_data_apply("tokenize", &a->data, &run)) return EXIT_USAGE;
    if (!run.n_sources || !a->out) {
        cli_error("tokenize", "--learn needs --data SPEC and --out FILE");
        return EXIT_USAGE;
    }
    DsBpe *t = NULL;
    int rc = cli_learn_bpe("tokenize", "--learn", a->learn_spec, &run, &t);
    if (rc == 0 && mtp_tokenizer_save(a->out, t, err, sizeof err)) {
        cli_error("tokenize", "%s", err);
        rc = EXIT_FAIL;
    }
    if (rc == 0) fprintf(stderr, "mtp tokenize: wrote %s\n", a->out);
    ds_bpe_free(t);
    return rc;
}

/* --file's bytes, a debugging aid: files up to 64 MiB. NULL after printing the error. */
static uint8_t *read_file(const char *path, size_t *n) {
    char err[1024];
    FILE *f = fopen(path, "rb");
    uint8_t *bytes = NULL;
    if (f && fseek(f, 0, SEEK_END) == 0) {
        long size = ftell(f);
        if (size >= 0 && size <= (64l << 20) && fseek(f, 0, SEEK_SET) == 0 && (bytes = malloc((size_t)size + 1)))
            *n = fread(bytes, 1, (size_t)size, f);
        if (size > (64l << 20)) snprintf(err, sizeof err, "--file %s: larger than 64 MiB", path);
        else snprintf(err, sizeof err, "--file %s: cannot read it", path);
    } else snprintf(err, sizeof err, "--file %s: cannot open it", path);
    if (f) fclose(f);
    if (!bytes) cli_error("tokenize", "%s", err);
    return bytes;
}

/* The tokenizer, the text, and room for its tokens. */
static int tokenize_open(const TokenizeArgs *a, Tokenize *t) {
    if (!a->model == !a->tok_path) {
        cli_error("tokenize", "give one of --model FILE or --tokenizer FILE (see mtp tokenize --help)");
        return EXIT_USAGE;
    }
    if (!a->text == !a->file) {
        cli_error("tokenize", "give one of --text T or --file F");
        return EXIT_USAGE;
    }
    char err[1024];
    if (mtp_tokenizer_load(a->model ? a->model : a->tok_path, &t->tok, err, sizeof err)) {
        cli_error("tokenize", "%s", err);
        return EXIT_FAIL;
    }
    t->n = a->text ? strlen(a->text) : 0;
    if (a->file && !(t->bytes = read_file(a->file, &t->n))) return EXIT_FAIL;
    if (!(t->ids = malloc((t->n ? t->n : 1) * sizeof *t->ids))) {
        cli_error("tokenize", "out of memory");
        return EXIT_FAIL;
    }
    return 0;
}

static void tokenize_report(const TokenizeArgs *a, const Tokenize *t) {
    const int json = a->json;
    if (json) printf("{\"tokens\":[");
    for (size_t i = 0; json && i < t->k; i++) printf("%s%d", i ? "," : "", t->ids[i]);
    if (json) printf("],\"pieces\":[");
    for (size_t i = 0; i < t->k; i++) {
        const uint8_t *b = (const uint8_t *)"";
        uint8_t one;
        int len;
        if (t->tok) len = ds_bpe_token_bytes(t->tok, t->ids[i], &b);
        else one = (uint8_t)t->ids[i], b = &one, len = 1;
        if (json) {
            printf("%s\"", i ? "," : "");
            put_escaped(stdout, b, len, 1);
            putchar('"');
        } else {
            printf("%6d  \"", t->ids[i]);
            put_escaped(stdout, b, len, 0);
            printf("\"\n");
        }
    }
    if (json) printf("],\"bytes\":%zu}\n", t->n);
    else printf("%zu bytes, %zu tokens, %.2f bytes per token (%s tokenizer, vocabulary %d)\n", t->n, t->k,
                t->k ? (double)t->n / (double)t->k : 0.0, t->tok ? "BPE" : "byte", mtp_tokenizer_vocab(t->tok));
}

int cmd_tokenize(int argc, char **argv) {
    TokenizeArgs a;
    int rc = tokenize_parse(argc, argv, &a);
    if (rc || a.help) return rc;
    if (a.learn_spec) return tokenize_learn(&a);
    Tokenize t = {0};
    rc = tokenize_open(&a, &t);
    if (rc == 0) {
        t.k = mtp_encode(t.tok, t.ids, t.bytes ? t.bytes : (const uint8_t *)a.text, t.n);
        tokenize_report(&a, &t);
    }
    free(t.ids);
    free(t.bytes);
    ds_bpe_free(t.tok);
    return rc;
}
