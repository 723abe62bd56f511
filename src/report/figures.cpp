// The report's figures (figures.hpp): validation loss curves, the learning-rate sweep,
// the scaling fits, inference throughput, the wht/dense ratio and memory, drawn as SVG
// charts (chart.hpp); and their PNG copies through an external converter.
#include "report/figures.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <map>
#include <string>

#include "report/analysis.hpp"
#include "report/chart.hpp"
#include "whtlm/io.hpp"

namespace whtlm::report::detail {
namespace {

namespace fs = std::filesystem;

// The colour c as an SVG colour, lightened towards white for smaller sizes.
std::string shade(const int* c, std::size_t size_index, std::size_t sizes) {
  const double light = sizes > 1 ? 0.45 * double(sizes - 1 - size_index) / double(sizes - 1) : 0;
  char buf[16];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", int(c[0] + (255 - c[0]) * light),
                int(c[1] + (255 - c[1]) * light), int(c[2] + (255 - c[2]) * light));
  return buf;
}

// One colour per projection in every figure; smaller sizes get lighter shades.
std::string colour(Projection p, std::size_t size_index, std::size_t sizes) {
  static const int rgb[3][3] = {{31, 119, 180}, {214, 39, 40}, {44, 160, 44}};
  return shade(rgb[int(p)], size_index, sizes);
}

// A variant of a size: its projection and, for wht, how its scale started. The wht
// the claims use is red; wht with another scale init is purple.
std::string variant_colour(Projection p, ScaleInit init, ScaleInit primary, std::size_t size_index,
                           std::size_t sizes) {
  if (p != Projection::wht || init == primary) return colour(p, size_index, sizes);
  static const int purple[3] = {148, 103, 189};
  return shade(purple, size_index, sizes);
}

void sort_series(Series& s) {
  std::vector<std::size_t> idx(s.x.size());
  for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  std::sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return s.x[a] < s.x[b]; });
  auto apply = [&](std::vector<double>& v) {
    if (v.size() != idx.size()) return;
    std::vector<double> o;
    for (std::size_t i : idx) o.push_back(v[i]);
    v = o;
  };
  apply(s.x);
  apply(s.y);
  apply(s.y_lo);
  apply(s.y_hi);
}

// An inference figure's x axis and its name in titles and captions.
Axis along_axis(bool along_batch) {
  return {
      along_batch ? "batch size, sequences (log)" : "prompt length, tokens (log)", true, {}, {}};
}
const char* along_name(bool along_batch) { return along_batch ? "batch size" : "prompt length"; }

class Painter {
 public:
  explicit Painter(const Context& c) : c_(c), d_(c.data) {}

  Figures draw(const Scaling& scaling) {
    Figures f;
    if (!d_.sweep.empty()) f.sweep.push_back(sweep_figure());
    if (!scaling.fits.empty()) f.fit.push_back(fit_figure(scaling));
    if (!d_.runs.empty()) {
      f.loss.push_back(loss_figure(0, "loss_vs_flops", "training FLOPs (log)"));
      f.loss.push_back(loss_figure(1, "loss_vs_tokens", "training tokens (log)"));
      f.loss.push_back(loss_figure(2, "loss_vs_time", "wall time, s (log)"));
    }
    if (!d_.infer.empty()) {
      f.infer.push_back(infer_figure(true, true, "prefill_vs_batch"));
      f.infer.push_back(infer_figure(false, true, "decode_vs_batch"));
      f.infer.push_back(ratio_figure(true, "ratio_vs_batch"));
      f.infer.push_back(infer_figure(true, false, "prefill_vs_prompt"));
      f.infer.push_back(infer_figure(false, false, "decode_vs_prompt"));
      f.infer.push_back(ratio_figure(false, "ratio_vs_prompt"));
      f.infer.push_back(memory_figure());
    }
    return f;
  }

 private:
  Figure save(const Chart& chart, const std::string& name, const std::string& caption) const {
    std::error_code ec;
    for (const char* ext : {".svg", ".png"})
      if (c_.guard && fs::exists(c_.path("figures/" + name + ext), ec))
        refuse_overwrite(c_.out_dir, "figures/" + name + ext);
    io::write_file_atomic(c_.path("figures/" + name + ".svg"), render_svg(chart));
    return {name + ".svg", caption};
  }

  // A curve of size s and projection p, coloured and dashed as every figure does.
  Series size_series(const std::string& s, Projection p) const {
    Series ser;
    ser.label = s + " " + projection_name(p);
    ser.color = colour(p, c_.size_index(s), c_.size_names.size());
    ser.dashed = !c_.largest(s);
    return ser;
  }

  // The mean validation curve of a size and projection over its seeds (their common
  // points), with the per-point min and max as a band.
  Series mean_curve(const std::string& size, Projection p, int axis) const {
    Series s = size_series(size, p);
    s.markers = false;
    const auto runs = runs_of(d_, size, p);
    if (runs.empty()) return s;
    std::size_t n = std::numeric_limits<std::size_t>::max();
    for (const auto& [seed, r] : runs) n = std::min(n, r->val.size());
    for (std::size_t i = 0; i < n; ++i) {
      std::vector<double> xs, ys;
      for (const auto& [seed, r] : runs) {
        const CurvePoint& q = r->val[i];
        xs.push_back(axis == 0 ? q.flops : axis == 1 ? q.tokens : q.elapsed_s);
        ys.push_back(q.val_loss);
      }
      s.x.push_back(mean(xs));
      s.y.push_back(mean(ys));
      if (runs.size() > 1) {
        s.y_lo.push_back(*std::min_element(ys.begin(), ys.end()));
        s.y_hi.push_back(*std::max_element(ys.begin(), ys.end()));
      }
    }
    return s;
  }

  Figure loss_figure(int axis, const std::string& name, const std::string& xlabel) const {
    Chart c;
    c.title = "Validation loss against " + std::string(axis == 0   ? "training FLOPs"
                                                       : axis == 1 ? "training tokens"
                                                                   : "wall time");
    c.x = {xlabel, true, {}, {}};
    c.y = {"validation loss, nats/token", false, {}, {}};
    for (const std::string& s : c_.size_names)
      for (Projection p : kProjections)
        if (!runs_of(d_, s, p).empty()) c.series.push_back(mean_curve(s, p, axis));
    c.note = "mean over seeds; band: min-max over seeds; data: runs/*/metrics.jsonl";
    return save(c, name,
                "Validation loss of every run (mean over seeds, band = range over seeds) against " +
                    xlabel.substr(0, xlabel.find(" (")) + ".");
  }

  // The value along the other axis that covers the most cases of `size` (ties: the
  // larger), so a curve against batch (prompt) has as many points as possible.
  int pick_other(const std::string& size, bool along_batch) const {
    std::map<int, int> count;
    for (const InferCase& k : d_.infer)
      if (k.size == size && k.proj == Projection::dense) ++count[along_batch ? k.prompt : k.batch];
    int best = 0, n = -1;
    for (const auto& [v, c] : count)
      if (c >= n) best = v, n = c;
    return best;
  }

  Figure infer_figure(bool prefill, bool along_batch, const std::string& name) const {
    Chart c;
    const char* phase = prefill ? "Prefill" : "Decode";
    c.title = std::string(phase) + " throughput against " + along_name(along_batch);
    c.x = along_axis(along_batch);
    c.y = {std::string(prefill ? "prefill" : "decode") + " tokens/s (log)", true, {}, {}};
    std::string fixed;
    for (const std::string& s : c_.size_names) {
      const int other = pick_other(s, along_batch);
      fixed += (fixed.empty() ? "" : ", ") + s + (along_batch ? " prompt " : " batch ") +
               std::to_string(other);
      for (Projection p : kProjections) {
        Series ser = size_series(s, p);
        for (const InferCase& k : d_.infer) {
          if (k.size != s || k.proj != p || (along_batch ? k.prompt : k.batch) != other) continue;
          const perf::Summary& m = prefill ? k.prefill_tokens_per_s : k.decode_tokens_per_s;
          ser.x.push_back(along_batch ? k.batch : k.prompt);
          ser.y.push_back(m.median);
          ser.y_lo.push_back(m.min);
          ser.y_hi.push_back(m.max);
        }
        sort_series(ser);
        if (!ser.x.empty()) c.series.push_back(ser);
      }
    }
    c.note = "median of repetitions, band min-max; " + fixed + "; data: bench/infer.jsonl";
    return save(
        c, name,
        std::string(phase) + " tokens/s against " + along_name(along_batch) + " (" + fixed + ").");
  }

  Figure ratio_figure(bool along_batch, const std::string& name) const {
    Chart c;
    c.title = std::string("wht / dense throughput against ") + along_name(along_batch);
    c.x = along_axis(along_batch);
    c.y = {"wht tokens/s over dense tokens/s", false, {}, {}};
    c.y_reference = 1.0;
    for (const std::string& s : c_.size_names) {
      const int other = pick_other(s, along_batch);
      for (const bool prefill : {true, false}) {
        Series ser;
        ser.label = s + (prefill ? " prefill" : " decode") + (along_batch ? " p" : " b") +
                    std::to_string(other);
        ser.color = colour(prefill ? Projection::wht : Projection::dense, c_.size_index(s),
                           c_.size_names.size());
        ser.dashed = !prefill;
        for (const InferCase& k : d_.infer) {
          if (k.size != s || k.proj != Projection::dense ||
              (along_batch ? k.prompt : k.batch) != other)
            continue;
          const InferCase* w = find_case(d_, s, Projection::wht, k.batch, k.prompt);
          if (w == nullptr) continue;
          const perf::Summary& a = prefill ? w->prefill_tokens_per_s : w->decode_tokens_per_s;
          const perf::Summary& b = prefill ? k.prefill_tokens_per_s : k.decode_tokens_per_s;
          // Band: the ratio's noise as the claims count it.
          const CaseRatio r = case_ratio(a, b);
          ser.x.push_back(along_batch ? k.batch : k.prompt);
          ser.y.push_back(r.ratio);
          ser.y_lo.push_back(r.ratio - r.noise);
          ser.y_hi.push_back(r.ratio + r.noise);
        }
        sort_series(ser);
        if (!ser.x.empty()) c.series.push_back(ser);
      }
    }
    c.note =
        "above 1: wht faster; band: worst and best pairing of repetitions (red: prefill, "
        "blue dashed: decode)";
    return save(c, name,
                std::string("wht/dense tokens/s ratio against ") + along_name(along_batch) +
                    "; above the dotted line wht is faster.");
  }

  Figure memory_figure() const {
    Chart c;
    c.title = "Inference memory against batch size";
    c.x = along_axis(true);
    c.y = {"weights + KV cache + activations, MiB (log)", true, {}, {}};
    std::string fixed;
    for (const std::string& s : c_.size_names) {
      const int prompt = pick_other(s, true);
      fixed += (fixed.empty() ? "" : ", ") + s + " prompt " + std::to_string(prompt);
      for (Projection p : kProjections) {
        Series ser = size_series(s, p);
        for (const InferCase& k : d_.infer)
          if (k.size == s && k.proj == p && k.prompt == prompt) {
            ser.x.push_back(k.batch);
            ser.y.push_back(k.memory_bytes / 1048576.0);
          }
        sort_series(ser);
        if (!ser.x.empty()) c.series.push_back(ser);
      }
    }
    c.note = "memory the inference session holds, computed by the code (" + fixed + ")";
    return save(c, "memory_vs_batch",
                "Memory an inference session holds (weights, KV cache, activations) against "
                "batch size.");
  }

  Figure sweep_figure() const {
    Chart c;
    c.title = "Learning-rate sweep: final validation loss against the peak rate";
    c.x = {"peak learning rate (log)", true, {}, {}};
    c.y = {"final validation loss, nats/token", false, {}, {}};
    for (const auto& [s, p, init] : c_.sweep_variants()) {
      Series ser;
      ser.label = s + " " + variant_label(p, init);
      ser.color = variant_colour(p, init, d_.wht_init, c_.size_index(s), c_.size_names.size());
      ser.dashed = !c_.largest(s);
      for (const SweepRun* r : c_.sweep_points(s, p, init))
        if (std::isfinite(r->final_loss)) {
          ser.x.push_back(r->lr);
          ser.y.push_back(r->final_loss);
        }
      c.series.push_back(ser);
    }
    c.note = "one seed, a share of the run's steps; diverged rates left out; data: sweep/*/";
    return save(c, "lr_sweep",
                "Final validation loss of each sweep run against its peak learning rate, per "
                "size and variant.");
  }

  Figure fit_figure(const Scaling& s) const {
    Chart c;
    c.title = "Scaling fits: validation loss against training FLOPs";
    c.x = {"training FLOPs (log)", true, {}, {}};
    c.y = {"validation loss, nats/token", false, {}, {}};
    const double hi = 30 * s.flops_hi;
    for (const ScalingFit& f : s.fits) {
      Series pts;
      pts.label = std::string(projection_name(f.proj)) + " points";
      pts.color = colour(f.proj, c_.size_names.size() - 1, c_.size_names.size());
      pts.line = false;
      const FitPoints fp = fit_points(d_, f.proj);
      pts.x = fp.flops;
      pts.y = fp.loss;
      sort_series(pts);
      Series curve;
      curve.label = std::string(projection_name(f.proj)) + " fit, alpha " +
                    fmt("%.3f", f.fit.alpha) + (f.adequate() ? "" : " (misses its points)");
      curve.color = pts.color;
      curve.markers = false;
      for (int k = 0; k <= 60; ++k) {
        const double x = s.flops_lo * std::pow(hi / s.flops_lo, k / 60.0);
        curve.x.push_back(x);
        curve.y.push_back(f.fit(x));
      }
      c.series.push_back(pts);
      c.series.push_back(curve);
    }
    c.note =
        "points: each run's final validation loss, what the fits use; curves: the fits, "
        "drawn to 30x the data's FLOPs";
    return save(c, "scaling_fits",
                "Final validation loss of every run against its training FLOPs with each "
                "projection's fitted saturating power law.");
  }

  const Context& c_;
  const Data& d_;
};

}  // namespace

Figures draw_figures(const Context& c, const Scaling& scaling) { return Painter(c).draw(scaling); }

std::vector<std::string> convert_to_png(const std::vector<std::string>& svgs) {
  const bool rsvg = std::system("command -v rsvg-convert >/dev/null 2>&1") == 0;
  const bool magick = !rsvg && std::system("command -v convert >/dev/null 2>&1") == 0;
  std::vector<std::string> out;
  if (!rsvg && !magick) return out;
  auto quote = [](const std::string& s) {
    std::string q = "'";
    for (char ch : s) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
    return q + "'";
  };
  for (const std::string& svg : svgs) {
    const std::string png = svg.substr(0, svg.size() - 4) + ".png";
    const std::string cmd = rsvg ? "rsvg-convert -b white -o " + quote(png) + " " + quote(svg)
                                 : "convert " + quote(svg) + " " + quote(png);
    if (std::system((cmd + " 2>/dev/null").c_str()) == 0 && fs::exists(png)) out.push_back(png);
  }
  return out;
}

}  // namespace whtlm::report::detail
