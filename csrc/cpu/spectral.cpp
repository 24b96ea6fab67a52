// CPU operators of the spectral ops: the radial frequency filter and band energies (one rfft2 each, the mask
// computed from indices), and the frequency-compensated weighted MSE with its backward (one pass, no weight map).
// The band-energy sums and the FC loss run the vectorised kernels of the instruction set chosen at run time
// (csrc/cpu/vec_kernels.h); the filter's cost is its two FFTs.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/fft_irfft2.h>
#include <ATen/ops/fft_rfft2.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <utility>
#include <vector>

#include "common/spectral.h"
#include "cpu/vec_kernels.h"

namespace bfr_fast {
namespace {

// Elements of work a thread should get before at::parallel_for splits further: keeps thread start-up cost small.
constexpr int64_t kGrainElements = 32768;

int64_t grain_for(int64_t elements_per_item) { return std::max<int64_t>(1, kGrainElements / elements_per_item); }

// For each rfft row ky, the number of leading columns in the low band. The radius grows with kx along a row
// (every step of normalized_radius rounds monotonically), so the low band of a row is a prefix of its columns.
std::vector<int64_t> low_band_prefix(int64_t H, int64_t W, double cutoff) {
  const int64_t Wr = W / 2 + 1;
  std::vector<int64_t> prefix(H);
  for (int64_t ky = 0; ky < H; ++ky) {
    int64_t n = 0;
    while (n < Wr && in_low_band(ky, n, H, W, cutoff)) ++n;
    prefix[ky] = n;
  }
  return prefix;
}

at::Tensor rfft2_of(const at::Tensor& x) {
  return at::fft_rfft2(x.to(compute_dtype(x.scalar_type()))).contiguous();
}

at::Tensor frequency_filter_cpu(const at::Tensor& x, double cutoff, bool high) {
  spectral_input_check("frequency_filter", x, cutoff);
  if (x.numel() == 0) return at::empty(x.sizes(), x.options());
  const int64_t H = x.size(2), W = x.size(3), Wr = W / 2 + 1;
  at::Tensor spec = rfft2_of(x);
  const std::vector<int64_t> prefix = low_band_prefix(H, W, cutoff);
  const int64_t rows = spec.numel() / Wr;
  AT_DISPATCH_COMPLEX_TYPES(spec.scalar_type(), "frequency_filter_cpu", [&] {
    scalar_t* data = spec.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, rows, grain_for(Wr), [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t n = prefix[row % H];
        scalar_t* r = data + row * Wr;
        // Multiplying (not assigning) zero keeps NaN and infinity visible, as the eager mask product does.
        const int64_t lo = high ? 0 : n, hi = high ? n : Wr;
        for (int64_t kx = lo; kx < hi; ++kx) r[kx] *= 0;
      }
    });
  });
  return at::fft_irfft2(spec, std::vector<int64_t>{H, W}).to(x.scalar_type());
}

// Per real and imaginary part of an H x Wr rfft2 plane, its Parseval weight (rfft_column_weight) where the bin is
// in the band and 0 elsewhere: (low, high), in the spectrum's real type R.
template <typename R>
std::pair<std::vector<R>, std::vector<R>> band_weights(int64_t H, int64_t W, double cutoff) {
  const int64_t Wr = W / 2 + 1;
  const std::vector<int64_t> prefix = low_band_prefix(H, W, cutoff);
  std::vector<R> low(2 * H * Wr), high(2 * H * Wr);
  for (int64_t ky = 0; ky < H; ++ky) {
    for (int64_t kx = 0; kx < Wr; ++kx) {
      const R w = static_cast<R>(rfft_column_weight(kx, W));
      const bool in_low = kx < prefix[ky];
      for (int64_t part = 0; part < 2; ++part) {
        low[2 * (ky * Wr + kx) + part] = in_low ? w : R(0);
        high[2 * (ky * Wr + kx) + part] = in_low ? R(0) : w;
      }
    }
  }
  return {std::move(low), std::move(high)};
}

at::Tensor band_energy_cpu(const at::Tensor& x, double cutoff) {
  spectral_input_check("band_energy", x, cutoff);
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), Wr = W / 2 + 1;
  at::Tensor out = at::empty({B, 2}, x.options().dtype(compute_dtype(x.scalar_type())));
  if (x.numel() == 0) return out.zero_();
  const at::Tensor spec = rfft2_of(x);
  const int64_t planes = B * C;
  std::vector<double> plane_energy(2 * planes);  // (low, high) per (b, c) plane
  cpu::BandEnergyArgs args{spec.scalar_type(), planes, 2 * H * Wr, spec.const_data_ptr(), nullptr, nullptr,
                           plane_energy.data()};
  auto run = [&](const auto& weights) {
    args.w_low = weights.first.data();
    args.w_high = weights.second.data();
    cpu::active_kernels().band_energy(args);
  };
  if (spec.scalar_type() == at::kComplexDouble) {
    run(band_weights<double>(H, W, cutoff));
  } else {
    run(band_weights<float>(H, W, cutoff));
  }
  // Summed per sample in a fixed order, so the result does not depend on the thread count.
  const double inv_hw = 1.0 / static_cast<double>(H * W);
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "band_energy_cpu_out", [&] {
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    for (int64_t b = 0; b < B; ++b) {
      double low = 0, high = 0;
      for (int64_t c = 0; c < C; ++c) {
        low += plane_energy[2 * (b * C + c)];
        high += plane_energy[2 * (b * C + c) + 1];
      }
      o[2 * b] = static_cast<scalar_t>(low * inv_hw);
      o[2 * b + 1] = static_cast<scalar_t>(high * inv_hw);
    }
  });
  return out;
}

cpu::FcArgs fc_args(const at::Tensor& pred, const at::Tensor& target, const at::Tensor& source, const FcShape& s,
                    double gamma, double eps) {
  TORCH_CHECK(cpu::has_vec_kernels(pred.scalar_type()),
              "fc_weighted_mse: pred must be float32, float64, float16 or bfloat16");
  return {pred.scalar_type(), s.B, s.C, s.Cs, s.P, pred.const_data_ptr(), target.const_data_ptr(),
          source.const_data_ptr(), gamma, eps};
}

std::tuple<at::Tensor, at::Tensor> fc_weighted_mse_cpu(const at::Tensor& pred, const at::Tensor& target,
                                                       const at::Tensor& source, double gamma, double eps) {
  const FcShape s = fc_check(pred, target, source, gamma, eps);
  const auto options = pred.options().dtype(compute_dtype(pred.scalar_type()));
  at::Tensor loss = at::empty({s.B}, options), source_mean = at::empty({s.B}, options);
  if (s.B == 0) return {loss, source_mean};
  cpu::active_kernels().fc_forward(fc_args(pred, target, source, s, gamma, eps), loss.mutable_data_ptr(),
                                   source_mean.mutable_data_ptr());
  return {loss, source_mean};
}

at::Tensor fc_weighted_mse_backward_cpu(const at::Tensor& grad, const at::Tensor& pred, const at::Tensor& target,
                                        const at::Tensor& source, const at::Tensor& source_mean, double gamma,
                                        double eps) {
  const FcShape s = fc_check(pred, target, source, gamma, eps);
  fc_backward_check(grad, pred, source_mean);
  at::Tensor out = at::empty(pred.sizes(), pred.options());
  if (s.B == 0) return out;
  cpu::active_kernels().fc_backward(fc_args(pred, target, source, s, gamma, eps), grad.const_data_ptr(),
                                    source_mean.const_data_ptr(), out.mutable_data_ptr());
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(bfr_fast, CPU, m) {
  m.impl("frequency_filter", &frequency_filter_cpu);
  m.impl("band_energy", &band_energy_cpu);
  m.impl("fc_weighted_mse", &fc_weighted_mse_cpu);
  m.impl("fc_weighted_mse_backward", &fc_weighted_mse_backward_cpu);
}

}  // namespace bfr_fast
