// `whtlm bench train`: training tokens per second of the output projections side by
// side, one preset at a time.
#include <algorithm>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "perf/vs_dense.hpp"
#include "whtlm/matmul.hpp"
#include "whtlm/model.hpp"
#include "whtlm/perf.hpp"
#include "whtlm/threads.hpp"
#include "whtlm/train.hpp"
#include "whtlm/transformer.hpp"

namespace whtlm::perf {

std::vector<TrainBenchRow> train_bench(const TrainBenchOptions& o) {
  if (o.batch < 1 || o.seq < 1 || o.vocab < 1 || o.repetitions < 1 || o.steps < 1)
    throw std::invalid_argument("bench train: batch, seq, vocab, reps and steps must be >= 1");
  // Check every case before measuring any.
  std::vector<ModelConfig> configs;
  for (const std::string& name : o.presets) {
    ModelConfig c = preset(name);
    c.vocab_size = o.vocab;
    if (o.seq > c.max_seq) c.max_seq = o.seq;
    for (const std::string& p : o.projections) {
      c.projection = parse_projection(p);
      c.validate();
    }
    configs.push_back(c);
  }
  set_num_threads(o.threads > 0 ? o.threads : available_cores());

  std::vector<TrainBenchRow> rows;
  for (std::size_t pi = 0; pi < configs.size(); ++pi) {
    struct Case {
      std::unique_ptr<Transformer> model;
      std::unique_ptr<AdamW> opt;
      std::vector<double> samples;
      std::int64_t step = 0;
      std::size_t peak = 0;
    };
    std::mt19937 rng(1234);
    std::uniform_int_distribution<int> tok(0, o.vocab - 1);
    std::vector<std::int32_t> in(std::size_t(o.batch) * o.seq), tg(in.size());
    for (auto& t : in) t = tok(rng);
    for (auto& t : tg) t = tok(rng);
    auto one_step = [&](Case& k) {
      train_step(*k.model, *k.opt, in.data(), tg.data(), o.batch, o.seq, 1, 1e-4, 1.0, ++k.step);
    };
    std::vector<Case> cases;
    for (const std::string& p : o.projections) {
      ModelConfig c = configs[pi];
      c.projection = parse_projection(p);
      Case k;
      backend::Backend& be = backend::get(o.device, o.precision);
      be.release_caches();  // shared scratch counts for every case, not only the first
      be.reset_peak();      // the peak restarts from what the earlier cases hold
      const std::size_t held = be.peak_allocated();
      k.model = std::make_unique<Transformer>(c, o.device, o.precision);
      k.model->init_weights(1);
      k.model->reserve(o.batch, o.seq);
      k.opt = std::make_unique<AdamW>(k.model->layout(), AdamWConfig{});
      one_step(k);  // warm-up: first touch, kernel generation, the optimizer's state
      be.synchronize();
      k.peak = be.peak_allocated() - std::min(held, be.peak_allocated());
      cases.push_back(std::move(k));
    }
    // Each case's warm-up ran before the next case released the shared caches (the bf16
    // weight copies, the operand scratch): one more untimed step each puts them back, so
    // the first timed round of an earlier case does not pay for allocating them again.
    if (cases.size() > 1)
      for (Case& k : cases) one_step(k);
    for (int rep = 0; rep < o.repetitions; ++rep) {
      for (std::size_t ci = 0; ci < cases.size(); ++ci) {
        Case& k = cases[ci];
        const auto t0 = std::chrono::steady_clock::now();
        for (int s = 0; s < o.steps; ++s) one_step(k);
        k.model->backend().synchronize();  // a GPU's queue drains before the clock is read
        const double dt =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        k.samples.push_back(double(o.steps) * double(in.size()) / dt);
        if (o.progress)
          o.progress(o.presets[pi] + " " + o.projections[ci] + " round " + std::to_string(rep + 1) +
                     "/" + std::to_string(o.repetitions) + ": " +
                     std::to_string(static_cast<long>(k.samples.back())) + " tokens/s");
      }
    }
    for (std::size_t ci = 0; ci < cases.size(); ++ci) {
      TrainBenchRow r;
      r.preset = o.presets[pi];
      r.proj = o.projections[ci];
      r.batch = o.batch;
      r.seq = o.seq;
      r.threads = num_threads();
      r.vocab = o.vocab;
      r.tokens_per_s = summarize(cases[ci].samples);
      r.flops_train_per_token =
          model_cost(cases[ci].model->config(), o.seq).flops_train_per_token();
      r.params = cases[ci].model->layout().count();
      r.activation_bytes = cases[ci].model->activation_bytes();
      r.peak_rss_bytes = peak_rss_bytes();
      r.device = cases[ci].model->backend().description();
      r.device_peak_bytes = cases[ci].peak;
      rows.push_back(r);
    }
  }
  return rows;
}

std::optional<VsDense> train_vs_dense(const std::vector<TrainBenchRow>& rows,
                                      const TrainBenchRow& r) {
  const TrainBenchRow* dense = dense_row(
      rows, r, [](const TrainBenchRow& d, const TrainBenchRow& x) { return d.preset == x.preset; });
  if (dense == nullptr) return std::nullopt;
  return vs_dense(r.tokens_per_s.median, dense->tokens_per_s.median, r.flops_train_per_token,
                  dense->flops_train_per_token);
}

std::string train_bench_jsonl(const std::vector<TrainBenchRow>& rows, const TrainBenchOptions& o) {
  std::string out;
  for (const TrainBenchRow& r : rows) {
    nlohmann::json j{{"bench", "train"},
                     {"impl", "whtlm"},
                     {"preset", r.preset},
                     {"proj", r.proj},
                     {"batch", r.batch},
                     {"seq", r.seq},
                     {"threads", r.threads},
                     {"vocab", r.vocab},
                     {"tokens_per_s", r.tokens_per_s.median},
                     {"min", r.tokens_per_s.min},
                     {"max", r.tokens_per_s.max},
                     {"reps", o.repetitions},
                     {"steps_per_rep", o.steps},
                     {"params", r.params},
                     {"flops_train_per_token", r.flops_train_per_token},
                     {"activation_bytes", r.activation_bytes},
                     {"peak_rss_bytes", r.peak_rss_bytes},
                     {"device", r.device},
                     {"precision", precision_name(o.precision)},
                     {"device_peak_bytes", r.device_peak_bytes},
                     {"blas", blas_description()},
                     {"isa", isa_summary()}};
    if (const std::optional<VsDense> vs = train_vs_dense(rows, r)) {
      j["ratio_vs_dense"] = vs->measured;
      j["flops_ratio_vs_dense"] = vs->expected;
    }
    out += j.dump() + "\n";
  }
  return out;
}

}  // namespace whtlm::perf
