// The KV-cache store of inference: the k and v heads of packed qkv rows copied to
// their slots and positions in one launch (per 128 segments), instead of one copy per
// segment and head. Segment i owns rows first[i] .. first[i+1] of the launch; a block
// copies one row's k and v for one kv head, its threads striding over hd.
//   qkv: [rows, qkv_stride], q heads | k heads | v heads, each hd wide
//   caches: [slot][kv head][position][hd], max_len positions per (slot, kv head)
#include <algorithm>

#include "backend/cuda/common.cuh"

namespace whtlm::backend::cuda {
namespace {

constexpr int kMaxSegments = 128;  // per launch: the parameters stay under 4 KiB

struct StoreBatch {
  unsigned n = 0;
  unsigned first[kMaxSegments + 1];  // running row count: segment i has rows first[i]..first[i+1]
  unsigned slot[kMaxSegments], row0[kMaxSegments], pos0[kMaxSegments];
};
static_assert(sizeof(StoreBatch) + 128 <= 4096, "kMaxSegments too large");

__global__ void kv_store_kernel(float* __restrict__ k_cache, float* __restrict__ v_cache,
                                const float* __restrict__ qkv, std::size_t qkv_stride,
                                const StoreBatch batch, unsigned n_head, unsigned n_kv, unsigned hd,
                                std::size_t max_len) {
  const unsigned item = blockIdx.x;  // the launch's row
  const unsigned kv = blockIdx.y;
  // The segment holding this row: the last i with first[i] <= item (first[0] = 0).
  unsigned lo = 0, hi = batch.n;
  while (hi - lo > 1) {
    const unsigned mid = (lo + hi) / 2;
    if (batch.first[mid] <= item)
      lo = mid;
    else
      hi = mid;
  }
  const unsigned r = item - batch.first[lo];
  const float* row = qkv + (batch.row0[lo] + r) * qkv_stride;
  const float* k = row + (n_head + kv) * hd;
  const float* v = row + (n_head + n_kv + kv) * hd;
  const std::size_t at =
      ((std::size_t(batch.slot[lo]) * n_kv + kv) * max_len + batch.pos0[lo] + r) * hd;
  for (unsigned i = threadIdx.x; i < hd; i += blockDim.x) {
    k_cache[at + i] = k[i];
    v_cache[at + i] = v[i];
  }
}

}  // namespace

void kv_cache_store(float* k_cache, float* v_cache, const float* qkv, std::size_t qkv_stride,
                    const CachedSegment* segments, std::size_t n_segments, const CacheShape& s) {
  if (s.n_kv == 0 || s.hd == 0) return;
  const unsigned threads = static_cast<unsigned>(std::min<std::size_t>(128, (s.hd + 31) / 32 * 32));
  StoreBatch b;
  auto flush = [&] {
    if (b.first[b.n] > 0) {
      const dim3 grid(b.first[b.n], static_cast<unsigned>(s.n_kv));
      kv_store_kernel<<<grid, threads, 0, cu_stream()>>>(
          k_cache, v_cache, qkv, qkv_stride, b, static_cast<unsigned>(s.n_head),
          static_cast<unsigned>(s.n_kv), static_cast<unsigned>(s.hd), s.max_len);
      check_launch("kv_cache_store");
    }
    b.n = 0;
    b.first[0] = 0;
  };
  b.first[0] = 0;
  for (std::size_t i = 0; i < n_segments; ++i) {
    const CachedSegment& g = segments[i];
    if (g.count == 0) continue;
    b.slot[b.n] = static_cast<unsigned>(g.slot);
    b.row0[b.n] = static_cast<unsigned>(g.row0);
    b.pos0[b.n] = static_cast<unsigned>(g.pos0);
    b.first[b.n + 1] = b.first[b.n] + static_cast<unsigned>(g.count);
    ++b.n;
    if (b.n == kMaxSegments) flush();
  }
  flush();
}

}  // namespace whtlm::backend::cuda
