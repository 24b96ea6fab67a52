// CUDA kernel of lincomb: out = x + sum_i c_i k_i, one pass over memory, 16-byte vector loads where aligned,
// float32 accumulation (float64 for float64 inputs).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <algorithm>

#include "common/lincomb.h"
#include "cuda/launch.cuh"

namespace bfr_fast {
namespace {

template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

template <typename scalar_t>
struct TermPointers {
  const scalar_t* p[kMaxLincombTerms];
};

// One thread handles VEC consecutive elements. VEC divides the per-sample size D, so a pack never straddles two
// samples. x and out may alias (in place): each pack is read completely before it is written.
template <typename scalar_t, int VEC>
__global__ void lincomb_kernel(const scalar_t* x, TermPointers<scalar_t> ks, LincombCoefficients coef,
                               scalar_t* out, int64_t D, int64_t n_packs) {
  using P = Pack<scalar_t, VEC>;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < n_packs; p += stride) {
    const int64_t b = (p * VEC) / D;
    const P xv = reinterpret_cast<const P*>(x)[p];
    using acc_t = at::opmath_type<scalar_t>;  // float for half, bfloat16 and float; double for double
    acc_t acc[VEC];
#pragma unroll
    for (int j = 0; j < VEC; ++j) acc[j] = static_cast<acc_t>(xv.v[j]);
#pragma unroll
    for (int i = 0; i < kMaxLincombTerms; ++i) {
      if (i < coef.terms) {
        const float c = coef.at(i, b);
        const P kv = reinterpret_cast<const P*>(ks.p[i])[p];
#pragma unroll
        for (int j = 0; j < VEC; ++j) acc[j] += c * static_cast<acc_t>(kv.v[j]);
      }
    }
    P o;
#pragma unroll
    for (int j = 0; j < VEC; ++j) o.v[j] = static_cast<scalar_t>(acc[j]);
    reinterpret_cast<P*>(out)[p] = o;
  }
}

template <typename scalar_t, int VEC>
void launch(const at::Tensor& x, const TermPointers<scalar_t>& ks, const LincombCoefficients& coef,
            const at::Tensor& out, int64_t D) {
  const int64_t n_packs = x.numel() / VEC;
  constexpr int kThreads = 256;
  const int64_t max_blocks = static_cast<int64_t>(cuda::sm_count(x.get_device())) * 8;
  const int blocks = static_cast<int>(std::min<int64_t>((n_packs + kThreads - 1) / kThreads, max_blocks));
  lincomb_kernel<scalar_t, VEC><<<blocks, kThreads, 0, cuda::current_stream()>>>(
      x.const_data_ptr<scalar_t>(), ks, coef, out.mutable_data_ptr<scalar_t>(), D, n_packs);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

void lincomb_into(const at::Tensor& x, at::TensorList ks, at::ArrayRef<double> scalars,
                  const c10::List<std::optional<at::Tensor>>& vectors, const at::Tensor& out) {
  const LincombCoefficients coef = lincomb_check(x, ks, scalars, vectors, out);
  if (x.numel() == 0) return;
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t D = x.numel() / x.size(0);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "lincomb_cuda", [&] {
    constexpr int VEC = 16 / sizeof(scalar_t);
    TermPointers<scalar_t> kp{};
    bool vectorizable = D % VEC == 0 && aligned16(x.const_data_ptr()) && aligned16(out.const_data_ptr());
    for (int i = 0; i < coef.terms; ++i) {
      kp.p[i] = ks[i].const_data_ptr<scalar_t>();
      vectorizable = vectorizable && aligned16(kp.p[i]);
    }
    if (vectorizable) {
      launch<scalar_t, VEC>(x, kp, coef, out, D);
    } else {
      launch<scalar_t, 1>(x, kp, coef, out, D);
    }
  });
}

at::Tensor lincomb_cuda(const at::Tensor& x, at::TensorList ks, at::ArrayRef<double> scalars,
                        const c10::List<std::optional<at::Tensor>>& vectors) {
  at::Tensor out = at::empty_like(x);
  lincomb_into(x, ks, scalars, vectors, out);
  return out;
}

void lincomb_inplace_cuda(const at::Tensor& x, at::TensorList ks, at::ArrayRef<double> scalars,
                          const c10::List<std::optional<at::Tensor>>& vectors) {
  lincomb_into(x, ks, scalars, vectors, x);
}

}  // namespace

TORCH_LIBRARY_IMPL(bfr_fast, CUDA, m) {
  m.impl("lincomb", &lincomb_cuda);
  m.impl("lincomb_", &lincomb_inplace_cuda);
  m.impl("lincomb_out", &lincomb_into);
}

}  // namespace bfr_fast
