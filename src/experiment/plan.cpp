// Experiment plans: the built-in ones, scaling, validation and the JSON config file.
#include <cmath>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <string>

#include "whtlm/experiment.hpp"

namespace whtlm::experiment {
namespace {

using json = nlohmann::json;

// "L4-d256". (Appended piecewise: GCC 12 warns falsely on "L" + std::to_string(...).)
std::string shape_name(int layers, int d_model) {
  std::string s("L");
  s += std::to_string(layers);
  s += "-d";
  s += std::to_string(d_model);
  return s;
}

Size llama_size(int layers, int d_model, int heads, int seeds) {
  Size s;
  s.model = preset("tiny");
  s.model.n_layer = layers;
  s.model.d_model = d_model;
  s.model.n_head = s.model.n_kv_head = heads;
  s.name = shape_name(layers, d_model);
  s.seeds = seeds;
  return s;
}

// Reads field `key` of object `j` into `out` when present; a value of the wrong type
// throws naming the field.
template <class T>
void read(const json& j, const char* key, T& out, const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end()) return;
  try {
    out = it->template get<T>();
  } catch (const json::exception&) {
    throw std::invalid_argument(where + "." + key + ": wrong type (" + it->dump() + ")");
  }
}

void reject_unknown(const json& j, const std::set<std::string>& known, const std::string& where) {
  for (auto it = j.begin(); it != j.end(); ++it)
    if (!known.count(it.key())) {
      std::string list;
      for (const std::string& k : known) list += (list.empty() ? "" : ", ") + k;
      throw std::invalid_argument(where + "." + it.key() + ": unknown field (known: " + list + ")");
    }
}

}  // namespace

std::int64_t Plan::steps() const {
  const std::int64_t per_step = std::int64_t(batch) * seq;
  return per_step > 0 ? (tokens + per_step - 1) / per_step : 0;
}

Plan builtin_plan(const std::string& name) {
  Plan p;
  if (name == "default") {
    // Two widths, two seeds each: about 15 minutes on a 2-core AVX-512 machine.
    p.sizes = {llama_size(4, 128, 2, 2), llama_size(4, 256, 4, 2)};
    p.tokens = 250 * 16 * 128;
  } else if (name == "quick") {
    // A first look in about 2 minutes: the seed spread only at the smaller size.
    p.sizes = {llama_size(2, 128, 2, 2), llama_size(4, 128, 2, 1)};
    p.tokens = 160 * 16 * 128;
    p.eval_every = 20;
    p.bench_prompts = {64, 256};
    p.bench_batches = {1, 8};
    p.bench_repetitions = 2;
  } else {
    throw std::invalid_argument("unknown built-in plan '" + name + "' (known: default, quick)");
  }
  return p;
}

Plan scaled(Plan plan, double factor) {
  if (!(factor >= 1) || !std::isfinite(factor))
    throw std::invalid_argument("--scale must be a number >= 1, got " + std::to_string(factor));
  plan.tokens = static_cast<std::int64_t>(std::llround(double(plan.tokens) * factor));
  plan.eval_every = static_cast<std::int64_t>(std::llround(double(plan.eval_every) * factor));
  return plan;
}

void validate(const Plan& p) {
  if (p.sizes.empty()) throw std::invalid_argument("experiment plan: sizes: at least one needed");
  std::set<std::string> names;
  for (const Size& s : p.sizes) {
    const std::string where = "experiment plan: sizes." + s.name;
    if (s.name.empty() || s.name.find_first_of("/\\ \t\n") != std::string::npos)
      throw std::invalid_argument("experiment plan: size name '" + s.name +
                                  "': must be non-empty, without spaces or slashes");
    if (!names.insert(s.name).second)
      throw std::invalid_argument(where + ": the name is used twice");
    if (s.seeds < 1) throw std::invalid_argument(where + ".seeds: must be >= 1");
    for (Projection proj : p.projections) {
      ModelConfig c = s.model;
      c.projection = proj;
      try {
        c.validate();
      } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(where + ": " + e.what());
      }
    }
    if (s.model.max_seq < p.seq)
      throw std::invalid_argument(where + ": context " + std::to_string(s.model.max_seq) +
                                  " is shorter than seq " + std::to_string(p.seq));
  }
  if (p.projections.empty())
    throw std::invalid_argument("experiment plan: projections: at least one needed");
  if (p.tokens <= 0) throw std::invalid_argument("experiment plan: tokens: must be > 0");
  if (p.batch < 1 || p.seq < 1)
    throw std::invalid_argument("experiment plan: batch and seq must be >= 1");
  if (!(p.lr > 0)) throw std::invalid_argument("experiment plan: lr: must be > 0");
  if (p.eval_every < 1 || p.eval_batches < 1)
    throw std::invalid_argument("experiment plan: eval_every and eval_batches must be >= 1");
  if (p.bench_decode < 1 || p.bench_repetitions < 1)
    throw std::invalid_argument("experiment plan: bench.decode and bench.repetitions must be >= 1");
  for (int b : p.bench_batches)
    if (b < 1) throw std::invalid_argument("experiment plan: bench.batches: values must be >= 1");
  for (int l : p.bench_prompts)
    if (l < 1) throw std::invalid_argument("experiment plan: bench.prompts: values must be >= 1");
  if (p.threads < 0) throw std::invalid_argument("experiment plan: threads: must be >= 0");
}

std::string plan_to_json(const Plan& p) {
  json sizes = json::array();
  for (const Size& s : p.sizes)
    sizes.push_back({{"name", s.name},
                     {"family", family_name(s.model.family)},
                     {"layers", s.model.n_layer},
                     {"d_model", s.model.d_model},
                     {"heads", s.model.n_head},
                     {"kv_heads", s.model.n_kv_head},
                     {"d_ff", s.model.ff()},
                     {"context", s.model.max_seq},
                     {"vocab", s.model.vocab_size},
                     {"seeds", s.seeds}});
  json projs = json::array();
  for (Projection proj : p.projections) projs.push_back(projection_name(proj));
  json j{{"sizes", sizes},
         {"projections", projs},
         {"tokens", p.tokens},
         {"batch", p.batch},
         {"seq", p.seq},
         {"lr", p.lr},
         {"eval_every", p.eval_every},
         {"eval_batches", p.eval_batches},
         {"first_seed", p.first_seed},
         {"data", p.data.path},
         {"val_data", p.data.val_path},
         {"tokenizer", p.data.tokenizer},
         {"bench",
          {{"batches", p.bench_batches},
           {"prompts", p.bench_prompts},
           {"decode", p.bench_decode},
           {"repetitions", p.bench_repetitions},
           {"max_prefill_tokens", p.bench_max_prefill_tokens}}},
         {"threads", p.threads}};
  return j.dump(2) + "\n";
}

Plan plan_from_json(const std::string& text, const std::string& source) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw std::invalid_argument(source + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw std::invalid_argument(source + ": expected a JSON object");
  reject_unknown(
      j,
      {"sizes", "projections", "tokens", "batch", "seq", "lr", "eval_every", "eval_batches",
       "first_seed", "data", "val_data", "tokenizer", "bench", "threads"},
      source);
  Plan p = builtin_plan("default");
  if (j.contains("sizes")) {
    if (!j["sizes"].is_array()) throw std::invalid_argument(source + ".sizes: expected an array");
    p.sizes.clear();
    for (std::size_t i = 0; i < j["sizes"].size(); ++i) {
      const json& e = j["sizes"][i];
      const std::string where = source + ".sizes[" + std::to_string(i) + "]";
      if (!e.is_object()) throw std::invalid_argument(where + ": expected an object");
      reject_unknown(e,
                     {"name", "preset", "family", "layers", "d_model", "heads", "kv_heads", "d_ff",
                      "context", "vocab", "seeds"},
                     where);
      Size s = llama_size(4, 128, 2, 1);
      std::string base, family;
      read(e, "preset", base, where);
      if (!base.empty()) {
        try {
          s.model = preset(base);
        } catch (const std::invalid_argument& err) {
          throw std::invalid_argument(where + ".preset: " + err.what());
        }
        s.name = base;
      }
      read(e, "family", family, where);
      if (!family.empty()) {
        try {
          s.model.family = parse_family(family);
        } catch (const std::invalid_argument& err) {
          throw std::invalid_argument(where + ".family: " + err.what());
        }
        if (s.model.family == Family::gpt2) s.model.n_kv_head = s.model.n_head;
      }
      read(e, "layers", s.model.n_layer, where);
      read(e, "d_model", s.model.d_model, where);
      if (e.contains("heads")) {
        read(e, "heads", s.model.n_head, where);
        s.model.n_kv_head = s.model.n_head;
      }
      read(e, "kv_heads", s.model.n_kv_head, where);
      read(e, "d_ff", s.model.d_ff, where);
      read(e, "context", s.model.max_seq, where);
      read(e, "vocab", s.model.vocab_size, where);
      read(e, "seeds", s.seeds, where);
      if (base.empty()) s.name = shape_name(s.model.n_layer, s.model.d_model);
      read(e, "name", s.name, where);
      p.sizes.push_back(s);
    }
  }
  if (j.contains("projections")) {
    std::vector<std::string> names;
    read(j, "projections", names, source);
    p.projections.clear();
    for (const std::string& n : names) {
      try {
        p.projections.push_back(parse_projection(n));
      } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(source + ".projections: " + e.what());
      }
    }
  }
  read(j, "tokens", p.tokens, source);
  read(j, "batch", p.batch, source);
  read(j, "seq", p.seq, source);
  read(j, "lr", p.lr, source);
  read(j, "eval_every", p.eval_every, source);
  read(j, "eval_batches", p.eval_batches, source);
  read(j, "first_seed", p.first_seed, source);
  read(j, "data", p.data.path, source);
  read(j, "val_data", p.data.val_path, source);
  read(j, "tokenizer", p.data.tokenizer, source);
  read(j, "threads", p.threads, source);
  if (j.contains("bench")) {
    const json& b = j["bench"];
    const std::string where = source + ".bench";
    if (!b.is_object()) throw std::invalid_argument(where + ": expected an object");
    reject_unknown(b, {"batches", "prompts", "decode", "repetitions", "max_prefill_tokens"}, where);
    read(b, "batches", p.bench_batches, where);
    read(b, "prompts", p.bench_prompts, where);
    read(b, "decode", p.bench_decode, where);
    read(b, "repetitions", p.bench_repetitions, where);
    read(b, "max_prefill_tokens", p.bench_max_prefill_tokens, where);
  }
  try {
    validate(p);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(source + ": " + e.what());
  }
  return p;
}

std::string run_name(const std::string& size, Projection p, std::uint64_t seed) {
  return size + "-" + projection_name(p) + "-s" + std::to_string(seed);
}

}  // namespace whtlm::experiment
