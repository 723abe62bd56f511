// Options several commands share, defined once: bounded numbers (every numeric option
// is checked against its Bound from whtlm/limits.hpp, the same bounds config files,
// train_state.json and experiment plans are held to), --threads, --force, --device and
// --precision.
#pragma once

#include <CLI/CLI.hpp>
#include <fstream>
#include <memory>
#include <ostream>
#include <string>

#include "whtlm/limits.hpp"

namespace whtlm::cli {

// A CLI11 check of one value (each item of a list) against `b`: "--threads: 70000 is too
// large: expected an integer from 0 to 256 (0: all cores)". Integers written as 1e6 or
// 16.0 are accepted and passed on as 1000000 and 16.
CLI::Validator bounded(const Bound& b);

// --threads N (0: all cores), bounded.
CLI::Option* add_threads_option(CLI::App* cmd, int* threads,
                                const std::string& help = "Threads (default: all cores)");
// Sets the thread count of the library's kernels (0: all cores).
void use_threads(int threads);

// --device cpu|cuda and --precision fp32|bf16, shared by the commands that run models.
void add_device_options(CLI::App* cmd, std::string* device, std::string* precision);

// Refuses to overwrite an existing file the user names as an output unless --force was
// given: "--out tok.json: exists; give --force to replace it".
void check_new_file(const std::string& option, const std::string& path, bool force);

// --json FILE: the stream to write JSON lines to ('-': stdout; none: json = nullptr). An
// existing FILE is refused unless `force`.
std::unique_ptr<std::ofstream> open_json(const std::string& path, bool force, std::ostream*& json);

}  // namespace whtlm::cli
