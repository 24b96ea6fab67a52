// CUDA kernels of pairwise_rmsd and rmsd_min: QCP (common/qcp.h), one thread per Y frame of a 128-frame tile and
// kPairsPerThread X frames at a time, both tiles staged in shared memory structure-of-arrays.
//
// The inner products accumulate in the input precision (float32 registers for float32, float64 for float64); the
// quartic is solved in float64, kPairsPerThread of them interleaved per thread to overlap their Newton chains.
// rmsd_min reduces per block (warp shuffles for rows, a per-thread running minimum over the block's X frames for
// columns), then merges with 64-bit atomicMin: for float32, on keys (value bits << 32 | index), whose unsigned order
// is (value, index) order because RMSDs are >= 0; for float64, whose value takes all 64 bits, one pass finds the
// minima (atomicMin on the value bits) and a second pass the smallest index achieving each.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <tuple>
#include <type_traits>

#include "common/qcp.h"
#include "common/rmsd.h"
#include "cuda/launch.cuh"

namespace bfr_fast {
namespace {

constexpr int kThreads = 128;       // Y frames per tile, one per thread
constexpr int kPairsPerThread = 4;  // X frames in flight: 4 x 9 accumulators, 4 interleaved quartics
constexpr int kPasses = 8;          // X frames per tile = kPairsPerThread * kPasses
constexpr int kTileX = kPairsPerThread * kPasses;
constexpr int kSharedBytes = 48 * 1024;  // the default limit: no opt-in needed
constexpr unsigned long long kNoKey = ~0ull;

enum class Epilogue { kPairwise, kMinKeys, kMinIndex };

// One coordinate of the kPairsPerThread X frames in flight, loaded from shared memory at once.
template <typename T>
struct alignas(sizeof(T) * kPairsPerThread) Pairs {
  T v[kPairsPerThread];
};

template <typename T>
__device__ __forceinline__ T fmadd(T a, T b, T c) {
  if constexpr (std::is_same_v<T, float>) {
    return fmaf(a, b, c);
  } else {
    return fma(a, b, c);
  }
}

// Centres each frame (mean in double) and writes it structure-of-arrays, out[(atom * 3 + xyz) * frames + frame],
// with g[frame] = sum |x|^2 of the stored values accumulated exactly as the tile kernel accumulates S (one fma chain
// per component, in atom order): identical frames then give tr S == G bit for bit, hence an RMSD of ~0 even with
// float32 inner products. Records the first frame holding a non-finite coordinate in *first_bad.
template <typename scalar_t, typename acc_t>
__global__ void pack_frames_kernel(const scalar_t* __restrict__ in, int64_t frames, int64_t atoms,
                                   acc_t* __restrict__ out, double* __restrict__ g,
                                   unsigned long long* __restrict__ first_bad) {
  const int64_t f = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (f >= frames) return;
  const scalar_t* p = in + f * atoms * 3;
  double mean[3] = {0.0, 0.0, 0.0};
  bool finite = true;
  for (int64_t a = 0; a < atoms; ++a) {
    for (int c = 0; c < 3; ++c) {
      const double v = static_cast<double>(p[3 * a + c]);
      finite = finite && isfinite(v);
      mean[c] += v;
    }
  }
  if (!finite) {
    atomicMin(first_bad, static_cast<unsigned long long>(f));
    return;
  }
  for (double& c : mean) c /= static_cast<double>(atoms);
  acc_t squares[3] = {0, 0, 0};
  for (int64_t a = 0; a < atoms; ++a) {
    for (int c = 0; c < 3; ++c) {
      const acc_t v = static_cast<acc_t>(static_cast<double>(p[3 * a + c]) - mean[c]);
      out[(3 * a + c) * frames + f] = v;
      squares[c] = fmadd(v, v, squares[c]);
    }
  }
  g[f] = static_cast<double>(squares[0]) + static_cast<double>(squares[1]) + static_cast<double>(squares[2]);
}

// rmsd_min's merge key: (value, index) in one unsigned word for float32; the value's bits alone for float64.
__device__ __forceinline__ unsigned long long min_key(float v, int64_t index) {
  return (static_cast<unsigned long long>(__float_as_uint(v)) << 32) | static_cast<unsigned int>(index);
}
__device__ __forceinline__ unsigned long long min_key(double v, int64_t /*index*/) {
  return static_cast<unsigned long long>(__double_as_longlong(v));
}

// Block (blockIdx.x, y-stride tile): Y frames [blockIdx.x * kThreads, + kThreads) against kTileX X frames.
// Epilogues: kPairwise writes out (n, m); kMinKeys atomicMins min_key into row_key (n) and col_key (m);
// kMinIndex atomicMins into row_key / col_key the indices whose value equals row_min / col_min.
template <typename scalar_t, typename acc_t, Epilogue kEpilogue>
__global__ void __launch_bounds__(kThreads)
    qcp_tile_kernel(const acc_t* __restrict__ xp, const double* __restrict__ gx, int64_t n,
                    const acc_t* __restrict__ yp, const double* __restrict__ gy, int64_t m, int64_t atoms,
                    int64_t chunk_atoms, scalar_t* __restrict__ out, unsigned long long* __restrict__ row_key,
                    unsigned long long* __restrict__ col_key, const scalar_t* __restrict__ row_min,
                    const scalar_t* __restrict__ col_min) {
  extern __shared__ __align__(32) unsigned char shared[];
  acc_t* ys = reinterpret_cast<acc_t*>(shared);      // [chunk atom][xyz][kThreads]
  acc_t* xs = ys + chunk_atoms * 3 * kThreads;       // [chunk atom][xyz][kPairsPerThread], aligned as Pairs
  const int t = threadIdx.x;
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kThreads + t;
  const bool valid_j = j < m;
  const double gyj = valid_j ? gy[j] : 0.0;
  const int64_t n_chunks = (atoms + chunk_atoms - 1) / chunk_atoms;
  bool y_staged = false;  // with a single chunk, the Y tile is loaded once for the whole block

  for (int64_t tile = blockIdx.y; tile * kTileX < n; tile += gridDim.y) {
    unsigned long long col_best = kNoKey;
    for (int pass = 0; pass < kPasses; ++pass) {
      const int64_t i0 = tile * kTileX + pass * kPairsPerThread;
      if (i0 >= n) break;  // uniform over the block
      acc_t acc[kPairsPerThread][9] = {};
      for (int64_t chunk = 0; chunk < n_chunks; ++chunk) {
        const int64_t a0 = chunk * chunk_atoms;
        const int64_t ca = atoms - a0 < chunk_atoms ? atoms - a0 : chunk_atoms;
        __syncthreads();  // everyone is done with the previous contents
        if (n_chunks > 1 || !y_staged) {
          for (int64_t a3 = 0; a3 < ca * 3; ++a3) {
            ys[a3 * kThreads + t] = valid_j ? yp[(a0 * 3 + a3) * m + j] : acc_t(0);
          }
          y_staged = true;
        }
        for (int64_t idx = t; idx < ca * 3 * kPairsPerThread; idx += kThreads) {
          const int64_t i = i0 + idx % kPairsPerThread;
          xs[idx] = i < n ? xp[(a0 * 3 + idx / kPairsPerThread) * n + i] : acc_t(0);
        }
        __syncthreads();
        for (int64_t a = 0; a < ca; ++a) {
          const acc_t y0 = ys[(3 * a) * kThreads + t];
          const acc_t y1 = ys[(3 * a + 1) * kThreads + t];
          const acc_t y2 = ys[(3 * a + 2) * kThreads + t];
          // One vector load per coordinate brings it for all kPairsPerThread X frames (a broadcast to the warp).
          const Pairs<acc_t> x0s = reinterpret_cast<const Pairs<acc_t>*>(xs)[3 * a];
          const Pairs<acc_t> x1s = reinterpret_cast<const Pairs<acc_t>*>(xs)[3 * a + 1];
          const Pairs<acc_t> x2s = reinterpret_cast<const Pairs<acc_t>*>(xs)[3 * a + 2];
#pragma unroll
          for (int r = 0; r < kPairsPerThread; ++r) {
            const acc_t x0 = x0s.v[r], x1 = x1s.v[r], x2 = x2s.v[r];
            acc[r][0] = fmadd(x0, y0, acc[r][0]);
            acc[r][1] = fmadd(x0, y1, acc[r][1]);
            acc[r][2] = fmadd(x0, y2, acc[r][2]);
            acc[r][3] = fmadd(x1, y0, acc[r][3]);
            acc[r][4] = fmadd(x1, y1, acc[r][4]);
            acc[r][5] = fmadd(x1, y2, acc[r][5]);
            acc[r][6] = fmadd(x2, y0, acc[r][6]);
            acc[r][7] = fmadd(x2, y1, acc[r][7]);
            acc[r][8] = fmadd(x2, y2, acc[r][8]);
          }
        }
      }

      double s[kPairsPerThread][9], gxs[kPairsPerThread], gys[kPairsPerThread], msd[kPairsPerThread];
#pragma unroll
      for (int r = 0; r < kPairsPerThread; ++r) {
#pragma unroll
        for (int k = 0; k < 9; ++k) s[r][k] = static_cast<double>(acc[r][k]);
        gxs[r] = i0 + r < n ? gx[i0 + r] : 0.0;
        gys[r] = gyj;
      }
      qcp::mean_squared_deviations(s, gxs, gys, static_cast<double>(atoms), msd);

#pragma unroll
      for (int r = 0; r < kPairsPerThread; ++r) {
        const int64_t i = i0 + r;
        const bool valid = valid_j && i < n;
        const scalar_t v = static_cast<scalar_t>(sqrt(msd[r]));
        if constexpr (kEpilogue == Epilogue::kPairwise) {
          if (valid) out[i * m + j] = v;
        } else if constexpr (kEpilogue == Epilogue::kMinKeys) {
          unsigned long long row = valid ? min_key(v, j) : kNoKey;
#pragma unroll
          for (int offset = 16; offset > 0; offset >>= 1) {
            const unsigned long long other = __shfl_xor_sync(0xffffffffu, row, offset);
            row = other < row ? other : row;
          }
          if ((t & 31) == 0 && row != kNoKey) atomicMin(row_key + i, row);
          const unsigned long long col = min_key(v, i);
          if (valid && col < col_best) col_best = col;
        } else {
          if (valid && v == row_min[i]) atomicMin(row_key + i, static_cast<unsigned long long>(j));
          if (valid && v == col_min[j]) atomicMin(col_key + j, static_cast<unsigned long long>(i));
        }
      }
    }
    if constexpr (kEpilogue == Epilogue::kMinKeys) {
      if (col_best != kNoKey) atomicMin(col_key + j, col_best);
    }
  }
}

// Splits float32 keys (value bits << 32 | index) into values and indices.
__global__ void unpack_keys_kernel(const unsigned long long* __restrict__ keys, int64_t count,
                                   float* __restrict__ value, int64_t* __restrict__ index) {
  const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= count) return;
  value[k] = __uint_as_float(static_cast<unsigned int>(keys[k] >> 32));
  index[k] = static_cast<int64_t>(keys[k] & 0xffffffffull);
}

unsigned long long* as_keys(const at::Tensor& t) {
  return reinterpret_cast<unsigned long long*>(t.mutable_data_ptr<int64_t>());
}

int blocks_for(int64_t count, int threads) { return static_cast<int>((count + threads - 1) / threads); }

// Both sets centred and packed on the device.
template <typename acc_t>
struct PackedFrames {
  at::Tensor x, gx, y, gy;
  int64_t n, m, atoms, chunk_atoms;

  template <typename scalar_t>
  PackedFrames(const char* op, const at::Tensor& X, const at::Tensor& Y, scalar_t /*dtype tag*/)
      : n(X.size(0)), m(Y.size(0)), atoms(X.size(1)) {
    const auto acc = X.options().dtype(c10::CppTypeToScalarType<acc_t>::value);
    x = at::empty({atoms, 3, n}, acc);
    y = at::empty({atoms, 3, m}, acc);
    gx = at::empty({n}, X.options().dtype(at::kDouble));
    gy = at::empty({m}, X.options().dtype(at::kDouble));
    at::Tensor first_bad = at::full({2}, std::numeric_limits<int64_t>::max(), X.options().dtype(at::kLong));
    const cudaStream_t stream = cuda::current_stream();
    pack_frames_kernel<scalar_t, acc_t><<<blocks_for(n, 256), 256, 0, stream>>>(
        X.const_data_ptr<scalar_t>(), n, atoms, x.mutable_data_ptr<acc_t>(), gx.mutable_data_ptr<double>(),
        as_keys(first_bad));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    pack_frames_kernel<scalar_t, acc_t><<<blocks_for(m, 256), 256, 0, stream>>>(
        Y.const_data_ptr<scalar_t>(), m, atoms, y.mutable_data_ptr<acc_t>(), gy.mutable_data_ptr<double>(),
        as_keys(first_bad) + 1);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    // One synchronisation, to raise the NaN policy's error before any pair is computed.
    const at::Tensor bad = first_bad.cpu();
    const int64_t bad_x = bad.const_data_ptr<int64_t>()[0], bad_y = bad.const_data_ptr<int64_t>()[1];
    TORCH_CHECK_VALUE(bad_x >= n, op, ": X must be finite, but frame ", bad_x, " holds NaN or infinite coordinates");
    TORCH_CHECK_VALUE(bad_y >= m, op, ": Y must be finite, but frame ", bad_y, " holds NaN or infinite coordinates");
    const int64_t fit = kSharedBytes / static_cast<int64_t>(sizeof(acc_t)) / (3 * (kThreads + kPairsPerThread));
    chunk_atoms = std::max<int64_t>(1, std::min(atoms, fit));
  }

  template <typename scalar_t, Epilogue kEpilogue>
  void launch(scalar_t* out, unsigned long long* row_key, unsigned long long* col_key, const scalar_t* row_min,
              const scalar_t* col_min) const {
    const dim3 grid(blocks_for(m, kThreads), static_cast<unsigned>(std::min<int64_t>(blocks_for(n, kTileX), 65535)));
    const size_t shared = static_cast<size_t>(chunk_atoms) * 3 * (kThreads + kPairsPerThread) * sizeof(acc_t);
    qcp_tile_kernel<scalar_t, acc_t, kEpilogue><<<grid, kThreads, shared, cuda::current_stream()>>>(
        x.const_data_ptr<acc_t>(), gx.const_data_ptr<double>(), n, y.const_data_ptr<acc_t>(),
        gy.const_data_ptr<double>(), m, atoms, chunk_atoms, out, row_key, col_key, row_min, col_min);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

at::Tensor pairwise_rmsd_cuda(const at::Tensor& X, const at::Tensor& Y) {
  rmsd_check("pairwise_rmsd", X, Y);
  const c10::cuda::CUDAGuard guard(X.device());
  at::Tensor out = at::empty({X.size(0), Y.size(0)}, X.options());
  if (X.scalar_type() == at::kFloat) {
    const PackedFrames<float> packed("pairwise_rmsd", X, Y, float{});
    packed.launch<float, Epilogue::kPairwise>(out.mutable_data_ptr<float>(), nullptr, nullptr, nullptr, nullptr);
  } else {
    const PackedFrames<double> packed("pairwise_rmsd", X, Y, double{});
    packed.launch<double, Epilogue::kPairwise>(out.mutable_data_ptr<double>(), nullptr, nullptr, nullptr, nullptr);
  }
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rmsd_min_cuda(const at::Tensor& X, const at::Tensor& Y) {
  rmsd_check("rmsd_min", X, Y);
  const c10::cuda::CUDAGuard guard(X.device());
  const int64_t n = X.size(0), m = Y.size(0);
  const auto long_options = X.options().dtype(at::kLong);
  at::Tensor row_key = at::full({n}, -1, long_options), col_key = at::full({m}, -1, long_options);  // kNoKey
  if (X.scalar_type() == at::kFloat) {
    const PackedFrames<float> packed("rmsd_min", X, Y, float{});
    packed.launch<float, Epilogue::kMinKeys>(nullptr, as_keys(row_key), as_keys(col_key), nullptr, nullptr);
    at::Tensor row_min = at::empty({n}, X.options()), col_min = at::empty({m}, X.options());
    at::Tensor row_arg = at::empty({n}, long_options), col_arg = at::empty({m}, long_options);
    const cudaStream_t stream = cuda::current_stream();
    unpack_keys_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(as_keys(row_key), n, row_min.mutable_data_ptr<float>(),
                                                               row_arg.mutable_data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    unpack_keys_kernel<<<blocks_for(m, 256), 256, 0, stream>>>(as_keys(col_key), m, col_min.mutable_data_ptr<float>(),
                                                               col_arg.mutable_data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return {row_min, row_arg, col_min, col_arg};
  }
  const PackedFrames<double> packed("rmsd_min", X, Y, double{});
  packed.launch<double, Epilogue::kMinKeys>(nullptr, as_keys(row_key), as_keys(col_key), nullptr, nullptr);
  // The keys are the minima's bits; a second pass finds the smallest index achieving each.
  const at::Tensor row_min = row_key.view(at::kDouble), col_min = col_key.view(at::kDouble);
  at::Tensor row_arg = at::full({n}, std::numeric_limits<int64_t>::max(), long_options);
  at::Tensor col_arg = at::full({m}, std::numeric_limits<int64_t>::max(), long_options);
  packed.launch<double, Epilogue::kMinIndex>(nullptr, as_keys(row_arg), as_keys(col_arg),
                                             row_min.const_data_ptr<double>(), col_min.const_data_ptr<double>());
  return {row_min, row_arg, col_min, col_arg};
}

}  // namespace

TORCH_LIBRARY_IMPL(bfr_fast, CUDA, m) {
  m.impl("pairwise_rmsd", &pairwise_rmsd_cuda);
  m.impl("rmsd_min", &rmsd_min_cuda);
}

}  // namespace bfr_fast
