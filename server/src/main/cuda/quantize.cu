// weightsync requantization kernels: exactly ../../../../../shared/spec/QUANTIZATION.md.
// Built without fast-math and without FMA contraction (-fmad=false); every quotient is the
// correctly rounded one, or a fast one proven to give the same bytes (quant_math.cuh, proofs.cu),
// so every output byte equals the CPU oracle (core's CpuQuantizer).
// Error statistics are reduced per thread block into partials[block*3 + {0,1,2}] =
// {max |deq - w|, sum (deq - w)^2, sum w^2}; the host adds them in block order. Each thread adds
// the squares of its 8 neighbouring elements in f32 and those sums in f64 (blocks whose largest
// magnitude is outside [2^-40, 2^60], where f32 squares could overflow or lose the sum, add every
// square in f64).
#include "quant_math.cuh"

#define BLOCK 128
#define THREADS 512

// Whether a block or group of this largest magnitude (f32 bits) sums squares of 8 in f32.
__device__ __forceinline__ bool f32_squares(uint32_t amaxBits) {
  return amaxBits >= 0x2B800000u && amaxBits < 0x5D800000u;
}

__device__ __forceinline__ void block_reduce_stats(float maxErr, double err2, double ref2,
                                                   double* partials) {
  __shared__ float smax[THREADS / 32];
  __shared__ double serr[THREADS / 32], sref[THREADS / 32];
  for (int o = 16; o > 0; o >>= 1) {
    maxErr = fmaxf(maxErr, __shfl_xor_sync(0xffffffffu, maxErr, o));
    err2 += __shfl_xor_sync(0xffffffffu, err2, o);
    ref2 += __shfl_xor_sync(0xffffffffu, ref2, o);
  }
  int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) { smax[warp] = maxErr; serr[warp] = err2; sref[warp] = ref2; }
  __syncthreads();
  if (threadIdx.x == 0) {
    float m = 0.f; double e = 0.0, r = 0.0;
    for (int w = 0; w < THREADS / 32; w++) { m = fmaxf(m, smax[w]); e += serr[w]; r += sref[w]; }
    size_t b = (size_t)blockIdx.y * gridDim.x + blockIdx.x;
    partials[b * 3] = m; partials[b * 3 + 1] = e; partials[b * 3 + 2] = r;
  }
}

// One 128x128 tile per thread block (grid = [ceil(K/128), ceil(rows/128)]). Requires K % 8 == 0:
// each thread loads 8 BF16 (16 bytes) per row it handles: column group x % 16, rows x / 16 + 32 i
// (4 rows a thread: few registers, so many tiles are in flight to hide memory latency).
extern "C" __global__ void __launch_bounds__(THREADS)
fp8_block(const uint16_t* __restrict__ w, uint8_t* __restrict__ q, float* __restrict__ scales,
          double* __restrict__ partials, int* __restrict__ nonFinite, int rows, int K, int ue8m0) {
  const int c = blockIdx.x * BLOCK + (threadIdx.x & 15) * 8;
  const int r0 = blockIdx.y * BLOCK + (threadIdx.x >> 4);
  const bool colOk = c < K;
  uint4 v[4];
  uint32_t amax = 0;
#pragma unroll
  for (int i = 0; i < 4; i++) {
    int r = r0 + 32 * i;
    if (colOk && r < rows) {
      v[i] = *reinterpret_cast<const uint4*>(w + (size_t)r * K + c);
      uint32_t words[4] = {v[i].x, v[i].y, v[i].z, v[i].w};
#pragma unroll
      for (int j = 0; j < 4; j++) {
        amax = max(amax, words[j] & 0x7FFFu);
        amax = max(amax, (words[j] >> 16) & 0x7FFFu);
      }
    } else {
      v[i] = make_uint4(0, 0, 0, 0);
    }
  }
  __shared__ uint32_t sAmax[THREADS / 32];
  for (int o = 16; o > 0; o >>= 1) amax = max(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  if ((threadIdx.x & 31) == 0) sAmax[threadIdx.x >> 5] = amax;
  __syncthreads();
  amax = 0;
  for (int i = 0; i < THREADS / 32; i++) amax = max(amax, sAmax[i]);
  if (amax >= 0x7F80u) {  // a NaN or infinity in the tile: refuse, write nothing meaningful
    if (threadIdx.x == 0) atomicOr(nonFinite, 1);
    block_reduce_stats(0.f, 0.0, 0.0, partials);
    return;
  }
  float s, inv;
  fp8_scale(amax, ue8m0, &s, &inv);
  if (threadIdx.x == 0) scales[(size_t)blockIdx.y * gridDim.x + blockIdx.x] = s;
  const bool narrow = f32_squares(amax << 16);
  float maxErr = 0.f; double err2 = 0.0, ref2 = 0.0;
#pragma unroll
  for (int i = 0; i < 4; i++) {
    int r = r0 + 32 * i;
    if (!(colOk && r < rows)) continue;
    uint32_t words[4] = {v[i].x, v[i].y, v[i].z, v[i].w};
    uint32_t out[2] = {0, 0};
    float e8 = 0.f, w8 = 0.f;
#pragma unroll
    for (int j = 0; j < 4; j++) {
      float x0 = bf16_to_f32(words[j] & 0xFFFFu), x1 = bf16_to_f32(words[j] >> 16);
      float d0, d1;
      uint32_t codes = fp8_pair(x0, x1, s, inv, ue8m0, &d0, &d1);
      out[j >> 1] |= codes << ((j & 1) * 16);
      float a0 = __fsub_rn(d0, x0), a1 = __fsub_rn(d1, x1);
      maxErr = fmaxf(maxErr, fmaxf(fabsf(a0), fabsf(a1)));
      if (narrow) {
        e8 = __fmaf_rn(a0, a0, __fmaf_rn(a1, a1, e8));
        w8 = __fmaf_rn(x0, x0, __fmaf_rn(x1, x1, w8));
      } else {
        err2 += (double)a0 * (double)a0 + (double)a1 * (double)a1;
        ref2 += (double)x0 * (double)x0 + (double)x1 * (double)x1;
      }
    }
    err2 += (double)e8;
    ref2 += (double)w8;
    *reinterpret_cast<uint2*>(q + (size_t)r * K + c) = make_uint2(out[0], out[1]);
  }
  block_reduce_stats(maxErr, err2, ref2, partials);
}

// One packed int32 (8 elements) per thread; a group of G elements is G/8 neighbouring threads,
// G/8 a power of two <= 32 (the host sends other group sizes to the CPU).
extern "C" __global__ void __launch_bounds__(THREADS)
int4_group(const uint16_t* __restrict__ w, int32_t* __restrict__ packed,
           uint16_t* __restrict__ scales, double* __restrict__ partials,
           int* __restrict__ nonFinite, long long words, int K, int G) {
  const long long t = (long long)blockIdx.x * THREADS + threadIdx.x;
  const bool live = t < words;
  const int seg = G >> 3;
  uint4 v = live ? reinterpret_cast<const uint4*>(w)[t] : make_uint4(0, 0, 0, 0);
  uint32_t h[4] = {v.x, v.y, v.z, v.w};
  float x[8];
  uint32_t amaxBits = 0;
#pragma unroll
  for (int j = 0; j < 8; j++) {
    x[j] = bf16_to_f32((h[j >> 1] >> ((j & 1) * 16)) & 0xFFFFu);
    amaxBits = max(amaxBits, __float_as_uint(x[j]) & 0x7FFFFFFFu);
  }
  for (int o = seg >> 1; o > 0; o >>= 1) amaxBits = max(amaxBits, __shfl_xor_sync(0xffffffffu, amaxBits, o));
  float maxErr = 0.f; double err2 = 0.0, ref2 = 0.0;
  if (amaxBits >= 0x7F800000u) {
    if (live) atomicOr(nonFinite, 1);
  } else if (live) {
    float s = int4_scale(amaxBits);
    float inv = __frcp_rn(s);
    uint32_t sb = __float_as_uint(s);
    uint16_t sBf16 = (uint16_t)((sb + 0x7FFFu + ((sb >> 16) & 1u)) >> 16);
    float sDeq = bf16_to_f32(sBf16);
    const bool narrow = f32_squares(amaxBits);
    uint32_t word = 0;
    float e8 = 0.f, w8 = 0.f;
#pragma unroll
    for (int j = 0; j < 8; j++) {
      float qf = int4_q(x[j], s, inv);
      // q + 8 as an integer: qf + 1.5 * 2^23 holds it in its low mantissa bits
      word |= (uint32_t)(__float_as_int(__fadd_rn(qf, 12582920.f)) - 0x4B400000) << (4 * j);
      float e = __fsub_rn(__fmul_rn(qf, sDeq), x[j]);
      maxErr = fmaxf(maxErr, fabsf(e));
      if (narrow) {
        e8 = __fmaf_rn(e, e, e8);
        w8 = __fmaf_rn(x[j], x[j], w8);
      } else {
        err2 += (double)e * (double)e;
        ref2 += (double)x[j] * (double)x[j];
      }
    }
    err2 += (double)e8;
    ref2 += (double)w8;
    packed[t] = (int32_t)word;
    if ((t & (seg - 1)) == 0) {
      long long wordsPerRow = K >> 3;
      long long row = t / wordsPerRow;
      long long g = (t % wordsPerRow) / seg;
      scales[row * (K / G) + g] = sBf16;
    }
  }
  block_reduce_stats(maxErr, err2, ref2, partials);
}
