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
#include "whtlm/checkpoint.hpp"
#include "whtlm/io.hpp"
#include "whtlm/perf.hpp"
#include "whtlm/threads.hpp"
#include "whtlm/tokenizer.hpp"
#include "whtlm/train.hpp"

namespace whtlm {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

json options_to_json(const TrainOptions& o) {
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
          {"eval_every", o.eval_every},
          {"eval_batches", o.eval_batches},
          {"save_every", o.save_every},
          {"threads", o.threads},
          {"device", device_name(o.device)},
          {"precision", precision_name(o.precision)}};
}

TrainOptions options_from_json(const json& j, const std::string& source) {
  TrainOptions o;
  try {
    o.model = config_from_json(j.at("config").dump(), source + " (config)");
    o.preset = j.at("preset").get<std::string>();
    const json& d = j.at("data");
    o.data.path = d.at("path").get<std::string>();
    o.data.val_path = d.at("val_path").get<std::string>();
    o.data.val_fraction = d.at("val_fraction").get<double>();
    o.data.chunk_tokens = d.at("chunk_tokens").get<std::size_t>();
    o.data.tokenizer = d.value("tokenizer", std::string("byte"));  // absent before tokenizers
    o.batch = j.at("batch").get<int>();
    o.seq = j.at("seq").get<int>();
    o.accum = j.at("accum").get<int>();
    o.steps = j.at("steps").get<std::int64_t>();
    o.tokens = j.at("tokens").get<std::int64_t>();
    o.flops = j.at("flops").get<double>();
    o.lr = j.at("lr").get<double>();
    o.min_lr_ratio = j.at("min_lr_ratio").get<double>();
    o.warmup = j.at("warmup").get<std::int64_t>();
    o.adamw.beta1 = j.at("beta1").get<float>();
    o.adamw.beta2 = j.at("beta2").get<float>();
    o.adamw.eps = j.at("eps").get<float>();
    o.adamw.weight_decay = j.at("weight_decay").get<float>();
    o.clip = j.at("clip").get<double>();
    o.seed = j.at("seed").get<std::uint64_t>();
    o.eval_every = j.at("eval_every").get<std::int64_t>();
    o.eval_batches = j.at("eval_batches").get<int>();
    o.save_every = j.at("save_every").get<std::int64_t>();
    o.threads = j.at("threads").get<int>();
    o.device = parse_device(j.value("device", std::string("cpu")));  // absent before CUDA
    o.precision = parse_precision(j.value("precision", std::string("fp32")));
  } catch (const json::exception& e) {
    throw std::runtime_error(source + ": options: " + e.what());
  }
  return o;
}

void check_options(const TrainOptions& o) {
  auto fail = [](const std::string& what) { throw std::invalid_argument(what); };
  o.model.validate();
  if (o.batch < 1) fail("--batch must be at least 1");
  if (o.accum < 1) fail("--accum must be at least 1");
  if (o.seq < 1 || o.seq > o.model.max_seq)
    fail("--seq " + std::to_string(o.seq) + " outside 1.." + std::to_string(o.model.max_seq) +
         " (the model's context)");
  if (o.steps <= 0 && o.tokens <= 0 && !(o.flops > 0))
    fail("give the run's length: --steps, --tokens or --flops");
  if (!(o.lr > 0)) fail("--lr must be positive");
  if (o.min_lr_ratio < 0 || o.min_lr_ratio > 1) fail("--min-lr-ratio must be in [0, 1]");
  if (o.clip < 0) fail("--clip must be >= 0");
  if (o.eval_every < 0 || o.save_every < 0) fail("--eval-every / --save-every must be >= 0");
  if (o.eval_batches < 1) fail("--eval-batches must be at least 1");
  if (o.threads < 0) fail("--threads must be >= 0");
  if (o.out.empty()) fail("--out: a run folder is needed");
}

struct Counters {
  std::int64_t step = 0;  // completed steps
  double tokens = 0, flops = 0, elapsed = 0;
};

std::string path_in(const std::string& dir, const char* name) {
  return (fs::path(dir) / name).string();
}

// Removes checkpoints/step-* folders other than `keep` (left behind by a kill
// between writing a checkpoint and committing it, or superseded).
void remove_other_checkpoints(const std::string& dir, const std::string& keep) {
  const fs::path root = fs::path(dir) / "checkpoints";
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return;
  for (const fs::directory_entry& e : fs::directory_iterator(root, ec))
    if ((fs::path("checkpoints") / e.path().filename()).string() != keep)
      fs::remove_all(e.path(), ec);
}

// Checkpoints survive a kill at any instant. Each one is first written whole into
// its own folder, checkpoints/step-N/ (model.safetensors, config.json,
// optimizer.safetensors); then train_state.json is replaced atomically to name it
// (the commit); then the run folder's top-level model.safetensors, config.json and
// optimizer.safetensors become hard links to the new files (each replaced
// atomically; a copy where links are not possible); then older step folders go.
// Resume reads only what train_state.json names, so it never sees a half-written
// checkpoint.
void link_or_copy(const fs::path& from, const fs::path& to) {
  const fs::path tmp = to.string() + ".tmp";
  std::error_code ec;
  fs::remove(tmp, ec);
  fs::create_hard_link(from, tmp, ec);
  if (ec) fs::copy_file(from, tmp, fs::copy_options::overwrite_existing);
  fs::rename(tmp, to);
}

void save_checkpoint(const std::string& dir, const TrainOptions& o, Transformer& model, AdamW& opt,
                     const Counters& c, const std::string& tokenizer_json) {
  model.download_params();
  opt.download_state();
  const std::string name = "checkpoints/step-" + std::to_string(c.step);
  const fs::path ck = fs::path(dir) / name;
  const std::map<std::string, std::string> meta{{"step", std::to_string(c.step)}};
  save_model(ck.string(), model.layout(), model.params().data(), meta);
  io::write_file_atomic((ck / "tokenizer.json").string(), tokenizer_json);
  const auto n = static_cast<std::int64_t>(model.layout().total_floats());
  io::write_safetensors((ck / "optimizer.safetensors").string(),
                        {{"exp_avg", io::DType::f32, {n}, opt.exp_avg().data()},
                         {"exp_avg_sq", io::DType::f32, {n}, opt.exp_avg_sq().data()}},
                        meta);
  const json state{{"step", c.step},
                   {"checkpoint", name},
                   {"tokens", c.tokens},
                   {"flops", c.flops},
                   {"elapsed_s", c.elapsed},
                   {"threads", num_threads()},
                   {"options", options_to_json(o)}};
  io::write_file_atomic(path_in(dir, "train_state.json"), state.dump(2) + "\n");
  for (const char* f :
       {"model.safetensors", "config.json", "optimizer.safetensors", "tokenizer.json"})
    link_or_copy(ck / f, fs::path(dir) / f);
  remove_other_checkpoints(dir, name);
}

// Keeps the metrics records of steps up to `step` (a resumed run rewrites the rest).
void truncate_metrics(const std::string& path, std::int64_t step) {
  std::ifstream in(path);
  if (!in) return;
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

// resume_from: the checkpoint folder to start from (empty: a fresh run).
TrainResult run(TrainOptions o, Counters c, const std::string& resume_from,
                std::int64_t stop_after) {
  check_options(o);
  set_num_threads(o.threads > 0 ? o.threads : available_cores());
  o.data.vocab_size = o.model.vocab_size;
  const data::TokenSplit split = data::load_tokens(o.data);
  const std::string tokenizer_json = data::data_tokenizer(o.data).to_json();

  Transformer model(o.model, o.device, o.precision);
  AdamW opt(model.layout(), o.adamw);
  if (resume_from.empty()) {
    model.init_weights(o.seed);
  } else {
    const auto m1 = load_weights(path_in(resume_from, "model.safetensors"), model.layout(),
                                 model.params().data());
    model.upload_params();
    const io::SafetensorsReader os(path_in(resume_from, "optimizer.safetensors"));
    const std::vector<std::int64_t> shape{static_cast<std::int64_t>(model.layout().total_floats())};
    os.read_f32("exp_avg", shape, opt.exp_avg().data());
    os.read_f32("exp_avg_sq", shape, opt.exp_avg_sq().data());  // uploaded at the first update
    const std::string want = std::to_string(c.step);
    auto step_of = [](const std::map<std::string, std::string>& m) {
      const auto it = m.find("step");
      return it == m.end() ? std::string("none") : it->second;
    };
    if (step_of(m1) != want || step_of(os.metadata()) != want)
      throw std::runtime_error(resume_from + ": checkpoint files disagree (train_state.json step " +
                               want + ", model.safetensors " + step_of(m1) +
                               ", optimizer.safetensors " + step_of(os.metadata()) +
                               "): the checkpoint was changed after it was written");
  }

  const std::int64_t tokens_per_step = std::int64_t(o.batch) * o.seq * o.accum;
  const ModelCost cost = model_cost(o.model, o.seq);
  const double flops_per_step = cost.flops_train_per_token() * double(tokens_per_step);
  const std::int64_t total = total_steps(o);
  const std::int64_t warmup = o.warmup >= 0 ? o.warmup : std::min<std::int64_t>(200, total / 20);
  const std::int64_t last = stop_after > 0 ? std::min(stop_after, total) : total;

  const data::BatchSampler sampler(
      split.train, o.batch, o.seq, o.seed,
      split.sequential ? data::BatchSampler::Order::sequential : data::BatchSampler::Order::random,
      o.accum);
  std::vector<std::int32_t> inputs(std::size_t(o.batch) * o.seq * o.accum), targets(inputs.size());
  model.reserve(o.batch, o.seq);

  const std::string metrics_path = path_in(o.out, "metrics.jsonl");
  if (!resume_from.empty()) truncate_metrics(metrics_path, c.step);
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
    const StepResult sr = train_step(model, opt, inputs.data(), targets.data(), o.batch, o.seq,
                                     o.accum, lr, o.clip, step);
    train_loss = sr.loss;
    const double norm = sr.grad_norm;
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    c.step = step;
    c.tokens += double(tokens_per_step);
    c.flops += flops_per_step;
    c.elapsed = elapsed0 + std::chrono::duration<double>(Clock::now() - start).count();

    json rec{{"step", step},
             {"tokens", c.tokens},
             {"flops", c.flops},
             {"train_loss", train_loss},
             {"lr", lr},
             {"grad_norm", norm},
             {"tokens_per_s", double(tokens_per_step) / dt},
             {"elapsed_s", c.elapsed},
             {"peak_rss_bytes", perf::peak_rss_bytes()}};
    const bool eval = (o.eval_every > 0 && step % o.eval_every == 0) || step == total;
    if (eval) {
      rec["val_loss"] = eval_now();
      r.final_val_loss = rec["val_loss"].get<double>();
    }
    metrics << rec.dump() << "\n" << std::flush;
    const bool save = (o.save_every > 0 && step % o.save_every == 0) || step == last;
    if (save) save_checkpoint(o.out, o, model, opt, c, tokenizer_json);

    if (o.progress && (tty || eval || step == 1 || step % 50 == 0)) {
      const double rate = double(tokens_per_step) / dt;
      const double per_step = (c.elapsed - elapsed0) / double(step - first_step);
      const double eta = per_step * double(last - step);
      std::string line = "step " + std::to_string(step) + "/" + std::to_string(total) + "  loss " +
                         std::to_string(train_loss).substr(0, 6) + "  " + human(rate) +
                         " tok/s  lr " + std::to_string(lr).substr(0, 8) + "  eta " + duration(eta);
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
  return r;
}

}  // namespace

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
    throw std::runtime_error("step " + std::to_string(step) +
                             ": loss or gradient is not finite (loss " + std::to_string(r.loss) +
                             "); try a lower --lr");
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
  const std::int64_t tokens_per_step = std::int64_t(o.batch) * o.seq * o.accum;
  if (o.steps > 0) return o.steps;
  if (o.tokens > 0) return (o.tokens + tokens_per_step - 1) / tokens_per_step;
  const double flops_per_step =
      model_cost(o.model, o.seq).flops_train_per_token() * double(tokens_per_step);
  return static_cast<std::int64_t>(std::ceil(o.flops / flops_per_step));
}

TrainResult train_until(const TrainOptions& options, std::int64_t stop_after) {
  check_options(options);
  if (fs::exists(path_in(options.out, "train_state.json")) ||
      fs::exists(path_in(options.out, "metrics.jsonl")))
    throw std::invalid_argument(options.out +
                                ": already holds a run (use --resume to continue it, or choose "
                                "another --out)");
  std::error_code ec;
  fs::create_directories(options.out, ec);
  if (ec) throw std::runtime_error(options.out + ": cannot create folder: " + ec.message());
  return run(options, Counters{}, "", stop_after);
}

TrainResult train(const TrainOptions& options) { return train_until(options, 0); }

RunState read_run_state(const std::string& run_dir) {
  const std::string state_path = path_in(run_dir, "train_state.json");
  json state;
  try {
    state = json::parse(io::read_file(state_path));
  } catch (const json::exception& e) {
    throw std::runtime_error(state_path + ": not valid JSON: " + e.what());
  }
  RunState r;
  try {
    r.options = options_from_json(state.at("options"), state_path);
    r.options.out = run_dir;
    r.step = state.at("step").get<std::int64_t>();
    r.tokens = state.at("tokens").get<double>();
    r.flops = state.at("flops").get<double>();
    r.elapsed_s = state.at("elapsed_s").get<double>();
    r.checkpoint = state.at("checkpoint").get<std::string>();
  } catch (const json::exception& e) {
    throw std::runtime_error(state_path + ": " + e.what());
  }
  r.total_steps = total_steps(r.options);
  return r;
}

TrainResult resume(const std::string& run_dir, std::int64_t stop_after, bool progress) {
  RunState s = read_run_state(run_dir);
  s.options.progress = progress;
  remove_other_checkpoints(run_dir, s.checkpoint);
  const Counters c{s.step, s.tokens, s.flops, s.elapsed_s};
  return run(s.options, c, path_in(run_dir, s.checkpoint.c_str()), stop_after);
}

}  // namespace whtlm
