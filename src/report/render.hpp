// The report as its two renderers print it (render_markdown.cpp, render_html.cpp): the
// title, the opening paragraph, the sections and the provenance, all built beforehand.
#pragma once

#include <string>
#include <vector>

#include "report/provenance.hpp"
#include "report/tables.hpp"

namespace whtlm::report::detail {

struct Document {
  std::string title, intro;
  std::vector<Section> sections;
  Provenance provenance;
};

std::string render_markdown(const Document& doc);  // report.md
std::string render_html(const Document& doc);      // index.html, self-contained
                                                   // (figures by relative path)

}  // namespace whtlm::report::detail
