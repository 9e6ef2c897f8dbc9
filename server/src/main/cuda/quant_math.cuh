// The per-element arithmetic of the kernels (quantize.cu), which proofs.cu checks against the
// spec's literal form (../../../../../shared/spec/QUANTIZATION.md) for every input a kernel can
// see.
//
// Every quotient x / s is the correctly rounded one, taken without a division: with inv the
// correctly rounded 1/s, q = x * inv is within an ulp of x / s, the fused multiply-add
// fma(-q, s, x) is its exact remainder, and q + remainder * inv rounded once is the correctly
// rounded quotient (Markstein's theorem). Where its premises fail (a remainder below f32's
// subnormal range, for the tiniest x) the quotient is far below anything the output grids can
// tell apart; proofs.cu checks exhaustively that the outputs are the spec's there too. The sign
// is x's (s > 0): the correction alone would turn the quotient of -0 into +0, another FP8 byte.
#include <stdint.h>

__device__ __forceinline__ float bf16_to_f32(uint32_t b) { return __uint_as_float(b << 16); }

// x / s, correctly rounded, from inv = RN(1/s): the remainder negated, q * s - x, then
// q - that * inv. Negating the remainder (rather than adding x - q * s) keeps the sign of a zero
// quotient: the FP8 byte of -0 is 0x80, not 0x00.
__device__ __forceinline__ float quotient(float x, float s, float inv) {
  float q = __fmul_rn(x, inv);
  return __fmaf_rn(-__fmaf_rn(q, s, -x), inv, q);
}

// ---- FP8 (128x128 blocks) ----

// The block's scale s and 1/s rounded (exact for UE8M0, whose s is a power of two), from the
// block's largest BF16 magnitude (bits, finite).
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

// The spec's quotient: x / s, or x * (1/s) for UE8M0 (exact there).
__device__ __forceinline__ float fp8_quotient(float x, float s, float inv, int ue8m0) {
  return ue8m0 ? __fmul_rn(x, inv) : quotient(x, s, inv);
}

#if __CUDA_ARCH__ < 890
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

// The code byte (sign | e4m3) of clamp(y, -448, 448); *v is its signed value.
__device__ __forceinline__ uint32_t e4m3_code(float y, float* v) {
  uint32_t bits = __float_as_uint(fminf(fmaxf(y, -448.f), 448.f));
  uint32_t code = e4m3_abs(bits & 0x7FFFFFFFu);
  float value = e4m3_value(code);
  *v = (bits & 0x80000000u) ? -value : value;
  return ((bits >> 24) & 0x80u) | code;
}
#endif

// Two neighbouring elements: their code bytes (x0's in bits 0-7, x1's in bits 8-15), and in
// *d0, *d1 their dequantized values (for the error statistics).
__device__ __forceinline__ uint32_t fp8_pair(float x0, float x1, float s, float inv, int ue8m0,
                                            float* d0, float* d1) {
  float y0 = fp8_quotient(x0, s, inv, ue8m0), y1 = fp8_quotient(x1, s, inv, ue8m0);
  float v0, v1;
  uint32_t codes;
#if __CUDA_ARCH__ >= 890
  // The hardware's round-to-nearest-even with saturation to 448 is the spec's clamp and e4m3().
  uint16_t c;
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(c) : "f"(y1), "f"(y0));
  codes = c;
  uint32_t halves;
  asm("cvt.rn.f16x2.e4m3x2 %0, %1;" : "=r"(halves) : "h"(c));
  asm("cvt.f32.f16 %0, %1;" : "=f"(v0) : "h"((uint16_t)(halves & 0xFFFFu)));
  asm("cvt.f32.f16 %0, %1;" : "=f"(v1) : "h"((uint16_t)(halves >> 16)));
#else
  codes = e4m3_code(y0, &v0) | (e4m3_code(y1, &v1) << 8);
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

// s rounded to BF16 (nearest, ties to even): the scale stored, and the one dequantization uses.
__device__ __forceinline__ uint16_t bf16_round(float s) {
  uint32_t b = __float_as_uint(s);
  return (uint16_t)((b + 0x7FFFu + ((b >> 16) & 1u)) >> 16);
}

// round-to-nearest-even(x / s) + 1.5 * 2^23, whose f32 bits are 0x4B400000 + q: adding 1.5 * 2^23
// rounds to an integer, ties to even. The spec's clamp to [-7, 7] needs no instruction: |x| <=
// amax and s >= RN(amax * RN(1/7)) keep |x / s| below 7.0000003 (proofs.cu checks q against the
// clamped spec).
__device__ __forceinline__ float int4_biased(float x, float s, float inv) {
  return __fadd_rn(quotient(x, s, inv), 12582912.f);
}

// q itself, as an exact f32.
__device__ __forceinline__ float int4_q(float x, float s, float inv) {
  return __fsub_rn(int4_biased(x, s, inv), 12582912.f);
}
