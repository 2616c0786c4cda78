/* sampling_bench.c - the cost of a sampling distribution (decode_sampling_probs: temperature,
 * top-k, top-p) at the vocabularies of BPE models: not a test.
 *
 *   build/bin/mtp_sampling_bench
 *
 * For V = 2k, 32k and 64k and logits drawn normal(0, 2) (a peaked softmax, as a trained model's),
 * prints microseconds per call: no cut, top-k 50, top-p 0.9, both; and at V = 2k and 32k the same
 * cut by the insertion sort the engine used before (the whole vocabulary sorted: O(V^2)), measured
 * in the same run. A sampled token computes one distribution, a verified draft two. */
#include <stdio.h>
#include <stdlib.h>

#include "decode/decode.h"
#include "mtp/core/rng.h"

/* the former cut: a full insertion sort, then the same top-k / top-p rule */
static void insertion_probs(float *p, const float *logits, int V, const DecodeSampling *cfg, int *order) {
    float mx = logits[0];
    for (int v = 1; v < V; v++) mx = logits[v] > mx ? logits[v] : mx;
    double sum = 0;
    for (int v = 0; v < V; v++) sum += p[v] = expf((logits[v] - mx) / cfg->temperature);
    for (int v = 0; v < V; v++) p[v] = (float)(p[v] / sum);
    for (int v = 0; v < V; v++) order[v] = v;
    for (int a = 1; a < V; a++)
        for (int b = a; b > 0 && (p[order[b]] > p[order[b - 1]] ||
                                  (p[order[b]] == p[order[b - 1]] && order[b] < order[b - 1])); b--) {
            int t = order[b];
            order[b] = order[b - 1], order[b - 1] = t;
        }
    int keep = cfg->top_k > 0 && cfg->top_k < V ? cfg->top_k : V;
    double acc = 0;
    for (int i = 0; i < keep; i++)
        if ((acc += p[order[i]]) >= cfg->top_p) {
            keep = i + 1;
            break;
        }
    double kept = 0;
    for (int i = 0; i < keep; i++) kept += p[order[i]];
    for (int i = keep; i < V; i++) p[order[i]] = 0.0f;
    for (int i = 0; i < keep; i++) p[order[i]] = (float)(p[order[i]] / kept);
}

typedef void (*ProbsFn)(float *, const float *, int, const DecodeSampling *, int *);

/* microseconds per call: the fastest of 5 rounds of calls taking about 0.1 s each */
static double time_probs(ProbsFn f, float *p, const float *logits, int V, const DecodeSampling *cfg, int *order) {
    double best = 1e30;
    int calls = 1;
    double t = mtp_now();
    f(p, logits, V, cfg, order);
    const double one = mtp_now() - t;
    if (one < 0.02) calls = (int)(0.02 / (one > 1e-7 ? one : 1e-7)) + 1;
    for (int r = 0; r < 5; r++) {
        t = mtp_now();
        for (int c = 0; c < calls; c++) f(p, logits, V, cfg, order);
        const double us = (mtp_now() - t) / calls * 1e6;
        best = us < best ? us : best;
    }
    return best;
}

int main(void) {
    const int sizes[3] = {2048, 32768, 65536};
    const DecodeSampling cfgs[4] = {{1.0f, 0, 1.0f}, {1.0f, 50, 1.0f}, {1.0f, 0, 0.9f}, {1.0f, 50, 0.9f}};
    const char *names[4] = {"no cut", "top-k 50", "top-p 0.9", "top-k 50, top-p 0.9"};
    MtpRng r;
    mtp_rng_seed(&r, 7);
    printf("| V | cut | us per call | before (insertion sort) | speedup |\n| --- | --- | --- | --- | --- |\n");
    for (int si = 0; si < 3; si++) {
        const int V = sizes[si];
        float *logits = malloc(V * sizeof(float)), *p = malloc(V * sizeof(float));
        int *order = malloc(V * sizeof(int));
        for (int v = 0; v < V; v++) logits[v] = (float)(2.0 * mtp_rng_normal(&r));
        for (int c = 0; c < 4; c++) {
            const double now_us = time_probs(decode_sampling_probs, p, logits, V, &cfgs[c], order);
            if (c > 0 && V <= 32768) {
                const double before = time_probs(insertion_probs, p, logits, V, &cfgs[c], order);
                printf("| %d | %s | %.1f | %.0f | %.0fx |\n", V, names[c], now_us, before, before / now_us);
            } else {
                printf("| %d | %s | %.1f | | |\n", V, names[c], now_us);
            }
            fflush(stdout);
        }
        free(logits), free(p), free(order);
    }
    return 0;
}
