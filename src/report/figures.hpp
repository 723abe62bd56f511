// The report's figures: each drawn from the data as an SVG chart under figures/, and
// PNG copies made by an external converter (rsvg-convert or ImageMagick) where one is
// installed.
#pragma once

#include <string>
#include <vector>

#include "report/context.hpp"
#include "report/fit.hpp"

namespace whtlm::report::detail {

struct Figure {
  std::string file;  // under figures/, e.g. "loss_vs_flops.svg"
  std::string caption;
};

// The figures of each section that has some (a group is empty when its data are).
struct Figures {
  std::vector<Figure> sweep, loss, fit, infer;
};

// Draws every figure the data allow into c.out_dir/figures (which must exist); with
// c.guard, refuses to replace an SVG or PNG that is there.
Figures draw_figures(const Context& c, const Scaling& scaling);

// PNG copies of the SVG files, next to them, where a converter is installed: the PNGs
// written (none without a converter).
std::vector<std::string> convert_to_png(const std::vector<std::string>& svgs);

}  // namespace whtlm::report::detail
