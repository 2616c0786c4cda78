/* mtp_peak: the oneDNN matrix-product peak that mtp's MFU is measured against.
 *
 * Runs large products through mtp_matmul (the same path, primitive cache and precision handling
 * the trainer uses) at a given thread count and precision, and prints GFLOP/s, best of several
 * repeats, for each shape, plus the oneDNN implementation chosen (mtp_matmul_last_impl()).
 *
 * Usage: mtp_peak [--threads P] [--precision fp32|bf16] [--seconds S]
 *   --seconds S  target time per shape, split over 5 repeats (default 2.5; mtp_matmul_gflops)
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
  const double best = mtp_matmul_gflops(s.M, s.N, s.K, seconds);
  *impl = mtp_matmul_last_impl();
  if (best <= 0) {
    fprintf(stderr, "mtp_peak: out of memory\n");
    exit(1);
  }
  printf("%-34s %5d x %5d x %5d  best of 5  %8.1f GFLOP/s  impl %s\n", s.what, s.M, s.N, s.K, best, *impl);
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
