/* rng.h - small deterministic random number generator (xoshiro256**, seeded by splitmix64).
 *
 * Everything random in mtp (weight init, batch sampling, the built-in corpus, sampling at decode)
 * draws from an MtpRng so that a seed fixes a run completely. The state is four words so it can be
 * saved into a checkpoint and restored bit for bit. Header-only: every function is tiny. */
#ifndef MTP_CORE_RNG_H
#define MTP_CORE_RNG_H

#include <math.h>
#include <stdint.h>

typedef struct {
    uint64_t s[4];
} MtpRng;

static inline uint64_t mtp_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline void mtp_rng_seed(MtpRng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = mtp_splitmix64(&x);
}

static inline uint64_t mtp_rng_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t mtp_rng_u64(MtpRng *r) {
    uint64_t *s = r->s;
    uint64_t result = mtp_rng_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = mtp_rng_rotl(s[3], 45);
    return result;
}

/* uniform in [0, n) without modulo bias; n > 0 */
static inline uint64_t mtp_rng_below(MtpRng *r, uint64_t n) {
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = mtp_rng_u64(r);
    while (x >= limit);
    return x % n;
}

/* uniform double in [0, 1) with 53 random bits */
static inline double mtp_rng_uniform(MtpRng *r) { return (double)(mtp_rng_u64(r) >> 11) * 0x1.0p-53; }

/* standard normal (Box-Muller; one value per call, the second is discarded so the state stays 4 words) */
static inline double mtp_rng_normal(MtpRng *r) {
    double u1 = mtp_rng_uniform(r), u2 = mtp_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

#endif
