// The coefficient table of lincomb, free of tensor headers so that the per-ISA CPU kernels can take it.
#pragma once
#include <c10/macros/Macros.h>

#include <cstdint>

namespace bfr_fast {

constexpr int kMaxLincombTerms = 8;

// Coefficient i of sample b is scalar[i] * (vector[i] ? vector[i][b] : 1). Passed to kernels by value, so no
// coefficient tensor is built and no extra kernel is launched per call.
struct LincombCoefficients {
  int terms = 0;
  float scalar[kMaxLincombTerms] = {};
  const float* vector[kMaxLincombTerms] = {};

  C10_HOST_DEVICE inline float at(int i, int64_t b) const { return vector[i] ? scalar[i] * vector[i][b] : scalar[i]; }
};

}  // namespace bfr_fast
