// `whtlm experiment` (the main job): argument parsing only; the work is in the library
// (include/whtlm/experiment.hpp, include/whtlm/report.hpp).
#include <cstdio>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>

#include "commands.hpp"
#include "whtlm/data.hpp"
#include "whtlm/experiment.hpp"
#include "whtlm/io.hpp"
#include "whtlm/matmul.hpp"
#include "whtlm/report.hpp"
#include "whtlm/tokenizer.hpp"

namespace whtlm::cli {
namespace {

struct ExperimentArgs {
  std::string out = "runs/experiment", config, data, tokenizer;
  DeviceOptions device;
  double scale = 1;
  ThreadsOption threads;
  bool quick = false, print_config = false, no_bench = false, quiet = false;
  bool no_downstream = false;
};

void run_experiment(const ExperimentArgs& a) {
  // The built-in plans train in bf16 where the CPU computes bf16 products natively
  // (AMX or AVX512-BF16), in fp32 elsewhere; plan.json and the report record which.
  // (A --config plan takes its own field, so the CPU is not probed for it.)
  const Device device = a.device.device.empty() ? Device::cpu : a.device.parsed_device();
  Precision precision = Precision::fp32;
  if (!a.device.precision.empty())
    precision = a.device.parsed_precision();
  else if (a.config.empty() && device == Device::cpu)
    precision = precision_support().bf16_native() ? Precision::bf16 : Precision::fp32;
  experiment::Plan plan = experiment::builtin_plan(a.quick ? "quick" : "default", precision);
  if (!a.config.empty()) {
    if (a.quick) throw std::invalid_argument("--quick and --config: give one of them");
    plan = experiment::plan_from_json(io::read_file(a.config), a.config);
  }
  plan = experiment::scaled(plan, a.scale);
  if (!a.data.empty()) plan.data.path = a.data;
  if (!a.tokenizer.empty()) plan.data.tokenizer = a.tokenizer;
  // Models take the vocabulary of the data's tokenizer, when it is not bytes.
  const tok::Tokenizer t = data::data_tokenizer(plan.data);
  if (!t.is_bytes())
    for (experiment::Size& s : plan.sizes) s.model.vocab_size = t.vocab_size();
  if (a.threads.given()) plan.threads = a.threads.count;
  if (!a.device.device.empty()) plan.device = a.device.parsed_device();
  if (!a.device.precision.empty()) plan.precision = a.device.parsed_precision();
  experiment::validate(plan);
  if (a.print_config) {
    std::cout << experiment::plan_to_json(plan);
    return;
  }
  experiment::Options o;
  o.plan = plan;
  o.out = a.out;
  o.command_line = command_line();
  o.progress = !a.quiet;
  o.bench = !a.no_bench;
  o.downstream = !a.no_downstream;
  const std::size_t runs = experiment::plan_runs(plan).size();
  const std::size_t sweep_runs = experiment::plan_sweep(plan).size();
  if (!a.quiet) {
    std::fprintf(stderr,
                 "whtlm experiment: %zu training runs (%zu sizes x %zu projections, %zu wht scale "
                 "inits)%s on %s %s, then the inference sweep and the report, in %s\n",
                 runs, plan.sizes.size(), plan.projections.size(), plan.scale_inits.size(),
                 sweep_runs == 0 ? ""
                                 : (" after a learning-rate sweep of " +
                                    std::to_string(sweep_runs) + " shorter runs")
                                       .c_str(),
                 device_name(plan.device), precision_name(plan.precision), a.out.c_str());
    for (const experiment::Size& s : plan.sizes)
      std::fprintf(stderr, "  %s: %lld steps (%.3g tokens) per run, sweep runs %lld steps\n",
                   s.name.c_str(), static_cast<long long>(plan.steps(s)), double(plan.tokens_of(s)),
                   static_cast<long long>(plan.sweep_steps(s)));
  }
  const experiment::Result r = experiment::run(o);
  std::fprintf(stderr, "whtlm experiment: %d runs trained, %d resumed, %d kept, in %.0f s\n",
               r.runs_trained, r.runs_resumed, r.runs_kept, r.seconds);
  const report::Data data = report::load({a.out});
  std::printf("claims (details in the report):\n");
  print_claims(report::decide_claims(data));
  std::printf("report: %s\n", r.report_index.c_str());
}

}  // namespace

void add_experiment_command(CLI::App& app) {
  auto a = std::make_shared<ExperimentArgs>();
  CLI::App* cmd = app.add_subcommand(
      "experiment",
      "The main job: train dense, wht and identity models side by side (same data, seeds and "
      "token budget) at several sizes, after a learning-rate sweep, measure their inference "
      "throughput and memory, and write a "
      "report (OUT/report/index.html) that checks the paper's claims against the measurements. "
      "Running the same command again continues an interrupted experiment.");
  cmd->add_option("--out", a->out, "Experiment folder")->capture_default_str();
  cmd->add_flag("--quick", a->quick,
                "A first look in about 2 minutes (smaller, shorter runs, no sweep)");
  cmd->add_option("--scale", a->scale,
                  "Train on this many times the plan's tokens (>= 1), for longer runs")
      ->check(bounded(limits::scale))
      ->capture_default_str();
  cmd->add_option("--config", a->config,
                  "A JSON plan (sizes, projections, tokens, batch, seq, lr, bench, ...); "
                  "--print-config shows the default one to start from");
  cmd->add_flag("--print-config", a->print_config, "Print the plan as JSON and exit");
  cmd->add_option("--data", a->data,
                  "Training data (text file or folder, llm.c shards); default: the built-in "
                  "corpus");
  cmd->add_option("--tokenizer", a->tokenizer,
                  "How text is tokenized: byte (default), a tokenizer.json, or a folder with "
                  "GPT-2's files; the models' vocabulary follows it");
  add_threads_option(cmd, &a->threads);
  add_device_override_options(
      cmd, &a->device,
      "Where the runs train and the inference sweep runs: cpu or cuda (default: the plan's, cpu "
      "for the built-in plans)",
      "Matrix products in fp32, or bf16 with fp32 accumulation (default: the plan's; the built-in "
      "plans take bf16 where the CPU computes bf16 products natively, see whtlm info, and fp32 "
      "elsewhere)");
  cmd->add_flag("--no-bench", a->no_bench, "Skip the inference sweep");
  cmd->add_flag("--no-downstream", a->no_downstream,
                "Skip the downstream proxy (cloze accuracy, bits per byte) of each run");
  cmd->add_flag("--quiet", a->quiet, "Less progress output");
  cmd->callback([a] { run_experiment(*a); });
}

}  // namespace whtlm::cli
