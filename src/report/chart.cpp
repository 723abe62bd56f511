// Line charts as standalone SVG (see chart.hpp). Layout: title on top, the plot area
// with its frame, grid and ticks, the legend in a right margin sized to its longest
// label, the x axis label and the note at the bottom. Every number is printed with
// fixed precision, so the same chart always gives the same bytes.
#include "report/chart.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string_view>

namespace whtlm::report {
namespace {

constexpr double kCharPx = 7.0;  // rough width of one character of 12 px sans-serif

bool usable(double v, bool log) { return std::isfinite(v) && (!log || v > 0); }

// Pixel coordinate with one decimal, without a trailing ".0" or a "-0".
std::string px(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", std::round(v * 10) / 10 + 0.0);
  std::string s = buf;
  if (s.size() > 2 && s.compare(s.size() - 2, 2, ".0") == 0) s.resize(s.size() - 2);
  return s == "-0" ? "0" : s;
}

std::string escape(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        // Control characters other than tab and newline are not allowed in XML 1.0.
        if (static_cast<unsigned char>(c) >= 0x20 || c == '\t' || c == '\n') out += c;
    }
  }
  return out;
}

// Characters as the reader sees them (UTF-8 continuation bytes do not count).
double text_width(std::string_view text) {
  auto n = std::count_if(text.begin(), text.end(),
                         [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; });
  return kCharPx * static_cast<double>(n);
}

// m * 10^e, rounded once, so that 0.1 * 3 prints as 0.3 and not 0.30000000000000004.
double decimal(double m, int e) { return e >= 0 ? m * std::pow(10.0, e) : m / std::pow(10.0, -e); }

struct Ticks {
  std::vector<double> at;
  std::vector<std::string> labels;
};

// Multiples of the smallest 1-2-5 step that gives at most max_ticks ticks.
Ticks linear_ticks(double lo, double hi, int max_ticks) {
  Ticks t;
  const int e0 = static_cast<int>(std::floor(std::log10(hi - lo))) - 2;
  for (int i = 0; i < 15 && t.at.empty(); ++i) {
    const int e = e0 + i / 3;
    const double m = (i % 3 == 0) ? 1 : (i % 3 == 1) ? 2 : 5;
    const double step = decimal(m, e);
    const double k0 = std::ceil(lo / step - 1e-9), k1 = std::floor(hi / step + 1e-9);
    if (k1 - k0 + 1 > max_ticks) continue;
    double largest = 0;
    for (double k = k0; k <= k1; ++k) {
      t.at.push_back(decimal(k * m, e));
      largest = std::max(largest, std::fabs(t.at.back()));
    }
    // Enough significant digits to tell neighbouring ticks apart.
    const int digits = largest > 0 ? static_cast<int>(std::floor(std::log10(largest))) - e + 1 : 1;
    for (double v : t.at) t.labels.push_back(si_number(v, std::clamp(digits, 1, 15)));
  }
  return t;
}

// Powers of ten (every n-th one over many decades); with 2 and 5 multiples under two
// decades; ordinary linear ticks when that still leaves fewer than three.
Ticks log_ticks(double lo, double hi, int max_ticks) {
  Ticks t;
  const double a = std::log10(lo), b = std::log10(hi);
  const int k0 = static_cast<int>(std::ceil(a - 1e-9)), k1 = static_cast<int>(std::floor(b + 1e-9));
  if (b - a < 2) {
    for (int k = k0 - 1; k <= k1; ++k) {
      for (double m : {1.0, 2.0, 5.0}) {
        const double v = decimal(m, k);
        if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) t.at.push_back(v);
      }
    }
    if (t.at.size() < 3) return linear_ticks(lo, hi, max_ticks);
  } else {
    int stride = 1;  // decades between ticks: 1, 2, 3, 5, 10, 20, 30, 50, ...
    for (int i = 0; (k1 - k0) / stride + 1 > max_ticks; ++i) {
      stride = std::array{1, 2, 3, 5}[i % 4] * static_cast<int>(std::pow(10, i / 4));
    }
    int k = k0;
    while (k % stride != 0) ++k;
    for (; k <= k1; k += stride) t.at.push_back(decimal(1, k));
  }
  for (double v : t.at) t.labels.push_back(si_number(v));
  return t;
}

// Maps data values along one axis to pixels.
struct Scale {
  bool log = false;
  double lo = 0, hi = 1;  // data range
  double p0 = 0, p1 = 1;  // pixels of lo and hi
  double operator()(double v) const {
    const double f = log ? (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo))
                         : (v - lo) / (hi - lo);
    return std::clamp(p0 + f * (p1 - p0), -1e5, 1e5);  // far-off points are clipped anyway
  }
};

// The axis range: the data's (padded slightly) unless Axis::min/max say otherwise.
Scale make_scale(const Axis& axis, const std::vector<double>& values) {
  Scale s;
  s.log = axis.log;
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (double v : values) {
    if (usable(v, axis.log)) lo = std::min(lo, v), hi = std::max(hi, v);
  }
  if (!(lo <= hi)) {
    lo = axis.log ? 1 : 0;
    hi = axis.log ? 10 : 1;
  } else if (axis.log) {
    const double a = std::log10(lo), b = std::log10(hi);
    const double pad = b > a ? 0.04 * (b - a) : 0.3;
    lo = std::pow(10.0, a - pad);
    hi = std::pow(10.0, b + pad);
  } else {
    const double pad = hi > lo ? 0.04 * (hi - lo) : lo != 0 ? 0.1 * std::fabs(lo) : 1;
    const bool nonnegative = lo >= 0;
    lo -= pad;
    hi += pad;
    if (nonnegative && lo < 0) lo = 0;
  }
  // Keep the span finite (values near the largest double) and away from denormals.
  const double least = axis.log ? 1e-300 : -1e300;
  lo = std::clamp(lo, least, 1e300);
  hi = std::clamp(hi, least, 1e300);
  if (axis.min && usable(*axis.min, axis.log)) lo = std::clamp(*axis.min, least, 1e300);
  if (axis.max && usable(*axis.max, axis.log)) hi = std::clamp(*axis.max, least, 1e300);
  if (!(hi - lo > 1e-9 * std::max(std::fabs(lo), std::fabs(hi)))) {
    hi = axis.log ? lo * 10 : lo + std::max(1.0, std::fabs(lo));
  }
  s.lo = lo;
  s.hi = hi;
  return s;
}

// FNV-1a, to give the clip path an id of its own when several charts share a page.
std::uint32_t fnv1a(std::string_view text, std::uint32_t h = 2166136261u) {
  for (char c : text) h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
  return h;
}

std::string text_element(double x, double y, std::string_view text, std::string_view attrs) {
  return "<text x=\"" + px(x) + "\" y=\"" + px(y) + "\"" + (attrs.empty() ? "" : " ") +
         std::string(attrs) + ">" + escape(text) + "</text>\n";
}

std::string line_element(double x1, double y1, double x2, double y2, std::string_view attrs) {
  return "<line x1=\"" + px(x1) + "\" y1=\"" + px(y1) + "\" x2=\"" + px(x2) + "\" y2=\"" + px(y2) +
         "\" " + std::string(attrs) + "/>\n";
}

std::string stroke_attrs(const Series& s) {
  return "stroke=\"" + escape(s.color) + "\" stroke-width=\"2\"" +
         (s.dashed ? " stroke-dasharray=\"6 4\"" : "");
}

}  // namespace

std::string si_number(double v, int significant) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (v == 0) return "0";
  const int sig = std::clamp(significant, 1, 17);
  const std::string sign = v < 0 ? "-" : "";
  char buf[64];
  // Round to the significant digits first: 999.96 becomes 1000 and so takes "1k".
  std::snprintf(buf, sizeof buf, "%.*e", sig - 1, std::fabs(v));
  const int exponent = std::atoi(std::strchr(buf, 'e') + 1);
  auto trim = [](std::string s) {
    if (s.find('.') == std::string::npos) return s;
    s.erase(s.find_last_not_of('0') + 1);
    if (s.back() == '.') s.pop_back();
    return s;
  };
  if (exponent < -6 || exponent >= 18) {  // beyond "0.000001" and "999P": 1.5e-9, 2e21
    *std::strchr(buf, 'e') = '\0';
    return sign + trim(buf) + "e" + std::to_string(exponent);
  }
  const double rounded = std::strtod(buf, nullptr);
  static constexpr const char* kSuffix[] = {"", "k", "M", "G", "T", "P"};
  const int group = exponent >= 3 ? std::min(exponent / 3, 5) : 0;
  const int decimals = std::max(0, sig - 1 - (exponent - 3 * group));
  std::snprintf(buf, sizeof buf, "%.*f", decimals, rounded / std::pow(10.0, 3 * group));
  return sign + trim(buf) + kSuffix[group];
}

std::string render_svg(const Chart& chart) {
  const bool xlog = chart.x.log, ylog = chart.y.log;
  // The plottable values, and which series have at least one point.
  std::vector<double> xs, ys;
  std::vector<bool> has_points(chart.series.size(), false);
  for (std::size_t i = 0; i < chart.series.size(); ++i) {
    const Series& s = chart.series[i];
    const bool band = s.y_lo.size() == s.x.size() && s.y_hi.size() == s.x.size();
    for (std::size_t j = 0; j < s.x.size(); ++j) {
      if (!usable(s.x[j], xlog)) continue;
      if (j < s.y.size() && usable(s.y[j], ylog)) {
        xs.push_back(s.x[j]);
        ys.push_back(s.y[j]);
        has_points[i] = true;
      }
      if (band && usable(s.y_lo[j], ylog) && usable(s.y_hi[j], ylog)) {
        xs.push_back(s.x[j]);
        ys.push_back(s.y_lo[j]);
        ys.push_back(s.y_hi[j]);
      }
    }
  }
  const bool any = std::find(has_points.begin(), has_points.end(), true) != has_points.end();
  if (any && chart.y_reference) ys.push_back(*chart.y_reference);
  Scale sx = make_scale(chart.x, xs), sy = make_scale(chart.y, ys);
  // Layout: the vertical one first, as it decides how many y ticks fit; their labels
  // decide the left margin and so the room for x ticks.
  const double width = std::max(chart.width, 240), height = std::max(chart.height, 160);
  const double top = chart.title.empty() ? 16 : 42;
  const double bottom = (chart.x.label.empty() ? 28 : 50) + (chart.note.empty() ? 0 : 18);
  auto ticks = [&](const Scale& s, double pixels, double per_tick) {
    const int max_ticks = std::clamp(static_cast<int>(pixels / per_tick) + 1, 4, 10);
    return !any    ? Ticks{}
           : s.log ? log_ticks(s.lo, s.hi, max_ticks)
                   : linear_ticks(s.lo, s.hi, max_ticks);
  };
  const Ticks ty = ticks(sy, height - bottom - top, 36);
  double ytick_w = kCharPx;
  for (const auto& l : ty.labels) ytick_w = std::max(ytick_w, text_width(l));
  std::vector<std::string> legend;
  double legend_w = 0;
  for (std::size_t i = 0; i < chart.series.size(); ++i) {
    legend.push_back(chart.series[i].label + (has_points[i] ? "" : " (no data)"));
    legend_w = std::max(legend_w, text_width(legend.back()));
  }
  const double left = 16 + (chart.y.label.empty() ? 0 : 18) + ytick_w;
  const double right = legend.empty() ? 20 : std::min(0.4 * width, legend_w + 64);
  const Ticks tx = ticks(sx, width - right - left, 64);
  const double x0 = left, x1 = width - right, y0 = top, y1 = height - bottom;
  sx.p0 = x0, sx.p1 = x1, sy.p0 = y1, sy.p1 = y0;

  std::string clip = "plot";
  {
    char buf[16];
    std::uint32_t h = fnv1a(chart.title);
    for (const auto& l : legend) h = fnv1a(l, h);
    std::snprintf(buf, sizeof buf, "%08x", fnv1a(px(x0) + px(x1) + px(y0) + px(y1), h));
    clip += buf;
  }

  std::string o;
  const std::string w = px(width), h = px(height);
  o += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  o += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + w + "\" height=\"" + h +
       "\" viewBox=\"0 0 " + w + " " + h + "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  o += "<rect x=\"0\" y=\"0\" width=\"" + w + "\" height=\"" + h + "\" fill=\"#ffffff\"/>\n";
  const std::string rect = "x=\"" + px(x0) + "\" y=\"" + px(y0) + "\" width=\"" + px(x1 - x0) +
                           "\" height=\"" + px(y1 - y0) + "\"";
  o += "<defs><clipPath id=\"" + clip + "\"><rect " + rect + "/></clipPath></defs>\n";

  // Grid lines, tick marks and tick labels.
  for (std::size_t i = 0; i < tx.at.size(); ++i) {
    const double x = sx(tx.at[i]);
    o += line_element(x, y0, x, y1, "stroke=\"#e6e6e6\"");
    o += line_element(x, y1, x, y1 + 4, "stroke=\"#333333\"");
    o += text_element(x, y1 + 17, tx.labels[i], "text-anchor=\"middle\" font-size=\"11\"");
  }
  for (std::size_t i = 0; i < ty.at.size(); ++i) {
    const double y = sy(ty.at[i]);
    o += line_element(x0, y, x1, y, "stroke=\"#e6e6e6\"");
    o += line_element(x0 - 4, y, x0, y, "stroke=\"#333333\"");
    o += text_element(x0 - 7, y + 4, ty.labels[i], "text-anchor=\"end\" font-size=\"11\"");
  }

  // Data, clipped to the plot area: the reference line, all bands, then lines and markers.
  o += "<g clip-path=\"url(#" + clip + ")\">\n";
  if (any && chart.y_reference && usable(*chart.y_reference, ylog)) {
    const double y = sy(*chart.y_reference);
    o += line_element(x0, y, x1, y,
                      "stroke=\"#888888\" stroke-width=\"1.5\" stroke-dasharray=\"2 3\"");
  }
  // Runs of consecutive indices for which `ok` holds (a series may have gaps).
  auto runs = [](std::size_t n, auto ok) {
    std::vector<std::pair<std::size_t, std::size_t>> r;
    for (std::size_t j = 0; j < n; ++j) {
      if (!ok(j)) continue;
      if (r.empty() || r.back().second != j) r.emplace_back(j, j);
      r.back().second = j + 1;
    }
    return r;
  };
  for (const Series& s : chart.series) {
    if (s.y_lo.size() != s.x.size() || s.y_hi.size() != s.x.size()) continue;
    auto ok = [&](std::size_t j) {
      return usable(s.x[j], xlog) && usable(s.y_lo[j], ylog) && usable(s.y_hi[j], ylog);
    };
    for (auto [b, e] : runs(s.x.size(), ok)) {
      std::string pts;
      for (std::size_t j = b; j < e; ++j) pts += px(sx(s.x[j])) + "," + px(sy(s.y_hi[j])) + " ";
      for (std::size_t j = e; j-- > b;) pts += px(sx(s.x[j])) + "," + px(sy(s.y_lo[j])) + " ";
      pts.pop_back();
      o += "<polygon points=\"" + pts + "\" fill=\"" + escape(s.color) +
           "\" fill-opacity=\"0.18\" stroke=\"none\"/>\n";
    }
  }
  for (const Series& s : chart.series) {
    const std::size_t n = std::min(s.x.size(), s.y.size());
    auto ok = [&](std::size_t j) { return usable(s.x[j], xlog) && usable(s.y[j], ylog); };
    for (auto [b, e] : runs(n, ok)) {
      std::string pts;
      for (std::size_t j = b; j < e; ++j) pts += px(sx(s.x[j])) + "," + px(sy(s.y[j])) + " ";
      pts.pop_back();
      if (s.line)
        o += "<polyline points=\"" + pts + "\" fill=\"none\" " + stroke_attrs(s) +
             " stroke-linejoin=\"round\"/>\n";
      if (s.markers || !s.line || e - b == 1) {  // a lone point is shown even without markers
        for (std::size_t j = b; j < e; ++j) {
          o += "<circle cx=\"" + px(sx(s.x[j])) + "\" cy=\"" + px(sy(s.y[j])) +
               "\" r=\"2.5\" fill=\"" + escape(s.color) + "\"/>\n";
        }
      }
    }
  }
  o += "</g>\n";
  o += "<rect " + rect + " fill=\"none\" stroke=\"#333333\"/>\n";
  if (!any) {
    o += text_element((x0 + x1) / 2, (y0 + y1) / 2 + 5, "no data",
                      "text-anchor=\"middle\" font-size=\"14\" fill=\"#888888\"");
  }

  // Titles and the note.
  if (!chart.title.empty()) {
    o += text_element(width / 2, 26, chart.title,
                      "text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\"");
  }
  if (!chart.x.label.empty()) {
    o += text_element((x0 + x1) / 2, y1 + 38, chart.x.label,
                      "text-anchor=\"middle\" font-size=\"13\"");
  }
  if (!chart.y.label.empty()) {
    const double x = 18, y = (y0 + y1) / 2;
    o += "<text transform=\"translate(" + px(x) + "," + px(y) +
         ") rotate(-90)\" x=\"0\" y=\"0\" text-anchor=\"middle\" font-size=\"13\">" +
         escape(chart.y.label) + "</text>\n";
  }
  if (!chart.note.empty()) {
    o += text_element(8, height - 8, chart.note, "font-size=\"10\" fill=\"#777777\"");
  }

  // Legend: a short sample of each line, then its label.
  for (std::size_t i = 0; i < chart.series.size(); ++i) {
    const Series& s = chart.series[i];
    const double lx = x1 + 14, ly = y0 + 10 + 18 * static_cast<double>(i);
    if (s.line) o += line_element(lx, ly, lx + 24, ly, stroke_attrs(s));
    if (s.markers || !s.line) {
      o += "<circle cx=\"" + px(lx + 12) + "\" cy=\"" + px(ly) + "\" r=\"2.5\" fill=\"" +
           escape(s.color) + "\"/>\n";
    }
    o += text_element(lx + 30, ly + 4, legend[i], has_points[i] ? "" : "fill=\"#777777\"");
  }
  o += "</svg>\n";
  return o;
}

}  // namespace whtlm::report
