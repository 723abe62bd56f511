// The Hadamard projection against what it replaces, side by side: the in-place
// transform, the fused affine + residual variant, a memcpy of the same bytes, and
// the dense projection X * W through the BLAS. Variants are interleaved in every
// round (A B C D A B C D ...) so that drift on a shared machine hits all of them.
#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/parallel.hpp"
#include "whtlm/device.hpp"
#include "whtlm/hadamard.hpp"
#include "whtlm/matmul.hpp"
#include "whtlm/perf.hpp"
#include "whtlm/threads.hpp"

namespace whtlm::perf {
namespace {

nlohmann::json summary_json(const Summary& s) {
  return {{"median", s.median}, {"min", s.min}, {"max", s.max}};
}

// memcpy split across the OpenMP team like the transform's rows.
void parallel_copy(float* dst, const float* src, std::size_t count) {
  parallel_ranges(count, count, [&](std::size_t first, std::size_t len) {
    std::memcpy(dst + first, src + first, len * sizeof(float));
  });
}

// The second half of the unfused sequence: resid += gamma * t + beta, t already
// transformed and scaled.
void affine_residual_pass(const float* t, float* resid, const float* gamma, const float* beta,
                          std::size_t rows, std::size_t n) {
  parallel_ranges(rows, rows * n, [&](std::size_t first, std::size_t len) {
    for (std::size_t r = first; r < first + len; ++r) {
      const float* tr = t + r * n;
      float* rr = resid + r * n;
#pragma omp simd
      for (std::size_t i = 0; i < n; ++i) rr[i] += gamma[i] * tr[i] + beta[i];
    }
  });
}

// Rows of the cases to run for length n: the explicit counts, then one per
// batch size in MiB (at least one row).
std::vector<std::size_t> rows_for(const FwhtSweepOptions& o, std::size_t n) {
  std::vector<std::size_t> rows = o.rows;
  for (double mib : o.batch_mib) {
    const double r = mib * 1024 * 1024 / (static_cast<double>(n) * sizeof(float));
    rows.push_back(std::max<std::size_t>(1, static_cast<std::size_t>(r)));
  }
  return rows;
}

}  // namespace

std::vector<FwhtSweepRow> fwht_sweep(const FwhtSweepOptions& o) {
  const int threads = o.threads > 0 ? o.threads : available_cores();
  set_num_threads(threads);
  std::vector<FwhtSweepRow> out;
  for (std::size_t n : o.sizes) {
    check_hadamard_size(n);
    const float scale = static_cast<float>(hadamard_orthonormal_scale(n));
    const auto gamma = random_uniform(n, 2, 1.0f), beta = random_uniform(n, 3, 0.1f);
    if (o.dense && 8.0 * double(n) * double(n) > double(memory_available_bytes()))
      throw std::invalid_argument(
          "bench fwht: the dense n x n matrix for n = " + std::to_string(n) +
          " does not fit in the memory available (--no-dense skips it)");
    std::vector<float> w;
    if (o.dense) w = random_uniform(n * n, 4, 1.0f / static_cast<float>(n));
    for (std::size_t rows : rows_for(o, n)) {
      // Four buffers of rows x n floats, and the dense matrix: refused before allocating.
      const double need = 16.0 * double(rows) * double(n) + (o.dense ? 8.0 * double(n) * n : 0);
      const double room = double(memory_available_bytes());
      if (need > room)
        throw std::invalid_argument(
            "bench fwht: n = " + std::to_string(n) + " with " + std::to_string(rows) +
            " rows needs " + std::to_string(static_cast<long long>(need / 1048576)) +
            " MiB of memory, more than the " +
            std::to_string(static_cast<long long>(room / 1048576)) + " MiB available; at most " +
            std::to_string(static_cast<long long>(std::max(
                0.0, (room - need + 16.0 * double(rows) * double(n)) / (16.0 * double(n))))) +
            " rows fit (--rows, --batch-mib)");
      const std::size_t count = rows * n;
      // The orthonormal transform keeps norms, so repeating it in place neither
      // overflows nor drifts into denormals.
      std::vector<float> x = random_uniform(count, 1, 1.0f);
      std::vector<float> resid(count, 0.0f), copy(count);
      const std::vector<float> src = x;

      struct Variant {
        std::function<void()> f;
        std::size_t iters = 0;
        std::vector<double> samples;
      };
      std::vector<Variant> v;
      const auto add = [&v](std::function<void()> f) { v.push_back(Variant{std::move(f), 0, {}}); };
      add([&] { fwht(x.data(), rows, n, scale); });
      add([&] {
        fwht_affine_residual(src.data(), nullptr, resid.data(), gamma.data(), beta.data(), rows, n,
                             scale);
      });
      add([&] { parallel_copy(copy.data(), src.data(), count); });
      add([&] {
        fwht(x.data(), rows, n, scale);
        affine_residual_pass(x.data(), resid.data(), gamma.data(), beta.data(), rows, n);
      });
      if (o.dense) {
        add([&] {
          sgemm(Trans::no, Trans::no, rows, n, n, 1.0f, src.data(), n, w.data(), n, 1.0f,
                resid.data(), n);
        });
      }
      for (auto& var : v) var.iters = calibrate(var.f, o.min_seconds);
      for (int r = 0; r < o.repetitions; ++r) {
        for (auto& var : v) {
          // A single call that takes over a second is measured in 3 rounds at most.
          if (var.iters == 1 && r >= 3 && !var.samples.empty() && var.samples.front() > 1.0)
            continue;
          var.samples.push_back(time_calls(var.f, var.iters) / static_cast<double>(var.iters));
        }
      }
      FwhtSweepRow row;
      row.n = n;
      row.rows = rows;
      row.threads = threads;
      row.isa = isa_name(detected_isa());
      auto ns = [](std::vector<double> seconds) {
        for (auto& t : seconds) t *= 1e9;
        return summarize(std::move(seconds));
      };
      row.fwht_ns = ns(v[0].samples);
      row.fused_ns = ns(v[1].samples);
      row.memcpy_ns = ns(v[2].samples);
      row.unfused_ns = ns(v[3].samples);
      if (o.dense) {
        row.dense_ns = ns(v[4].samples);
        row.dense_measured = true;
      }
      out.push_back(row);
      if (o.progress) {
        std::ostringstream line;
        line << "n=" << n << " rows=" << rows << " threads=" << threads << " done";
        o.progress(line.str());
      }
    }
  }
  return out;
}

std::string fwht_sweep_jsonl(const std::vector<FwhtSweepRow>& rows, int repetitions) {
  std::string out;
  for (const FwhtSweepRow& r : rows) {
    nlohmann::json j = {{"bench", "fwht"},
                        {"n", r.n},
                        {"rows", r.rows},
                        {"threads", r.threads},
                        {"isa", r.isa},
                        {"blas", blas_description()},
                        {"bytes", r.bytes()},
                        {"repetitions", repetitions},
                        {"fwht_ns", summary_json(r.fwht_ns)},
                        {"fused_ns", summary_json(r.fused_ns)},
                        {"memcpy_ns", summary_json(r.memcpy_ns)},
                        {"unfused_ns", summary_json(r.unfused_ns)},
                        {"fwht_gb_per_s", r.fwht_gb_per_s()},
                        {"memcpy_gb_per_s", r.memcpy_gb_per_s()}};
    if (r.dense_measured) {
      j["dense_ns"] = summary_json(r.dense_ns);
      j["dense_over_fused"] = r.dense_ns.median / r.fused_ns.median;
    }
    out += j.dump() + "\n";
  }
  return out;
}

}  // namespace whtlm::perf
