// CPU kernels of pairwise_rmsd and rmsd_min: QCP (common/qcp.h) vectorised across pairs.
//
// Every frame is centred once (mean in double) and stored in double with G = sum |x|^2. Y is packed
// structure-of-arrays in blocks of 4 frames, [block][atom][xyz][lane], so the nine inner products of one X frame
// against a block are nine FMA chains on vectors of doubles, and the quartics of 16 pairs are solved together on
// those vectors. The work is a grid of tasks (kRowsPerTask X frames against one L2-sized tile of Y)
// run by at::parallel_for. The vector code is compiled twice, for x86-64-v3 (AVX2 + FMA) and for the baseline
// ISA, and chosen at run time, so the library is built without -march flags and runs on any x86-64 CPU.
//
// Accumulation is in float64 for both input dtypes, chosen by measurement (22 and 175 atoms, one core, AVX2):
// float32 accumulation (8 lanes) was 1.17x and 1.7x faster, but its rounding of S and G leaves RMSD errors of
// ~sqrt(eps_32) * RMS radius near zero: 1e-4 to 4e-4 nm between identical or rotated copies of a 0.2-0.5 nm
// molecule, where float64 gives < 3e-8 nm.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <tuple>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// The vector types below never cross a non-inlined call, so GCC's notes about their calling convention are moot.
#pragma GCC diagnostic ignored "-Wpsabi"

#include "common/qcp.h"
#include "common/rmsd.h"

namespace bfr_fast {

// Vectors of 2 and 4 doubles: the baseline ISA (SSE2, NEON) has the former natively, AVX2 the latter.
typedef double D2 __attribute__((vector_size(16)));
typedef double D4 __attribute__((vector_size(32)));

namespace qcp {
template <typename V>
struct VectorLaneOps {
  template <typename Mask>
  C10_ALWAYS_INLINE static bool any(const Mask& mask) {
    long set = 0;
    for (int i = 0; i < static_cast<int>(sizeof(V) / sizeof(double)); ++i) set |= mask[i];
    return set != 0;
  }
};
template <>
struct LaneOps<D2> : VectorLaneOps<D2> {};
template <>
struct LaneOps<D4> : VectorLaneOps<D4> {};
}  // namespace qcp

namespace {

// Y frames per packed block ([block][atom][xyz][lane]), and per group: the quartics of a group are solved together
// so that their Newton iterations (each a dependency chain a few divisions deep) overlap instead of leaving the
// core latency-bound.
constexpr int kLanes = 4;
constexpr int kGroup = 16;

// Mean squared deviations of one centred X frame (x: [atom][xyz]) against n_groups groups of kGroup packed Y
// frames, into out[frame], on vectors V of W doubles: kGroup / W independent chains.
template <typename V>
C10_ALWAYS_INLINE void qcp_row(const double* x, double gx, const double* y, const double* gy, int64_t n_groups,
                               int64_t atoms, double* out) {
  constexpr int W = sizeof(V) / sizeof(double);
  constexpr int kChains = kGroup / W;
  for (int64_t g = 0; g < n_groups; ++g) {
    V s[kChains][9];
    V gxs[kChains], gys[kChains], msd[kChains];
    for (int c = 0; c < kChains; ++c) {
      // Chain c covers lanes [c W, c W + W) of the group: part of one packed block.
      const double* yb = y + (g * kGroup + c * W / kLanes * kLanes) * atoms * 3 + c * W % kLanes;
      V acc[9] = {};
      for (int64_t a = 0; a < atoms; ++a) {
        const V yx = *reinterpret_cast<const V*>(yb + (3 * a) * kLanes);
        const V yy = *reinterpret_cast<const V*>(yb + (3 * a + 1) * kLanes);
        const V yz = *reinterpret_cast<const V*>(yb + (3 * a + 2) * kLanes);
        const double x0 = x[3 * a], x1 = x[3 * a + 1], x2 = x[3 * a + 2];
        acc[0] += x0 * yx;
        acc[1] += x0 * yy;
        acc[2] += x0 * yz;
        acc[3] += x1 * yx;
        acc[4] += x1 * yy;
        acc[5] += x1 * yz;
        acc[6] += x2 * yx;
        acc[7] += x2 * yy;
        acc[8] += x2 * yz;
      }
      for (int k = 0; k < 9; ++k) s[c][k] = acc[k];
      gxs[c] = qcp::splat<V>(gx);
      std::memcpy(&gys[c], gy + g * kGroup + c * W, sizeof(V));
    }
    qcp::mean_squared_deviations(s, gxs, gys, static_cast<double>(atoms), msd);
    std::memcpy(out + g * kGroup, msd, sizeof(msd));
  }
}

using RowKernel = void (*)(const double*, double, const double*, const double*, int64_t, int64_t, double*);

// The kernels: mean squared deviations, then their square roots with the ISA's vector instruction (generic vectors
// have none, and a std::sqrt loop does not vectorise because of errno).
void qcp_row_baseline(const double* x, double gx, const double* y, const double* gy, int64_t n_groups,
                      int64_t atoms, double* out) {
  qcp_row<D2>(x, gx, y, gy, n_groups, atoms, out);
  for (int64_t j = 0; j < n_groups * kGroup; j += 2) {
#if defined(__x86_64__)
    _mm_storeu_pd(out + j, _mm_sqrt_pd(_mm_loadu_pd(out + j)));
#else
    out[j] = std::sqrt(out[j]);
    out[j + 1] = std::sqrt(out[j + 1]);
#endif
  }
}

#if defined(__GNUC__) && defined(__x86_64__)
__attribute__((target("arch=x86-64-v3"))) void qcp_row_x86_64_v3(const double* x, double gx, const double* y,
                                                                 const double* gy, int64_t n_groups,
                                                                 int64_t atoms, double* out) {
  qcp_row<D4>(x, gx, y, gy, n_groups, atoms, out);
  for (int64_t j = 0; j < n_groups * kGroup; j += 4) {
    _mm256_storeu_pd(out + j, _mm256_sqrt_pd(_mm256_loadu_pd(out + j)));
  }
}
#endif

// AVX2 + FMA where the CPU has them, unless the environment sets BFR_FAST_CPU_BASELINE=1 (to test the other).
RowKernel select_row_kernel() {
#if defined(__GNUC__) && defined(__x86_64__)
  static const bool use_v3 = [] {
    const char* baseline = std::getenv("BFR_FAST_CPU_BASELINE");
    __builtin_cpu_init();
    return !(baseline != nullptr && std::strcmp(baseline, "1") == 0) && __builtin_cpu_supports("avx2") &&
           __builtin_cpu_supports("fma");
  }();
  if (use_v3) return &qcp_row_x86_64_v3;
#endif
  return &qcp_row_baseline;
}

// Centres each frame and stores it in double at [frame / lanes][atom][xyz][frame % lanes] (lanes = 1: plain
// [frame][atom][xyz]), with g[frame] = sum |x|^2. Returns the first frame holding a non-finite coordinate, or -1.
template <typename scalar_t>
int64_t pack_frames(const scalar_t* in, int64_t frames, int64_t atoms, int64_t lanes, double* out, double* g) {
  std::atomic<int64_t> first_bad{frames};
  at::parallel_for(0, frames, 256, [&](int64_t begin, int64_t end) {
    for (int64_t f = begin; f < end; ++f) {
      const scalar_t* p = in + f * atoms * 3;
      double mean[3] = {0.0, 0.0, 0.0};
      bool finite = true;
      for (int64_t a = 0; a < atoms; ++a) {
        for (int c = 0; c < 3; ++c) {
          const double v = static_cast<double>(p[3 * a + c]);
          finite = finite && std::isfinite(v);
          mean[c] += v;
        }
      }
      if (!finite) {
        int64_t seen = first_bad.load();
        while (f < seen && !first_bad.compare_exchange_weak(seen, f)) {
        }
        continue;
      }
      for (double& m : mean) m /= static_cast<double>(atoms);
      double* o = out + (f / lanes) * atoms * 3 * lanes + f % lanes;
      double gf = 0.0;
      for (int64_t a = 0; a < atoms; ++a) {
        for (int c = 0; c < 3; ++c) {
          const double v = static_cast<double>(p[3 * a + c]) - mean[c];
          o[(3 * a + c) * lanes] = v;
          gf += v * v;
        }
      }
      g[f] = gf;
    }
  });
  const int64_t bad = first_bad.load();
  return bad < frames ? bad : -1;
}

// Both sets centred and packed, and the task grid over the N x M pairs.
class QcpTiles {
 public:
  static constexpr int64_t kRowsPerTask = 32;
  // A Y tile stays in L2 while the task's X frames sweep it.
  static constexpr int64_t kTileBytes = 96 * 1024;

  template <typename scalar_t>
  QcpTiles(const char* op, const at::Tensor& X, const at::Tensor& Y, scalar_t /*dtype tag*/)
      : n_(X.size(0)), m_(Y.size(0)), atoms_(X.size(1)), kernel_(select_row_kernel()) {
    const auto f64 = at::TensorOptions().dtype(at::kDouble);
    const int64_t padded = (m_ + kGroup - 1) / kGroup * kGroup;
    x_ = at::empty({n_, atoms_, 3}, f64);
    gx_ = at::empty({n_}, f64);
    y_ = at::zeros({padded, atoms_, 3}, f64);  // padding: zero frames, whose results are discarded
    gy_ = at::zeros({padded}, f64);
    const int64_t bad_x = pack_frames(X.const_data_ptr<scalar_t>(), n_, atoms_, 1, x_.mutable_data_ptr<double>(),
                                      gx_.mutable_data_ptr<double>());
    TORCH_CHECK_VALUE(bad_x < 0, op, ": X must be finite, but frame ", bad_x, " holds NaN or infinite coordinates");
    const int64_t bad_y = pack_frames(Y.const_data_ptr<scalar_t>(), m_, atoms_, kLanes,
                                      y_.mutable_data_ptr<double>(), gy_.mutable_data_ptr<double>());
    TORCH_CHECK_VALUE(bad_y < 0, op, ": Y must be finite, but frame ", bad_y, " holds NaN or infinite coordinates");
    const int64_t group_bytes = atoms_ * 3 * kGroup * static_cast<int64_t>(sizeof(double));
    tile_ = std::max<int64_t>(1, kTileBytes / group_bytes) * kGroup;
  }

  int64_t m() const { return m_; }

  // Calls task(i0, i1, j0, j1, scratch) for a grid of rectangles [i0, i1) x [j0, j1) covering the N x M pairs, in
  // parallel; scratch has room for one row of a rectangle (see row).
  template <typename Task>
  void parallel_tasks(const Task& task) const {
    const int64_t groups = (n_ + kRowsPerTask - 1) / kRowsPerTask;
    const int64_t tiles = (m_ + tile_ - 1) / tile_;
    at::parallel_for(0, groups * tiles, 1, [&](int64_t begin, int64_t end) {
      std::vector<double> scratch(tile_);
      for (int64_t t = begin; t < end; ++t) {
        const int64_t i0 = t / tiles * kRowsPerTask, j0 = t % tiles * tile_;
        task(i0, std::min(n_, i0 + kRowsPerTask), j0, std::min(m_, j0 + tile_), scratch.data());
      }
    });
  }

  // RMSDs of X frame i against Y frames [j0, j1) of one task into out[0, j1 - j0), in double (out is written up
  // to a whole number of groups).
  void row(int64_t i, int64_t j0, int64_t j1, double* out) const {
    const int64_t frame = atoms_ * 3;
    kernel_(x_.const_data_ptr<double>() + i * frame, gx_.const_data_ptr<double>()[i],
            y_.const_data_ptr<double>() + j0 * frame, gy_.const_data_ptr<double>() + j0,
            (j1 - j0 + kGroup - 1) / kGroup, atoms_, out);
  }

 private:
  int64_t n_, m_, atoms_, tile_ = 0;
  RowKernel kernel_;
  at::Tensor x_, gx_, y_, gy_;
};

at::Tensor pairwise_rmsd_cpu(const at::Tensor& X, const at::Tensor& Y) {
  rmsd_check("pairwise_rmsd", X, Y);
  at::Tensor out = at::empty({X.size(0), Y.size(0)}, X.options());
  AT_DISPATCH_FLOATING_TYPES(X.scalar_type(), "pairwise_rmsd_cpu", [&] {
    const QcpTiles tiles("pairwise_rmsd", X, Y, scalar_t{});
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    const int64_t M = tiles.m();
    tiles.parallel_tasks([&](int64_t i0, int64_t i1, int64_t j0, int64_t j1, double* r) {
      for (int64_t i = i0; i < i1; ++i) {
        tiles.row(i, j0, j1, r);
        for (int64_t j = j0; j < j1; ++j) o[i * M + j] = static_cast<scalar_t>(r[j - j0]);
      }
    });
  });
  return out;
}

// Running minimum with ties to the smallest index; index -1 means none yet.
template <typename scalar_t>
struct ArgMin {
  scalar_t value = 0;
  int64_t index = -1;

  void offer(scalar_t v, int64_t j) {
    if (index < 0 || v < value || (v == value && j < index)) {
      value = v;
      index = j;
    }
  }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rmsd_min_cpu(const at::Tensor& X, const at::Tensor& Y) {
  rmsd_check("rmsd_min", X, Y);
  const int64_t N = X.size(0), M = Y.size(0);
  at::Tensor row_min = at::empty({N}, X.options()), col_min = at::empty({M}, X.options());
  at::Tensor row_arg = at::empty({N}, X.options().dtype(at::kLong));
  at::Tensor col_arg = at::empty({M}, X.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES(X.scalar_type(), "rmsd_min_cpu", [&] {
    const QcpTiles tiles("rmsd_min", X, Y, scalar_t{});
    std::vector<ArgMin<scalar_t>> rows(N), cols(M);
    std::mutex merge;
    tiles.parallel_tasks([&](int64_t i0, int64_t i1, int64_t j0, int64_t j1, double* r) {
      // Minima over the task's rectangle, merged into the global ones once per task.
      std::vector<ArgMin<scalar_t>> task_rows(i1 - i0), task_cols(j1 - j0);
      for (int64_t i = i0; i < i1; ++i) {
        tiles.row(i, j0, j1, r);
        for (int64_t j = j0; j < j1; ++j) {
          const scalar_t v = static_cast<scalar_t>(r[j - j0]);  // rounded as pairwise_rmsd rounds it
          task_rows[i - i0].offer(v, j);
          task_cols[j - j0].offer(v, i);
        }
      }
      const std::lock_guard<std::mutex> lock(merge);
      for (int64_t i = i0; i < i1; ++i) rows[i].offer(task_rows[i - i0].value, task_rows[i - i0].index);
      for (int64_t j = j0; j < j1; ++j) cols[j].offer(task_cols[j - j0].value, task_cols[j - j0].index);
    });
    scalar_t* rv = row_min.mutable_data_ptr<scalar_t>();
    scalar_t* cv = col_min.mutable_data_ptr<scalar_t>();
    int64_t* ri = row_arg.mutable_data_ptr<int64_t>();
    int64_t* ci = col_arg.mutable_data_ptr<int64_t>();
    for (int64_t i = 0; i < N; ++i) std::tie(rv[i], ri[i]) = std::tie(rows[i].value, rows[i].index);
    for (int64_t j = 0; j < M; ++j) std::tie(cv[j], ci[j]) = std::tie(cols[j].value, cols[j].index);
  });
  return {row_min, row_arg, col_min, col_arg};
}

}  // namespace

// The code path select_row_kernel() takes, for bfr_fast._C.cpu_rmsd_isa() (csrc/ops.cpp).
const char* cpu_rmsd_isa() {
#if defined(__GNUC__) && defined(__x86_64__)
  if (select_row_kernel() == &qcp_row_x86_64_v3) return "x86-64-v3";
#endif
  return "baseline";
}

TORCH_LIBRARY_IMPL(bfr_fast, CPU, m) {
  m.impl("pairwise_rmsd", &pairwise_rmsd_cpu);
  m.impl("rmsd_min", &rmsd_min_cpu);
}

}  // namespace bfr_fast
