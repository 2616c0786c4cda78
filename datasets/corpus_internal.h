/* corpus_internal.h - the token cache (tokcache.c) as the corpus (corpus.c) loads it. Not the
 * module's interface: that is ds.h.
 *
 * It brings in the sources (sources_internal.h), whose DsSourceInfo it fills; problems.c includes
 * it for those declarations alone. */
#ifndef MTP_DATASETS_CORPUS_INTERNAL_H
#define MTP_DATASETS_CORPUS_INTERNAL_H

#include "datasets/sources_internal.h"

/* Maps o->cache_path into c (train, val, n_train, n_val, map, from_cache) and fills info, after
   (re)building the file when it is missing or stale. */
int ds_cache_load(DsCorpus *c, const DsOptions *o, DsSourceInfo *info, char *err, size_t errlen);
void ds_cache_unmap(void *map, size_t size);

#endif
