// The report's sections as data, built once for both renderers: each section's
// heading, paragraph, table (header and rows of cells) and figures, and the report's
// opening paragraph.
#pragma once

#include <string>
#include <vector>

#include "report/analysis.hpp"
#include "report/context.hpp"
#include "report/figures.hpp"
#include "report/fit.hpp"

namespace whtlm::report::detail {

// A table: cells are plain text, except that the link_column's cells hold
// space-separated paths that the renderers show as links. The downstream proxy builds
// its table the same way (downstream.cpp).
using Table = TextTable;
// The paths of a link cell.
std::vector<std::string> link_paths(const std::string& cell);

// One part of the report: a heading, an optional paragraph, a table (the renderers say
// "No data." where it has no rows) and its figures.
struct Section {
  std::string title, note;
  Table table;
  std::vector<Figure> figures;
};

// The paragraph under the report's title.
std::string report_intro(const Context& c);

// Every section, in the report's order, with the figures drawn for it.
std::vector<Section> report_sections(const Context& c, const std::vector<Claim>& claims,
                                     const Scaling& scaling, const Figures& figures);

}  // namespace whtlm::report::detail
