// CPU kernel of lincomb: out = x + sum_i c_i k_i, one pass over memory, float32 accumulation (float64 for
// float64 inputs).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <algorithm>
#include <array>

#include "common/lincomb.h"

namespace bfr_fast {
namespace {

// Elements per work item: big enough that thread start-up is negligible beside the memory traffic.
constexpr int64_t kChunk = 1 << 14;

// One streaming pass over [begin, end) of one sample. out[j] depends only on element j of the inputs, so the
// loop carries no dependency even when out aliases x or a k (ivdep lets the compiler vectorize without
// run-time overlap checks). All K + 1 inputs stream at once, which keeps the hardware prefetchers engaged.
template <typename scalar_t, int K>
void lincomb_range(const scalar_t* x, const std::array<const scalar_t*, kMaxLincombTerms>& ks, const float* c,
                   scalar_t* out, int64_t begin, int64_t end) {
  std::array<const scalar_t*, K> kp;
  for (int i = 0; i < K; ++i) kp[i] = ks[i];
  using acc_t = at::opmath_type<scalar_t>;  // float for half, bfloat16 and float; double for double
#pragma GCC ivdep
  for (int64_t j = begin; j < end; ++j) {
    acc_t acc = static_cast<acc_t>(x[j]);
    for (int i = 0; i < K; ++i) acc += c[i] * static_cast<acc_t>(kp[i][j]);
    out[j] = static_cast<scalar_t>(acc);
  }
}

template <typename scalar_t, int K>
void lincomb_cpu_kernel(const at::Tensor& x, at::TensorList ks, const LincombCoefficients& coef,
                        const at::Tensor& out) {
  const int64_t D = x.numel() / x.size(0);
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  std::array<const scalar_t*, kMaxLincombTerms> kp{};
  for (int i = 0; i < K; ++i) kp[i] = ks[i].const_data_ptr<scalar_t>();
  scalar_t* op = out.mutable_data_ptr<scalar_t>();
  const int64_t chunks_per_row = (D + kChunk - 1) / kChunk;

  at::parallel_for(0, x.size(0) * chunks_per_row, 1, [&](int64_t first, int64_t last) {
    for (int64_t item = first; item < last; ++item) {
      const int64_t b = item / chunks_per_row;
      const int64_t begin = b * D + (item % chunks_per_row) * kChunk;
      const int64_t end = std::min(begin + kChunk, b * D + D);
      float c[K];
      for (int i = 0; i < K; ++i) c[i] = coef.at(i, b);
      lincomb_range<scalar_t, K>(xp, kp, c, op, begin, end);
    }
  });
}

template <typename scalar_t>
void lincomb_dispatch_terms(const at::Tensor& x, at::TensorList ks, const LincombCoefficients& coef,
                            const at::Tensor& out) {
  if (x.numel() == 0) return;
  switch (coef.terms) {
    case 1: return lincomb_cpu_kernel<scalar_t, 1>(x, ks, coef, out);
    case 2: return lincomb_cpu_kernel<scalar_t, 2>(x, ks, coef, out);
    case 3: return lincomb_cpu_kernel<scalar_t, 3>(x, ks, coef, out);
    case 4: return lincomb_cpu_kernel<scalar_t, 4>(x, ks, coef, out);
    case 5: return lincomb_cpu_kernel<scalar_t, 5>(x, ks, coef, out);
    case 6: return lincomb_cpu_kernel<scalar_t, 6>(x, ks, coef, out);
    case 7: return lincomb_cpu_kernel<scalar_t, 7>(x, ks, coef, out);
    default: return lincomb_cpu_kernel<scalar_t, 8>(x, ks, coef, out);
  }
}

void lincomb_into(const at::Tensor& x, at::TensorList ks, at::ArrayRef<double> scalars,
                  const c10::List<std::optional<at::Tensor>>& vectors, const at::Tensor& out) {
  const LincombCoefficients coef = lincomb_check(x, ks, scalars, vectors, out);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "lincomb_cpu",
                                  [&] { lincomb_dispatch_terms<scalar_t>(x, ks, coef, out); });
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
