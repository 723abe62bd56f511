// Rotary position embedding on the GPU, rotate-half convention, as in
// src/backend/cpu/rope.cpp: the q and k heads of packed qkv rows turned by the angle of
// their position (row % seq, or a position per row at inference), or back (backward).
#include "backend/cuda/launch.cuh"

namespace whtlm::backend::cuda {
namespace {

// Rotates pair p = h * half + j (element j of q/k head h with element j + half) of row
// r by sign * the angle of its position: positions[r], or r % seq when positions is
// null. Columns of the launch are the (n_head + n_kv) * half pairs of a row.
struct Rope {
  float* qkv;
  const float* cos_table;  // [positions, half]
  const float* sin_table;
  const std::int32_t* positions;
  std::size_t seq, width;
  unsigned hd, half;
  float sign;
  template <int V>
  __device__ void at(std::size_t r, std::size_t p) const {
    static_assert(V == 1, "one pair per thread");
    const unsigned h = static_cast<unsigned>(p) / half, j = static_cast<unsigned>(p) % half;
    const std::size_t pos = positions != nullptr ? static_cast<std::size_t>(positions[r]) : r % seq;
    float* a = qkv + r * width + static_cast<std::size_t>(h) * hd + j;
    float* b = a + half;
    const float c = cos_table[pos * half + j], sj = sign * sin_table[pos * half + j];
    const float xa = *a, xb = *b;
    *a = xa * c - xb * sj;
    *b = xb * c + xa * sj;
  }
};

void launch_rope(const char* name, float* qkv, const float* cos, const float* sin, std::size_t rows,
                 std::size_t seq, const std::int32_t* positions, std::size_t n_head,
                 std::size_t n_kv, std::size_t hd, float sign) {
  const auto half = static_cast<unsigned>(hd / 2);
  const std::size_t width = (n_head + 2 * n_kv) * hd;
  const Rope op{qkv, cos, sin, positions, seq, width, static_cast<unsigned>(hd), half, sign};
  launch_rows_of<1>(name, op, rows, (n_head + n_kv) * half);
}

}  // namespace

void rope_forward(float* qkv, const float* cos, const float* sin, std::size_t rows, std::size_t seq,
                  std::size_t n_head, std::size_t n_kv, std::size_t hd) {
  launch_rope("rope_forward", qkv, cos, sin, rows, seq, nullptr, n_head, n_kv, hd, 1.0f);
}

void rope_backward(float* dqkv, const float* cos, const float* sin, std::size_t rows,
                   std::size_t seq, std::size_t n_head, std::size_t n_kv, std::size_t hd) {
  launch_rope("rope_backward", dqkv, cos, sin, rows, seq, nullptr, n_head, n_kv, hd, -1.0f);
}

void rope_forward_at(float* qkv, const float* cos, const float* sin, std::size_t rows,
                     const std::int32_t* positions, std::size_t n_head, std::size_t n_kv,
                     std::size_t hd) {
  launch_rope("rope_forward_at", qkv, cos, sin, rows, 1, positions, n_head, n_kv, hd, 1.0f);
}

}  // namespace whtlm::backend::cuda
