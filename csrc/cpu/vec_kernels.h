// The vectorised CPU kernels (at::vec::Vectorized) of lincomb, fc_weighted_mse (forward and backward) and the
// band-energy sums. csrc/cpu/isa/vec_kernels.cpp is compiled once per instruction set (CPU_CAPABILITY = DEFAULT,
// AVX2, AVX512, with the matching -m flags, as ATen compiles its own kernels), each copy filling one Kernels
// table; active_kernels() picks the table at run time from what the CPU supports, so the library itself is
// built for baseline x86-64 and runs on any x86-64 CPU. The arguments are raw pointers and sizes: the tensor
// checks stay in the ISA-neutral operator files (csrc/cpu/lincomb.cpp, csrc/cpu/spectral.cpp).
#pragma once
#include <c10/core/ScalarType.h>

#include <cstdint>

#include "common/lincomb_coefficients.h"

namespace bfr_fast::cpu {

// out = x + sum_i c_i k_i over `batch` samples of `row` contiguous elements each; out may be x or a k.
struct LincombArgs {
  c10::ScalarType dtype;
  int64_t batch, row;
  const void* x;
  const void* ks[kMaxLincombTerms];
  void* out;
  LincombCoefficients coef;
};

// fc_weighted_mse on contiguous pred, target (B, C, P) and source (B, Cs, P), in `dtype`; the per-sample outputs
// and the saved source mean are in the accumulation dtype (double for double, float otherwise).
struct FcArgs {
  c10::ScalarType dtype;
  int64_t B, C, Cs, P;
  const void* pred;
  const void* target;
  const void* source;
  double gamma, eps;
};

// Per (b, c) plane of a contiguous rfft2 spectrum (planes x H x Wr complex values, complex float or double by
// `dtype`): energy[2 plane] = sum_k w_low[k] v_k^2 and energy[2 plane + 1] = sum_k w_high[k] v_k^2 over its
// 2 H Wr real and imaginary parts v_k, with the band-and-Parseval weights given per part in the spectrum's real
// type (float or double).
struct BandEnergyArgs {
  c10::ScalarType dtype;
  int64_t planes, plane_values;  // plane_values = 2 H Wr
  const void* spectrum;
  const void* w_low;
  const void* w_high;
  double* energy;
};

struct Kernels {
  void (*lincomb)(const LincombArgs&);
  // loss[b] and source_mean[b] (accumulation dtype).
  void (*fc_forward)(const FcArgs&, void* loss, void* source_mean);
  // out = d loss / d pred in dtype, from grad and source_mean (accumulation dtype).
  void (*fc_backward)(const FcArgs&, const void* grad, const void* source_mean, void* out);
  void (*band_energy)(const BandEnergyArgs&);
};

// The stored dtypes the kernels take: float32, float64, float16 and bfloat16.
inline bool has_vec_kernels(c10::ScalarType dtype) {
  return dtype == c10::kFloat || dtype == c10::kDouble || dtype == c10::kHalf || dtype == c10::kBFloat16;
}

// The instruction sets a Kernels table is built for, in increasing order.
enum class Isa : int { kDefault = 0, kAvx2 = 1, kAvx512 = 2 };

// One table per compiled copy of vec_kernels.cpp (the namespaces are the CPU_CAPABILITY names).
namespace DEFAULT {
extern const Kernels kernels;
}
#ifdef BFR_FAST_CPU_ISA_AVX2
namespace AVX2 {
extern const Kernels kernels;
}
#endif
#ifdef BFR_FAST_CPU_ISA_AVX512
namespace AVX512 {
extern const Kernels kernels;
}
#endif

// "default", "avx2" or "avx512".
const char* isa_name(Isa isa);
// The best instruction set that is both built and supported by this CPU.
Isa best_isa();
// The instruction set the kernels run: best_isa() unless lowered by the environment variable BFR_FAST_CPU_ISA
// (read once; an instruction set the CPU lacks falls back to best_isa()) or by set_active_isa.
Isa active_isa();
// Switches the kernels (for tests and benchmarks); false, with nothing changed, for a name that is unknown, not
// built or not supported by this CPU.
bool set_active_isa(const char* name);
const Kernels& active_kernels();

}  // namespace bfr_fast::cpu
