// alm::int8_linear: x [M, K] float32 times an int8 weight [N, K] with one float scale per output row, for the few
// rows of a decode step (alm.model.quant). ATen's _weight_int8pack_mm is a scalar loop on AVX2-only CPUs, and
// dequantising the weight per call reads and writes five bytes per weight; here each int8 weight is read once
// per pair of x rows, widened to float in registers, and multiplied in: a quarter of fp32's memory traffic.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <cstring>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "vec8.h"

namespace {

using namespace alm_vec;
typedef int8_t v8b __attribute__((vector_size(8)));
constexpr int64_t kRows = 4;  // weight rows per block: 4 (or 8) accumulators, the widened weights in registers

// Eight int8 as floats. GCC scalarises the generic conversion (a movsbl per lane), so AVX2 gets its two
// instructions by name.
inline v8 widen8(const int8_t* p) {
#if defined(__AVX2__)
  return (v8)_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
#else
  v8b b;
  std::memcpy(&b, p, sizeof b);
  return __builtin_convertvector(__builtin_convertvector(b, v8i), v8);
#endif
}

// One x row times `R` weight rows (k a multiple of 8 up to K8, the rest scalar): two chains per weight row.
template <int R>
void one_row(const float* x, const int8_t* w, int64_t K, int64_t K8, float* out) {
  v8 even[R] = {}, odd[R] = {};
  int64_t k = 0;
  for (; k + 16 <= K8; k += 16) {
    const v8 x0 = load8(x + k), x1 = load8(x + k + 8);
    for (int j = 0; j < R; ++j) {
      even[j] += x0 * widen8(w + j * K + k);
      odd[j] += x1 * widen8(w + j * K + k + 8);
    }
  }
  if (k < K8) {
    const v8 x0 = load8(x + k);
    for (int j = 0; j < R; ++j) even[j] += x0 * widen8(w + j * K + k);
  }
  for (int j = 0; j < R; ++j) {
    float s = sum8(even[j] + odd[j]);
    for (int64_t t = K8; t < K; ++t) s += x[t] * static_cast<float>(w[j * K + t]);
    out[j] = s;
  }
}

// Two x rows (ldx apart) times `R` weight rows: each widened weight serves both.
template <int R>
void two_rows(const float* x, int64_t ldx, const int8_t* w, int64_t K, int64_t K8, float* out, int64_t ldo) {
  v8 a[R] = {}, b[R] = {};
  for (int64_t k = 0; k < K8; k += 8) {
    const v8 x0 = load8(x + k), x1 = load8(x + ldx + k);
    for (int j = 0; j < R; ++j) {
      const v8 wv = widen8(w + j * K + k);
      a[j] += x0 * wv;
      b[j] += x1 * wv;
    }
  }
  for (int j = 0; j < R; ++j) {
    float s0 = sum8(a[j]), s1 = sum8(b[j]);
    for (int64_t t = K8; t < K; ++t) {
      const float wt = static_cast<float>(w[j * K + t]);
      s0 += x[t] * wt;
      s1 += x[ldx + t] * wt;
    }
    out[j] = s0;
    out[ldo + j] = s1;
  }
}

// Output columns [n, n + R) for every row of x.
template <int R>
void columns(const float* x, const int8_t* w, const float* scale, int64_t M, int64_t K, int64_t N, int64_t n,
             float* out) {
  const int64_t K8 = K - K % 8;
  const int8_t* wb = w + n * K;
  int64_t m = 0;
  for (; m + 2 <= M; m += 2) two_rows<R>(x + m * K, K, wb, K, K8, out + m * N + n, N);
  if (m < M) one_row<R>(x + m * K, wb, K, K8, out + m * N + n);
  for (int64_t i = 0; i < M; ++i)
    for (int j = 0; j < R; ++j) out[i * N + n + j] *= scale[n + j];
}

// x [M, K] float32, w [N, K] int8, scale [N] float32 -> x @ (w * scale[:, None]).T, [M, N].
at::Tensor int8_linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& scale) {
  TORCH_CHECK(x.dim() == 2 && w.dim() == 2 && scale.dim() == 1, "int8_linear: x [M, K], w [N, K], scale [N]");
  TORCH_CHECK(x.scalar_type() == at::kFloat && w.scalar_type() == at::kChar && scale.scalar_type() == at::kFloat,
              "int8_linear: float32 x and scale, int8 w");
  const int64_t M = x.size(0), K = x.size(1), N = w.size(0);
  TORCH_CHECK(w.size(1) == K && scale.size(0) == N, "int8_linear: shapes do not match");
  const at::Tensor xc = x.contiguous(), wc = w.contiguous(), sc = scale.contiguous();
  auto out = at::empty({M, N}, x.options());
  const float* xp = xc.data_ptr<float>();
  const int8_t* wp = wc.data_ptr<int8_t>();
  const float* sp = sc.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const int64_t blocks = N / kRows;
  at::parallel_for(0, blocks, 16, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) columns<kRows>(xp, wp, sp, M, K, N, b * kRows, op);
  });
  for (int64_t n = blocks * kRows; n < N; ++n) columns<1>(xp, wp, sp, M, K, N, n, op);
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(alm, m) {
  m.def("int8_linear(Tensor x, Tensor w, Tensor scale) -> Tensor");
}

TORCH_LIBRARY_IMPL(alm, CPU, m) {
  m.impl("int8_linear", &int8_linear);
}
