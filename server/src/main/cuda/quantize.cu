// weightsync requantization kernels: exactly ../../../../../shared/spec/QUANTIZATION.md.
// Built without fast-math and without FMA contraction (-fmad=false); every quotient is the
// correctly rounded one (quant_math.cuh, proven by proofs.cu), so every output byte equals the
// CPU oracle (core's CpuQuantizer).
//
// Both kernels are launched with as many thread blocks as the card holds at once (the host asks
// the driver) and walk their work with a stride of the grid, so the statistics are reduced once
// per thread block, not once per tile, and the next tile's loads of one block overlap another's
// arithmetic. Error statistics go to partials[block*3 + {0,1,2}] = {max |deq - w|,
// sum (deq - w)^2, sum w^2}; the host adds them in block order. Each thread adds the squares of
// 8 neighbouring elements in f32 and those sums in f64 (blocks or groups whose largest magnitude
// is outside [2^-40, 2^60], where f32 squares could overflow or lose the sum, add every square
// in f64).
#include "quant_math.cuh"

#define BLOCK 128
#define THREADS 512
// Tuning, measured on an H200 (docs/measurements/): pairs of packed words a thread of int4_group
// loads at once, and the thread blocks each kernel is compiled to fit on one multiprocessor (registers).
#ifndef INT4_PAIRS
#define INT4_PAIRS 1
#endif
#ifndef FP8_BLOCKS_PER_SM
#define FP8_BLOCKS_PER_SM 3
#endif
#ifndef INT4_BLOCKS_PER_SM
#define INT4_BLOCKS_PER_SM 4
#endif

// Whether a block or group of this largest magnitude (f32 bits) sums squares of 8 in f32.
__device__ __forceinline__ bool f32_squares(uint32_t amaxBits) {
  return amaxBits >= 0x2B800000u && amaxBits < 0x5D800000u;
}

// A thread's error statistics over 8 elements (see the file comment); narrow: their squares are
// summed in f32 first. A constant narrow makes the other form vanish from the code.
struct Stats {
  const bool narrow;
  float maxErr = 0.f, e8 = 0.f, w8 = 0.f;
  double err2 = 0.0, ref2 = 0.0;

  __device__ __forceinline__ explicit Stats(bool narrow) : narrow(narrow) {}

  // One element x whose dequantized value is deq.
  __device__ __forceinline__ void add(float deq, float x) {
    float e = __fsub_rn(deq, x);
    maxErr = fmaxf(maxErr, fabsf(e));
    if (narrow) {
      e8 = __fmaf_rn(e, e, e8);
      w8 = __fmaf_rn(x, x, w8);
    } else {
      err2 += (double)e * (double)e;
      ref2 += (double)x * (double)x;
    }
  }

  // After every 8 elements, and adds them to the thread's running sums.
  __device__ __forceinline__ void flush(float* maxAll, double* err2All, double* ref2All) {
    *maxAll = fmaxf(*maxAll, maxErr);
    *err2All += narrow ? (double)e8 : err2;
    *ref2All += narrow ? (double)w8 : ref2;
  }
};

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
    partials[blockIdx.x * 3] = m; partials[blockIdx.x * 3 + 1] = e; partials[blockIdx.x * 3 + 2] = r;
  }
}

// A thread's 4 rows of 8 elements of a tile: codes to q, errors to the statistics. (One form for
// both kinds of statistics: two would double the registers live across the choice.)
__device__ __forceinline__ void fp8_rows(const uint4* v, uint8_t* __restrict__ q, int rows, int K,
                                         int r0, int c, bool colOk, float s, float inv, int ue8m0,
                                         bool narrow, float* maxErr, double* err2, double* ref2) {
#pragma unroll
  for (int i = 0; i < 4; i++) {
    int r = r0 + 32 * i;
    if (!(colOk && r < rows)) continue;
    uint32_t words[4] = {v[i].x, v[i].y, v[i].z, v[i].w};
    uint32_t out[2] = {0, 0};
    Stats st(narrow);
#pragma unroll
    for (int j = 0; j < 4; j++) {
      float x0 = bf16_to_f32(words[j] & 0xFFFFu), x1 = __uint_as_float(words[j] & 0xFFFF0000u);
      float d0, d1;
      uint32_t codes = fp8_pair(x0, x1, s, inv, ue8m0, &d0, &d1);
      out[j >> 1] |= codes << ((j & 1) * 16);
      st.add(d0, x0);
      st.add(d1, x1);
    }
    st.flush(maxErr, err2, ref2);
    *reinterpret_cast<uint2*>(q + (size_t)r * K + c) = make_uint2(out[0], out[1]);
  }
}

// 128x128 tiles (ceil(K/128) per block row, tile t at block row t / that, block column t % that),
// one at a time per thread block. Requires K % 8 == 0: each thread loads 8 BF16 (16 bytes) per
// row it handles: column group x % 16, rows x / 16 + 32 i (4 rows a thread: few registers, so
// several thread blocks fit on a multiprocessor).
extern "C" __global__ void __launch_bounds__(THREADS, FP8_BLOCKS_PER_SM)
fp8_block(const uint16_t* __restrict__ w, uint8_t* __restrict__ q, float* __restrict__ scales,
          double* __restrict__ partials, int* __restrict__ nonFinite, int rows, int K, int ue8m0) {
  __shared__ uint32_t sAmax[2][THREADS / 32];  // by tile parity: one barrier per tile suffices
  const int tilesX = (K + BLOCK - 1) / BLOCK;
  const int tiles = tilesX * ((rows + BLOCK - 1) / BLOCK);
  float maxErr = 0.f; double err2 = 0.0, ref2 = 0.0;
  int parity = 0;
  for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x, parity ^= 1) {
    const int c = (tile % tilesX) * BLOCK + (threadIdx.x & 15) * 8;
    const int r0 = (tile / tilesX) * BLOCK + (threadIdx.x >> 4);
    const bool colOk = c < K;
    uint4 v[4];
    uint32_t amax = 0;  // as two BF16 magnitudes, one per half
#pragma unroll
    for (int i = 0; i < 4; i++) {
      int r = r0 + 32 * i;
      v[i] = colOk && r < rows ? *reinterpret_cast<const uint4*>(w + (size_t)r * K + c)
                               : make_uint4(0, 0, 0, 0);
      amax = __vmaxu2(amax, __vmaxu2(v[i].x & 0x7FFF7FFFu, v[i].y & 0x7FFF7FFFu));
      amax = __vmaxu2(amax, __vmaxu2(v[i].z & 0x7FFF7FFFu, v[i].w & 0x7FFF7FFFu));
    }
    amax = __reduce_max_sync(0xffffffffu, max(amax & 0xFFFFu, amax >> 16));
    if ((threadIdx.x & 31) == 0) sAmax[parity][threadIdx.x >> 5] = amax;
    __syncthreads();
    amax = 0;
#pragma unroll
    for (int i = 0; i < THREADS / 32; i++) amax = max(amax, sAmax[parity][i]);
    if (amax >= 0x7F80u) {  // a NaN or infinity in the tile: refuse, write nothing meaningful
      if (threadIdx.x == 0) atomicOr(nonFinite, 1);
      continue;
    }
    float s, inv;
    fp8_scale(amax, ue8m0, &s, &inv);
    if (threadIdx.x == 0) scales[tile] = s;
    fp8_rows(v, q, rows, K, r0, c, colOk, s, inv, ue8m0, f32_squares(amax << 16), &maxErr, &err2,
             &ref2);
  }
  block_reduce_stats(maxErr, err2, ref2, partials);
}

// The packed word of 8 elements (h: 4 words of BF16 pairs) of a group of scale s: q + 8 in each
// nibble; errors to the statistics.
template <bool NARROW>
__device__ __forceinline__ uint32_t int4_word(const uint32_t* h, float s, float inv, float sDeq,
                                              float* maxErr, double* err2, double* ref2) {
  uint32_t word = 0;
  Stats st(NARROW);
#pragma unroll
  for (int j = 0; j < 8; j++) {
    float x = j & 1 ? __uint_as_float(h[j >> 1] & 0xFFFF0000u) : bf16_to_f32(h[j >> 1] & 0xFFFFu);
    float biased = int4_biased(x, s, inv);
    word |= (__float_as_uint(biased) & 0xFu) << (4 * j);  // q mod 16
    st.add(__fmul_rn(__fsub_rn(biased, 12582912.f), sDeq), x);
  }
  st.flush(maxErr, err2, ref2);
  return word ^ 0x88888888u;  // q + 8 = (q mod 16) with its top bit flipped, for q in [-8, 7]
}

// Two neighbouring packed words (h: 16 elements of one group) of a group whose largest
// magnitude is amaxBits (f32 bits); the group's first pair also writes the group's scale.
template <bool NARROW>
__device__ __forceinline__ uint2 int4_pair(const uint32_t* h, uint32_t amaxBits, float* maxErr,
                                           double* err2, double* ref2) {
  float s = int4_scale(amaxBits);
  float inv = __frcp_rn(s);
  float sDeq = bf16_to_f32(bf16_round(s));
  uint32_t lo = int4_word<NARROW>(h, s, inv, sDeq, maxErr, err2, ref2);
  uint32_t hi = int4_word<NARROW>(h + 4, s, inv, sDeq, maxErr, err2, ref2);
  return make_uint2(lo, hi);
}

// Pairs of packed int32 words (16 elements), INT4_PAIRS at a time per thread, THREADS apart so
// that a warp's loads are contiguous; a group of G elements is G/16 neighbouring threads, G/8 a
// power of two from 2 to 32 (the host sends other group sizes to the CPU). Scales are in
// row-major group order (a row holds a whole number of groups): group 2p / (G/8) for pair p.
extern "C" __global__ void __launch_bounds__(THREADS, INT4_BLOCKS_PER_SM)
int4_group(const uint16_t* __restrict__ w, int32_t* __restrict__ packed,
           uint16_t* __restrict__ scales, double* __restrict__ partials,
           int* __restrict__ nonFinite, long long words, int K, int G) {
  const int lanes = G >> 4;  // threads a group spans
  const int pairShift = __ffs(G >> 3) - 2;  // pair p is in group p >> pairShift
  const long long pairs = words >> 1;
  float maxErr = 0.f; double err2 = 0.0, ref2 = 0.0;
  const long long stride = (long long)gridDim.x * THREADS * INT4_PAIRS;
  // The loop runs while the warp's first lane has a pair, so that every lane of the warp takes
  // part in the group maximum's shuffles (a lane gone from the loop would leave them undefined:
  // the warp hung on a band whose pairs are not a multiple of 32, e.g. 130 rows of 128).
  const int lane = threadIdx.x & 31;
  for (long long base = (long long)blockIdx.x * THREADS * INT4_PAIRS + threadIdx.x;
       base - lane < pairs; base += stride) {
    uint4 v[2 * INT4_PAIRS];
#pragma unroll
    for (int u = 0; u < INT4_PAIRS; u++) {
      long long p = base + (long long)u * THREADS;
      const uint4* at = reinterpret_cast<const uint4*>(w) + 2 * p;
      v[2 * u] = p < pairs ? at[0] : make_uint4(0, 0, 0, 0);
      v[2 * u + 1] = p < pairs ? at[1] : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < INT4_PAIRS; u++) {
      const long long p = base + (long long)u * THREADS;
      uint32_t h[8] = {v[2 * u].x, v[2 * u].y, v[2 * u].z, v[2 * u].w,
                       v[2 * u + 1].x, v[2 * u + 1].y, v[2 * u + 1].z, v[2 * u + 1].w};
      uint32_t amax2 = 0;
#pragma unroll
      for (int k = 0; k < 8; k += 2) {
        amax2 = __vmaxu2(amax2, __vmaxu2(h[k] & 0x7FFF7FFFu, h[k + 1] & 0x7FFF7FFFu));
      }
      uint32_t amax = max(amax2 & 0xFFFFu, amax2 >> 16);
      for (int o = lanes >> 1; o > 0; o >>= 1) amax = max(amax, __shfl_xor_sync(0xffffffffu, amax, o));
      if (p >= pairs) continue;
      if (amax >= 0x7F80u) {
        atomicOr(nonFinite, 1);
        continue;
      }
      uint2 out = f32_squares(amax << 16)
          ? int4_pair<true>(h, amax << 16, &maxErr, &err2, &ref2)
          : int4_pair<false>(h, amax << 16, &maxErr, &err2, &ref2);
      reinterpret_cast<uint2*>(packed)[p] = out;
      if ((p & (lanes - 1)) == 0) scales[p >> pairShift] = bf16_round(int4_scale(amax << 16));
    }
  }
  block_reduce_stats(maxErr, err2, ref2, partials);
}
