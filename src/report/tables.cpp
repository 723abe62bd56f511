// The report's sections as data (tables.hpp): for each section its paragraph, built
// from the data and the claims, and its table's header and cells, formatted once for
// both renderers.
#include "report/tables.hpp"

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>
#include <string>

#include "report/chart.hpp"

namespace whtlm::report::detail {
namespace {

class Tables {
 public:
  explicit Tables(const Context& c) : c_(c), d_(c.data) {}

  std::vector<Section> sections(const std::vector<Claim>& claims, const Scaling& scaling,
                                const Figures& figures) const {
    std::vector<Section> s = {{"Claims", claims_note(claims), claims_table(claims), {}},
                              {"Parameters", "", params_table(), {}}};
    if (!d_.sweep.empty())  // only a plan with a learning-rate sweep has one
      s.push_back({"Learning rate", sweep_note(), sweep_table(), figures.sweep});
    s.insert(s.end(),
             {{"Validation loss", "", loss_table(), figures.loss},
              {"Loss at equal training FLOPs", equal_flops_note(), equal_flops_table(), {}},
              {"How wht's scale starts", init_note(), init_table(), {}},
              {"Scaling fits", fits_note(scaling), fits_table(scaling), figures.fit},
              // The downstream proxy (src/report/downstream.cpp).
              {"Downstream proxy",
               downstream_note(d_),
               downstream_table(d_, [this](const std::string& f) { return c_.link(f); }),
               {}},
              {"Inference", "", infer_table(), figures.infer}});
    return s;
  }

  std::string intro() const {
    std::size_t finished = 0, bf16 = 0;
    for (const TrainRun& r : d_.runs) {
      finished += r.finished() ? 1 : 0;
      bf16 += r.precision == Precision::bf16 ? 1 : 0;
    }
    const std::string products = bf16 == 0                ? "fp32"
                                 : bf16 == d_.runs.size() ? "bf16 with fp32 accumulation"
                                                          : std::to_string(bf16) + " of " +
                                                                std::to_string(d_.runs.size()) +
                                                                " runs in bf16, the others in fp32";
    return "Dense, Hadamard (wht) and identity attention output projections trained on the same "
           "data, seeds and token budget (" +
           std::to_string(finished) + " finished training runs over " +
           std::to_string(c_.sizes.size()) + " sizes; matrix products in " + products +
           "), and their inference throughput measured "
           "side by side (" +
           std::to_string(d_.infer.size()) +
           " cases). Every figure below is computed from the linked data files; each verdict "
           "follows the rule stated next to it." +
           notes();
  }
  std::string notes() const {
    std::string s;
    for (const std::string& n : d_.notes) s += " " + n;
    return s;
  }

 private:
  // The learning rates of the sweep, every variant's together.
  std::set<double> sweep_rates() const {
    std::set<double> rates;
    for (const SweepRun& r : d_.sweep) rates.insert(r.lr);
    return rates;
  }

  // What this budget decided and what it left open, in one paragraph over the table.
  std::string claims_note(const std::vector<Claim>& claims) const {
    std::string held, failed, open;
    bool fit_open = false;  // a claim read from the scaling fits is inconclusive
    for (const Claim& c : claims) {
      fit_open = fit_open || (c.verdict == Verdict::inconclusive &&
                              (c.id == "steeper_loss" || c.id == "equal_budget_loss"));
      std::string* list = c.verdict == Verdict::held           ? &held
                          : c.verdict == Verdict::not_held     ? &failed
                          : c.verdict == Verdict::inconclusive ? &open
                                                               : nullptr;
      if (list == nullptr) continue;
      if (!list->empty()) *list += "; ";
      *list += c.claim;
    }
    if (held.empty() && failed.empty() && open.empty()) return "";
    double flops = 0;
    for (const TrainRun& r : d_.runs)
      if (r.finished() && !r.val.empty()) flops = std::max(flops, r.val.back().flops);
    std::string n = "At this budget";
    if (flops > 0)
      n += " (" + std::to_string(c_.sizes.size()) + " sizes, the largest run " + si_number(flops) +
           " training FLOPs)";
    n += ": held: " + (held.empty() ? std::string("none") : held) +
         ". Did not hold: " + (failed.empty() ? std::string("none") : failed) +
         ". Inconclusive: " + (open.empty() ? std::string("none") : open) + ".";
    if (fit_open)
      n += " Where the claims read from the scaling fits (steeper, equal budget) are "
           "inconclusive, their rows say what more compute would decide them, read from the "
           "fits, or why the fits cannot say.";
    return n;
  }

  Table claims_table(const std::vector<Claim>& claims) const {
    Table t{{"claim", "paper", "ours (measured here)", "verdict", "how it is decided"}, {}};
    for (const Claim& c : claims)
      t.rows.push_back(
          {c.claim, c.paper, c.ours.empty() ? "-" : c.ours, verdict_name(c.verdict), c.rule});
    return t;
  }

  Table params_table() const {
    Table t{{"size", "shape", "projection", "parameters", "vs dense", "attention per block",
             "vs dense", "training FLOPs/token"},
            {}};
    for (const auto& [name, m] : c_.sizes) {
      const double dense = double(count_params(m, Projection::dense));
      const double dense_attn = attn_params_per_block(m, Projection::dense);
      for (Projection p : kProjections) {
        ModelConfig c = m;
        c.projection = p;
        const double n = double(count_params(m, p)), a = attn_params_per_block(m, p);
        t.rows.push_back({name, describe(c), projection_name(p), fmt("%.0f", n),
                          fmt("%+.2f%%", 100.0 * (n / dense - 1)), fmt("%.0f", a),
                          fmt("%+.2f%%", 100.0 * (a / dense_attn - 1)),
                          si_number(model_cost(c, c.max_seq).flops_train_per_token())});
      }
    }
    return t;
  }

  Table loss_table() const {
    Table t{{"size", "projection", "seeds", "peak lr", "tokens", "training FLOPs", "final val loss",
             "seed spread", "tokens/s (median)", "peak memory MiB", "metrics"},
            {},
            10};
    for (const std::string& s : c_.size_names)
      for (Projection p : kProjections) {
        const auto runs = runs_of(d_, s, p);
        if (runs.empty()) continue;
        std::vector<double> loss, rate, rss;
        std::string files;
        double tokens = 0, flops = 0, lr = 0;
        for (const auto& [seed, r] : runs) {
          lr = r->lr;
          if (r->val.empty()) continue;
          loss.push_back(r->val.back().val_loss);
          rate.push_back(r->tokens_per_s);
          rss.push_back(double(r->peak_rss_bytes) / 1048576.0);
          tokens = r->val.back().tokens;
          flops = r->val.back().flops;
          if (!files.empty()) files += ' ';  // piecewise: GCC 12 warns falsely otherwise
          files += c_.link(r->dir + "/metrics.jsonl");
        }
        t.rows.push_back({s, projection_name(p), std::to_string(runs.size()), si_number(lr),
                          si_number(tokens), si_number(flops), fmt("%.4f", mean(loss)),
                          fmt("%.4f", spread(loss)), fmt("%.0f", mean(rate)),
                          fmt("%.0f", mean(rss)), files});
      }
    return t;
  }

  Table equal_flops_table() const {
    Table t{{"size", "FLOPs budget", "dense", "wht", "identity", "wht - dense", "seed spread"}, {}};
    for (const EqualFlops& e : loss_at_equal_flops(d_)) {
      auto cell = [&](int k) {
        return std::isfinite(e.mean[k])
                   ? fmt("%.4f", e.mean[k]) + " (" + std::to_string(e.seeds[k]) +
                         (e.seeds[k] == 1 ? " seed)" : " seeds)")
                   : std::string("-");
      };
      const double noise = std::max(e.spread[0], e.spread[1]);
      t.rows.push_back({e.size, si_number(e.flops), cell(0), cell(1), cell(2),
                        fmt("%+.4f", e.mean[1] - e.mean[0]), fmt("%.4f", noise)});
    }
    return t;
  }

  std::string init_note() const {
    std::string s = std::string(
                        "wht's per-channel scale gamma starts at one (the branch at full "
                        "scale) or matched to the spread a dense W_O starts with "
                        "(0.02/sqrt(2 layers) * sqrt(d)). The claims above use wht "
                        "runs whose scale started ") +
                    scale_init_name(d_.wht_init) + ". ";
    const InitChoice c = choose_scale_init(d_);
    if (c.ours.rfind("not measured", 0) == 0) return s + "This data holds one scale init only.";
    s += c.decided ? std::string("Lower loss: ") + scale_init_name(c.best) + ". "
                   : std::string("The data do not separate them. ");
    return s + "Measured: " + c.ours + ". Rule: " + c.rule +
           ". The FLOPs budget is the least final FLOPs of the size's dense and wht runs.";
  }

  Table init_table() const {
    Table t{{"size", "variant", "seeds", "final val loss", "seed spread", "FLOPs budget",
             "loss at budget", "seed spread"},
            {}};
    for (const InitComparison& c : compare_scale_inits(d_))
      for (const InitArm& a : c.arms)
        t.rows.push_back({c.size, a.label, std::to_string(a.seeds), fmt("%.4f", a.final_mean),
                          fmt("%.4f", a.final_spread), si_number(c.flops),
                          fmt("%.4f", a.budget_mean), fmt("%.4f", a.budget_spread)});
    return t;
  }

  std::string sweep_note() const {
    if (d_.sweep.empty()) return "";
    std::string n = std::string(
                        "Before the seeded runs each size and variant was trained once at every "
                        "rate of the sweep, for a share of its run's steps; the seeded runs use "
                        "the rate chosen by this rule: ") +
                    best_rate_rule() + ".";
    // A best rate at either end of the grid may not be the best rate at all.
    const std::set<double> rates = sweep_rates();
    std::string edge;
    for (const auto& [sz, p, init] : c_.sweep_variants()) {
      const double best = best_rate(d_, sz, p, init);
      if (best > 0 && rates.size() > 1 && (best == *rates.begin() || best == *rates.rbegin()))
        edge += (edge.empty() ? "" : ", ") + sz + " " + variant_label(p, init) + " (" +
                si_number(best) + ")";
    }
    if (!edge.empty())
      n += " The chosen rate is at an end of the grid for " + edge +
           ": a wider grid might find a better one there.";
    n += " A short run favours larger rates than a full one would; the seeded runs' curves "
         "show whether the choice held up.";
    return n;
  }

  Table sweep_table() const {
    const std::set<double> rates = sweep_rates();
    Table t{{"size", "variant"}, {}};
    for (double lr : rates) t.header.push_back("lr " + si_number(lr));
    t.header.push_back("chosen");
    for (const auto& [s, p, init] : c_.sweep_variants()) {
      std::vector<std::string> row{s, variant_label(p, init)};
      const auto points = c_.sweep_points(s, p, init);
      for (double lr : rates) {
        std::string cell = "-";
        for (const SweepRun* r : points)
          if (r->lr == lr)
            cell = r->diverged    ? "diverged"
                   : !r->finished ? "unfinished"
                                  : fmt("%.4f", r->final_loss);
        row.push_back(cell);
      }
      const double best = best_rate(d_, s, p, init);
      row.push_back(best > 0 ? si_number(best) : "-");
      t.rows.push_back(row);
    }
    return t;
  }

  std::string fits_note(const Scaling& s) const {
    if (s.fits.empty())
      return "No fit: a projection's fit needs four or more finished runs over at least "
             "three budgets (sizes), with the loss falling.";
    std::string n =
        "Validation loss against training FLOPs fitted with L = E + A C^-alpha (least squares "
        "in the loss, E held at zero or above) to the final validation loss of each finished "
        "run against its training FLOPs, across " +
        std::to_string(c_.sizes.size()) +
        " sizes: only at its end has a run's learning-rate schedule finished, so earlier "
        "points lie above what a run planned for that budget reaches and are left out. "
        "Intervals: 5th to 95th percentile over bootstrap replicates that resample each "
        "size's seeds (the same draw for every projection). A fit describes its points when "
        "its rmse is at most " +
        fmt("%g", kAdequateFactor) +
        "x the seeds' scatter (the pooled standard deviation of final loss between seeds of "
        "a size), or " +
        fmt("%g", kAdequateFloor) + " nats where the seeds agree more closely; ";
    std::vector<std::string> poor;
    for (const ScalingFit& f : s.fits)
      if (!f.adequate()) poor.push_back(projection_name(f.proj));
    if (poor.empty())
      n += "every fit here does. ";
    else {
      for (std::size_t i = 0; i < poor.size(); ++i) {
        if (i > 0) n += i + 1 == poor.size() ? " and " : ", ";
        n += poor[i];
      }
      n += poor.size() == 1 ? "'s fit does not" : "'s fits do not";
      n += s.adequate()
               ? " (the claims use dense's and wht's only). "
               : ": the loss does not follow one power law across these sizes, and the claims "
                 "do not rest on dense's and wht's fits. The figures below are still what the "
                 "fits give. ";
    }
    const std::string range = si_number(s.flops_lo) + " to " + si_number(1000 * s.flops_hi);
    if (std::isfinite(s.crossing))
      n += "wht's fit crosses dense's at " + si_number(s.crossing) + " FLOPs (interval " +
           si_number(s.crossing_interval.lo) + " to " + si_number(s.crossing_interval.hi) +
           ", found in " + fmt("%.0f%%", 100 * s.crossing_share) +
           " of the replicates); the data reach " + si_number(s.flops_hi) + ".";
    else
      n += "wht's and dense's fits do not cross between " + range + " FLOPs (" +
           fmt("%.0f%%", 100 * s.crossing_share) + " of the replicates cross there).";
    if (std::isfinite(s.alpha_diff))
      n += " wht's alpha minus dense's: " + fmt("%+.3f", s.alpha_diff) + " (" +
           fmt("%+.3f", s.alpha_diff_interval.lo) + " to " +
           fmt("%+.3f", s.alpha_diff_interval.hi) + ").";
    const Gap g = fitted_gap(s, s.flops_hi);
    if (std::isfinite(g.value)) {
      n += " wht's fitted loss minus dense's at " + si_number(s.flops_hi) +
           " FLOPs: " + fmt("%+.4f", g.value) + " nats (" + fmt("%+.4f", g.interval.lo) + " to " +
           fmt("%+.4f", g.interval.hi) + ")";
      int sign = 0;
      const double at = first_decided_budget(s, &sign);
      if (!std::isfinite(at))
        n += "; its interval includes zero up to 1000x that budget.";
      else if (at <= s.flops_hi)
        n += std::string("; its interval excludes zero there (wht ") +
             (sign < 0 ? "lower" : "higher") + ").";
      else
        n += "; its interval first excludes zero at " + si_number(at) + " FLOPs, " +
             fmt("%.3gx", at / s.flops_hi) + " the largest budget measured (wht " +
             (sign < 0 ? "lower" : "higher") + ").";
    }
    n += " With few sizes and short runs the floor E and the exponent trade off against each "
         "other; the intervals say how far the data pin them down, and extrapolating beyond "
         "the measured range assumes the fitted form holds there.";
    return n;
  }

  Table fits_table(const Scaling& s) const {
    Table t{{"projection", "points", "E", "E 5-95%", "A", "alpha", "alpha 5-95%", "rmse",
             "seed scatter", "describes the points", "replicates"},
            {}};
    for (const ScalingFit& f : s.fits)
      t.rows.push_back({projection_name(f.proj), std::to_string(f.fit.points), fmt("%.4f", f.fit.E),
                        fmt("%.4f", f.E.lo) + " - " + fmt("%.4f", f.E.hi), fmt("%.3g", f.fit.A),
                        fmt("%.4f", f.fit.alpha),
                        fmt("%.4f", f.alpha.lo) + " - " + fmt("%.4f", f.alpha.hi),
                        fmt("%.4f", f.fit.rmse), fmt("%.4f", f.scatter),
                        std::string(f.adequate() ? "yes" : "no") +
                            " (rmse <= " + fmt("%.4f", f.tolerance()) + ")",
                        std::to_string(f.replicates)});
    return t;
  }

  Table infer_table() const {
    Table t{{"size", "batch", "prompt", "prefill tok/s dense", "wht", "wht/dense", "identity",
             "decode tok/s dense", "wht", "wht/dense", "identity", "memory MiB dense", "wht"},
            {}};
    for (const InferCase& k : d_.infer) {
      if (k.proj != Projection::dense) continue;
      const InferCase* w = find_case(d_, k.size, Projection::wht, k.batch, k.prompt);
      const InferCase* id = find_case(d_, k.size, Projection::identity, k.batch, k.prompt);
      auto val = [](const InferCase* c, bool pre) {
        return c ? fmt("%.0f", (pre ? c->prefill_tokens_per_s : c->decode_tokens_per_s).median)
                 : std::string("-");
      };
      auto ratio = [&](bool pre) {
        if (!w) return std::string("-");
        return fmt("%.3f", (pre ? w->prefill_tokens_per_s : w->decode_tokens_per_s).median /
                               (pre ? k.prefill_tokens_per_s : k.decode_tokens_per_s).median);
      };
      t.rows.push_back({k.size, std::to_string(k.batch), std::to_string(k.prompt), val(&k, true),
                        val(w, true), ratio(true), val(id, true), val(&k, false), val(w, false),
                        ratio(false), val(id, false), fmt("%.1f", k.memory_bytes / 1048576.0),
                        w ? fmt("%.1f", w->memory_bytes / 1048576.0) : "-"});
    }
    return t;
  }

  static std::string equal_flops_note() {
    return "Each run's validation loss is interpolated (linearly in log FLOPs) at the least final "
           "training FLOPs of the size's dense and wht runs, which is wht's: wht needs fewer "
           "FLOPs per token, so at that budget it has finished its schedule while dense is still "
           "part-way through its learning-rate decay. That favours wht; the final losses at "
           "equal tokens are in the table above.";
  }

  const Context& c_;
  const Data& d_;
};

}  // namespace

std::vector<std::string> link_paths(const std::string& cell) {
  std::vector<std::string> paths;
  std::istringstream in(cell);
  for (std::string path; in >> path;) paths.push_back(path);
  return paths;
}

std::string report_intro(const Context& c) { return Tables(c).intro(); }

std::vector<Section> report_sections(const Context& c, const std::vector<Claim>& claims,
                                     const Scaling& scaling, const Figures& figures) {
  return Tables(c).sections(claims, scaling, figures);
}

}  // namespace whtlm::report::detail
