// `whtlm report` (redraw the report from existing folders): argument parsing only; the
// work is in the library (include/whtlm/report.hpp).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "commands.hpp"
#include "whtlm/report.hpp"

namespace whtlm::cli {
namespace {

namespace fs = std::filesystem;

struct ReportArgs {
  std::vector<std::string> inputs;
  std::string out;
  bool force = false;
};

void run_report(const ReportArgs& a) {
  std::string out = a.out;
  bool own_folder = false;  // an experiment's report/ is whtlm's to rewrite
  if (out.empty()) {
    own_folder = true;
    if (a.inputs.size() != 1 || !fs::exists(fs::path(a.inputs[0]) / "experiment.json"))
      throw std::invalid_argument(
          "--out is needed unless the only input is an experiment folder (then its report/ "
          "is rewritten)");
    out = (fs::path(a.inputs[0]) / "report").string();
  }
  const report::Data data = report::load(a.inputs);
  for (const std::string& w : data.warnings) std::fprintf(stderr, "whtlm report: %s\n", w.c_str());
  report::WriteOptions w;
  w.out_dir = out;
  w.force = a.force || own_folder;
  w.command_line = command_line();
  w.commit = report::build_commit();
  const report::Written written = report::write(data, w);
  std::printf("claims:\n");
  print_claims(written.claims);
  std::printf("report: %s (%zu figures)\n", written.index_html.c_str(), written.figures.size());
}

}  // namespace

void print_claims(const std::vector<report::Claim>& claims) {
  std::size_t width = 0;
  for (const report::Claim& c : claims) width = std::max(width, c.claim.size());
  for (const report::Claim& c : claims)
    std::printf("  %-*s  %s\n", int(width), c.claim.c_str(), report::verdict_name(c.verdict));
}

void add_report_command(CLI::App& app) {
  auto a = std::make_shared<ReportArgs>();
  CLI::App* cmd = app.add_subcommand(
      "report",
      "Redraw the report (figures, tables, claims) from existing experiment folders, training "
      "run folders and `whtlm bench infer --json` files, so runs can be added and compared");
  cmd->alias("plot");
  cmd->add_option("inputs", a->inputs, "Experiment folders, run folders or bench JSON files")
      ->required();
  cmd->add_option("--out", a->out,
                  "Report folder (default: INPUT/report when the only input is an experiment); "
                  "new, empty or holding an earlier report");
  cmd->add_flag("--force", a->force,
                "Write the report into an --out folder that holds other files (its index.html, "
                "report.md and figures/ are replaced)");
  cmd->callback([a] { run_report(*a); });
}

}  // namespace whtlm::cli
