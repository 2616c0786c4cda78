/* dist.c - the MPI calls of data-parallel training (see dist.h), and their single-process stand-ins.
 *
 * Whether to join MPI is decided by the launcher's environment, not by MPI_Init: Open MPI's
 * singleton init of a plain process starts a runtime (and prints when it cannot), and a plain
 * `mtp train` must behave as in a build without MPI. */
#include "mtp/dist.h"

#include <stdio.h>
#include <stdlib.h>

#ifdef MTP_HAVE_MPI
#include <mpi.h>

#include "mtp/core/core.h"

static struct {
    int joined, rank, ranks;
    MPI_Request pending[DIST_MAX_PENDING];
    int n_pending;
} g_dist = {0, 0, 1, {0}, 0};

/* Open MPI sets OMPI_COMM_WORLD_SIZE, MPICH and Intel MPI PMI_SIZE, PMIx launchers PMIX_RANK. */
static int launched_by_mpirun(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

int dist_init(char *err, size_t errlen) {
    if (g_dist.joined || !launched_by_mpirun()) return 0;
    int provided = 0;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        snprintf(err, errlen, "MPI_Init_thread failed");
        return -1;
    }
    g_dist.joined = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_dist.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_dist.ranks);
    /* a failing rank ends the job with its own message (dist_abort), never a hang */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
    return 0;
}

void dist_finalize(void) {
    if (!g_dist.joined) return;
    MPI_Finalize();
    g_dist.joined = 0;
}

int dist_rank(void) { return g_dist.rank; }
int dist_ranks(void) { return g_dist.ranks; }

int dist_local_ranks(void) {
    const char *s = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    int n = s ? atoi(s) : g_dist.ranks;
    return n > 0 ? n : 1;
}

_Noreturn void dist_abort(int code) {
    fflush(stderr);
    fflush(stdout);
    if (g_dist.joined) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

void dist_barrier(void) {
    if (g_dist.ranks > 1) MPI_Barrier(MPI_COMM_WORLD);
}

int dist_any(int flag) {
    if (g_dist.ranks == 1) return flag != 0;
    int v = flag != 0, any = 0;
    MPI_Allreduce(&v, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return any;
}

int dist_same_u64(uint64_t v) {
    if (g_dist.ranks == 1) return 1;
    unsigned long long x[2] = {v, ~v}, r[2];
    MPI_Allreduce(x, r, 2, MPI_UNSIGNED_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
    return r[0] == v && r[1] == ~v; /* max of v and of ~v is v only when no rank has another */
}

void dist_sum_doubles(double *v, int n) {
    if (g_dist.ranks > 1) MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}

/* MPI counts are ints: buffers of 2^31 floats and more go in pieces */
#define DIST_PIECE ((size_t)1 << 30)

void dist_sum_floats(float *v, size_t n) {
    if (g_dist.ranks == 1) return;
    for (size_t i = 0; i < n; i += DIST_PIECE) {
        int k = (int)(n - i < DIST_PIECE ? n - i : DIST_PIECE);
        MPI_Allreduce(MPI_IN_PLACE, v + i, k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    }
}

void dist_bcast(void *p, size_t n) {
    if (g_dist.ranks > 1) MPI_Bcast(p, (int)n, MPI_BYTE, 0, MPI_COMM_WORLD);
}

void dist_sum_start(float *v, size_t n) {
    if (g_dist.ranks == 1) return;
    for (size_t i = 0; i < n; i += DIST_PIECE) {
        if (g_dist.n_pending == DIST_MAX_PENDING) dist_sum_wait(); /* a full queue: finish what is there */
        int k = (int)(n - i < DIST_PIECE ? n - i : DIST_PIECE);
        MPI_Iallreduce(MPI_IN_PLACE, v + i, k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &g_dist.pending[g_dist.n_pending++]);
    }
}

void dist_progress(void) {
    int done;
    if (g_dist.n_pending) MPI_Testall(g_dist.n_pending, g_dist.pending, &done, MPI_STATUSES_IGNORE);
}

double dist_sum_wait(void) {
    if (!g_dist.n_pending) return 0.0;
    double t0 = mtp_now();
    MPI_Waitall(g_dist.n_pending, g_dist.pending, MPI_STATUSES_IGNORE);
    g_dist.n_pending = 0;
    return mtp_now() - t0;
}

#else /* built without MPI: one process */

int dist_init(char *err, size_t errlen) { return (void)err, (void)errlen, 0; }
void dist_finalize(void) {}
int dist_rank(void) { return 0; }
int dist_ranks(void) { return 1; }
int dist_local_ranks(void) { return 1; }
_Noreturn void dist_abort(int code) {
    fflush(stderr);
    exit(code);
}
void dist_barrier(void) {}
int dist_any(int flag) { return flag != 0; }
int dist_same_u64(uint64_t v) { return (void)v, 1; }
void dist_sum_doubles(double *v, int n) { (void)v, (void)n; }
void dist_sum_floats(float *v, size_t n) { (void)v, (void)n; }
void dist_bcast(void *p, size_t n) { (void)p, (void)n; }
void dist_sum_start(float *v, size_t n) { (void)v, (void)n; }
void dist_progress(void) {}
double dist_sum_wait(void) { return 0.0; }

#endif
