// Device helpers shared by the kernels of koopman-core (included by each .cu file; build.rs
// recompiles them when it changes).
#pragma once

// The sum of x over the 32 lanes of a warp, in lane 0 (the other lanes hold partial sums).
template <typename T>
__device__ __forceinline__ T warp_sum(T x) {
  for (int off = 16; off > 0; off >>= 1) x += __shfl_down_sync(0xffffffffu, x, off);
  return x;
}

// The output entry (j, i) of a rows x n grid owned by this thread's warp, one warp per entry (its
// lanes then split the entry's table row); false for warps past the end (uniform over the warp).
__device__ __forceinline__ bool warp_entry(uint32_t n, uint32_t rows, uint32_t& j, uint32_t& i) {
  const uint64_t warp = ((uint64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  if (warp >= (uint64_t)rows * n) return false;
  j = (uint32_t)(warp / n);
  i = (uint32_t)(warp % n);
  return true;
}
