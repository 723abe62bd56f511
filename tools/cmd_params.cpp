// `whtlm params`: parameter counts, FLOPs and weight bytes of the presets, with the
// attention output projection dense, wht or identity side by side. Every figure
// comes from the library's ParamLayout and model_cost; nothing here is typed in.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "commands.hpp"
#include "table.hpp"
#include "whtlm/model.hpp"

namespace whtlm::cli {
namespace {

struct ParamsArgs {
  std::vector<std::string> presets;
  std::vector<std::string> projections{"all"};
  int vocab = 256;
  std::optional<int> seq;  // not given: each preset's max_seq
  bool json = false;
};

// The figures of one model (one preset with one projection).
struct Figures {
  ModelConfig config;
  std::size_t total = 0;
  std::size_t by_component[kNumComponents] = {};
  std::size_t attn_per_block = 0;  // attn_qkv + attn_out of layer 0
  ModelCost cost;
};

struct PresetReport {
  std::string name;
  int seq = 0;
  Figures dense;               // the reference the reductions are measured against
  std::vector<Figures> shown;  // the projections asked for, in the order asked
};

Figures compute(const ModelConfig& c, int seq) {
  const ParamLayout layout(c);
  Figures f;
  f.config = layout.config();
  f.total = layout.count();
  for (int i = 0; i < kNumComponents; ++i) f.by_component[i] = layout.count(Component(i));
  for (const TensorSpec& t : layout.tensors())
    if (t.layer == 0 && (t.component == Component::attn_qkv || t.component == Component::attn_out))
      f.attn_per_block += t.numel;
  f.cost = model_cost(c, seq);
  return f;
}

std::vector<Projection> parse_projections(const std::vector<std::string>& names) {
  const std::vector<Projection> all = {Projection::dense, Projection::wht, Projection::identity};
  std::vector<Projection> out;
  auto add = [&out](Projection p) {
    if (std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
  };
  for (const std::string& n : names) {
    if (n == "all") {
      for (Projection p : all) add(p);
      continue;
    }
    try {
      add(parse_projection(n));
    } catch (const std::invalid_argument&) {
      throw std::invalid_argument("--proj: unknown attention output projection '" + n +
                                  "' (expected dense, wht, identity or all)");
    }
  }
  if (out.empty()) throw std::invalid_argument("--proj: name at least one projection");
  return out;
}

std::vector<std::string> expand_presets(const std::vector<std::string>& names) {
  std::vector<std::string> out;
  auto add = [&out](const std::string& n) {
    if (std::find(out.begin(), out.end(), n) == out.end()) out.push_back(n);
  };
  for (const std::string& n : names) {
    if (n == "all") {
      for (const std::string& p : preset_names()) add(p);
    } else {
      add(n);
    }
  }
  if (out.empty()) throw std::invalid_argument("--preset: name at least one preset");
  return out;
}

// Everything is computed (and so validated) before anything is printed.
std::vector<PresetReport> build_reports(const ParamsArgs& a) {
  check_bound(limits::vocab_size, a.vocab, "--vocab");
  if (a.seq) check_bound(limits::seq, *a.seq, "--seq");
  const std::vector<Projection> projections = parse_projections(a.projections);
  std::vector<PresetReport> reports;
  for (const std::string& name : expand_presets(a.presets)) {
    ModelConfig base = preset(name);  // unknown names: the library lists the choices
    base.vocab_size = a.vocab;
    PresetReport r;
    r.name = name;
    r.seq = a.seq.value_or(base.max_seq);
    if (r.seq > base.max_seq)
      throw std::invalid_argument("--seq " + std::to_string(r.seq) +
                                  " is longer than the context of preset '" + name + "' (" +
                                  std::to_string(base.max_seq) + ")");
    try {
      base.projection = Projection::dense;
      r.dense = compute(base, r.seq);
      for (Projection p : projections) {
        ModelConfig c = base;
        c.projection = p;
        r.shown.push_back(p == Projection::dense ? r.dense : compute(c, r.seq));
      }
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("preset '" + name + "': " + e.what());
    }
    reports.push_back(std::move(r));
  }
  return reports;
}

// 1234567 -> "1,234,567".
std::string grouped(long long v) {
  std::string digits = std::to_string(v < 0 ? -v : v);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return (v < 0 ? "-" : "") + out;
}

std::string grouped(std::size_t v) { return grouped(static_cast<long long>(v)); }

// Signed change of x against a reference, in units and percent: "-65,024, -24.8%".
std::string change(std::size_t x, std::size_t ref) {
  const long long diff = static_cast<long long>(x) - static_cast<long long>(ref);
  const std::string sign = diff > 0 ? "+" : "";
  return sign + grouped(diff) + ", " +
         fmt("%+.1f%%", ref > 0 ? 100.0 * double(diff) / double(ref) : 0.0);
}

double fraction_saved(std::size_t x, std::size_t ref) {
  return ref > 0 ? (double(ref) - double(x)) / double(ref) : 0.0;
}

// FLOPs in one unit per line, chosen by the reference value: "7.473 M".
std::string flops(double v, double ref) {
  if (ref >= 1e9) return fmt("%.3f G", v / 1e9);
  return fmt("%.3f M", v / 1e6);
}

std::string mib(double bytes) { return fmt("%.2f MiB", bytes / (1024.0 * 1024.0)); }

// The describe() line, naming every projection shown rather than only the first.
std::string header(const PresetReport& r) {
  std::string line = describe(r.shown.front().config);
  if (r.shown.size() > 1) {
    const std::string tail =
        std::string(projection_name(r.shown.front().config.projection)) + " output projection";
    if (line.size() >= tail.size() &&
        line.compare(line.size() - tail.size(), tail.size(), tail) == 0) {
      std::string names;
      for (const Figures& f : r.shown)
        names += (names.empty() ? "" : " / ") + std::string(projection_name(f.config.projection));
      line.replace(line.size() - tail.size(), tail.size(), names + " output projection");
    }
  }
  return r.name + ": " + line;
}

// Pads to a common width, so that the right-aligning Table shows them left-aligned.
void pad(std::vector<std::string>& labels) {
  std::size_t width = 0;
  for (const std::string& l : labels) width = std::max(width, l.size());
  for (std::string& l : labels) l.resize(width, ' ');
}

void print_text(const PresetReport& r) {
  std::printf("%s\n", header(r).c_str());
  std::vector<std::string> labels = {"parameters"};
  for (int i = 0; i < kNumComponents; ++i) {
    std::string label = component_name(Component(i));
    if (Component(i) == Component::head && r.dense.config.tied_embeddings()) label += " (tied)";
    if (Component(i) == Component::position && r.dense.by_component[i] == 0) label += " (rope)";
    labels.push_back(label);
  }
  labels.emplace_back("total");
  pad(labels);
  std::vector<std::string> head = {labels[0]};
  for (const Figures& f : r.shown) head.emplace_back(projection_name(f.config.projection));
  Table t(head);
  for (int i = 0; i <= kNumComponents; ++i) {
    std::vector<std::string> row = {labels[std::size_t(i) + 1]};
    for (const Figures& f : r.shown)
      row.push_back(grouped(i < kNumComponents ? f.by_component[i] : f.total));
    t.add(row);
  }
  t.print(stdout);

  // One line per figure: dense first (the reference, shown even when not asked
  // for), then each other projection with its change against dense.
  struct Line {
    std::string label;
    std::string (*value)(const Figures&, const Figures& dense);
    std::string (*compare)(const Figures&, const Figures& dense);
  };
  const Line lines[] = {
      {"attention per block",
       [](const Figures& f, const Figures&) { return grouped(f.attn_per_block); },
       [](const Figures& f, const Figures& d) {
         return change(f.attn_per_block, d.attn_per_block);
       }},
      {"whole model", [](const Figures& f, const Figures&) { return grouped(f.total); },
       [](const Figures& f, const Figures& d) { return change(f.total, d.total); }},
      {"forward FLOPs/token",
       [](const Figures& f, const Figures& d) {
         return flops(f.cost.total.flops_forward, d.cost.total.flops_forward);
       },
       [](const Figures& f, const Figures& d) {
         return fmt("%.4f x dense", f.cost.total.flops_forward / d.cost.total.flops_forward);
       }},
      {"training FLOPs/token",
       [](const Figures& f, const Figures& d) {
         return flops(f.cost.flops_train_per_token(), d.cost.flops_train_per_token());
       },
       [](const Figures& f, const Figures& d) {
         return fmt("%.4f x dense",
                    f.cost.flops_train_per_token() / d.cost.flops_train_per_token());
       }},
      {"weight bytes (fp32)",
       [](const Figures& f, const Figures&) { return mib(f.cost.total.weight_bytes); },
       [](const Figures& f, const Figures& d) {
         const double diff = f.cost.total.weight_bytes - d.cost.total.weight_bytes;
         return (diff > 0 ? "+" : "") + mib(diff) + ", " +
                fmt("%+.1f%%", 100.0 * diff / d.cost.total.weight_bytes);
       }},
  };
  std::vector<std::string> line_labels;
  for (const Line& l : lines) line_labels.push_back(l.label + ":");
  pad(line_labels);
  for (std::size_t k = 0; k < std::size(lines); ++k) {
    std::string s = line_labels[k] + " dense " + lines[k].value(r.dense, r.dense);
    for (const Figures& f : r.shown) {
      if (f.config.projection == Projection::dense) continue;
      s += std::string(", ") + projection_name(f.config.projection) + " " +
           lines[k].value(f, r.dense) + " (" + lines[k].compare(f, r.dense) + ")";
    }
    std::printf("%s\n", s.c_str());
  }
  std::printf("(FLOPs per token at context %d; training = forward + backward)\n", r.seq);
}

nlohmann::json to_json(const PresetReport& r, const Figures& f) {
  const ModelConfig& c = f.config;
  nlohmann::json by_component = nlohmann::json::object();
  for (int i = 0; i < kNumComponents; ++i)
    by_component[component_name(Component(i))] = f.by_component[i];
  nlohmann::json j = {{"preset", r.name},
                      {"family", family_name(c.family)},
                      {"proj", projection_name(c.projection)},
                      {"n_layer", c.n_layer},
                      {"d_model", c.d_model},
                      {"n_head", c.n_head},
                      {"n_kv_head", c.n_kv_head},
                      {"d_ff", c.ff()},
                      {"vocab_size", c.vocab_size},
                      {"seq", r.seq},
                      {"params_total", f.total},
                      {"params_by_component", by_component},
                      {"attn_params_per_block", f.attn_per_block},
                      {"flops_forward_per_token", f.cost.total.flops_forward},
                      {"flops_train_per_token", f.cost.flops_train_per_token()},
                      {"weight_bytes", static_cast<std::uint64_t>(f.cost.total.weight_bytes)}};
  if (c.projection != Projection::dense) {
    j["attn_reduction_vs_dense_per_block"] =
        fraction_saved(f.attn_per_block, r.dense.attn_per_block);
    j["total_reduction_vs_dense"] = fraction_saved(f.total, r.dense.total);
  }
  return j;
}

void run_params(const ParamsArgs& a) {
  const std::vector<PresetReport> reports = build_reports(a);
  for (std::size_t i = 0; i < reports.size(); ++i) {
    const PresetReport& r = reports[i];
    if (a.json) {
      for (const Figures& f : r.shown) std::cout << to_json(r, f).dump() << "\n";
      continue;
    }
    if (i > 0) std::printf("\n");
    print_text(r);
  }
  std::cout.flush();
}

std::string presets_help() {
  std::string s =
      "Shows each preset with the attention output projection dense, wht (Walsh-Hadamard\n"
      "transform with a per-channel scale and bias) or identity side by side: parameters\n"
      "per component, per attention block and in total, FLOPs per token (forward and\n"
      "training) and fp32 weight bytes. Changes are measured against dense.\n\n"
      "Presets (vocabulary 256 unless --vocab):\n";
  for (const std::string& name : preset_names()) {
    // The presets' shapes; the projection is chosen here by --proj.
    std::string line = describe(preset(name));
    const std::string tail = ", dense output projection";
    if (line.size() > tail.size() && line.ends_with(tail)) line.resize(line.size() - tail.size());
    s += "  " + name + std::string(name.size() < 12 ? 12 - name.size() : 1, ' ') + line + "\n";
  }
  return s;
}

}  // namespace

void add_params_command(CLI::App& app) {
  auto a = std::make_shared<ParamsArgs>();
  auto* cmd = app.add_subcommand(
      "params",
      "Parameter counts, FLOPs and weight bytes of the presets, dense vs wht vs identity");
  cmd->footer(presets_help());
  cmd->add_option("--preset", a->presets,
                  "Presets to show (repeat or comma-separate; 'all': every preset)")
      ->delimiter(',')
      ->required();
  cmd->add_option("--proj", a->projections,
                  "Attention output projection: dense, wht, identity or all (comma-separate "
                  "several)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--vocab", a->vocab, "Vocabulary size (256: byte-level)")
      ->check(bounded(limits::vocab_size))
      ->capture_default_str();
  cmd->add_option("--seq", a->seq,
                  "Training context for the FLOPs (default: the preset's context; at most that)")
      ->check(bounded(limits::seq));
  cmd->add_flag("--json", a->json,
                "Print JSON lines instead, one per preset and projection (exact integer counts; "
                "reductions vs dense as fractions)");
  cmd->callback([a] { run_params(*a); });
}

}  // namespace whtlm::cli
