// Attention against a KV cache, for inference. Rows arrive packed in segments (one
// per sequence, or a chunk of one). A segment of several rows (prefill) runs like the
// training forward, in blocks of query rows with two products through gemm; a
// single row (decoding) is a dot product per cached key and a weighted sum of the
// cached values, vectorised along the head dimension.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "backend/cpu/causal_softmax.hpp"
#include "backend/ops.hpp"

namespace whtlm::backend {
namespace {

constexpr std::size_t kBlock = 64;

std::size_t per_thread(const CacheShape& s) { return kBlock * s.max_len; }

}  // namespace

std::size_t attention_cached_scratch_size(const CacheShape& s) {
  return per_thread(s) * static_cast<std::size_t>(omp_get_max_threads());
}

void kv_cache_store(float* k_cache, float* v_cache, const float* qkv, std::size_t qkv_stride,
                    const CachedSegment* segments, std::size_t n_segments, const CacheShape& s) {
  const std::size_t k_off = s.n_head * s.hd, v_off = k_off + s.n_kv * s.hd;
  for (std::size_t i = 0; i < n_segments; ++i) {
    const CachedSegment& g = segments[i];
    for (std::size_t r = 0; r < g.count; ++r) {
      const float* row = qkv + (g.row0 + r) * qkv_stride;
      for (std::size_t kv = 0; kv < s.n_kv; ++kv) {
        const std::size_t at = ((g.slot * s.n_kv + kv) * s.max_len + g.pos0 + r) * s.hd;
        std::memcpy(k_cache + at, row + k_off + kv * s.hd, s.hd * sizeof(float));
        std::memcpy(v_cache + at, row + v_off + kv * s.hd, s.hd * sizeof(float));
      }
    }
  }
}

void attention_cached(float* out, const float* q, std::size_t q_stride, const float* k_cache,
                      const float* v_cache, const CachedSegment* segments, std::size_t n_segments,
                      const CacheShape& s, float* scratch) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(s.hd));
  const std::size_t group = s.n_head / s.n_kv, out_width = s.n_head * s.hd;
  // Work items: (segment, head, block of query rows).
  std::vector<std::size_t> first_item(n_segments + 1, 0);
  for (std::size_t i = 0; i < n_segments; ++i)
    first_item[i + 1] = first_item[i] + s.n_head * ((segments[i].count + kBlock - 1) / kBlock);
  const std::size_t items = first_item[n_segments];
  const int team = omp_in_parallel() ? 1
                                     : static_cast<int>(std::min<std::size_t>(
                                           items, static_cast<std::size_t>(omp_get_max_threads())));
#pragma omp parallel num_threads(team)
  {
    float* sc = scratch + per_thread(s) * static_cast<std::size_t>(omp_get_thread_num());
#pragma omp for schedule(dynamic, 1)
    for (std::size_t item = 0; item < items; ++item) {
      const std::size_t seg_i =
          static_cast<std::size_t>(std::upper_bound(first_item.begin(), first_item.end(), item) -
                                   first_item.begin()) -
          1;
      const CachedSegment& g = segments[seg_i];
      const std::size_t local = item - first_item[seg_i];
      const std::size_t blocks = (g.count + kBlock - 1) / kBlock;
      const std::size_t h = local / blocks, blk = local % blocks;
      const std::size_t kv = h / group;
      const std::size_t r0 = blk * kBlock, nq = std::min(kBlock, g.count - r0);
      const std::size_t pos_first = g.pos0 + r0, nk = pos_first + nq;
      const float* kc = k_cache + (g.slot * s.n_kv + kv) * s.max_len * s.hd;
      const float* vc = v_cache + (g.slot * s.n_kv + kv) * s.max_len * s.hd;
      const float* qr = q + (g.row0 + r0) * q_stride + h * s.hd;
      float* o = out + (g.row0 + r0) * out_width + h * s.hd;
      if (nq == 1) {
        for (std::size_t j = 0; j < nk; ++j) {
          const float* kj = kc + j * s.hd;
          float dot = 0;
#pragma omp simd reduction(+ : dot)
          for (std::size_t c = 0; c < s.hd; ++c) dot += qr[c] * kj[c];
          sc[j] = dot * scale;
        }
        cpu::softmax_rows(sc, std::size_t{1}, nk, pos_first, static_cast<const float*>(nullptr),
                          static_cast<float*>(nullptr));
        std::fill(o, o + s.hd, 0.0f);
        for (std::size_t j = 0; j < nk; ++j) {
          const float p = sc[j];
          const float* vj = vc + j * s.hd;
#pragma omp simd
          for (std::size_t c = 0; c < s.hd; ++c) o[c] += p * vj[c];
        }
      } else {
        gemm<float>(Trans::no, Trans::yes, nq, nk, s.hd, scale, qr, q_stride, kc, s.hd, 0.0f, sc,
                    nk);
        cpu::softmax_rows(sc, nq, nk, pos_first, static_cast<const float*>(nullptr),
                          static_cast<float*>(nullptr));
        gemm<float>(Trans::no, Trans::no, nq, s.hd, nk, 1.0f, sc, nk, vc, s.hd, 0.0f, o, out_width);
      }
    }
  }
}

}  // namespace whtlm::backend
