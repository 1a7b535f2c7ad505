// Weighted gathers on NVIDIA GPUs: the CUDA side of koopman-core's `gather` module.
//
// Complex values are packed as (re, im) pairs of T. A weighted gather maps rows y (rows, n) to
//   out[j, i] = scale_out * (base[j, i] + scale_in * sum_c w(i, c) y[j, T[i, c]])
// for an index table T (n, k) whose entries equal to n read zero. The weight w(i, c) is
//   mode 0: w[i, c] (one weight per output row), mode 1: w[c] (shared), mode 2: w[T[i, c], c]
//   (the weight of the gathered row: the adjoint of mode 0 over the transposed table),
// conjugated when conj != 0. base, out and acc may be null (no base term, no stored output,
// no accumulation acc += out); with y null the gather is skipped (out = scale_out * base).
// The CPU reference of every index expression here is `Gather::run` / `weight_grad_kernel`
// in gather.rs; tests compare the two on each compiled device.
#include <stdint.h>

#include "common.cuh"

template <typename T>
__device__ __forceinline__ void gather_body(const T* __restrict__ y, const T* __restrict__ w,
                                            const uint32_t* __restrict__ table,
                                            T* out, const T* base, T* acc, T scale_in, T scale_out,
                                            uint32_t n, uint32_t k, uint32_t rows, int mode,
                                            int conj) {
  // One warp per output entry (j, i); its lanes split the k columns of row i of the table, so
  // the table and per-row weights are read coalesced.
  const uint32_t lane = threadIdx.x & 31u;
  uint32_t j, i;
  if (!warp_entry(n, rows, j, i)) return;
  T re = 0, im = 0;
  if (y != nullptr) {
    const T* yrow = y + 2ull * j * n;
    for (uint32_t c = lane; c < k; c += 32u) {
      const uint32_t src = table[(uint64_t)i * k + c];
      if (src >= n) continue;
      const uint64_t widx = mode == 0 ? (uint64_t)i * k + c
                                      : (mode == 1 ? (uint64_t)c : (uint64_t)src * k + c);
      const T wr = w[2 * widx];
      const T wi = conj ? -w[2 * widx + 1] : w[2 * widx + 1];
      const T yr = yrow[2ull * src];
      const T yi = yrow[2ull * src + 1];
      re += wr * yr - wi * yi;
      im += wr * yi + wi * yr;
    }
    re = warp_sum(re);
    im = warp_sum(im);
  }
  if (lane == 0) {
    const uint64_t o = 2ull * ((uint64_t)j * n + i);
    re *= scale_in;
    im *= scale_in;
    if (base != nullptr) {
      re += base[o];
      im += base[o + 1];
    }
    re *= scale_out;
    im *= scale_out;
    if (out != nullptr) {
      out[o] = re;
      out[o + 1] = im;
    }
    if (acc != nullptr) {
      acc[o] += re;
      acc[o + 1] += im;
    }
  }
}

// dw[i, c] = sum_r conj(y[r, T[i, c]]) g[r, i]: one thread per weight.
template <typename T>
__device__ __forceinline__ void weight_grad_rows_body(const T* __restrict__ y,
                                                      const T* __restrict__ g,
                                                      const uint32_t* __restrict__ table,
                                                      T* __restrict__ dw, uint32_t n, uint32_t k,
                                                      uint32_t rows) {
  const uint64_t idx = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= (uint64_t)n * k) return;
  const uint32_t i = (uint32_t)(idx / k);
  const uint32_t src = table[idx];
  T re = 0, im = 0;
  if (src < n) {
    for (uint32_t r = 0; r < rows; ++r) {
      const uint64_t a = 2ull * ((uint64_t)r * n + src);
      const uint64_t b = 2ull * ((uint64_t)r * n + i);
      const T yr = y[a], yi = y[a + 1], gr = g[b], gi = g[b + 1];
      re += yr * gr + yi * gi;
      im += yr * gi - yi * gr;
    }
  }
  dw[2 * idx] = re;
  dw[2 * idx + 1] = im;
}

// dw[c] = sum_r sum_i conj(y[r, T[i, c]]) g[r, i]: one block per column c (shared weights).
template <typename T>
__device__ __forceinline__ void weight_grad_shared_body(const T* __restrict__ y,
                                                        const T* __restrict__ g,
                                                        const uint32_t* __restrict__ table,
                                                        T* __restrict__ dw, uint32_t n,
                                                        uint32_t k, uint32_t rows) {
  __shared__ T sre[256];
  __shared__ T sim[256];
  const uint32_t c = blockIdx.x;
  T re = 0, im = 0;
  const uint64_t total = (uint64_t)rows * n;
  for (uint64_t t = threadIdx.x; t < total; t += blockDim.x) {
    const uint32_t r = (uint32_t)(t / n);
    const uint32_t i = (uint32_t)(t % n);
    const uint32_t src = table[(uint64_t)i * k + c];
    if (src >= n) continue;
    const uint64_t a = 2ull * ((uint64_t)r * n + src);
    const uint64_t b = 2ull * ((uint64_t)r * n + i);
    const T yr = y[a], yi = y[a + 1], gr = g[b], gi = g[b + 1];
    re += yr * gr + yi * gi;
    im += yr * gi - yi * gr;
  }
  sre[threadIdx.x] = re;
  sim[threadIdx.x] = im;
  __syncthreads();
  for (uint32_t s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) {
      sre[threadIdx.x] += sre[threadIdx.x + s];
      sim[threadIdx.x] += sim[threadIdx.x + s];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    dw[2 * c] = sre[0];
    dw[2 * c + 1] = sim[0];
  }
}

// wt[l, c] = conj(w[T'[l, c], c]) (0 outside): the weights of the adjoint gather laid out per
// output row, so that a sweep of adjoint gathers reads them coalesced (mode 0, no conj).
template <typename T>
__device__ __forceinline__ void transpose_weights_body(const T* __restrict__ w,
                                                       const uint32_t* __restrict__ table_t,
                                                       T* __restrict__ wt, uint32_t n,
                                                       uint32_t k) {
  const uint64_t idx = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= (uint64_t)n * k) return;
  const uint32_t c = (uint32_t)(idx % k);
  const uint32_t src = table_t[idx];
  if (src < n) {
    const uint64_t from = 2ull * ((uint64_t)src * k + c);
    wt[2 * idx] = w[from];
    wt[2 * idx + 1] = -w[from + 1];
  } else {
    wt[2 * idx] = 0;
    wt[2 * idx + 1] = 0;
  }
}

// out[j, i] = sum_c u(i, c) y[j, T[i, c]] with u(i, c) = sum_q f[T[i, c], q] a[q, c]: the gather
// whose weights combine d shared coefficient rows a (d, k) with real factors f (n, d) of the
// gathered position (the Toeplitz generator with one factor), so that only the table is read per
// entry instead of n k stored weights. One warp per output entry, as gather_body. The CPU
// reference is `structured_gather_cpu` in gather.rs.
template <typename T>
__device__ __forceinline__ void structured_body(const T* __restrict__ y, const T* __restrict__ a,
                                                const T* __restrict__ f,
                                                const uint32_t* __restrict__ table, T* out,
                                                uint32_t n, uint32_t k, uint32_t d,
                                                uint32_t rows) {
  const uint32_t lane = threadIdx.x & 31u;
  uint32_t j, i;
  if (!warp_entry(n, rows, j, i)) return;
  const T* yrow = y + 2ull * j * n;
  T re = 0, im = 0;
  for (uint32_t c = lane; c < k; c += 32u) {
    const uint32_t src = table[(uint64_t)i * k + c];
    if (src >= n) continue;
    T ur = 0, ui = 0;
    for (uint32_t q = 0; q < d; ++q) {
      const T fq = f[(uint64_t)src * d + q];
      ur += fq * a[2ull * (q * k + c)];
      ui += fq * a[2ull * (q * k + c) + 1];
    }
    const T yr = yrow[2ull * src];
    const T yi = yrow[2ull * src + 1];
    re += ur * yr - ui * yi;
    im += ur * yi + ui * yr;
  }
  re = warp_sum(re);
  im = warp_sum(im);
  if (lane == 0) {
    const uint64_t o = 2ull * ((uint64_t)j * n + i);
    out[o] = re;
    out[o + 1] = im;
  }
}

template <typename T>
__device__ __forceinline__ void copy_body(const T* __restrict__ x, T* __restrict__ y,
                                          uint64_t len) {
  const uint64_t idx = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx < len) y[idx] = x[idx];
}

#define KOOPMAN_GATHER_KERNELS(T, SUFFIX)                                                       \
  extern "C" __global__ void koopman_gather_##SUFFIX(                                           \
      const T* y, const T* w, const uint32_t* table, T* out, const T* base, T* acc, T scale_in, \
      T scale_out, uint32_t n, uint32_t k, uint32_t rows, int mode, int conj) {                 \
    gather_body<T>(y, w, table, out, base, acc, scale_in, scale_out, n, k, rows, mode, conj);   \
  }                                                                                             \
  extern "C" __global__ void koopman_weight_grad_rows_##SUFFIX(                                 \
      const T* y, const T* g, const uint32_t* table, T* dw, uint32_t n, uint32_t k,             \
      uint32_t rows) {                                                                          \
    weight_grad_rows_body<T>(y, g, table, dw, n, k, rows);                                      \
  }                                                                                             \
  extern "C" __global__ void koopman_weight_grad_shared_##SUFFIX(                               \
      const T* y, const T* g, const uint32_t* table, T* dw, uint32_t n, uint32_t k,             \
      uint32_t rows) {                                                                          \
    weight_grad_shared_body<T>(y, g, table, dw, n, k, rows);                                    \
  }                                                                                             \
  extern "C" __global__ void koopman_transpose_weights_##SUFFIX(                                \
      const T* w, const uint32_t* table_t, T* wt, uint32_t n, uint32_t k) {                     \
    transpose_weights_body<T>(w, table_t, wt, n, k);                                            \
  }                                                                                             \
  extern "C" __global__ void koopman_gather_structured_##SUFFIX(                                \
      const T* y, const T* a, const T* f, const uint32_t* table, T* out, uint32_t n, uint32_t k, \
      uint32_t d, uint32_t rows) {                                                              \
    structured_body<T>(y, a, f, table, out, n, k, d, rows);                                     \
  }                                                                                             \
  extern "C" __global__ void koopman_copy_##SUFFIX(const T* x, T* y, uint64_t len) {            \
    copy_body<T>(x, y, len);                                                                    \
  }

KOOPMAN_GATHER_KERNELS(float, f32)
KOOPMAN_GATHER_KERNELS(double, f64)
