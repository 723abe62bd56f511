// whtlm: train, run and measure transformer LMs whose attention output projection
// is a fast Walsh-Hadamard transform. This file only wires up the subcommands.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

#include "commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"whtlm: transformer language models with a Hadamard attention output projection"};
  app.set_version_flag("--version", WHTLM_VERSION);
  app.require_subcommand(1);
  whtlm::cli::set_command_line(argc, argv);
  whtlm::cli::add_bench_command(app);
  whtlm::cli::add_info_command(app);
  whtlm::cli::add_params_command(app);
  whtlm::cli::add_train_command(app);
  whtlm::cli::add_eval_command(app);
  whtlm::cli::add_init_command(app);
  whtlm::cli::add_generate_command(app);
  whtlm::cli::add_tokenizer_command(app);
  whtlm::cli::add_experiment_command(app);
  whtlm::cli::add_data_command(app);
  whtlm::cli::add_report_command(app);
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
