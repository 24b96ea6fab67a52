// Shared contract of lincomb for the CPU and CUDA kernels: argument checks and the coefficient table.
#pragma once
#include <ATen/core/List.h>
#include <ATen/core/Tensor.h>
#include <c10/macros/Macros.h>
#include <c10/util/Exception.h>
#include <optional>

#include "common/lincomb_coefficients.h"

namespace bfr_fast {

// Checks the kernel contract (the Python wrapper has already turned user errors into ValueErrors).
inline LincombCoefficients lincomb_check(const at::Tensor& x, at::TensorList ks, at::ArrayRef<double> scalars,
                                         const c10::List<std::optional<at::Tensor>>& vectors,
                                         const at::Tensor& out) {
  const int64_t K = static_cast<int64_t>(ks.size());
  TORCH_CHECK(K >= 1 && K <= kMaxLincombTerms, "lincomb: ks must hold 1 to 8 tensors, got ", K);
  TORCH_CHECK(static_cast<int64_t>(scalars.size()) == K && static_cast<int64_t>(vectors.size()) == K,
              "lincomb: ks, scalars and vectors must have the same length");
  TORCH_CHECK(x.dim() >= 1 && x.is_contiguous(), "lincomb: x must be contiguous with a batch dimension");
  TORCH_CHECK(out.sizes() == x.sizes() && out.scalar_type() == x.scalar_type() && out.device() == x.device() &&
                  out.is_contiguous(),
              "lincomb: out must be contiguous with x's shape, dtype and device");
  LincombCoefficients coef;
  coef.terms = static_cast<int>(K);
  for (int64_t i = 0; i < K; ++i) {
    const at::Tensor& k = ks[i];
    TORCH_CHECK(k.sizes() == x.sizes() && k.scalar_type() == x.scalar_type() && k.device() == x.device() &&
                    k.is_contiguous(),
                "lincomb: ks[", i, "] must be contiguous with x's shape, dtype and device");
    coef.scalar[i] = static_cast<float>(scalars[i]);
    const std::optional<at::Tensor> v = vectors[i];
    if (v.has_value()) {
      TORCH_CHECK(v->dim() == 1 && v->size(0) == x.size(0) && v->scalar_type() == at::kFloat &&
                      v->device() == x.device() && v->is_contiguous(),
                  "lincomb: vectors[", i, "] must be a contiguous float32 (B,) tensor on x's device");
      coef.vector[i] = v->const_data_ptr<float>();
    }
  }
  return coef;
}

}  // namespace bfr_fast
