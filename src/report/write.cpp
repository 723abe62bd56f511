// Writing the report (report::write): checks the report folder, draws the figures
// (figures.cpp), builds the sections (tables.cpp) and the provenance (provenance.cpp)
// once, and prints them as report.md and index.html (render_markdown.cpp,
// render_html.cpp).
#include <filesystem>
#include <stdexcept>
#include <string>

#include "report/context.hpp"
#include "report/figures.hpp"
#include "report/fit.hpp"
#include "report/provenance.hpp"
#include "report/render.hpp"
#include "report/tables.hpp"
#include "whtlm/io.hpp"
#include "whtlm/report.hpp"

namespace whtlm::report {

namespace fs = std::filesystem;

Written write(const Data& data, const WriteOptions& options) {
  using namespace detail;
  if (options.out_dir.empty()) throw std::invalid_argument("report: no output folder");
  const fs::path dir(options.out_dir), marker = dir / ".whtlm-report";
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    if (!fs::is_directory(dir, ec))
      throw std::invalid_argument(options.out_dir + ": exists and is not a folder");
  }
  // In a folder without an earlier report (no .whtlm-report) every file the report
  // would replace is the user's: refused unless --force, never overwritten.
  const bool guard = !options.force && !fs::exists(marker, ec);
  if (guard)
    for (const char* name : {"index.html", "report.md"})
      if (fs::exists(dir / name, ec)) refuse_overwrite(options.out_dir, name);
  fs::create_directories(dir, ec);
  if (ec) throw std::runtime_error(options.out_dir + ": cannot create folder: " + ec.message());
  io::write_file_atomic(marker.string(), "a report written by whtlm (whtlm report)\n");

  const Context c(data, options.out_dir, guard);
  fs::create_directories(fs::path(options.out_dir) / "figures");
  Written w;
  const Scaling scaling = scaling_fits(data);
  w.claims = decide_claims(data, scaling);
  const Figures figures = draw_figures(c, scaling);
  for (const auto* group : {&figures.sweep, &figures.loss, &figures.fit, &figures.infer})
    for (const Figure& f : *group) w.figures.push_back(c.path("figures/" + f.file));
  const std::vector<std::string> pngs = convert_to_png(w.figures);
  w.figures.insert(w.figures.end(), pngs.begin(), pngs.end());

  const Document doc{options.title, report_intro(c), report_sections(c, w.claims, scaling, figures),
                     provenance(c, options)};
  w.report_md = c.path("report.md");
  w.index_html = c.path("index.html");
  io::write_file_atomic(w.report_md, render_markdown(doc));
  io::write_file_atomic(w.index_html, render_html(doc));
  return w;
}

}  // namespace whtlm::report
