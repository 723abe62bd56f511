// The subcommands of the `whtlm` program, one file each (tools/cmd_NAME.cpp). Each
// registers itself on the app; its callback parses nothing more and calls the library.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "options.hpp"

namespace whtlm::report {
struct Claim;
}

namespace whtlm::cli {

void add_bench_command(CLI::App& app);
void add_info_command(CLI::App& app);
void add_params_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_init_command(CLI::App& app);
void add_convert_command(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_tokenizer_command(CLI::App& app);
void add_experiment_command(CLI::App& app);
void add_data_command(CLI::App& app);
void add_report_command(CLI::App& app);
void add_export_command(CLI::App& app);
void add_import_command(CLI::App& app);

// The command line as typed (recorded by experiments and reports); main() sets it.
void set_command_line(int argc, char** argv);
const std::string& command_line();

// The claims and their verdicts, one aligned line each, on stdout (report, experiment).
void print_claims(const std::vector<report::Claim>& claims);

}  // namespace whtlm::cli
