// Shared contract of pairwise_rmsd and rmsd_min for the CPU and CUDA kernels.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <limits>

namespace bfr_fast {

// Checks the kernel contract (the Python wrapper has already turned user errors into ValueErrors).
inline void rmsd_check(const char* op, const at::Tensor& X, const at::Tensor& Y) {
  TORCH_CHECK(X.dim() == 3 && X.size(2) == 3, op, ": X must be (N, A, 3), got ", X.sizes());
  TORCH_CHECK(Y.dim() == 3 && Y.size(2) == 3, op, ": Y must be (M, A, 3), got ", Y.sizes());
  TORCH_CHECK(X.size(1) == Y.size(1) && X.size(1) >= 1, op, ": X and Y must have the same number (>= 1) of atoms");
  TORCH_CHECK(X.size(0) >= 1 && Y.size(0) >= 1, op, ": X and Y must hold at least one frame each");
  // Frame indices travel as 32-bit integers in the CUDA reductions.
  TORCH_CHECK(X.size(0) <= std::numeric_limits<int32_t>::max() && Y.size(0) <= std::numeric_limits<int32_t>::max(),
              op, ": at most 2^31 - 1 frames per set");
  TORCH_CHECK(X.scalar_type() == Y.scalar_type() && (X.scalar_type() == at::kFloat || X.scalar_type() == at::kDouble),
              op, ": X and Y must both be float32 or both float64");
  TORCH_CHECK(X.device() == Y.device(), op, ": X and Y must be on the same device");
  TORCH_CHECK(X.is_contiguous() && Y.is_contiguous(), op, ": X and Y must be contiguous");
}

}  // namespace bfr_fast
