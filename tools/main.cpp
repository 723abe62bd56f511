// whtlm: train, run and measure transformer LMs whose attention output projection
// is a fast Walsh-Hadamard transform. This file only wires up the subcommands (and
// records the command line as typed).
#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <exception>
#include <string>

#include "commands.hpp"

namespace whtlm::cli {
namespace {

std::string& recorded_command() {
  static std::string line;
  return line;
}

}  // namespace

void set_command_line(int argc, char** argv) {
  std::string& line = recorded_command();
  line = "whtlm";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool plain = arg.find_first_of(" \t\n'\"\\$`") == std::string::npos && !arg.empty();
    line += " " + (plain ? arg : "'" + arg + "'");
  }
}

const std::string& command_line() { return recorded_command(); }

}  // namespace whtlm::cli

int main(int argc, char** argv) {
  // A write past the file-size limit (ulimit -f) then fails with EFBIG and a message
  // naming the file, instead of killing the process mid-checkpoint.
  std::signal(SIGXFSZ, SIG_IGN);
  CLI::App app{"whtlm: transformer language models with a Hadamard attention output projection"};
  app.set_version_flag("--version", WHTLM_VERSION);
  app.require_subcommand(1);
  // Every refusal reads the same, whether the option parser or the library finds it.
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return "whtlm: error: " + std::string(e.what()) + "\nRun with --help for more information.\n";
  });
  whtlm::cli::set_command_line(argc, argv);
  whtlm::cli::add_bench_command(app);
  whtlm::cli::add_info_command(app);
  whtlm::cli::add_params_command(app);
  whtlm::cli::add_train_command(app);
  whtlm::cli::add_eval_command(app);
  whtlm::cli::add_init_command(app);
  whtlm::cli::add_convert_command(app);
  whtlm::cli::add_generate_command(app);
  whtlm::cli::add_tokenizer_command(app);
  whtlm::cli::add_experiment_command(app);
  whtlm::cli::add_data_command(app);
  whtlm::cli::add_report_command(app);
  whtlm::cli::add_export_command(app);
  whtlm::cli::add_import_command(app);
  // CLI11 says only "A subcommand is required" for a misspelt one; name it.
  if (argc > 1 && argv[1][0] != '-' &&
      app.get_subcommands([&](CLI::App* c) { return c->check_name(argv[1]); }).empty()) {
    std::string names;
    for (const CLI::App* c : app.get_subcommands([](CLI::App*) { return true; }))
      names += (names.empty() ? "" : ", ") + c->get_name();
    std::fprintf(stderr, "whtlm: error: unknown command '%s' (commands: %s)\n", argv[1],
                 names.c_str());
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "whtlm: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
