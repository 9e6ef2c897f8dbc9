// The per-element arithmetic of the kernels, shared by quantize.cu and proofs.cu so that the
// proofs check the very functions the kernels run.
//
// Each quotient has two forms. The exact one is the spec (../../../../../shared/spec/
// QUANTIZATION.md): a correctly rounded division, then the rounding to the output grid. The
// fast one multiplies by the correctly rounded reciprocal, which is within two f32 ulps of the
// quotient; the rounding to the output grid can then differ only where the quotient lies within
// two ulps of a rounding midpoint of that grid, and there the exact form decides. proofs.cu
// checks, for every input a kernel can see, that the fast form gives the exact form's output.
#include <stdint.h>

__device__ __forceinline__ float bf16_to_f32(uint32_t b) { return __uint_as_float(b << 16); }

// e4m3fn code (without sign) of |v| given as f32 bits, |v| <= 448: nearest, ties to even.
__device__ __forceinline__ uint32_t e4m3_abs(uint32_t abs) {
  if (abs >= 0x3C800000u) {  // >= 2^-6: round the mantissa to 3 bits, rebias 127 -> 7
    return ((abs + 0x7FFFFu + ((abs >> 20) & 1u)) >> 20) - (120u << 3);
  }
  return (uint32_t)__float2int_rn(__fmul_rn(__uint_as_float(abs), 512.f));  // subnormal grid 2^-9
}

// The decoded value of an e4m3 code (without sign) as f32.
__device__ __forceinline__ float e4m3_value(uint32_t code) {
  uint32_t e = code >> 3, m = code & 7u;
  if (e == 0) return __fmul_rn((float)m, 0.001953125f);  // m * 2^-9
  return __uint_as_float(((e + 120u) << 23) | (m << 20));
}

// ---- FP8 (128x128 blocks) ----


// The block's scale s and the multiplier the fast quotient uses (1/s rounded; exact for UE8M0,
// whose s is a power of two), from the block's largest BF16 magnitude (bits, finite).
__device__ __forceinline__ void fp8_scale(uint32_t amax, int ue8m0, float* s, float* inv) {
  if (ue8m0) {
    float sf = __fdiv_rn(fmaxf(bf16_to_f32(amax), 1e-4f), 448.f);
    uint32_t b = __float_as_uint(sf);
    *s = (b & 0x7FFFFFu) ? __uint_as_float((b & 0x7F800000u) + 0x800000u) : sf;
  } else {
    float amaxF = fmaxf(bf16_to_f32(amax), __uint_as_float(0x2B8D0000u));  // bf16(1e-12)
    *s = __fdiv_rn(amaxF, 448.f);
  }
  *inv = __frcp_rn(*s);
}

// The spec: the code byte (sign | e4m3) of clamp(x / s) (x * (1/s) for UE8M0, exact there).
__device__ __forceinline__ uint32_t fp8_code_exact(float x, float s, float inv, int ue8m0) {
  float y = ue8m0 ? __fmul_rn(x, inv) : __fdiv_rn(x, s);
  y = fminf(fmaxf(y, -448.f), 448.f);
  uint32_t bits = __float_as_uint(y);
  return ((bits >> 24) & 0x80u) | e4m3_abs(bits & 0x7FFFFFFFu);
}

// Whether the fast quotient y = x * inv decides the code: |y| is in e4m3's normal range and more
// than two ulps away from a midpoint of the 3-bit mantissa grid (low 20 bits 0x80000).
__device__ __forceinline__ bool fp8_fast(float y) {
  uint32_t a = __float_as_uint(y) & 0x7FFFFFFFu;
  return a >= 0x3C800000u && ((a + 2u - 0x80000u) & 0xFFFFFu) > 4u;
}

#if __CUDA_ARCH__ < 890
// One element without the hardware conversion: the code byte; *v is its signed e4m3 value.
__device__ __forceinline__ uint32_t fp8_one(float x, float y, float s, float inv, int ue8m0,
                                           float* v) {
  uint32_t sign = __float_as_uint(y) & 0x80000000u;
  if (fp8_fast(y)) {  // round |y| (clamped to 448) to a 3-bit mantissa in f32: value and code
    uint32_t a = min(__float_as_uint(y) & 0x7FFFFFFFu, 0x43E00000u);
    uint32_t r = (a + 0x7FFFFu + ((a >> 20) & 1u)) & 0xFFF00000u;
    *v = __uint_as_float(r | sign);
    return (sign >> 24) | ((r >> 20) - (120u << 3));
  }
  uint32_t c = fp8_code_exact(x, s, inv, ue8m0);
  *v = (c & 0x80u) ? -e4m3_value(c & 0x7Fu) : e4m3_value(c);
  return c;
}
#endif

// Two neighbouring elements: their code bytes (x0's in bits 0-7, x1's in bits 8-15), and in
// *d0, *d1 their dequantized values (for the error statistics).
__device__ __forceinline__ uint32_t fp8_pair(float x0, float x1, float s, float inv, int ue8m0,
                                            float* d0, float* d1) {
  float y0 = __fmul_rn(x0, inv), y1 = __fmul_rn(x1, inv);
  float v0, v1;
  uint32_t codes;
#if __CUDA_ARCH__ >= 890
  // The hardware's round-to-nearest-even with saturation to 448 is the spec's clamp and e4m3().
  if (fp8_fast(y0) && fp8_fast(y1)) {
    uint16_t c;
    asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(c) : "f"(y1), "f"(y0));
    codes = c;
  } else {
    codes = fp8_code_exact(x0, s, inv, ue8m0) | (fp8_code_exact(x1, s, inv, ue8m0) << 8);
  }
  uint32_t halves;
  asm("cvt.rn.f16x2.e4m3x2 %0, %1;" : "=r"(halves) : "h"((uint16_t)codes));
  asm("cvt.f32.f16 %0, %1;" : "=f"(v0) : "h"((uint16_t)(halves & 0xFFFFu)));
  asm("cvt.f32.f16 %0, %1;" : "=f"(v1) : "h"((uint16_t)(halves >> 16)));
#else
  codes = fp8_one(x0, y0, s, inv, ue8m0, &v0) | (fp8_one(x1, y1, s, inv, ue8m0, &v1) << 8);
#endif
  *d0 = __fmul_rn(v0, s);
  *d1 = __fmul_rn(v1, s);
  return codes;
}

// ---- INT4 (groups along a row) ----

// The group's scale s = max(amax / 7, 1e-5) (as amax * f32(1/7), the spec's product), from its
// largest magnitude as f32 bits (finite).
__device__ __forceinline__ float int4_scale(uint32_t amaxBits) {
  return fmaxf(__fmul_rn(__uint_as_float(amaxBits), __uint_as_float(0x3E124925u)), 1e-5f);
}

// The spec: clamp(round-to-nearest-even(x / s), -7, 7).
__device__ __forceinline__ int int4_q_exact(float x, float s) {
  return min(max(__float2int_rn(__fdiv_rn(x, s)), -7), 7);
}

// y rounded to an integer, ties to even, by adding 1.5 * 2^23 (exact for |y| < 2^22).
__device__ __forceinline__ float int4_round(float y) {
  return __fsub_rn(__fadd_rn(y, 12582912.f), 12582912.f);
}

// Whether the rounding rq of the fast quotient y decides q: y is more than 2^-20 (two ulps of the
// largest |y|, which is below 8) away from a midpoint k + 0.5.
__device__ __forceinline__ bool int4_fast(float y, float rq) {
  return fabsf(__fsub_rn(fabsf(__fsub_rn(y, rq)), 0.5f)) > 0x1p-20f;
}

// The spec's q as an exact f32, from the fast quotient where it decides.
__device__ __forceinline__ float int4_q(float x, float s, float inv) {
  float y = __fmul_rn(x, inv);
  float rq = int4_round(y);
  return int4_fast(y, rq) ? fminf(fmaxf(rq, -7.f), 7.f) : (float)int4_q_exact(x, s);
}
