// `whtlm bench infer`: prefill and decode throughput of the output projections side
// by side over model size, batch size and prompt length.
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "perf/vs_dense.hpp"
#include "whtlm/infer.hpp"
#include "whtlm/matmul.hpp"
#include "whtlm/model.hpp"
#include "whtlm/perf.hpp"
#include "whtlm/threads.hpp"
#include "whtlm/transformer.hpp"

namespace whtlm::perf {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Bytes of weights one decode step reads: everything but the rows of the token (and
// position) tables it does not use. A tied head reads the whole token table.
double weight_bytes_read(const ParamLayout& layout) {
  double n = double(layout.count());
  const ModelConfig& c = layout.config();
  const double table = double(c.vocab_size) * c.d_model;
  if (!c.tied_embeddings()) n -= table - c.d_model;
  if (c.family == Family::gpt2) n -= double(c.max_seq - 1) * c.d_model;  // wpe: one row
  return 4.0 * n;
}

}  // namespace

InferBenchResult infer_bench(const InferBenchOptions& o) {
  if (o.decode < 1 || o.vocab < 1 || o.repetitions < 1)
    throw std::invalid_argument("bench infer: --decode, --vocab and --reps must be >= 1");
  for (int b : o.batches)
    if (b < 1) throw std::invalid_argument("bench infer: --batch values must be >= 1");
  for (int p : o.prompts)
    if (p < 1) throw std::invalid_argument("bench infer: --prompt values must be >= 1");
  if (o.context < 0) throw std::invalid_argument("bench infer: --context must be >= 0");
  std::vector<std::pair<std::string, ModelConfig>> shapes = o.models;
  if (shapes.empty())
    for (const std::string& name : o.presets) shapes.emplace_back(name, preset(name));
  std::vector<ModelConfig> configs;
  for (auto [name, c] : shapes) {
    c.vocab_size = o.vocab;
    if (o.context > 0) c.max_seq = o.context;
    for (const std::string& p : o.projections) {
      c.projection = parse_projection(p);
      c.validate();
    }
    configs.push_back(c);
  }
  set_num_threads(o.threads > 0 ? o.threads : available_cores());

  InferBenchResult result;
  for (std::size_t pi = 0; pi < configs.size(); ++pi) {
    std::vector<std::unique_ptr<Transformer>> models;
    for (const std::string& p : o.projections) {
      ModelConfig c = configs[pi];
      c.projection = parse_projection(p);
      models.push_back(std::make_unique<Transformer>(c, o.device, o.precision));
      models.back()->init_weights(1);
    }
    const ModelConfig& base = configs[pi];
    for (int batch : o.batches)
      for (int prompt : o.prompts) {
        const std::string name = shapes[pi].first + " batch " + std::to_string(batch) + " prompt " +
                                 std::to_string(prompt);
        const int len = prompt + o.decode;
        if (len > base.max_seq) {
          result.skipped.push_back(name + ": prompt + decode = " + std::to_string(len) +
                                   " exceeds the context " + std::to_string(base.max_seq) +
                                   " (--context raises it)");
          continue;
        }
        if (double(batch) * prompt > o.max_prefill_tokens) {
          result.skipped.push_back(name + ": more than --max-prefill-tokens");
          continue;
        }
        const std::size_t kv = InferenceSession::kv_cache_bytes(base, batch, len);
        if (double(kv) > o.max_kv_gib * 1073741824.0) {
          result.skipped.push_back(name + ": KV cache of " + std::to_string(kv >> 20) +
                                   " MiB exceeds --max-kv-gib");
          continue;
        }
        std::mt19937 rng(7);
        std::uniform_int_distribution<int> tok(0, o.vocab - 1);
        std::vector<std::vector<std::int32_t>> prompts(
            std::size_t(batch), std::vector<std::int32_t>(static_cast<std::size_t>(prompt)));
        for (auto& p : prompts)
          for (auto& t : p) t = tok(rng);
        std::vector<int> slots(static_cast<std::size_t>(batch));
        std::vector<std::int32_t> next(static_cast<std::size_t>(batch));
        for (int i = 0; i < batch; ++i) slots[std::size_t(i)] = i;

        const std::size_t n = o.projections.size();
        std::vector<std::vector<double>> pre(n), dec(n), ms(n);
        std::vector<std::size_t> rss(n, 0), act(n, 0), peak(n, 0), packed(n, 0);
        for (int rep = 0; rep <= o.repetitions; ++rep) {  // round 0 warms up, untimed
          for (std::size_t k = 0; k < n; ++k) {
            Transformer& m = *models[k];
            backend::Backend& be = m.backend();
            be.synchronize();
            be.release_caches();  // shared scratch counts for every case, not only the first
            be.reset_peak();      // from what is held now: every model's weights
            const std::size_t held = be.peak_allocated();
            InferenceSession s(m, batch, len, kDefaultChunkRows, o.weights);
            // Prefill and decode return logits in host memory, so each has finished on
            // the device when it returns.
            auto t0 = Clock::now();
            s.prefill(prompts);
            const double tp = seconds_since(t0);
            for (int i = 0; i < batch; ++i) next[std::size_t(i)] = tok(rng);
            t0 = Clock::now();
            for (int step = 0; step < o.decode; ++step) s.decode(slots, next);
            const double td = seconds_since(t0);
            peak[k] = std::max(peak[k], be.peak_allocated() - held + 4 * m.layout().total_floats());
            if (rep == 0) continue;
            pre[k].push_back(double(batch) * prompt / tp);
            dec[k].push_back(double(batch) * o.decode / td);
            ms[k].push_back(1e3 * td / o.decode);
            rss[k] = std::max(rss[k], current_rss_bytes());
            act[k] = s.activation_bytes();
            packed[k] = s.packed_weight_bytes();
          }
          if (o.progress && rep > 0)
            o.progress(name + " round " + std::to_string(rep) + "/" +
                       std::to_string(o.repetitions));
        }
        for (std::size_t k = 0; k < n; ++k) {
          InferBenchRow r;
          r.preset = shapes[pi].first;
          r.proj = o.projections[k];
          r.batch = batch;
          r.prompt = prompt;
          r.decode = o.decode;
          r.threads = num_threads();
          r.prefill_tokens_per_s = summarize(pre[k]);
          r.decode_tokens_per_s = summarize(dec[k]);
          r.decode_ms_per_step = summarize(ms[k]);
          const ParamLayout& lay = models[k]->layout();
          r.weight_bytes = 4.0 * double(lay.count());
          r.weight_bytes_read = weight_bytes_read(lay);
          const ModelCost cost = model_cost(models[k]->config(), prompt);
          const double head = cost.by_component[int(Component::head)].flops_forward;
          r.prefill_flops_per_token = cost.total.flops_forward - head * (1.0 - 1.0 / prompt);
          r.kv_cache_bytes = kv;
          r.activation_bytes = act[k];
          r.rss_bytes = rss[k];
          r.peak_rss_bytes = peak_rss_bytes();
          r.device = models[k]->backend().description();
          r.device_peak_bytes = peak[k];
          r.precision = o.precision;
          r.weights = o.weights;
          r.packed_weight_bytes = packed[k];
          result.rows.push_back(r);
        }
      }
  }
  return result;
}

std::optional<InferVsDense> infer_vs_dense(const std::vector<InferBenchRow>& rows,
                                           const InferBenchRow& r) {
  const InferBenchRow* dense =
      dense_row(rows, r, [](const InferBenchRow& d, const InferBenchRow& x) {
        return d.preset == x.preset && d.batch == x.batch && d.prompt == x.prompt;
      });
  if (dense == nullptr) return std::nullopt;
  return InferVsDense{vs_dense(r.prefill_tokens_per_s.median, dense->prefill_tokens_per_s.median,
                               r.prefill_flops_per_token, dense->prefill_flops_per_token),
                      vs_dense(r.decode_tokens_per_s.median, dense->decode_tokens_per_s.median,
                               r.weight_bytes_read, dense->weight_bytes_read)};
}

std::string infer_bench_jsonl(const InferBenchResult& result, int repetitions) {
  std::string out;
  for (const InferBenchRow& r : result.rows) {
    const std::optional<InferVsDense> vs = infer_vs_dense(result.rows, r);
    for (const bool prefill : {true, false}) {
      const Summary& sm = prefill ? r.prefill_tokens_per_s : r.decode_tokens_per_s;
      nlohmann::json j{{"bench", "infer"},
                       {"preset", r.preset},
                       {"proj", r.proj},
                       {"batch", r.batch},
                       {"prompt", r.prompt},
                       {"decode_steps", r.decode},
                       {"phase", prefill ? "prefill" : "decode"},
                       {"threads", r.threads},
                       {"device", r.device},
                       {"device_peak_bytes", r.device_peak_bytes},
                       {"tokens_per_s", sm.median},
                       {"min", sm.min},
                       {"max", sm.max},
                       {"reps", repetitions},
                       {"weight_bytes", r.weight_bytes},
                       {"weight_bytes_read_per_step", r.weight_bytes_read},
                       {"prefill_flops_per_token", r.prefill_flops_per_token},
                       {"kv_cache_bytes", r.kv_cache_bytes},
                       {"activation_bytes", r.activation_bytes},
                       {"rss_bytes", r.rss_bytes},
                       {"peak_rss_bytes", r.peak_rss_bytes},
                       {"blas", blas_description()},
                       {"isa", isa_summary()},
                       {"precision", precision_name(r.precision)},
                       {"weights", weight_format_name(r.weights)},
                       {"packed_weight_bytes", r.packed_weight_bytes}};
      if (!prefill) j["ms_per_step"] = r.decode_ms_per_step.median;
      if (vs) {
        const VsDense& v = prefill ? vs->prefill : vs->decode;
        j["ratio_vs_dense"] = v.measured;
        j["expected_ratio_vs_dense"] = v.expected;
        j["expected_from"] = prefill ? "flops" : "weight_bytes";
      }
      out += j.dump() + "\n";
    }
  }
  return out;
}

}  // namespace whtlm::perf
