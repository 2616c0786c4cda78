/* allreduce_bench.c - MPI_Allreduce (in place, float sum, as the trainer's gradients) time by size:
 * latency of small messages and bandwidth at the gradient sizes of real models. Not a test; run by
 * tests/bench/mpi_bench.sh:
 *
 *   mpirun -np 2 build/bin/mtp_allreduce_bench [FLOATS ...]
 *
 * Each size: 3 untimed calls, then calls for about 1 s (at least 5), each timed between barriers;
 * prints one JSON line per size from rank 0: the median and best seconds, the algorithm bandwidth
 * bytes / median, and the bus bandwidth 2 (P-1) / P x bytes / median (what a ring moves per link). */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void bench(size_t n, int rank, int ranks) {
    float *v = malloc(n * sizeof(float));
    if (!v) {
        fprintf(stderr, "allreduce_bench: out of memory for %zu floats\n", n);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    for (size_t i = 0; i < n; i++) v[i] = (float)(i % 7) * 1e-3f;
    enum { MAX_REPS = 2000 };
    static double t[MAX_REPS];
    int reps = 0;
    double spent = 0;
    for (int k = -3; k < MAX_REPS && (k < 5 || spent < 1.0); k++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        MPI_Allreduce(MPI_IN_PLACE, v, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        double dt = MPI_Wtime() - t0;
        MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD); /* the slowest rank's */
        if (k >= 0) t[reps++] = dt, spent += dt;
    }
    qsort(t, reps, sizeof t[0], cmp_double);
    double med = t[reps / 2], bytes = (double)n * sizeof(float);
    if (rank == 0)
        printf("{\"ranks\":%d,\"floats\":%zu,\"bytes\":%.0f,\"reps\":%d,\"median_s\":%.9f,\"best_s\":%.9f,"
               "\"algbw_GBps\":%.3f,\"busbw_GBps\":%.3f}\n",
               ranks, n, bytes, reps, med, t[0], bytes / med / 1e9, 2.0 * (ranks - 1) / ranks * bytes / med / 1e9);
    fflush(stdout);
    free(v);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, ranks;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    if (argc > 1) {
        for (int i = 1; i < argc; i++) bench((size_t)strtoull(argv[i], NULL, 10), rank, ranks);
    } else {
        const size_t sizes[] = {1, 16, 256, 4096, 65536, 1 << 20, 6460000};
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) bench(sizes[i], rank, ranks);
    }
    MPI_Finalize();
    return 0;
}
