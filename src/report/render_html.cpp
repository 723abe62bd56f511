// The report as HTML (index.html, one self-contained page with its style inline):
// sections, tables with coloured verdicts, figures and provenance printed from the
// Document (render.hpp).
#include <string>

#include "report/render.hpp"

namespace whtlm::report::detail {
namespace {

// s with the characters HTML gives meaning to (& < > ") escaped.
std::string esc(const std::string& s) {
  std::string o;
  for (char ch : s) switch (ch) {
      case '&':
        o += "&amp;";
        break;
      case '<':
        o += "&lt;";
        break;
      case '>':
        o += "&gt;";
        break;
      case '"':
        o += "&quot;";
        break;
      default:
        o += ch;
    }
  return o;
}

// A link: its target and its text, escaped.
std::string anchor(const std::string& href, const std::string& text) {
  return "<a href=\"" + esc(href) + "\">" + esc(text) + "</a>";
}

std::string table_html(const Table& t) {
  std::string s = "<table><tr>";
  for (const std::string& h : t.header) s += "<th>" + esc(h) + "</th>";
  s += "</tr>\n";
  for (const auto& r : t.rows) {
    s += "<tr>";
    for (std::size_t i = 0; i < r.size(); ++i) {
      const std::string& c = r[i];
      if (int(i) == t.link_column) {
        std::string cell;
        for (const std::string& path : link_paths(c)) cell += anchor(path, path) + "<br>";
        s += "<td>" + cell + "</td>";
        continue;
      }
      // Verdict cells get a class so they can be coloured.
      std::string attr;
      for (Verdict v :
           {Verdict::held, Verdict::not_held, Verdict::inconclusive, Verdict::not_measured})
        if (c == verdict_name(v)) attr = " class=\"v" + std::to_string(int(v)) + "\"";
      s += "<td" + attr + ">" + esc(c) + "</td>";
    }
    s += "</tr>\n";
  }
  return s + "</table>\n";
}

std::string provenance_html(const Provenance& p) {
  std::string s = "<h2>Provenance</h2>\n<ul>\n";
  for (const Provenance::Command& c : p.commands)
    s += "<li><code>" + esc(c.command) + "</code> (commit <code>" + esc(c.commit) +
         "</code>, recorded in " + anchor(c.record_link, c.record) + ")</li>\n";
  s += "<li>report written by <code>" + esc(p.report_command) + "</code> (commit <code>" +
       esc(p.report_commit) + "</code>)</li>\n<li>data files:";
  for (const std::string& f : p.data_files)
    s.append(" ").append(anchor(f, f));  // piecewise: GCC 12 warns falsely otherwise
  s += "</li>\n";
  for (const std::string& w : p.warnings) s += "<li>warning: " + esc(w) + "</li>\n";
  return s + "</ul>\n";
}

}  // namespace

std::string render_html(const Document& doc) {
  std::string s =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>" +
      esc(doc.title) +
      "</title>\n<style>\n"
      "body{font-family:sans-serif;max-width:1500px;margin:2em auto;padding:0 1em;color:#222}\n"
      "table{border-collapse:collapse;margin:1em 0;font-size:14px}\n"
      "th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}\n"
      "th{background:#f2f2f2}\n"
      "td.v0{background:#d9f2d9;font-weight:bold}td.v1{background:#f8d7d7;font-weight:bold}\n"
      "td.v2{background:#fff3cd}td.v3{color:#888}\n"
      "figure{display:inline-block;margin:0.5em 0.4%;width:48.5%;vertical-align:top}\n"
      "figure img{width:100%;border:1px solid #eee}\nfigcaption{font-size:13px;color:#555}\n"
      "code{background:#f5f5f5;padding:1px 4px}\n</style></head><body>\n<h1>" +
      esc(doc.title) + "</h1>\n<p>" + esc(doc.intro) + "</p>\n";
  for (const Section& sec : doc.sections) {
    s += "<h2>" + esc(sec.title) + "</h2>\n";
    if (!sec.note.empty()) s += "<p>" + esc(sec.note) + "</p>\n";
    s += sec.table.rows.empty() ? "<p>No data.</p>\n" : table_html(sec.table);
    for (const Figure& f : sec.figures)
      s += "<figure><a href=\"figures/" + esc(f.file) + "\"><img src=\"figures/" + esc(f.file) +
           "\" alt=\"" + esc(f.caption) + "\"></a><figcaption>" + esc(f.caption) +
           "</figcaption></figure>\n";
  }
  return s + provenance_html(doc.provenance) + "</body></html>\n";
}

}  // namespace whtlm::report::detail
