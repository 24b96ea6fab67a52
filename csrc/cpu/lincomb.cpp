// CPU kernel of lincomb: out = x + sum_i c_i k_i, one pass over memory, float32 accumulation.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <algorithm>
#include <array>

#include "common/lincomb.h"

namespace bfr_fast {
namespace {

// Elements per work item. The accumulator of one item lives on the stack (4 KiB, L1-resident), which makes the
// kernel correct when out aliases x or any k: every input element is read before its output is written.
constexpr int64_t kChunk = 1024;

template <typename scalar_t>
void lincomb_cpu_kernel(const at::Tensor& x, at::TensorList ks, const LincombCoefficients& coef,
                        const at::Tensor& out) {
  if (x.numel() == 0) return;
  const int64_t D = x.numel() / x.size(0);
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  std::array<const scalar_t*, kMaxLincombTerms> kp{};
  for (int i = 0; i < coef.terms; ++i) kp[i] = ks[i].const_data_ptr<scalar_t>();
  scalar_t* op = out.mutable_data_ptr<scalar_t>();
  const int64_t chunks_per_row = (D + kChunk - 1) / kChunk;

  // A grain of 32 items (32K elements) keeps thread start-up cost small beside the memory traffic.
  at::parallel_for(0, x.size(0) * chunks_per_row, 32, [&](int64_t begin, int64_t end) {
    alignas(64) float acc[kChunk];
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / chunks_per_row;
      const int64_t offset = b * D + (item % chunks_per_row) * kChunk;
      const int64_t n = std::min(kChunk, b * D + D - offset);
      const scalar_t* xs = xp + offset;
      for (int64_t j = 0; j < n; ++j) acc[j] = static_cast<float>(xs[j]);
      for (int i = 0; i < coef.terms; ++i) {
        const float c = coef.at(i, b);
        const scalar_t* ksrc = kp[i] + offset;
        for (int64_t j = 0; j < n; ++j) acc[j] += c * static_cast<float>(ksrc[j]);
      }
      scalar_t* dst = op + offset;
      for (int64_t j = 0; j < n; ++j) dst[j] = static_cast<scalar_t>(acc[j]);
    }
  });
}

void lincomb_into(const at::Tensor& x, at::TensorList ks, at::ArrayRef<double> scalars,
                  const c10::List<std::optional<at::Tensor>>& vectors, const at::Tensor& out) {
  const LincombCoefficients coef = lincomb_check(x, ks, scalars, vectors, out);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "lincomb_cpu",
                                  [&] { lincomb_cpu_kernel<scalar_t>(x, ks, coef, out); });
}

at::Tensor lincomb_cpu(const at::Tensor& x, at::TensorList ks, at::ArrayRef<double> scalars,
                       const c10::List<std::optional<at::Tensor>>& vectors) {
  at::Tensor out = at::empty_like(x);
  lincomb_into(x, ks, scalars, vectors, out);
  return out;
}

void lincomb_inplace_cpu(const at::Tensor& x, at::TensorList ks, at::ArrayRef<double> scalars,
                         const c10::List<std::optional<at::Tensor>>& vectors) {
  lincomb_into(x, ks, scalars, vectors, x);
}

}  // namespace

TORCH_LIBRARY_IMPL(bfr_fast, CPU, m) {
  m.impl("lincomb", &lincomb_cpu);
  m.impl("lincomb_", &lincomb_inplace_cpu);
  m.impl("lincomb_out", &lincomb_into);
}

}  // namespace bfr_fast
