/* Register-resident ceilings of this CPU, in binary MACs per second (one thread).
   Each loop keeps 8 independent chains in registers; an empty asm stops the compiler from
   hoisting the work out of the loop. Printed as JSON: {"name": macs_per_second, ...}.
     xor_popcnt64   XOR + POPCNT + ADD on 64-bit scalars (64 MACs per chain step)
     xor_popcnt_avx2  XOR + nibble-table popcount (pshufb) + ADD on 256 bits (256 MACs)
     xor_popcnt_avx512  XOR + VPOPCNTQ + ADD on 512 bits (512 MACs), where available
     lookup_avx2    the planar kernel's step: PSHUFB + ADD on 32 nibbles (128 MACs) */
#define _POSIX_C_SOURCE 199309L
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#define ITERS 20000000L

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t sink;
#define CHAINS(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7)

static double scalar64(void)
{
#define DECL(j) uint64_t a##j = 0x9e3779b97f4a7c15ull * (j + 1), w##j = ~a##j >> j, acc##j = 0;
#define STEP(j) acc##j += (uint64_t)__builtin_popcountll(a##j ^ w##j); __asm__ volatile("" : "+r"(a##j));
#define SINK(j) sink += acc##j;
    CHAINS(DECL)
    long i;
    double t0 = now();
    for (i = 0; i < ITERS; ++i) {
        CHAINS(STEP)
    }
    t0 = now() - t0;
    CHAINS(SINK)
#undef DECL
#undef STEP
#undef SINK
    return 64.0 * 8 * ITERS / t0;
}

#ifdef __AVX2__
static double avx2_xor(void)
{
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1,
                                         2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i m4 = _mm256_set1_epi8(0x0f);
#define DECL(j)                                                                                 \
    __m256i a##j = _mm256_set1_epi32((int)(0x5bd1e995u * (j + 1))),                             \
            w##j = _mm256_set1_epi32(0x27d4eb2f ^ j), acc##j = _mm256_setzero_si256();
#define STEP(j)                                                                                 \
    {                                                                                           \
        __m256i x = _mm256_xor_si256(a##j, w##j);                                               \
        __m256i lo = _mm256_and_si256(x, m4), hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), m4); \
        acc##j = _mm256_add_epi8(acc##j, _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo),          \
                                                         _mm256_shuffle_epi8(lut, hi)));        \
        __asm__ volatile("" : "+x"(a##j));                                                      \
    }
#define SINK(j) sink += (uint64_t)_mm256_extract_epi64(acc##j, 0);
    CHAINS(DECL)
    long i;
    double t0 = now();
    for (i = 0; i < ITERS / 4; ++i) {
        CHAINS(STEP)
    }
    t0 = now() - t0;
    CHAINS(SINK)
#undef DECL
#undef STEP
#undef SINK
    return 256.0 * 8 * (ITERS / 4) / t0;
}

static double avx2_lookup(void)
{
    const __m256i tab = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1,
                                         2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
#define DECL(j) __m256i a##j = _mm256_set1_epi8((char)(j * 3 + 1)), acc##j = _mm256_setzero_si256();
#define STEP(j)                                                                                 \
    acc##j = _mm256_add_epi8(acc##j, _mm256_shuffle_epi8(tab, a##j));                           \
    __asm__ volatile("" : "+x"(a##j));
#define SINK(j) sink += (uint64_t)_mm256_extract_epi64(acc##j, 0);
    CHAINS(DECL)
    long i;
    double t0 = now();
    for (i = 0; i < ITERS / 4; ++i) {
        CHAINS(STEP)
    }
    t0 = now() - t0;
    CHAINS(SINK)
#undef DECL
#undef STEP
#undef SINK
    return 128.0 * 8 * (ITERS / 4) / t0;
}
#endif

#if defined(__AVX512F__) && defined(__AVX512VPOPCNTDQ__)
static double avx512_xor(void)
{
#define DECL(j)                                                                                 \
    __m512i a##j = _mm512_set1_epi64((long long)(0x9e3779b97f4a7c15ull * (j + 1))),              \
            w##j = _mm512_set1_epi64(0x27d4eb2f165667c5ll ^ j), acc##j = _mm512_setzero_si512();
#define STEP(j)                                                                                 \
    acc##j = _mm512_add_epi64(acc##j, _mm512_popcnt_epi64(_mm512_xor_si512(a##j, w##j)));       \
    __asm__ volatile("" : "+v"(a##j));
#define SINK(j) sink += (uint64_t)_mm512_reduce_add_epi64(acc##j);
    CHAINS(DECL)
    long i;
    double t0 = now();
    for (i = 0; i < ITERS / 8; ++i) {
        CHAINS(STEP)
    }
    t0 = now() - t0;
    CHAINS(SINK)
#undef DECL
#undef STEP
#undef SINK
    return 512.0 * 8 * (ITERS / 8) / t0;
}
#endif

int main(void)
{
    printf("{\"xor_popcnt64\": %.6g", scalar64());
#ifdef __AVX2__
    printf(", \"xor_popcnt_avx2\": %.6g", avx2_xor());
    printf(", \"lookup_avx2\": %.6g", avx2_lookup());
#endif
#if defined(__AVX512F__) && defined(__AVX512VPOPCNTDQ__)
    printf(", \"xor_popcnt_avx512\": %.6g", avx512_xor());
#endif
    printf(", \"sink\": %llu}\n", (unsigned long long)(sink & 1));
    return 0;
}
