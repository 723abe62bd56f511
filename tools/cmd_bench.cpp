// `whtlm bench fwht`: the Hadamard transform against memcpy and against the dense
// projection it replaces, side by side in one run.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "commands.hpp"
#include "table.hpp"
#include "whtlm/hadamard.hpp"
#include "whtlm/matmul.hpp"
#include "whtlm/perf.hpp"
#include "whtlm/threads.hpp"

namespace whtlm::cli {
namespace {

struct FwhtArgs {
  perf::FwhtSweepOptions sweep;
  std::vector<int> threads;
  bool no_dense = false;
  std::string json;
};

nlohmann::json summary_json(const perf::Summary& s) {
  return {{"median", s.median}, {"min", s.min}, {"max", s.max}};
}

void run_fwht(const FwhtArgs& a) {
  for (std::size_t n : a.sweep.sizes) check_hadamard_size(n);
  for (std::size_t r : a.sweep.rows)
    if (r == 0) throw std::invalid_argument("--rows: a batch needs at least one row");
  for (double mib : a.sweep.batch_mib)
    if (!(mib > 0)) throw std::invalid_argument("--batch-mib: sizes must be positive");
  if (a.sweep.repetitions < 1) throw std::invalid_argument("--reps must be at least 1");
  if (!(a.sweep.min_seconds > 0)) throw std::invalid_argument("--min-time must be positive");
  for (int th : a.threads)
    if (th < 1) throw std::invalid_argument("--threads: counts must be at least 1");

  std::unique_ptr<std::ofstream> file;
  std::ostream* json = nullptr;
  if (!a.json.empty()) {
    if (a.json == "-") {
      json = &std::cout;
    } else {
      file = std::make_unique<std::ofstream>(a.json);
      if (!*file) throw std::runtime_error("--json: cannot open '" + a.json + "' for writing");
      json = file.get();
    }
  }

  std::fprintf(stderr, "whtlm bench fwht: kernels %s, blas %s\n", isa_name(detected_isa()),
               blas_description().c_str());
  std::fprintf(stderr,
               "times are medians of %d interleaved rounds; GB/s counts each float read once and "
               "written once (2 x 4 bytes), as for memcpy\n",
               a.sweep.repetitions);

  Table t({"n", "rows", "thr", "fwht ns/row", "fwht GB/s", "memcpy GB/s", "fwht/memcpy",
           "fused ns/row", "fused/fwht", "fused/unfused", "dense ns/row", "dense/fused"});
  std::vector<int> threads = a.threads;
  if (threads.empty()) threads.push_back(available_cores());
  for (int th : threads) {
    perf::FwhtSweepOptions o = a.sweep;
    o.threads = th;
    o.dense = !a.no_dense;
    o.progress = [](const std::string& line) { std::fprintf(stderr, "  %s\n", line.c_str()); };
    for (const perf::FwhtSweepRow& r : perf::fwht_sweep(o)) {
      const double rows = static_cast<double>(r.rows);
      const double gbs = 2 * r.bytes() / r.fwht_ns.median;  // bytes per ns = GB/s
      const double mem_gbs = 2 * r.bytes() / r.memcpy_ns.median;
      t.add({std::to_string(r.n), std::to_string(r.rows), std::to_string(r.threads),
             fmt("%.1f", r.fwht_ns.median / rows), fmt("%.1f", gbs), fmt("%.1f", mem_gbs),
             fmt("%.2f", r.fwht_ns.median / r.memcpy_ns.median),
             fmt("%.1f", r.fused_ns.median / rows),
             fmt("%.2f", r.fused_ns.median / r.fwht_ns.median),
             fmt("%.2f", r.fused_ns.median / r.unfused_ns.median),
             r.dense_measured ? fmt("%.1f", r.dense_ns.median / rows) : "-",
             r.dense_measured ? fmt("%.1f", r.dense_ns.median / r.fused_ns.median) : "-"});
      if (json != nullptr) {
        nlohmann::json j = {{"bench", "fwht"},
                            {"n", r.n},
                            {"rows", r.rows},
                            {"threads", r.threads},
                            {"isa", r.isa},
                            {"blas", blas_description()},
                            {"bytes", r.bytes()},
                            {"repetitions", a.sweep.repetitions},
                            {"fwht_ns", summary_json(r.fwht_ns)},
                            {"fused_ns", summary_json(r.fused_ns)},
                            {"memcpy_ns", summary_json(r.memcpy_ns)},
                            {"unfused_ns", summary_json(r.unfused_ns)},
                            {"fwht_gb_per_s", gbs},
                            {"memcpy_gb_per_s", mem_gbs}};
        if (r.dense_measured) {
          j["dense_ns"] = summary_json(r.dense_ns);
          j["dense_over_fused"] = r.dense_ns.median / r.fused_ns.median;
        }
        *json << j.dump() << "\n";
      }
    }
  }
  // With JSON on stdout the table goes to stderr, so stdout stays parseable.
  std::FILE* out = json == &std::cout ? stderr : stdout;
  t.print(out);
  std::fprintf(
      out,
      "fwht: in-place orthonormal transform. fused: transform + gamma/beta + residual add, one "
      "pass over memory\n(x read, residual read and written). unfused: the transform, then a "
      "separate "
      "affine + residual pass.\ndense: X[rows x n] * W[n x n] accumulated into the residual by "
      "sgemm, the projection the transform\nreplaces; dense/fused is how many times slower it "
      "is.\n");
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "Measure kernels and models");
  bench->require_subcommand(1);

  auto a = std::make_shared<FwhtArgs>();
  auto* f = bench->add_subcommand(
      "fwht", "Hadamard transform vs memcpy and vs the dense projection it replaces");
  f->add_option("--sizes", a->sweep.sizes, "Transform lengths n")
      ->delimiter(',')
      ->capture_default_str();
  f->add_option("--rows", a->sweep.rows, "Batch sizes (rows per call)")
      ->delimiter(',')
      ->capture_default_str();
  f->add_option("--batch-mib", a->sweep.batch_mib,
                "Also run batches of this many MiB per size (e.g. 16,256: in and out of cache)")
      ->delimiter(',');
  f->add_option("--threads", a->threads, "Thread counts to run (default: all cores)")
      ->delimiter(',');
  f->add_option("--reps", a->sweep.repetitions, "Interleaved rounds per case (medians)")
      ->capture_default_str();
  f->add_option("--min-time", a->sweep.min_seconds, "Seconds each timed sample lasts at least")
      ->capture_default_str();
  f->add_flag("--no-dense", a->no_dense, "Skip the dense sgemm comparison");
  f->add_option("--json", a->json, "Also write JSON lines, one per case, to FILE ('-': stdout)");
  f->callback([a] { run_fwht(*a); });
}

}  // namespace whtlm::cli
