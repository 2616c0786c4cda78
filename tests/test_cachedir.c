/* test_cachedir.c - the shared token cache folder (ds.h): the key names a cache by exactly what
 * decides its tokens (and nothing else), the folder follows XDG, the names, and ds_cache_inspect's
 * states (current, stale, damaged, foreign) on real caches built by ds_load. */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/ds.h"
#include "test.h"

static char g_dir[64] = "/tmp/test_cachedir_XXXXXX";

static char *path_in(char *out, const char *name) {
    snprintf(out, 256, "%s/%s", g_dir, name);
    return out;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return;
    for (int i = 0; i < 400; i++) fputs(text, f);
    fclose(f);
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) { return remove(p); }

/* Every field the cache header checks changes the key; fields that do not decide the tokens
   (weights, min_tokens, quiet, the cache path) and another name for the same file do not. */
static void test_key(void) {
    char a[256], b[256], real[512];
    path_in(a, "a.txt");
    path_in(b, "b.jsonl");
    write_text(a, "some text for the key\n");
    write_text(b, "{\"question\":\"q\",\"answer\":\"#### 1\"}\n");
    DsOptions o;
    ds_options_init(&o);
    o.spec = a;
    const uint64_t k0 = ds_cache_key(&o);
    DsOptions p = o;
    p.n_sources = 1, p.spec = NULL;
    snprintf(p.sources[0].spec, DS_MAX_SPEC, "%s", a);
    p.sources[0].weight = 3.0;
    p.min_tokens = 1000, p.quiet = 1, p.cache_path = "/elsewhere";
    CHECK_MSG(ds_cache_key(&p) == k0, "the spec shorthand, a weight, min_tokens, quiet, the cache path");
    char cwd[256];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    CHECK(chdir(g_dir) == 0);
    p.n_sources = 0, p.spec = "a.txt";
    CHECK_MSG(ds_cache_key(&p) == k0, "a relative name of the same file");
    snprintf(real, sizeof real, "%s/./a.txt", g_dir);
    p.spec = real;
    CHECK_MSG(ds_cache_key(&p) == k0, "a/./b names the same file");
    CHECK(chdir(cwd) == 0);

    p = o, p.val_frac = 0.2;
    CHECK_MSG(ds_cache_key(&p) != k0, "val_frac");
    p = o, p.val_only = 1;
    CHECK_MSG(ds_cache_key(&p) != k0, "val_only");
    p = o, p.spec = b;
    CHECK_MSG(ds_cache_key(&p) != k0, "another file");
    /* builtin:arith's seed and difficulty only matter where it is a source; so the JSONL fields */
    p = o, p.seed = 7, p.difficulty = 3, p.jsonl.question = "q";
    CHECK_MSG(ds_cache_key(&p) == k0, "seed, difficulty and JSONL fields of a text file");
    DsOptions ar;
    ds_options_init(&ar);
    ar.spec = "builtin:arith";
    const uint64_t ka = ds_cache_key(&ar);
    p = ar, p.seed = 2;
    CHECK_MSG(ds_cache_key(&p) != ka, "arith seed");
    p = ar, p.difficulty = 2;
    CHECK_MSG(ds_cache_key(&p) != ka, "arith difficulty");
    DsOptions js;
    ds_options_init(&js);
    js.spec = b;
    const uint64_t kj = ds_cache_key(&js);
    p = js, p.jsonl.question = "prompt";
    CHECK_MSG(ds_cache_key(&p) != kj, "JSONL question field");
    p = js, p.jsonl.skip_bad_lines = 1;
    CHECK_MSG(ds_cache_key(&p) != kj, "JSONL bad-line policy");
    /* two sources: order matters (the training array is source after source) */
    DsOptions two;
    ds_options_init(&two);
    two.n_sources = 2;
    snprintf(two.sources[0].spec, DS_MAX_SPEC, "%s", a);
    snprintf(two.sources[1].spec, DS_MAX_SPEC, "builtin:arith");
    two.sources[0].weight = two.sources[1].weight = 1;
    DsOptions swapped = two;
    snprintf(swapped.sources[0].spec, DS_MAX_SPEC, "builtin:arith");
    snprintf(swapped.sources[1].spec, DS_MAX_SPEC, "%s", a);
    CHECK_MSG(ds_cache_key(&two) != ds_cache_key(&swapped), "source order");
    CHECK_MSG(ds_cache_key(&two) != k0 && ds_cache_key(&two) != ka, "a mix is neither of its sources");
}

static void test_dir(void) {
    char dir[512], err[512], want[512];
    setenv("XDG_CACHE_HOME", "/some/where", 1);
    CHECK(ds_cache_dir(dir, sizeof dir, 0, err, sizeof err) == 0 && strcmp(dir, "/some/where/mtp/tokens") == 0);
    setenv("HOME", "/home/me", 1);
    setenv("XDG_CACHE_HOME", "relative", 1);
    CHECK(ds_cache_dir(dir, sizeof dir, 0, err, sizeof err) == 0 && strcmp(dir, "/home/me/.cache/mtp/tokens") == 0);
    unsetenv("XDG_CACHE_HOME");
    CHECK(ds_cache_dir(dir, sizeof dir, 0, err, sizeof err) == 0 && strcmp(dir, "/home/me/.cache/mtp/tokens") == 0);
    unsetenv("HOME");
    CHECK(ds_cache_dir(dir, sizeof dir, 0, err, sizeof err) == -1 && strstr(err, "no folder for the token cache"));
    /* created with its parents, private */
    snprintf(want, sizeof want, "%s/x/y", g_dir);
    setenv("XDG_CACHE_HOME", want, 1);
    CHECK(ds_cache_dir(dir, sizeof dir, 1, err, sizeof err) == 0);
    struct stat st;
    CHECK(stat(dir, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);
    DsOptions o;
    ds_options_init(&o);
    o.spec = "builtin:arith";
    CHECK(ds_cache_default_path(dir, sizeof dir, &o, err, sizeof err) == 0);
    const char *name = strrchr(dir, '/') + 1;
    CHECK_MSG(ds_cache_is_cache_name(name) && strtoull(name, NULL, 16) == ds_cache_key(&o), "%s", dir);
    char tiny[8];
    CHECK(ds_cache_default_path(tiny, sizeof tiny, &o, err, sizeof err) == -1); /* too long: an error, not a cut */

    CHECK(ds_cache_is_cache_name("0123456789abcdef.tokens"));
    CHECK(!ds_cache_is_cache_name("0123456789ABCDEF.tokens")); /* we write lower case only */
    CHECK(!ds_cache_is_cache_name("0123456789abcde.tokens"));
    CHECK(!ds_cache_is_cache_name("0123456789abcdef.tokens.tmp.12"));
    CHECK(!ds_cache_is_cache_name("0123456789abcdef0.tokens"));
    CHECK(!ds_cache_is_cache_name(""));
}

static void test_inspect(void) {
    char src[256], cache[256], other[256], err[512];
    path_in(src, "insp.txt");
    path_in(cache, "insp.tokens");
    write_text(src, "the quick brown fox jumps over the lazy dog\n");
    DsOptions o;
    ds_options_init(&o);
    o.spec = src, o.cache_path = cache, o.quiet = 1;
    DsCorpus c;
    CHECK(ds_load(&c, &o, err, sizeof err) == 0);
    DsCacheInfo *in = malloc(sizeof *in);
    if (!in) return;
    CHECK(ds_cache_inspect(cache, in, err, sizeof err) == 0);
    CHECK_MSG(in->status == DS_CACHE_CURRENT, "status %d: %s", in->status, in->reason);
    CHECK(in->n_sources == 1 && strcmp(in->spec[0], src) == 0);
    CHECK(in->train_tokens == c.n_train && in->val_tokens == c.n_val && in->vocab == DS_BYTE_VOCAB);
    CHECK(in->tokenizer_hash == ds_tokenizer_hash(NULL));
    struct stat st;
    CHECK(stat(cache, &st) == 0 && in->bytes == (uint64_t)st.st_size);
    ds_free(&c);

    /* the source changed: stale, naming it */
    FILE *f = fopen(src, "a");
    if (f) fputs("one more line\n", f), fclose(f);
    CHECK(ds_cache_inspect(cache, in, err, sizeof err) == 0);
    CHECK_MSG(in->status == DS_CACHE_STALE && strstr(in->reason, "insp.txt changed"), "%d %s", in->status, in->reason);
    remove(src);
    CHECK(ds_cache_inspect(cache, in, err, sizeof err) == 0);
    CHECK_MSG(in->status == DS_CACHE_STALE && strstr(in->reason, "insp.txt"), "gone: %d %s", in->status, in->reason);

    /* cut short: damaged; other bytes: foreign; absent: an error */
    CHECK(truncate(cache, (off_t)st.st_size - 4) == 0);
    CHECK(ds_cache_inspect(cache, in, err, sizeof err) == 0 && in->status == DS_CACHE_DAMAGED);
    CHECK(truncate(cache, 12) == 0);
    CHECK(ds_cache_inspect(cache, in, err, sizeof err) == 0 && in->status == DS_CACHE_DAMAGED);
    path_in(other, "other.bin");
    write_text(other, "not a cache\n");
    CHECK(ds_cache_inspect(other, in, err, sizeof err) == 0 && in->status == DS_CACHE_FOREIGN);
    CHECK(ds_cache_inspect(g_dir, in, err, sizeof err) == 0 && in->status == DS_CACHE_FOREIGN); /* a folder */
    path_in(other, "absent.tokens");
    CHECK(ds_cache_inspect(other, in, err, sizeof err) == -1 && strstr(err, "absent.tokens"));
    free(in);
}

int main(void) {
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_key();
    test_dir();
    test_inspect();
    nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    TEST_DONE();
}
