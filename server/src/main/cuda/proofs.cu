// Exhaustive proofs that the kernels' arithmetic (quant_math.cuh: quotients without a division,
// the hardware's e4m3 conversion from compute_89 on) gives the spec's outputs, run by
// `weightsync bench gpu` on the card itself (the PTX it JIT-compiles is the one proven).
// An output element depends only on its BF16 input x and on its block's (FP8) or group's (INT4)
// largest magnitude amax >= |x|; both are enumerated: every finite BF16 amax (bits 0..0x7F7F)
// and every BF16 x with |x| <= amax, both signs, about 1.07e9 pairs per proof.
// counts[0] += pairs whose outputs differ, counts[1] += pairs checked. One thread block per amax.
#include "quant_math.cuh"

// ---- the spec, literally: a correctly rounded division, then the rounding to the grid ----

// e4m3fn code (sign | exponent | mantissa) of clamp(x / s, -448, 448), nearest, ties to even.
__device__ uint32_t spec_fp8_code(float x, float s, float inv, int ue8m0) {
  float y = ue8m0 ? __fmul_rn(x, inv) : __fdiv_rn(x, s);
  y = fminf(fmaxf(y, -448.f), 448.f);
  uint32_t bits = __float_as_uint(y), a = bits & 0x7FFFFFFFu, code;
  if (a >= 0x3C800000u) {  // >= 2^-6: round the mantissa to 3 bits, rebias 127 -> 7
    code = ((a + 0x7FFFFu + ((a >> 20) & 1u)) >> 20) - (120u << 3);
  } else {  // the subnormal grid, steps of 2^-9
    code = (uint32_t)__float2int_rn(__fmul_rn(__uint_as_float(a), 512.f));
  }
  return ((bits >> 24) & 0x80u) | code;
}

// clamp(round-to-nearest-even(x / s), -7, 7).
__device__ int spec_int4_q(float x, float s) {
  return min(max(__float2int_rn(__fdiv_rn(x, s)), -7), 7);
}

__device__ __forceinline__ void add_counts(unsigned long long differ, unsigned long long pairs,
                                           unsigned long long* counts) {
  for (int o = 16; o > 0; o >>= 1) {
    differ += __shfl_xor_sync(0xffffffffu, differ, o);
    pairs += __shfl_xor_sync(0xffffffffu, pairs, o);
  }
  if ((threadIdx.x & 31) == 0) {
    atomicAdd(&counts[0], differ);
    atomicAdd(&counts[1], pairs);
  }
}

extern "C" __global__ void prove_fp8(unsigned long long* counts, int ue8m0) {
  const uint32_t amax = blockIdx.x;
  float s, inv;
  fp8_scale(amax, ue8m0, &s, &inv);
  unsigned long long differ = 0, pairs = 0;
  for (uint32_t m = threadIdx.x; m <= amax; m += blockDim.x) {
    float xp = bf16_to_f32(m), xn = bf16_to_f32(m | 0x8000u);
    float d0, d1;
    uint32_t got = fp8_pair(xp, xn, s, inv, ue8m0, &d0, &d1);
    differ += ((got & 0xFFu) != spec_fp8_code(xp, s, inv, ue8m0))
        + ((got >> 8) != spec_fp8_code(xn, s, inv, ue8m0));
    pairs += 2;
  }
  add_counts(differ, pairs, counts);
}

extern "C" __global__ void prove_int4(unsigned long long* counts) {
  const uint32_t amaxBits = blockIdx.x << 16;
  const float s = int4_scale(amaxBits);
  const float inv = __frcp_rn(s);
  unsigned long long differ = 0, pairs = 0;
  for (uint32_t m = threadIdx.x; m <= blockIdx.x; m += blockDim.x) {
    for (uint32_t sign = 0; sign <= 0x8000u; sign += 0x8000u) {
      float x = bf16_to_f32(m | sign);
      differ += (int)int4_q(x, s, inv) != spec_int4_q(x, s);
      pairs += 1;
    }
  }
  add_counts(differ, pairs, counts);
}
