// The vectorised CPU kernels, compiled once per instruction set: CMakeLists.txt builds this file with
// CPU_CAPABILITY=DEFAULT (baseline x86-64), =AVX2 (-mavx2 -mfma -mf16c ...) and =AVX512 (-mavx512f/bw/vl/dq), each
// copy defining bfr_fast::cpu::<CPU_CAPABILITY>::kernels (see csrc/cpu/vec_kernels.h). Everything else here has
// internal linkage, and at::vec's own code lives in its at::vec::<CPU_CAPABILITY> namespace, so the copies do not
// mix. AVX2 and AVX-512 run on at::vec::Vectorized; DEFAULT on GenericVec (below), a GCC vector of the same width.
//
// Arithmetic is in the op's accumulation type (float for half, bfloat16 and float; double for double): a vector of
// 16-bit values is widened into two float vectors, so every kernel steps over 2 x Vectorized<acc_t>::size()
// elements of the stored dtype at a time.
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <c10/util/complex.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <vector>

#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)
#include <immintrin.h>
#endif

#include "cpu/vec_kernels.h"

namespace bfr_fast::cpu {
namespace {

#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)
constexpr bool kIntrinsics = true;
template <typename T>
using Vec = at::vec::Vectorized<T>;
#else
constexpr bool kIntrinsics = false;

// ATen's generic Vectorized (what a DEFAULT build of at::vec gets) keeps its lanes in an array that GCC computes lane
// by lane through the stack, several times slower than plain scalar loops. This is the same 32 bytes as a GCC vector,
// which baseline x86-64 computes as pairs of SSE2 instructions; it has the members the kernels below use.
template <typename T>
struct GenericVec {
  using value_type = T;
  typedef T Raw __attribute__((vector_size(32)));
  using Bits = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
  typedef Bits RawBits __attribute__((vector_size(32)));
  Raw raw;

  GenericVec() = default;
  explicit GenericVec(T value) : raw(Raw{} + value) {}
  static constexpr int size() { return static_cast<int>(sizeof(Raw) / sizeof(T)); }
  static GenericVec of(Raw raw) {
    GenericVec v;
    v.raw = raw;
    return v;
  }
  static GenericVec loadu(const void* p) {
    GenericVec v;
    std::memcpy(&v.raw, p, sizeof(Raw));
    return v;
  }
  static GenericVec loadu(const void* p, int64_t count) {
    GenericVec v(T(0));
    std::memcpy(&v.raw, p, count * sizeof(T));
    return v;
  }
  void store(void* p) const { std::memcpy(p, &raw, sizeof(Raw)); }
  void store(void* p, int64_t count) const { std::memcpy(p, &raw, count * sizeof(T)); }
  // Clears the sign bit: -0 gives +0 and NaN stays NaN, as std::abs.
  GenericVec abs() const {
    const RawBits magnitude = std::bit_cast<RawBits>(raw) & ~(Bits(1) << (8 * sizeof(T) - 1));
    return of(std::bit_cast<Raw>(magnitude));
  }
  friend GenericVec operator+(const GenericVec& a, const GenericVec& b) { return of(a.raw + b.raw); }
  friend GenericVec operator-(const GenericVec& a, const GenericVec& b) { return of(a.raw - b.raw); }
  friend GenericVec operator*(const GenericVec& a, const GenericVec& b) { return of(a.raw * b.raw); }
};

template <typename T>
using Vec = GenericVec<T>;
#endif

template <typename V>
C10_ALWAYS_INLINE V splat(double value) {
  return V(static_cast<typename V::value_type>(value));
}

// a * b + c: one rounding where the ISA has FMA, two on baseline x86-64.
template <typename V>
C10_ALWAYS_INLINE V fused_multiply_add(const V& a, const V& b, const V& c) {
  if constexpr (kIntrinsics) {
    return at::vec::fmadd(a, b, c);
  } else {
    return a * b + c;
  }
}

// Loads and stores of 2 x Vectorized<acc_t>::size() elements of T as two acc_t vectors; the counted forms take the
// n < kStep elements of a tail (the rest of the vectors is zero on load, untouched on store).
template <typename T, typename Enable = void>
struct Io {
  using Acc = Vec<T>;
  static constexpr int64_t kHalf = Acc::size();
  static constexpr int64_t kStep = 2 * kHalf;

  static C10_ALWAYS_INLINE void load(const T* p, Acc& a, Acc& b) {
    a = Acc::loadu(p);
    b = Acc::loadu(p + kHalf);
  }
  static C10_ALWAYS_INLINE void load(const T* p, int64_t n, Acc& a, Acc& b) {
    a = Acc::loadu(p, std::min(n, kHalf));
    b = n > kHalf ? Acc::loadu(p + kHalf, n - kHalf) : splat<Acc>(0);
  }
  static C10_ALWAYS_INLINE void store(T* p, const Acc& a, const Acc& b) {
    a.store(p);
    b.store(p + kHalf);
  }
  static C10_ALWAYS_INLINE void store(T* p, int64_t n, const Acc& a, const Acc& b) {
    a.store(p, std::min(n, kHalf));
    if (n > kHalf) b.store(p + kHalf, n - kHalf);
  }
};

template <typename T>
struct Io<T, std::enable_if_t<at::vec::is_reduced_floating_point_v<T>>> {
  using Acc = Vec<float>;
  static constexpr int64_t kHalf = Acc::size();
  static constexpr int64_t kStep = 2 * kHalf;

#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)
  using Stored = at::vec::Vectorized<T>;
  static_assert(Stored::size() == kStep);

  static C10_ALWAYS_INLINE void load(const T* p, Acc& a, Acc& b) {
    std::tie(a, b) = at::vec::convert_to_float<T>(Stored::loadu(p));
  }
  static C10_ALWAYS_INLINE void load(const T* p, int64_t n, Acc& a, Acc& b) {
    std::tie(a, b) = at::vec::convert_to_float<T>(Stored::loadu(p, n));
  }
  static C10_ALWAYS_INLINE void store(T* p, const Acc& a, const Acc& b) {
    at::vec::convert_from_float<T>(a, b).store(p);
  }
  static C10_ALWAYS_INLINE void store(T* p, int64_t n, const Acc& a, const Acc& b) {
    at::vec::convert_from_float<T>(a, b).store(p, n);
  }
#else
  // Widened and rounded one value at a time (c10's conversions), through a float buffer.
  static C10_ALWAYS_INLINE void load(const T* p, Acc& a, Acc& b) { load(p, kStep, a, b); }
  static C10_ALWAYS_INLINE void load(const T* p, int64_t n, Acc& a, Acc& b) {
    float lanes[kStep] = {};
    for (int64_t i = 0; i < n; ++i) lanes[i] = static_cast<float>(p[i]);
    a = Acc::loadu(lanes);
    b = Acc::loadu(lanes + kHalf);
  }
  static C10_ALWAYS_INLINE void store(T* p, const Acc& a, const Acc& b) { store(p, kStep, a, b); }
  static C10_ALWAYS_INLINE void store(T* p, int64_t n, const Acc& a, const Acc& b) {
    float lanes[kStep];
    a.store(lanes);
    b.store(lanes + kHalf);
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<T>(lanes[i]);
  }
#endif
};

// Loads a (possibly partial, zero-filled) step of T as two accumulation vectors.
template <typename T>
C10_ALWAYS_INLINE void load_step(const T* p, int64_t n, typename Io<T>::Acc& a, typename Io<T>::Acc& b) {
  if (n == Io<T>::kStep) {
    Io<T>::load(p, a, b);
  } else {
    Io<T>::load(p, n, a, b);
  }
}

// Stores a (possibly partial) step of T from two accumulation vectors.
template <typename T>
C10_ALWAYS_INLINE void store_step(T* p, int64_t n, const typename Io<T>::Acc& a, const typename Io<T>::Acc& b) {
  if (n == Io<T>::kStep) {
    Io<T>::store(p, a, b);
  } else {
    Io<T>::store(p, n, a, b);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// lincomb

// Elements per parallel work item: big enough that thread start-up is negligible beside the memory traffic, and
// small states (a solver's) run on the calling thread.
constexpr int64_t kLincombGrain = 1 << 15;
// Elements whose per-element coefficients are expanded at once when samples are short (see lincomb_kernel), and
// the length of a coefficient buffer: padded by at least a step, so that full-width loads stay inside it.
constexpr int64_t kCoefficientBlock = 256;
constexpr int64_t kCoefficientRow = kCoefficientBlock + 64;
// Outputs of at least this many bytes are written with non-temporal stores where the ISA has them: they bypass
// the caches, so the output's cache lines are not first read from memory (a third of a copy's traffic), and they do
// not evict the inputs. Smaller outputs are left in the cache for whoever reads them next.
constexpr int64_t kStreamingBytes = 8 << 20;

// Stores two acc vectors as T, non-temporally; p must be aligned to the stored vector's size.
template <typename T>
C10_ALWAYS_INLINE void stream_store(T* p, const typename Io<T>::Acc& a, const typename Io<T>::Acc& b) {
#if defined(CPU_CAPABILITY_AVX512)
  if constexpr (std::is_same_v<T, float>) {
    _mm512_stream_ps(p, a);
    _mm512_stream_ps(p + Io<T>::kHalf, b);
  } else if constexpr (std::is_same_v<T, double>) {
    _mm512_stream_pd(p, a);
    _mm512_stream_pd(p + Io<T>::kHalf, b);
  } else {
    _mm512_stream_si512(reinterpret_cast<__m512i*>(p), at::vec::convert_from_float<T>(a, b));
  }
#elif defined(CPU_CAPABILITY_AVX2)
  if constexpr (std::is_same_v<T, float>) {
    _mm256_stream_ps(p, a);
    _mm256_stream_ps(p + Io<T>::kHalf, b);
  } else if constexpr (std::is_same_v<T, double>) {
    _mm256_stream_pd(p, a);
    _mm256_stream_pd(p + Io<T>::kHalf, b);
  } else {
    _mm256_stream_si256(reinterpret_cast<__m256i*>(p), at::vec::convert_from_float<T>(a, b));
  }
#else
  Io<T>::store(p, a, b);
#endif
}

// x + sum_i c_i k_i at positions j..j+n into a (the first half, coefficients ca) and b (coefficients cb); kFull: n
// is a whole step.
template <typename T, int K, bool kFull>
C10_ALWAYS_INLINE void combine_step(const T* x, const T* const* ks, const typename Io<T>::Acc* ca,
                                    const typename Io<T>::Acc* cb, int64_t j, int64_t n, typename Io<T>::Acc& a,
                                    typename Io<T>::Acc& b) {
  using Acc = typename Io<T>::Acc;
  auto load = [&](const T* p, Acc& lo, Acc& hi) {
    if constexpr (kFull) {
      Io<T>::load(p, lo, hi);
    } else {
      Io<T>::load(p, n, lo, hi);
    }
  };
  load(x + j, a, b);
  for (int i = 0; i < K; ++i) {
    Acc ka, kb;
    load(ks[i] + j, ka, kb);
    a = fused_multiply_add(ca[i], ka, a);
    b = fused_multiply_add(cb[i], kb, b);
  }
}

// out[j] = x[j] + sum_i c_i k_i[j] over [begin, end) with coefficients fixed over the range. out[j] depends only on
// element j of the inputs, and each step loads its inputs before it stores the same positions, so out may be x or
// a k. With `stream`, the range from its first suitably aligned output position on is written with non-temporal
// stores.
template <typename T, int K>
void combine_range(const T* x, const T* const* ks, const typename Io<T>::Acc* c, T* out, int64_t begin, int64_t end,
                   bool stream) {
  using Acc = typename Io<T>::Acc;
  constexpr int64_t kStep = Io<T>::kStep;
  int64_t j = begin;
  Acc a, b;
  if (stream) {
    // Each half of a step is one stored vector; non-temporal stores need it aligned to its size (64 at most).
    constexpr int64_t kAlign = std::min<int64_t>(64, kStep * static_cast<int64_t>(sizeof(T)));
    const int64_t misaligned = static_cast<int64_t>(reinterpret_cast<uintptr_t>(out + j) % kAlign);
    const int64_t head = std::min<int64_t>(end - j, (kAlign - misaligned) % kAlign / static_cast<int64_t>(sizeof(T)));
    if (head > 0) {
      combine_step<T, K, false>(x, ks, c, c, j, head, a, b);
      Io<T>::store(out + j, head, a, b);
      j += head;
    }
    for (; j + kStep <= end; j += kStep) {
      combine_step<T, K, true>(x, ks, c, c, j, kStep, a, b);
      stream_store<T>(out + j, a, b);
    }
  }
  for (; j + kStep <= end; j += kStep) {
    combine_step<T, K, true>(x, ks, c, c, j, kStep, a, b);
    Io<T>::store(out + j, a, b);
  }
  if (j < end) {
    combine_step<T, K, false>(x, ks, c, c, j, end - j, a, b);
    Io<T>::store(out + j, end - j, a, b);
  }
}

// The same with one coefficient per element: c[i][j - begin], for begin..end within one block.
template <typename T, int K>
void combine_block(const T* x, const T* const* ks, const at::opmath_type<T> (*c)[kCoefficientRow], T* out,
                   int64_t begin, int64_t end) {
  using Acc = typename Io<T>::Acc;
  constexpr int64_t kStep = Io<T>::kStep, kHalf = Acc::size();
  for (int64_t j = begin; j < end; j += kStep) {
    const int64_t n = std::min(kStep, end - j), e = j - begin;
    Acc a, b;
    load_step(x + j, n, a, b);
    for (int i = 0; i < K; ++i) {
      Acc ka, kb;
      load_step(ks[i] + j, n, ka, kb);
      a = fused_multiply_add(Acc::loadu(c[i] + e), ka, a);
      b = fused_multiply_add(Acc::loadu(c[i] + e + kHalf), kb, b);
    }
    store_step(out + j, n, a, b);
  }
}

// out[j] = x[j] + sum_i c_i(j / row) k_i[j] over [begin, end), as runs of one sample each with per-sample
// coefficients, or as one run with scalar ones; see combine_range for `stream`.
template <typename T, int K>
void combine_samples(const T* x, const T* const* ks, const LincombCoefficients& coef, bool per_sample, T* out,
                     int64_t row, int64_t begin, int64_t end, bool stream) {
  using Acc = typename Io<T>::Acc;
  for (int64_t j = begin; j < end;) {
    const int64_t b = j / row;
    const int64_t run_end = per_sample ? std::min(end, (b + 1) * row) : end;
    Acc c[K];
    for (int i = 0; i < K; ++i) c[i] = Acc(static_cast<at::opmath_type<T>>(coef.at(i, b)));
    combine_range<T, K>(x, ks, c, out, j, run_end, stream);
    j = run_end;
  }
}

#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)
// The same with per-sample coefficients and non-temporal stores, for samples of at least a step. Runs of one sample
// would start and end mid-line, and a line written partly by ordinary stores costs the read that streaming saves;
// so from the first aligned output position on, every step is stored whole, and a step that straddles two samples
// takes each lane's coefficients from its own sample (a blend at the boundary).
template <typename T, int K>
void combine_samples_streaming(const T* x, const T* const* ks, const LincombCoefficients& coef, T* out, int64_t row,
                               int64_t begin, int64_t end) {
  using acc_t = at::opmath_type<T>;
  using Acc = typename Io<T>::Acc;
  constexpr int64_t kStep = Io<T>::kStep, kHalf = Acc::size();
  constexpr int64_t kAlign = std::min<int64_t>(64, kStep * static_cast<int64_t>(sizeof(T)));
  const int64_t misaligned = static_cast<int64_t>(reinterpret_cast<uintptr_t>(out + begin) % kAlign);
  int64_t j = std::min<int64_t>(end, begin + (kAlign - misaligned) % kAlign / static_cast<int64_t>(sizeof(T)));
  combine_samples<T, K>(x, ks, coef, true, out, row, begin, j, false);
  if (j + kStep > end) return combine_samples<T, K>(x, ks, coef, true, out, row, j, end, false);
  int64_t b = j / row, boundary = (b + 1) * row;
  Acc c[K], mixed_a[K], mixed_b[K];
  for (int i = 0; i < K; ++i) c[i] = Acc(static_cast<acc_t>(coef.at(i, b)));
  const Acc lane = Acc::arange(0, 1), lane_b = lane + Acc(static_cast<acc_t>(kHalf));
  Acc a, s;
  while (true) {
    const int64_t stop = std::min(end, boundary);
    for (; j + kStep <= stop; j += kStep) {  // the whole steps inside sample b
      combine_step<T, K, true>(x, ks, c, c, j, kStep, a, s);
      stream_store<T>(out + j, a, s);
    }
    if (j + kStep > end) break;
    // The step that meets the next boundary (row >= kStep: only one): lanes before it (none where the step starts
    // there) are sample b's, the rest b + 1's.
    const Acc split(static_cast<acc_t>(boundary - j));
    const Acc in_a = lane < split, in_b = lane_b < split;
    for (int i = 0; i < K; ++i) {
      const Acc next(static_cast<acc_t>(coef.at(i, b + 1)));
      mixed_a[i] = Acc::blendv(next, c[i], in_a);
      mixed_b[i] = Acc::blendv(next, c[i], in_b);
      c[i] = next;
    }
    combine_step<T, K, true>(x, ks, mixed_a, mixed_b, j, kStep, a, s);
    stream_store<T>(out + j, a, s);
    j += kStep;
    ++b;
    boundary += row;
  }
  combine_samples<T, K>(x, ks, coef, true, out, row, j, end, false);
}
#endif

template <typename T, int K>
void lincomb_kernel(const LincombArgs& args) {
  using acc_t = at::opmath_type<T>;
  using Acc = typename Io<T>::Acc;
  const LincombCoefficients& coef = args.coef;
  const T* x = static_cast<const T*>(args.x);
  const T* ks[K];
  for (int i = 0; i < K; ++i) ks[i] = static_cast<const T*>(args.ks[i]);
  T* out = static_cast<T*>(args.out);
  const int64_t row = args.row, total = args.batch * row;
  bool per_sample = false;
  for (int i = 0; i < K; ++i) per_sample = per_sample || coef.vector[i] != nullptr;
  const bool stream = kIntrinsics && total * static_cast<int64_t>(sizeof(T)) >= kStreamingBytes;

  at::parallel_for(0, total, kLincombGrain, [&](int64_t begin, int64_t end) {
    if (!per_sample || row >= Io<T>::kStep) {
      // The work is organised by elements, so many short samples cost no more than one long one. A run's partial
      // last step is a masked load and store on AVX2 and AVX-512.
#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)
      if (stream && per_sample) {
        combine_samples_streaming<T, K>(x, ks, coef, out, row, begin, end);
      } else {
        combine_samples<T, K>(x, ks, coef, per_sample, out, row, begin, end, stream);
      }
      // Non-temporal stores are weakly ordered: each thread makes its own visible before the op returns.
      if (stream) _mm_sfence();
#else
      combine_samples<T, K>(x, ks, coef, per_sample, out, row, begin, end, stream);
#endif
      return;
    }
    // Samples shorter than a step with per-sample coefficients: expand the coefficients per element, a block at a
    // time, so that every step is full.
    alignas(64) acc_t c[K][kCoefficientRow];
    for (int64_t block = begin; block < end; block += kCoefficientBlock) {
      const int64_t block_end = std::min(end, block + kCoefficientBlock);
      for (int64_t j = block; j < block_end;) {
        const int64_t b = j / row, run_end = std::min(block_end, (b + 1) * row);
        for (int i = 0; i < K; ++i) std::fill(c[i] + (j - block), c[i] + (run_end - block), coef.at(i, b));
        j = run_end;
      }
      combine_block<T, K>(x, ks, c, out, block, block_end);
    }
  });
}

template <typename T>
void lincomb_terms(const LincombArgs& args) {
  switch (args.coef.terms) {
    case 1: return lincomb_kernel<T, 1>(args);
    case 2: return lincomb_kernel<T, 2>(args);
    case 3: return lincomb_kernel<T, 3>(args);
    case 4: return lincomb_kernel<T, 4>(args);
    case 5: return lincomb_kernel<T, 5>(args);
    case 6: return lincomb_kernel<T, 6>(args);
    case 7: return lincomb_kernel<T, 7>(args);
    default: return lincomb_kernel<T, 8>(args);
  }
}

// Calls fn.template operator()<T>() for the stored floating dtype.
template <typename Fn>
void dispatch_floating(c10::ScalarType dtype, Fn&& fn) {
  switch (dtype) {
    case c10::ScalarType::Float: return fn.template operator()<float>();
    case c10::ScalarType::Double: return fn.template operator()<double>();
    case c10::ScalarType::Half: return fn.template operator()<c10::Half>();
    default: return fn.template operator()<c10::BFloat16>();
  }
}

void lincomb(const LincombArgs& args) {
  if (args.batch * args.row == 0) return;
  dispatch_floating(args.dtype, [&]<typename T>() { lincomb_terms<T>(args); });
}

// ---------------------------------------------------------------------------------------------------------------
// fc_weighted_mse

// Positions of one sample per work item; the per-sample sums are combined from the items' in a fixed order, so
// they do not depend on the thread count.
constexpr int64_t kFcChunk = 1024;
// Positions summed in the accumulation type's vector lanes before the sums move to float64.
constexpr int64_t kFcBlock = 256;
// Elements of work a thread should get before at::parallel_for splits further: keeps thread start-up cost small.
constexpr int64_t kGrainElements = 32768;

int64_t grain_for(int64_t elements_per_item) { return std::max<int64_t>(1, kGrainElements / elements_per_item); }

// s_p = sum_c |source_{c,p}| for the n <= kStep positions at p (channel stride P).
template <typename T>
C10_ALWAYS_INLINE void source_magnitude(const T* p, int64_t channels, int64_t P, int64_t n, typename Io<T>::Acc& a,
                                        typename Io<T>::Acc& b) {
  using Acc = typename Io<T>::Acc;
  a = splat<Acc>(0);
  b = splat<Acc>(0);
  for (int64_t c = 0; c < channels; ++c) {
    Acc va, vb;
    load_step(p + c * P, n, va, vb);
    a = a + va.abs();
    b = b + vb.abs();
  }
}

// Adds the lanes of v to the float64 lane sums.
template <typename V>
C10_ALWAYS_INLINE void flush(const V& v, double* lanes) {
  alignas(64) typename V::value_type values[V::size()];
  v.store(values);
  for (int l = 0; l < V::size(); ++l) lanes[l] += static_cast<double>(values[l]);
}

template <typename T>
void fc_forward_kernel(const FcArgs& s, void* loss_out, void* mean_out) {
  using acc_t = at::opmath_type<T>;
  using Acc = typename Io<T>::Acc;
  constexpr int64_t kStep = Io<T>::kStep;
  constexpr int kLanes = Acc::size();
  const T* pred = static_cast<const T*>(s.pred);
  const T* target = static_cast<const T*>(s.target);
  const T* source = static_cast<const T*>(s.source);
  const int64_t chunks = (s.P + kFcChunk - 1) / kFcChunk;
  std::vector<double> partial(3 * s.B * chunks);  // (S, E, SE) per item
  const int64_t grain = grain_for(kFcChunk * (2 * s.C + s.Cs));
  at::parallel_for(0, s.B * chunks, grain, [&](int64_t first, int64_t last) {
    for (int64_t item = first; item < last; ++item) {
      const int64_t b = item / chunks, p0 = (item % chunks) * kFcChunk;
      const int64_t n = std::min(kFcChunk, s.P - p0);
      const T* src = source + b * s.Cs * s.P + p0;
      const T* pr = pred + b * s.C * s.P + p0;
      const T* tg = target + b * s.C * s.P + p0;
      double S[kLanes] = {}, E[kLanes] = {}, SE[kLanes] = {};
      for (int64_t block = 0; block < n; block += kFcBlock) {
        Acc sum_s = splat<Acc>(0), sum_e = sum_s, sum_se = sum_s;
        for (int64_t j = block; j < std::min(n, block + kFcBlock); j += kStep) {
          const int64_t m = std::min(kStep, n - j);
          Acc mag_a, mag_b;
          source_magnitude(src + j, s.Cs, s.P, m, mag_a, mag_b);
          Acc err_a = splat<Acc>(0), err_b = err_a;
          for (int64_t c = 0; c < s.C; ++c) {
            Acc pa, pb, ta, tb;
            load_step(pr + c * s.P + j, m, pa, pb);
            load_step(tg + c * s.P + j, m, ta, tb);
            const Acc da = pa - ta, db = pb - tb;
            err_a = fused_multiply_add(da, da, err_a);
            err_b = fused_multiply_add(db, db, err_b);
          }
          sum_s = sum_s + mag_a + mag_b;
          sum_e = sum_e + err_a + err_b;
          sum_se = fused_multiply_add(mag_a, err_a, fused_multiply_add(mag_b, err_b, sum_se));
        }
        flush(sum_s, S);
        flush(sum_e, E);
        flush(sum_se, SE);
      }
      double totals[3] = {};
      for (int l = 0; l < kLanes; ++l) {
        totals[0] += S[l];
        totals[1] += E[l];
        totals[2] += SE[l];
      }
      std::copy(totals, totals + 3, partial.begin() + 3 * item);
    }
  });
  acc_t* loss = static_cast<acc_t*>(loss_out);
  acc_t* source_mean = static_cast<acc_t*>(mean_out);
  for (int64_t b = 0; b < s.B; ++b) {
    double S = 0, E = 0, SE = 0;
    for (int64_t k = b * chunks; k < (b + 1) * chunks; ++k) {
      S += partial[3 * k];
      E += partial[3 * k + 1];
      SE += partial[3 * k + 2];
    }
    const double mean = S / static_cast<double>(s.P);
    source_mean[b] = static_cast<acc_t>(mean);
    loss[b] = static_cast<acc_t>((E + s.gamma * SE / (mean + s.eps)) / static_cast<double>(s.C * s.P));
  }
}

// grad_pred = grad_b * 2 (pred - target) * w_p / (C P), w_p = 1 + gamma s_p / (source_mean_b + eps).
template <typename T>
void fc_backward_kernel(const FcArgs& s, const void* grad_in, const void* mean_in, void* out_ptr) {
  using acc_t = at::opmath_type<T>;
  using Acc = typename Io<T>::Acc;
  constexpr int64_t kStep = Io<T>::kStep;
  constexpr int kLanes = Acc::size();
  const acc_t* grad = static_cast<const acc_t*>(grad_in);
  const acc_t* source_mean = static_cast<const acc_t*>(mean_in);
  const T* pred = static_cast<const T*>(s.pred);
  const T* target = static_cast<const T*>(s.target);
  const T* source = static_cast<const T*>(s.source);
  T* out = static_cast<T*>(out_ptr);
  const int64_t chunks = (s.P + kFcChunk - 1) / kFcChunk;
  const int64_t grain = grain_for(kFcChunk * (3 * s.C + s.Cs));
  at::parallel_for(0, s.B * chunks, grain, [&](int64_t first, int64_t last) {
    // Padded to whole steps, so that the last step's full-width loads stay inside.
    alignas(64) acc_t w[kFcChunk + kStep];
    for (int64_t item = first; item < last; ++item) {
      const int64_t b = item / chunks, p0 = (item % chunks) * kFcChunk;
      const int64_t n = std::min(kFcChunk, s.P - p0);
      const Acc scale = splat<Acc>(2.0 * static_cast<double>(grad[b]) / static_cast<double>(s.C * s.P));
      const Acc g = splat<Acc>(s.gamma / (static_cast<double>(source_mean[b]) + s.eps));
      const Acc one = splat<Acc>(1);
      const T* src = source + b * s.Cs * s.P + p0;
      for (int64_t j = 0; j < n; j += kStep) {
        Acc mag_a, mag_b;
        source_magnitude(src + j, s.Cs, s.P, std::min(kStep, n - j), mag_a, mag_b);
        (scale * fused_multiply_add(g, mag_a, one)).store(w + j);
        (scale * fused_multiply_add(g, mag_b, one)).store(w + j + kLanes);
      }
      for (int64_t c = 0; c < s.C; ++c) {
        const int64_t offset = (b * s.C + c) * s.P + p0;
        for (int64_t j = 0; j < n; j += kStep) {
          const int64_t m = std::min(kStep, n - j);
          Acc pa, pb, ta, tb;
          load_step(pred + offset + j, m, pa, pb);
          load_step(target + offset + j, m, ta, tb);
          const Acc ra = Acc::loadu(w + j) * (pa - ta), rb = Acc::loadu(w + j + kLanes) * (pb - tb);
          store_step(out + offset + j, m, ra, rb);
        }
      }
    }
  });
}

void fc_forward(const FcArgs& s, void* loss, void* source_mean) {
  dispatch_floating(s.dtype, [&]<typename T>() { fc_forward_kernel<T>(s, loss, source_mean); });
}

void fc_backward(const FcArgs& s, const void* grad, const void* source_mean, void* out) {
  dispatch_floating(s.dtype, [&]<typename T>() { fc_backward_kernel<T>(s, grad, source_mean, out); });
}

// ---------------------------------------------------------------------------------------------------------------
// band_energy

// Reals of a plane summed in vector lanes before the sums move to float64.
constexpr int64_t kEnergyBlock = 256;

template <typename R>
void band_energy_kernel(const BandEnergyArgs& a) {
  using V = Vec<R>;
  constexpr int64_t kLanes = V::size();
  const R* spectrum = static_cast<const R*>(a.spectrum);
  const R* w_low = static_cast<const R*>(a.w_low);
  const R* w_high = static_cast<const R*>(a.w_high);
  const int64_t L = a.plane_values;
  at::parallel_for(0, a.planes, grain_for(L), [&](int64_t first, int64_t last) {
    for (int64_t plane = first; plane < last; ++plane) {
      const R* v = spectrum + plane * L;
      double low[kLanes] = {}, high[kLanes] = {};
      for (int64_t block = 0; block < L; block += kEnergyBlock) {
        V sum_low = splat<V>(0), sum_high = sum_low;
        for (int64_t j = block; j < std::min(L, block + kEnergyBlock); j += kLanes) {
          const int64_t n = std::min(kLanes, L - j);
          const V x = n == kLanes ? V::loadu(v + j) : V::loadu(v + j, n);
          const V square = x * x;
          sum_low = fused_multiply_add(n == kLanes ? V::loadu(w_low + j) : V::loadu(w_low + j, n), square, sum_low);
          sum_high = fused_multiply_add(n == kLanes ? V::loadu(w_high + j) : V::loadu(w_high + j, n), square, sum_high);
        }
        flush(sum_low, low);
        flush(sum_high, high);
      }
      double total_low = 0, total_high = 0;
      for (int l = 0; l < kLanes; ++l) {
        total_low += low[l];
        total_high += high[l];
      }
      a.energy[2 * plane] = total_low;
      a.energy[2 * plane + 1] = total_high;
    }
  });
}

void band_energy(const BandEnergyArgs& a) {
  if (a.dtype == c10::ScalarType::ComplexDouble) {
    band_energy_kernel<double>(a);
  } else {
    band_energy_kernel<float>(a);
  }
}

}  // namespace

namespace CPU_CAPABILITY {
// extern: a namespace-scope const would otherwise have internal linkage (the header declares only the tables of the
// instruction sets that _C is built with, not this copy's own).
extern const Kernels kernels = {&lincomb, &fc_forward, &fc_backward, &band_energy};
}  // namespace CPU_CAPABILITY

}  // namespace bfr_fast::cpu
