// Runs an experiment plan: every training run, then each run's downstream proxy, then
// the inference sweep, then the report. Each piece of work runs in a child process
// (fork), so that a run's peak memory is its own and a crash in one run leaves the
// others intact; finished work is recognised from the files it left and is not redone.
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "io/json_read.hpp"
#include "whtlm/checkpoint.hpp"
#include "whtlm/device.hpp"
#include "whtlm/downstream.hpp"
#include "whtlm/experiment.hpp"
#include "whtlm/io.hpp"
#include "whtlm/perf.hpp"
#include "whtlm/report.hpp"
#include "whtlm/threads.hpp"
#include "whtlm/train.hpp"

namespace whtlm::experiment {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string path_in(const std::string& dir, const std::string& name) {
  return (fs::path(dir) / name).string();
}

// Runs `work` in a child process and waits for it. The parent must not have started
// OpenMP threads (it runs no kernels), so the child starts from a clean runtime.
void in_child(const std::string& what, const std::function<void()>& work) {
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error(what + ": fork failed");
  if (pid == 0) {
    int code = 0;
    try {
      work();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "whtlm: error: %s: %s\n", what.c_str(), e.what());
      code = 1;
    }
    std::fflush(stderr);
    std::fflush(stdout);
    _exit(code);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) throw std::runtime_error(what + ": waitpid failed");
  if (WIFSIGNALED(status))
    throw std::runtime_error(what + ": killed by signal " + std::to_string(WTERMSIG(status)) +
                             "; run the same command again to continue");
  if (WEXITSTATUS(status) != 0)
    throw std::runtime_error(what + ": failed (see above); run the same command again to continue");
}

std::string elapsed_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%dm%02ds", int(s) / 60, int(s) % 60);
  return buf;
}

// Names the first field where two plans (as JSON) differ.
std::string first_difference(const json& a, const json& b, const std::string& where) {
  if (a.type() != b.type()) return where;
  if (a.is_object()) {
    for (auto it = a.begin(); it != a.end(); ++it) {
      if (!b.contains(it.key())) return where + "." + it.key();
      const std::string d = first_difference(*it, b.at(it.key()), where + "." + it.key());
      if (!d.empty()) return d;
    }
    for (auto it = b.begin(); it != b.end(); ++it)
      if (!a.contains(it.key())) return where + "." + it.key();
    return "";
  }
  if (a.is_array()) {
    if (a.size() != b.size()) return where;
    for (std::size_t i = 0; i < a.size(); ++i) {
      const std::string d = first_difference(a[i], b[i], where + "[" + std::to_string(i) + "]");
      if (!d.empty()) return d;
    }
    return "";
  }
  return a == b ? "" : where;
}

// Creates experiment.json, or checks that the one there holds the same plan and
// records this command as a continuation.
void open_experiment(const Options& o, const std::string& plan_json) {
  const std::string path = path_in(o.out, "experiment.json");
  const json plan = json::parse(plan_json);
  json doc;
  if (fs::exists(path)) {
    doc = io::parse_json(io::read_file(path), path);
    if (!doc.is_object() || !doc.contains("plan"))
      throw std::runtime_error(path + ": has no 'plan' field; not an experiment folder");
    const std::string d = first_difference(doc["plan"], plan, "plan");
    if (!d.empty())
      throw std::invalid_argument(o.out +
                                  ": holds an experiment with a different plan (first "
                                  "difference: " +
                                  d +
                                  "); choose another --out, or repeat the "
                                  "command that started it to continue");
    doc["commands"].push_back({{"command", o.command_line}, {"commit", report::build_commit()}});
  } else {
    if (!fs::is_empty(o.out))
      throw std::invalid_argument(o.out +
                                  ": exists, is not empty and holds no experiment.json; "
                                  "choose another --out");
    doc = {{"kind", "whtlm experiment"},
           {"plan", plan},
           {"commands",
            json::array({{{"command", o.command_line}, {"commit", report::build_commit()}}})}};
  }
  io::write_file_atomic(path, doc.dump(2) + "\n");
}

// Every run folder the plan will use is either a run whtlm started (it has
// train_state.json from its first instant), an empty folder or absent; anything else is
// the user's. Checked before anything is written, so a refusal changes nothing.
void check_run_folders(const Options& o) {
  std::vector<std::pair<std::string, std::string>> folders;  // (parent, name)
  for (const RunSpec& run : plan_sweep(o.plan)) folders.emplace_back("sweep", run.name);
  for (const RunSpec& run : plan_runs(o.plan)) folders.emplace_back("runs", run.name);
  for (const auto& [parent, name] : folders) {
    const std::string dir = path_in(path_in(o.out, parent), name);
    std::error_code ec;
    if (!fs::exists(dir, ec) || fs::exists(path_in(dir, "train_state.json"), ec)) continue;
    if (fs::is_directory(dir, ec) && fs::is_empty(dir, ec)) continue;
    std::string entry;
    if (fs::is_directory(dir, ec))
      for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
        entry = " (" + e.path().filename().string() + ", ...)";
        break;
      }
    throw std::runtime_error(dir + ": holds files" + entry +
                             " but no train_state.json, so it is not a whtlm run; move it "
                             "out of the way (nothing was changed)");
  }
}

// A sweep run (sweep = true) is 'lr_sweep_fraction' of its size's steps with a
// validation at its end only; a seeded run is its size's length. Both at run.lr.
TrainOptions train_options(const Plan& p, const RunSpec& run, const std::string& dir, bool sweep) {
  TrainOptions t;
  t.model = run.size->model;
  t.model.projection = run.projection;
  t.scale_init = run.scale_init;
  t.preset = run.size->name;
  t.data = p.data;
  t.batch = p.batch;
  t.seq = p.seq;
  t.tokens =
      (sweep ? p.sweep_steps(*run.size) : p.steps(*run.size)) * std::int64_t(p.batch) * p.seq;
  t.lr = run.lr;
  t.seed = run.seed;
  t.eval_every = sweep ? 0 : p.eval_every_of(*run.size);
  t.device = p.device;
  t.precision = p.precision;
  t.eval_batches = p.eval_batches;
  t.threads = p.threads;
  t.out = dir;
  return t;
}

}  // namespace

Result run(const Options& o) {
  const Plan& p = o.plan;
  validate(p);
  if (o.out.empty()) throw std::invalid_argument("experiment: --out is required");
  for (const std::string& path : {p.data.path, p.data.val_path})
    if (std::error_code ec; !path.empty() && !fs::exists(path, ec))
      throw std::invalid_argument("experiment: data " + path +
                                  ": does not exist (prepare it first: `whtlm data prepare`, "
                                  "or scripts/prepare-corpus for the Linux documentation)");
  if (std::string why; !device_usable(p.device, &why))
    throw std::invalid_argument(std::string("experiment: device ") + device_name(p.device) + ": " +
                                why);
  const auto start = Clock::now();
  auto since_start = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };
  check_run_folders(o);
  fs::create_directories(o.out);
  open_experiment(o, plan_to_json(p));
  fs::create_directories(path_in(o.out, "runs"));

  const std::vector<RunSpec> sweep = plan_sweep(p);
  std::vector<RunSpec> runs = plan_runs(p);
  const int total = int(sweep.size() + runs.size());
  const bool live = o.progress && isatty(STDERR_FILENO) != 0;

  Result r;
  int index = 0;
  // Trains (or resumes, or keeps) one run in a child process. A sweep run that diverges
  // is finished: diverged.json records it, and it counts as the worst rate.
  auto train_one = [&](const RunSpec& run, bool is_sweep) {
    ++index;
    const std::string& name = run.name;
    const std::string dir = path_in(path_in(o.out, is_sweep ? "sweep" : "runs"), name);
    const std::int64_t steps = is_sweep ? p.sweep_steps(*run.size) : p.steps(*run.size);
    std::error_code ec;
    const std::int64_t done =
        fs::exists(path_in(dir, "train_state.json"), ec) ? read_run_state(dir).step : -1;
    char head_buf[64];
    std::snprintf(head_buf, sizeof head_buf, "[%d/%d] ", index, total);
    const std::string head = head_buf + std::string(is_sweep ? "sweep " : "") + name;
    if (done >= steps || (is_sweep && fs::exists(path_in(dir, "diverged.json"), ec))) {
      ++r.runs_kept;
      if (o.progress) std::fprintf(stderr, "%s: finished earlier, kept\n", head.c_str());
      return;
    }
    if (o.progress)
      std::fprintf(stderr, "%s: %s %lld steps at lr %.3g  (elapsed %s)\n", head.c_str(),
                   done >= 0 ? "resuming from a checkpoint," : "training",
                   static_cast<long long>(steps), run.lr, elapsed_text(since_start()).c_str());
    TrainOptions t = train_options(p, run, dir, is_sweep);
    t.progress = live;
    in_child(name, [&] {
      try {
        if (done >= 0)
          resume(dir, 0, live);
        else
          train(t);
      } catch (const RunDiverged& e) {
        if (!is_sweep) throw;
        io::write_file_atomic(path_in(dir, "diverged.json"),
                              json{{"step", e.step}, {"error", e.what()}}.dump(2) + "\n");
        std::fprintf(stderr, "%s: diverged at step %lld; counted as the worst rate\n", head.c_str(),
                     static_cast<long long>(e.step));
      }
    });
    ++(done >= 0 ? r.runs_resumed : r.runs_trained);
  };

  if (!sweep.empty()) fs::create_directories(path_in(o.out, "sweep"));
  for (const RunSpec& run : sweep) train_one(run, true);
  // The seeded runs' rates: the plan's, or each variant's best in the sweep.
  const report::Data swept = sweep.empty() ? report::Data{} : report::load({o.out});
  for (RunSpec& run : runs) {
    if (sweep.empty()) {
      run.lr = p.lr;
      continue;
    }
    run.lr = report::best_rate(swept, run.size->name, run.projection, run.scale_init);
    if (!(run.lr > 0))
      throw std::runtime_error(path_in(o.out, "sweep") + ": every rate of " + run.size->name + " " +
                               projection_name(run.projection) +
                               " diverged or did not finish; give lr_sweep.factors lower rates");
  }
  for (const RunSpec& run : runs) train_one(run, false);

  // The downstream proxy (whtlm/downstream.hpp) of every finished seeded run, each in a
  // child process of its own, from the run's final checkpoint; a run that has its
  // downstream.json is kept.
  if (o.downstream)
    for (const RunSpec& run : runs) {
      const std::string dir = path_in(path_in(o.out, "runs"), run.name);
      const std::string file = path_in(dir, "downstream.json");
      std::error_code ec;
      if (fs::exists(file, ec) || !fs::exists(path_in(dir, "train_state.json"), ec)) continue;
      const RunState state = read_run_state(dir);
      if (!state.finished() || state.checkpoint.empty()) continue;
      if (o.progress)
        std::fprintf(stderr, "downstream %s: cloze accuracy and bits per byte  (elapsed %s)\n",
                     run.name.c_str(), elapsed_text(since_start()).c_str());
      // A failure leaves the run without its proxy (the report says "not measured") and
      // the experiment goes on; the next start tries again.
      try {
        in_child("downstream " + run.name, [&] {
          set_num_threads(p.threads > 0 ? p.threads : available_cores());
          const auto model = load_model(path_in(dir, state.checkpoint), state.options.device,
                                        state.options.precision);
          downstream::Options d;
          d.seq = state.options.seq;
          downstream::Result res = downstream::evaluate(*model, state.options.data, d);
          res.checkpoint = state.checkpoint;
          io::write_file_atomic(file, downstream::result_to_json(res));
          if (!o.progress) return;
          if (res.cloze_skipped.empty())
            std::fprintf(stderr,
                         "  cloze %.3f of %zu items (chance %.3f), %.4f bits per byte, %.1f s\n",
                         res.accuracy, res.items, res.chance, res.bits_per_byte, res.seconds);
          else
            std::fprintf(stderr, "  %.4f bits per byte, %.1f s; no cloze: %s\n", res.bits_per_byte,
                         res.seconds, res.cloze_skipped.c_str());
        });
      } catch (const std::runtime_error& e) {
        std::fprintf(stderr, "whtlm: warning: %s; the report leaves its downstream proxy out\n",
                     e.what());
      }
    }

  const std::string bench_dir = path_in(o.out, "bench");
  const std::string bench_file = path_in(bench_dir, "infer.jsonl");
  if (o.bench && !fs::exists(bench_file)) {
    fs::create_directories(bench_dir);
    if (o.progress)
      std::fprintf(stderr, "inference sweep: batch x prompt over %zu sizes  (elapsed %s)\n",
                   p.sizes.size(), elapsed_text(since_start()).c_str());
    in_child("inference sweep", [&] {
      std::string lines;
      int max_prompt = 0;
      for (int l : p.bench_prompts) max_prompt = std::max(max_prompt, l);
      for (const Size& s : p.sizes) {
        perf::InferBenchOptions b;
        b.models = {{s.name, s.model}};
        b.projections.clear();
        for (Projection proj : p.projections) b.projections.push_back(projection_name(proj));
        b.batches = p.bench_batches;
        b.prompts = p.bench_prompts;
        b.decode = p.bench_decode;
        b.vocab = s.model.vocab_size;
        b.context = max_prompt + p.bench_decode;
        b.threads = p.threads;
        b.device = p.device;
        b.precision = p.precision;
        b.repetitions = p.bench_repetitions;
        b.max_prefill_tokens = p.bench_max_prefill_tokens;
        if (o.progress)
          b.progress = [](const std::string& line) {
            std::fprintf(stderr, "  %s\n", line.c_str());
          };
        const perf::InferBenchResult res = perf::infer_bench(b);
        lines += perf::infer_bench_jsonl(res, p.bench_repetitions);
      }
      io::write_file_atomic(bench_file, lines);
    });
  }

  if (o.report) {
    const report::Data data = report::load({o.out});
    report::WriteOptions w;
    w.out_dir = path_in(o.out, "report");
    w.force = true;  // the experiment's own folder
    w.command_line = o.command_line;
    w.commit = report::build_commit();
    const report::Written written = report::write(data, w);
    r.report_index = written.index_html;
  }
  r.seconds = since_start();
  return r;
}

}  // namespace whtlm::experiment
