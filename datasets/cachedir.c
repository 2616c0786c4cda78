/* cachedir.c - where mtp train keeps token caches by default: one folder shared by every model
 * ($XDG_CACHE_HOME/mtp/tokens or $HOME/.cache/mtp/tokens), each cache named by the key of its
 * options (ds_cache_key), so models trained on the same corpus and tokenizer share one file. The
 * caches themselves are tokcache.c's; this file only names them. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "datasets/ds.h"
#include "mtp/core/core.h"

/* mkdir -p with mode 0700 for what it creates (the XDG convention for a user's cache folder). */
static int make_dirs(char *path, char *err, size_t errlen) {
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        const char c = *p;
        *p = '\0';
        struct stat st;
        int rc = 0;
        if (mkdir(path, 0700) != 0 && errno != EEXIST) rc = -1;
        else if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) rc = -1, errno = ENOTDIR;
        if (rc) {
            mtp_fail(err, errlen, "token cache folder %s: %s", path, strerror(errno));
            *p = c;
            return -1;
        }
        *p = c;
        if (c == '\0') return 0;
    }
}

int ds_cache_dir(char *dir, size_t cap, int create, char *err, size_t errlen) {
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n;
    if (xdg && xdg[0] == '/') n = snprintf(dir, cap, "%s/mtp/tokens", xdg); /* relative: ignored, as XDG says */
    else if (home && home[0] == '/') n = snprintf(dir, cap, "%s/.cache/mtp/tokens", home);
    else
        return mtp_fail(err, errlen, "no folder for the token cache: neither XDG_CACHE_HOME nor HOME is an absolute "
                                     "path (give --token-cache FILE, or none)");
    if (n < 0 || (size_t)n >= cap) return mtp_fail(err, errlen, "the token cache folder's path is too long");
    return create ? make_dirs(dir, err, errlen) : 0;
}

int ds_cache_default_path(char *path, size_t cap, const DsOptions *o, char *err, size_t errlen) {
    if (ds_cache_dir(path, cap, 1, err, errlen)) return -1;
    const size_t used = strlen(path);
    const int n = snprintf(path + used, cap - used, "/%016" PRIx64 ".tokens", ds_cache_key(o));
    if (n < 0 || (size_t)n >= cap - used) return mtp_fail(err, errlen, "the token cache folder's path is too long");
    return 0;
}

int ds_cache_is_cache_name(const char *name) {
    for (int i = 0; i < DS_CACHE_KEY_HEX; i++)
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f'))) return 0;
    return strcmp(name + DS_CACHE_KEY_HEX, ".tokens") == 0;
}
