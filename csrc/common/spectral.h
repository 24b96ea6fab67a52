// Shared contract of the spectral ops (frequency_filter, band_energy, fc_weighted_mse) for the CPU and CUDA
// kernels: the radial frequency mask, the Parseval weights of rfft columns, and argument checks.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/macros/Macros.h>
#include <c10/util/Exception.h>

#include <cmath>

namespace bfr_fast {

// Normalised radius r = sqrt((2 f_y)^2 + (2 f_x)^2) of rfft2 bin (ky, kx) of an H x W grid, f in cycles/sample
// as torch.fft.fftfreq gives it, so the Nyquist radius along an axis is 1. Computed in float64 with exactly the
// roundings of the eager reference (fftfreq is k * (1/n); then separate multiplies, one add, a correctly rounded
// sqrt; never a fused multiply-add), so fused and eager masks agree bit for bit, ties on the circle included.
// kx ranges over the rfft columns [0, W/2]; a negative frequency has the magnitude of its positive twin.
C10_HOST_DEVICE inline double normalized_radius(int64_t ky, int64_t kx, int64_t H, int64_t W) {
  const double sy = static_cast<double>(ky <= (H - 1) / 2 ? ky : ky - H);
  const double sx = static_cast<double>(kx);
#ifdef __CUDA_ARCH__
  const double fy = 2.0 * __dmul_rn(sy, 1.0 / static_cast<double>(H));
  const double fx = 2.0 * __dmul_rn(sx, 1.0 / static_cast<double>(W));
  return sqrt(__dadd_rn(__dmul_rn(fy, fy), __dmul_rn(fx, fx)));
#else
  // Host builds target baseline x86-64 (no FMA instructions), so these are not contracted.
  const double fy = 2.0 * (sy * (1.0 / static_cast<double>(H)));
  const double fx = 2.0 * (sx * (1.0 / static_cast<double>(W)));
  return std::sqrt(fy * fy + fx * fx);
#endif
}

// Whether bin (ky, kx) lies in the low band (r <= cutoff); the high band is its complement.
C10_HOST_DEVICE inline bool in_low_band(int64_t ky, int64_t kx, int64_t H, int64_t W, double cutoff) {
  return normalized_radius(ky, kx, H, W) <= cutoff;
}

// Parseval weight of rfft column kx: columns 0 < kx < W/2 stand for themselves and their conjugate twin W - kx;
// column 0, and column W/2 when W is even, stand for themselves only.
C10_HOST_DEVICE inline int rfft_column_weight(int64_t kx, int64_t W) { return (kx == 0 || 2 * kx == W) ? 1 : 2; }

// Checks for frequency_filter and band_energy (the Python wrapper has already raised ValueErrors for user errors).
inline void spectral_input_check(const char* op, const at::Tensor& x, double cutoff) {
  TORCH_CHECK(x.dim() == 4, op, ": x must be (B, C, H, W), got ", x.dim(), " dims");
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), op, ": x must be a floating tensor");
  TORCH_CHECK(std::isfinite(cutoff) && cutoff >= 0, op, ": cutoff must be finite and >= 0");
}

// The dtype of FFTs and sums: float64 for float64 inputs, float32 for float32, float16 and bfloat16.
inline at::ScalarType compute_dtype(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

// Checks for fc_weighted_mse and its backward. pred, target: (B, C, *spatial); source: (B, Cs, *spatial).
struct FcShape {
  int64_t B, C, Cs, P;
};

inline FcShape fc_check(const at::Tensor& pred, const at::Tensor& target, const at::Tensor& source, double gamma,
                        double eps) {
  TORCH_CHECK(pred.dim() >= 2, "fc_weighted_mse: pred must be (B, C, *spatial)");
  TORCH_CHECK(at::isFloatingType(pred.scalar_type()), "fc_weighted_mse: pred must be a floating tensor");
  TORCH_CHECK(target.sizes() == pred.sizes() && target.scalar_type() == pred.scalar_type() &&
                  target.device() == pred.device(),
              "fc_weighted_mse: target must have pred's shape, dtype and device");
  TORCH_CHECK(source.dim() == pred.dim() && source.size(0) == pred.size(0) &&
                  source.sizes().slice(2) == pred.sizes().slice(2) && source.scalar_type() == pred.scalar_type() &&
                  source.device() == pred.device(),
              "fc_weighted_mse: source must be (B, Cs, *spatial) with pred's B, spatial dims, dtype and device");
  TORCH_CHECK(pred.is_contiguous() && target.is_contiguous() && source.is_contiguous(),
              "fc_weighted_mse: pred, target and source must be contiguous");
  TORCH_CHECK(std::isfinite(gamma) && gamma >= 0 && std::isfinite(eps) && eps > 0,
              "fc_weighted_mse: gamma must be finite and >= 0, eps finite and > 0");
  FcShape s{pred.size(0), pred.size(1), source.size(1), 1};
  for (int64_t d = 2; d < pred.dim(); ++d) s.P *= pred.size(d);
  TORCH_CHECK(s.B == 0 || (s.C > 0 && s.Cs > 0 && s.P > 0),
              "fc_weighted_mse: pred and source need at least one channel and one spatial position");
  return s;
}

inline void fc_backward_check(const at::Tensor& grad, const at::Tensor& pred, const at::Tensor& source_mean) {
  const at::ScalarType acc = compute_dtype(pred.scalar_type());
  TORCH_CHECK(grad.dim() == 1 && grad.size(0) == pred.size(0) && grad.scalar_type() == acc &&
                  grad.device() == pred.device() && grad.is_contiguous(),
              "fc_weighted_mse_backward: grad must be a contiguous (B,) tensor of dtype ", acc, " on pred's device");
  TORCH_CHECK(source_mean.dim() == 1 && source_mean.size(0) == pred.size(0) && source_mean.scalar_type() == acc &&
                  source_mean.device() == pred.device() && source_mean.is_contiguous(),
              "fc_weighted_mse_backward: source_mean must be a contiguous (B,) tensor of dtype ", acc,
              " on pred's device");
}

}  // namespace bfr_fast
