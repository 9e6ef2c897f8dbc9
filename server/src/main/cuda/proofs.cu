// Exhaustive proofs that the kernels' fast quotients (quant_math.cuh) give the spec's outputs,
// run by `weightsync bench gpu` on the card itself (the PTX it JIT-compiles is the one proven).
// An output element depends only on its BF16 input x and on its block's (FP8) or group's (INT4)
// largest magnitude amax >= |x|; both are enumerated: every finite BF16 amax (bits 0..0x7F7F)
// and every BF16 x with |x| <= amax, both signs, about 2.1e9 pairs per proof.
// counts[0] += pairs whose outputs differ, counts[1] += pairs the fast form sent to the exact
// one, counts[2] += pairs checked. One thread block per amax.
#include "quant_math.cuh"

__device__ __forceinline__ void add_counts(unsigned long long differ, unsigned long long slow,
                                           unsigned long long pairs, unsigned long long* counts) {
  for (int o = 16; o > 0; o >>= 1) {
    differ += __shfl_xor_sync(0xffffffffu, differ, o);
    slow += __shfl_xor_sync(0xffffffffu, slow, o);
    pairs += __shfl_xor_sync(0xffffffffu, pairs, o);
  }
  if ((threadIdx.x & 31) == 0) {
    atomicAdd(&counts[0], differ);
    atomicAdd(&counts[1], slow);
    atomicAdd(&counts[2], pairs);
  }
}

extern "C" __global__ void prove_fp8(unsigned long long* counts, int ue8m0) {
  const uint32_t amax = blockIdx.x;
  float s, inv;
  fp8_scale(amax, ue8m0, &s, &inv);
  unsigned long long differ = 0, slow = 0, pairs = 0;
  for (uint32_t m = threadIdx.x; m <= amax; m += blockDim.x) {
    float xp = bf16_to_f32(m), xn = bf16_to_f32(m | 0x8000u);
    float d0, d1;
    uint32_t fast = fp8_pair(xp, xn, s, inv, ue8m0, &d0, &d1);
    uint32_t exact = fp8_code_exact(xp, s, inv, ue8m0) | (fp8_code_exact(xn, s, inv, ue8m0) << 8);
    differ += ((fast & 0xFFu) != (exact & 0xFFu)) + ((fast >> 8) != (exact >> 8));
    slow += !fp8_fast(__fmul_rn(xp, inv)) + !fp8_fast(__fmul_rn(xn, inv));
    pairs += 2;
  }
  add_counts(differ, slow, pairs, counts);
}

extern "C" __global__ void prove_int4(unsigned long long* counts) {
  const uint32_t amaxBits = blockIdx.x << 16;
  const float s = int4_scale(amaxBits);
  const float inv = __frcp_rn(s);
  unsigned long long differ = 0, slow = 0, pairs = 0;
  for (uint32_t m = threadIdx.x; m <= blockIdx.x; m += blockDim.x) {
    for (uint32_t sign = 0; sign <= 0x8000u; sign += 0x8000u) {
      float x = bf16_to_f32(m | sign);
      float y = __fmul_rn(x, inv);
      slow += !int4_fast(y, int4_round(y));
      differ += (int)int4_q(x, s, inv) != int4_q_exact(x, s);
      pairs += 1;
    }
  }
  add_counts(differ, slow, pairs, counts);
}
