// The paper's claims, each decided from the measurements with the noise taken into
// account. Every verdict comes from the rule written next to it in the report; no
// figure of ours is typed in. The paper's own figures (../shared/PAPER.md) are quoted
// as the paper states them.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <set>
#include <string>

#include "report/analysis.hpp"
#include "report/fit.hpp"
#include "whtlm/report.hpp"

namespace whtlm::report {
namespace {

using namespace detail;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}
std::string pct(double v) { return fmt("%.1f%%", 100.0 * v); }

// A piece of evidence for a claim: `value` > `noise` supports it, `value` < -`noise`
// contradicts it, anything else (or an unknown noise) is within the noise.
struct Evidence {
  std::string what;
  double value = 0, noise = kNaN;
  int sign() const {
    if (!std::isfinite(value) || !std::isfinite(noise)) return 0;
    return value > noise ? 1 : value < -noise ? -1 : 0;
  }
};

struct Tally {
  int support = 0, contradict = 0, flat = 0;
  explicit Tally(const std::vector<Evidence>& ev) {
    for (const Evidence& e : ev) (e.sign() > 0 ? support : e.sign() < 0 ? contradict : flat)++;
  }
  std::string text() const {
    return std::to_string(support) + " for, " + std::to_string(contradict) + " against, " +
           std::to_string(flat) + " within the noise";
  }
};

// Held when every piece supports the claim; not held when any contradicts it.
Verdict all_of(const std::vector<Evidence>& ev) {
  if (ev.empty()) return Verdict::not_measured;
  const Tally t(ev);
  if (t.contradict > 0) return Verdict::not_held;
  return t.flat == 0 ? Verdict::held : Verdict::inconclusive;
}

// For trends measured in many cases: held when at least half the cases support the
// claim and none contradicts it; not held when more contradict than support it.
Verdict most_of(const std::vector<Evidence>& ev) {
  if (ev.empty()) return Verdict::not_measured;
  const Tally t(ev);
  if (t.contradict > t.support) return Verdict::not_held;
  if (t.contradict == 0 && 2 * t.support >= int(ev.size())) return Verdict::held;
  return Verdict::inconclusive;
}

std::string join_evidence(const std::vector<Evidence>& ev, const char* value_fmt,
                          bool with_noise = true) {
  std::string s;
  for (const Evidence& e : ev) {
    s += (s.empty() ? "" : "; ") + e.what + " " + fmt(value_fmt, e.value);
    if (with_noise)
      s += std::isfinite(e.noise) ? " (noise " + fmt(value_fmt, e.noise) + ")" : " (noise unknown)";
  }
  return s;
}

// Validation loss at `flops`, linear in log FLOPs between the bracketing points.
double loss_at(const TrainRun& r, double flops) {
  for (std::size_t i = 0; i < r.val.size(); ++i) {
    const CurvePoint& b = r.val[i];
    if (b.flops < flops) continue;
    if (b.flops == flops || i == 0) return b.flops == flops ? b.val_loss : kNaN;
    const CurvePoint& a = r.val[i - 1];
    const double t = std::log(flops / a.flops) / std::log(b.flops / a.flops);
    return a.val_loss + t * (b.val_loss - a.val_loss);
  }
  return kNaN;
}

// f of each finished run of a size and projection, in seed order.
template <class F>
std::vector<double> per_seed(const Data& d, const std::string& size, Projection p, F f) {
  std::vector<double> v;
  for (const auto& [seed, r] : runs_of(d, size, p)) v.push_back(f(*r));
  return v;
}

CaseRatio infer_ratio(const Data& d, const std::string& size, int batch, int prompt, bool prefill) {
  const InferCase* w = find_case(d, size, Projection::wht, batch, prompt);
  const InferCase* x = find_case(d, size, Projection::dense, batch, prompt);
  if (w == nullptr || x == nullptr) return {};
  return prefill ? case_ratio(w->prefill_tokens_per_s, x->prefill_tokens_per_s)
                 : case_ratio(w->decode_tokens_per_s, x->decode_tokens_per_s);
}

std::vector<int> axis_values(const Data& d, const std::string& size, bool batches) {
  std::set<int> s;
  for (const InferCase& c : d.infer)
    if (c.size == size) s.insert(batches ? c.batch : c.prompt);
  return {s.begin(), s.end()};
}

// Training throughput ratio wht/dense of one size: the mean over seeds run by both,
// with the spread over those seeds as its noise.
Evidence training_speed(const Data& d, const std::string& size) {
  const auto w = runs_of(d, size, Projection::wht), x = runs_of(d, size, Projection::dense);
  std::vector<double> ratios;
  for (const auto& [seed, run] : w)
    if (x.count(seed) && x.at(seed)->tokens_per_s > 0)
      ratios.push_back(run->tokens_per_s / x.at(seed)->tokens_per_s);
  return {size, mean(ratios) - 1.0, spread(ratios)};
}

}  // namespace

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::held:
      return "held";
    case Verdict::not_held:
      return "did not hold";
    case Verdict::inconclusive:
      return "inconclusive";
    case Verdict::not_measured:
      return "not measured";
  }
  return "?";
}

std::vector<EqualFlops> loss_at_equal_flops(const Data& d) {
  std::vector<EqualFlops> out;
  for (const auto& [size, shape] : sizes_by_params(d)) {
    EqualFlops e;
    e.size = size;
    // The common budget: the least final FLOPs among the finished dense and wht runs
    // (identity, the cheapest, is compared where it reaches that budget).
    double budget = std::numeric_limits<double>::infinity();
    for (Projection p : {Projection::dense, Projection::wht})
      for (const auto& [seed, r] : runs_of(d, size, p))
        if (!r->val.empty()) budget = std::min(budget, r->val.back().flops);
    e.flops = std::isfinite(budget) ? budget : kNaN;
    for (int k = 0; k < 3; ++k) {
      std::vector<double> losses;
      for (const auto& [seed, r] : runs_of(d, size, Projection(k))) {
        const double l = std::isfinite(e.flops) ? loss_at(*r, e.flops) : kNaN;
        if (std::isfinite(l)) losses.push_back(l);
      }
      e.mean[k] = mean(losses);
      e.spread[k] = spread(losses);
      e.seeds[k] = int(losses.size());
    }
    out.push_back(e);
  }
  return out;
}

std::vector<InitComparison> compare_scale_inits(const Data& d) {
  std::vector<InitComparison> out;
  for (const auto& named : sizes_by_params(d)) {
    const std::string& size = named.first;  // a plain name: lambdas below capture it
    std::vector<ScaleInit> inits{d.wht_init};
    for (const TrainRun& r : d.runs)
      if (r.size == size && r.proj == Projection::wht && r.finished() &&
          std::find(inits.begin(), inits.end(), r.scale_init) == inits.end())
        inits.push_back(r.scale_init);
    if (inits.size() < 2) continue;
    InitComparison c;
    c.size = size;
    std::vector<std::pair<InitArm, std::map<std::uint64_t, const TrainRun*>>> arms;
    auto arm = [&](Projection p, ScaleInit init, const std::string& label) {
      InitArm a;
      a.label = label;
      a.proj = p;
      a.scale_init = init;
      arms.emplace_back(a, runs_of(d, size, p, init));
    };
    arm(Projection::dense, d.wht_init, "dense");
    for (ScaleInit init : inits)
      arm(Projection::wht, init, std::string("wht, scale ") + scale_init_name(init));
    arm(Projection::identity, d.wht_init, "identity");
    double budget = std::numeric_limits<double>::infinity();
    for (const auto& [a, runs] : arms)
      if (a.proj != Projection::identity)
        for (const auto& [seed, r] : runs)
          if (!r->val.empty()) budget = std::min(budget, r->val.back().flops);
    c.flops = std::isfinite(budget) ? budget : kNaN;
    for (auto& [a, runs] : arms) {
      if (runs.empty()) continue;
      std::vector<double> fin, at;
      for (const auto& [seed, r] : runs) {
        if (r->val.empty()) continue;
        fin.push_back(r->val.back().val_loss);
        const double l = std::isfinite(c.flops) ? loss_at(*r, c.flops) : kNaN;
        if (std::isfinite(l)) at.push_back(l);
      }
      a.final_mean = mean(fin);
      a.final_spread = spread(fin);
      a.budget_mean = mean(at);
      a.budget_spread = spread(at);
      a.seeds = int(fin.size());
      c.arms.push_back(a);
    }
    out.push_back(c);
  }
  return out;
}

InitChoice choose_scale_init(const Data& d) {
  InitChoice choice;
  choice.rule =
      "per size, the mean final validation loss (equal tokens) of wht with its scale started at "
      "one minus with it matched to dense; matched is chosen when it is lower at every size by "
      "more than the larger seed spread of the two, one when the opposite holds at every size, "
      "otherwise neither";
  std::vector<Evidence> ev;
  for (const InitComparison& c : compare_scale_inits(d)) {
    const InitArm *one = nullptr, *matched = nullptr;
    for (const InitArm& a : c.arms)
      if (a.proj == Projection::wht) (a.scale_init == ScaleInit::one ? one : matched) = &a;
    if (one == nullptr || matched == nullptr) continue;
    ev.push_back({c.size + " (one " + fmt("%.4f", one->final_mean) + ", matched " +
                      fmt("%.4f", matched->final_mean) + ")",
                  one->final_mean - matched->final_mean,
                  std::max(one->final_spread, matched->final_spread)});
  }
  if (ev.empty()) {
    choice.ours = "not measured: no size has wht runs with both scale inits";
    return choice;
  }
  const Tally t(ev);
  choice.ours = "one - matched: " + join_evidence(ev, "%+.4f");
  if (t.support == int(ev.size())) {
    choice.decided = true;
    choice.best = ScaleInit::matched;
  } else if (t.contradict == int(ev.size())) {
    choice.decided = true;
    choice.best = ScaleInit::one;
  }
  return choice;
}

const char* best_rate_rule() {
  return "per size and variant, the rate whose sweep run (one seed, a share of the run's "
         "steps, the same schedule shape) ended with the lowest validation loss; a run that "
         "diverged counts as the worst, ties go to the smaller rate";
}

double best_rate(const Data& d, const std::string& size, Projection p, ScaleInit init) {
  double best = 0, best_loss = std::numeric_limits<double>::infinity();
  bool usable = false;
  for (const SweepRun& s : d.sweep) {
    if (s.size != size || s.proj != p || (p == Projection::wht && s.scale_init != init)) continue;
    if (!s.finished) return 0;  // not decided yet
    if (!std::isfinite(s.final_loss)) continue;
    if (!usable || s.final_loss < best_loss || (s.final_loss == best_loss && s.lr < best)) {
      best = s.lr;
      best_loss = s.final_loss;
      usable = true;
    }
  }
  return usable ? best : 0;
}

std::vector<Claim> decide_claims(const Data& d) {
  return detail::decide_claims(d, scaling_fits(d));
}

namespace detail {

std::vector<Claim> decide_claims(const Data& d, const Scaling& scaling) {
  std::vector<Claim> claims;
  const auto sizes = sizes_by_params(d);

  {  // 1. Attention parameters per block.
    Claim c{"attn_params",
            "About 25% fewer attention parameters per block (Q, K, V, O are d x d; O is gone)",
            "about 25% (v1, v2)",
            "",
            "",
            Verdict::not_measured};
    std::vector<Evidence> ev;
    for (const auto& [name, m] : sizes) {
      const double dense = attn_params_per_block(m, Projection::dense);
      const double cut = 1.0 - attn_params_per_block(m, Projection::wht) / dense;
      c.ours += (c.ours.empty() ? "" : "; ") + name + " " + pct(cut);
      ev.push_back({name, 0.02 - std::abs(cut - 0.25), 0.0});
    }
    c.rule =
        "exact counts from the parameter layout; held when the cut is within 23-27% at "
        "every size (with grouped-query attention O is a larger share, so the cut is larger)";
    c.verdict = all_of(ev);
    claims.push_back(c);
  }

  {  // 2. Total parameters.
    Claim c{"total_params",       "Fewer parameters in total", "up to 7% (v1)", "", "",
            Verdict::not_measured};
    std::vector<Evidence> ev;
    for (const auto& [name, m] : sizes) {
      const double dense = double(count_params(m, Projection::dense));
      const double cut = 1.0 - double(count_params(m, Projection::wht)) / dense;
      c.ours +=
          (c.ours.empty() ? "" : "; ") + name + " " + pct(cut) + " of " + fmt("%.3gM", dense / 1e6);
      ev.push_back({name, cut, 0.0});
    }
    c.rule =
        "exact counts; held when wht has fewer parameters at every size. The size of the "
        "cut depends on the share of attention (small vocabularies make it larger than in "
        "a 50k-vocabulary model)";
    c.verdict = all_of(ev);
    claims.push_back(c);
  }

  {  // 3. Peak memory in training.
    Claim c{"peak_memory", "Lower peak memory", "8.9% lower (v1)", "", "", Verdict::not_measured};
    std::vector<Evidence> ev;
    for (const auto& [name, m] : sizes) {
      auto rss = [](const TrainRun& r) { return double(r.peak_rss_bytes); };
      const std::vector<double> w = per_seed(d, name, Projection::wht, rss),
                                x = per_seed(d, name, Projection::dense, rss);
      if (w.empty() || x.empty() || !(mean(x) > 0)) continue;
      const double cut = 1.0 - mean(w) / mean(x);
      // Noise: the spread of the same run over seeds, at least 0.5% of dense's peak.
      double noise = 0.005;
      for (const auto* v : {&w, &x})
        if (std::isfinite(spread(*v))) noise = std::max(noise, spread(*v) / mean(x));
      ev.push_back({name, cut, noise});
      // What removing W_O should save: its weights, gradients and two AdamW moments.
      const double saved =
          16.0 * double(count_params(m, Projection::dense) - count_params(m, Projection::wht));
      c.ours += (c.ours.empty() ? "" : "; ") + name + " " + pct(cut) + " (" +
                fmt("%.0f", mean(x) / 1048576.0) + " -> " + fmt("%.0f", mean(w) / 1048576.0) +
                " MiB; W_O's weights, gradients and moments are " + fmt("%.1f", saved / 1048576.0) +
                " MiB)";
    }
    c.rule =
        "peak resident memory of each training process (one process per run); held when "
        "wht is lower than dense by more than the noise (spread over seeds, at least 0.5%) "
        "at every size";
    c.verdict = all_of(ev);
    claims.push_back(c);
  }

  {  // 4. Training throughput.
    Claim c{"train_throughput",   "Higher training throughput", "6.6% higher at scale (v1)", "", "",
            Verdict::not_measured};
    std::vector<Evidence> ev;
    for (const auto& [name, m] : sizes) {
      const Evidence e = training_speed(d, name);
      if (std::isfinite(e.value)) ev.push_back(e);
    }
    c.ours = "wht/dense tokens/s - 1: " + join_evidence(ev, "%+.3f");
    c.rule =
        "median tokens/s of each run, wht over dense of the same seed; noise: the spread of "
        "that ratio over seeds (unknown with one seed); held when faster beyond the noise at "
        "every size";
    c.verdict = all_of(ev);
    claims.push_back(c);
  }

  {  // 5. Inference throughput.
    Claim c{"infer_throughput",
            "Higher throughput in prefill and decoding",
            "evaluated in both (v2); 6.6% at scale (v1)",
            "",
            "",
            Verdict::not_measured};
    std::vector<Evidence> pre, dec;
    for (const InferCase& k : d.infer) {
      if (k.proj != Projection::dense) continue;
      const std::string what =
          k.size + " b" + std::to_string(k.batch) + " p" + std::to_string(k.prompt);
      const CaseRatio p = infer_ratio(d, k.size, k.batch, k.prompt, true);
      const CaseRatio q = infer_ratio(d, k.size, k.batch, k.prompt, false);
      if (std::isfinite(p.ratio)) pre.push_back({what, p.ratio - 1, p.noise});
      if (std::isfinite(q.ratio)) dec.push_back({what, q.ratio - 1, q.noise});
    }
    auto gmean = [](const std::vector<Evidence>& ev) {
      double s = 0;
      for (const Evidence& e : ev) s += std::log1p(e.value);
      return ev.empty() ? kNaN : std::expm1(s / double(ev.size()));
    };
    if (!pre.empty())
      c.ours = "prefill: " + Tally(pre).text() + " (geometric mean wht/dense " +
               fmt("%.3f", 1 + gmean(pre)) + "); decode: " + Tally(dec).text() +
               " (geometric mean " + fmt("%.3f", 1 + gmean(dec)) + ")";
    c.rule =
        "each (size, batch, prompt) case: wht/dense median tokens/s, noise the two "
        "measurements' half-ranges added; held when at least half the cases are faster "
        "beyond the noise and none slower, in prefill and in decode";
    const Verdict a = most_of(pre), b = most_of(dec);
    c.verdict = a == b                                               ? a
                : (a == Verdict::not_held || b == Verdict::not_held) ? Verdict::not_held
                                                                     : Verdict::inconclusive;
    claims.push_back(c);
  }

  {  // 6-8. Gains growing with model size, batch size and sequence length.
    const std::vector<std::string> isizes = infer_sizes(d);
    // Size: the smallest and the largest trained size (training and inference ratios).
    Claim s{"grows_with_size",    "The gain grows with model size", "monotonic (v1)", "", "",
            Verdict::not_measured};
    if (sizes.size() >= 2) {
      const std::string& lo = sizes.front().first;
      const std::string& hi = sizes.back().first;
      std::vector<Evidence> ev;
      const Evidence a = training_speed(d, lo), b = training_speed(d, hi);
      if (std::isfinite(a.value) && std::isfinite(b.value))
        ev.push_back({"training", b.value - a.value, a.noise + b.noise});
      for (const bool prefill : {true, false})
        for (int batch : axis_values(d, lo, true))
          for (int prompt : axis_values(d, lo, false)) {
            const CaseRatio x = infer_ratio(d, lo, batch, prompt, prefill);
            const CaseRatio y = infer_ratio(d, hi, batch, prompt, prefill);
            if (std::isfinite(x.ratio) && std::isfinite(y.ratio))
              ev.push_back({std::string(prefill ? "prefill" : "decode") + " b" +
                                std::to_string(batch) + " p" + std::to_string(prompt),
                            y.ratio - x.ratio, x.noise + y.noise});
          }
      s.ours = lo + " -> " + hi + ": " + Tally(ev).text();
      s.rule =
          "the wht/dense ratio at the largest size minus the ratio at the smallest, in "
          "training and in every common inference case; noise: the two ratios' noises "
          "added; held when at least half grow beyond the noise and none shrinks";
      s.verdict = most_of(ev);
    } else {
      s.rule = "needs two sizes";
    }
    claims.push_back(s);

    for (const bool batches : {true, false}) {
      Claim c{batches ? "grows_with_batch" : "grows_with_length",
              batches ? "The gain grows with batch size" : "The gain grows with sequence length",
              "monotonic (v1)",
              "",
              "",
              Verdict::not_measured};
      std::vector<Evidence> ev;
      for (const std::string& size : isizes) {
        const std::vector<int> along = axis_values(d, size, batches);
        const std::vector<int> across = axis_values(d, size, !batches);
        if (along.size() < 2) continue;
        for (const bool prefill : {true, false})
          for (int other : across) {
            // The smallest and largest value along the axis measured at this `other`.
            CaseRatio first, last;
            int v0 = 0, v1 = 0;
            for (int v : along) {
              const CaseRatio r = batches ? infer_ratio(d, size, v, other, prefill)
                                          : infer_ratio(d, size, other, v, prefill);
              if (!std::isfinite(r.ratio)) continue;
              if (v0 == 0) {
                first = r;
                v0 = v;
              }
              last = r;
              v1 = v;
            }
            if (v0 == 0 || v1 == v0) continue;
            ev.push_back({size + " " + (prefill ? "prefill" : "decode") + " " +
                              (batches ? "p" : "b") + std::to_string(other),
                          last.ratio - first.ratio, first.noise + last.noise});
          }
      }
      c.ours = Tally(ev).text();
      c.rule = std::string("the wht/dense ratio at the largest ") +
               (batches ? "batch" : "prompt length") + " minus the ratio at the smallest, per " +
               "size, phase and " + (batches ? "prompt length" : "batch") +
               "; noise: the ratios' noises added; held when at least half grow beyond the "
               "noise and none shrinks";
      c.verdict = most_of(ev);
      claims.push_back(c);
    }
  }

  const ScalingFit *fit_dense = scaling.find(Projection::dense),
                   *fit_wht = scaling.find(Projection::wht);
  const bool fitted = fit_dense && fit_wht && !scaling.paired.empty();
  // Fits across fewer than three sizes fix no trend: the fit-based verdicts need three.
  constexpr int kFitSizes = 3;
  const bool fits_decide =
      fitted && scaling.sizes >= kFitSizes && scaling.min_seeds >= 2 && scaling.adequate();
  std::string too_few;  // why the fits do not decide, when they do not
  if (fitted && scaling.sizes < kFitSizes)
    too_few = "; only " + std::to_string(scaling.sizes) + " sizes, so the fits do not decide";
  else if (fitted && scaling.min_seeds < 2)
    too_few = "; one seed at a size, so the interval is unknown and the fits do not decide";
  else if (fitted && !scaling.adequate()) {
    too_few = "; the fits do not describe their points, so they do not decide:";
    for (const ScalingFit* f : {fit_dense, fit_wht})
      if (!f->adequate())
        too_few += std::string(" ") + projection_name(f->proj) + "'s misses by " +
                   fmt("%.4f", f->fit.rmse) + " nats rms, over its " + fmt("%.4f", f->tolerance()) +
                   " tolerance (seed scatter " + fmt("%.4f", f->scatter) + ")";
  }
  // Without fits, whether there were runs to fit: then the fit-based claims are open, not
  // unmeasured.
  bool trained = false;
  for (const TrainRun& r : d.runs) trained = trained || (r.finished() && !r.val.empty());
  const std::string no_fit =
      "no fit: dense's and wht's need four finished runs over at least three budgets (sizes) "
      "with the loss falling";
  auto times = [](double f) {
    return std::isfinite(f) ? (f < 1.05 ? std::string("already") : fmt("%.3gx", f))
                            : std::string("no finite factor");
  };

  {  // 9. Steeper loss against FLOPs: the fitted exponents.
    Claim c{"steeper_loss",
            "Validation loss falls more steeply against training FLOPs",
            "steeper (v1, v2)",
            "",
            "",
            Verdict::not_measured};
    if (fitted) {
      const Interval& iv = scaling.alpha_diff_interval;
      c.ours = "alpha dense " + fmt("%.3f", fit_dense->fit.alpha) + ", wht " +
               fmt("%.3f", fit_wht->fit.alpha) + "; wht - dense " +
               fmt("%+.3f", scaling.alpha_diff) + " (5-95% " + fmt("%+.3f", iv.lo) + " to " +
               fmt("%+.3f", iv.hi) + ", " + std::to_string(scaling.paired.size()) +
               " replicates, " + std::to_string(scaling.sizes) + " sizes)";
      const bool decided = iv.lo > 0 || iv.hi < 0;
      c.verdict = iv.lo > 0 ? Verdict::held : iv.hi < 0 ? Verdict::not_held : Verdict::inconclusive;
      if (!fits_decide) c.verdict = Verdict::inconclusive;
      if (!decided && scaling.adequate())
        c.ours += "; to decide: about " + times(seeds_factor(scaling.alpha_diff, iv)) +
                  " the seeds (and runs) at every size, if the interval narrows as 1/sqrt(seeds)";
      c.ours += too_few;
    } else if (trained) {
      c.ours = no_fit;
      c.verdict = Verdict::inconclusive;
    }
    c.rule =
        "the exponent alpha of L = E + A C^-alpha fitted per projection to each run's final "
        "validation loss against its training FLOPs, across sizes (the Scaling fits section); "
        "interval: 5th-95th percentile of wht's alpha minus dense's over bootstrap replicates "
        "that resample each size's seeds, the same draw for both; held when the interval "
        "lies above zero, not held when below, with fits across at least three sizes of at "
        "least two seeds each that describe their points (rmse within the tolerance of the "
        "Scaling fits section); inconclusive otherwise";
    claims.push_back(c);
  }

  {  // 10. Lower loss at an equal training budget: per size, and from the fits.
    Claim c{"equal_budget_loss",
            "Lower validation loss at an equal training budget",
            "lower (v2)",
            "",
            "",
            Verdict::not_measured};
    std::vector<Evidence> ev;
    for (const EqualFlops& e : loss_at_equal_flops(d)) {
      const int dn = int(Projection::dense), wh = int(Projection::wht);
      if (!std::isfinite(e.mean[dn]) || !std::isfinite(e.mean[wh])) continue;
      const double noise = std::max(e.spread[dn], e.spread[wh]);
      ev.push_back({e.size, e.mean[dn] - e.mean[wh], noise});
      c.ours += (c.ours.empty() ? "" : "; ") + e.size + " at " + fmt("%.3g", e.flops) +
                " FLOPs: wht - dense " + fmt("%+.4f", e.mean[wh] - e.mean[dn]) + " nats" +
                (std::isfinite(noise) ? " (seed spread " + fmt("%.4f", noise) + ")"
                                      : " (one seed: spread unknown)");
    }
    const Verdict per_size = all_of(ev);
    c.verdict = per_size;  // what the measured budgets say, where the fits cannot decide
    if (fitted) {
      const Gap g = fitted_gap(scaling, scaling.flops_hi);
      c.ours += (c.ours.empty() ? "" : ". ") + std::string("Fits at ") +
                fmt("%.3g", scaling.flops_hi) + " FLOPs (the largest measured): wht - dense " +
                fmt("%+.4f", g.value) + " nats (5-95% " + fmt("%+.4f", g.interval.lo) + " to " +
                fmt("%+.4f", g.interval.hi) + ")";
      const int fit_sign = g.interval.hi < 0 ? 1 : g.interval.lo > 0 ? -1 : 0;  // 1: wht lower
      if (per_size == Verdict::not_held)
        c.verdict = Verdict::not_held;
      else if (!fits_decide)
        c.verdict = per_size;
      else if (fit_sign < 0)
        c.verdict =
            std::any_of(ev.begin(), ev.end(), [](const Evidence& e) { return e.sign() > 0; })
                ? Verdict::inconclusive
                : Verdict::not_held;
      else if (per_size == Verdict::held && fit_sign > 0)
        c.verdict = Verdict::held;
      else
        c.verdict = Verdict::inconclusive;
      if (fit_sign == 0 && scaling.adequate()) {
        int sign = 0;
        const double at = first_decided_budget(scaling, &sign);
        c.ours += std::isfinite(at)
                      ? "; the fits' interval first excludes zero at " + fmt("%.3g", at) +
                            " FLOPs (" + fmt("%.3gx", at / scaling.flops_hi) +
                            " the largest measured), with wht " + (sign < 0 ? "lower" : "higher")
                      : "; the fits' interval includes zero up to 1000x the largest measured "
                        "budget";
        c.ours += "; or about " + times(seeds_factor(g.value, g.interval)) +
                  " the seeds at the measured budgets";
      }
      c.ours += too_few;
    } else if (trained && !ev.empty()) {
      c.ours += ". " + no_fit;
    }
    c.rule =
        "per size: each run's validation loss interpolated at the least final FLOPs of the "
        "size's dense and wht runs, mean over seeds, noise the larger spread over seeds; from "
        "the fits: wht's fitted loss minus dense's at the largest measured budget, with its "
        "bootstrap interval. Not held when wht is higher beyond the noise at a size. Where the "
        "fits decide (at least three sizes of at least two seeds, and both fits describing "
        "their points: rmse within the tolerance of the Scaling fits section): held when wht "
        "is lower beyond the noise at every size and the fits' interval lies below zero, not "
        "held when the interval lies above zero and no size has wht lower beyond the noise, "
        "inconclusive otherwise. Where they do not, the per-size comparison alone decides, at "
        "the budgets measured";
    claims.push_back(c);
  }

  {  // 11. The Hadamard's mixing against doing nothing (identity): the paper's argument.
    Claim c{"beats_identity",
            "The Hadamard's cross-head mixing beats no output projection (identity)",
            "the reason for a Hadamard rather than nothing (v2)",
            "",
            "",
            Verdict::not_measured};
    std::vector<Evidence> ev;
    for (const auto& [name, m] : sizes) {
      const auto final_loss = [](const TrainRun& r) {
        return r.val.empty() ? kNaN : r.val.back().val_loss;
      };
      const std::vector<double> w = per_seed(d, name, Projection::wht, final_loss),
                                x = per_seed(d, name, Projection::identity, final_loss);
      if (w.empty() || x.empty()) continue;
      ev.push_back({name, mean(x) - mean(w), std::max(spread(w), spread(x))});
    }
    c.ours = join_evidence(ev, "%+.4f");
    if (!c.ours.empty()) c.ours = "identity - wht final val loss: " + c.ours;
    c.rule =
        "final validation loss at equal tokens, identity's mean over seeds minus wht's; "
        "noise: the larger spread over seeds; held when wht is lower beyond the noise at "
        "every size, not held when higher beyond it at any";
    c.verdict = all_of(ev);
    claims.push_back(c);
  }
  claims.push_back(downstream_claim(d));  // src/report/downstream.cpp
  return claims;
}

// wht/dense ratio of one inference case and its noise: the relative half-ranges of
// the two medians, added.
CaseRatio case_ratio(const perf::Summary& wht, const perf::Summary& dense) {
  if (!(wht.median > 0) || !(dense.median > 0)) return {};
  const double n =
      0.5 * (wht.max - wht.min) / wht.median + 0.5 * (dense.max - dense.min) / dense.median;
  return {wht.median / dense.median, n * wht.median / dense.median};
}

const InferCase* find_case(const Data& d, const std::string& size, Projection p, int batch,
                           int prompt) {
  for (const InferCase& c : d.infer)
    if (c.size == size && c.proj == p && c.batch == batch && c.prompt == prompt) return &c;
  return nullptr;
}

// Sizes in the order of their dense parameter count (smallest first), with the shape
// of their first run.
std::vector<std::pair<std::string, ModelConfig>> sizes_by_params(const Data& d) {
  std::map<std::string, ModelConfig> shapes;
  for (const TrainRun& r : d.runs) shapes.try_emplace(r.size, r.model);
  std::vector<std::pair<std::string, ModelConfig>> v(shapes.begin(), shapes.end());
  auto params = [](ModelConfig c) {
    c.projection = Projection::dense;
    return ParamLayout(c).count();
  };
  std::stable_sort(v.begin(), v.end(), [&](const auto& a, const auto& b) {
    return params(a.second) < params(b.second);
  });
  return v;
}

std::vector<std::string> infer_sizes(const Data& d) {
  std::vector<std::string> v;
  for (const InferCase& c : d.infer)
    if (std::find(v.begin(), v.end(), c.size) == v.end()) v.push_back(c.size);
  return v;
}

std::size_t count_params(ModelConfig c, Projection p) {
  c.projection = p;
  return ParamLayout(c).count();
}
double attn_params_per_block(ModelConfig c, Projection p) {
  c.projection = p;
  const ParamLayout l(c);
  return double(l.count(Component::attn_qkv) + l.count(Component::attn_out)) / c.n_layer;
}

// Runs of one size and projection, by seed.
std::map<std::uint64_t, const TrainRun*> runs_of(const Data& d, const std::string& size,
                                                 Projection p) {
  return runs_of(d, size, p, d.wht_init);
}

std::map<std::uint64_t, const TrainRun*> runs_of(const Data& d, const std::string& size,
                                                 Projection p, ScaleInit init) {
  std::map<std::uint64_t, const TrainRun*> m;
  for (const TrainRun& r : d.runs)
    if (r.size == size && r.proj == p && r.finished() &&
        (p != Projection::wht || r.scale_init == init))
      m.emplace(r.seed, &r);
  return m;
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? kNaN : s / double(v.size());
}
// Max - min; NaN with fewer than two values (the spread is then unknown).
double spread(const std::vector<double>& v) {
  if (v.size() < 2) return kNaN;
  const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
  return *hi - *lo;
}

}  // namespace detail

}  // namespace whtlm::report
