// CPU operator of lincomb: out = x + sum_i c_i k_i, one pass over memory, float32 accumulation (float64 for float64
// inputs). The kernel is the vectorised one of the instruction set chosen at run time (csrc/cpu/vec_kernels.h).
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include "common/lincomb.h"
#include "cpu/vec_kernels.h"

namespace bfr_fast {
namespace {

void lincomb_into(const at::Tensor& x, at::TensorList ks, at::ArrayRef<double> scalars,
                  const c10::List<std::optional<at::Tensor>>& vectors, const at::Tensor& out) {
  cpu::LincombArgs args{};
  args.coef = lincomb_check(x, ks, scalars, vectors, out);
  TORCH_CHECK(cpu::has_vec_kernels(x.scalar_type()), "lincomb: x must be float32, float64, float16 or bfloat16");
  args.dtype = x.scalar_type();
  args.batch = x.size(0);
  args.row = x.size(0) == 0 ? 0 : x.numel() / x.size(0);
  args.x = x.const_data_ptr();
  for (size_t i = 0; i < ks.size(); ++i) args.ks[i] = ks[i].const_data_ptr();
  args.out = out.mutable_data_ptr();
  cpu::active_kernels().lincomb(args);
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
