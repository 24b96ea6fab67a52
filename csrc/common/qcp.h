// Theobald's QCP method (Theobald 2005; Liu, Agrafiotis & Theobald 2010): the RMSD after optimal superposition
// from the 3x3 inner-product matrix of two centred conformations, without an eigen-decomposition or an SVD.
//
// For centred x_a, y_a (a = 1..A), S = sum_a x_a y_a^T, G_x = sum_a |x_a|^2, G_y = sum_a |y_a|^2, the optimal
// rotation attains sum_a x_a . R y_a = lambda_max, the largest eigenvalue of Horn's symmetric, traceless 4x4 key
// matrix K(S), and RMSD^2 = (G_x + G_y - 2 lambda_max) / A. lambda_max is the largest root of
//   P(l) = l^4 + c2 l^2 + c1 l + c0,  c2 = -2 |S|_F^2,  c1 = -8 det S,  c0 = det K,
// found by Newton's method from E0 = (G_x + G_y) / 2, an upper bound of lambda_max: beyond its largest root a
// quartic with real roots is increasing and convex, so the iterates decrease monotonically onto lambda_max.
// Everything is scaled by 1/E0 first, so the root lies in [0, 1] for any coordinate scale (no overflow of l^4,
// an absolute stopping tolerance). The eigenvalue of a proper rotation is what K yields: no reflections.
//
// The functions are generic over T: double (the CUDA kernels, one pair per thread) or a GCC vector of doubles
// (the CPU kernel, one pair per lane). LaneOps<T>::any says whether any lane of a comparison is set; the CPU kernel
// specialises it for its vector types.
#pragma once
#include <c10/macros/Macros.h>

// The loops over the K pairs and the 9 entries of S must unroll, so that their arrays live in registers on a GPU.
#if defined(__CUDACC__)
#define BFR_QCP_UNROLL _Pragma("unroll")
#else
#define BFR_QCP_UNROLL
#endif

namespace bfr_fast::qcp {

// Newton stops once every lane's step is below this (in units of E0). Simple roots converge quadratically, so
// the last step leaves an error far below it; multiple roots (collinear or collapsed frames) converge linearly.
constexpr double kTolerance = 1e-11;
// Enough for a quadruple root (all of S zero: one frame collapsed to a point), where each step shrinks the
// error by 3/4: (3/4)^64 ~ 1e-8 of E0, i.e. a relative RMSD error ~ 5e-9 in that degenerate case.
constexpr int kMaxIterations = 64;

template <typename T>
struct LaneOps;

template <>
struct LaneOps<double> {
  C10_HOST_DEVICE C10_ALWAYS_INLINE static bool any(bool mask) { return mask; }
};

template <typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE T splat(double v) {
  return T{} + v;
}

// P(l) = l^4 + c2 l^2 + c1 l + c0, and a lower bound of its largest root.
template <typename T>
struct Quartic {
  T c2, c1, c0;
  // The largest diagonal entry of K: the Rayleigh quotient of a coordinate vector, so <= lambda_max.
  T floor;
};

// Coefficients of the characteristic polynomial of K(S), S row-major (xx, xy, xz, yx, yy, yz, zx, zy, zz).
template <typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE Quartic<T> characteristic_polynomial(const T (&s)[9]) {
  const T xx = s[0], xy = s[1], xz = s[2], yx = s[3], yy = s[4], yz = s[5], zx = s[6], zy = s[7], zz = s[8];
  Quartic<T> p;
  p.c2 = -2.0 * (xx * xx + xy * xy + xz * xz + yx * yx + yy * yy + yz * yz + zx * zx + zy * zy + zz * zz);
  p.c1 = -8.0 * (xx * (yy * zz - yz * zy) - xy * (yx * zz - yz * zx) + xz * (yx * zy - yy * zx));
  // Horn's key matrix (symmetric).
  const T k00 = xx + yy + zz, k01 = yz - zy, k02 = zx - xz, k03 = xy - yx;
  const T k11 = xx - yy - zz, k12 = xy + yx, k13 = zx + xz;
  const T k22 = yy - xx - zz, k23 = yz + zy;
  const T k33 = zz - xx - yy;
  const T top01 = k00 > k11 ? k00 : k11, top23 = k22 > k33 ? k22 : k33;
  p.floor = top01 > top23 ? top01 : top23;
  // det K by Laplace expansion in complementary 2x2 minors of rows (0, 1) and rows (2, 3).
  const T a01 = k00 * k11 - k01 * k01, a02 = k00 * k12 - k02 * k01, a03 = k00 * k13 - k03 * k01;
  const T a12 = k01 * k12 - k02 * k11, a13 = k01 * k13 - k03 * k11, a23 = k02 * k13 - k03 * k12;
  const T b01 = k02 * k13 - k12 * k03, b02 = k02 * k23 - k22 * k03, b03 = k02 * k33 - k23 * k03;
  const T b12 = k12 * k23 - k22 * k13, b13 = k12 * k33 - k23 * k13, b23 = k22 * k33 - k23 * k23;
  p.c0 = a01 * b23 - a02 * b13 + a03 * b12 + a12 * b03 - a13 * b02 + a23 * b01;
  return p;
}

// P(l) and P'(l).
template <typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE void evaluate(const Quartic<T>& p, const T& l, T& value, T& slope) {
  const T l2 = l * l;
  const T b = (l2 + p.c2) * l;     // l^3 + c2 l
  const T a = b + p.c1;            // l^3 + c2 l + c1
  value = a * l + p.c0;            // P(l)
  slope = 2.0 * l2 * l + b + a;    // 4 l^3 + 2 c2 l + c1
}

// Mean squared deviations after optimal superposition of K independent pairs, from their S (raw sums, scaled
// in place by 1/E0), G_x, G_y and the atom count; clamped at 0 against rounding, NaN propagates. The K Newton
// iterations interleave, so their latency chains overlap (K > 1 is for throughput only: results do not depend on K).
//
// Newton from above the largest root of a real-rooted polynomial is monotone, and its step
// P/P' = 1 / sum_i 1/(l - r_i) shrinks as l decreases. Rounding breaks this only near a multiple root (collinear
// frames), where P' vanishes and noise in P can throw l below the root, so the iteration is guarded: a step
// larger than the last, or below the lower bound, is not taken (the lane has converged); and an iterate where
// P' <= 0 (below the largest critical point, which no exact iterate reaches) is undone.
template <int K, typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE void mean_squared_deviations(T (&s)[K][9], const T (&gx)[K], const T (&gy)[K],
                                                                double n_atoms, T (&msd)[K]) {
  using Mask = decltype(T{} > 0.0);
  Quartic<T> p[K];
  T e0[K], l[K], previous[K], last[K];
  Mask active[K];
  BFR_QCP_UNROLL
  for (int k = 0; k < K; ++k) {
    e0[k] = 0.5 * (gx[k] + gy[k]);
    // E0 = 0 only when both frames collapse to a point (e.g. one atom): then S = 0 and l = 0 is the root.
    const T positive = e0[k] > 0.0 ? splat<T>(1.0) : T{};
    const T scale = e0[k] > 0.0 ? 1.0 / e0[k] : T{};
    BFR_QCP_UNROLL
    for (int i = 0; i < 9; ++i) s[k][i] *= scale;
    p[k] = characteristic_polynomial(s[k]);
    // Two upper bounds of the largest root: E0 (1 after scaling; tight for similar frames) and, K(S) being
    // traceless, sqrt(3/4 |K|_F^2) = sqrt(f), f = -3/2 c2 (tight for dissimilar ones). The smaller saves
    // iterations. Two Heron steps from 1 give h >= sqrt(f) without a square root (which vectors lack).
    const T f = -1.5 * p[k].c2;
    const T h1 = 0.5 * (1.0 + f);
    const T h = 0.5 * (h1 + f / h1);
    const T start = h < positive ? h : positive;
    l[k] = start < p[k].floor ? p[k].floor : start;  // the two bounds cross only by rounding
    previous[k] = l[k];
    last[k] = splat<T>(2.0);  // larger than any step: the root lies in [0, 1]
    active[k] = l[k] == l[k];  // every lane (l is finite here)
  }
  for (int it = 0; it < kMaxIterations; ++it) {
    Mask any{};
    BFR_QCP_UNROLL
    for (int k = 0; k < K; ++k) {
      T value, slope;
      evaluate(p[k], l[k], value, slope);
      const T step = slope > 0.0 ? value / slope : T{};
      const T size = step < 0.0 ? -step : step;
      const Mask take = active[k] & (slope > 0.0) & (size <= last[k]);
      const Mask undo = active[k] & (slope <= 0.0);
      const T next = l[k] - step;
      const T before = previous[k];
      previous[k] = take ? l[k] : previous[k];
      l[k] = take ? (next < p[k].floor ? p[k].floor : next) : (undo ? before : l[k]);
      last[k] = size;
      // Converged lanes stay put, so each lane's result is independent of its neighbours.
      active[k] = take & (size > kTolerance);
      any = any | active[k];
    }
    if (!LaneOps<T>::any(any)) break;
  }
  BFR_QCP_UNROLL
  for (int k = 0; k < K; ++k) {
    const T v = (2.0 / n_atoms) * e0[k] * (1.0 - l[k]);
    msd[k] = v < 0.0 ? T{} : v;
  }
}

}  // namespace bfr_fast::qcp
