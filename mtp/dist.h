/* dist.h - data-parallel training over MPI: every MPI call of mtp is behind these functions.
 *
 * A process started by mpirun (the launcher's environment says so) joins MPI_COMM_WORLD; any other
 * process, and every process of a build without MPI (-DMTP_MPI=OFF), is rank 0 of 1 and each
 * function below is a no-op, so a plain `mtp train` runs exactly as it does without MPI. */
#ifndef MTP_DIST_H
#define MTP_DIST_H

#include <stddef.h>
#include <stdint.h>

/* Joins MPI when launched by mpirun (MPI_Init_thread, funneled: only the main thread calls MPI).
 * Returns 0, or -1 with a message (MPI failed to start). Calling it again does nothing. */
int dist_init(char *err, size_t errlen);
/* Leaves MPI (MPI_Finalize) when dist_init joined it. */
void dist_finalize(void);
int dist_rank(void);
int dist_ranks(void);
/* Ranks on this machine (for a default thread count that does not oversubscribe its cores). */
int dist_local_ranks(void);
/* Ends every rank of the job with status code (MPI_Abort): the way out of a failure on one rank
 * that the others, waiting in a collective, would never learn of. Without MPI: exit(code). */
_Noreturn void dist_abort(int code);

void dist_barrier(void);
/* Whether flag is nonzero on any rank (the same answer on every rank). */
int dist_any(int flag);
/* Whether v is the same on every rank. */
int dist_same_u64(uint64_t v);
/* Element-wise sums across ranks, in place; the result is bit-identical on every rank. */
void dist_sum_doubles(double *v, int n);
void dist_sum_floats(float *v, size_t n);
/* Rank 0's n bytes at p, on every rank. */
void dist_bcast(void *p, size_t n);

/* Bucketed sum of a float buffer that overlaps the caller's compute: dist_sum_start starts a
 * non-blocking sum of v[0..n) (at most DIST_MAX_PENDING at once), dist_progress lets MPI move the
 * started ones on (call it now and then while computing), dist_sum_wait finishes them all.
 * Returns the seconds spent waiting in dist_sum_wait. */
#define DIST_MAX_PENDING 64
void dist_sum_start(float *v, size_t n);
void dist_progress(void);
double dist_sum_wait(void);

#endif
