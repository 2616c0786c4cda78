/* cli_cache.c - `mtp cache`: see and reclaim the token caches in the shared folder (ds.h, "the shared
 * token cache folder"). Only files named as the folder names caches are looked at, and only files
 * that are caches (or temp files of dead builds) are ever removed. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mtp/cli.h"

static const char *CACHE_HELP =
    "usage: mtp cache list [--json] [--dir DIR]\n"
    "       mtp cache clean [--all | --unused-days N] [--dry-run] [--dir DIR]\n"
    "       mtp cache dir\n"
    "\n"
    "mtp train tokenizes a corpus once into a token cache and memory-maps it. Unless --token-cache\n"
    "says otherwise, the caches live in one folder that every model shares,\n"
    "$XDG_CACHE_HOME/mtp/tokens (~/.cache/mtp/tokens when XDG_CACHE_HOME is unset), each named by\n"
    "a hash of what decides its tokens (sources, tokenizer, split, JSONL fields, arith seed and\n"
    "difficulty): models trained on the same corpus with the same tokenizer share one file.\n"
    "\n"
    "  list              every cache in the folder: size, state, sources, tokenizer, tokens, last use;\n"
    "                    a cache is current, stale (a source changed or is gone: the next run\n"
    "                    rebuilds it), or damaged\n"
    "  clean             remove the stale and damaged caches and the temp files of builds that died\n"
    "  dir               print the folder's path\n"
    "  --all             clean: remove every cache\n"
    "  --unused-days N   clean: also remove caches not read for N days (by the file's access time,\n"
    "                    which most filesystems update at most daily)\n"
    "  --dry-run         clean: say what would be removed, remove nothing\n"
    "  --dir DIR         another folder of caches (one you give as --token-cache DIR/NAME.tokens)\n"
    "  --json            list: one JSON object\n";

typedef struct {
    const char *action, *dir;
    int json, all, unused_days, dry_run, help;
} CacheArgs;

/* One file of the folder that is a cache or a temp file of one. */
typedef struct {
    char name[64];
    int temp;         /* a "<key>.tokens[.val].tmp.PID" file */
    int writer_alive; /* temp: its process still runs */
} CacheEntry;

static int cache_parse(int argc, char **argv, CacheArgs *a) {
    *a = (CacheArgs){0};
    CliOpt opts[] = {{"--json", OPT_FLAG, &a->json, 0, 0, 0},
                     {"--all", OPT_FLAG, &a->all, 0, 0, 0},
                     {"--unused-days", OPT_INT, &a->unused_days, 1, 1 << 20, 0},
                     {"--dry-run", OPT_FLAG, &a->dry_run, 0, 0, 0},
                     {"--dir", OPT_STR, &a->dir, 0, 0, 0},
                     {0}};
    if (argc >= 3 && argv[2][0] != '-') a->action = argv[2];
    if (cli_parse("cache", argc, argv, a->action ? 3 : 2, opts, NULL, &a->help)) return EXIT_USAGE;
    if (a->help) return fputs(CACHE_HELP, stdout), 0;
    if (!a->action || (strcmp(a->action, "list") && strcmp(a->action, "clean") && strcmp(a->action, "dir"))) {
        cli_error("cache", a->action ? "unknown action '%s' (list, clean or dir; see mtp cache --help)"
                                     : "missing action: list, clean or dir (see mtp cache --help)",
                  a->action);
        return EXIT_USAGE;
    }
    const int cleaning = strcmp(a->action, "clean") == 0;
    if (!cleaning && (a->all || a->unused_days || a->dry_run)) {
        cli_error("cache", "--all, --unused-days and --dry-run are options of mtp cache clean");
        return EXIT_USAGE;
    }
    if (a->all && a->unused_days) {
        cli_error("cache", "--all already removes every cache; drop --unused-days");
        return EXIT_USAGE;
    }
    return 0;
}

/* The PID of a temp file name "<key>.tokens.tmp.PID" or "<key>.tokens.val.tmp.PID", or 0. */
static long temp_pid(const char *name) {
    const size_t key = DS_CACHE_KEY_HEX + strlen(".tokens");
    char base[DS_CACHE_KEY_HEX + 8];
    if (strlen(name) <= key) return 0;
    memcpy(base, name, key);
    base[key] = '\0';
    if (!ds_cache_is_cache_name(base)) return 0;
    const char *rest = name + key;
    if (strncmp(rest, ".val", 4) == 0) rest += 4;
    if (strncmp(rest, ".tmp.", 5) != 0 || rest[5] < '1' || rest[5] > '9') return 0;
    char *end;
    errno = 0;
    const long pid = strtol(rest + 5, &end, 10);
    return *end || errno || pid > 0x7fffffff ? 0 : pid;
}

static int by_name(const void *x, const void *y) {
    return strcmp(((const CacheEntry *)x)->name, ((const CacheEntry *)y)->name);
}

/* The folder's caches and temp files, sorted by name, into *out (malloc'd); -1 with a message. A
   default folder that does not exist yet holds no caches; a --dir that does not is a mistake. */
static int cache_scan(const char *dir, int missing_ok, CacheEntry **out, int *n, int *others) {
    *out = NULL, *n = 0, *others = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT && missing_ok) return 0; /* no cache built yet */
        cli_error("cache", "%s: %s", dir, strerror(errno));
        return -1;
    }
    int cap = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        const long pid = temp_pid(e->d_name);
        if (!pid && !ds_cache_is_cache_name(e->d_name)) {
            ++*others;
            continue;
        }
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            CacheEntry *p = realloc(*out, (size_t)cap * sizeof *p);
            if (!p) {
                closedir(d);
                cli_error("cache", "out of memory");
                return -1;
            }
            *out = p;
        }
        CacheEntry *c = &(*out)[(*n)++];
        snprintf(c->name, sizeof c->name, "%s", e->d_name);
        c->temp = pid != 0;
        /* 0: alive; EPERM: alive, another user's; ESRCH: gone, its file can never be finished */
        c->writer_alive = pid && (kill((pid_t)pid, 0) == 0 || errno != ESRCH);
    }
    closedir(d);
    if (*n) qsort(*out, (size_t)*n, sizeof **out, by_name);
    return 0;
}

static const char *STATUS_NAMES[] = {"current", "stale", "damaged", "not a cache"};

static void put_date(FILE *f, int64_t ns) {
    const time_t t = (time_t)(ns / 1000000000);
    struct tm tm;
    char buf[32] = "?";
    if (gmtime_r(&t, &tm)) strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    fputs(buf, f);
}

static void put_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f) fprintf(f, "\\u%04x", *p); /* a path's bytes, whatever they encode */
        else fputc(*p, f);
    }
    fputc('"', f);
}

static void put_size(FILE *f, uint64_t bytes) {
    if (bytes >= 1000000000) fprintf(f, "%.2f GB", bytes / 1e9);
    else if (bytes >= 1000000) fprintf(f, "%.1f MB", bytes / 1e6);
    else fprintf(f, "%.1f kB", bytes / 1e3);
}

static void list_text_entry(const CacheEntry *c, const DsCacheInfo *in) {
    printf("%-24s ", c->name);
    put_size(stdout, in->bytes);
    if (c->temp) {
        printf("  temp file of a build %s\n", c->writer_alive ? "still running" : "that died (clean removes it)");
        return;
    }
    printf("  %s", STATUS_NAMES[in->status]);
    if (in->reason[0]) printf(" (%s)", in->reason);
    if (in->status == DS_CACHE_FOREIGN || in->status == DS_CACHE_DAMAGED) return (void)putchar('\n');
    printf("  ");
    for (int i = 0; i < in->n_sources; i++) printf("%s%s", i ? ", " : "", in->spec[i]);
    printf(" | vocab %lld | %llu train / %llu val tokens | last used ", (long long)in->vocab,
           (unsigned long long)in->train_tokens, (unsigned long long)in->val_tokens);
    put_date(stdout, in->atime_ns);
    putchar('\n');
}

static void list_json_entry(const CacheEntry *c, const DsCacheInfo *in, const char *path) {
    printf("{\"file\":");
    put_json_string(stdout, path);
    printf(",\"bytes\":%llu,", (unsigned long long)in->bytes);
    if (c->temp) {
        printf("\"status\":\"temp\",\"writer_alive\":%s}", c->writer_alive ? "true" : "false");
        return;
    }
    printf("\"status\":\"%s\",\"reason\":", in->status == DS_CACHE_FOREIGN ? "foreign" : STATUS_NAMES[in->status]);
    put_json_string(stdout, in->reason);
    printf(",\"sources\":[");
    for (int i = 0; i < in->n_sources; i++) {
        if (i) putchar(',');
        put_json_string(stdout, in->spec[i]);
    }
    printf("],\"tokenizer_hash\":\"%016llx\",\"vocab\":%lld,\"train_tokens\":%llu,\"val_tokens\":%llu,\"built\":\"",
           (unsigned long long)in->tokenizer_hash, (long long)in->vocab, (unsigned long long)in->train_tokens,
           (unsigned long long)in->val_tokens);
    put_date(stdout, in->mtime_ns);
    printf("\",\"last_used\":\"");
    put_date(stdout, in->atime_ns);
    printf("\"}");
}

/* The entry at dir/name into info (a temp file: its size only). 0, or -1 when it vanished. */
static int entry_info(const char *dir, const CacheEntry *c, DsCacheInfo *info, char *path, size_t cap) {
    snprintf(path, cap, "%s/%s", dir, c->name);
    char err[512];
    if (!c->temp) return ds_cache_inspect(path, info, err, sizeof err);
    memset(info, 0, sizeof *info);
    struct stat st;
    if (stat(path, &st) != 0) return -1;
    info->bytes = (uint64_t)st.st_size;
    return 0;
}

static int cache_list(const CacheArgs *a, const char *dir, const CacheEntry *e, int n, int others) {
    DsCacheInfo *info = malloc(sizeof *info);
    if (!info) return cli_error("cache", "out of memory"), EXIT_FAIL;
    char path[8192];
    uint64_t total = 0;
    int shown = 0;
    if (a->json) {
        printf("{\"dir\":");
        put_json_string(stdout, dir);
        printf(",\"entries\":[");
    }
    for (int i = 0; i < n; i++) {
        if (entry_info(dir, &e[i], info, path, sizeof path)) continue; /* removed meanwhile */
        total += info->bytes;
        if (a->json) {
            if (shown) putchar(',');
            list_json_entry(&e[i], info, path);
        } else {
            if (!shown) printf("token caches in %s:\n", dir);
            list_text_entry(&e[i], info);
        }
        shown++;
    }
    if (a->json) printf("],\"bytes\":%llu,\"other_files\":%d}\n", (unsigned long long)total, others);
    else if (!shown) printf("no token caches in %s\n", dir);
    else {
        printf("%d file%s, ", shown, shown == 1 ? "" : "s");
        put_size(stdout, total);
        printf(" in all%s\n", others ? " (and other files, which mtp leaves alone)" : "");
    }
    free(info);
    return 0;
}

/* Why clean removes the entry, or NULL to keep it. */
static const char *clean_reason(const CacheArgs *a, const CacheEntry *c, const DsCacheInfo *in, time_t now) {
    if (c->temp) return c->writer_alive ? NULL : "temp file of a build that died";
    if (in->status == DS_CACHE_FOREIGN) return NULL; /* named like a cache but is not one: not ours to remove */
    if (a->all) return "--all";
    if (in->status == DS_CACHE_STALE) return in->reason[0] ? in->reason : "stale";
    if (in->status == DS_CACHE_DAMAGED) return in->reason[0] ? in->reason : "damaged";
    if (a->unused_days && now - in->atime_ns / 1000000000 > (int64_t)a->unused_days * 86400) return "unused";
    return NULL;
}

static int cache_clean(const CacheArgs *a, const char *dir, const CacheEntry *e, int n) {
    DsCacheInfo *info = malloc(sizeof *info);
    if (!info) return cli_error("cache", "out of memory"), EXIT_FAIL;
    char path[8192];
    uint64_t freed = 0;
    int removed = 0, failed = 0;
    const time_t now = time(NULL);
    for (int i = 0; i < n; i++) {
        if (entry_info(dir, &e[i], info, path, sizeof path)) continue;
        const char *why = clean_reason(a, &e[i], info, now);
        if (!why) continue;
        if (!a->dry_run && unlink(path) != 0) {
            if (errno != ENOENT) cli_error("cache", "cannot remove %s: %s", path, strerror(errno)), failed++;
            continue;
        }
        printf("%s %s (", a->dry_run ? "would remove" : "removed", e[i].name);
        put_size(stdout, info->bytes);
        printf(": %s)\n", why);
        freed += info->bytes, removed++;
    }
    printf("%s %d file%s, ", a->dry_run ? "would remove" : "removed", removed, removed == 1 ? "" : "s");
    put_size(stdout, freed);
    printf(", in %s\n", dir);
    free(info);
    return failed ? EXIT_FAIL : 0;
}

int cmd_cache(int argc, char **argv) {
    CacheArgs a;
    int rc = cache_parse(argc, argv, &a);
    if (rc || a.help) return rc;
    char dir[4096], err[512];
    if (a.dir) snprintf(dir, sizeof dir, "%s", a.dir);
    else if (ds_cache_dir(dir, sizeof dir, 0, err, sizeof err)) {
        cli_error("cache", "%s", err);
        return EXIT_FAIL;
    }
    if (strcmp(a.action, "dir") == 0) return printf("%s\n", dir), 0;
    CacheEntry *e;
    int n, others;
    if (cache_scan(dir, !a.dir, &e, &n, &others)) return EXIT_FAIL;
    rc = strcmp(a.action, "list") == 0 ? cache_list(&a, dir, e, n, others) : cache_clean(&a, dir, e, n);
    free(e);
    return rc;
}
