// Eight floats (and ints) as GCC/Clang vectors, shared by alm's kernels: AVX on x86, two NEON registers on
// Apple Silicon.
#pragma once

#include <cstdint>
#include <cstring>

namespace alm_vec {

typedef float v8 __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

inline v8 load8(const float* p) {
  v8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline float sum8(v8 v) {
  return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

}  // namespace alm_vec
