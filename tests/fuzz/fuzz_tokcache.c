/* fuzz_tokcache.c - libFuzzer target: the token cache file (datasets/tokcache.c: its preamble,
 * msgpack header, staleness checks and data checks) as a run loads it, through ds_load with a
 * cache path, then the corpus built from it (corpus.c: the parts from the header's per-source
 * counts, batches sampled from them).
 *
 * The run: two fixed sources, a text file a.txt and a JSONL file b.jsonl (weight 0.5), written at
 * start into a fixed folder, $MTP_FUZZ_TOKCACHE_DIR or else /dev/shm/mtp-fuzz-tokcache (or
 * /tmp/mtp-fuzz-tokcache without /dev/shm), with a fixed modification time, the byte tokenizer,
 * the options of `mtp train` (--val-frac 0.1, a float) and ctx 16. A cache header must name the
 * same source paths, sizes and times to be trusted, so seeds.sh builds its seeds with `mtp train`
 * on these very files (it runs this fuzzer with -runs=0 first, to write them).
 *
 * The input is written at the cache path, cache.<pid> in that folder. A cache that is stale or
 * damaged is rebuilt by ds_load from the sources; that rebuild does not read the input, so it is
 * blocked here (a folder sits at the temp file's name, cache.<pid>.tmp.<pid>, and creating the
 * temp file fails at once) to keep each input fast. A cache that loads must give parts inside the
 * training tokens and batches of ids inside the vocabulary; one that fails, a one-line message. */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "tests/fuzz/fuzz.h"

#define CTX 16
#define MTIME_S 1000000000   /* the sources' fixed modification time */
#define MTIME_NS 123456789

static const char TEXT[] =
    "ROMEO: But, soft! what light through yonder window breaks?\n"
    "It is the east, and Juliet is the sun.\n"
    "Arise, fair sun, and kill the envious moon,\n"
    "Who is already sick and pale with grief,\n"
    "That thou her maid art far more fair than she:\n"
    "Be not her maid, since she is envious;\n"
    "Her vestal livery is but sick and green\n"
    "And none but fools do wear it; cast it off.\n";
static const char JSONL[] =
    "{\"question\": \"What is 12 + 7?\", \"answer\": \"12 + 7 = 19\\n#### 19\"}\n"
    "{\"question\": \"Natalia sold 48 clips in April and half as many in May. How many?\", "
    "\"answer\": \"48 / 2 = 24\\n48 + 24 = 72\\n#### 72\"}\n"
    "{\"text\": \"A line with only a text field.\\nAnd a second line.\"}\n"
    "{\"question\": \"Compute 3 * 4.\", \"answer\": \"3 * 4 = 12\\n#### 12\\n\"}\n"
    "\n"
    "{\"question\": \"\\u00e9t\\u00e9? \\ud83d\\ude00\", \"answer\": \"yes\\n#### 1\", \"extra\": [1, {\"a\": null}]}\n"
    "{\"question\": \"What is 100 - 1?\", \"answer\": \"#### 99\"}\n";

static char dir[256], cache[512], blocker[600];
static DsOptions opt;

/* path holds text with the fixed modification time (written beside it and renamed in, so that
   fuzzers running side by side never see it half-written). */
static void write_fixed(const char *path, const char *text) {
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.new.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    FUZZ_CHECK(f && fwrite(text, 1, strlen(text), f) == strlen(text) && fclose(f) == 0, "cannot write %s", tmp);
    const struct timespec t[2] = {{MTIME_S, MTIME_NS}, {MTIME_S, MTIME_NS}};
    FUZZ_CHECK(utimensat(AT_FDCWD, tmp, t, 0) == 0 && rename(tmp, path) == 0, "cannot set up %s", path);
}

static void cleanup(void) {
    unlink(cache);
    rmdir(blocker);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *env = getenv("MTP_FUZZ_TOKCACHE_DIR");
    struct stat st;
    if (env && *env) snprintf(dir, sizeof dir, "%s", env);
    else snprintf(dir, sizeof dir, "%s/mtp-fuzz-tokcache",
                  stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0 ? "/dev/shm"
                                                                                                  : "/tmp");
    FUZZ_CHECK(mkdir(dir, 0755) == 0 || errno == EEXIST, "cannot create %s", dir);
    ds_options_init(&opt);
    opt.n_sources = 2;
    snprintf(opt.sources[0].spec, DS_MAX_SPEC, "%s/a.txt", dir);
    snprintf(opt.sources[1].spec, DS_MAX_SPEC, "%s/b.jsonl", dir);
    opt.sources[0].weight = 1.0, opt.sources[1].weight = 0.5;
    write_fixed(opt.sources[0].spec, TEXT);
    write_fixed(opt.sources[1].spec, JSONL);
    opt.val_frac = (double)0.1f; /* as mtp train passes its --val-frac default (a float) */
    opt.min_tokens = CTX + 1;
    opt.quiet = 1;
    snprintf(cache, sizeof cache, "%s/cache.%ld", dir, (long)getpid());
    snprintf(blocker, sizeof blocker, "%s.tmp.%ld", cache, (long)getpid());
    FUZZ_CHECK(mkdir(blocker, 0755) == 0 || errno == EEXIST, "cannot create %s", blocker);
    opt.cache_path = cache;
    atexit(cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int fd = open(cache, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    FUZZ_CHECK(fd >= 0, "cannot write %s", cache);
    for (size_t done = 0; done < size;) {
        ssize_t w = write(fd, data + done, size - done);
        FUZZ_CHECK(w > 0, "cannot write %s", cache);
        done += (size_t)w;
    }
    close(fd);
    DsCorpus c;
    char err[2048] = "";
    if (ds_load(&c, &opt, err, sizeof err)) {
        fuzz_check_message(err);
        FUZZ_CHECK(c.train == NULL && c.val == NULL && c.map == NULL, "a failed load kept its tokens");
        return 0;
    }
    fuzz_note("loaded");
    FUZZ_CHECK(c.from_cache == 1, "from_cache %d (rebuilding is blocked)", c.from_cache);
    FUZZ_CHECK(c.n_parts == 2 && c.part_start[0] == 0 && c.part_start[2] == c.n_train, "parts");
    for (int i = 0; i < 2; i++)
        FUZZ_CHECK(c.part_start[i + 1] - c.part_start[i] >= CTX + 1 && c.part_start[i + 1] <= c.n_train,
                   "part %d: [%zu, %zu) of %zu", i, c.part_start[i], c.part_start[i + 1], c.n_train);
    FUZZ_CHECK(c.n_val >= CTX + 1, "%zu validation tokens", c.n_val);
    int32_t batch[4 * (CTX + 1)];
    MtpRng rng;
    mtp_rng_seed(&rng, 7);
    for (int round = 0; round < 4; round++) {
        ds_corpus_sample(batch, &c, 4, CTX + 1, &rng);
        for (int i = 0; i < 4 * (CTX + 1); i++)
            FUZZ_CHECK(batch[i] >= 0 && batch[i] < DS_BYTE_VOCAB && batch[i] != DS_PAD, "batch id %d", batch[i]);
    }
    for (size_t b = 0; ds_eval_batch(batch, c.val, c.n_val, 4, CTX + 1, b) > 0 && b < 64; b++)
        for (int i = 0; i < 4 * (CTX + 1); i++)
            FUZZ_CHECK(batch[i] >= 0 && batch[i] < DS_BYTE_VOCAB, "eval batch id %d", batch[i]);
    ds_free(&c);
    return 0;
}
