// Experiment plans: the built-in ones, scaling, validation and the JSON config file.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "io/json_read.hpp"
#include "whtlm/experiment.hpp"
#include "whtlm/limits.hpp"

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

std::string rate_text(double lr) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", lr);
  return buf;
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

// Field readers: a value of the wrong type, out of its bound (whtlm/limits.hpp, the same
// bounds the command line uses) or not an integer where one is needed throws naming
// the field.
template <class T>
void read_number(const io::JsonObject& j, const char* key, const Bound& b, T& out) {
  if (!j.has(key)) return;
  if constexpr (std::is_integral_v<T>)
    out = j.integer<T>(key, b);
  else
    out = static_cast<T>(j.number(key, b));
}

void read_string(const io::JsonObject& j, const char* key, std::string& out) {
  if (j.has(key)) out = j.string(key);
}

void read_list(const io::JsonObject& j, const char* key, const Bound& b, std::vector<int>& out) {
  if (!j.has(key)) return;
  const json& v = j.at(key);
  if (!v.is_array()) j.fail(key, "expected an array of numbers");
  out.clear();
  for (std::size_t i = 0; i < v.size(); ++i) {
    const std::string where = j.where(std::string(key) + "[" + std::to_string(i) + "]");
    if (!v[i].is_number()) throw std::runtime_error(where + ": expected " + describe(b));
    try {
      out.push_back(static_cast<int>(check_bound(b, v[i].get<double>(), where)));
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error(e.what());
    }
  }
}

// A list of names, each read by `parse` (std::invalid_argument for an unknown one).
template <class T, class Parse>
void read_names(const io::JsonObject& j, const char* key, Parse parse, std::vector<T>& out) {
  if (!j.has(key)) return;
  const json& v = j.at(key);
  if (!v.is_array()) j.fail(key, "expected an array of names");
  out.clear();
  for (const json& n : v) {
    if (!n.is_string()) j.fail(key, "expected names, found " + n.dump());
    try {
      out.push_back(parse(n.get<std::string>()));
    } catch (const std::invalid_argument& e) {
      j.fail(key, e.what());
    }
  }
}

void reject_unknown(const io::JsonObject& o, const std::set<std::string>& known) {
  for (auto it = o.raw().begin(); it != o.raw().end(); ++it)
    if (!known.count(it.key())) {
      std::string list;
      for (const std::string& k : known) list += (list.empty() ? "" : ", ") + k;
      o.fail(it.key(), "unknown field (known: " + list + ")");
    }
}

// Steps of size s before rounding: tokens * (N_s / N_0)^tokens_exponent / (batch * seq).
double unrounded_steps(const Plan& p, const Size& s) {
  const double per_step = double(p.batch) * p.seq;
  if (!(per_step > 0) || p.tokens <= 0 || p.sizes.empty()) return 0;
  double t = double(p.tokens);
  if (p.tokens_exponent != 0) {
    ModelConfig first = p.sizes.front().model, own = s.model;
    first.projection = own.projection = Projection::dense;
    t *= std::pow(double(ParamLayout(own).count()) / double(ParamLayout(first).count()),
                  p.tokens_exponent);
  }
  return t / per_step;
}

}  // namespace

std::int64_t Plan::tokens_of(const Size& s) const {
  const double steps = std::ceil(unrounded_steps(*this, s) - 1e-9);
  if (!(steps >= 1)) return std::int64_t(batch) * seq;
  if (!(steps < double(limits::steps.max))) return std::int64_t(limits::steps.max) * batch * seq;
  return std::int64_t(steps) * batch * seq;
}

std::int64_t Plan::steps(const Size& s) const {
  const std::int64_t per_step = std::int64_t(batch) * seq;
  return per_step > 0 ? tokens_of(s) / per_step : 0;
}

std::int64_t Plan::sweep_steps(const Size& s) const {
  const std::int64_t n = steps(s);
  const auto share = static_cast<std::int64_t>(std::ceil(lr_sweep_fraction * double(n) - 1e-9));
  return std::min(n, std::max(share, lr_sweep_min_steps));
}

std::int64_t Plan::eval_every_of(const Size& s) const {
  if (evals <= 0) return eval_every;
  const std::int64_t n = steps(s);
  return std::max<std::int64_t>(1, (n + evals - 1) / evals);
}

Plan builtin_plan(const std::string& name, Precision precision) {
  Plan p;
  if (name == "default") {
    // Three sizes spanning 22x in parameters, tokens growing as the square root of the
    // parameters (32 steps at the smallest, 149 at the largest in fp32), two seeds each,
    // wht's scale started two ways, and a five-rate learning-rate sweep on a quarter of
    // each run first: about 11 minutes in fp32 on a 2-core AVX-512 machine
    // (docs/results/experiment-default). bf16 products ran the fp32 budget in 7.4
    // minutes on an AMX machine; the bf16 plan spends the time saved on 45/32 = 1.41x
    // the tokens per run (45 steps at the smallest, 210 at the largest), about 10
    // minutes there.
    p.sizes = {llama_size(2, 64, 2, 2), llama_size(4, 128, 2, 2), llama_size(4, 256, 4, 2)};
    const int steps_at_smallest = precision == Precision::bf16 ? 45 : 32;
    p.tokens = std::int64_t(steps_at_smallest) * 16 * 128;
    if (precision == Precision::bf16)
      p.note =
          "The matrix products ran in bf16, so the built-in plan trained every run on "
          "1.41x the tokens of its fp32 version (45 steps of 16 x 128 at the smallest "
          "size instead of 32) within the same time bound.";
    p.tokens_exponent = 0.5;
    p.scale_inits = {ScaleInit::matched, ScaleInit::one};
    p.lr_factors = {0.5, 1, 2, 4, 8};
    p.lr_sweep_fraction = 0.25;
    p.evals = 8;
  } else if (name == "quick") {
    // A first look in about 2 minutes: three small sizes, one seed (two at the
    // smallest), no sweep.
    p.sizes = {llama_size(2, 64, 2, 2), llama_size(2, 128, 2, 1), llama_size(4, 128, 2, 1)};
    p.tokens = 40 * 16 * 128;
    p.tokens_exponent = 0.5;
    p.evals = 6;
    p.bench_prompts = {64, 256};
    p.bench_batches = {1, 8};
    p.bench_repetitions = 2;
  } else {
    throw std::invalid_argument("unknown built-in plan '" + name + "' (known: default, quick)");
  }
  p.precision = precision;
  return p;
}

Plan scaled(Plan plan, double factor) {
  check_bound(limits::scale, factor, "--scale");
  const double tokens = std::round(double(plan.tokens) * factor);
  check_bound(limits::tokens, tokens, "--scale: the plan's tokens");
  plan.tokens = static_cast<std::int64_t>(tokens);
  plan.eval_every = static_cast<std::int64_t>(std::llround(double(plan.eval_every) * factor));
  return plan;  // evals (a count per run) stays
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
      } catch (const ConfigError& e) {
        throw std::invalid_argument(where + "." +
                                    renamed(e, {{"n_layer", "layers"},
                                                {"n_head", "heads"},
                                                {"n_kv_head", "kv_heads"},
                                                {"max_seq", "context"},
                                                {"vocab_size", "vocab"}}));
      }
    }
    if (s.model.max_seq < p.seq)
      throw std::invalid_argument(where + ": context " + std::to_string(s.model.max_seq) +
                                  " is shorter than seq " + std::to_string(p.seq));
  }
  if (p.projections.empty())
    throw std::invalid_argument("experiment plan: projections: at least one needed");
  for (double f : p.lr_factors)
    if (!(f > 0) || !std::isfinite(p.lr * f) || p.lr * f > limits::lr.max)
      throw std::invalid_argument("experiment plan: lr_sweep.factors: " + rate_text(f) +
                                  " times lr " + rate_text(p.lr) + " is not a usable rate (" +
                                  describe(limits::lr) + ")");
  for (std::size_t i = 0; i < p.lr_factors.size(); ++i)
    for (std::size_t k = 0; k < i; ++k)
      if (p.lr_factors[i] == p.lr_factors[k])
        throw std::invalid_argument(
            "experiment plan: lr_sweep.factors: " + rate_text(p.lr_factors[i]) + " is given twice");
  if (!(p.lr_sweep_fraction > 0 && p.lr_sweep_fraction <= 1))
    throw std::invalid_argument("experiment plan: lr_sweep.fraction: must be in (0, 1]");
  if (p.scale_inits.empty())
    throw std::invalid_argument("experiment plan: scale_inits: at least one needed");
  for (std::size_t i = 0; i < p.scale_inits.size(); ++i)
    for (std::size_t k = 0; k < i; ++k)
      if (p.scale_inits[i] == p.scale_inits[k])
        throw std::invalid_argument(std::string("experiment plan: scale_inits: ") +
                                    scale_init_name(p.scale_inits[i]) + " is given twice");
  if (p.tokens <= 0) throw std::invalid_argument("experiment plan: tokens: must be > 0");
  if (p.batch < 1 || p.seq < 1)
    throw std::invalid_argument("experiment plan: batch and seq must be >= 1");
  if (!(p.lr > 0)) throw std::invalid_argument("experiment plan: lr: must be > 0");
  if (p.eval_every < 1 || p.eval_batches < 1)
    throw std::invalid_argument("experiment plan: eval_every and eval_batches must be >= 1");
  check_bound(limits::tokens_exponent, p.tokens_exponent, "experiment plan: tokens_exponent");
  check_bound(limits::evals, p.evals, "experiment plan: evals");
  if (p.bench_decode < 1 || p.bench_repetitions < 1)
    throw std::invalid_argument("experiment plan: bench.decode and bench.repetitions must be >= 1");
  for (int b : p.bench_batches)
    if (b < 1) throw std::invalid_argument("experiment plan: bench.batches: values must be >= 1");
  for (int l : p.bench_prompts)
    if (l < 1) throw std::invalid_argument("experiment plan: bench.prompts: values must be >= 1");
  check_bound(limits::threads, p.threads, "experiment plan: threads");
  check_bound(limits::tokens, double(p.tokens), "experiment plan: tokens");
  check_bound(limits::batch, p.batch, "experiment plan: batch");
  check_bound(limits::seq, p.seq, "experiment plan: seq");
  check_bound(limits::lr, p.lr, "experiment plan: lr");
  check_bound(limits::every, double(p.eval_every), "experiment plan: eval_every");
  check_bound(limits::max_prefill_tokens, p.bench_max_prefill_tokens,
              "experiment plan: bench.max_prefill_tokens");
  for (const Size& s : p.sizes) {
    const double steps = unrounded_steps(p, s);
    if (!(steps <= limits::steps.max))
      throw std::invalid_argument("experiment plan: tokens: size " + s.name + " would train " +
                                  rate_text(steps) + " steps of batch x seq, more than " +
                                  rate_text(limits::steps.max));
  }
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
  json inits = json::array();
  for (ScaleInit s : p.scale_inits) inits.push_back(scale_init_name(s));
  json j{{"sizes", sizes},
         {"projections", projs},
         {"scale_inits", inits},
         {"lr_sweep",
          {{"factors", p.lr_factors},
           {"fraction", p.lr_sweep_fraction},
           {"min_steps", p.lr_sweep_min_steps}}},
         {"tokens", p.tokens},
         {"tokens_exponent", p.tokens_exponent},
         {"batch", p.batch},
         {"seq", p.seq},
         {"lr", p.lr},
         {"eval_every", p.eval_every},
         {"evals", p.evals},
         {"eval_batches", p.eval_batches},
         {"device", device_name(p.device)},
         {"precision", precision_name(p.precision)},
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
         {"threads", p.threads},
         {"note", p.note}};
  return j.dump(2) + "\n";
}

Plan plan_from_json(const std::string& text, const std::string& source) {
  const json doc = io::parse_json(text, source);
  const io::JsonObject j(doc, source);
  reject_unknown(
      j, {"sizes",  "projections", "scale_inits", "lr_sweep",   "tokens",   "tokens_exponent",
          "batch",  "seq",         "lr",          "eval_every", "evals",    "eval_batches",
          "device", "precision",   "first_seed",  "data",       "val_data", "tokenizer",
          "bench",  "threads",     "note"});
  Plan p = builtin_plan("default");
  if (j.has("sizes")) {
    const json& sizes = j.at("sizes");
    if (!sizes.is_array()) j.fail("sizes", "expected an array");
    p.sizes.clear();
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      const io::JsonObject e(sizes[i], source, "sizes[" + std::to_string(i) + "]");
      reject_unknown(e, {"name", "preset", "family", "layers", "d_model", "heads", "kv_heads",
                         "d_ff", "context", "vocab", "seeds"});
      Size s = llama_size(4, 128, 2, 1);
      std::string base, family;
      read_string(e, "preset", base);
      if (!base.empty()) {
        try {
          s.model = preset(base);
        } catch (const std::invalid_argument& err) {
          e.fail("preset", err.what());
        }
        s.name = base;
      }
      read_string(e, "family", family);
      if (!family.empty()) {
        try {
          s.model.family = parse_family(family);
        } catch (const std::invalid_argument& err) {
          e.fail("family", err.what());
        }
        if (s.model.family == Family::gpt2) s.model.n_kv_head = s.model.n_head;
      }
      read_number(e, "layers", limits::n_layer, s.model.n_layer);
      read_number(e, "d_model", limits::d_model, s.model.d_model);
      if (e.has("heads")) {
        read_number(e, "heads", limits::n_head, s.model.n_head);
        s.model.n_kv_head = s.model.n_head;
      }
      read_number(e, "kv_heads", limits::n_head, s.model.n_kv_head);
      read_number(e, "d_ff", limits::d_ff, s.model.d_ff);
      read_number(e, "context", limits::context, s.model.max_seq);
      read_number(e, "vocab", limits::vocab_size, s.model.vocab_size);
      read_number(e, "seeds", limits::seeds, s.seeds);
      if (base.empty()) s.name = shape_name(s.model.n_layer, s.model.d_model);
      read_string(e, "name", s.name);
      p.sizes.push_back(s);
    }
  }
  read_names(j, "projections", parse_projection, p.projections);
  read_names(j, "scale_inits", parse_scale_init, p.scale_inits);
  if (j.has("lr_sweep")) {
    const io::JsonObject w = j.object("lr_sweep");
    reject_unknown(w, {"factors", "fraction", "min_steps"});
    if (w.has("factors")) {
      const json& v = w.at("factors");
      if (!v.is_array()) w.fail("factors", "expected an array of numbers");
      p.lr_factors.clear();
      for (std::size_t i = 0; i < v.size(); ++i) {
        if (!v[i].is_number()) w.fail("factors", "expected numbers, found " + v[i].dump());
        p.lr_factors.push_back(check_bound(limits::lr_factor, v[i].get<double>(),
                                           w.where("factors[" + std::to_string(i) + "]")));
      }
    }
    read_number(w, "fraction", limits::fraction, p.lr_sweep_fraction);
    read_number(w, "min_steps", limits::sweep_min_steps, p.lr_sweep_min_steps);
  }
  read_number(j, "tokens", limits::tokens, p.tokens);
  read_number(j, "batch", limits::batch, p.batch);
  read_number(j, "seq", limits::seq, p.seq);
  read_number(j, "lr", limits::lr, p.lr);
  read_number(j, "tokens_exponent", limits::tokens_exponent, p.tokens_exponent);
  read_number(j, "eval_every", limits::every, p.eval_every);
  read_number(j, "evals", limits::evals, p.evals);
  read_number(j, "eval_batches", limits::eval_batches, p.eval_batches);
  if (j.has("device")) {
    try {
      p.device = parse_device(j.string("device"));
    } catch (const std::invalid_argument& e) {
      j.fail("device", e.what());
    }
  }
  if (j.has("precision")) {
    try {
      p.precision = parse_precision(j.string("precision"));
    } catch (const std::invalid_argument& e) {
      j.fail("precision", e.what());
    }
  }
  if (j.has("first_seed")) p.first_seed = j.unsigned_integer("first_seed");
  read_string(j, "data", p.data.path);
  read_string(j, "val_data", p.data.val_path);
  read_string(j, "tokenizer", p.data.tokenizer);
  read_number(j, "threads", limits::threads, p.threads);
  read_string(j, "note", p.note);
  if (j.has("bench")) {
    const io::JsonObject b = j.object("bench");
    reject_unknown(b, {"batches", "prompts", "decode", "repetitions", "max_prefill_tokens"});
    read_list(b, "batches", limits::batch, p.bench_batches);
    read_list(b, "prompts", limits::seq, p.bench_prompts);
    read_number(b, "decode", limits::decode_steps, p.bench_decode);
    read_number(b, "repetitions", limits::repetitions, p.bench_repetitions);
    read_number(b, "max_prefill_tokens", limits::max_prefill_tokens, p.bench_max_prefill_tokens);
  }
  try {
    validate(p);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(source + ": " + e.what());
  }
  return p;
}

std::string run_name(const std::string& size, Projection p, std::uint64_t seed,
                     const std::string& tag) {
  return size + "-" + projection_name(p) + (tag.empty() ? "" : "-" + tag) + "-s" +
         std::to_string(seed);
}

namespace {

// Every (projection, scale init) variant of a size, in plan order, with its tag.
std::vector<std::pair<RunSpec, std::string>> variants(const Plan& p, const Size& s) {
  std::vector<std::pair<RunSpec, std::string>> out;
  for (Projection proj : p.projections) {
    out.push_back({{&s, proj, p.scale_inits.front(), 0, "", 0}, ""});
    if (proj != Projection::wht) continue;
    for (std::size_t i = 1; i < p.scale_inits.size(); ++i)
      out.push_back({{&s, proj, p.scale_inits[i], 0, "", 0},
                     std::string("init_") + scale_init_name(p.scale_inits[i])});
  }
  return out;
}

}  // namespace

std::vector<RunSpec> plan_sweep(const Plan& p) {
  std::vector<RunSpec> out;
  for (const Size& s : p.sizes)
    for (auto [run, tag] : variants(p, s))
      for (double f : p.lr_factors) {
        run.seed = p.first_seed;
        run.lr = p.lr * f;
        run.name = s.name + "-" + projection_name(run.projection) + (tag.empty() ? "" : "-" + tag) +
                   "-lr" + rate_text(run.lr);
        out.push_back(run);
      }
  return out;
}

std::vector<RunSpec> plan_runs(const Plan& p) {
  int max_seeds = 0;
  for (const Size& s : p.sizes) max_seeds = std::max(max_seeds, s.seeds);
  std::vector<RunSpec> out;
  for (int k = 0; k < max_seeds; ++k)
    for (const Size& s : p.sizes) {
      if (k >= s.seeds) continue;
      for (auto [run, tag] : variants(p, s)) {
        run.seed = p.first_seed + std::uint64_t(k);
        run.name = run_name(s.name, run.projection, run.seed, tag);
        out.push_back(run);
      }
    }
  return out;
}

}  // namespace whtlm::experiment
