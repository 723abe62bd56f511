// Shared options (tools/options.hpp).
#include "options.hpp"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <stdexcept>
#include <string>

#include "whtlm/threads.hpp"

namespace whtlm::cli {

CLI::Validator bounded(const Bound& b) {
  return CLI::Validator(
      [b](std::string& text) -> std::string {
        double v = 0;
        try {
          v = parse_bounded(b, text, "");
        } catch (const std::invalid_argument& e) {
          std::string why = e.what();
          return why.rfind(": ", 0) == 0 ? why.substr(2) : why;
        }
        // CLI11 converts integers from plain digits only: pass 1e6 on as 1000000.
        if (b.integer && text.find_first_not_of("+-0123456789") != std::string::npos) {
          char buf[32];
          std::snprintf(buf, sizeof buf, "%.0f", v);
          text = buf;
        }
        return std::string();
      },
      describe(b));
}

void add_threads_option(CLI::App* cmd, ThreadsOption* threads, const std::string& help) {
  threads->option =
      cmd->add_option("--threads", threads->count, help)->check(bounded(limits::threads));
}

void ThreadsOption::apply() const { set_num_threads(count > 0 ? count : available_cores()); }

CLI::Option* add_thread_counts_option(CLI::App* cmd, std::vector<int>* counts,
                                      const std::string& help) {
  return cmd->add_option("--threads", *counts, help)
      ->delimiter(',')
      ->check(bounded(limits::thread_count));
}

namespace {

CLI::Option* add_device_option(CLI::App* cmd, DeviceOptions* d, const std::string& help) {
  return cmd->add_option("--device", d->device, help)->check(CLI::IsMember({"cpu", "cuda"}));
}

CLI::Option* add_precision_option(CLI::App* cmd, DeviceOptions* d, const std::string& help) {
  return cmd->add_option("--precision", d->precision, help)->check(CLI::IsMember({"fp32", "bf16"}));
}

}  // namespace

void add_device_options(CLI::App* cmd, DeviceOptions* d) {
  add_device_option(cmd, d, "Where the model runs: cpu, or cuda (an NVIDIA GPU)")
      ->capture_default_str();
  add_precision_option(cmd, d,
                       "Matrix products in fp32, or bf16 operands with fp32 accumulation (CPU: "
                       "oneDNN, AMX or AVX512-BF16 where present; see whtlm info)")
      ->capture_default_str();
}

void add_device_override_options(CLI::App* cmd, DeviceOptions* d, const std::string& device_help,
                                 const std::string& precision_help) {
  d->device.clear();
  d->precision.clear();
  add_device_option(cmd, d, device_help);
  add_precision_option(cmd, d, precision_help);
}

void add_weights_option(CLI::App* cmd, std::string* weights) {
  cmd->add_option("--weights", *weights,
                  "Weights the matrix products read: f32, bf16, or q8_0 (blocks of 32 int8 "
                  "values with an fp16 scale, as llama.cpp's Q8_0); packed once when the "
                  "session starts, CPU only. Norms, embeddings and wht's scale stay fp32")
      ->check(CLI::IsMember({"f32", "bf16", "q8_0"}))
      ->capture_default_str();
}

void add_json_option(CLI::App* cmd, JsonOption* json, const std::string& per) {
  cmd->add_option("--json", json->path,
                  "Also write JSON lines, one per " + per + ", to a new FILE ('-': stdout)");
  cmd->add_flag("--force", json->force, "Replace the --json file if it exists");
}

void check_new_file(const std::string& option, const std::string& path, bool force) {
  std::error_code ec;
  const auto st = std::filesystem::symlink_status(path, ec);
  if (!std::filesystem::exists(st)) return;
  if (std::filesystem::is_directory(st))
    throw std::invalid_argument(option + " " + path + ": is a folder; name a file to write");
  if (!force)
    throw std::invalid_argument(option + " " + path +
                                ": exists; give --force to replace it (nothing was written)");
}

JsonOutput::JsonOutput(const JsonOption& o) {
  if (o.path.empty()) return;
  if (o.path == "-") {
    out_ = &std::cout;
    return;
  }
  check_new_file("--json", o.path, o.force);
  file_ = std::make_unique<std::ofstream>(o.path);
  if (!*file_) throw std::runtime_error("--json: cannot open '" + o.path + "' for writing");
  out_ = file_.get();
}

void JsonOutput::write(const std::string& lines) {
  if (out_ != nullptr) *out_ << lines << std::flush;
}

namespace {

std::string preset_list() {
  std::string s;
  for (const std::string& p : preset_names()) s += (s.empty() ? "" : ", ") + p;
  return s;
}

}  // namespace

void add_model_options(CLI::App* cmd, ModelOptions* m) {
  cmd->add_option("--preset", m->preset, "Model shape: " + preset_list())->capture_default_str();
  cmd->add_option("--proj", m->proj, "Attention output projection: dense, wht or identity")
      ->capture_default_str();
  cmd->add_option("--vocab", m->vocab,
                  "Vocabulary size (default 256, byte-level; larger for token shards)")
      ->check(bounded(limits::vocab_size));
  cmd->add_option("--layers", m->layers, "Override the preset's number of layers")
      ->check(bounded(limits::n_layer));
  cmd->add_option("--d-model", m->d_model, "Override the preset's width")
      ->check(bounded(limits::d_model));
  cmd->add_option("--heads", m->heads, "Override the preset's attention heads")
      ->check(bounded(limits::n_head));
  cmd->add_option("--kv-heads", m->kv_heads, "Override the key/value heads (llama)")
      ->check(bounded(limits::n_head));
  cmd->add_option("--scale-init", m->scale_init,
                  "How wht's per-channel scale starts: matched (the spread a dense output "
                  "projection starts with, 0.02/sqrt(2 layers)*sqrt(d)) or one")
      ->check(CLI::IsMember({"one", "matched"}))
      ->capture_default_str();
}

ModelConfig model_from(const ModelOptions& m, bool exact_seq) {
  ModelConfig c;
  try {
    c = preset(m.preset);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("--preset: ") + e.what());
  }
  try {
    c.projection = parse_projection(m.proj);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("--proj: ") + e.what());
  }
  if (m.vocab > 0) c.vocab_size = m.vocab;
  if (m.layers > 0) c.n_layer = m.layers;
  if (m.d_model > 0) c.d_model = m.d_model;
  if (m.heads > 0) c.n_head = c.n_kv_head = m.heads;
  if (m.kv_heads > 0) c.n_kv_head = m.kv_heads;
  if (m.seq > c.max_seq || (exact_seq && m.seq > 0)) c.max_seq = m.seq;
  try {
    c.validate();
  } catch (const ConfigError& e) {
    throw std::invalid_argument(renamed(e, {{"n_layer", "--layers"},
                                            {"d_model", "--d-model"},
                                            {"n_head", "--heads"},
                                            {"n_kv_head", "--kv-heads"},
                                            {"vocab_size", "--vocab"},
                                            {"max_seq", "--seq"}}));
  }
  return c;
}

}  // namespace whtlm::cli
