// Reading what experiments and training runs left on disk into report::Data.
#include <algorithm>
#include <filesystem>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>

#include "io/json_read.hpp"
#include "whtlm/io.hpp"
#include "whtlm/limits.hpp"
#include "whtlm/report.hpp"
#include "whtlm/train.hpp"

namespace whtlm::report {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// Rates, losses and byte counts: any finite number from 0 up.
constexpr Bound kNonNegative{0, 1e300, false};

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

// The run's downstream.json, when it has one (whtlm/downstream.hpp writes it). A file
// that cannot be read leaves the proxy out with a warning; the run itself is kept.
void load_downstream(const std::string& dir, TrainRun& r, Data& data) {
  const std::string path = (fs::path(dir) / "downstream.json").string();
  std::error_code ec;
  if (!fs::exists(path, ec)) return;
  constexpr Bound kShare{0, 1, false};
  try {
    const json doc = io::parse_json(io::read_file(path), path);
    const io::JsonObject o(doc, path);
    if (o.string("kind") != "whtlm downstream") o.fail("kind", "expected \"whtlm downstream\"");
    Downstream d;
    d.bits_per_byte = o.number("bits_per_byte", kNonNegative);
    d.bytes = o.number("bytes_scored", kNonNegative);
    if (o.has("cloze")) {
      const io::JsonObject c = o.object("cloze");
      d.cloze = true;
      d.items = c.integer<std::size_t>("items", limits::file_bytes);
      d.correct = c.integer<std::size_t>("correct", limits::file_bytes);
      if (d.items == 0 || d.correct > d.items)
        c.fail("correct", "expected 0 to items (" + std::to_string(d.items) + "), items > 0");
      d.accuracy = double(d.correct) / double(d.items);
      d.chance = c.number("chance", kShare);
      d.majority_accuracy = c.number("majority_accuracy", kShare);
      d.context_bytes = c.integer<std::size_t>("context_bytes", limits::file_bytes);
      const json& words = c.at("candidates");
      if (!words.is_array()) c.fail("candidates", "expected an array of words");
      for (const json& w : words) {
        if (!w.is_string()) c.fail("candidates", "expected an array of words");
        d.candidates.push_back(w.get<std::string>());
      }
      if (d.candidates.empty()) c.fail("candidates", "expected at least one word");
      if (c.has("predictions")) {
        const json& p = c.at("predictions");
        if (!p.is_array() || p.size() != d.candidates.size())
          c.fail("predictions", "expected one count per candidate");
        std::size_t top = 0, total = 0;
        for (std::size_t k = 0; k < p.size(); ++k) {
          if (!p[k].is_number_unsigned()) c.fail("predictions", "expected counts");
          const std::size_t n = p[k].get<std::size_t>();
          if (n > d.items) c.fail("predictions", "a count above items");
          total += n;
          if (n > p[top].get<std::size_t>()) top = k;
        }
        if (total != d.items) c.fail("predictions", "the counts do not add up to items");
        d.top_answer = d.candidates[top];
        d.top_share = double(p[top].get<std::size_t>()) / double(d.items);
      }
    } else {
      d.cloze_skipped = o.string("cloze_skipped", "no cloze recorded");
    }
    d.measured = true;
    r.downstream = d;
    data.sources.push_back(path);
  } catch (const std::exception& e) {
    data.warnings.push_back(std::string(e.what()) + " (the run's downstream proxy is left out)");
  }
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
  r.scale_init = state.options.scale_init;
  r.seed = state.options.seed;
  r.batch = state.options.batch;
  r.lr = state.options.lr;
  r.precision = state.options.precision;
  r.seq = state.options.seq;
  r.steps_done = state.step;
  r.steps_total = state.total_steps;

  // A regular file only (io::read_file), read whole; lines cut short by a kill or
  // unreadable are counted and skipped, with a warning.
  std::istringstream in(io::read_file(metrics, io::kNoLimit));
  std::string line;
  std::vector<double> rates;
  std::size_t bad = 0, lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty()) continue;
    try {
      const json j = json::parse(line);
      const io::JsonObject o(j, metrics, "line " + std::to_string(lineno));
      const double step = o.number("step", limits::steps);
      if (step > double(state.step)) continue;    // after the last checkpoint: redone on resume
      if (o.boolean("skipped", false)) continue;  // a step skipped for non-finite values
      rates.push_back(o.number("tokens_per_s", kNonNegative));
      r.peak_rss_bytes = std::max(r.peak_rss_bytes,
                                  o.integer<std::size_t>("peak_rss_bytes", limits::file_bytes, 0));
      if (o.has("val_loss"))
        r.val.push_back(
            {step, o.number("tokens", limits::tokens_done), o.number("flops", limits::flops_done),
             o.number("elapsed_s", limits::elapsed), o.number("val_loss", kNonNegative)});
    } catch (const std::exception&) {
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
  load_downstream(dir, r, data);
  data.runs.push_back(std::move(r));
}

void load_infer(const std::string& path, Data& data) {
  std::istringstream in(io::read_file(path, io::kNoLimit));
  std::map<std::tuple<std::string, std::string, int, int>, InferCase> cases;
  std::vector<std::tuple<std::string, std::string, int, int>> order;
  std::string line;
  std::size_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty()) continue;
    const std::string where = "line " + std::to_string(lineno);
    try {
      const json j = io::parse_json(line, path + " " + where);
      const io::JsonObject o(j, path, where);
      if (o.string("bench", "") != "infer") continue;
      const auto key = std::make_tuple(o.string("preset"), o.string("proj"),
                                       o.integer<int>("batch", limits::batch),
                                       o.integer<int>("prompt", limits::seq));
      auto [it, fresh] = cases.try_emplace(key);
      InferCase& c = it->second;
      if (fresh) {
        order.push_back(key);
        c.size = std::get<0>(key);
        try {
          c.proj = parse_projection(std::get<1>(key));
        } catch (const std::invalid_argument& e) {
          o.fail("proj", e.what());
        }
        c.batch = std::get<2>(key);
        c.prompt = std::get<3>(key);
      }
      const perf::Summary s{o.number("tokens_per_s", kNonNegative), o.number("min", kNonNegative),
                            o.number("max", kNonNegative)};
      const std::string phase = o.string("phase");
      if (phase != "prefill" && phase != "decode")
        o.fail("phase", "expected \"prefill\" or \"decode\", found \"" + phase + "\"");
      (phase == "prefill" ? c.prefill_tokens_per_s : c.decode_tokens_per_s) = s;
      c.memory_bytes = o.number("weight_bytes", kNonNegative) +
                       o.number("kv_cache_bytes", kNonNegative) +
                       o.number("activation_bytes", kNonNegative);
    } catch (const std::exception& e) {
      const std::string what = e.what();
      throw std::runtime_error(what.rfind(path, 0) == 0 ? what : path + ": " + where + ": " + what);
    }
  }
  if (order.empty())
    throw std::runtime_error(path +
                             ": holds no `whtlm bench infer` measurement (no line with "
                             "\"bench\": \"infer\")");
  for (const auto& k : order) data.infer.push_back(cases[k]);
  data.sources.push_back(path);
}

void load_experiment(const std::string& dir, Data& data, std::optional<ScaleInit>& wht_init) {
  const std::string manifest = (fs::path(dir) / "experiment.json").string();
  const json doc = io::parse_json(io::read_file(manifest), manifest);
  const io::JsonObject m(doc, manifest);
  // The plan's first scale_init is the one its claims use (absent before the field).
  if (!wht_init && m.has("plan")) {
    const io::JsonObject plan = m.object("plan");
    if (plan.has("scale_inits")) {
      const json& v = plan.at("scale_inits");
      if (!v.is_array() || v.empty() || !v[0].is_string())
        plan.fail("scale_inits", "expected a non-empty array of names");
      try {
        wht_init = parse_scale_init(v[0].get<std::string>());
      } catch (const std::invalid_argument& e) {
        plan.fail("scale_inits", e.what());
      }
    }
  }
  if (m.has("plan")) {
    const io::JsonObject plan = m.object("plan");
    if (plan.has("note")) {
      const std::string note = plan.string("note");
      if (!note.empty()) data.notes.push_back(note);
    }
  }
  const json& commands = m.at("commands");
  if (!commands.is_array()) m.fail("commands", "expected an array");
  for (std::size_t i = 0; i < commands.size(); ++i) {
    const io::JsonObject c(commands[i], manifest, "commands[" + std::to_string(i) + "]");
    data.commands.push_back({c.string("command"), c.string("commit"), manifest});
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
  // The learning-rate sweep: each run's last validation loss is all it is read for.
  std::vector<fs::path> sweeps;
  const fs::path sweep_root = fs::path(dir) / "sweep";
  if (fs::is_directory(sweep_root))
    for (const fs::directory_entry& e : fs::directory_iterator(sweep_root))
      if (e.is_directory() && fs::exists(e.path() / "train_state.json")) sweeps.push_back(e.path());
  std::sort(sweeps.begin(), sweeps.end());
  for (const fs::path& run : sweeps) {
    Data one;
    load_run(run.string(), read_run_state(run.string()).options.preset, one);
    if (one.runs.empty()) continue;
    const TrainRun& r = one.runs.front();
    SweepRun s;
    s.name = r.name;
    s.dir = r.dir;
    s.size = r.size;
    s.proj = r.proj;
    s.scale_init = r.scale_init;
    s.lr = r.lr;
    s.diverged = fs::exists(run / "diverged.json");
    s.finished = r.finished() || s.diverged;
    s.final_loss = r.finished() && !r.val.empty() ? r.val.back().val_loss
                                                  : std::numeric_limits<double>::quiet_NaN();
    data.sweep.push_back(s);
    data.sources.insert(data.sources.end(), one.sources.begin(), one.sources.end());
  }
}

}  // namespace

Data load(const std::vector<std::string>& paths) {
  Data data;
  std::optional<ScaleInit> wht_init;
  for (const std::string& p : paths) {
    const fs::path path(p);
    if (fs::exists(path / "experiment.json"))
      load_experiment(p, data, wht_init);
    else if (fs::exists(path / "metrics.jsonl"))
      load_run(p, "", data);
    else if (fs::is_regular_file(path) && path.extension() == ".jsonl")
      load_infer(p, data);
    else
      throw std::runtime_error(p +
                               ": not an experiment folder (experiment.json), a training run "
                               "(metrics.jsonl) or a `whtlm bench infer --json` file");
  }
  if (!wht_init) {  // no plan says: the way most wht runs started (ties: the default)
    int n[2] = {0, 0};
    for (const TrainRun& r : data.runs)
      if (r.proj == Projection::wht) ++n[int(r.scale_init)];
    wht_init = n[0] == n[1] ? kDefaultScaleInit : n[0] > n[1] ? ScaleInit(0) : ScaleInit(1);
  }
  data.wht_init = *wht_init;
  std::map<std::tuple<std::string, int, int, std::uint64_t>, int> seen;
  for (const TrainRun& r : data.runs) {
    const int init = r.proj == Projection::wht ? int(r.scale_init) : -1;
    if (++seen[{r.size, int(r.proj), init, r.seed}] == 2)
      data.warnings.push_back(
          "size " + r.size + ", " + projection_name(r.proj) +
          (init < 0 ? "" : std::string(" (scale ") + scale_init_name(r.scale_init) + ")") +
          ", seed " + std::to_string(r.seed) + ": more than one run; only the first read is used");
  }
  return data;
}

}  // namespace whtlm::report
