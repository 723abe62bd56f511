// Saturating power-law fits of validation loss against training FLOPs, bootstrap
// intervals over seeds and crossings of two fits (report/fit.hpp).
#include "report/fit.hpp"

#include <algorithm>
#include <cmath>
#include <random>

#include "report/analysis.hpp"

namespace whtlm::report::detail {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// For a fixed alpha: E and A by linear least squares of loss on x = C^-alpha (with x
// scaled by its largest value so the 2 x 2 system stays well conditioned), E clamped at
// zero (then A alone by least squares, a line through the origin); the SSE.
struct Linear {
  double E = kNaN, A = kNaN, sse = std::numeric_limits<double>::infinity();
};
Linear solve_for(double alpha, const std::vector<double>& logc, const std::vector<double>& loss) {
  const std::size_t n = logc.size();
  double xmax = 0;
  for (double l : logc) xmax = std::max(xmax, -alpha * l);
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  std::vector<double> x(n);
  for (std::size_t i = 0; i < n; ++i) {
    x[i] = std::exp(-alpha * logc[i] - xmax);  // C^-alpha / max
    sx += x[i];
    sy += loss[i];
    sxx += x[i] * x[i];
    sxy += x[i] * loss[i];
  }
  const double den = double(n) * sxx - sx * sx;
  Linear r;
  if (!(den > 0)) return r;
  double a = (double(n) * sxy - sx * sy) / den;  // slope in the scaled x
  r.E = (sy - a * sx) / double(n);
  if (r.E < 0) {  // the constrained optimum lies on E = 0 (the SSE is convex in E, A)
    r.E = 0;
    a = sxy / sxx;
  }
  r.A = a * std::exp(-xmax);
  r.sse = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double e = r.E + a * x[i] - loss[i];
    r.sse += e * e;
  }
  return r;
}

double percentile(std::vector<double> v, double q) {
  v.erase(std::remove_if(v.begin(), v.end(), [](double x) { return !std::isfinite(x); }), v.end());
  if (v.empty()) return kNaN;
  std::sort(v.begin(), v.end());
  const double at = q * double(v.size() - 1);
  const std::size_t i = std::size_t(at);
  const double t = at - double(i);
  return i + 1 < v.size() ? v[i] * (1 - t) + v[i + 1] * t : v[i];
}

Interval interval(const std::vector<double>& v) {
  return {percentile(v, 0.05), percentile(v, 0.95)};
}

}  // namespace

double PowerLaw::operator()(double flops) const { return E + A * std::pow(flops, -alpha); }

PowerLaw fit_power_law(const std::vector<double>& flops, const std::vector<double>& loss) {
  std::vector<double> logc, y;
  for (std::size_t i = 0; i < flops.size() && i < loss.size(); ++i)
    if (flops[i] > 0 && std::isfinite(flops[i]) && std::isfinite(loss[i])) {
      logc.push_back(std::log(flops[i]));
      y.push_back(loss[i]);
    }
  PowerLaw f;
  std::vector<double> distinct = logc;
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  // Three parameters need three budgets: through two, every alpha fits equally well.
  if (logc.size() < 4 || distinct.size() < 3) return f;
  // A log grid over alpha, then golden-section search around the best grid point.
  constexpr double lo = 0.005, hi = 2.0;
  constexpr int grid = 200;
  auto alpha_at = [&](int k) { return lo * std::pow(hi / lo, double(k) / (grid - 1)); };
  int best = 0;
  double best_sse = std::numeric_limits<double>::infinity();
  for (int k = 0; k < grid; ++k) {
    const double s = solve_for(alpha_at(k), logc, y).sse;
    if (s < best_sse) best_sse = s, best = k;
  }
  double a = std::log(alpha_at(std::max(0, best - 1))),
         b = std::log(alpha_at(std::min(grid - 1, best + 1)));
  const double g = (std::sqrt(5.0) - 1) / 2;
  auto sse = [&](double log_alpha) { return solve_for(std::exp(log_alpha), logc, y).sse; };
  double c = b - g * (b - a), d = a + g * (b - a), fc = sse(c), fd = sse(d);
  for (int it = 0; it < 60; ++it) {
    if (fc < fd) {
      b = d, d = c, fd = fc;
      c = b - g * (b - a), fc = sse(c);
    } else {
      a = c, c = d, fc = fd;
      d = a + g * (b - a), fd = sse(d);
    }
  }
  const double alpha = std::exp(0.5 * (a + b));
  const Linear r = solve_for(alpha, logc, y);
  if (!(r.A > 0) || !std::isfinite(r.E)) return f;
  f.E = r.E;
  f.A = r.A;
  f.alpha = alpha;
  f.points = int(logc.size());
  f.rmse = std::sqrt(r.sse / double(logc.size()));
  return f;
}

FitPoints fit_points(const Data& d, Projection p,
                     const std::vector<std::vector<std::size_t>>& pick) {
  FitPoints pts;
  const auto sizes = sizes_by_params(d);
  for (std::size_t s = 0; s < sizes.size(); ++s) {
    std::vector<const TrainRun*> runs;
    for (const auto& [seed, r] : runs_of(d, sizes[s].first, p)) runs.push_back(r);
    if (runs.empty()) continue;
    std::vector<std::size_t> use;
    if (s < pick.size() && !pick[s].empty())
      for (std::size_t i : pick[s]) use.push_back(i % runs.size());
    else
      for (std::size_t i = 0; i < runs.size(); ++i) use.push_back(i);
    for (std::size_t i : use) {
      const TrainRun& r = *runs[i];
      if (r.val.empty()) continue;
      pts.flops.push_back(r.val.back().flops);
      pts.loss.push_back(r.val.back().val_loss);
      pts.size.push_back(s);
    }
  }
  return pts;
}

double seed_scatter(const FitPoints& pts) {
  std::vector<double> sum, sq;
  std::vector<int> n;
  for (std::size_t i = 0; i < pts.loss.size() && i < pts.size.size(); ++i) {
    const std::size_t s = pts.size[i];
    if (s >= n.size()) sum.resize(s + 1, 0), sq.resize(s + 1, 0), n.resize(s + 1, 0);
    sum[s] += pts.loss[i];
    sq[s] += pts.loss[i] * pts.loss[i];
    ++n[s];
  }
  double ss = 0;
  int dof = 0;
  for (std::size_t s = 0; s < n.size(); ++s) {
    if (n[s] < 2) continue;
    ss += std::max(0.0, sq[s] - sum[s] * sum[s] / n[s]);
    dof += n[s] - 1;
  }
  return dof > 0 ? std::sqrt(ss / dof) : kNaN;
}

double ScalingFit::tolerance() const {
  return std::isfinite(scatter) ? std::max(kAdequateFactor * scatter, kAdequateFloor)
                                : kAdequateFloor;
}

double crossing(const PowerLaw& a, const PowerLaw& b, double lo, double hi) {
  if (!a.ok() || !b.ok() || !(lo > 0) || !(hi > lo)) return kNaN;
  auto diff = [&](double logc) {
    const double c = std::exp(logc);
    return b(c) - a(c);
  };
  // A crossing is a change of sign between two nonzero differences (identical curves,
  // zero everywhere, do not cross).
  const int steps = 400;
  const double l0 = std::log(lo), l1 = std::log(hi);
  double at = kNaN, prev = 0;
  for (int k = 0; k <= steps; ++k) {
    const double x = l0 + (l1 - l0) * double(k) / steps, v = diff(x);
    if (v == 0) continue;
    if (prev != 0 && (prev < 0) != (v < 0)) {
      double u = at, w = x;
      for (int it = 0; it < 80; ++it) {
        const double m = 0.5 * (u + w), fm = diff(m);
        if (fm != 0 && (fm < 0) == (prev < 0))
          u = m;
        else
          w = m;
      }
      return std::exp(0.5 * (u + w));
    }
    prev = v;
    at = x;
  }
  return kNaN;
}

Scaling scaling_fits(const Data& d, int replicates, std::uint64_t seed) {
  Scaling out;
  const auto sizes = sizes_by_params(d);
  const Projection order[] = {Projection::dense, Projection::wht, Projection::identity};
  // Seeds per size (the most any projection has), for the resampling.
  std::vector<std::size_t> seeds(sizes.size(), 0);
  for (std::size_t s = 0; s < sizes.size(); ++s)
    for (Projection p : order) seeds[s] = std::max(seeds[s], runs_of(d, sizes[s].first, p).size());
  double lo = std::numeric_limits<double>::infinity(), hi = 0;
  for (Projection p : order) {
    const FitPoints pts = fit_points(d, p);
    ScalingFit f;
    f.proj = p;
    f.fit = fit_power_law(pts.flops, pts.loss);
    if (!f.fit.ok()) continue;
    f.scatter = seed_scatter(pts);
    for (double c : pts.flops) lo = std::min(lo, c), hi = std::max(hi, c);
    out.fits.push_back(f);
  }
  if (out.fits.empty()) return out;
  for (const auto& [name, model] : sizes) {
    bool has = false;
    for (const ScalingFit& f : out.fits) has = has || !runs_of(d, name, f.proj).empty();
    if (!has) continue;
    ++out.sizes;
    for (Projection p : {Projection::dense, Projection::wht}) {
      const int n = int(runs_of(d, name, p).size());
      out.min_seeds = out.min_seeds == 0 ? n : std::min(out.min_seeds, n);
    }
  }
  out.flops_lo = lo;
  out.flops_hi = hi;
  const ScalingFit *dense = nullptr, *wht = nullptr;
  for (const ScalingFit& f : out.fits) {
    if (f.proj == Projection::dense) dense = &f;
    if (f.proj == Projection::wht) wht = &f;
  }
  if (dense && wht) out.crossing = crossing(dense->fit, wht->fit, lo, 1000 * hi);

  // Bootstrap: every projection sees the same resampled seed indices (paired).
  std::mt19937_64 rng(seed);
  std::vector<std::vector<double>> E(out.fits.size()), A(out.fits.size()), al(out.fits.size());
  std::vector<double> cross;
  int crossed = 0, both = 0;
  for (int rep = 0; rep < replicates; ++rep) {
    std::vector<std::vector<std::size_t>> pick(sizes.size());
    for (std::size_t s = 0; s < sizes.size(); ++s)
      for (std::size_t k = 0; k < seeds[s]; ++k)
        pick[s].push_back(seeds[s] > 0 ? std::size_t(rng() % seeds[s]) : 0);
    PowerLaw fd, fw;
    for (std::size_t i = 0; i < out.fits.size(); ++i) {
      const FitPoints pts = fit_points(d, out.fits[i].proj, pick);
      const PowerLaw f = fit_power_law(pts.flops, pts.loss);
      if (!f.ok()) continue;
      ++out.fits[i].replicates;
      E[i].push_back(f.E);
      A[i].push_back(f.A);
      al[i].push_back(f.alpha);
      if (out.fits[i].proj == Projection::dense) fd = f;
      if (out.fits[i].proj == Projection::wht) fw = f;
    }
    if (fd.ok() && fw.ok()) {
      ++both;
      out.paired.emplace_back(fd, fw);
      const double c = crossing(fd, fw, lo, 1000 * hi);
      if (std::isfinite(c)) {
        ++crossed;
        cross.push_back(c);
      }
    }
  }
  for (std::size_t i = 0; i < out.fits.size(); ++i) {
    out.fits[i].E = interval(E[i]);
    out.fits[i].A = interval(A[i]);
    out.fits[i].alpha = interval(al[i]);
  }
  out.crossing_interval = interval(cross);
  out.crossing_share = both > 0 ? double(crossed) / double(both) : 0;
  if (dense && wht) {
    out.alpha_diff = wht->fit.alpha - dense->fit.alpha;
    std::vector<double> diffs;
    for (const auto& [fd, fw] : out.paired) diffs.push_back(fw.alpha - fd.alpha);
    out.alpha_diff_interval = interval(diffs);
  }
  return out;
}

const ScalingFit* Scaling::find(Projection p) const {
  for (const ScalingFit& f : fits)
    if (f.proj == p) return &f;
  return nullptr;
}

bool Scaling::adequate() const {
  const ScalingFit *dense = find(Projection::dense), *wht = find(Projection::wht);
  return dense && wht && dense->adequate() && wht->adequate();
}

Gap fitted_gap(const Scaling& s, double flops) {
  Gap g;
  const ScalingFit *dense = s.find(Projection::dense), *wht = s.find(Projection::wht);
  if (!dense || !wht || !(flops > 0)) return g;
  g.value = wht->fit(flops) - dense->fit(flops);
  std::vector<double> v;
  for (const auto& [fd, fw] : s.paired) v.push_back(fw(flops) - fd(flops));
  g.interval = interval(v);
  return g;
}

double first_decided_budget(const Scaling& s, int* sign) {
  if (!(s.flops_hi > 0)) return kNaN;
  const int steps = 120;  // 1000x in steps of 10^(1/40)
  for (int k = 0; k <= steps; ++k) {
    const double c = s.flops_hi * std::pow(1000.0, double(k) / steps);
    const Gap g = fitted_gap(s, c);
    if (g.interval.hi < 0 || g.interval.lo > 0) {
      if (sign) *sign = g.interval.hi < 0 ? -1 : 1;
      return c;
    }
  }
  return kNaN;
}

double seeds_factor(double value, const Interval& iv) {
  if (!std::isfinite(value) || !std::isfinite(iv.lo) || !std::isfinite(iv.hi))
    return std::numeric_limits<double>::infinity();
  if (value == 0) return std::numeric_limits<double>::infinity();
  const double half = 0.5 * (iv.hi - iv.lo) / std::fabs(value);
  return std::max(1.0, half * half);
}

}  // namespace whtlm::report::detail
