// Launch helpers shared by the CUDA kernels. Deliberately avoids ATen/cuda/CUDAContext.h, which pulls in the
// cuSPARSE/cuBLAS headers that a bare CUDA toolkit may not ship.
#pragma once
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>

namespace bfr_fast::cuda {

inline int sm_count(int device) {
  int count = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
  return count;
}

inline cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

}  // namespace bfr_fast::cuda
