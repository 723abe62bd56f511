// Model configuration: names, presets and validation.
#include <cctype>
#include <cmath>
#include <sstream>
#include <stdexcept>
#include <string>

#include "model/projection.hpp"
#include "whtlm/limits.hpp"
#include "whtlm/model.hpp"

namespace whtlm {

const char* family_name(Family f) { return f == Family::gpt2 ? "gpt2" : "llama"; }

const char* projection_name(Projection p) {
  switch (p) {
    case Projection::dense:
      return "dense";
    case Projection::wht:
      return "wht";
    case Projection::identity:
      return "identity";
  }
  return "?";
}

Family parse_family(std::string_view name) {
  if (name == "gpt2") return Family::gpt2;
  if (name == "llama") return Family::llama;
  throw std::invalid_argument("unknown model family '" + std::string(name) +
                              "' (expected gpt2 or llama)");
}

Projection parse_projection(std::string_view name) {
  for (Projection p : {Projection::dense, Projection::wht, Projection::identity})
    if (name == projection_name(p)) return p;
  throw std::invalid_argument("unknown attention output projection '" + std::string(name) +
                              "' (expected dense, wht or identity)");
}

const char* scale_init_name(ScaleInit s) { return s == ScaleInit::one ? "one" : "matched"; }

ScaleInit parse_scale_init(std::string_view name) {
  for (ScaleInit s : {ScaleInit::one, ScaleInit::matched})
    if (name == scale_init_name(s)) return s;
  throw std::invalid_argument("unknown initial wht scale '" + std::string(name) +
                              "' (expected one or matched)");
}

double initial_wht_scale(const ModelConfig& c, ScaleInit s) {
  if (s == ScaleInit::one) return 1.0;
  return 0.02 / std::sqrt(2.0 * c.n_layer) * std::sqrt(double(c.d_model));
}

std::string renamed(const ConfigError& e,
                    const std::vector<std::pair<std::string, std::string>>& names) {
  auto is_word = [](char ch) { return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_'; };
  auto rename = [&](std::string text) {
    std::string out;
    for (std::size_t i = 0; i < text.size();) {
      bool done = false;
      if (i == 0 || !is_word(text[i - 1]))
        for (const auto& [from, to] : names)
          if (text.compare(i, from.size(), from) == 0 &&
              (i + from.size() == text.size() || !is_word(text[i + from.size()]))) {
            out += to;
            i += from.size();
            done = true;
            break;
          }
      if (!done) out += text[i++];
    }
    return out;
  };
  return rename(e.field) + ": " + rename(e.why);
}

int default_d_ff(Family family, int d_model) {
  if (family == Family::gpt2) return 4 * d_model;
  const int hidden = 8 * d_model / 3;
  return (hidden + 255) / 256 * 256;
}

int ModelConfig::ff() const { return d_ff > 0 ? d_ff : default_d_ff(family, d_model); }

void ModelConfig::validate() const {
  auto fail = [](const std::string& field, const std::string& why) {
    throw ConfigError(field, why);
  };
  // The bounds every source of a config shares (whtlm/limits.hpp); check_bound's message
  // names the value and the range.
  auto bounded = [&](const char* field, const Bound& b, double v) {
    try {
      check_bound(b, v, "");
    } catch (const std::invalid_argument& e) {
      fail(field, std::string(e.what()).substr(2));  // without check_bound's ": " lead
    }
  };
  bounded("n_layer", limits::n_layer, n_layer);
  bounded("d_model", limits::d_model, d_model);
  bounded("n_head", limits::n_head, n_head);
  bounded("n_kv_head", limits::n_head, n_kv_head);
  bounded("vocab_size", limits::vocab_size, vocab_size);
  bounded("max_seq", limits::context, max_seq);
  bounded("d_ff", limits::d_ff, d_ff);
  bounded("norm_eps", limits::norm_eps, norm_eps);
  if (family == Family::llama) bounded("rope_theta", limits::rope_theta, rope_theta);
  if (d_model % n_head != 0)
    fail("n_head", "d_model = " + std::to_string(d_model) +
                       " is not divisible by n_head = " + std::to_string(n_head));
  if (n_kv_head > n_head || n_head % n_kv_head != 0)
    fail("n_kv_head",
         std::to_string(n_kv_head) + " must divide n_head = " + std::to_string(n_head));
  if (family == Family::gpt2 && n_kv_head != n_head)
    fail("n_kv_head",
         "gpt2 has no grouped-query attention: must equal n_head = " + std::to_string(n_head));
  if (family == Family::llama && head_dim() % 2 != 0)
    fail("n_head", "rotary embeddings need an even head dimension, got d_model / n_head = " +
                       std::to_string(head_dim()));
  if (const std::string why = model::projection_width_problem(projection, d_model); !why.empty())
    fail("d_model",
         std::string("the ") + projection_name(projection) + " output projection " + why);
}

namespace {

struct Preset {
  const char* name;
  Family family;
  int layers, d, heads, kv_heads, seq;
};

// tiny and small are llama-shaped, base is gpt2-shaped; the named GPT-2 sizes have
// llama counterparts with the same width and depth.
constexpr Preset kPresets[] = {
    {"tiny", Family::llama, 4, 256, 4, 4, 256},
    {"small", Family::llama, 6, 512, 8, 8, 256},
    {"base", Family::gpt2, 8, 1024, 16, 16, 256},
    {"gpt2-124m", Family::gpt2, 12, 768, 12, 12, 1024},
    {"gpt2-350m", Family::gpt2, 24, 1024, 16, 16, 1024},
    {"tiny-gpt2", Family::gpt2, 4, 256, 4, 4, 256},
    {"small-gpt2", Family::gpt2, 6, 512, 8, 8, 256},
    {"base-llama", Family::llama, 8, 1024, 16, 16, 256},
    {"llama-124m", Family::llama, 12, 768, 12, 12, 1024},
    {"llama-350m", Family::llama, 24, 1024, 16, 16, 1024},
};

}  // namespace

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const Preset& p : kPresets) names.emplace_back(p.name);
  return names;
}

ModelConfig preset(std::string_view name) {
  for (const Preset& p : kPresets) {
    if (name != p.name) continue;
    ModelConfig c;
    c.family = p.family;
    c.n_layer = p.layers;
    c.d_model = p.d;
    c.n_head = p.heads;
    c.n_kv_head = p.kv_heads;
    c.max_seq = p.seq;
    return c;
  }
  std::string list;
  for (const Preset& p : kPresets) list += std::string(list.empty() ? "" : ", ") + p.name;
  throw std::invalid_argument("unknown preset '" + std::string(name) + "' (choices: " + list + ")");
}

std::string describe(const ModelConfig& c) {
  std::ostringstream s;
  s << family_name(c.family) << ", " << c.n_layer << " layers, d " << c.d_model << ", " << c.n_head
    << " heads";
  if (c.n_kv_head != c.n_head) s << " (" << c.n_kv_head << " kv)";
  s << ", ff " << c.ff() << ", context " << c.max_seq << ", vocab " << c.vocab_size << ", "
    << projection_name(c.projection) << " output projection";
  return s.str();
}

}  // namespace whtlm
