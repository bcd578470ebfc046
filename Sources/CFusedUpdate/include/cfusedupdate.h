#ifndef CFUSEDUPDATE_H
#define CFUSEDUPDATE_H

#include <stddef.h>
#include <stdint.h>

/// Whether this CPU and the OS support AVX2 (x86-64, checked once with CPUID and XGETBV); 0 elsewhere.
int cfused_avx2_available(void);

/// Momentum (heavy ball, or Nesterov when `nesterov` is nonzero) over `count` elements with 256-bit vectors;
/// PSMath's FusedUpdate.momentum documents the formula. Call only when cfused_avx2_available() returned 1.
void cfused_momentum_avx2(float *w, const float *g, float *v, size_t count, float clip, int clips, float weight_decay,
                          float lr, float mu, int nesterov);

/// Adam with folded bias correction over `count` elements with 256-bit vectors; PSMath's FusedUpdate.adam
/// documents the formula. Call only when cfused_avx2_available() returned 1.
void cfused_adam_avx2(float *w, const float *g, float *m, float *v, size_t count, float clip, int clips,
                      float weight_decay, float beta1, float beta2, float step_size, float inverse_root_correction2,
                      float epsilon);

/// AdaGrad over `count` elements with 256-bit vectors; PSMath's FusedUpdate.adagrad documents the formula. Call only
/// when cfused_avx2_available() returned 1.
void cfused_adagrad_avx2(float *w, const float *g, float *s, size_t count, float clip, int clips, float weight_decay,
                         float lr, float epsilon);

/// The largest of `x[i]`'s bit patterns with the sign bit cleared, over `count` elements (0 when `count` is 0), with
/// 256-bit vectors: PSMath's MagnitudeBounds.maxMagnitude reads it as the largest |x[i]|, or as a non-finite
/// element when it is 0x7f800000 or more. Call only when cfused_avx2_available() returned 1.
uint32_t cfused_max_magnitude_bits_avx2(const float *x, size_t count);

/// `out[i] = (float)bytes[i] / divisor` over `count` bytes with 256-bit vectors (IEEE division: bitwise the scalar
/// formula). Call only when cfused_avx2_available() returned 1.
void cfused_scale_bytes_avx2(const uint8_t *bytes, size_t count, float divisor, float *out);

/// Whether this CPU and the OS support AVX2 and FMA3 (x86-64); 0 elsewhere.
int cfused_fma_available(void);

/// The BSP mean and a plain SGD step in one pass over `count` elements: `w[i] = fma(alpha, sum * scale, w[i])` with
/// `sum = ((sources[0][i] + sources[1][i]) + sources[2][i]) + ...` in source order (`source_count` >= 2), the fused
/// multiply-add rounded once. That is `GradientMean.average` followed by a BLAS `saxpy(alpha, mean, w)` whose
/// multiply-add is fused (OpenBLAS's AVX2 and AVX-512 kernels), bit for bit; PSMath's `FusedMeanSGD` checks that
/// against the linked BLAS before it uses this. Call only when cfused_fma_available() returned 1.
void cfused_mean_axpy_fma(float *w, const float *const *sources, size_t source_count, size_t count, float scale,
                          float alpha);

/// Loads one byte of every 64-byte cache line of each of `count` rows of `row_bytes` bytes at
/// `base + rows[r] * row_bytes`, so that a gather's cache misses overlap before it reads the rows in order; returns
/// the bytes' sum, only so that the loads are not optimised away. Any CPU.
size_t cfused_touch_rows(const uint8_t *base, size_t row_bytes, const int64_t *rows, size_t count);

#endif
