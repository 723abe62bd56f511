// Scaling fits for the report: validation loss against training FLOPs fitted with a
// saturating power law, L(C) = E + A * C^-alpha, with intervals by bootstrap over
// seeds, and where two fitted curves cross.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "whtlm/report.hpp"

namespace whtlm::report::detail {

struct PowerLaw {
  double E = std::numeric_limits<double>::quiet_NaN();  // the loss it saturates at
  double A = std::numeric_limits<double>::quiet_NaN();
  double alpha = std::numeric_limits<double>::quiet_NaN();
  double rmse = std::numeric_limits<double>::quiet_NaN();  // in nats, over the points
  int points = 0;
  bool ok() const { return std::isfinite(E) && std::isfinite(A) && std::isfinite(alpha); }
  double operator()(double flops) const;
};

// Least squares in the loss over (flops, loss) points (flops > 0, finite loss), with the
// floor E held at zero or above (a loss in nats cannot saturate below zero). For a fixed
// alpha the model is linear in E and A, so those are solved exactly (E clamped at zero,
// A refitted) and only alpha is searched (a log grid over [0.005, 2], then
// golden-section refinement). Fewer than four points or three distinct FLOPs, or a best
// fit with A <= 0 (loss not falling), gives a fit that is not ok().
PowerLaw fit_power_law(const std::vector<double>& flops, const std::vector<double>& loss);

// The points a projection's fit uses: the final validation point of each of its finished
// runs (d.wht_init's wht runs), across all sizes. Only there has a run's learning-rate
// schedule finished: its earlier points lie above what a run planned for that budget
// reaches, and a fit through them mixes the two (on the default plan such fits missed the
// points by 0.10-0.16 nats rms and put the floor E below zero). `pick` selects, per size,
// which seeds' runs (indices into that size's runs in seed order) are used; empty: all.
struct FitPoints {
  std::vector<double> flops, loss;
  std::vector<std::size_t> size;  // the index of each point's size (sizes_by_params order)
};
FitPoints fit_points(const Data& d, Projection p,
                     const std::vector<std::vector<std::size_t>>& pick = {});

// The first FLOPs in [lo, hi] (log-spaced search, then bisection) where b(C) - a(C)
// changes sign; NaN when it does not change sign there.
double crossing(const PowerLaw& a, const PowerLaw& b, double lo, double hi);

struct Interval {
  double lo = std::numeric_limits<double>::quiet_NaN();
  double hi = std::numeric_limits<double>::quiet_NaN();
};

// Per projection: the fit on all seeds and the 5th-95th percentile of each parameter over
// bootstrap replicates (each size's seeds resampled with replacement, a fixed seed of
// the generator so the report is reproducible).
// The seeds' own scatter: the pooled standard deviation of the points around their
// size's mean (NaN without two points at some size).
double seed_scatter(const FitPoints& pts);

// A fit describes its points when it misses them by no more than the seeds scatter among
// themselves: rmse <= kAdequateFactor x the seed scatter, or kAdequateFloor nats where the
// seeds agree more closely than that. A fit of the right form misses by about the
// scatter (its residuals are the seed noise); one that cannot follow the points' shape
// (a loss that bends the wrong way across sizes) misses by several times it.
constexpr double kAdequateFactor = 2.0;
constexpr double kAdequateFloor = 0.01;  // nats

struct ScalingFit {
  Projection proj = Projection::dense;
  PowerLaw fit;
  Interval E, A, alpha;
  int replicates = 0;                                         // bootstrap fits that were ok()
  double scatter = std::numeric_limits<double>::quiet_NaN();  // seed_scatter of the points
  double tolerance() const;  // the rmse it may reach: max(factor x scatter, floor)
  bool adequate() const { return fit.ok() && fit.rmse <= tolerance(); }
};
struct Scaling {
  std::vector<ScalingFit> fits;       // dense, wht, identity where they have points
  double flops_lo = 0, flops_hi = 0;  // the range the points span
  int sizes = 0;                      // sizes whose runs gave points
  // The fewest seeds any of those sizes has for dense or wht: with one, the bootstrap
  // cannot resample and its intervals say nothing.
  int min_seeds = 0;
  // Where wht's fit crosses dense's, searched from flops_lo to 1000 x flops_hi: NaN when
  // it does not; the interval is over the bootstrap replicates' crossings, with
  // `crossing_share` the share of replicates that cross at all.
  double crossing = std::numeric_limits<double>::quiet_NaN();
  Interval crossing_interval;
  double crossing_share = 0;
  // wht's alpha minus dense's, on all seeds and over the paired replicates.
  double alpha_diff = std::numeric_limits<double>::quiet_NaN();
  Interval alpha_diff_interval;
  // The (dense, wht) fits of every replicate where both were ok(), for gaps at any budget.
  std::vector<std::pair<PowerLaw, PowerLaw>> paired;
  const ScalingFit* find(Projection p) const;  // nullptr when that projection has no fit
  // Whether dense's and wht's fits both exist and describe their points (adequate()):
  // only then do the fits decide a claim.
  bool adequate() const;
};
Scaling scaling_fits(const Data& d, int replicates = 200, std::uint64_t seed = 1);
// report::decide_claims with the fits already made (the report writer makes them once
// for its section and the claims).
std::vector<Claim> decide_claims(const Data& d, const Scaling& scaling);

// wht's fitted loss minus dense's at a training budget: on all seeds, and the 5th-95th
// percentile over the paired replicates (NaN without both fits).
struct Gap {
  double value = std::numeric_limits<double>::quiet_NaN();
  Interval interval;
};
Gap fitted_gap(const Scaling& s, double flops);
// The least budget from s.flops_hi up to 1000 x s.flops_hi (log-spaced) at which the
// gap's interval excludes zero, with the gap's sign there in *sign (-1: wht lower); NaN
// when there is none.
double first_decided_budget(const Scaling& s, int* sign = nullptr);
// How many times the seeds (so the runs) an interval [lo, hi] around `value` would need
// to exclude zero, if its width shrinks as 1 / sqrt(seeds): ((hi - lo) / 2 / |value|)^2;
// at least 1, infinite for a zero value.
double seeds_factor(double value, const Interval& iv);

}  // namespace whtlm::report::detail
