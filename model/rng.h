// Counter-based randomness shared by the data generator and the parameter
// init: every value is a pure function of its key, so any rank can draw any
// sample or any shard's weights in any order.
#ifndef HGRID_MODEL_RNG_H
#define HGRID_MODEL_RNG_H

#include <math.h>
#include <stdint.h>

static inline uint64_t hg_mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static inline uint64_t hg_draw(uint64_t a, uint64_t b, uint64_t c)
{
    return hg_mix64(hg_mix64(hg_mix64(a) ^ b) ^ (c * 0xd6e8feb86659fd93ull));
}

// Encoder e's seed for its weights and its images: encoder 0 keeps seed.
static inline uint64_t hg_encoder_seed(uint64_t seed, int encoder)
{
    return encoder == 0 ? seed : hg_draw(seed, (uint64_t)encoder, 0x656e636f646572ull);
}

// Uniform in [0, 1) from 53 random bits.
static inline double hg_unit(uint64_t bits) { return (double)(bits >> 11) * 0x1.0p-53; }

// Standard normal (Box-Muller) keyed by (a, b, c).
static inline double hg_normal(uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t h = hg_draw(a, b, c);
    double u1 = hg_unit(h), u2 = hg_unit(hg_mix64(h));
    return sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2);
}

#endif
