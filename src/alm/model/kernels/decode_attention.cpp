// alm::decode_attention: one query per row (a decode step) over that row's cached keys, in one pass per head.
//
// Inductor's code for the same step reads each head's values eight times (one 8-float column block per pass, one
// accumulator chain) and keeps a horizontal reduction per key; here keys and values are each read once, from the
// first row to the last visible one, with software prefetch ahead of the stream, so a batched step's attention
// runs near the memory bandwidth. Same result as alm.model.attention.single_query_attention (boolean masks).
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "vec8.h"

namespace {

using namespace alm_vec;
constexpr int64_t kMaxHeadDim = 256;
constexpr int64_t kPrefetchRows = 16;  // ~16 rows of 64 floats ahead: the memory latency at full bandwidth

inline void prefetch_row(const float* row, int64_t hd) {
  for (int64_t c = 0; c < hd; c += 16) __builtin_prefetch(row + c);  // 16 floats: one 64-byte line
}

inline v8i bits(v8 v) {
  v8i i;
  std::memcpy(&i, &v, sizeof i);
  return i;
}

inline v8 floats(v8i i) {
  v8 v;
  std::memcpy(&v, &i, sizeof v);
  return v;
}

// Lanes where `mask` is all ones (a vector comparison's true) from a, the others from b.
inline v8 select(v8i mask, v8 a, v8 b) {
  return floats((mask & bits(a)) | (~mask & bits(b)));
}

// exp of eight floats (Cephes' expf: a degree-6 polynomial on [-ln2/2, ln2/2], scaled by 2^n; ~1 ulp).
inline v8 exp8(v8 x) {
  const v8 lo = v8{} - 87.3365f, hi = v8{} + 88.7228f;
  const v8 z = select(x > hi, hi, select(x < lo, lo, x));
  const v8 t = z * 1.44269504f + 0.5f;
  v8i n = __builtin_convertvector(t, v8i);
  n += __builtin_convertvector(n, v8) > t;  // truncated toward zero: one less (true = -1) gives the floor
  const v8 fn = __builtin_convertvector(n, v8);
  const v8 r = z - fn * 0.693359375f + fn * 2.12194440e-4f;
  v8 y = 1.9875691500e-4f * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * r * r + r + 1.f;
  const v8 scaled = floats(bits(y) + (n << 23));  // y * 2^n through the exponent bits
  const v8 shown = select(x > v8{} - INFINITY, scaled, v8{});  // a masked key's -inf gives 0
  return select(x == x, shown, x);                             // NaN stays NaN, as in torch's softmax
}

// q [hd] over n keys/values (rows `stride` floats apart); visible(l) says whether key l is attended to.
template <typename Visible>
void attend(const float* q, const float* keys, const float* values, int64_t n, int64_t hd, int64_t stride,
            float scale, Visible visible, float* scores, float* out) {
  const int64_t nv = hd / 8;
  for (int64_t l = 0; l < std::min(n, kPrefetchRows); ++l) {  // the streams' first rows, before they are read
    prefetch_row(keys + l * stride, hd);
    prefetch_row(values + l * stride, hd);
  }
  v8 qv[kMaxHeadDim / 8];
  for (int64_t j = 0; j < nv; ++j) qv[j] = load8(q + 8 * j) * scale;
  float best = -INFINITY;
  for (int64_t l = 0; l < n; ++l) {
    const float* key = keys + l * stride;
    prefetch_row(key + kPrefetchRows * stride, hd);
    if (!visible(l)) {
      scores[l] = -INFINITY;
      continue;
    }
    v8 even = {}, odd = {};  // two chains: half the FMA latency on the critical path
    int64_t j = 0;
    for (; j + 2 <= nv; j += 2) {
      even += qv[j] * load8(key + 8 * j);
      odd += qv[j + 1] * load8(key + 8 * j + 8);
    }
    if (j < nv) even += qv[j] * load8(key + 8 * j);
    scores[l] = sum8(even + odd);
    best = std::max(best, scores[l]);
  }
  for (int64_t l = n; l % 8 != 0; ++l) scores[l] = -INFINITY;  // scores holds n rounded up to 8
  v8 sums = {};
  for (int64_t l = 0; l < n; l += 8) {
    const v8 p = exp8(load8(scores + l) - best);
    std::memcpy(scores + l, &p, sizeof p);
    sums += p;
  }
  const float total = sum8(sums);
  v8 acc[kMaxHeadDim / 8];
  for (int64_t j = 0; j < nv; ++j) acc[j] = v8{};
  for (int64_t l = 0; l < n; ++l) {
    const float* value = values + l * stride;
    prefetch_row(value + kPrefetchRows * stride, hd);
    const float p = scores[l];
    if (p == 0.f) continue;
    for (int64_t j = 0; j < nv; ++j) acc[j] += p * load8(value + 8 * j);
  }
  const float inv = 1.f / total;  // every key masked: 0 * inf = NaN, as softmax over -inf gives
  for (int64_t j = 0; j < nv; ++j) {
    const v8 o = acc[j] * inv;
    std::memcpy(out + 8 * j, &o, sizeof o);
  }
}

// q [B, H, 1, hd], k and v [B, KV, L, hd] (H a multiple of KV), mask None or boolean broadcastable to
// [B, H, 1, L] (True = attend) -> [B, H, 1, hd]. Float32 on the CPU, hd a multiple of 8 up to 256.
at::Tensor decode_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const std::optional<at::Tensor>& mask) {
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4 && q.size(2) == 1, "decode_attention: q [B, H, 1, hd], k/v [B, KV, L, hd]");
  TORCH_CHECK(q.scalar_type() == at::kFloat && k.scalar_type() == at::kFloat && v.scalar_type() == at::kFloat,
              "decode_attention: float32 only");
  const int64_t B = q.size(0), H = q.size(1), hd = q.size(3), KV = k.size(1), L = k.size(2);
  TORCH_CHECK(hd % 8 == 0 && hd <= kMaxHeadDim, "decode_attention: head_dim must be a multiple of 8, at most 256");
  TORCH_CHECK(k.sizes() == v.sizes() && k.strides() == v.strides() && k.size(0) == B && k.size(3) == hd && H % KV == 0,
              "decode_attention: k and v must match q");
  TORCH_CHECK(q.stride(3) == 1 && k.stride(3) == 1, "decode_attention: head_dim must be contiguous");
  at::Tensor visible;
  if (mask.has_value()) {
    TORCH_CHECK(mask->scalar_type() == at::kBool, "decode_attention: the mask must be boolean");
    visible = mask->expand({B, H, 1, L});
  }
  auto out = at::empty({B, H, 1, hd}, q.options());
  const float* qp = q.data_ptr<float>();
  const float* kp = k.data_ptr<float>();
  const float* vp = v.data_ptr<float>();
  const bool* mp = visible.defined() ? visible.data_ptr<bool>() : nullptr;
  float* op = out.data_ptr<float>();
  const float scale = 1.f / std::sqrt(static_cast<float>(hd));
  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores(L + 8);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / H, h = i % H, kvh = h / (H / KV);
      const float* query = qp + b * q.stride(0) + h * q.stride(1);
      const int64_t offset = b * k.stride(0) + kvh * k.stride(1);
      float* row_out = op + i * hd;
      if (mp == nullptr) {
        attend(query, kp + offset, vp + offset, L, hd, k.stride(2), scale, [](int64_t) { return true; },
               scores.data(), row_out);
        continue;
      }
      const bool* row_mask = mp + b * visible.stride(0) + h * visible.stride(1);
      const int64_t step = visible.stride(3);
      int64_t n = L;  // keys after the last visible one are never read (a causal mask hides a suffix)
      while (n > 0 && !row_mask[(n - 1) * step]) --n;
      attend(query, kp + offset, vp + offset, n, hd, k.stride(2), scale,
             [=](int64_t l) { return row_mask[l * step]; }, scores.data(), row_out);
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY(alm, m) {
  m.def("decode_attention(Tensor q, Tensor k, Tensor v, Tensor? mask) -> Tensor");
}

TORCH_LIBRARY_IMPL(alm, CPU, m) {
  m.impl("decode_attention", &decode_attention);
}
