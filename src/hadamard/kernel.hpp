// Internal: the one fast Walsh-Hadamard algorithm, written once over a "vector
// traits" type and instantiated per instruction-set family (scalar, AVX2, AVX-512),
// each in its own translation unit compiled for that family.
//
// Canonical order of operations (every family performs exactly these, so results
// are bit-identical across families):
//   1. For n = K * L: on each of the K contiguous blocks of length L, the Sylvester
//      stages h = 1, 2, 4, ..., L/2 in that order; stage h maps each pair (a, b) at
//      offsets (i, i + h), bit h of i clear, to (a + b, a - b).
//   2. If K > 1: with T[j] = z[0][j] + ... + z[K-1][j] summed left to right, and
//      S_a[j] = 0 + the z[a'][j] where row a of H_K has its less frequent sign, in
//      increasing a': y[a][j] = fma(S_a, +2, -T) or fma(S_a, -2, T) by that sign
//      (the product by +-2 is exact, so the FMA rounds once, as a*b + c does).
//   3. Each output multiplied by `scale`, then handed to an epilogue (plain store,
//      or the fused affine + residual update).
//
// Blocking: the first pass loads 2^kBlockLog vectors (W * 2^kBlockLog floats),
// runs every stage inside that block in registers and stores once. Each later pass
// runs up to kRadixLog stages on 2^kRadixLog vectors held in registers, so a row of
// length L is swept 1 + ceil((log2 L - first) / kRadixLog) times. Rows longer than
// kL1Chunk are done chunk by chunk in L1 first, then the stages spanning chunks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "hadamard/plan.hpp"

namespace whtlm::hadamard_detail {

constexpr std::size_t kMaxBaseOrder = 28;

template <class Vt>
struct Kernel {
  using T = typename Vt::T;
  using V = typename Vt::V;
  static constexpr std::size_t W = Vt::W;

  // Epilogues: what happens to each finished vector v at offset p of a row.
  struct Store {
    void operator()(T* out, std::size_t p, V v) const { Vt::store(out + p, v); }
  };
  struct StoreScaled {
    V scale;
    void operator()(T* out, std::size_t p, V v) const { Vt::store(out + p, Vt::mul(v, scale)); }
  };
  // The affine + residual step on one vector of scaled outputs t at offset p:
  // resid[p] += gamma[p] * t + beta[p]; prefetches (into L2) the line at p of the
  // next row's x and resid when those are given.
  template <bool HasBeta>
  struct Accumulate {
    const T* gamma;
    const T* beta;
    T* resid;
    const T* next_x = nullptr;
    const T* next_resid = nullptr;
    void operator()(std::size_t p, V t) const {
      if (next_x != nullptr && (p * sizeof(T)) % 64 == 0) {
        __builtin_prefetch(next_x + p, 0, 2);
        __builtin_prefetch(next_resid + p, 0, 2);
      }
      V q = Vt::mul(Vt::load(gamma + p), t);
      if constexpr (HasBeta) q = Vt::add(q, Vt::load(beta + p));
      Vt::store(resid + p, Vt::add(Vt::load(resid + p), q));
    }
  };
  // As a final-pass epilogue: t = scale * v, then the step above.
  template <bool HasBeta>
  struct ScaleAccumulate {
    V scale;
    Accumulate<HasBeta> acc;
    void operator()(T* /*out*/, std::size_t p, V v) const { acc(p, Vt::mul(v, scale)); }
  };

  // log2(C) butterfly stages across C registers, register stride 1, 2, 4, ...
  template <std::size_t C>
  static inline void network(V (&r)[C]) {
#pragma GCC unroll 16
    for (std::size_t s = 1; s < C; s <<= 1) {
#pragma GCC unroll 32
      for (std::size_t i = 0; i < C; ++i) {
        if ((i & s) == 0) {
          const V a = r[i], b = r[i + s];
          r[i] = Vt::add(a, b);
          r[i + s] = Vt::sub(a, b);
        }
      }
    }
  }

  // Stages h = 1 .. W * C / 2 on each block of C vectors: read from `in`, hand the
  // results to epi with `out` as the destination row.
  template <std::size_t C, class Epi>
  static void first_pass(const T* in, T* out, std::size_t l, const Epi& epi) {
    for (std::size_t blk = 0; blk < l; blk += C * W) {
      V r[C];
#pragma GCC unroll 32
      for (std::size_t i = 0; i < C; ++i) r[i] = Vt::in_vector(Vt::load(in + blk + i * W));
      network(r);
#pragma GCC unroll 32
      for (std::size_t i = 0; i < C; ++i) epi(out, blk + i * W, r[i]);
    }
  }

  // Stages h = h0, 2 h0, ..., h0 * 2^(R-1), in place on x.
  template <std::size_t R, class Epi>
  static void radix_pass(T* x, std::size_t l, std::size_t h0, const Epi& epi) {
    constexpr std::size_t C = std::size_t{1} << R;
    const std::size_t span = h0 * C;
    for (std::size_t base = 0; base < l; base += span) {
      for (std::size_t j = 0; j < h0; j += W) {
        const T* p = x + base + j;
        V r[C];
#pragma GCC unroll 32
        for (std::size_t c = 0; c < C; ++c) r[c] = Vt::load(p + c * h0);
        network(r);
#pragma GCC unroll 32
        for (std::size_t c = 0; c < C; ++c) epi(x, base + j + c * h0, r[c]);
      }
    }
  }

  template <std::size_t C, class Epi>
  static void first_pass_n(std::size_t c, const T* in, T* out, std::size_t l, const Epi& epi) {
    if (c == C) {
      first_pass<C>(in, out, l, epi);
    } else if constexpr (C > 1) {
      first_pass_n<C / 2>(c, in, out, l, epi);
    }
  }

  template <std::size_t R, class Epi>
  static void radix_pass_n(std::size_t r, T* x, std::size_t l, std::size_t h0, const Epi& epi) {
    if (r == R) {
      radix_pass<R>(x, l, h0, epi);
    } else if constexpr (R > 1) {
      radix_pass_n<R - 1>(r, x, l, h0, epi);
    }
  }

  // Stages h = h0 .. l/2 on x in place, up to kRadixLog at a time; `fin` is applied
  // by the last pass, `Store` by the others.
  template <class Fin>
  static void radix_passes(T* x, std::size_t l, std::size_t h, const Fin& fin) {
    while (h < l) {
      std::size_t r = 0;
      while (r < Vt::kRadixLog && (h << (r + 1)) <= l) ++r;
      if ((h << r) == l) {
        radix_pass_n<Vt::kRadixLog>(r, x, l, h, fin);
      } else {
        radix_pass_n<Vt::kRadixLog>(r, x, l, h, Store{});
      }
      h <<= r;
    }
  }

  // Rows longer than this many elements are cut into chunks that stay in L1: each
  // chunk gets all of its stages before the next is touched, then the stages that
  // span chunks run over the whole row. Stages below the chunk length only combine
  // elements of one chunk, so the arithmetic is the same as chunk-free order.
  static constexpr std::size_t kL1Chunk = 4096;

  // Sylvester transform of length l (a power of two, l >= W): in -> out (may alias).
  // `fin` is applied by the last pass, `Store` by the others.
  template <class Fin>
  static void pow2(const T* in, T* out, std::size_t l, const Fin& fin) {
    if (l > kL1Chunk) {
      for (std::size_t c = 0; c < l; c += kL1Chunk) pow2(in + c, out + c, kL1Chunk, Store{});
      radix_passes(out, l, kL1Chunk, fin);
      return;
    }
    constexpr std::size_t kBlock = std::size_t{1} << Vt::kBlockLog;
    const std::size_t c = l / W < kBlock ? l / W : kBlock;
    const std::size_t h = c * W;  // the first pass completes every stage below h
    if (h == l) {
      first_pass_n<kBlock>(c, in, out, l, fin);
      return;
    }
    first_pass_n<kBlock>(c, in, out, l, Store{});
    radix_passes(out, l, h, fin);
  }

  // Step 2 of the canonical order: mix the K blocks of length l with H_K, each
  // output as +-(2 S_a - T) (see Base in plan.hpp).
  template <class Fin>
  static void base_mix(const T* in, T* out, std::size_t l, const Base& base, const Fin& fin) {
    const std::size_t k = base.k;
    const V zero = Vt::set1(T(0));
    for (std::size_t j = 0; j < l; j += W) {
      V col[kMaxBaseOrder];
      for (std::size_t a = 0; a < k; ++a) col[a] = Vt::load(in + a * l + j);
      V total = col[0];
      for (std::size_t a = 1; a < k; ++a) total = Vt::add(total, col[a]);
      const V neg_total = Vt::sub(zero, total);
      for (std::size_t a = 0; a < k; ++a) {
        const std::uint8_t* m = base.minority.data() + a * k;
        V s = zero;
        for (std::size_t i = 0; i < base.count[a]; ++i) s = Vt::add(s, col[m[i]]);
        // 2 * s is exact, so the FMA rounds once, like the scalar a * b + c.
        const V y = base.sign[a] > 0 ? Vt::fmadd(s, Vt::set1(T(2)), neg_total)
                                     : Vt::fmadd(s, Vt::set1(T(-2)), total);
        fin(out, a * l + j, y);
      }
    }
  }

  // One row: in -> buf (may alias), the last step applying fin.
  template <class Fin>
  static void row(const T* in, T* buf, const Plan& plan, const Fin& fin) {
    const std::size_t k = plan.k, l = plan.l;
    if (k == 1) {
      pow2(in, buf, l, fin);
      return;
    }
    for (std::size_t a = 0; a < k; ++a) pow2(in + a * l, buf + a * l, l, Store{});
    base_mix(buf, buf, l, *plan.base, fin);
  }

  static void fwht_rows(T* x, std::size_t rows, const Plan& plan, T scale) {
    const StoreScaled fin{Vt::set1(scale)};
    for (std::size_t r = 0; r < rows; ++r) {
      T* p = x + r * plan.n;
      row(p, p, plan, fin);
    }
  }

  // The fused step. Two schedules, chosen by measurement (docs/hadamard.md):
  // - a row that one pass transforms (n <= W * 2^kBlockLog, no K factor), with no
  //   t to keep: the step runs as that pass's epilogue, t never leaves registers;
  // - otherwise: the row is transformed (scaled) into `out` or a per-thread
  //   buffer, still in L1/L2, then one sequential pass applies the step. Running
  //   the step inside a strided radix pass was slower for longer rows here.
  // Both give the same bits: t = scale * v is rounded once either way.
  template <bool KeepT, bool HasBeta>
  static void affine_residual_rows_t(const AffineResidualArgs& a, std::size_t rows,
                                     const Plan& plan) {
    const std::size_t n = plan.n;
    // Long rows take several sweeps each, during which the hardware prefetcher
    // goes idle; for them the accumulate pass prefetches the next row's x and
    // resid (measured out of cache: n = 2048 about 1.4x faster, n = 8192 about
    // 15%, while for rows of 4 KiB and less software prefetch only got in the way).
    const bool prefetch_next = n * sizeof(T) >= 8192;
    const auto acc_for = [&](std::size_t r) {
      Accumulate<HasBeta> acc{a.gamma, a.beta, a.resid + r * n};
      if (prefetch_next && r + 1 < rows) {
        acc.next_x = a.x + (r + 1) * n;
        acc.next_resid = a.resid + (r + 1) * n;
      }
      return acc;
    };
    const bool one_pass = !KeepT && plan.k == 1 && plan.l <= (W << Vt::kBlockLog);
    if (one_pass) {
      for (std::size_t r = 0; r < rows; ++r) {
        const ScaleAccumulate<HasBeta> fin{Vt::set1(a.scale), acc_for(r)};
        row(a.x + r * n, nullptr, plan, fin);
      }
      return;
    }
    // Without `out`, t goes to a per-thread buffer that grows once to the longest
    // row seen and is then reused: no allocation after a thread's first call.
    thread_local std::vector<T> scratch_storage;
    if (!KeepT && scratch_storage.size() < n) scratch_storage.resize(n);
    const StoreScaled scaled{Vt::set1(a.scale)};
    for (std::size_t r = 0; r < rows; ++r) {
      T* buf = KeepT ? a.out + r * n : scratch_storage.data();
      row(a.x + r * n, buf, plan, scaled);
      const Accumulate<HasBeta> acc = acc_for(r);
      for (std::size_t p = 0; p < n; p += W) acc(p, Vt::load(buf + p));
    }
  }

  static void affine_residual_rows(const AffineResidualArgs& a, std::size_t rows,
                                   const Plan& plan) {
    if (a.out != nullptr) {
      if (a.beta != nullptr) return affine_residual_rows_t<true, true>(a, rows, plan);
      return affine_residual_rows_t<true, false>(a, rows, plan);
    }
    if (a.beta != nullptr) return affine_residual_rows_t<false, true>(a, rows, plan);
    return affine_residual_rows_t<false, false>(a, rows, plan);
  }
};

}  // namespace whtlm::hadamard_detail
