/* mtp_peak: the oneDNN matrix-product peak that mtp's MFU is measured against.
 *
 * Runs large products through mtp_matmul (the same path, primitive cache and precision handling
 * the trainer uses) at a given thread count and precision, and prints GFLOP/s, best of several
 * repeats, for each shape, plus the oneDNN implementation chosen (mtp_matmul_last_impl()).
 *
 * Usage: mtp_peak [--threads P] [--precision fp32|bf16] [--seconds S]
 *   --seconds S  target time per shape, split over 5 repeats (default 2.5)
 *
 * Shapes: 2048x2048x2048 (square, the "peak"), and 4096x1376x256 (M=B*T rows, N=2*ffn, K=dim:
 * the model's biggest product, the fused SwiGLU up-projection; M x N x K).
 * Output: one line per shape on stdout, then a JSON line
 *   {"threads":P,"precision":"bf16","peak_gflops":G,"model_gflops":G2,"impl":"..."}
 * where peak_gflops is the best over all shapes (the MFU denominator). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mtp/core/core.h"

typedef struct {
  int M, N, K;
  const char *what;
} Shape;

static double run_shape(Shape s, double seconds, const char **impl) {
  float *A = mtp_calloc((size_t)s.M * s.K, sizeof(float));
  float *B = mtp_calloc((size_t)s.K * s.N, sizeof(float));
  float *C = mtp_calloc((size_t)s.M * s.N, sizeof(float));
  if (!A || !B || !C) {
    fprintf(stderr, "mtp_peak: out of memory\n");
    exit(1);
  }
  unsigned x = 12345u;
  for (size_t i = 0; i < (size_t)s.M * s.K; i++) A[i] = (float)((x = x * 1103515245u + 12345u) >> 9) / 8388608.0f - 0.5f;
  for (size_t i = 0; i < (size_t)s.K * s.N; i++) B[i] = (float)((x = x * 1103515245u + 12345u) >> 9) / 8388608.0f - 0.5f;
  const double flop = 2.0 * s.M * s.N * s.K;
  /* warm-up: creates the primitive, touches the memory, and sizes the repeats */
  double t0 = mtp_now();
  mtp_matmul(C, A, B, s.M, s.N, s.K, 0, 0, 0);
  double t1 = mtp_now();
  mtp_matmul(C, A, B, s.M, s.N, s.K, 0, 0, 0);
  double one = mtp_now() - t1;
  (void)t0;
  *impl = mtp_matmul_last_impl();
  const int repeats = 5;
  int iters = (int)(seconds / repeats / (one > 1e-6 ? one : 1e-6));
  if (iters < 1) iters = 1;
  double best = 0.0;
  for (int r = 0; r < repeats; r++) {
    double a = mtp_now();
    for (int i = 0; i < iters; i++) mtp_matmul(C, A, B, s.M, s.N, s.K, 0, 0, 0);
    double g = flop * iters / (mtp_now() - a) / 1e9;
    if (g > best) best = g;
  }
  printf("%-34s %5d x %5d x %5d  %d x %d iters  best %8.1f GFLOP/s  impl %s\n", s.what, s.M, s.N, s.K, repeats,
         iters, best, *impl);
  mtp_free(A);
  mtp_free(B);
  mtp_free(C);
  return best;
}

int main(int argc, char **argv) {
  int threads = 1;
  double seconds = 2.5;
  MtpPrecision prec = MTP_FP32;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
      threads = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--precision") && i + 1 < argc) {
      const char *p = argv[++i];
      if (!strcmp(p, "fp32")) prec = MTP_FP32;
      else if (!strcmp(p, "bf16")) prec = MTP_BF16;
      else {
        fprintf(stderr, "mtp_peak: --precision fp32|bf16\n");
        return 2;
      }
    } else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
      seconds = atof(argv[++i]);
    } else {
      fprintf(stderr, "usage: mtp_peak [--threads P] [--precision fp32|bf16] [--seconds S]\n");
      return 2;
    }
  }
  char err[256];
  if (mtp_core_init(threads, prec, err, sizeof err) != 0) {
    fprintf(stderr, "mtp_peak: %s\n", err);
    return 1;
  }
  const char *pname = prec == MTP_BF16 ? "bf16" : "fp32";
  printf("mtp_peak: %d thread(s), %s\n", threads, pname);
  Shape sq = {2048, 2048, 2048, "square"};
  Shape model = {4096, 1376, 256, "model (B*T x 2*ffn x dim)"};
  const char *impl_sq = "", *impl_model = "";
  double g_sq = run_shape(sq, seconds, &impl_sq);
  char impl_sq_copy[128];
  snprintf(impl_sq_copy, sizeof impl_sq_copy, "%s", impl_sq);
  double g_model = run_shape(model, seconds, &impl_model);
  double peak = g_sq > g_model ? g_sq : g_model;
  printf("{\"threads\":%d,\"precision\":\"%s\",\"square_gflops\":%.1f,\"model_gflops\":%.1f,\"peak_gflops\":%.1f,"
         "\"impl\":\"%s\",\"impl_model\":\"%s\"}\n",
         threads, pname, g_sq, g_model, peak, impl_sq_copy, impl_model);
  return 0;
}
