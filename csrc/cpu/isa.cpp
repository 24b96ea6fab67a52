// Run-time choice among the per-ISA copies of the vectorised CPU kernels (csrc/cpu/vec_kernels.h).
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "cpu/vec_kernels.h"

namespace bfr_fast::cpu {
namespace {

// AVX-512 as ATen's AVX512 build uses it (F, BW, VL, DQ); AVX2 with the FMA and F16C it compiles with.
bool cpu_supports(Isa isa) {
#if defined(__GNUC__) && defined(__x86_64__)
  __builtin_cpu_init();
  switch (isa) {
    case Isa::kDefault:
      return true;
    case Isa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c") &&
             __builtin_cpu_supports("bmi2");
    case Isa::kAvx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") && cpu_supports(Isa::kAvx2);
  }
#endif
  return isa == Isa::kDefault;
}

bool built(Isa isa) {
  switch (isa) {
    case Isa::kDefault:
      return true;
    case Isa::kAvx2:
#ifdef BFR_FAST_CPU_ISA_AVX2
      return true;
#else
      return false;
#endif
    case Isa::kAvx512:
#ifdef BFR_FAST_CPU_ISA_AVX512
      return true;
#else
      return false;
#endif
  }
  return false;
}

bool parse(const char* name, Isa* isa) {
  for (Isa candidate : {Isa::kDefault, Isa::kAvx2, Isa::kAvx512}) {
    if (std::strcmp(name, isa_name(candidate)) == 0) {
      *isa = candidate;
      return true;
    }
  }
  return false;
}

Isa initial_isa() {
  const char* requested = std::getenv("BFR_FAST_CPU_ISA");
  Isa isa;
  if (requested != nullptr && parse(requested, &isa) && built(isa) && cpu_supports(isa)) return isa;
  return best_isa();
}

std::atomic<int>& active() {
  static std::atomic<int> isa{static_cast<int>(initial_isa())};
  return isa;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
    default:
      return "default";
  }
}

Isa best_isa() {
  for (Isa isa : {Isa::kAvx512, Isa::kAvx2}) {
    if (built(isa) && cpu_supports(isa)) return isa;
  }
  return Isa::kDefault;
}

Isa active_isa() { return static_cast<Isa>(active().load(std::memory_order_relaxed)); }

bool set_active_isa(const char* name) {
  Isa isa;
  if (!parse(name, &isa) || !built(isa) || !cpu_supports(isa)) return false;
  active().store(static_cast<int>(isa), std::memory_order_relaxed);
  return true;
}

const Kernels& active_kernels() {
  switch (active_isa()) {
#ifdef BFR_FAST_CPU_ISA_AVX512
    case Isa::kAvx512:
      return AVX512::kernels;
#endif
#ifdef BFR_FAST_CPU_ISA_AVX2
    case Isa::kAvx2:
      return AVX2::kernels;
#endif
    default:
      return DEFAULT::kernels;
  }
}

}  // namespace bfr_fast::cpu
