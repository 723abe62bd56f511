// The report as Markdown (report.md): sections, tables, figures and provenance printed
// from the Document (render.hpp).
#include <string>

#include "report/render.hpp"

namespace whtlm::report::detail {
namespace {

std::string md_cell(const std::string& s) {
  std::string o;
  for (char ch : s) o += ch == '|' ? std::string("\\|") : std::string(1, ch);
  return o;
}

// The paths of a link cell as Markdown links.
std::string links_md(const std::string& cell) {
  std::string out;
  for (const std::string& path : link_paths(cell)) {
    // appended piecewise: GCC 12 warns falsely on "[" + path + ...
    if (!out.empty()) out += ' ';
    out.append("[").append(path).append("](").append(path).append(")");
  }
  return out;
}

std::string table_md(const Table& t) {
  std::string s = "|";
  for (const std::string& h : t.header) s.append(" ").append(md_cell(h)).append(" |");
  s += "\n|";
  for (std::size_t i = 0; i < t.header.size(); ++i) s += "---|";
  s += "\n";
  for (const auto& r : t.rows) {
    s += "|";
    for (std::size_t i = 0; i < r.size(); ++i)
      s.append(" ").append(int(i) == t.link_column ? links_md(r[i]) : md_cell(r[i])).append(" |");
    s += "\n";
  }
  return s + "\n";
}

std::string provenance_md(const Provenance& p) {
  std::string s = "## Provenance\n\n";
  for (const Provenance::Command& c : p.commands)
    s += "- `" + c.command + "` (commit `" + c.commit + "`, recorded in [" + c.record + "](" +
         c.record_link + "))\n";
  s += "- report written by `" + p.report_command + "` (commit `" + p.report_commit + "`)\n";
  s += "- data files:";
  for (const std::string& f : p.data_files) s += " [" + f + "](" + f + ")";
  s += "\n";
  for (const std::string& w : p.warnings) s += "- warning: " + w + "\n";
  return s + "\n";
}

}  // namespace

std::string render_markdown(const Document& doc) {
  std::string s = "# " + doc.title + "\n\n" + doc.intro + "\n\n";
  for (const Section& sec : doc.sections) {
    s += "## " + sec.title + "\n\n";
    if (!sec.note.empty()) s += sec.note + "\n\n";
    s += sec.table.rows.empty() ? "No data.\n\n" : table_md(sec.table);
    for (const Figure& f : sec.figures)
      s += "![" + f.caption + "](figures/" + f.file + ")\n\n*" + f.caption + "*\n\n";
  }
  return s + provenance_md(doc.provenance);
}

}  // namespace whtlm::report::detail
