// The Hadamard output projection on the GPU, one fused pass per row of x [rows, n]:
//   forward:   y[r] += gamma * scale * H x[r] + beta           (beta may be nullptr: 0)
//   backward:  with t = scale * H x[r] recomputed,
//              dgamma += sum_r dy[r] * t,  dbeta += sum_r dy[r],  dx[r] = scale * H (gamma * dy[r])
//   transform: x[r] = scale * H x[r]
// for every length the CPU library supports: n = K * L, K in {1, 12, 20, 28}, L = 2^m, and
// H = H_K (x) H_L (include/whtlm/hadamard.hpp). Each row is read once and written once; the
// transform runs in registers, warp shuffles and shared memory in between.
//
// Work split. A row is K sub-rows of length L. Each sub-row belongs to a group of
// G = 2^(LogLanes + LogWarps) threads, each holding E = VW * V of its elements in registers as
// V vectors of VW consecutive floats (VW = 4, one 16-byte access, except VW = 2 and 1 for
// sub-rows of length 2 and 1). A block runs R rows at a time ("row slots", about 256 threads for
// K = 1, 16 * K for short rows with K > 1) and steps over the rows grid-stride. The bits of an
// element's position p in its sub-row, high to low:
//   layout A:  [v: LogV] [warp: LogWarps] [lane: LogLanes] [j: LogVW]    (x is loaded in A)
//   layout B:  [warp: LogWarps] [v: LogV] [lane: LogLanes] [j: LogVW]
// where thread (warp, lane) of the group holds element j of its vector v. Lane and j are the
// lowest bits in both, so a warp reads and writes runs of 16 * Lanes contiguous bytes in either
// (A = B when LogWarps = 0). H_L is one butterfly stage per bit of p, in any order:
//   - j and v bits: between the registers of a thread;
//   - lane bits: __shfl_xor_sync between the threads of a warp;
//   - warp bits (K = 1 and n >= 2048 only): the registers go through shared memory from one
//     layout to the other, which makes the old warp bits v bits (LogV >= LogWarps).
// The K x K factor (K > 1) also goes through shared memory: every thread writes its elements,
// then sums its own positions of the K sub-rows with the signs of its row of H_K, read as a
// bit mask from __constant__ memory (uploaded once, built from hadamard_base_matrix).
//
// Order of work per row. Forward and transform: load in A, H_L (ends in B), K mix, epilogue in
// B. Backward: the same for t; its epilogue in B updates the parameter-gradient sums and
// leaves g = gamma * dy in the registers; then the K mix and H_L starting from B, so that dx is
// stored in A.
//
// Parameter gradients. Each block sums dy * t and dy over its rows in shared memory (per row
// slot: a column has one owner thread, so plain read-modify-writes), then adds its sums into
// dgamma and dbeta with one atomicAdd per column and block. The order of those additions
// varies between runs, so dgamma and dbeta are not bit-reproducible (they differ at fp32
// rounding). Where the sums do not fit in a block's shared memory (n > 16384; on GPUs with less
// shared memory per block than an H100, from n > 8192), every row adds its products into dgamma
// and dbeta with atomicAdd directly instead: correct, but slower.
//
// A call whose pointers are not all aligned to the vectors (16 bytes for VW = 4, 8 bytes for
// the bf16 x) takes the scalar loads and stores of the same kernels.
#include <array>
#include <cstdint>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "backend/cuda/common.cuh"
#include "whtlm/hadamard.hpp"

namespace whtlm::backend::cuda {
namespace {

// Rows of H_K for K = 12, 20, 28, at offsets 0, 12, 32: bit c of row a is set where
// H_K[a][c] = -1.
__constant__ unsigned c_base_negative[12 + 20 + 28];

constexpr int base_offset(int k) { return k == 12 ? 0 : k == 20 ? 12 : 32; }

void upload_bases() {
  static std::once_flag once;
  std::call_once(once, [] {
    static std::array<unsigned, 12 + 20 + 28> masks{};
    for (int k : {12, 20, 28}) {
      const std::vector<int> h = hadamard_base_matrix(static_cast<std::size_t>(k));
      for (int a = 0; a < k; ++a) {
        unsigned m = 0;
        for (int c = 0; c < k; ++c)
          if (h[static_cast<std::size_t>(a * k + c)] < 0) m |= 1u << c;
        masks[static_cast<std::size_t>(base_offset(k) + a)] = m;
      }
    }
    check(cudaMemcpyToSymbolAsync(c_base_negative, masks.data(), sizeof masks, 0,
                                  cudaMemcpyHostToDevice, cu_stream()),
          "hadamard: upload of the base matrices");
  });
}

// How rows of length n = K_ * 2^LogL are split (see the top of the file). Lane bits first, up to
// a warp (half a warp for K = 20, 28, so that a row takes at most 448 threads); then, for K = 1,
// up to 8 vectors per thread, then warps and vectors in equal shares. What that gives:
//   K = 1:  n = 2 .. 128        n / 4 threads a row (n = 2: one, VW = 2), E = 4, R = 256 / G
//           n = 256 .. 1024     one warp a row, E = 8 .. 32, R = 8
//           n = 2048 .. 8192    2 .. 8 warps a row, E = 32 (8 float4), R = 4 .. 1
//           n = 16384, 32768    8, 16 warps a row, E = 64, R = 1
//   K > 1:  G = min(L / 4, 32 or 16) threads a sub-row, E = L / G (at most 64), K * G a row.
template <int K_, int LogL>
struct Shape {
  static constexpr int K = K_;
  static constexpr int LogVW = LogL < 2 ? LogL : 2;
  static constexpr int kMaxLogLanes = K == 1 || K == 12 ? 5 : 4;
  static constexpr int LogLanes = LogL - LogVW < kMaxLogLanes ? LogL - LogVW : kMaxLogLanes;
  static constexpr int kLogRest = LogL - LogVW - LogLanes;
  static constexpr int LogV = K > 1 || kLogRest <= 3   ? kLogRest
                              : (kLogRest + 1) / 2 > 3 ? (kLogRest + 1) / 2
                                                       : 3;
  static constexpr int LogWarps = kLogRest - LogV;

  static constexpr int VW = 1 << LogVW, V = 1 << LogV, E = VW * V;
  static constexpr int Lanes = 1 << LogLanes, G = Lanes << LogWarps;
  static constexpr int L = E * G, N = K * L;
  static constexpr int R = K == 1 ? (G >= 256 ? 1 : 256 / G) : (G >= 16 ? 1 : 16 / G);
  static constexpr int Threads = R * K * G;
  // Whether the block needs a shared row buffer (one per row slot).
  static constexpr bool Buffer = K > 1 || LogWarps > 0;

  static_assert(LogL == LogVW + LogLanes + LogWarps + LogV);
  static_assert(LogV >= LogWarps, "one transpose must turn every warp bit into a v bit");
  static_assert(LogWarps == 0 || LogLanes == 5);
  static_assert(Threads % 32 == 0 && Threads <= 1024);
};

// The thread's place: row slot, sub-row a, and where its vectors lie in either layout.
template <class S>
struct Place {
  int slot, a;
  int base_a, base_b;  // position of vector 0 in the sub-row, layouts A and B

  __device__ Place() {
    const int t = static_cast<int>(threadIdx.x);
    slot = t / (S::K * S::G);
    const int in_row = t % (S::K * S::G);
    a = in_row / S::G;
    const int g = in_row % S::G, lane = g % S::Lanes, warp = g / S::Lanes;
    base_a = g * S::VW;
    base_b = (warp * S::V * S::Lanes + lane) * S::VW;
  }
  // Position of vector v in the sub-row, layout B (or A).
  template <bool B>
  __device__ int pos(int v) const {
    return B ? base_b + v * S::Lanes * S::VW : base_a + v * S::G * S::VW;
  }
  // Column (position in the row) of vector v.
  template <bool B>
  __device__ int col(int v) const {
    return a * S::L + pos<B>(v);
  }
};

// --- vectors of VW floats -------------------------------------------------------------

template <int VW>
__device__ __forceinline__ void load(float* d, const float* p, bool vec) {
  if constexpr (VW == 4) {
    if (vec) {
      const float4 q = *reinterpret_cast<const float4*>(p);
      d[0] = q.x, d[1] = q.y, d[2] = q.z, d[3] = q.w;
      return;
    }
  } else if constexpr (VW == 2) {
    if (vec) {
      const float2 q = *reinterpret_cast<const float2*>(p);
      d[0] = q.x, d[1] = q.y;
      return;
    }
  }
#pragma unroll
  for (int j = 0; j < VW; ++j) d[j] = p[j];
}

template <int VW>
__device__ __forceinline__ void load(float* d, const std::uint16_t* p, bool vec) {
  if constexpr (VW == 4) {
    if (vec) {
      const uint2 q = *reinterpret_cast<const uint2*>(p);
      d[0] = bf16_to_float(static_cast<std::uint16_t>(q.x & 0xffffu));
      d[1] = bf16_to_float(static_cast<std::uint16_t>(q.x >> 16));
      d[2] = bf16_to_float(static_cast<std::uint16_t>(q.y & 0xffffu));
      d[3] = bf16_to_float(static_cast<std::uint16_t>(q.y >> 16));
      return;
    }
  } else if constexpr (VW == 2) {
    if (vec) {
      const unsigned q = *reinterpret_cast<const unsigned*>(p);
      d[0] = bf16_to_float(static_cast<std::uint16_t>(q & 0xffffu));
      d[1] = bf16_to_float(static_cast<std::uint16_t>(q >> 16));
      return;
    }
  }
#pragma unroll
  for (int j = 0; j < VW; ++j) d[j] = bf16_to_float(p[j]);
}

template <int VW>
__device__ __forceinline__ void store(float* p, const float* s, bool vec) {
  if constexpr (VW == 4) {
    if (vec) {
      *reinterpret_cast<float4*>(p) = make_float4(s[0], s[1], s[2], s[3]);
      return;
    }
  } else if constexpr (VW == 2) {
    if (vec) {
      *reinterpret_cast<float2*>(p) = make_float2(s[0], s[1]);
      return;
    }
  }
#pragma unroll
  for (int j = 0; j < VW; ++j) p[j] = s[j];
}

// Shared memory: always aligned to the vector.
template <int VW>
__device__ __forceinline__ void load_shared(float* d, const float* p) {
  load<VW>(d, p, true);
}
template <int VW>
__device__ __forceinline__ void store_shared(float* p, const float* s) {
  store<VW>(p, s, true);
}

// --- the transform ----------------------------------------------------------------------

// Butterflies between registers, one stage per bit of the register index in [Lo, Hi)
// (bits below LogVW are j, the others v).
template <int E, int Lo, int Hi>
__device__ __forceinline__ void register_stages(float (&r)[E]) {
#pragma unroll
  for (int s = Lo; s < Hi; ++s) {
#pragma unroll
    for (int e = 0; e < E; ++e) {
      if ((e & (1 << s)) == 0) {
        const float u = r[e], w = r[e + (1 << s)];
        r[e] = u + w;
        r[e + (1 << s)] = u - w;
      }
    }
  }
}

// Butterflies across the lanes of the group, one stage per lane bit: the lane with the
// bit clear keeps u + w, its partner u - w.
template <class S>
__device__ __forceinline__ void lane_stages(float (&r)[S::E]) {
  const unsigned lane = threadIdx.x & 31u;
#pragma unroll
  for (int s = 0; s < S::LogLanes; ++s) {
    const float own = (lane >> s) & 1u ? -1.0f : 1.0f;
#pragma unroll
    for (int e = 0; e < S::E; ++e) r[e] = fmaf(own, r[e], __shfl_xor_sync(kFullMask, r[e], 1 << s));
  }
}

// Moves the registers from layout B (or A) to the other one through the row buffer.
template <class S, bool FromB>
__device__ __forceinline__ void transpose(float (&r)[S::E], float* row, const Place<S>& pl) {
  __syncthreads();  // the buffer's previous readers are done
#pragma unroll
  for (int v = 0; v < S::V; ++v)
    store_shared<S::VW>(row + pl.template col<FromB>(v), &r[v * S::VW]);
  __syncthreads();
#pragma unroll
  for (int v = 0; v < S::V; ++v)
    load_shared<S::VW>(&r[v * S::VW], row + pl.template col<!FromB>(v));
}

// H_L on every sub-row, registers in layout A (FromB = false) or B; leaves them in the other
// layout (the same one when LogWarps = 0). row: this slot's buffer.
template <class S, bool FromB>
__device__ __forceinline__ void sylvester(float (&r)[S::E], float* row, const Place<S>& pl) {
  register_stages<S::E, 0, S::LogVW + S::LogV>(r);
  lane_stages<S>(r);
  if constexpr (S::LogWarps > 0) {
    transpose<S, FromB>(r, row, pl);
    // The old warp bits are now the lowest v bits of B, or the highest of A.
    constexpr int lo = FromB ? S::LogVW + S::LogV - S::LogWarps : S::LogVW;
    register_stages<S::E, lo, lo + S::LogWarps>(r);
  }
}

// The K x K factor, registers in layout B: out(a, p) = sum_c H_K[a][c] in(c, p), with
// `negative` the sign mask of row a of H_K. The loop over c is unrolled fully for short vectors
// and by 4 for long ones: the choice with which ptxas spills nothing.
template <class S>
__device__ __forceinline__ void base_mix(float (&r)[S::E], float* row, const Place<S>& pl,
                                         unsigned negative) {
  __syncthreads();  // the buffer's previous readers are done
#pragma unroll
  for (int v = 0; v < S::V; ++v) store_shared<S::VW>(row + pl.template col<true>(v), &r[v * S::VW]);
  __syncthreads();
#pragma unroll
  for (int e = 0; e < S::E; ++e) r[e] = 0.0f;
#pragma unroll(S::E <= 8 ? S::K : 4)
  for (int c = 0; c < S::K; ++c) {
    const float h = (negative >> c) & 1u ? -1.0f : 1.0f;
    const float* in = row + c * S::L;
#pragma unroll
    for (int v = 0; v < S::V; ++v) {
      float z[S::VW];
      load_shared<S::VW>(z, in + pl.template pos<true>(v));
#pragma unroll
      for (int j = 0; j < S::VW; ++j) r[v * S::VW + j] = fmaf(h, z[j], r[v * S::VW + j]);
    }
  }
}

template <class S>
__device__ __forceinline__ unsigned base_negative(const Place<S>& pl) {
  if constexpr (S::K > 1) return c_base_negative[base_offset(S::K) + pl.a];
  return 0u;
}

// H (unscaled) of the registers loaded in layout A; leaves them in layout B.
template <class S>
__device__ __forceinline__ void transform_from_a(float (&r)[S::E], float* row, const Place<S>& pl,
                                                 unsigned negative) {
  sylvester<S, false>(r, row, pl);
  if constexpr (S::K > 1) base_mix<S>(r, row, pl, negative);
}

// One row of x (layout A) into r; zeros for a slot past the last row.
template <class S, class T>
__device__ __forceinline__ void load_row(float (&r)[S::E], const T* x, const Place<S>& pl,
                                         bool valid, bool vec) {
#pragma unroll
  for (int v = 0; v < S::V; ++v) {
    if (valid) {
      load<S::VW>(&r[v * S::VW], x + pl.template col<false>(v), vec);
    } else {
#pragma unroll
      for (int j = 0; j < S::VW; ++j) r[v * S::VW + j] = 0.0f;
    }
  }
}

// --- kernels ----------------------------------------------------------------------------
// Shapes: y, x, dx, dy [rows, S::N] row-major; gamma, beta, dgamma, dbeta [S::N]; beta may be
// nullptr. dx aliases neither dy nor x, y not x.
// Dynamic shared memory: the row buffers [R][N] when S::Buffer, then (backward with
// SharedSums) the dgamma and dbeta sums, [R][N] each.

template <class S, class TX>
__global__ void __launch_bounds__(S::Threads)
    forward_kernel(float* __restrict__ y, const TX* __restrict__ x, const float* __restrict__ gamma,
                   const float* __restrict__ beta, std::size_t rows, float scale, bool vec) {
  extern __shared__ float4 shared4[];
  const Place<S> pl;
  float* const row_buf = reinterpret_cast<float*>(shared4) + pl.slot * S::N;
  const unsigned negative = base_negative(pl);
  const std::size_t tiles = (rows + S::R - 1) / S::R;
  for (std::size_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const std::size_t row = tile * S::R + static_cast<std::size_t>(pl.slot);
    const bool valid = row < rows;
    const std::size_t offset = (valid ? row : 0) * S::N;
    float r[S::E];
    load_row<S>(r, x + offset, pl, valid, vec);
    transform_from_a<S>(r, row_buf, pl, negative);
    if (!valid) continue;
#pragma unroll
    for (int v = 0; v < S::V; ++v) {
      const int c = pl.template col<true>(v);
      float yv[S::VW], g[S::VW], b[S::VW] = {};
      load<S::VW>(yv, y + offset + c, vec);
      load<S::VW>(g, gamma + c, vec);
      if (beta != nullptr) load<S::VW>(b, beta + c, vec);
#pragma unroll
      for (int j = 0; j < S::VW; ++j) yv[j] += fmaf(g[j], scale * r[v * S::VW + j], b[j]);
      store<S::VW>(y + offset + c, yv, vec);
    }
  }
}

template <class S, bool SharedSums>
__global__ void __launch_bounds__(S::Threads)
    backward_kernel(float* __restrict__ dx, float* __restrict__ dgamma, float* __restrict__ dbeta,
                    const float* __restrict__ dy, const float* __restrict__ x,
                    const float* __restrict__ gamma, std::size_t rows, float scale, bool vec) {
  extern __shared__ float4 shared4[];
  float* const shared = reinterpret_cast<float*>(shared4);
  const Place<S> pl;
  float* const row_buf = shared + pl.slot * S::N;
  float* const sums = shared + (S::Buffer ? S::R * S::N : 0);  // [2][R][N]
  float* const sum_g = sums + pl.slot * S::N;                  // this slot's dgamma sums
  float* const sum_b = sums + (S::R + pl.slot) * S::N;         // and dbeta sums
  if constexpr (SharedSums) {
    for (int i = static_cast<int>(threadIdx.x); i < 2 * S::R * S::N; i += S::Threads)
      sums[i] = 0.0f;
    __syncthreads();
  }
  const unsigned negative = base_negative(pl);
  const std::size_t tiles = (rows + S::R - 1) / S::R;
  for (std::size_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const std::size_t row = tile * S::R + static_cast<std::size_t>(pl.slot);
    const bool valid = row < rows;
    const std::size_t offset = (valid ? row : 0) * S::N;
    float r[S::E];
    load_row<S>(r, x + offset, pl, valid, vec);
    transform_from_a<S>(r, row_buf, pl, negative);  // H x, layout B
    if (valid) {
#pragma unroll
      for (int v = 0; v < S::V; ++v) {
        const int c = pl.template col<true>(v);
        float d[S::VW], g[S::VW];
        load<S::VW>(d, dy + offset + c, vec);
        load<S::VW>(g, gamma + c, vec);
        float* const t = &r[v * S::VW];
        if constexpr (SharedSums) {
          float sg[S::VW], sb[S::VW];
          load_shared<S::VW>(sg, sum_g + c);
          load_shared<S::VW>(sb, sum_b + c);
#pragma unroll
          for (int j = 0; j < S::VW; ++j) {
            sg[j] = fmaf(d[j], scale * t[j], sg[j]);
            sb[j] += d[j];
          }
          store_shared<S::VW>(sum_g + c, sg);
          store_shared<S::VW>(sum_b + c, sb);
        } else {
#pragma unroll
          for (int j = 0; j < S::VW; ++j) {
            atomicAdd(dgamma + c + j, d[j] * (scale * t[j]));
            atomicAdd(dbeta + c + j, d[j]);
          }
        }
#pragma unroll
        for (int j = 0; j < S::VW; ++j) t[j] = g[j] * d[j];
      }
    }
    // dx = scale * H g: the K mix first, then H_L from layout B, which ends in A.
    if constexpr (S::K > 1) base_mix<S>(r, row_buf, pl, negative);
    sylvester<S, true>(r, row_buf, pl);
    if (!valid) continue;
#pragma unroll
    for (int v = 0; v < S::V; ++v) {
      float o[S::VW];
#pragma unroll
      for (int j = 0; j < S::VW; ++j) o[j] = scale * r[v * S::VW + j];
      store<S::VW>(dx + offset + pl.template col<false>(v), o, vec);
    }
  }
  if constexpr (SharedSums) {
    __syncthreads();
    for (int c = static_cast<int>(threadIdx.x); c < S::N; c += S::Threads) {
      float g = 0.0f, b = 0.0f;
      for (int s = 0; s < S::R; ++s) {
        g += sums[s * S::N + c];
        b += sums[(S::R + s) * S::N + c];
      }
      atomicAdd(dgamma + c, g);
      atomicAdd(dbeta + c, b);
    }
  }
}

template <class S>
__global__ void __launch_bounds__(S::Threads)
    transform_kernel(float* __restrict__ x, std::size_t rows, float scale, bool vec) {
  extern __shared__ float4 shared4[];
  const Place<S> pl;
  float* const row_buf = reinterpret_cast<float*>(shared4) + pl.slot * S::N;
  const unsigned negative = base_negative(pl);
  const std::size_t tiles = (rows + S::R - 1) / S::R;
  for (std::size_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const std::size_t row = tile * S::R + static_cast<std::size_t>(pl.slot);
    const bool valid = row < rows;
    const std::size_t offset = (valid ? row : 0) * S::N;
    float r[S::E];
    load_row<S>(r, x + offset, pl, valid, vec);
    transform_from_a<S>(r, row_buf, pl, negative);
    if (!valid) continue;
#pragma unroll
    for (int v = 0; v < S::V; ++v) {
      float o[S::VW];
#pragma unroll
      for (int j = 0; j < S::VW; ++j) o[j] = scale * r[v * S::VW + j];
      store<S::VW>(x + offset + pl.template col<true>(v), o, vec);
    }
  }
}

// --- host side ------------------------------------------------------------------------

struct DeviceLimits {
  int sms = 0;
  int shared_optin = 0;  // bytes of shared memory a block may use
};

const DeviceLimits& device_limits() {
  static const DeviceLimits limits = [] {
    int id = 0;
    check(cudaGetDevice(&id), "cudaGetDevice");
    DeviceLimits l;
    check(cudaDeviceGetAttribute(&l.sms, cudaDevAttrMultiProcessorCount, id),
          "cudaDeviceGetAttribute");
    check(cudaDeviceGetAttribute(&l.shared_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, id),
          "cudaDeviceGetAttribute");
    return l;
  }();
  return limits;
}

// Blocks to launch Kernel with: every SM filled to the occupancy the kernel allows, at most
// one per tile of rows. The first call sets the kernel's dynamic shared memory limit.
template <auto Kernel>
unsigned grid_size(const char* what, int threads, std::size_t shared, std::size_t tiles) {
  static const int per_sm = [&] {
    const DeviceLimits& dev = device_limits();
    if (shared > static_cast<std::size_t>(dev.shared_optin))
      throw std::runtime_error(std::string("CUDA: ") + what + ": needs " + std::to_string(shared) +
                               " bytes of shared memory per block, this GPU allows " +
                               std::to_string(dev.shared_optin));
    check(cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(shared)),
          what);
    int n = 0;
    check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, Kernel, threads, shared), what);
    if (n == 0) throw std::runtime_error(std::string("CUDA: ") + what + ": kernel cannot run");
    return n;
  }();
  const std::size_t full = static_cast<std::size_t>(per_sm) * device_limits().sms;
  return static_cast<unsigned>(tiles < full ? tiles : full);
}

bool aligned(const void* p, std::size_t bytes) {
  return reinterpret_cast<std::uintptr_t>(p) % bytes == 0;
}

template <class S>
constexpr std::size_t tiles_for(std::size_t rows) {
  return (rows + S::R - 1) / S::R;
}

template <class S>
constexpr std::size_t buffer_bytes() {
  return S::Buffer ? sizeof(float) * S::R * S::N : 0;
}

template <class S, class TX>
void launch_forward(float* y, const TX* x, const float* gamma, const float* beta, std::size_t rows,
                    float scale, const char* what) {
  if constexpr (S::K > 1) upload_bases();
  constexpr std::size_t fv = sizeof(float) * S::VW;
  const bool vec =
      aligned(y, fv) && aligned(x, sizeof(TX) * S::VW) && aligned(gamma, fv) && aligned(beta, fv);
  constexpr std::size_t shared = buffer_bytes<S>();
  const unsigned grid =
      grid_size<forward_kernel<S, TX>>(what, S::Threads, shared, tiles_for<S>(rows));
  forward_kernel<S, TX>
      <<<grid, S::Threads, shared, cu_stream()>>>(y, x, gamma, beta, rows, scale, vec);
  check_launch(what);
}

// Shared memory of the backward with the gradient sums in it. Up to 96 KiB every supported
// GPU (compute capability 8.0 and up) has; above, the direct-atomic variant is built too and
// chosen when the device has too little; above 227 KiB (an H100's limit) it is the only one.
template <class S>
constexpr std::size_t backward_sums_bytes() {
  return buffer_bytes<S>() + 2 * sizeof(float) * S::R * S::N;
}
constexpr std::size_t kSharedEverywhere = 96 * 1024, kSharedMost = 227 * 1024;

template <class S, bool SharedSums>
void launch_backward_with(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                          const float* gamma, std::size_t rows, float scale, bool vec,
                          std::size_t shared) {
  constexpr const char* what = "hadamard_projection_backward";
  const unsigned grid =
      grid_size<backward_kernel<S, SharedSums>>(what, S::Threads, shared, tiles_for<S>(rows));
  backward_kernel<S, SharedSums><<<grid, S::Threads, shared, cu_stream()>>>(
      dx, dgamma, dbeta, dy, x, gamma, rows, scale, vec);
  check_launch(what);
}

template <class S>
void launch_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                     const float* gamma, std::size_t rows, float scale) {
  if constexpr (S::K > 1) upload_bases();
  constexpr std::size_t fv = sizeof(float) * S::VW;
  const bool vec = aligned(dx, fv) && aligned(dgamma, fv) && aligned(dbeta, fv) &&
                   aligned(dy, fv) && aligned(x, fv) && aligned(gamma, fv);
  constexpr std::size_t with_sums = backward_sums_bytes<S>();
  if constexpr (with_sums <= kSharedMost) {
    if (with_sums <= static_cast<std::size_t>(device_limits().shared_optin)) {
      launch_backward_with<S, true>(dx, dgamma, dbeta, dy, x, gamma, rows, scale, vec, with_sums);
      return;
    }
  }
  if constexpr (with_sums > kSharedEverywhere) {
    launch_backward_with<S, false>(dx, dgamma, dbeta, dy, x, gamma, rows, scale, vec,
                                   buffer_bytes<S>());
  } else {
    throw std::runtime_error("CUDA: hadamard_projection_backward: needs " +
                             std::to_string(with_sums) + " bytes of shared memory per block");
  }
}

template <class S>
void launch_transform(float* x, std::size_t rows, float scale) {
  if constexpr (S::K > 1) upload_bases();
  constexpr const char* what = "fwht";
  const bool vec = aligned(x, sizeof(float) * S::VW);
  constexpr std::size_t shared = buffer_bytes<S>();
  const unsigned grid =
      grid_size<transform_kernel<S>>(what, S::Threads, shared, tiles_for<S>(rows));
  transform_kernel<S><<<grid, S::Threads, shared, cu_stream()>>>(x, rows, scale, vec);
  check_launch(what);
}

// f(Shape<K, LogL>{}) for the shape of n, which check_hadamard_size accepted. The lists hold every
// m with K * 2^m supported: 2 .. 2^15, and K * 2^m <= 2^15 for K = 12, 20, 28.
template <int K, int... LogL, class F>
void visit_shapes(int log_l, std::integer_sequence<int, LogL...>, F& f) {
  ((LogL == log_l ? (f(Shape<K, LogL>{}), true) : false) || ...);
}

template <class F>
void with_shape(std::size_t n, F&& f) {
  int log2 = 0;
  std::size_t odd = n;
  while (odd % 2 == 0) {
    odd /= 2;
    ++log2;
  }
  switch (odd) {  // n = K * 2^m with K = 1, 12 = 3 * 4, 20 = 5 * 4, 28 = 7 * 4
    case 1:
      visit_shapes<1>(
          log2, std::integer_sequence<int, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15>{}, f);
      return;
    case 3:
      visit_shapes<12>(log2 - 2, std::make_integer_sequence<int, 12>{}, f);
      return;
    case 5:
      visit_shapes<20>(log2 - 2, std::make_integer_sequence<int, 11>{}, f);
      return;
    case 7:
      visit_shapes<28>(log2 - 2, std::make_integer_sequence<int, 11>{}, f);
      return;
  }
  throw std::logic_error("hadamard: supported length " + std::to_string(n) + " has no shape");
}

}  // namespace

void hadamard_projection_forward(float* y, const float* x, const float* gamma, const float* beta,
                                 std::size_t rows, std::size_t n, float scale) {
  check_hadamard_size(n);
  if (rows == 0) return;
  with_shape(n, [&](auto shape) {
    launch_forward<decltype(shape)>(y, x, gamma, beta, rows, scale, "hadamard_projection_forward");
  });
}

void hadamard_projection_forward_bf16(float* y, const std::uint16_t* x, const float* gamma,
                                      const float* beta, std::size_t rows, std::size_t n,
                                      float scale) {
  check_hadamard_size(n);
  if (rows == 0) return;
  with_shape(n, [&](auto shape) {
    launch_forward<decltype(shape)>(y, x, gamma, beta, rows, scale,
                                    "hadamard_projection_forward_bf16");
  });
}

void hadamard_projection_backward(float* dx, float* dgamma, float* dbeta, const float* dy,
                                  const float* x, const float* gamma, std::size_t rows,
                                  std::size_t n, float scale) {
  check_hadamard_size(n);
  if (rows == 0) return;
  with_shape(n, [&](auto shape) {
    launch_backward<decltype(shape)>(dx, dgamma, dbeta, dy, x, gamma, rows, scale);
  });
}

void fwht(float* x, std::size_t rows, std::size_t n, float scale) {
  check_hadamard_size(n);
  if (rows == 0) return;
  with_shape(n, [&](auto shape) { launch_transform<decltype(shape)>(x, rows, scale); });
}

}  // namespace whtlm::backend::cuda
