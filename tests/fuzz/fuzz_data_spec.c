/* fuzz_data_spec.c - libFuzzer target: the `--data SPEC[:WEIGHT]` arguments (ds_source_parse in
 * datasets/corpus.c) as the command line takes them: the option parser of mtp/cli.c (cli_parse,
 * linked in from the command line's own source) with the corpus options train, eval and tokenize
 * share (--data, repeatable; --fields; --skip-bad-lines), then cli_data_apply, which parses each
 * spec and the field names into the run, then the corpus options a run gives (mtp_run_data_options).
 *
 * The input is the argument list, one argument per line (up to 40), after "mtp train". A list
 * that is accepted must give sources with a non-empty spec that fits, a weight > 0 and finite, and
 * the fields that fit; the messages of a refused one go to /dev/null (the command line prints
 * them on stderr). Specs are stat()ed, as the command line does (a weight suffix is part of a path
 * that exists), but no file is opened. */
#include <math.h>

#include "datasets/sources_internal.h"
#include "mtp/cli.h"
#include "tests/fuzz/fuzz.h"

#define MAX_ARGS 40

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size + 1);
    FUZZ_CHECK(buf != NULL, "out of memory");
    memcpy(buf, data, size);
    buf[size] = 0;
    char *argv[MAX_ARGS + 3] = {"mtp", "train"};
    int argc = 2;
    for (char *p = buf; argc < MAX_ARGS + 2;) {
        argv[argc++] = p;
        char *nl = memchr(p, '\n', (size_t)(buf + size - p));
        if (!nl) break;
        *nl = 0;
        p = nl + 1;
    }
    argv[argc] = NULL;

    CliData d = {0};
    CliOpt opts[] = {CLI_DATA_OPTS(&d), {0}};
    const char *positional = NULL;
    int help = 0;
    MtpRunInfo run;
    memset(&run, 0, sizeof run);
    run.val_frac = 0.1;
    fuzz_quiet_begin();
    int rc = cli_parse("train", argc, argv, 2, opts, &positional, &help);
    if (rc == 0 && !help) rc = cli_data_apply("train", &d, &run);
    fuzz_quiet_end();
    if (rc == 0 && !help) {
        FUZZ_CHECK(run.n_sources == d.data.n && run.n_sources <= DS_MAX_SOURCES, "%d sources", run.n_sources);
        for (int i = 0; i < run.n_sources; i++) {
            const DsSource *s = &run.sources[i];
            size_t n = strnlen(s->spec, sizeof s->spec);
            FUZZ_CHECK(n >= 1 && n < sizeof s->spec, "spec %d of %zu bytes", i, n);
            FUZZ_CHECK(s->weight > 0 && isfinite(s->weight), "weight %g", s->weight);
            FUZZ_CHECK(strncmp(d.data.v[i], s->spec, n) == 0, "spec is not a prefix of its argument");
            (void)ds_source_kind(s->spec);
        }
        FUZZ_CHECK(strnlen(run.jsonl_question, 64) < 64 && strnlen(run.jsonl_answer, 64) < 64 &&
                       strnlen(run.jsonl_text, 64) < 64, "field names");
        DsOptions o;
        int n = mtp_run_data_options(&run, &o);
        FUZZ_CHECK(n == run.n_sources, "%d options sources for %d", n, run.n_sources);
    }
    free(buf);
    return 0;
}
