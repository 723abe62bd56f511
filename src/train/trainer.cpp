// The trainer: one run folder, read top to bottom as
//   load data -> build the model -> for each step: accumulate gradients over
//   micro-batches, clip, AdamW -> log -> evaluate / checkpoint at intervals.
// A run folder holds config.json + model.safetensors (Hugging Face layout),
// optimizer.safetensors (AdamW moments), train_state.json (step, counters and the
// options the run was started with) and metrics.jsonl (one record per step).
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "backend/backend.hpp"
#include "io/json_read.hpp"
#include "whtlm/checkpoint.hpp"
#include "whtlm/io.hpp"
#include "whtlm/limits.hpp"
#include "whtlm/threads.hpp"
#include "whtlm/tokenizer.hpp"
#include "whtlm/train.hpp"

namespace whtlm {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

json option_fields(const TrainOptions& o) {
  return {{"config", json::parse(config_to_json(o.model))},
          {"preset", o.preset},
          {"data",
           {{"path", o.data.path},
            {"val_path", o.data.val_path},
            {"val_fraction", o.data.val_fraction},
            {"chunk_tokens", o.data.chunk_tokens},
            {"tokenizer", o.data.tokenizer}}},
          {"batch", o.batch},
          {"seq", o.seq},
          {"accum", o.accum},
          {"steps", o.steps},
          {"tokens", o.tokens},
          {"flops", o.flops},
          {"lr", o.lr},
          {"min_lr_ratio", o.min_lr_ratio},
          {"warmup", o.warmup},
          {"beta1", o.adamw.beta1},
          {"beta2", o.adamw.beta2},
          {"eps", o.adamw.eps},
          {"weight_decay", o.adamw.weight_decay},
          {"clip", o.clip},
          {"seed", o.seed},
          {"scale_init", scale_init_name(o.scale_init)},
          {"eval_every", o.eval_every},
          {"eval_batches", o.eval_batches},
          {"save_every", o.save_every},
          {"threads", o.threads},
          {"device", device_name(o.device)},
          {"precision", precision_name(o.precision)},
          {"on_nonfinite", on_nonfinite_name(o.on_nonfinite)},
          {"max_skips", o.max_skips}};
}

json options_to_json(const TrainOptions& o) {
  json j = option_fields(o);
  if (!o.init_from.empty()) j["init_from"] = o.init_from;  // absent: init_weights
  return j;
}

// The options a run was started with, every field checked against the bounds the
// command line uses (whtlm/limits.hpp), errors naming the file and the field.
TrainOptions options_from_json(const io::JsonObject& j) {
  TrainOptions o;
  const std::string& source = j.source();
  o.model = config_from_json(j.at("config").dump(), source + " (field \"options.config\")");
  o.preset = j.string("preset");
  const io::JsonObject d = j.object("data");
  o.data.path = d.string("path");
  o.data.val_path = d.string("val_path");
  o.data.val_fraction = d.number("val_fraction", limits::val_fraction);
  o.data.chunk_tokens = d.integer<std::size_t>("chunk_tokens", limits::chunk_tokens);
  o.data.tokenizer = d.string("tokenizer", "byte");  // absent before tokenizers
  o.batch = j.integer<int>("batch", limits::batch);
  o.seq = j.integer<int>("seq", limits::seq);
  o.accum = j.integer<int>("accum", limits::accum);
  o.steps = j.integer<std::int64_t>("steps", limits::steps);
  o.tokens = j.integer<std::int64_t>("tokens", limits::tokens);
  o.flops = j.number("flops", limits::flops);
  o.lr = j.number("lr", limits::lr);
  o.min_lr_ratio = j.number("min_lr_ratio", limits::min_lr_ratio);
  o.warmup = j.integer<std::int64_t>("warmup", limits::warmup);
  o.adamw.beta1 = static_cast<float>(j.number("beta1", limits::adam_beta));
  o.adamw.beta2 = static_cast<float>(j.number("beta2", limits::adam_beta));
  o.adamw.eps = static_cast<float>(j.number("eps", limits::adam_eps));
  o.adamw.weight_decay = static_cast<float>(j.number("weight_decay", limits::weight_decay));
  o.clip = j.number("clip", limits::clip);
  o.seed = j.unsigned_integer("seed");
  o.eval_every = j.integer<std::int64_t>("eval_every", limits::every);
  o.eval_batches = j.integer<int>("eval_batches", limits::eval_batches);
  o.save_every = j.integer<std::int64_t>("save_every", limits::every);
  o.threads = j.integer<int>("threads", limits::threads);
  auto parsed = [&](const char* field, const std::string& fallback, auto parse) {
    try {
      return parse(j.string(field, fallback));  // absent in runs from before the option
    } catch (const std::invalid_argument& e) {
      j.fail(field, e.what());
    }
  };
  o.device = parsed("device", "cpu", parse_device);
  o.precision = parsed("precision", "fp32", parse_precision);
  o.on_nonfinite = parsed("on_nonfinite", "stop", parse_on_nonfinite);
  o.scale_init = parsed("scale_init", "one", parse_scale_init);  // gamma = 1 before the option
  o.max_skips = j.integer<std::int64_t>("max_skips", limits::skip_limit, 100);
  o.init_from = j.string("init_from", "");  // absent: the run started from init_weights
  return o;
}

// Every numeric option against its bound (the command line's names: values from
// train_state.json were checked as they were read), then what relates options.
void check_options(const TrainOptions& o) {
  auto fail = [](const std::string& what) { throw std::invalid_argument(what); };
  o.model.validate();
  check_bound(limits::batch, o.batch, "--batch");
  check_bound(limits::accum, o.accum, "--accum");
  check_bound(limits::seq, o.seq, "--seq");
  if (o.seq > o.model.max_seq)
    fail("--seq " + std::to_string(o.seq) + " is longer than the model's context of " +
         std::to_string(o.model.max_seq));
  check_bound(limits::steps, double(o.steps), "--steps");
  check_bound(limits::tokens, double(o.tokens), "--tokens");
  check_bound(limits::flops, o.flops, "--flops");
  const int lengths = (o.steps > 0) + (o.tokens > 0) + (o.flops > 0);
  if (lengths == 0) fail("give the run's length: --steps, --tokens or --flops");
  if (lengths > 1)
    fail("give the run's length once: --steps, --tokens or --flops, not " +
         std::string(o.steps > 0 ? "--steps" : "--tokens") + " and " +
         (o.flops > 0 ? "--flops" : "--tokens"));
  check_bound(limits::lr, o.lr, "--lr");
  check_bound(limits::min_lr_ratio, o.min_lr_ratio, "--min-lr-ratio");
  check_bound(limits::warmup, double(o.warmup), "--warmup");
  check_bound(limits::adam_beta, o.adamw.beta1, "beta1");
  check_bound(limits::adam_beta, o.adamw.beta2, "beta2");
  check_bound(limits::adam_eps, o.adamw.eps, "eps");
  check_bound(limits::weight_decay, o.adamw.weight_decay, "--weight-decay");
  check_bound(limits::clip, o.clip, "--clip");
  check_bound(limits::every, double(o.eval_every), "--eval-every");
  check_bound(limits::eval_batches, o.eval_batches, "--eval-batches");
  check_bound(limits::every, double(o.save_every), "--save-every");
  check_bound(limits::threads, o.threads, "--threads");
  check_bound(limits::val_fraction, o.data.val_fraction, "--val-fraction");
  check_bound(limits::chunk_tokens, double(o.data.chunk_tokens), "--chunk-tokens");
  check_bound(limits::skip_limit, double(o.max_skips), "--max-skips");
  if (o.out.empty()) fail("--out: a run folder is needed");
}

struct Counters {
  std::int64_t step = 0;  // completed steps
  double tokens = 0, flops = 0, elapsed = 0;
  std::int64_t skipped = 0;  // steps skipped for a non-finite loss or gradient
};

std::string path_in(const std::string& dir, const char* name) {
  return (fs::path(dir) / name).string();
}
std::string path_in(const std::string& dir, const std::string& name) {
  return (fs::path(dir) / name).string();
}

constexpr int kKeptCheckpoints = 2;  // the newest and the one before it, to fall back on
constexpr const char* kCheckpointFiles[] = {"model.safetensors", "config.json",
                                            "optimizer.safetensors", "tokenizer.json"};

// "checkpoints/step-N": the only form of checkpoint path the trainer writes, and so
// the only one it reads or removes (a train_state.json naming "../../x" or "/etc" is
// refused before anything is touched).
std::string checkpoint_name(std::int64_t step) {
  return "checkpoints/step-" + std::to_string(step);
}

// The step of a checkpoints/ entry named step-N (N digits only), or -1.
std::int64_t step_of_entry(const std::string& name) {
  if (name.rfind("step-", 0) != 0 || name.size() == 5 || name.size() > 5 + 18) return -1;
  for (std::size_t i = 5; i < name.size(); ++i)
    if (name[i] < '0' || name[i] > '9') return -1;
  return std::stoll(name.substr(5));
}

// Removes the checkpoints/step-N folders that are not `keep` (left behind by a kill
// between writing a checkpoint and committing it, or superseded). Nothing else in
// checkpoints/ is touched: only folders of the trainer's own naming.
void remove_stale_checkpoints(const std::string& dir, const std::vector<CheckpointRecord>& keep) {
  const fs::path root = fs::path(dir) / "checkpoints";
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return;
  std::vector<fs::path> stale;
  for (const fs::directory_entry& e : fs::directory_iterator(root, ec)) {
    const std::string name = e.path().filename().string();
    if (step_of_entry(name) < 0 || !e.is_directory(ec) || e.is_symlink(ec)) continue;
    bool kept = false;
    for (const CheckpointRecord& k : keep) kept = kept || k.path == "checkpoints/" + name;
    if (!kept) stale.push_back(e.path());
  }
  for (const fs::path& p : stale) fs::remove_all(p, ec);
}

// Checkpoints survive a kill at any instant. Each one is first written whole into
// its own folder, checkpoints/step-N/ (model.safetensors, config.json,
// optimizer.safetensors, tokenizer.json, checksums.json); then train_state.json is
// replaced atomically to name it, with every kept checkpoint's checksums (the
// commit); then the run folder's top-level files become hard links to the new files
// (each replaced atomically; a copy where links are not possible); then folders of
// checkpoints no longer kept go. Resume reads only what train_state.json names, so it
// never sees a half-written checkpoint, and it checks what it reads.
void link_or_copy(const fs::path& from, const fs::path& to) {
  const fs::path tmp = to.string() + ".tmp." + std::to_string(::getpid());
  std::error_code ec;
  fs::remove(tmp, ec);
  fs::create_hard_link(from, tmp, ec);
  if (ec) fs::copy_file(from, tmp, fs::copy_options::overwrite_existing);
  fs::rename(tmp, to);
}

json record_to_json(const CheckpointRecord& r) {
  return {{"step", r.step},
          {"path", r.path},
          {"tokens", r.tokens},
          {"flops", r.flops},
          {"elapsed_s", r.elapsed_s},
          {"skipped_steps", r.skipped_steps},
          {"files", checksums_to_json(r.files)}};
}

void write_state(const std::string& dir, const TrainOptions& o, const Counters& c,
                 const std::vector<CheckpointRecord>& kept) {
  json list = json::array();
  for (const CheckpointRecord& r : kept) list.push_back(record_to_json(r));
  const json state{{"step", c.step},
                   {"checkpoint", kept.empty() ? std::string() : kept.front().path},
                   {"tokens", c.tokens},
                   {"flops", c.flops},
                   {"elapsed_s", c.elapsed},
                   {"skipped_steps", c.skipped},
                   {"threads", num_threads()},
                   {"checkpoints", list},
                   {"options", options_to_json(o)}};
  io::write_file_atomic(path_in(dir, "train_state.json"), state.dump(2) + "\n");
}

// Writes checkpoint c.step and commits it; `kept` (newest first) is updated.
void save_checkpoint(const std::string& dir, const TrainOptions& o, Transformer& model, AdamW& opt,
                     const Counters& c, const std::string& tokenizer_json,
                     std::vector<CheckpointRecord>& kept) {
  model.download_params();
  opt.download_state();
  CheckpointRecord rec{c.step, c.skipped, c.tokens, c.flops, c.elapsed, checkpoint_name(c.step),
                       {}};
  const fs::path ck = fs::path(dir) / rec.path;
  const std::map<std::string, std::string> meta{{"step", std::to_string(c.step)}};
  rec.files = save_model(ck.string(), model.layout(), model.params().data(), meta);
  rec.files["tokenizer.json"] =
      io::write_file_atomic((ck / "tokenizer.json").string(), tokenizer_json);
  const auto n = static_cast<std::int64_t>(model.layout().total_floats());
  rec.files["optimizer.safetensors"] =
      io::write_safetensors((ck / "optimizer.safetensors").string(),
                            {{"exp_avg", io::DType::f32, {n}, opt.exp_avg().data()},
                             {"exp_avg_sq", io::DType::f32, {n}, opt.exp_avg_sq().data()}},
                            meta);
  write_checksums(ck.string(), rec.files);
  std::erase_if(kept, [&](const CheckpointRecord& k) { return k.step == rec.step; });
  kept.insert(kept.begin(), rec);
  if (kept.size() > kKeptCheckpoints) kept.resize(kKeptCheckpoints);
  write_state(dir, o, c, kept);
  for (const char* f : kCheckpointFiles) link_or_copy(ck / f, fs::path(dir) / f);
  link_or_copy(ck / kChecksumsFile, fs::path(dir) / kChecksumsFile);
  remove_stale_checkpoints(dir, kept);
}

// Keeps the metrics records of steps up to `step` (a resumed run rewrites the rest).
void truncate_metrics(const std::string& path, std::int64_t step) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return;
  std::istringstream in(io::read_file(path, io::kNoLimit));
  std::string line, kept;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    try {
      if (json::parse(line).at("step").get<std::int64_t>() > step) continue;
    } catch (const json::exception&) {
      continue;  // a line cut short by a kill
    }
    kept += line + "\n";
  }
  io::write_file_atomic(path, kept);
}

std::string human(double v) {
  char buf[32];
  if (v >= 1e12)
    std::snprintf(buf, sizeof buf, "%.2fT", v / 1e12);
  else if (v >= 1e9)
    std::snprintf(buf, sizeof buf, "%.2fG", v / 1e9);
  else if (v >= 1e6)
    std::snprintf(buf, sizeof buf, "%.2fM", v / 1e6);
  else if (v >= 1e3)
    std::snprintf(buf, sizeof buf, "%.1fk", v / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.0f", v);
  return buf;
}

std::string duration(double s) {
  char buf[32];
  const long t = std::lround(s);
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, t / 60 % 60);
  else
    std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  return buf;
}

// The optimizer's moments from a checkpoint: both present with the layout's size, and
// finite (exp_avg_sq also non-negative), else the error names the tensor.
void load_moments(const std::string& path, AdamW& opt, std::size_t n,
                  std::map<std::string, std::string>& metadata) {
  const io::SafetensorsReader os(path);
  const std::vector<std::int64_t> shape{static_cast<std::int64_t>(n)};
  os.read_f32("exp_avg", shape, opt.exp_avg().data());
  os.read_f32("exp_avg_sq", shape, opt.exp_avg_sq().data());  // uploaded at the first update
  for (std::size_t i = 0; i < n; ++i) {
    const float m = opt.exp_avg()[i], v = opt.exp_avg_sq()[i];
    if (!std::isfinite(m) || !std::isfinite(v) || v < 0)
      throw std::runtime_error(path + ": tensor '" + (std::isfinite(m) ? "exp_avg_sq" : "exp_avg") +
                               "' holds " + std::to_string(std::isfinite(m) ? v : m) +
                               " at element " + std::to_string(i) +
                               ": the optimizer state is damaged");
  }
  metadata = os.metadata();
}

// Where training found a non-finite value: the loss, the gradient norm and the first
// tensor (layout order) whose gradient holds one, with how many do.
std::string nonfinite_report(Transformer& model, std::int64_t step, double loss, double norm) {
  const std::span<const float> g = model.grads();
  const TensorSpec* first = nullptr;
  std::size_t affected = 0;
  for (const TensorSpec& t : model.layout().tensors()) {
    bool bad = false;
    for (std::size_t i = 0; i < t.numel && !bad; ++i) bad = !std::isfinite(g[t.offset + i]);
    if (bad && first == nullptr) first = &t;
    affected += bad ? 1 : 0;
  }
  std::string s = "step " + std::to_string(step) + ": the loss is " + std::to_string(loss) +
                  " and the gradient norm " + std::to_string(norm);
  if (first != nullptr)
    s += "; the first tensor with a non-finite gradient is " + first->name + " (" +
         std::to_string(affected) + " of " + std::to_string(model.layout().tensors().size()) +
         " tensors affected)";
  else
    s += "; every gradient is finite (the loss overflowed)";
  model.download_params();  // the host copy is stale on a GPU
  const std::span<const float> w = model.params();
  for (const TensorSpec& t : model.layout().tensors())
    for (std::size_t i = 0; i < t.numel; ++i)
      if (!std::isfinite(w[t.offset + i])) {
        s += "; the weights already hold a non-finite value, in " + t.name;
        return s;
      }
  return s;
}

// The checkpoint a run starts from (--init): its model must be the run's, its files as
// its checksums.json (if any) records them; checked before the model is allocated.
void check_init_checkpoint(const TrainOptions& o) {
  const ModelConfig c = read_config(o.init_from);
  if (c != o.model)
    throw std::invalid_argument("--init " + o.init_from + ": its model (" + describe(c) +
                                ") is not the run's (" + describe(o.model) + ")");
  verify_checkpoint_files(o.init_from);
  check_weights_file(path_in(o.init_from, "model.safetensors"), ParamLayout(c));
}

// resume_from: the checkpoint to start from (nullptr: a fresh run).
TrainResult run(TrainOptions o, Counters c, const CheckpointRecord* resume_from,
                std::vector<CheckpointRecord> kept, std::int64_t stop_after) {
  check_options(o);
  set_num_threads(o.threads > 0 ? o.threads : available_cores());
  o.data.vocab_size = o.model.vocab_size;
  const data::TokenSplit split = data::load_tokens(o.data);
  const std::string tokenizer_json = data::data_tokenizer(o.data).to_json();

  if (resume_from == nullptr && !o.init_from.empty()) check_init_checkpoint(o);
  Transformer model(o.model, o.device, o.precision);
  model.check_training_memory(o.batch, o.seq);
  AdamW opt(model.layout(), o.adamw);
  if (resume_from == nullptr && o.init_from.empty()) {
    model.init_weights(o.seed, o.scale_init);
  } else if (resume_from == nullptr) {
    // A new run (or one killed before its first checkpoint, started over) from another
    // checkpoint's weights; a resumed run reads its own checkpoint below instead.
    load_weights(path_in(o.init_from, "model.safetensors"), model.layout(), model.params().data());
    model.upload_params();
  } else {
    const std::string from = path_in(o.out, resume_from->path);
    const auto m1 =
        load_weights(path_in(from, "model.safetensors"), model.layout(), model.params().data());
    model.upload_params();
    std::map<std::string, std::string> m2;
    load_moments(path_in(from, "optimizer.safetensors"), opt, model.layout().total_floats(), m2);
    const std::string want = std::to_string(c.step);
    auto step_of = [](const std::map<std::string, std::string>& m) {
      const auto it = m.find("step");
      return it == m.end() ? std::string("none") : it->second;
    };
    if (step_of(m1) != want || step_of(m2) != want)
      throw std::runtime_error(from + ": checkpoint files disagree (train_state.json step " + want +
                               ", model.safetensors " + step_of(m1) + ", optimizer.safetensors " +
                               step_of(m2) + "): the checkpoint was changed after it was written");
  }

  const std::int64_t tokens_per_step = std::int64_t(o.batch) * o.seq * o.accum;
  const ModelCost cost = model_cost(o.model, o.seq);
  const double flops_per_step = cost.flops_train_per_token() * double(tokens_per_step);
  const std::int64_t total = total_steps(o);
  const std::int64_t warmup = o.warmup >= 0 ? o.warmup : std::min<std::int64_t>(200, total / 20);
  const std::int64_t last = stop_after > 0 ? std::min(stop_after, total) : total;

  if (split.train.size() < std::size_t(o.seq) + 1)
    throw std::invalid_argument("--seq " + std::to_string(o.seq) + ": the training data (" +
                                split.description +
                                ") is too short for one window of seq + 1 "
                                "tokens");
  const data::BatchSampler sampler(
      split.train, o.batch, o.seq, o.seed,
      split.sequential ? data::BatchSampler::Order::sequential : data::BatchSampler::Order::random,
      o.accum);
  std::vector<std::int32_t> inputs(std::size_t(o.batch) * o.seq * o.accum), targets(inputs.size());
  model.reserve(o.batch, o.seq);

  // A fresh run is whtlm's from here on, before its first step: state with no
  // checkpoint yet (a run killed before its first checkpoint starts over on --resume).
  if (resume_from == nullptr) write_state(o.out, o, Counters{}, {});
  const std::string metrics_path = path_in(o.out, "metrics.jsonl");
  truncate_metrics(metrics_path, c.step);  // a fresh run (c.step 0) starts it empty
  std::ofstream metrics(metrics_path, std::ios::app);
  if (!metrics) throw std::runtime_error(metrics_path + ": cannot open for writing");

  const bool tty = o.progress && isatty(STDERR_FILENO) != 0;
  if (o.progress)
    std::fprintf(stderr,
                 "whtlm train: %s\n  %s params, %s training FLOPs/token, %s, batch %d x %d x %d "
                 "accum = %lld tokens/step, %lld steps (warmup %lld), %d threads, %s\n"
                 "  data: %s\n",
                 describe(o.model).c_str(), human(double(model.layout().count())).c_str(),
                 human(cost.flops_train_per_token()).c_str(), o.out.c_str(), o.batch, o.seq,
                 o.accum, static_cast<long long>(tokens_per_step), static_cast<long long>(total),
                 static_cast<long long>(warmup), num_threads(),
                 model.backend().description().c_str(), split.description.c_str());

  TrainResult r;
  auto eval_now = [&] {
    return evaluate(model, split.val, o.batch, o.seq,
                    static_cast<std::size_t>(o.eval_batches) * std::size_t(o.batch))
        .loss;
  };
  auto last_good = [&] {
    return kept.empty() ? std::string("the run has no checkpoint yet; --resume starts it over")
                        : "its last checkpoint (" + kept.front().path +
                              ") is intact: `whtlm train --resume " + o.out + "` continues from it";
  };
  const auto start = Clock::now();
  const double elapsed0 = c.elapsed;
  const std::int64_t first_step = c.step;
  double train_loss = 0;
  while (c.step < last) {
    const auto t0 = Clock::now();
    const std::int64_t step = c.step + 1;
    const std::size_t per_micro = std::size_t(o.batch) * std::size_t(o.seq);
    for (int micro = 0; micro < o.accum; ++micro)
      sampler.fill(static_cast<std::uint64_t>(step), micro, inputs.data() + micro * per_micro,
                   targets.data() + micro * per_micro);
    const double lr = learning_rate(step, warmup, total, o.lr, o.min_lr_ratio);
    StepResult sr;
    bool skipped = false;
    try {
      sr = train_step(model, opt, inputs.data(), targets.data(), o.batch, o.seq, o.accum, lr,
                      o.clip, step);
    } catch (const NonFiniteStep& e) {
      if (o.on_nonfinite == OnNonFinite::stop)
        throw RunDiverged(step, std::string(e.what()) + ". The run stopped; " + last_good() +
                                    " (a lower --lr, or --on-nonfinite skip to skip such steps)");
      skipped = true;
      ++c.skipped;
      if (o.progress)
        std::fprintf(stderr, "%swhtlm train: skipped %s\n", tty ? "\n" : "", e.what());
      if (c.skipped > o.max_skips)
        throw RunDiverged(step, "step " + std::to_string(step) + ": " + std::to_string(c.skipped) +
                                    " steps skipped for non-finite values, more than --max-skips " +
                                    std::to_string(o.max_skips) + ". The run stopped; " +
                                    last_good());
    }
    train_loss = sr.loss;
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    c.step = step;
    c.tokens += double(tokens_per_step);
    c.flops += flops_per_step;
    c.elapsed = elapsed0 + std::chrono::duration<double>(Clock::now() - start).count();

    json rec{{"step", step},
             {"tokens", c.tokens},
             {"flops", c.flops},
             {"train_loss", skipped ? json(nullptr) : json(train_loss)},
             {"lr", lr},
             {"grad_norm", skipped ? json(nullptr) : json(sr.grad_norm)},
             {"tokens_per_s", double(tokens_per_step) / dt},
             {"elapsed_s", c.elapsed},
             {"peak_rss_bytes", io::peak_rss_bytes()}};
    if (c.skipped > 0) rec["skipped_steps"] = c.skipped;
    if (skipped) rec["skipped"] = true;
    const bool eval = (o.eval_every > 0 && step % o.eval_every == 0) || step == total;
    if (eval) {
      rec["val_loss"] = eval_now();
      r.final_val_loss = rec["val_loss"].get<double>();
    }
    metrics << rec.dump() << "\n" << std::flush;
    if (!metrics) throw std::runtime_error(metrics_path + ": cannot write (disk full?)");
    const bool save = (o.save_every > 0 && step % o.save_every == 0) || step == last;
    if (save) save_checkpoint(o.out, o, model, opt, c, tokenizer_json, kept);

    if (o.progress && (tty || eval || step == 1 || step % 50 == 0)) {
      const double rate = double(tokens_per_step) / dt;
      const double per_step = (c.elapsed - elapsed0) / double(step - first_step);
      const double eta = per_step * double(last - step);
      std::string line =
          "step " + std::to_string(step) + "/" + std::to_string(total) + "  loss " +
          (skipped ? std::string("skipped") : std::to_string(train_loss).substr(0, 6)) + "  " +
          human(rate) + " tok/s  lr " + std::to_string(lr).substr(0, 8) + "  eta " + duration(eta);
      if (eval) line += "  val " + std::to_string(rec["val_loss"].get<double>()).substr(0, 6);
      if (save) line += "  [saved]";
      if (tty)
        std::fprintf(stderr, "\r%-100s%s", line.c_str(), eval ? "\n" : "");
      else
        std::fprintf(stderr, "  %s\n", line.c_str());
    }
  }
  if (tty) std::fprintf(stderr, "\n");
  r.steps = c.step;
  r.tokens = c.tokens;
  r.flops = c.flops;
  r.seconds = c.elapsed;
  r.final_train_loss = train_loss;
  r.skipped_steps = c.skipped;
  return r;
}

// A checkpoint's files as train_state.json recorded them: present, and (when it has
// checksums) of the recorded sizes and CRCs. Throws ChecksumError or
// std::runtime_error naming the file.
void verify_checkpoint(const std::string& run_dir, const CheckpointRecord& r) {
  const std::string dir = path_in(run_dir, r.path);
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw std::runtime_error(dir + ": the checkpoint train_state.json names is not there");
  if (r.files.empty()) {  // a run from before checksums: the files must at least exist
    for (const char* f : {"model.safetensors", "optimizer.safetensors"})
      if (!fs::is_regular_file(path_in(dir, f), ec))
        throw std::runtime_error(path_in(dir, f) + ": missing from the checkpoint");
    return;
  }
  for (const char* f : {"model.safetensors", "optimizer.safetensors", "config.json"})
    if (r.files.count(f) == 0)
      throw std::runtime_error(run_dir + "/train_state.json: checkpoint " + r.path +
                               " records no checksum of " + f);
  verify_files(dir, r.files);
}

}  // namespace

const char* on_nonfinite_name(OnNonFinite p) { return p == OnNonFinite::skip ? "skip" : "stop"; }

OnNonFinite parse_on_nonfinite(std::string_view name) {
  if (name == "stop") return OnNonFinite::stop;
  if (name == "skip") return OnNonFinite::skip;
  throw std::invalid_argument("unknown policy '" + std::string(name) +
                              "' for non-finite steps (expected stop or skip)");
}

StepResult train_step(Transformer& model, AdamW& opt, const std::int32_t* inputs,
                      const std::int32_t* targets, int batch, int seq, int accum, double lr,
                      double clip, std::int64_t step) {
  StepResult r;
  model.zero_grads();
  const std::size_t per_micro = std::size_t(batch) * std::size_t(seq);
  for (int micro = 0; micro < accum; ++micro) {
    r.loss +=
        model.forward(inputs + micro * per_micro, targets + micro * per_micro, batch, seq) / accum;
    model.backward(1.0f / static_cast<float>(accum));
  }
  r.grad_norm = model.grad_norm();
  if (!std::isfinite(r.loss) || !std::isfinite(r.grad_norm))
    throw NonFiniteStep(step, nonfinite_report(model, step, r.loss, r.grad_norm));
  if (clip > 0 && r.grad_norm > clip) {
    const float s = static_cast<float>(clip / r.grad_norm);
    model.scale_grads(s);
  }
  opt.update(model, static_cast<float>(lr), step);
  return r;
}

double EvalResult::bits_per_byte() const {
  return bytes > 0 ? loss * double(tokens) / bytes / std::log(2.0)
                   : std::numeric_limits<double>::quiet_NaN();
}

EvalResult evaluate(Transformer& model, const data::TokenSource& tokens, int batch, int seq,
                    std::size_t max_windows, std::span<const std::int32_t> token_bytes) {
  const std::size_t windows = data::num_eval_windows(tokens.size(), seq);
  if (windows == 0)
    throw std::invalid_argument(
        "evaluation data has fewer than seq + 1 = " + std::to_string(seq + 1) + " tokens");
  const std::size_t use = max_windows == 0 ? windows : std::min(windows, max_windows);
  std::vector<std::int32_t> in(std::size_t(batch) * seq), tg(in.size());
  double sum = 0, bytes = 0;
  std::size_t counted = 0;
  for (std::size_t first = 0; first < use; first += std::size_t(batch)) {
    const std::size_t rows = std::min<std::size_t>(std::size_t(batch), use - first);
    for (std::size_t r = 0; r < rows; ++r) {
      // Spread the windows evenly over the data when only some are used.
      const std::size_t w = (first + r) * windows / use;
      data::fill_eval_window(tokens, seq, w, in.data() + r * seq, tg.data() + r * seq);
    }
    sum += model.forward(in.data(), tg.data(), static_cast<int>(rows), seq) *
           double(rows * std::size_t(seq));
    counted += rows * std::size_t(seq);
    if (!token_bytes.empty())
      for (std::size_t i = 0; i < rows * std::size_t(seq); ++i)
        bytes += double(token_bytes[static_cast<std::size_t>(tg[i])]);
  }
  return {sum / double(counted), counted, bytes};
}

std::int64_t total_steps(const TrainOptions& o) {
  const double tokens_per_step = double(o.batch) * o.seq * o.accum;
  double steps = 0;
  const char* from = "--steps";
  if (o.steps > 0) {
    steps = double(o.steps);
  } else if (o.tokens > 0) {
    steps = std::ceil(double(o.tokens) / tokens_per_step);
    from = "--tokens";
  } else {
    steps =
        std::ceil(o.flops / (model_cost(o.model, o.seq).flops_train_per_token() * tokens_per_step));
    from = "--flops";
  }
  if (!(steps >= 1 && steps <= limits::steps.max))
    throw std::invalid_argument(std::string(from) + " " +
                                value_text(o.steps > 0    ? double(o.steps)
                                           : o.tokens > 0 ? double(o.tokens)
                                                          : o.flops) +
                                ": the run would be " + value_text(steps) + " steps of " +
                                value_text(tokens_per_step) + " tokens; at most " +
                                value_text(limits::steps.max));
  return static_cast<std::int64_t>(steps);
}

namespace {

// What `train --out DIR` refuses to start in without --force: a folder that holds
// anything. With --force, whtlm's own files there are replaced, others left alone.
void check_new_run_folder(const TrainOptions& o) {
  std::error_code ec;
  const fs::file_status st = fs::status(o.out, ec);
  if (!fs::exists(st)) return;
  if (!fs::is_directory(st))
    throw std::invalid_argument("--out " + o.out + ": exists and is not a folder");
  if (fs::is_empty(o.out, ec) || o.force) return;
  const bool run = fs::exists(path_in(o.out, "train_state.json"), ec);
  throw std::invalid_argument(
      "--out " + o.out + ": " +
      (run ? std::string("already holds a run (use --resume to continue it")
           : std::string("is not empty (it may hold a checkpoint or your files; choose a new or "
                         "empty folder")) +
      ", or --force to start a new run there, replacing whtlm's files in it)");
}

}  // namespace

TrainResult train_until(const TrainOptions& options, std::int64_t stop_after) {
  check_options(options);
  total_steps(options);  // a length that is no run at all is refused before any file
  if (!options.init_from.empty()) check_init_checkpoint(options);
  check_new_run_folder(options);
  std::error_code ec;
  const bool created = !fs::exists(options.out, ec);
  fs::create_directories(options.out, ec);
  if (ec) throw std::runtime_error(options.out + ": cannot create folder: " + ec.message());
  try {
    return run(options, Counters{}, nullptr, {}, stop_after);
  } catch (...) {
    // A run refused before it wrote anything (bad data, too little memory) leaves no
    // folder behind for the next attempt to trip on.
    if (created && fs::is_empty(options.out, ec)) fs::remove(options.out, ec);
    throw;
  }
}

TrainResult train(const TrainOptions& options) { return train_until(options, 0); }

RunState run_state_from_json(const std::string& text, const std::string& source,
                             const std::string& run_dir) {
  const json state = io::parse_json(text, source);
  const io::JsonObject j(state, source);
  RunState r;
  r.options = options_from_json(j.object("options"));
  r.options.out = run_dir;
  r.step = j.integer<std::int64_t>("step", limits::steps);
  r.tokens = j.number("tokens", limits::tokens_done);
  r.flops = j.number("flops", limits::flops_done);
  r.elapsed_s = j.number("elapsed_s", limits::elapsed);
  r.skipped_steps = j.integer<std::int64_t>("skipped_steps", limits::steps, 0);
  r.checkpoint = j.string("checkpoint", "");
  // A checkpoint path is only ever the trainer's own "checkpoints/step-N" for its step:
  // anything else ("../../x", "/etc", a typo) is refused before it is read or removed.
  auto checked_path = [&](const io::JsonObject& o, const char* field, std::int64_t step) {
    const std::string p = o.string(field);
    if (p != checkpoint_name(step))
      o.fail(field, "\"" + p + "\" is not the checkpoint of step " + std::to_string(step) +
                        " (expected \"" + checkpoint_name(step) + "\", a folder inside the run)");
    return p;
  };
  if (j.has("checkpoints")) {
    const json& list = j.at("checkpoints");
    if (!list.is_array()) j.fail("checkpoints", "expected an array");
    for (std::size_t i = 0; i < list.size(); ++i) {
      const io::JsonObject e(list[i], source, "checkpoints[" + std::to_string(i) + "]");
      CheckpointRecord c;
      c.step = e.integer<std::int64_t>("step", limits::steps);
      c.path = checked_path(e, "path", c.step);
      c.tokens = e.number("tokens", limits::tokens_done);
      c.flops = e.number("flops", limits::flops_done);
      c.elapsed_s = e.number("elapsed_s", limits::elapsed);
      c.skipped_steps = e.integer<std::int64_t>("skipped_steps", limits::steps, 0);
      c.files = checksums_from_json(e.at("files"), source, e.field("files"));
      if (i == 0 && c.step != r.step)
        e.fail("step", "differs from the run's step " + std::to_string(r.step));
      if (i > 0 && c.step >= r.checkpoints.back().step)
        e.fail("step", "checkpoints must be listed newest first");
      r.checkpoints.push_back(std::move(c));
    }
    if (r.checkpoints.empty() ? !r.checkpoint.empty() : r.checkpoint != r.checkpoints[0].path)
      j.fail("checkpoint", "\"" + r.checkpoint + "\" is not the newest of \"checkpoints\"");
  } else if (!r.checkpoint.empty()) {  // a run from before checksums: one checkpoint
    CheckpointRecord c;
    c.step = r.step;
    c.path = checked_path(j, "checkpoint", r.step);
    c.tokens = r.tokens;
    c.flops = r.flops;
    c.elapsed_s = r.elapsed_s;
    r.checkpoints.push_back(std::move(c));
  }
  if (r.checkpoints.empty() && r.step != 0)
    j.fail("step", "is " + std::to_string(r.step) + " but the run names no checkpoint");
  try {
    check_options(r.options);
    r.total_steps = total_steps(r.options);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(source + ": options: " + e.what());
  }
  return r;
}

RunState read_run_state(const std::string& run_dir) {
  const std::string state_path = path_in(run_dir, "train_state.json");
  return run_state_from_json(io::read_file(state_path), state_path, run_dir);
}

TrainResult resume(const std::string& run_dir, std::int64_t stop_after, bool progress,
                   const ResumeOverrides& overrides) {
  RunState s = read_run_state(run_dir);
  s.options.progress = progress;
  if (overrides.on_nonfinite) s.options.on_nonfinite = *overrides.on_nonfinite;
  if (overrides.max_skips) s.options.max_skips = *overrides.max_skips;
  if (s.checkpoints.empty()) {  // killed before its first checkpoint: start it over
    if (progress)
      std::fprintf(stderr, "whtlm train: %s has no checkpoint yet; starting it over\n",
                   run_dir.c_str());
    return run(s.options, Counters{}, nullptr, {}, stop_after);
  }
  // The newest intact checkpoint; damaged ones are named, never silently used.
  std::string damaged;
  for (std::size_t i = 0; i < s.checkpoints.size(); ++i) {
    const CheckpointRecord& r = s.checkpoints[i];
    try {
      verify_checkpoint(run_dir, r);
    } catch (const std::runtime_error& e) {
      damaged += std::string(damaged.empty() ? "" : "; ") + e.what();
      continue;
    }
    if (i > 0)
      std::fprintf(stderr,
                   "whtlm train: %s\nwhtlm train: falling back to the previous checkpoint, %s "
                   "(step %lld); steps after it are trained again\n",
                   damaged.c_str(), r.path.c_str(), static_cast<long long>(r.step));
    const Counters c{r.step, r.tokens, r.flops, r.elapsed_s, r.skipped_steps};
    std::vector<CheckpointRecord> kept(s.checkpoints.begin() + std::ptrdiff_t(i),
                                       s.checkpoints.end());
    return run(s.options, c, &kept.front(), kept, stop_after);
  }
  throw std::runtime_error(run_dir + ": no intact checkpoint to resume from: " + damaged);
}

}  // namespace whtlm
