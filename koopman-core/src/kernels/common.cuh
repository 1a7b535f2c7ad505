// Device helpers shared by the kernels of koopman-core (included by each .cu file; build.rs
// recompiles them when it changes).
#pragma once

// The sum of x over the 32 lanes of a warp, in lane 0 (the other lanes hold partial sums).
template <typename T>
__device__ __forceinline__ T warp_sum(T x) {
  for (int off = 16; off > 0; off >>= 1) x += __shfl_down_sync(0xffffffffu, x, off);
  return x;
}
