// Reading what experiments and training runs left on disk into report::Data.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <tuple>

#include "whtlm/io.hpp"
#include "whtlm/report.hpp"
#include "whtlm/train.hpp"

namespace whtlm::report {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// A name for a shape, used for runs trained outside an experiment: "L4-d256-h4",
// with "-gpt2" for that family and "-v8192" for a vocabulary other than bytes.
std::string shape_name(const ModelConfig& c) {
  std::string s("L");  // piecewise: GCC 12 warns falsely on "L" + std::to_string(...)
  s += std::to_string(c.n_layer);
  s += "-d" + std::to_string(c.d_model);
  s += "-h" + std::to_string(c.n_head);
  if (c.n_kv_head != c.n_head) s += "-kv" + std::to_string(c.n_kv_head);
  if (c.family == Family::gpt2) s += "-gpt2";
  if (c.vocab_size != 256) s += "-v" + std::to_string(c.vocab_size);
  return s;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void load_run(const std::string& dir, const std::string& size, Data& data) {
  const std::string metrics = (fs::path(dir) / "metrics.jsonl").string();
  if (!fs::exists(fs::path(dir) / "train_state.json")) {
    data.warnings.push_back(dir + ": no checkpoint yet (train_state.json missing); left out");
    return;
  }
  const RunState state = read_run_state(dir);
  TrainRun r;
  r.dir = dir;
  r.name = fs::path(dir).filename().string();
  if (r.name.empty()) r.name = fs::path(dir).parent_path().filename().string();
  r.model = state.options.model;
  r.size = size.empty() ? shape_name(r.model) : size;
  r.proj = r.model.projection;
  r.seed = state.options.seed;
  r.batch = state.options.batch;
  r.seq = state.options.seq;
  r.steps_done = state.step;
  r.steps_total = state.total_steps;

  std::ifstream in(metrics);
  if (!in) throw std::runtime_error(metrics + ": cannot open");
  std::string line;
  std::vector<double> rates;
  std::size_t bad = 0, lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty()) continue;
    try {
      const json j = json::parse(line);
      const double step = j.at("step").get<double>();
      if (step > double(state.step)) continue;  // after the last checkpoint: redone on resume
      rates.push_back(j.at("tokens_per_s").get<double>());
      r.peak_rss_bytes = std::max(r.peak_rss_bytes, j.value("peak_rss_bytes", std::size_t(0)));
      if (j.contains("val_loss"))
        r.val.push_back({step, j.at("tokens").get<double>(), j.at("flops").get<double>(),
                         j.at("elapsed_s").get<double>(), j.at("val_loss").get<double>()});
    } catch (const json::exception&) {
      ++bad;
    }
  }
  if (bad > 0)
    data.warnings.push_back(metrics + ": " + std::to_string(bad) + " unreadable line(s) skipped");
  r.tokens_per_s = median(rates);
  if (!r.finished())
    data.warnings.push_back(dir + ": unfinished (step " + std::to_string(r.steps_done) + " of " +
                            std::to_string(r.steps_total) + ")");
  data.sources.push_back(metrics);
  data.runs.push_back(std::move(r));
}

void load_infer(const std::string& path, Data& data) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot open");
  std::map<std::tuple<std::string, std::string, int, int>, InferCase> cases;
  std::vector<std::tuple<std::string, std::string, int, int>> order;
  std::string line;
  std::size_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty()) continue;
    try {
      const json j = json::parse(line);
      if (j.value("bench", "") != "infer") continue;
      const auto key =
          std::make_tuple(j.at("preset").get<std::string>(), j.at("proj").get<std::string>(),
                          j.at("batch").get<int>(), j.at("prompt").get<int>());
      auto [it, fresh] = cases.try_emplace(key);
      InferCase& c = it->second;
      if (fresh) {
        order.push_back(key);
        c.size = std::get<0>(key);
        c.proj = parse_projection(std::get<1>(key));
        c.batch = std::get<2>(key);
        c.prompt = std::get<3>(key);
      }
      const perf::Summary s{j.at("tokens_per_s").get<double>(), j.at("min").get<double>(),
                            j.at("max").get<double>()};
      (j.at("phase").get<std::string>() == "prefill" ? c.prefill_tokens_per_s
                                                     : c.decode_tokens_per_s) = s;
      c.memory_bytes = j.at("weight_bytes").get<double>() + j.at("kv_cache_bytes").get<double>() +
                       j.at("activation_bytes").get<double>();
    } catch (const std::exception& e) {
      throw std::runtime_error(path + ": line " + std::to_string(lineno) + ": " + e.what());
    }
  }
  for (const auto& k : order) data.infer.push_back(cases[k]);
  data.sources.push_back(path);
}

void load_experiment(const std::string& dir, Data& data) {
  const std::string manifest = (fs::path(dir) / "experiment.json").string();
  json doc;
  try {
    doc = json::parse(io::read_file(manifest));
    for (const json& c : doc.at("commands"))
      data.commands.push_back(
          {c.at("command").get<std::string>(), c.at("commit").get<std::string>(), manifest});
  } catch (const json::exception& e) {
    throw std::runtime_error(manifest + ": " + e.what());
  }
  data.sources.push_back(manifest);
  std::vector<fs::path> runs;
  const fs::path root = fs::path(dir) / "runs";
  if (fs::is_directory(root))
    for (const fs::directory_entry& e : fs::directory_iterator(root))
      if (e.is_directory()) runs.push_back(e.path());
  std::sort(runs.begin(), runs.end());
  for (const fs::path& run : runs) {
    if (!fs::exists(run / "train_state.json")) {
      data.warnings.push_back(run.string() + ": no checkpoint yet; left out");
      continue;
    }
    // Inside an experiment the run's preset field holds its size name.
    load_run(run.string(), read_run_state(run.string()).options.preset, data);
  }
  const fs::path bench = fs::path(dir) / "bench" / "infer.jsonl";
  if (fs::exists(bench)) load_infer(bench.string(), data);
}

}  // namespace

Data load(const std::vector<std::string>& paths) {
  Data data;
  for (const std::string& p : paths) {
    const fs::path path(p);
    if (fs::exists(path / "experiment.json"))
      load_experiment(p, data);
    else if (fs::exists(path / "metrics.jsonl"))
      load_run(p, "", data);
    else if (fs::is_regular_file(path) && path.extension() == ".jsonl")
      load_infer(p, data);
    else
      throw std::runtime_error(p +
                               ": not an experiment folder (experiment.json), a training run "
                               "(metrics.jsonl) or a `whtlm bench infer --json` file");
  }
  std::map<std::tuple<std::string, int, std::uint64_t>, int> seen;
  for (const TrainRun& r : data.runs)
    if (++seen[{r.size, int(r.proj), r.seed}] == 2)
      data.warnings.push_back("size " + r.size + ", " + projection_name(r.proj) + ", seed " +
                              std::to_string(r.seed) +
                              ": more than one run; each counts as a seed");
  return data;
}

}  // namespace whtlm::report
