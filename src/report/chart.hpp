// Charts as standalone SVG: line charts with linear or logarithmic axes, for the
// experiment report. Text only, no dependencies; the output is well-formed XML that
// browsers and SVG-to-PNG converters render the same way.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace whtlm::report {

struct Axis {
  std::string label;               // with the unit, e.g. "training FLOPs" or "tokens/s"
  bool log = false;                // logarithmic (base 10); values <= 0 are left out
  std::optional<double> min, max;  // default: the data's range, padded to nice ticks
};

struct Series {
  std::string label;  // legend entry
  std::string color;  // any SVG colour, e.g. "#1f77b4"
  std::vector<double> x, y;
  // Optional band drawn behind the line (e.g. the spread between seeds): the same
  // length as x when present.
  std::vector<double> y_lo, y_hi;
  bool dashed = false;
  bool markers = true;  // a dot at each point
  bool line = true;     // joined by a line (false: points only)
};

struct Chart {
  std::string title;
  Axis x, y;
  std::vector<Series> series;
  int width = 720, height = 440;  // pixels
  // Horizontal reference line (e.g. ratio 1.0), drawn dotted when set.
  std::optional<double> y_reference;
  std::string note;  // one line of small text under the plot (source, method)
};

// The chart as a complete SVG document. Series with no plottable points are listed
// in the legend as "(no data)". Text is XML-escaped.
std::string render_svg(const Chart& chart);

// Human-readable number with an SI suffix for axis ticks and tables: 1.5e12 -> "1.5T",
// 2048 -> "2.05k", 0.25 -> "0.25". `significant` digits, trailing zeros trimmed; k, M,
// G, T, P from 1000 up, plain decimals below (no milli, micro: 0.001 -> "0.001");
// exponent notation outside 1e-6 .. 1e18 ("1.5e-7", "2e21"); "nan", "inf", "-inf".
std::string si_number(double v, int significant = 3);

}  // namespace whtlm::report
