// weightsync requantization kernels: exactly ../../../../../shared/spec/QUANTIZATION.md.
// Built without fast-math and without FMA contraction (-fmad=false); divisions are __fdiv_rn
// (correctly rounded), so every output byte equals the CPU oracle (core's CpuQuantizer).
// Error statistics are reduced per thread block into partials[block*3 + {0,1,2}] =
// {max |deq - w|, sum (deq - w)^2, sum w^2}; the host adds them in block order.
#include <stdint.h>

#define BLOCK 128
#define THREADS 512

__device__ __forceinline__ float bf16_to_f32(uint16_t b) { return __uint_as_float(((uint32_t)b) << 16); }

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
  float s, inv = 0.f;
  if (ue8m0) {
    float sf = __fdiv_rn(fmaxf(bf16_to_f32((uint16_t)amax), 1e-4f), 448.f);
    uint32_t b = __float_as_uint(sf);
    s = (b & 0x7FFFFFu) ? __uint_as_float((b & 0x7F800000u) + 0x800000u) : sf;
    inv = __fdiv_rn(1.f, s);  // exact: a power of two
  } else {
    float amaxF = fmaxf(bf16_to_f32((uint16_t)amax), __uint_as_float(0x2B8D0000u));  // bf16(1e-12)
    s = __fdiv_rn(amaxF, 448.f);
  }
  if (threadIdx.x == 0) scales[(size_t)blockIdx.y * gridDim.x + blockIdx.x] = s;
  float maxErr = 0.f; double err2 = 0.0, ref2 = 0.0;
#pragma unroll
  for (int i = 0; i < 4; i++) {
    int r = r0 + 32 * i;
    if (!(colOk && r < rows)) continue;
    uint32_t words[4] = {v[i].x, v[i].y, v[i].z, v[i].w};
    uint32_t out[2] = {0, 0};
#pragma unroll
    for (int j = 0; j < 8; j++) {
      float x = bf16_to_f32((uint16_t)(words[j >> 1] >> ((j & 1) * 16)));
      float y = ue8m0 ? __fmul_rn(x, inv) : __fdiv_rn(x, s);
      y = fminf(fmaxf(y, -448.f), 448.f);
      uint32_t bits = __float_as_uint(y);
      uint32_t code = e4m3_abs(bits & 0x7FFFFFFFu);
      float deq = __fmul_rn(e4m3_value(code), s);
      float e = __fsub_rn((bits >> 31) ? -deq : deq, x);
      maxErr = fmaxf(maxErr, fabsf(e));
      err2 += (double)e * (double)e;  // f64, as the spec asks (and f32 squares overflow)
      ref2 += (double)x * (double)x;
      out[j >> 2] |= (((bits >> 24) & 0x80u) | code) << ((j & 3) * 8);
    }
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
    x[j] = bf16_to_f32((uint16_t)(h[j >> 1] >> ((j & 1) * 16)));
    amaxBits = max(amaxBits, __float_as_uint(x[j]) & 0x7FFFFFFFu);
  }
  for (int o = seg >> 1; o > 0; o >>= 1) amaxBits = max(amaxBits, __shfl_xor_sync(0xffffffffu, amaxBits, o));
  float maxErr = 0.f; double err2 = 0.0, ref2 = 0.0;
  if (amaxBits >= 0x7F800000u) {
    if (live) atomicOr(nonFinite, 1);
  } else if (live) {
    float s = fmaxf(__fmul_rn(__uint_as_float(amaxBits), __uint_as_float(0x3E124925u)), 1e-5f);
    uint32_t sb = __float_as_uint(s);
    uint16_t sBf16 = (uint16_t)((sb + 0x7FFFu + ((sb >> 16) & 1u)) >> 16);
    float sDeq = bf16_to_f32(sBf16);
    uint32_t word = 0;
#pragma unroll
    for (int j = 0; j < 8; j++) {
      int qv = __float2int_rn(__fdiv_rn(x[j], s));
      qv = min(max(qv, -7), 7);
      word |= (uint32_t)(qv + 8) << (4 * j);
      float e = __fsub_rn(__fmul_rn((float)qv, sDeq), x[j]);
      maxErr = fmaxf(maxErr, fabsf(e));
      err2 += (double)e * (double)e;
      ref2 += (double)x[j] * (double)x[j];
    }
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
