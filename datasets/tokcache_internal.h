/* tokcache_internal.h - the token cache (tokcache.c) as the corpus (corpus.c) loads it. Not the
 * module's interface: that is ds.h. Inside the module the files depend one way: sources.c, then
 * tokcache.c, then corpus.c. The cache fills the sources' DsSourceInfo (sources_internal.h). */
#ifndef MTP_DATASETS_TOKCACHE_INTERNAL_H
#define MTP_DATASETS_TOKCACHE_INTERNAL_H

#include "datasets/sources_internal.h"

/* Maps o->cache_path into c (train, val, n_train, n_val, map, from_cache) and fills info, after
   (re)building the file when it is missing or stale. */
int ds_cache_load(DsCorpus *c, const DsOptions *o, DsSourceInfo *info, char *err, size_t errlen);
void ds_cache_unmap(void *map, size_t size);

#endif
