// The fused Arnoldi process of a weighted-gather operator on NVIDIA GPUs: the CUDA side of
// koopman-core's `arnoldi` module. One thread block builds the whole Krylov basis, so nothing is
// read back to the host between Krylov vectors (one launch per expv sub-step instead of a few
// dozen small kernels and a device-to-host read per vector).
//
// The operator is A y = gather(y): (A y)[i] = sum_c w[i, c] y[T[i, c]] (entries T = n read zero),
// with per-row complex weights w (n, k, 2) and the table T (n, k), as in gather.cu (mode 0).
// Input: the start vector as two real rows v (2, n) (row 0 = Re, row 1 = Im).
// Output `out` (T elements), the layout of `arnoldi.rs` (`INFO`, `projected_len`):
//   out[0] steps taken, out[1] beta = ||v||, out[2] ||A v_m|| after m steps without breakdown
//   (else 0), out[3] the last subdiagonal norm, out[4] breakdown (0/1), out[5] vectors that took
//   the second Gram-Schmidt pass, out[6] non-finite (0/1), out[7] 0;
//   out[8 ..] the projected matrix H ((m + 1) x m, column-major, complex pairs):
//   H[i, j] at 8 + 2 (j (m + 1) + i);
//   then the basis as real rows (2 (m + 2), n): row 2i = Re v_i, row 2i + 1 = Im v_i; the row pair
//   m + 1 is the work vector of the last product A v_m.
// Arnoldi with classical Gram-Schmidt, a second pass when the first keeps less than 1/sqrt(2) of
// the norm (DGKS); a breakdown when ||p|| <= threshold or j + 1 = n. The CPU reference of every
// step is `arnoldi_cpu` in arnoldi.rs; tests compare the two on each compiled device.
#include <stdint.h>

#include "common.cuh"

#define ARNOLDI_THREADS 512
#define ARNOLDI_WARPS (ARNOLDI_THREADS / 32)
#define ARNOLDI_MAX_DIM 64
#define ARNOLDI_INFO 8

// The sum of x over the block, returned to every thread. `scratch` holds ARNOLDI_WARPS values.
template <typename T>
__device__ __forceinline__ T block_sum(T x, T* scratch) {
  x = warp_sum(x);
  const uint32_t lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  T total = 0;
  for (int w = 0; w < ARNOLDI_WARPS; ++w) total += scratch[w];
  __syncthreads();
  return total;
}

// ||(re, im)||^2 over the block.
template <typename T>
__device__ __forceinline__ T block_norm2(const T* re, const T* im, uint32_t n, T* scratch) {
  T s = 0;
  for (uint32_t l = threadIdx.x; l < n; l += ARNOLDI_THREADS) s += re[l] * re[l] + im[l] * im[l];
  return block_sum(s, scratch);
}

// out = A y for y given as rows (yre, yim): one warp per output entry, its lanes over the columns.
template <typename T>
__device__ __forceinline__ void block_gather(const T* __restrict__ w,
                                             const uint32_t* __restrict__ table, const T* yre,
                                             const T* yim, T* ore, T* oim, uint32_t n,
                                             uint32_t k) {
  const uint32_t lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
  for (uint32_t i = warp; i < n; i += ARNOLDI_WARPS) {
    T re = 0, im = 0;
    for (uint32_t c = lane; c < k; c += 32u) {
      const uint64_t idx = (uint64_t)i * k + c;
      const uint32_t src = table[idx];
      if (src >= n) continue;
      const T wr = w[2 * idx], wi = w[2 * idx + 1];
      const T yr = yre[src], yi = yim[src];
      re += wr * yr - wi * yi;
      im += wr * yi + wi * yr;
    }
    re = warp_sum(re);
    im = warp_sum(im);
    if (lane == 0) {
      ore[i] = re;
      oim[i] = im;
    }
  }
  __syncthreads();
}

// One classical Gram-Schmidt pass of p against v_0 .. v_{count-1}: h = V^* p, p -= V h; h is
// added to hs (2 count values in shared memory).
template <typename T>
__device__ __forceinline__ void block_project(const T* basis, T* pre, T* pim, uint32_t n,
                                              uint32_t count, T* hs, T (*red)[2 * (ARNOLDI_MAX_DIM + 1)]) {
  const uint32_t lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
  for (uint32_t v = 0; v < count; ++v) {
    const T* vre = basis + (uint64_t)(2 * v) * n;
    const T* vim = vre + n;
    T re = 0, im = 0;
    for (uint32_t l = threadIdx.x; l < n; l += ARNOLDI_THREADS) {
      // conj(v) p
      re += vre[l] * pre[l] + vim[l] * pim[l];
      im += vre[l] * pim[l] - vim[l] * pre[l];
    }
    re = warp_sum(re);
    im = warp_sum(im);
    if (lane == 0) {
      red[warp][2 * v] = re;
      red[warp][2 * v + 1] = im;
    }
  }
  __syncthreads();
  __shared__ T h[2 * (ARNOLDI_MAX_DIM + 1)];
  for (uint32_t t = threadIdx.x; t < 2 * count; t += ARNOLDI_THREADS) {
    T s = 0;
    for (int w = 0; w < ARNOLDI_WARPS; ++w) s += red[w][t];
    h[t] = s;
    hs[t] += s;
  }
  __syncthreads();
  for (uint32_t l = threadIdx.x; l < n; l += ARNOLDI_THREADS) {
    T re = pre[l], im = pim[l];
    for (uint32_t v = 0; v < count; ++v) {
      const T a = basis[(uint64_t)(2 * v) * n + l], b = basis[(uint64_t)(2 * v + 1) * n + l];
      const T hr = h[2 * v], hi = h[2 * v + 1];
      re -= a * hr - b * hi;
      im -= a * hi + b * hr;
    }
    pre[l] = re;
    pim[l] = im;
  }
  __syncthreads();
}

template <typename T>
__device__ __forceinline__ void arnoldi_body(const T* __restrict__ v, const T* __restrict__ w,
                                             const uint32_t* __restrict__ table, T* out,
                                             uint32_t n, uint32_t k, uint32_t m, T threshold) {
  __shared__ T scratch[ARNOLDI_WARPS];
  __shared__ T red[ARNOLDI_WARPS][2 * (ARNOLDI_MAX_DIM + 1)];
  __shared__ T hs[2 * (ARNOLDI_MAX_DIM + 1)];
  T* info = out;
  T* H = out + ARNOLDI_INFO;
  T* basis = H + 2ull * m * (m + 1);
  const T beta = sqrt(block_norm2(v, v + n, n, scratch));
  T steps = 0, avnorm = 0, last = 0, breakdown = 0, reorth = 0, nonfinite = 0;
  if (!isfinite(beta)) {
    nonfinite = 1;
  } else if (beta > 0) {
    for (uint32_t l = threadIdx.x; l < n; l += ARNOLDI_THREADS) {
      basis[l] = v[l] / beta;
      basis[n + l] = v[n + l] / beta;
    }
    __syncthreads();
    for (uint32_t j = 0; j < m; ++j) {
      const T* yre = basis + (uint64_t)(2 * j) * n;
      T* pre = basis + (uint64_t)(2 * j + 2) * n;
      T* pim = pre + n;
      block_gather(w, table, yre, yre + n, pre, pim, n, k);
      const T before = sqrt(block_norm2(pre, pim, n, scratch));
      for (uint32_t t = threadIdx.x; t < 2 * (j + 1); t += ARNOLDI_THREADS) hs[t] = 0;
      __syncthreads();
      block_project(basis, pre, pim, n, j + 1, hs, red);
      T s = sqrt(block_norm2(pre, pim, n, scratch));
      if (s < (T)0.70710678118654752440 * before) {
        block_project(basis, pre, pim, n, j + 1, hs, red);
        s = sqrt(block_norm2(pre, pim, n, scratch));
        reorth += 1;
      }
      for (uint32_t t = threadIdx.x; t < 2 * (j + 1); t += ARNOLDI_THREADS)
        H[2ull * j * (m + 1) + t] = hs[t];
      if (threadIdx.x == 0) {
        H[2ull * (j * (m + 1) + j + 1)] = s;
        H[2ull * (j * (m + 1) + j + 1) + 1] = 0;
      }
      steps = (T)(j + 1);
      last = s;
      if (!isfinite(s)) {
        nonfinite = 1;
        break;
      }
      if (s <= threshold || j + 1 == n) {
        breakdown = 1;
        break;
      }
      for (uint32_t l = threadIdx.x; l < n; l += ARNOLDI_THREADS) {
        pre[l] /= s;
        pim[l] /= s;
      }
      __syncthreads();
    }
    if (breakdown == 0 && nonfinite == 0) {
      const T* yre = basis + (uint64_t)(2 * m) * n;
      T* pre = basis + (uint64_t)(2 * m + 2) * n;
      block_gather(w, table, yre, yre + n, pre, pre + n, n, k);
      avnorm = sqrt(block_norm2(pre, pre + n, n, scratch));
    }
  }
  if (threadIdx.x == 0) {
    info[0] = steps;
    info[1] = beta;
    info[2] = avnorm;
    info[3] = last;
    info[4] = breakdown;
    info[5] = reorth;
    info[6] = nonfinite;
    info[7] = 0;
  }
}

#define KOOPMAN_ARNOLDI_KERNELS(T, SUFFIX)                                                    \
  extern "C" __global__ void __launch_bounds__(ARNOLDI_THREADS)                               \
      koopman_arnoldi_##SUFFIX(const T* v, const T* w, const uint32_t* table, T* out,         \
                               uint32_t n, uint32_t k, uint32_t m, T threshold) {             \
    arnoldi_body<T>(v, w, table, out, n, k, m, threshold);                                    \
  }

KOOPMAN_ARNOLDI_KERNELS(float, f32)
KOOPMAN_ARNOLDI_KERNELS(double, f64)
