// CPU kernels of the spectral ops: the radial frequency filter and band energies (one rfft2 each, the mask
// computed from indices), and the frequency-compensated weighted MSE with its backward (one pass, no weight map).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/fft_irfft2.h>
#include <ATen/ops/fft_rfft2.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <vector>

#include "common/spectral.h"

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

at::Tensor band_energy_cpu(const at::Tensor& x, double cutoff) {
  spectral_input_check("band_energy", x, cutoff);
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), Wr = W / 2 + 1;
  at::Tensor out = at::empty({B, 2}, x.options().dtype(compute_dtype(x.scalar_type())));
  if (x.numel() == 0) return out.zero_();
  const at::Tensor spec = rfft2_of(x);
  const std::vector<int64_t> prefix = low_band_prefix(H, W, cutoff);
  const int64_t planes = B * C;
  std::vector<double> plane_energy(2 * planes);  // (low, high) per (b, c) plane
  AT_DISPATCH_COMPLEX_TYPES(spec.scalar_type(), "band_energy_cpu", [&] {
    const scalar_t* data = spec.const_data_ptr<scalar_t>();
    at::parallel_for(0, planes, grain_for(H * Wr), [&](int64_t begin, int64_t end) {
      for (int64_t plane = begin; plane < end; ++plane) {
        double low = 0, high = 0;
        for (int64_t ky = 0; ky < H; ++ky) {
          const scalar_t* r = data + (plane * H + ky) * Wr;
          for (int64_t kx = 0; kx < Wr; ++kx) {
            const double re = r[kx].real(), im = r[kx].imag();
            const double e = rfft_column_weight(kx, W) * (re * re + im * im);
            if (kx < prefix[ky]) {
              low += e;
            } else {
              high += e;
            }
          }
        }
        plane_energy[2 * plane] = low;
        plane_energy[2 * plane + 1] = high;
      }
    });
  });
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

// Positions of one sample handled by one work item of fc_weighted_mse; its per-position sums live on the stack.
constexpr int64_t kFcChunk = 1024;

// s_p = sum_c |source_{c,p}| for the n positions of a chunk (float32 sums, float64 for float64 inputs).
template <typename scalar_t, typename acc_t>
void source_magnitude(const scalar_t* source, int64_t Cs, int64_t P, int64_t n, acc_t* s) {
  std::fill(s, s + n, acc_t(0));
  for (int64_t c = 0; c < Cs; ++c) {
    const scalar_t* src = source + c * P;
    for (int64_t j = 0; j < n; ++j) s[j] += std::abs(static_cast<acc_t>(src[j]));
  }
}

template <typename scalar_t>
void fc_weighted_mse_cpu_kernel(const at::Tensor& pred, const at::Tensor& target, const at::Tensor& source,
                                const FcShape& s, double gamma, double eps, const at::Tensor& loss,
                                const at::Tensor& source_mean) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t chunks = (s.P + kFcChunk - 1) / kFcChunk;
  std::vector<double> partial(3 * s.B * chunks);  // (S, E, SE) per chunk
  const scalar_t* pp = pred.const_data_ptr<scalar_t>();
  const scalar_t* tp = target.const_data_ptr<scalar_t>();
  const scalar_t* sp = source.const_data_ptr<scalar_t>();
  at::parallel_for(0, s.B * chunks, grain_for(kFcChunk * (2 * s.C + s.Cs)), [&](int64_t begin, int64_t end) {
    alignas(64) acc_t mag[kFcChunk];
    alignas(64) acc_t err[kFcChunk];
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / chunks, p0 = (item % chunks) * kFcChunk;
      const int64_t n = std::min(kFcChunk, s.P - p0);
      source_magnitude(sp + b * s.Cs * s.P + p0, s.Cs, s.P, n, mag);
      std::fill(err, err + n, acc_t(0));
      for (int64_t c = 0; c < s.C; ++c) {
        const scalar_t* pr = pp + (b * s.C + c) * s.P + p0;
        const scalar_t* tg = tp + (b * s.C + c) * s.P + p0;
        for (int64_t j = 0; j < n; ++j) {
          const acc_t d = static_cast<acc_t>(pr[j]) - static_cast<acc_t>(tg[j]);
          err[j] += d * d;
        }
      }
      // Four independent float64 lanes per sum: a single chain would be bound by the add latency.
      double S[4] = {}, E[4] = {}, SE[4] = {};
      int64_t j = 0;
      for (; j + 4 <= n; j += 4) {
        for (int l = 0; l < 4; ++l) {
          const double m = mag[j + l], e = err[j + l];
          S[l] += m;
          E[l] += e;
          SE[l] += m * e;
        }
      }
      for (; j < n; ++j) {
        S[0] += mag[j];
        E[0] += err[j];
        SE[0] += static_cast<double>(mag[j]) * err[j];
      }
      partial[3 * item] = (S[0] + S[1]) + (S[2] + S[3]);
      partial[3 * item + 1] = (E[0] + E[1]) + (E[2] + E[3]);
      partial[3 * item + 2] = (SE[0] + SE[1]) + (SE[2] + SE[3]);
    }
  });
  acc_t* lp = loss.mutable_data_ptr<acc_t>();
  acc_t* mp = source_mean.mutable_data_ptr<acc_t>();
  for (int64_t b = 0; b < s.B; ++b) {
    double S = 0, E = 0, SE = 0;
    for (int64_t k = b * chunks; k < (b + 1) * chunks; ++k) {
      S += partial[3 * k];
      E += partial[3 * k + 1];
      SE += partial[3 * k + 2];
    }
    const double mean = S / static_cast<double>(s.P);
    mp[b] = static_cast<acc_t>(mean);
    lp[b] = static_cast<acc_t>((E + gamma * SE / (mean + eps)) / static_cast<double>(s.C * s.P));
  }
}

std::tuple<at::Tensor, at::Tensor> fc_weighted_mse_cpu(const at::Tensor& pred, const at::Tensor& target,
                                                       const at::Tensor& source, double gamma, double eps) {
  const FcShape s = fc_check(pred, target, source, gamma, eps);
  const auto options = pred.options().dtype(compute_dtype(pred.scalar_type()));
  at::Tensor loss = at::empty({s.B}, options), source_mean = at::empty({s.B}, options);
  if (s.B == 0) return {loss, source_mean};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, pred.scalar_type(), "fc_weighted_mse_cpu", [&] {
    fc_weighted_mse_cpu_kernel<scalar_t>(pred, target, source, s, gamma, eps, loss, source_mean);
  });
  return {loss, source_mean};
}

// grad_pred = grad_b * 2 (pred - target) * w_p / (C P), w_p = 1 + gamma s_p / (source_mean_b + eps).
template <typename scalar_t>
void fc_weighted_mse_backward_cpu_kernel(const at::Tensor& grad, const at::Tensor& pred, const at::Tensor& target,
                                         const at::Tensor& source, const at::Tensor& source_mean, const FcShape& s,
                                         double gamma, double eps, const at::Tensor& out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t chunks = (s.P + kFcChunk - 1) / kFcChunk;
  const acc_t* gp = grad.const_data_ptr<acc_t>();
  const acc_t* mp = source_mean.const_data_ptr<acc_t>();
  const scalar_t* pp = pred.const_data_ptr<scalar_t>();
  const scalar_t* tp = target.const_data_ptr<scalar_t>();
  const scalar_t* sp = source.const_data_ptr<scalar_t>();
  scalar_t* op = out.mutable_data_ptr<scalar_t>();
  at::parallel_for(0, s.B * chunks, grain_for(kFcChunk * (3 * s.C + s.Cs)), [&](int64_t begin, int64_t end) {
    alignas(64) acc_t w[kFcChunk];
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / chunks, p0 = (item % chunks) * kFcChunk;
      const int64_t n = std::min(kFcChunk, s.P - p0);
      const acc_t scale = static_cast<acc_t>(2.0 * static_cast<double>(gp[b]) / static_cast<double>(s.C * s.P));
      const acc_t g = static_cast<acc_t>(gamma / (static_cast<double>(mp[b]) + eps));
      source_magnitude(sp + b * s.Cs * s.P + p0, s.Cs, s.P, n, w);
      for (int64_t j = 0; j < n; ++j) w[j] = scale * (acc_t(1) + g * w[j]);
      for (int64_t c = 0; c < s.C; ++c) {
        const int64_t offset = (b * s.C + c) * s.P + p0;
        for (int64_t j = 0; j < n; ++j) {
          op[offset + j] =
              static_cast<scalar_t>(w[j] * (static_cast<acc_t>(pp[offset + j]) - static_cast<acc_t>(tp[offset + j])));
        }
      }
    }
  });
}

at::Tensor fc_weighted_mse_backward_cpu(const at::Tensor& grad, const at::Tensor& pred, const at::Tensor& target,
                                        const at::Tensor& source, const at::Tensor& source_mean, double gamma,
                                        double eps) {
  const FcShape s = fc_check(pred, target, source, gamma, eps);
  fc_backward_check(grad, pred, source_mean);
  at::Tensor out = at::empty(pred.sizes(), pred.options());
  if (s.B == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, pred.scalar_type(), "fc_weighted_mse_backward_cpu", [&] {
    fc_weighted_mse_backward_cpu_kernel<scalar_t>(grad, pred, target, source, source_mean, s, gamma, eps, out);
  });
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
