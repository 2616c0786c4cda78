/* fuzz_prompts.c - libFuzzer target: bench and calibrate prompt files (--prompts FILE, read by
 * cli_prompts_from_file in mtp/cli.c, linked in from the command line's own source).
 *
 * The input is the file: one prompt per line, or JSONL lines with a "question" or "prompt" field.
 * It is read under the byte tokenizer and under a BPE tokenizer (learned once at start on a fixed
 * text), at a context of 64. Every prompt must start with BOS, hold 1..ctx/2 tokens inside the
 * vocabulary; a file that fails, a one-line message. */
#include "mtp/cli.h"
#include "tests/fuzz/fuzz.h"

#define CTX 64

static DsBpe *bpe;
static CliPrompts prompts; /* 48 KB: not on the stack */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    static const char text[] = "Natalia sold clips to 48 of her friends in April, and then she sold half as many "
                               "clips in May. How many clips did Natalia sell altogether in April and May?\n"
                               "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72\n"
                               "{\"question\": \"the the the\", \"prompt\": \"then then\"}\n";
    char err[256];
    FUZZ_CHECK(ds_bpe_train(&bpe, (const uint8_t *)text, sizeof text - 1, 320, err, sizeof err) == 0, "%s", err);
    return 0;
}

static void read_prompts(const char *path, const DsBpe *tok) {
    char err[1024] = "";
    memset(&prompts, 0, sizeof prompts);
    if (cli_prompts_from_file(&prompts, tok, path, CTX, err, sizeof err)) fuzz_check_message(err);
    else FUZZ_CHECK(prompts.n >= 1, "no prompts and no error");
    FUZZ_CHECK(prompts.n <= CLI_MAX_PROMPTS, "%d prompts", prompts.n);
    const int vocab = mtp_tokenizer_vocab(tok);
    for (int i = 0; i < prompts.n; i++) {
        FUZZ_CHECK(prompts.len[i] >= 1 && prompts.len[i] <= CTX / 2, "prompt %d: %d tokens", i, prompts.len[i]);
        FUZZ_CHECK(prompts.tokens[i][0] == DS_BOS, "prompt %d does not start with BOS", i);
        for (int k = 1; k < prompts.len[i]; k++)
            FUZZ_CHECK(prompts.tokens[i][k] >= 0 && prompts.tokens[i][k] < vocab, "prompt %d: id %d", i,
                       prompts.tokens[i][k]);
    }
    cli_prompts_free(&prompts);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size);
    read_prompts(path, NULL);
    read_prompts(path, bpe);
    return 0;
}
