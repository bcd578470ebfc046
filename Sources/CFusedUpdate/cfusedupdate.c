// AVX2 builds of PSMath's fused optimizer loops (FusedUpdate in Optimizer.swift) and other hot loops (the
// non-finite check, the byte-pixel conversion of data gathers). Swift compiles a whole module for
// one target CPU, so its loops use 128-bit SSE vectors on a generic x86-64 build; these functions carry their own
// target attribute and are called only after a CPUID check, so the binaries still run on any x86-64.
//
// Every element goes through exactly the Swift loop's float operations in the same order: no FMA contraction
// (built with -ffp-contract=off), IEEE sqrt and division (no -ffast-math, so no reciprocal approximations), clip
// and weight decay as the same selects. Element-wise IEEE operations give the same bits in any vector lane, so the
// results are bitwise those of the Swift loop; FusedUpdateTests compares the two paths. The one exception is
// cfused_mean_axpy_fma, which stands for a BLAS saxpy that fuses its multiply-add and so must fuse it too
// (FusedMeanSGD in PSMath checks it against the linked BLAS before using it).
#include "cfusedupdate.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

int cfused_avx2_available(void) {
    unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) {
        return 0;
    }
    // The OS must save the YMM registers (OSXSAVE, then XCR0 bits 1 and 2) for AVX to be usable.
    if ((ecx & bit_OSXSAVE) == 0 || (ecx & bit_AVX) == 0) {
        return 0;
    }
    unsigned int xcr0_low = 0, xcr0_high = 0;
    __asm__ volatile("xgetbv" : "=a"(xcr0_low), "=d"(xcr0_high) : "c"(0));
    if ((xcr0_low & 0x6) != 0x6) {
        return 0;
    }
    if (__get_cpuid_max(0, NULL) < 7) {
        return 0;
    }
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    return (ebx & bit_AVX2) != 0;
}

int cfused_fma_available(void) {
    if (!cfused_avx2_available()) {
        return 0;
    }
    unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
    __get_cpuid(1, &eax, &ebx, &ecx, &edx);
    return (ecx & bit_FMA) != 0;
}

#define AVX2 __attribute__((target("avx2")))
#define AVX2_FMA __attribute__((target("avx2,fma")))

/// FusedUpdate.Prelude.gradient: Swift's max(g, -clip) is `-clip >= g ? -clip : g` and min(x, clip) is
/// `clip < x ? clip : x`, so a NaN gradient passes through as in Swift.
static inline AVX2 float prepared(float g, float weight, float clip, int clips, float weight_decay) {
    float lower = (-clip >= g) ? -clip : g;
    float clipped = clips ? ((clip < lower) ? clip : lower) : g;
    return weight_decay != 0 ? clipped + weight_decay * weight : clipped;
}

AVX2 void cfused_momentum_avx2(float *restrict w, const float *restrict g, float *restrict v, size_t count, float clip,
                               int clips, float weight_decay, float lr, float mu, int nesterov) {
    if (nesterov) {
        for (size_t i = 0; i < count; i++) {
            float weight = w[i];
            float gi = prepared(g[i], weight, clip, clips, weight_decay);
            float vi = mu * v[i] + gi;
            v[i] = vi;
            w[i] = weight - lr * (gi + mu * vi);
        }
    } else {
        for (size_t i = 0; i < count; i++) {
            float weight = w[i];
            float gi = prepared(g[i], weight, clip, clips, weight_decay);
            float vi = mu * v[i] + gi;
            v[i] = vi;
            w[i] = weight - lr * vi;
        }
    }
}

AVX2 void cfused_adam_avx2(float *restrict w, const float *restrict g, float *restrict m, float *restrict v,
                           size_t count, float clip, int clips, float weight_decay, float beta1, float beta2,
                           float step_size, float inverse_root_correction2, float epsilon) {
    float one_minus_beta1 = 1 - beta1;
    float one_minus_beta2 = 1 - beta2;
    for (size_t i = 0; i < count; i++) {
        float weight = w[i];
        float gi = prepared(g[i], weight, clip, clips, weight_decay);
        float mi = beta1 * m[i] + one_minus_beta1 * gi;
        float vi = beta2 * v[i] + one_minus_beta2 * (gi * gi);
        m[i] = mi;
        v[i] = vi;
        w[i] = weight - step_size * mi / (sqrtf(vi) * inverse_root_correction2 + epsilon);
    }
}

AVX2 void cfused_adagrad_avx2(float *restrict w, const float *restrict g, float *restrict s, size_t count, float clip,
                              int clips, float weight_decay, float lr, float epsilon) {
    for (size_t i = 0; i < count; i++) {
        float weight = w[i];
        float gi = prepared(g[i], weight, clip, clips, weight_decay);
        float si = s[i] + gi * gi;
        s[i] = si;
        w[i] = weight - lr * gi / (sqrtf(si) + epsilon);
    }
}

AVX2 uint32_t cfused_max_magnitude_bits_avx2(const float *restrict x, size_t count) {
    // An unsigned integer maximum is associative, so the compiler vectorises this reduction (vpand + vpmaxud),
    // which it may not do for a float maximum without reassociation.
    uint32_t largest = 0;
    for (size_t i = 0; i < count; i++) {
        uint32_t bits;
        memcpy(&bits, &x[i], sizeof bits);
        bits &= 0x7fffffffu;
        largest = bits > largest ? bits : largest;
    }
    return largest;
}

AVX2 void cfused_scale_bytes_avx2(const uint8_t *restrict bytes, size_t count, float divisor, float *restrict out) {
    for (size_t i = 0; i < count; i++) {
        out[i] = (float)bytes[i] / divisor;
    }
}

// The one place here that fuses a multiply-add, on purpose: it stands for a BLAS saxpy that does (see the header).
AVX2_FMA void cfused_mean_axpy_fma(float *restrict w, const float *const *sources, size_t source_count, size_t count,
                                   float scale, float alpha) {
    const __m256 scales = _mm256_set1_ps(scale);
    const __m256 alphas = _mm256_set1_ps(alpha);
    size_t i = 0;
    for (; i + 8 <= count; i += 8) {
        __m256 sum = _mm256_add_ps(_mm256_loadu_ps(sources[0] + i), _mm256_loadu_ps(sources[1] + i));
        for (size_t k = 2; k < source_count; k++) {
            sum = _mm256_add_ps(sum, _mm256_loadu_ps(sources[k] + i));
        }
        __m256 mean = _mm256_mul_ps(sum, scales);
        _mm256_storeu_ps(w + i, _mm256_fmadd_ps(alphas, mean, _mm256_loadu_ps(w + i)));
    }
    for (; i < count; i++) {
        float sum = sources[0][i] + sources[1][i];
        for (size_t k = 2; k < source_count; k++) {
            sum = sum + sources[k][i];
        }
        w[i] = fmaf(alpha, sum * scale, w[i]);
    }
}

#else

int cfused_avx2_available(void) { return 0; }

int cfused_fma_available(void) { return 0; }

void cfused_mean_axpy_fma(float *w, const float *const *sources, size_t source_count, size_t count, float scale,
                          float alpha) {
    (void)w, (void)sources, (void)source_count, (void)count, (void)scale, (void)alpha;
}

void cfused_scale_bytes_avx2(const uint8_t *bytes, size_t count, float divisor, float *out) {
    (void)bytes, (void)count, (void)divisor, (void)out;
}

uint32_t cfused_max_magnitude_bits_avx2(const float *x, size_t count) {
    (void)x, (void)count;
    return 0;
}

void cfused_momentum_avx2(float *w, const float *g, float *v, size_t count, float clip, int clips, float weight_decay,
                          float lr, float mu, int nesterov) {
    (void)w, (void)g, (void)v, (void)count, (void)clip, (void)clips, (void)weight_decay, (void)lr, (void)mu,
        (void)nesterov;
}

void cfused_adam_avx2(float *w, const float *g, float *m, float *v, size_t count, float clip, int clips,
                      float weight_decay, float beta1, float beta2, float step_size, float inverse_root_correction2,
                      float epsilon) {
    (void)w, (void)g, (void)m, (void)v, (void)count, (void)clip, (void)clips, (void)weight_decay, (void)beta1,
        (void)beta2, (void)step_size, (void)inverse_root_correction2, (void)epsilon;
}

void cfused_adagrad_avx2(float *w, const float *g, float *s, size_t count, float clip, int clips, float weight_decay,
                         float lr, float epsilon) {
    (void)w, (void)g, (void)s, (void)count, (void)clip, (void)clips, (void)weight_decay, (void)lr, (void)epsilon;
}

#endif

size_t cfused_touch_rows(const uint8_t *base, size_t row_bytes, const int64_t *rows, size_t count) {
    size_t sum = 0;
    for (size_t r = 0; r < count; r++) {
        const uint8_t *row = base + (size_t)rows[r] * row_bytes;
        for (size_t offset = 0; offset < row_bytes; offset += 64) {
            sum += row[offset];
        }
        sum += row[row_bytes - 1];  // the last line, when the row does not start on a line boundary
    }
    return sum;
}
