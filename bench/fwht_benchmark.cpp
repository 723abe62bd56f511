// Google Benchmark cases for the Hadamard kernels and what they are compared with:
// per (n, rows) the in-place transform, the fused affine + residual variant, a
// memcpy of the same bytes and the dense projection (sgemm) it replaces. The
// `whtlm bench fwht` command runs the same comparison interleaved, with ratios.
#include <benchmark/benchmark.h>

#include <cstring>
#include <vector>

#include "whtlm/hadamard.hpp"
#include "whtlm/matmul.hpp"
#include "whtlm/perf.hpp"

namespace {

using whtlm::perf::random_uniform;

void set_bytes(benchmark::State& state, std::size_t count) {
  // Each float read once and written once, as for memcpy.
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * count * 2 * sizeof(float)));
}

void BM_Fwht(benchmark::State& state, whtlm::Isa isa) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto rows = static_cast<std::size_t>(state.range(1));
  if (!whtlm::isa_available(isa)) {
    state.SkipWithError("instruction set not available on this CPU");
    return;
  }
  auto x = random_uniform(rows * n, 1);
  const float s = static_cast<float>(whtlm::hadamard_orthonormal_scale(n));
  for (auto _ : state) {
    whtlm::fwht(x.data(), rows, n, s, isa);
    benchmark::DoNotOptimize(x.data());
  }
  set_bytes(state, rows * n);
}

void BM_FwhtAffineResidual(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto rows = static_cast<std::size_t>(state.range(1));
  const auto x = random_uniform(rows * n, 1), gamma = random_uniform(n, 2),
             beta = random_uniform(n, 3);
  std::vector<float> resid(rows * n, 0.0f);
  const float s = static_cast<float>(whtlm::hadamard_orthonormal_scale(n));
  for (auto _ : state) {
    whtlm::fwht_affine_residual(x.data(), nullptr, resid.data(), gamma.data(), beta.data(), rows, n,
                                s);
    benchmark::DoNotOptimize(resid.data());
  }
  set_bytes(state, rows * n);
}

void BM_Memcpy(benchmark::State& state) {
  const auto count = static_cast<std::size_t>(state.range(0) * state.range(1));
  const auto src = random_uniform(count, 1);
  std::vector<float> dst(count);
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), count * sizeof(float));
    benchmark::DoNotOptimize(dst.data());
  }
  set_bytes(state, count);
}

// The dense projection the transform replaces: resid += X[rows x n] * W[n x n].
void BM_DenseProjection(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto rows = static_cast<std::size_t>(state.range(1));
  const auto x = random_uniform(rows * n, 1), w = random_uniform(n * n, 2);
  std::vector<float> resid(rows * n, 0.0f);
  for (auto _ : state) {
    whtlm::sgemm(whtlm::Trans::no, whtlm::Trans::no, rows, n, n, 1.0f, x.data(), n, w.data(), n,
                 1.0f, resid.data(), n);
    benchmark::DoNotOptimize(resid.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(
      static_cast<double>(2 * rows * n * n) * static_cast<double>(state.iterations()) * 1e-9,
      benchmark::Counter::kIsRate);
}

void Shapes(benchmark::internal::Benchmark* b) {
  for (int64_t n = 256; n <= 8192; n *= 2)
    for (int64_t rows : {1, 8, 4096}) b->Args({n, rows});
  b->ArgNames({"n", "rows"})->UseRealTime();
}

void KSizes(benchmark::internal::Benchmark* b) {
  for (int64_t n : {768, 1280, 1536, 1792, 3584})
    for (int64_t rows : {1, 4096}) b->Args({n, rows});
  b->ArgNames({"n", "rows"})->UseRealTime();
}

BENCHMARK_CAPTURE(BM_Fwht, best, whtlm::Isa::best)->Apply(Shapes)->Apply(KSizes);
BENCHMARK_CAPTURE(BM_Fwht, avx2, whtlm::Isa::avx2)->Apply(Shapes);
BENCHMARK_CAPTURE(BM_Fwht, scalar, whtlm::Isa::scalar)->Apply(Shapes);
BENCHMARK(BM_FwhtAffineResidual)->Apply(Shapes)->Apply(KSizes);
BENCHMARK(BM_Memcpy)->Apply(Shapes);
BENCHMARK(BM_DenseProjection)->Apply(Shapes);

}  // namespace

BENCHMARK_MAIN();
