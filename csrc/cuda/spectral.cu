// CUDA kernels of the spectral ops: the radial frequency filter and band energies (cuFFT through at::fft_rfft2,
// the mask computed from bin indices in the kernel), and the frequency-compensated weighted MSE (one pass of
// per-sample block reductions with warp shuffles, then a tiny deterministic combine) with its elementwise backward.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/fft_irfft2.h>
#include <ATen/ops/fft_rfft2.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <tuple>
#include <vector>

#include "common/spectral.h"
#include "cuda/launch.cuh"

namespace bfr_fast {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

// Grid of a grid-stride loop over `work` items: enough blocks to fill the GPU, no more.
int grid_for(int64_t work, int device) {
  const int64_t max_blocks = static_cast<int64_t>(cuda::sm_count(device)) * 8;
  return static_cast<int>(std::clamp<int64_t>((work + kThreads - 1) / kThreads, 1, max_blocks));
}

// Blocks per sample of a per-sample reduction over `items` work items: about four blocks per SM over the whole
// grid (one block per sample when the batch alone fills the GPU), never more blocks than a sample has work for.
int64_t blocks_per_sample(int64_t batch, int64_t items, int device) {
  const int64_t target = static_cast<int64_t>(cuda::sm_count(device)) * 4;
  const int64_t by_gpu = (target + batch - 1) / batch;
  const int64_t by_work = (items + kThreads - 1) / kThreads;
  return std::max<int64_t>(1, std::min(by_gpu, by_work));
}

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// Sums K values over the block; the totals are valid in thread 0. Blocks have kThreads threads.
template <typename T, int K>
__device__ __forceinline__ void block_sum(T (&v)[K]) {
  __shared__ T shared[K][kWarps];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int k = 0; k < K; ++k) v[k] = warp_sum(v[k]);
  if (lane == 0) {
#pragma unroll
    for (int k = 0; k < K; ++k) shared[k][warp] = v[k];
  }
  __syncthreads();
  if (warp == 0) {
#pragma unroll
    for (int k = 0; k < K; ++k) v[k] = warp_sum(lane < kWarps ? shared[k][lane] : T(0));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// frequency_filter and band_energy. The spectrum is (planes, H, Wr) complex, read as interleaved (re, im) reals.

// Zeroes the bins outside the kept band. Multiplying (not assigning) zero keeps NaN and infinity visible, as the
// eager mask product does. index_t is 32-bit when the spectrum allows it: the index splits dominate the cost.
template <typename real_t, typename index_t>
__global__ void radial_mask_kernel(real_t* spec, index_t bins, index_t H, index_t Wr, int64_t W, double cutoff,
                                   bool high) {
  const index_t stride = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < bins; i += stride) {
    const index_t kx = i % Wr, ky = (i / Wr) % H;
    if (in_low_band(ky, kx, H, W, cutoff) == high) {
      spec[2 * i] *= real_t(0);
      spec[2 * i + 1] *= real_t(0);
    }
  }
}

at::Tensor rfft2_of(const at::Tensor& x) {
  return at::fft_rfft2(x.to(compute_dtype(x.scalar_type()))).contiguous();
}

at::Tensor frequency_filter_cuda(const at::Tensor& x, double cutoff, bool high) {
  spectral_input_check("frequency_filter", x, cutoff);
  if (x.numel() == 0) return at::empty(x.sizes(), x.options());
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t H = x.size(2), W = x.size(3), Wr = W / 2 + 1;
  at::Tensor spec = rfft2_of(x);
  const int64_t bins = spec.numel();
  const int blocks = grid_for(bins, x.get_device());
  AT_DISPATCH_FLOATING_TYPES(compute_dtype(x.scalar_type()), "frequency_filter_cuda", [&] {
    scalar_t* data = reinterpret_cast<scalar_t*>(spec.mutable_data_ptr());
    if (2 * bins <= std::numeric_limits<int32_t>::max()) {
      radial_mask_kernel<scalar_t, int32_t><<<blocks, kThreads, 0, cuda::current_stream()>>>(
          data, static_cast<int32_t>(bins), static_cast<int32_t>(H), static_cast<int32_t>(Wr), W, cutoff, high);
    } else {
      radial_mask_kernel<scalar_t, int64_t>
          <<<blocks, kThreads, 0, cuda::current_stream()>>>(data, bins, H, Wr, W, cutoff, high);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return at::fft_irfft2(spec, std::vector<int64_t>{H, W}).to(x.scalar_type());
}

// Block `blk` of sample b sums w_k |X_k|^2 over its share of the sample's C*H*Wr bins into (low, high).
template <typename real_t>
__global__ void band_energy_partial_kernel(const real_t* spec, int64_t bins_per_sample, int64_t H, int64_t Wr,
                                           int64_t W, double cutoff, int64_t bps, real_t* partial) {
  const int64_t b = blockIdx.x / bps, blk = blockIdx.x % bps;
  const real_t* s = spec + 2 * b * bins_per_sample;
  real_t acc[2] = {real_t(0), real_t(0)};
  for (int64_t i = blk * kThreads + threadIdx.x; i < bins_per_sample; i += bps * kThreads) {
    const int64_t kx = i % Wr, ky = (i / Wr) % H;
    const real_t re = s[2 * i], im = s[2 * i + 1];
    const real_t e = static_cast<real_t>(rfft_column_weight(kx, W)) * (re * re + im * im);
    if (in_low_band(ky, kx, H, W, cutoff)) {
      acc[0] += e;
    } else {
      acc[1] += e;
    }
  }
  block_sum(acc);
  if (threadIdx.x == 0) {
    partial[2 * blockIdx.x] = acc[0];
    partial[2 * blockIdx.x + 1] = acc[1];
  }
}

// One thread per sample adds its blocks' partials in a fixed order, so results are deterministic.
template <typename real_t>
__global__ void band_energy_combine_kernel(const real_t* partial, int64_t B, int64_t bps, double inv_hw,
                                           real_t* out) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= B) return;
  double low = 0, high = 0;
  for (int64_t k = b * bps; k < (b + 1) * bps; ++k) {
    low += partial[2 * k];
    high += partial[2 * k + 1];
  }
  out[2 * b] = static_cast<real_t>(low * inv_hw);
  out[2 * b + 1] = static_cast<real_t>(high * inv_hw);
}

at::Tensor band_energy_cuda(const at::Tensor& x, double cutoff) {
  spectral_input_check("band_energy", x, cutoff);
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), Wr = W / 2 + 1;
  const auto options = x.options().dtype(compute_dtype(x.scalar_type()));
  at::Tensor out = at::empty({B, 2}, options);
  if (x.numel() == 0) return out.zero_();
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor spec = rfft2_of(x);
  const int64_t bins_per_sample = C * H * Wr;
  const int64_t bps = blocks_per_sample(B, bins_per_sample, x.get_device());
  at::Tensor partial = at::empty({B * bps, 2}, options);
  AT_DISPATCH_FLOATING_TYPES(compute_dtype(x.scalar_type()), "band_energy_cuda", [&] {
    band_energy_partial_kernel<scalar_t><<<static_cast<unsigned>(B * bps), kThreads, 0, cuda::current_stream()>>>(
        reinterpret_cast<const scalar_t*>(spec.const_data_ptr()), bins_per_sample, H, Wr, W, cutoff, bps,
        partial.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    band_energy_combine_kernel<scalar_t><<<static_cast<unsigned>((B + 127) / 128), 128, 0, cuda::current_stream()>>>(
        partial.const_data_ptr<scalar_t>(), B, bps, 1.0 / static_cast<double>(H * W), out.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// fc_weighted_mse. Tensors are (B, channels, P) contiguous; a thread handles VEC consecutive positions of one
// sample (16-byte loads when VEC > 1), reading every channel of pred, target and source there.

template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

template <int VEC, typename scalar_t>
__device__ __forceinline__ Pack<scalar_t, VEC> load_pack(const scalar_t* p, int64_t pack) {
  return reinterpret_cast<const Pack<scalar_t, VEC>*>(p)[pack];
}

// s_p = sum_c |source_{c,p}| for the VEC positions of pack q; `source` points at the sample's first channel.
template <int VEC, typename scalar_t, typename acc_t>
__device__ __forceinline__ void source_magnitude(const scalar_t* source, int64_t Cs, int64_t P, int64_t q,
                                                 acc_t (&s)[VEC]) {
#pragma unroll
  for (int j = 0; j < VEC; ++j) s[j] = acc_t(0);
  for (int64_t c = 0; c < Cs; ++c) {
    const Pack<scalar_t, VEC> v = load_pack<VEC>(source + c * P, q);
#pragma unroll
    for (int j = 0; j < VEC; ++j) s[j] += fabs(static_cast<acc_t>(v.v[j]));
  }
}

// Block `blk` of sample b reduces (S, E, SE) over its share of the sample's P / VEC packs.
template <typename scalar_t, int VEC>
__global__ void fc_partial_kernel(const scalar_t* pred, const scalar_t* target, const scalar_t* source, int64_t C,
                                  int64_t Cs, int64_t P, int64_t bps, at::opmath_type<scalar_t>* partial) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t b = blockIdx.x / bps, blk = blockIdx.x % bps, packs = P / VEC;
  const scalar_t* pb = pred + b * C * P;
  const scalar_t* tb = target + b * C * P;
  const scalar_t* sb = source + b * Cs * P;
  acc_t acc[3] = {acc_t(0), acc_t(0), acc_t(0)};  // S, E, SE
  for (int64_t q = blk * kThreads + threadIdx.x; q < packs; q += bps * kThreads) {
    acc_t s[VEC], e[VEC];
    source_magnitude<VEC>(sb, Cs, P, q, s);
#pragma unroll
    for (int j = 0; j < VEC; ++j) e[j] = acc_t(0);
    for (int64_t c = 0; c < C; ++c) {
      const Pack<scalar_t, VEC> pv = load_pack<VEC>(pb + c * P, q), tv = load_pack<VEC>(tb + c * P, q);
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        const acc_t d = static_cast<acc_t>(pv.v[j]) - static_cast<acc_t>(tv.v[j]);
        e[j] += d * d;
      }
    }
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      acc[0] += s[j];
      acc[1] += e[j];
      acc[2] += s[j] * e[j];
    }
  }
  block_sum(acc);
  if (threadIdx.x == 0) {
#pragma unroll
    for (int k = 0; k < 3; ++k) partial[3 * blockIdx.x + k] = acc[k];
  }
}

// One thread per sample adds its blocks' partials in a fixed order and forms the loss.
template <typename acc_t>
__global__ void fc_combine_kernel(const acc_t* partial, int64_t B, int64_t bps, int64_t C, int64_t P, double gamma,
                                  double eps, acc_t* loss, acc_t* source_mean) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= B) return;
  double S = 0, E = 0, SE = 0;
  for (int64_t k = b * bps; k < (b + 1) * bps; ++k) {
    S += partial[3 * k];
    E += partial[3 * k + 1];
    SE += partial[3 * k + 2];
  }
  const double mean = S / static_cast<double>(P);
  source_mean[b] = static_cast<acc_t>(mean);
  loss[b] = static_cast<acc_t>((E + gamma * SE / (mean + eps)) / static_cast<double>(C * P));
}

// grad_pred = grad_b * 2 (pred - target) * w_p / (C P), w_p = 1 + gamma s_p / (source_mean_b + eps).
template <typename scalar_t, int VEC>
__global__ void fc_backward_kernel(const at::opmath_type<scalar_t>* grad, const scalar_t* pred,
                                   const scalar_t* target, const scalar_t* source,
                                   const at::opmath_type<scalar_t>* source_mean, int64_t B, int64_t C, int64_t Cs,
                                   int64_t P, double gamma, double eps, scalar_t* out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t packs = P / VEC, items = B * packs;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < items; i += stride) {
    const int64_t b = i / packs, q = i % packs;
    const acc_t scale = acc_t(2) * grad[b] / static_cast<acc_t>(C * P);
    const acc_t g = static_cast<acc_t>(gamma) / (source_mean[b] + static_cast<acc_t>(eps));
    acc_t w[VEC];
    source_magnitude<VEC>(source + b * Cs * P, Cs, P, q, w);
#pragma unroll
    for (int j = 0; j < VEC; ++j) w[j] = scale * (acc_t(1) + g * w[j]);
    for (int64_t c = 0; c < C; ++c) {
      const int64_t offset = (b * C + c) * P;
      const Pack<scalar_t, VEC> pv = load_pack<VEC>(pred + offset, q), tv = load_pack<VEC>(target + offset, q);
      Pack<scalar_t, VEC> o;
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        o.v[j] = static_cast<scalar_t>(w[j] * (static_cast<acc_t>(pv.v[j]) - static_cast<acc_t>(tv.v[j])));
      }
      reinterpret_cast<Pack<scalar_t, VEC>*>(out + offset)[q] = o;
    }
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// 16-byte packs need every channel row aligned: P a multiple of the pack and 16-byte aligned base pointers.
template <typename scalar_t>
bool packable(int64_t P, std::initializer_list<const at::Tensor*> tensors) {
  constexpr int VEC = 16 / sizeof(scalar_t);
  if (P % VEC != 0) return false;
  for (const at::Tensor* t : tensors) {
    if (!aligned16(t->const_data_ptr())) return false;
  }
  return true;
}

template <typename scalar_t, int VEC>
void fc_forward_launch(const at::Tensor& pred, const at::Tensor& target, const at::Tensor& source, const FcShape& s,
                       double gamma, double eps, const at::Tensor& loss, const at::Tensor& source_mean) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t bps = blocks_per_sample(s.B, s.P / VEC, pred.get_device());
  at::Tensor partial = at::empty({s.B * bps, 3}, loss.options());
  fc_partial_kernel<scalar_t, VEC><<<static_cast<unsigned>(s.B * bps), kThreads, 0, cuda::current_stream()>>>(
      pred.const_data_ptr<scalar_t>(), target.const_data_ptr<scalar_t>(), source.const_data_ptr<scalar_t>(), s.C,
      s.Cs, s.P, bps, partial.mutable_data_ptr<acc_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  fc_combine_kernel<acc_t><<<static_cast<unsigned>((s.B + 127) / 128), 128, 0, cuda::current_stream()>>>(
      partial.const_data_ptr<acc_t>(), s.B, bps, s.C, s.P, gamma, eps, loss.mutable_data_ptr<acc_t>(),
      source_mean.mutable_data_ptr<acc_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

std::tuple<at::Tensor, at::Tensor> fc_weighted_mse_cuda(const at::Tensor& pred, const at::Tensor& target,
                                                        const at::Tensor& source, double gamma, double eps) {
  const FcShape s = fc_check(pred, target, source, gamma, eps);
  const auto options = pred.options().dtype(compute_dtype(pred.scalar_type()));
  at::Tensor loss = at::empty({s.B}, options), source_mean = at::empty({s.B}, options);
  if (s.B == 0) return {loss, source_mean};
  const c10::cuda::CUDAGuard guard(pred.device());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, pred.scalar_type(), "fc_weighted_mse_cuda", [&] {
    if (packable<scalar_t>(s.P, {&pred, &target, &source})) {
      fc_forward_launch<scalar_t, 16 / sizeof(scalar_t)>(pred, target, source, s, gamma, eps, loss, source_mean);
    } else {
      fc_forward_launch<scalar_t, 1>(pred, target, source, s, gamma, eps, loss, source_mean);
    }
  });
  return {loss, source_mean};
}

template <typename scalar_t, int VEC>
void fc_backward_launch(const at::Tensor& grad, const at::Tensor& pred, const at::Tensor& target,
                        const at::Tensor& source, const at::Tensor& source_mean, const FcShape& s, double gamma,
                        double eps, const at::Tensor& out) {
  using acc_t = at::opmath_type<scalar_t>;
  fc_backward_kernel<scalar_t, VEC><<<grid_for(s.B * (s.P / VEC), pred.get_device()), kThreads, 0,
                                      cuda::current_stream()>>>(
      grad.const_data_ptr<acc_t>(), pred.const_data_ptr<scalar_t>(), target.const_data_ptr<scalar_t>(),
      source.const_data_ptr<scalar_t>(), source_mean.const_data_ptr<acc_t>(), s.B, s.C, s.Cs, s.P, gamma, eps,
      out.mutable_data_ptr<scalar_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

at::Tensor fc_weighted_mse_backward_cuda(const at::Tensor& grad, const at::Tensor& pred, const at::Tensor& target,
                                         const at::Tensor& source, const at::Tensor& source_mean, double gamma,
                                         double eps) {
  const FcShape s = fc_check(pred, target, source, gamma, eps);
  fc_backward_check(grad, pred, source_mean);
  at::Tensor out = at::empty(pred.sizes(), pred.options());
  if (s.B == 0) return out;
  const c10::cuda::CUDAGuard guard(pred.device());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, pred.scalar_type(), "fc_weighted_mse_backward_cuda", [&] {
    if (packable<scalar_t>(s.P, {&pred, &target, &source, &out})) {
      fc_backward_launch<scalar_t, 16 / sizeof(scalar_t)>(grad, pred, target, source, source_mean, s, gamma, eps, out);
    } else {
      fc_backward_launch<scalar_t, 1>(grad, pred, target, source, source_mean, s, gamma, eps, out);
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(bfr_fast, CUDA, m) {
  m.impl("frequency_filter", &frequency_filter_cuda);
  m.impl("band_energy", &band_energy_cuda);
  m.impl("fc_weighted_mse", &fc_weighted_mse_cuda);
  m.impl("fc_weighted_mse_backward", &fc_weighted_mse_backward_cuda);
}

}  // namespace bfr_fast
