#ifndef CFUSEDUPDATE_H
#define CFUSEDUPDATE_H

#include <stddef.h>

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

#endif
