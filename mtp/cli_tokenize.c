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

static int learn(const char *spec, const CliData *d, float val_frac, int difficulty, uint64_t seed, const char *out) {
    char err[1024];
    MtpRunInfo run = {.val_frac = val_frac, .data_seed = seed, .difficulty = difficulty};
    if (cli_data_apply("tokenize", d, &run)) return EXIT_USAGE;
    if (!run.n_sources || !out) {
        cli_error("tokenize", "--learn needs --data SPEC and --out FILE");
        return EXIT_USAGE;
    }
    DsBpe *t = NULL;
    int rc = cli_learn_bpe("tokenize", "--learn", spec, &run, &t);
    if (rc == 0 && mtp_tokenizer_save(out, t, err, sizeof err)) {
        cli_error("tokenize", "%s", err);
        rc = EXIT_FAIL;
    }
    if (rc == 0) fprintf(stderr, "mtp tokenize: wrote %s\n", out);
    ds_bpe_free(t);
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *tok_path = NULL, *text = NULL, *file = NULL, *learn_spec = NULL, *out = NULL;
    CliData data = {0};
    float val_frac = 0.1f;
    int difficulty = 0, json = 0, help = 0;
    uint64_t seed = 1;
    CliOpt opts[] = {{"--model", OPT_STR, &model, 0, 0, 0},
                     {"--tokenizer", OPT_STR, &tok_path, 0, 0, 0},
                     {"--text", OPT_STR, &text, 0, 0, 0},
                     {"--file", OPT_STR, &file, 0, 0, 0},
                     {"--json", OPT_FLAG, &json, 0, 0, 0},
                     {"--learn", OPT_STR, &learn_spec, 0, 0, 0},
                     CLI_DATA_OPTS(&data),
                     {"--val-frac", OPT_FLOAT, &val_frac, 1e-6, 0.999999, 0},
                     {"--difficulty", OPT_INT, &difficulty, 0, DS_ARITH_MAX_DIFFICULTY, 0},
                     {"--data-seed", OPT_U64, &seed, 0, 0, 0},
                     {"--out", OPT_STR, &out, 0, 0, 0},
                     {0}};
    if (cli_parse("tokenize", argc, argv, 2, opts, NULL, &help)) return EXIT_USAGE;
    if (help) return fputs(TOKENIZE_HELP, stdout), 0;
    if (learn_spec) return learn(learn_spec, &data, val_frac, difficulty, seed, out);
    if (!model == !tok_path) {
        cli_error("tokenize", "give one of --model FILE or --tokenizer FILE (see mtp tokenize --help)");
        return EXIT_USAGE;
    }
    if (!text == !file) {
        cli_error("tokenize", "give one of --text T or --file F");
        return EXIT_USAGE;
    }
    char err[1024];
    DsBpe *t = NULL;
    if (mtp_tokenizer_load(model ? model : tok_path, &t, err, sizeof err)) {
        cli_error("tokenize", "%s", err);
        return EXIT_FAIL;
    }
    uint8_t *bytes = (uint8_t *)text;
    size_t n = text ? strlen(text) : 0;
    if (file) {
        FILE *f = fopen(file, "rb");
        bytes = NULL;
        /* a debugging aid: files up to 64 MiB */
        if (f && fseek(f, 0, SEEK_END) == 0) {
            long size = ftell(f);
            if (size >= 0 && size <= (64l << 20) && fseek(f, 0, SEEK_SET) == 0 && (bytes = malloc((size_t)size + 1)))
                n = fread(bytes, 1, (size_t)size, f);
            if (size > (64l << 20)) snprintf(err, sizeof err, "--file %s: larger than 64 MiB", file);
            else snprintf(err, sizeof err, "--file %s: cannot read it", file);
        } else snprintf(err, sizeof err, "--file %s: cannot open it", file);
        if (f) fclose(f);
        if (!bytes) {
            cli_error("tokenize", "%s", err);
            ds_bpe_free(t);
            return EXIT_FAIL;
        }
    }
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids) {
        cli_error("tokenize", "out of memory");
        ds_bpe_free(t);
        if (file) free(bytes);
        return EXIT_FAIL;
    }
    size_t k = mtp_encode(t, ids, bytes, n);
    if (json) printf("{\"tokens\":[");
    for (size_t i = 0; json && i < k; i++) printf("%s%d", i ? "," : "", ids[i]);
    if (json) printf("],\"pieces\":[");
    for (size_t i = 0; i < k; i++) {
        const uint8_t *b = (const uint8_t *)"";
        uint8_t one;
        int len;
        if (t) len = ds_bpe_token_bytes(t, ids[i], &b);
        else one = (uint8_t)ids[i], b = &one, len = 1;
        if (json) {
            printf("%s\"", i ? "," : "");
            put_escaped(stdout, b, len, 1);
            putchar('"');
        } else {
            printf("%6d  \"", ids[i]);
            put_escaped(stdout, b, len, 0);
            printf("\"\n");
        }
    }
    if (json) printf("],\"bytes\":%zu}\n", n);
    else printf("%zu bytes, %zu tokens, %.2f bytes per token (%s tokenizer, vocabulary %d)\n", n, k,
                k ? (double)n / (double)k : 0.0, t ? "BPE" : "byte", mtp_tokenizer_vocab(t));
    free(ids);
    if (file) free(bytes);
    ds_bpe_free(t);
    return 0;
}
