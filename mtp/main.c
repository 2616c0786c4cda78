/* main.c - the `mtp` command: its help, and dispatch to the subcommands. Each subcommand is in its
 * own cli_*.c (cmd_train in cli_train.c, ...), and what they share is in cli.c. */
#include <string.h>

#include "mtp/cli.h"

static const char *MAIN_HELP =
    "usage: mtp COMMAND [options]\n"
    "\n"
    "Train transformer language models with multi-token prediction (n output heads,\n"
    "head i predicts token t+i) on the CPU.\n"
    "\n"
    "commands:\n"
    "  train     train a model (or resume one) and write a checkpoint\n"
    "  eval      loss and accuracy of every head on validation data\n"
    "  info      print a checkpoint's configuration and parameter counts\n"
    "  generate  continue a prompt (greedy; the extra heads draft with --lookahead)\n"
    "  bench     decoding speed at each lookahead against lookahead 1\n"
    "  calibrate measure which draft trees pay on a model and store them in its checkpoint\n"
    "  tokenize  show how a model's tokenizer splits a text\n"
    "  star      self-train on the model's own verified chains of thought (STaR)\n"
    "  cache     list or clean the shared token caches of mtp train\n"
    "\n"
    "Run 'mtp COMMAND --help' for the options of a command.\n";

static const struct {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[1] is the name; its options start at argv[2] */
} COMMANDS[] = {
    {"train", cmd_train}, {"eval", cmd_eval},   {"info", cmd_info},
    {"generate", cmd_generate}, {"bench", cmd_bench}, {"tokenize", cmd_tokenize},
    {"calibrate", cmd_calibrate}, {"cache", cmd_cache}, {"star", cmd_star},
};

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        fputs(MAIN_HELP, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (strcmp(argv[1], COMMANDS[i].name) == 0) return COMMANDS[i].run(argc, argv);
    fprintf(stderr,
            "mtp: error: unknown command '%s' (commands: train, eval, info, generate, bench, calibrate, tokenize, star, cache; see "
            "mtp --help)\n",
            argv[1]);
    return EXIT_USAGE;
}
