// Writing the report: figures (SVG, and PNG where rsvg-convert or ImageMagick is
// installed), report.md and a self-contained index.html that links every data file.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <tuple>

#include "report/analysis.hpp"
#include "report/chart.hpp"
#include "report/fit.hpp"
#include "whtlm/io.hpp"
#include "whtlm/report.hpp"

namespace whtlm::report {
namespace {

namespace fs = std::filesystem;
using namespace detail;
constexpr Projection kProjections[] = {Projection::dense, Projection::wht, Projection::identity};

std::string fmt(const char* f, double v) {
  if (!std::isfinite(v)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

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

std::string variant_label(Projection p, ScaleInit init) {
  return p == Projection::wht ? std::string("wht, scale ") + scale_init_name(init)
                              : projection_name(p);
}

// ---- Tables: one description, written as Markdown and as HTML ----

struct Table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  int link_column = -1;  // this column holds space-separated relative paths, shown as links
};

// The paths of a link cell as Markdown or HTML links.
std::string links_md(const std::string& cell) {
  std::string out, path;
  std::istringstream in(cell);
  while (in >> path) {  // appended piecewise: GCC 12 warns falsely on "[" + path + ...
    if (!out.empty()) out += ' ';
    out.append("[").append(path).append("](").append(path).append(")");
  }
  return out;
}

std::string html_escape(const std::string& s) {
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

std::string md_cell(std::string s) {
  std::string o;
  for (char ch : s) o += ch == '|' ? std::string("\\|") : std::string(1, ch);
  return o;
}

std::string to_markdown(const Table& t) {
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

std::string to_html(const Table& t, const std::string& cls = "") {
  std::string s = "<table" + (cls.empty() ? "" : " class=\"" + cls + "\"") + "><tr>";
  for (const std::string& h : t.header) s += "<th>" + html_escape(h) + "</th>";
  s += "</tr>\n";
  for (const auto& r : t.rows) {
    s += "<tr>";
    for (std::size_t i = 0; i < r.size(); ++i) {
      const std::string& c = r[i];
      if (int(i) == t.link_column) {
        std::string cell, path;
        std::istringstream in(c);
        while (in >> path)
          cell += "<a href=\"" + html_escape(path) + "\">" + html_escape(path) + "</a><br>";
        s += "<td>" + cell + "</td>";
        continue;
      }
      // Verdict cells get a class so they can be coloured.
      std::string attr;
      for (Verdict v :
           {Verdict::held, Verdict::not_held, Verdict::inconclusive, Verdict::not_measured})
        if (c == verdict_name(v)) attr = " class=\"v" + std::to_string(int(v)) + "\"";
      s += "<td" + attr + ">" + html_escape(c) + "</td>";
    }
    s += "</tr>\n";
  }
  return s + "</table>\n";
}

// ---- Curves ----

// The mean validation curve of a size and projection over its seeds (their common
// points), with the per-point min and max as a band.
Series mean_curve(const Data& d, const std::string& size, Projection p, int axis,
                  const std::string& label, const std::string& col, bool dashed) {
  Series s;
  s.label = label;
  s.color = col;
  s.dashed = dashed;
  s.markers = false;
  const auto runs = runs_of(d, size, p);
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

struct Figure {
  std::string file, caption;
};

// One part of the report: a heading, an optional paragraph, a table and its figures.
struct Section {
  std::string title, note;
  Table table;
  std::vector<Figure> figures;
};

[[noreturn]] void refuse_overwrite(const std::string& dir, const std::string& name) {
  throw std::invalid_argument(dir + ": holds " + name +
                              ", which no earlier whtlm report wrote (no .whtlm-report there); "
                              "choose another folder, or --force to replace it");
}

class Writer {
 public:
  Writer(const Data& d, const WriteOptions& o, bool guard)
      : d_(d), o_(o), guard_(guard), sizes_(sizes_by_params(d)) {
    for (const auto& [name, m] : sizes_) size_names_.push_back(name);
    for (const std::string& s : infer_sizes(d))
      if (std::find(size_names_.begin(), size_names_.end(), s) == size_names_.end())
        size_names_.push_back(s);
  }

  Written write() {
    fs::create_directories(fs::path(o_.out_dir) / "figures");
    Written w;
    const Scaling scaling = scaling_fits(d_);
    w.claims = detail::decide_claims(d_, scaling);
    std::vector<Figure> loss_figs, infer_figs, sweep_figs, fit_figs;
    if (!d_.sweep.empty()) sweep_figs.push_back(sweep_figure());
    if (!scaling.fits.empty()) fit_figs.push_back(fit_figure(scaling));
    if (!d_.runs.empty()) {
      loss_figs.push_back(loss_figure(0, "loss_vs_flops", "training FLOPs (log)"));
      loss_figs.push_back(loss_figure(1, "loss_vs_tokens", "training tokens (log)"));
      loss_figs.push_back(loss_figure(2, "loss_vs_time", "wall time, s (log)"));
    }
    if (!d_.infer.empty()) {
      infer_figs.push_back(infer_figure(true, true, "prefill_vs_batch"));
      infer_figs.push_back(infer_figure(false, true, "decode_vs_batch"));
      infer_figs.push_back(ratio_figure(true, "ratio_vs_batch"));
      infer_figs.push_back(infer_figure(true, false, "prefill_vs_prompt"));
      infer_figs.push_back(infer_figure(false, false, "decode_vs_prompt"));
      infer_figs.push_back(ratio_figure(false, "ratio_vs_prompt"));
      infer_figs.push_back(memory_figure());
    }
    for (const auto* figs : {&sweep_figs, &loss_figs, &fit_figs, &infer_figs})
      for (const Figure& f : *figs) w.figures.push_back(path("figures/" + f.file));
    const std::vector<std::string> pngs = convert_to_png(w.figures);
    w.figures.insert(w.figures.end(), pngs.begin(), pngs.end());

    std::vector<Section> sections = {{"Claims", claims_note(w.claims), claims_table(w.claims), {}},
                                     {"Parameters", "", params_table(), {}}};
    if (!d_.sweep.empty())  // only a plan with a learning-rate sweep has one
      sections.push_back({"Learning rate", sweep_note(), sweep_table(), sweep_figs});
    sections.insert(sections.end(),
                    {{"Validation loss", "", loss_table(), loss_figs},
                     {"Loss at equal training FLOPs", equal_flops_note(), equal_flops_table(), {}},
                     {"How wht's scale starts", init_note(), init_table(), {}},
                     {"Scaling fits", fits_note(scaling), fits_table(scaling), fit_figs},
                     {"Inference", "", infer_table(), infer_figs}});
    {  // The downstream proxy (src/report/downstream.cpp), before the inference section.
      const TextTable t = downstream_table(d_, [this](const std::string& f) { return link(f); });
      const auto at = std::find_if(sections.begin(), sections.end(),
                                   [](const Section& s) { return s.title == "Inference"; });
      sections.insert(
          at,
          {"Downstream proxy", downstream_note(d_), Table{t.header, t.rows, t.link_column}, {}});
    }
    w.report_md = path("report.md");
    w.index_html = path("index.html");
    io::write_file_atomic(w.report_md, markdown(sections));
    io::write_file_atomic(w.index_html, html(sections));
    return w;
  }

 private:
  std::string path(const std::string& rel) const { return (fs::path(o_.out_dir) / rel).string(); }

  // A data file's link from the report folder.
  std::string link(const std::string& file) const {
    std::error_code ec;
    const fs::path rel = fs::relative(fs::absolute(file), fs::absolute(o_.out_dir), ec);
    return ec || rel.empty() ? fs::absolute(file).string() : rel.string();
  }

  std::size_t size_index(const std::string& s) const {
    return std::size_t(std::find(size_names_.begin(), size_names_.end(), s) - size_names_.begin());
  }
  bool largest(const std::string& s) const { return size_index(s) + 1 == size_names_.size(); }

  Figure save(const Chart& c, const std::string& name, const std::string& caption) {
    std::error_code ec;
    for (const char* ext : {".svg", ".png"})
      if (guard_ && fs::exists(path("figures/" + name + ext), ec))
        refuse_overwrite(o_.out_dir, "figures/" + name + ext);
    io::write_file_atomic(path("figures/" + name + ".svg"), render_svg(c));
    return {name + ".svg", caption};
  }

  Figure loss_figure(int axis, const std::string& name, const std::string& xlabel) {
    Chart c;
    c.title = "Validation loss against " + std::string(axis == 0   ? "training FLOPs"
                                                       : axis == 1 ? "training tokens"
                                                                   : "wall time");
    c.x = {xlabel, true, {}, {}};
    c.y = {"validation loss, nats/token", false, {}, {}};
    for (const std::string& s : size_names_)
      for (Projection p : kProjections)
        if (!runs_of(d_, s, p).empty())
          c.series.push_back(mean_curve(d_, s, p, axis, s + " " + projection_name(p),
                                        colour(p, size_index(s), size_names_.size()), !largest(s)));
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

  Figure infer_figure(bool prefill, bool along_batch, const std::string& name) {
    Chart c;
    const char* phase = prefill ? "Prefill" : "Decode";
    c.title = std::string(phase) + " throughput against " +
              (along_batch ? "batch size" : "prompt length");
    c.x = {
        along_batch ? "batch size, sequences (log)" : "prompt length, tokens (log)", true, {}, {}};
    c.y = {std::string(prefill ? "prefill" : "decode") + " tokens/s (log)", true, {}, {}};
    std::string fixed;
    for (const std::string& s : size_names_) {
      const int other = pick_other(s, along_batch);
      fixed += (fixed.empty() ? "" : ", ") + s + (along_batch ? " prompt " : " batch ") +
               std::to_string(other);
      for (Projection p : kProjections) {
        Series ser;
        ser.label = s + " " + projection_name(p);
        ser.color = colour(p, size_index(s), size_names_.size());
        ser.dashed = !largest(s);
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
    return save(c, name,
                std::string(phase) + " tokens/s against " +
                    (along_batch ? "batch size" : "prompt length") + " (" + fixed + ").");
  }

  Figure ratio_figure(bool along_batch, const std::string& name) {
    Chart c;
    c.title = std::string("wht / dense throughput against ") +
              (along_batch ? "batch size" : "prompt length");
    c.x = {
        along_batch ? "batch size, sequences (log)" : "prompt length, tokens (log)", true, {}, {}};
    c.y = {"wht tokens/s over dense tokens/s", false, {}, {}};
    c.y_reference = 1.0;
    for (const std::string& s : size_names_) {
      const int other = pick_other(s, along_batch);
      for (const bool prefill : {true, false}) {
        Series ser;
        ser.label = s + (prefill ? " prefill" : " decode") + (along_batch ? " p" : " b") +
                    std::to_string(other);
        ser.color = colour(prefill ? Projection::wht : Projection::dense, size_index(s),
                           size_names_.size());
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
                std::string("wht/dense tokens/s ratio against ") +
                    (along_batch ? "batch size" : "prompt length") +
                    "; above the dotted line wht is faster.");
  }

  Figure memory_figure() {
    Chart c;
    c.title = "Inference memory against batch size";
    c.x = {"batch size, sequences (log)", true, {}, {}};
    c.y = {"weights + KV cache + activations, MiB (log)", true, {}, {}};
    std::string fixed;
    for (const std::string& s : size_names_) {
      const int prompt = pick_other(s, true);
      fixed += (fixed.empty() ? "" : ", ") + s + " prompt " + std::to_string(prompt);
      for (Projection p : kProjections) {
        Series ser;
        ser.label = s + " " + projection_name(p);
        ser.color = colour(p, size_index(s), size_names_.size());
        ser.dashed = !largest(s);
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

  static void sort_series(Series& s) {
    std::vector<std::size_t> idx(s.x.size());
    for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = i;
    std::sort(idx.begin(), idx.end(),
              [&](std::size_t a, std::size_t b) { return s.x[a] < s.x[b]; });
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

  // PNG copies where a converter is installed; none otherwise.
  static std::vector<std::string> convert_to_png(const std::vector<std::string>& svgs) {
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

  // What this budget decided and what it left open, in one paragraph over the table.
  std::string claims_note(const std::vector<Claim>& claims) const {
    std::string held, failed, open;
    bool fit_open = false;  // a claim read from the scaling fits is inconclusive
    for (const Claim& c : claims) {
      fit_open = fit_open || (c.verdict == Verdict::inconclusive &&
                              (c.id == "steeper_loss" || c.id == "equal_budget_loss"));
      std::string* list = c.verdict == Verdict::held           ? &held
                          : c.verdict == Verdict::not_held     ? &failed
                          : c.verdict == Verdict::inconclusive ? &open
                                                               : nullptr;
      if (list == nullptr) continue;
      if (!list->empty()) *list += "; ";
      *list += c.claim;
    }
    if (held.empty() && failed.empty() && open.empty()) return "";
    double flops = 0;
    for (const TrainRun& r : d_.runs)
      if (r.finished() && !r.val.empty()) flops = std::max(flops, r.val.back().flops);
    std::string n = "At this budget";
    if (flops > 0)
      n += " (" + std::to_string(sizes_.size()) + " sizes, the largest run " + si_number(flops) +
           " training FLOPs)";
    n += ": held: " + (held.empty() ? std::string("none") : held) +
         ". Did not hold: " + (failed.empty() ? std::string("none") : failed) +
         ". Inconclusive: " + (open.empty() ? std::string("none") : open) + ".";
    if (fit_open)
      n += " Where the claims read from the scaling fits (steeper, equal budget) are "
           "inconclusive, their rows say what more compute would decide them, read from the "
           "fits, or why the fits cannot say.";
    return n;
  }

  Table claims_table(const std::vector<Claim>& claims) const {
    Table t{{"claim", "paper", "ours (measured here)", "verdict", "how it is decided"}, {}};
    for (const Claim& c : claims)
      t.rows.push_back(
          {c.claim, c.paper, c.ours.empty() ? "-" : c.ours, verdict_name(c.verdict), c.rule});
    return t;
  }

  Table params_table() const {
    Table t{{"size", "shape", "projection", "parameters", "vs dense", "attention per block",
             "vs dense", "training FLOPs/token"},
            {}};
    for (const auto& [name, m] : sizes_) {
      const double dense = double(count_params(m, Projection::dense));
      const double dense_attn = attn_params_per_block(m, Projection::dense);
      for (Projection p : kProjections) {
        ModelConfig c = m;
        c.projection = p;
        const double n = double(count_params(m, p)), a = attn_params_per_block(m, p);
        t.rows.push_back({name, describe(c), projection_name(p), fmt("%.0f", n),
                          fmt("%+.2f%%", 100.0 * (n / dense - 1)), fmt("%.0f", a),
                          fmt("%+.2f%%", 100.0 * (a / dense_attn - 1)),
                          si_number(model_cost(c, c.max_seq).flops_train_per_token())});
      }
    }
    return t;
  }

  Table loss_table() const {
    Table t{{"size", "projection", "seeds", "peak lr", "tokens", "training FLOPs", "final val loss",
             "seed spread", "tokens/s (median)", "peak memory MiB", "metrics"},
            {},
            10};
    for (const std::string& s : size_names_)
      for (Projection p : kProjections) {
        const auto runs = runs_of(d_, s, p);
        if (runs.empty()) continue;
        std::vector<double> loss, rate, rss;
        std::string files;
        double tokens = 0, flops = 0, lr = 0;
        for (const auto& [seed, r] : runs) {
          lr = r->lr;
          if (r->val.empty()) continue;
          loss.push_back(r->val.back().val_loss);
          rate.push_back(r->tokens_per_s);
          rss.push_back(double(r->peak_rss_bytes) / 1048576.0);
          tokens = r->val.back().tokens;
          flops = r->val.back().flops;
          if (!files.empty()) files += ' ';  // piecewise: GCC 12 warns falsely otherwise
          files += link(r->dir + "/metrics.jsonl");
        }
        t.rows.push_back({s, projection_name(p), std::to_string(runs.size()), si_number(lr),
                          si_number(tokens), si_number(flops), fmt("%.4f", mean(loss)),
                          fmt("%.4f", spread(loss)), fmt("%.0f", mean(rate)),
                          fmt("%.0f", mean(rss)), files});
      }
    return t;
  }

  Table equal_flops_table() const {
    Table t{{"size", "FLOPs budget", "dense", "wht", "identity", "wht - dense", "seed spread"}, {}};
    for (const EqualFlops& e : loss_at_equal_flops(d_)) {
      auto cell = [&](int k) {
        return std::isfinite(e.mean[k])
                   ? fmt("%.4f", e.mean[k]) + " (" + std::to_string(e.seeds[k]) +
                         (e.seeds[k] == 1 ? " seed)" : " seeds)")
                   : std::string("-");
      };
      const double noise = std::max(e.spread[0], e.spread[1]);
      t.rows.push_back({e.size, si_number(e.flops), cell(0), cell(1), cell(2),
                        fmt("%+.4f", e.mean[1] - e.mean[0]), fmt("%.4f", noise)});
    }
    return t;
  }

  std::string init_note() const {
    std::string s = std::string(
                        "wht's per-channel scale gamma starts at one (the branch at full "
                        "scale) or matched to the spread a dense W_O starts with "
                        "(0.02/sqrt(2 layers) * sqrt(d)). The claims above use wht "
                        "runs whose scale started ") +
                    scale_init_name(d_.wht_init) + ". ";
    const InitChoice c = choose_scale_init(d_);
    if (c.ours.rfind("not measured", 0) == 0) return s + "This data holds one scale init only.";
    s += c.decided ? std::string("Lower loss: ") + scale_init_name(c.best) + ". "
                   : std::string("The data do not separate them. ");
    return s + "Measured: " + c.ours + ". Rule: " + c.rule +
           ". The FLOPs budget is the least final FLOPs of the size's dense and wht runs.";
  }

  Table init_table() const {
    Table t{{"size", "variant", "seeds", "final val loss", "seed spread", "FLOPs budget",
             "loss at budget", "seed spread"},
            {}};
    for (const InitComparison& c : compare_scale_inits(d_))
      for (const InitArm& a : c.arms)
        t.rows.push_back({c.size, a.label, std::to_string(a.seeds), fmt("%.4f", a.final_mean),
                          fmt("%.4f", a.final_spread), si_number(c.flops),
                          fmt("%.4f", a.budget_mean), fmt("%.4f", a.budget_spread)});
    return t;
  }

  // The sweep's variants in report order: size, then projection, then scale init.
  std::vector<std::tuple<std::string, Projection, ScaleInit>> sweep_variants() const {
    std::vector<std::tuple<std::string, Projection, ScaleInit>> v;
    for (const std::string& s : size_names_)
      for (Projection p : kProjections)
        for (ScaleInit init :
             {d_.wht_init, d_.wht_init == ScaleInit::one ? ScaleInit::matched : ScaleInit::one}) {
          if (p != Projection::wht && init != d_.wht_init) continue;
          for (const SweepRun& r : d_.sweep)
            if (r.size == s && r.proj == p && (p != Projection::wht || r.scale_init == init)) {
              v.emplace_back(s, p, init);
              break;
            }
        }
    return v;
  }

  std::vector<const SweepRun*> sweep_points(const std::string& s, Projection p,
                                            ScaleInit init) const {
    std::vector<const SweepRun*> v;
    for (const SweepRun& r : d_.sweep)
      if (r.size == s && r.proj == p && (p != Projection::wht || r.scale_init == init))
        v.push_back(&r);
    std::sort(v.begin(), v.end(),
              [](const SweepRun* a, const SweepRun* b) { return a->lr < b->lr; });
    return v;
  }

  std::string sweep_note() const {
    if (d_.sweep.empty()) return "";
    std::string n = std::string(
                        "Before the seeded runs each size and variant was trained once at every "
                        "rate of the sweep, for a share of its run's steps; the seeded runs use "
                        "the rate chosen by this rule: ") +
                    best_rate_rule() + ".";
    // A best rate at either end of the grid may not be the best rate at all.
    std::set<double> rates;
    for (const SweepRun& r : d_.sweep) rates.insert(r.lr);
    std::string edge;
    for (const auto& [sz, p, init] : sweep_variants()) {
      const double best = best_rate(d_, sz, p, init);
      if (best > 0 && rates.size() > 1 && (best == *rates.begin() || best == *rates.rbegin()))
        edge += (edge.empty() ? "" : ", ") + sz + " " + variant_label(p, init) + " (" +
                si_number(best) + ")";
    }
    if (!edge.empty())
      n += " The chosen rate is at an end of the grid for " + edge +
           ": a wider grid might find a better one there.";
    n += " A short run favours larger rates than a full one would; the seeded runs' curves "
         "show whether the choice held up.";
    return n;
  }

  Table sweep_table() const {
    std::set<double> rates;
    for (const SweepRun& r : d_.sweep) rates.insert(r.lr);
    Table t{{"size", "variant"}, {}};
    for (double lr : rates) t.header.push_back("lr " + si_number(lr));
    t.header.push_back("chosen");
    for (const auto& [s, p, init] : sweep_variants()) {
      std::vector<std::string> row{s, variant_label(p, init)};
      const auto points = sweep_points(s, p, init);
      for (double lr : rates) {
        std::string cell = "-";
        for (const SweepRun* r : points)
          if (r->lr == lr)
            cell = r->diverged    ? "diverged"
                   : !r->finished ? "unfinished"
                                  : fmt("%.4f", r->final_loss);
        row.push_back(cell);
      }
      const double best = best_rate(d_, s, p, init);
      row.push_back(best > 0 ? si_number(best) : "-");
      t.rows.push_back(row);
    }
    return t;
  }

  Figure sweep_figure() {
    Chart c;
    c.title = "Learning-rate sweep: final validation loss against the peak rate";
    c.x = {"peak learning rate (log)", true, {}, {}};
    c.y = {"final validation loss, nats/token", false, {}, {}};
    for (const auto& [s, p, init] : sweep_variants()) {
      Series ser;
      ser.label = s + " " + variant_label(p, init);
      ser.color = variant_colour(p, init, d_.wht_init, size_index(s), size_names_.size());
      ser.dashed = !largest(s);
      for (const SweepRun* r : sweep_points(s, p, init))
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

  std::string fits_note(const Scaling& s) const {
    if (s.fits.empty())
      return "No fit: a projection's fit needs four or more finished runs over at least "
             "three budgets (sizes), with the loss falling.";
    std::string n =
        "Validation loss against training FLOPs fitted with L = E + A C^-alpha (least squares "
        "in the loss, E held at zero or above) to the final validation loss of each finished "
        "run against its training FLOPs, across " +
        std::to_string(sizes_.size()) +
        " sizes: only at its end has a run's learning-rate schedule finished, so earlier "
        "points lie above what a run planned for that budget reaches and are left out. "
        "Intervals: 5th to 95th percentile over bootstrap replicates that resample each "
        "size's seeds (the same draw for every projection). A fit describes its points when "
        "its rmse is at most " +
        fmt("%g", kAdequateFactor) +
        "x the seeds' scatter (the pooled standard deviation of final loss between seeds of "
        "a size), or " +
        fmt("%g", kAdequateFloor) + " nats where the seeds agree more closely; ";
    std::vector<std::string> poor;
    for (const ScalingFit& f : s.fits)
      if (!f.adequate()) poor.push_back(projection_name(f.proj));
    if (poor.empty())
      n += "every fit here does. ";
    else {
      for (std::size_t i = 0; i < poor.size(); ++i) {
        if (i > 0) n += i + 1 == poor.size() ? " and " : ", ";
        n += poor[i];
      }
      n += poor.size() == 1 ? "'s fit does not" : "'s fits do not";
      n += s.adequate()
               ? " (the claims use dense's and wht's only). "
               : ": the loss does not follow one power law across these sizes, and the claims "
                 "do not rest on dense's and wht's fits. The figures below are still what the "
                 "fits give. ";
    }
    const std::string range = si_number(s.flops_lo) + " to " + si_number(1000 * s.flops_hi);
    if (std::isfinite(s.crossing))
      n += "wht's fit crosses dense's at " + si_number(s.crossing) + " FLOPs (interval " +
           si_number(s.crossing_interval.lo) + " to " + si_number(s.crossing_interval.hi) +
           ", found in " + fmt("%.0f%%", 100 * s.crossing_share) +
           " of the replicates); the data reach " + si_number(s.flops_hi) + ".";
    else
      n += "wht's and dense's fits do not cross between " + range + " FLOPs (" +
           fmt("%.0f%%", 100 * s.crossing_share) + " of the replicates cross there).";
    if (std::isfinite(s.alpha_diff))
      n += " wht's alpha minus dense's: " + fmt("%+.3f", s.alpha_diff) + " (" +
           fmt("%+.3f", s.alpha_diff_interval.lo) + " to " +
           fmt("%+.3f", s.alpha_diff_interval.hi) + ").";
    const Gap g = fitted_gap(s, s.flops_hi);
    if (std::isfinite(g.value)) {
      n += " wht's fitted loss minus dense's at " + si_number(s.flops_hi) +
           " FLOPs: " + fmt("%+.4f", g.value) + " nats (" + fmt("%+.4f", g.interval.lo) + " to " +
           fmt("%+.4f", g.interval.hi) + ")";
      int sign = 0;
      const double at = first_decided_budget(s, &sign);
      if (!std::isfinite(at))
        n += "; its interval includes zero up to 1000x that budget.";
      else if (at <= s.flops_hi)
        n += std::string("; its interval excludes zero there (wht ") +
             (sign < 0 ? "lower" : "higher") + ").";
      else
        n += "; its interval first excludes zero at " + si_number(at) + " FLOPs, " +
             fmt("%.3gx", at / s.flops_hi) + " the largest budget measured (wht " +
             (sign < 0 ? "lower" : "higher") + ").";
    }
    n += " With few sizes and short runs the floor E and the exponent trade off against each "
         "other; the intervals say how far the data pin them down, and extrapolating beyond "
         "the measured range assumes the fitted form holds there.";
    return n;
  }

  Table fits_table(const Scaling& s) const {
    Table t{{"projection", "points", "E", "E 5-95%", "A", "alpha", "alpha 5-95%", "rmse",
             "seed scatter", "describes the points", "replicates"},
            {}};
    for (const ScalingFit& f : s.fits)
      t.rows.push_back({projection_name(f.proj), std::to_string(f.fit.points), fmt("%.4f", f.fit.E),
                        fmt("%.4f", f.E.lo) + " - " + fmt("%.4f", f.E.hi), fmt("%.3g", f.fit.A),
                        fmt("%.4f", f.fit.alpha),
                        fmt("%.4f", f.alpha.lo) + " - " + fmt("%.4f", f.alpha.hi),
                        fmt("%.4f", f.fit.rmse), fmt("%.4f", f.scatter),
                        std::string(f.adequate() ? "yes" : "no") +
                            " (rmse <= " + fmt("%.4f", f.tolerance()) + ")",
                        std::to_string(f.replicates)});
    return t;
  }

  Figure fit_figure(const Scaling& s) {
    Chart c;
    c.title = "Scaling fits: validation loss against training FLOPs";
    c.x = {"training FLOPs (log)", true, {}, {}};
    c.y = {"validation loss, nats/token", false, {}, {}};
    const double hi = 30 * s.flops_hi;
    for (const ScalingFit& f : s.fits) {
      Series pts;
      pts.label = std::string(projection_name(f.proj)) + " points";
      pts.color = colour(f.proj, size_names_.size() - 1, size_names_.size());
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

  Table infer_table() const {
    Table t{{"size", "batch", "prompt", "prefill tok/s dense", "wht", "wht/dense", "identity",
             "decode tok/s dense", "wht", "wht/dense", "identity", "memory MiB dense", "wht"},
            {}};
    for (const InferCase& k : d_.infer) {
      if (k.proj != Projection::dense) continue;
      const InferCase* w = find_case(d_, k.size, Projection::wht, k.batch, k.prompt);
      const InferCase* id = find_case(d_, k.size, Projection::identity, k.batch, k.prompt);
      auto val = [](const InferCase* c, bool pre) {
        return c ? fmt("%.0f", (pre ? c->prefill_tokens_per_s : c->decode_tokens_per_s).median)
                 : std::string("-");
      };
      auto ratio = [&](bool pre) {
        if (!w) return std::string("-");
        return fmt("%.3f", (pre ? w->prefill_tokens_per_s : w->decode_tokens_per_s).median /
                               (pre ? k.prefill_tokens_per_s : k.decode_tokens_per_s).median);
      };
      t.rows.push_back({k.size, std::to_string(k.batch), std::to_string(k.prompt), val(&k, true),
                        val(w, true), ratio(true), val(id, true), val(&k, false), val(w, false),
                        ratio(false), val(id, false), fmt("%.1f", k.memory_bytes / 1048576.0),
                        w ? fmt("%.1f", w->memory_bytes / 1048576.0) : "-"});
    }
    return t;
  }

  std::string provenance_md() const {
    std::string s = "## Provenance\n\n";
    for (const Data::Command& c : d_.commands)
      s += "- `" + c.command + "` (commit `" + c.commit + "`, recorded in [" +
           fs::path(c.source).filename().string() + "](" + link(c.source) + "))\n";
    s += "- report written by `" + o_.command_line + "` (commit `" + o_.commit + "`)\n";
    s += "- data files:";
    for (const std::string& f : d_.sources) s += " [" + link(f) + "](" + link(f) + ")";
    s += "\n";
    for (const std::string& w : d_.warnings) s += "- warning: " + w + "\n";
    return s + "\n";
  }

  std::string markdown(const std::vector<Section>& sections) const {
    std::string s = "# " + o_.title + "\n\n" + intro() + "\n\n";
    for (const Section& sec : sections) {
      s += "## " + sec.title + "\n\n";
      if (!sec.note.empty()) s += sec.note + "\n\n";
      s += sec.table.rows.empty() ? "No data.\n\n" : to_markdown(sec.table);
      for (const Figure& f : sec.figures)
        s += "![" + f.caption + "](figures/" + f.file + ")\n\n*" + f.caption + "*\n\n";
    }
    return s + provenance_md();
  }

  std::string html(const std::vector<Section>& sections) const {
    std::string s =
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>" +
        html_escape(o_.title) +
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
        html_escape(o_.title) + "</h1>\n<p>" + html_escape(intro()) + "</p>\n";
    for (const Section& sec : sections) {
      s += "<h2>" + html_escape(sec.title) + "</h2>\n";
      if (!sec.note.empty()) s += "<p>" + html_escape(sec.note) + "</p>\n";
      s += sec.table.rows.empty() ? "<p>No data.</p>\n" : to_html(sec.table);
      for (const Figure& f : sec.figures)
        s += "<figure><a href=\"figures/" + html_escape(f.file) + "\"><img src=\"figures/" +
             html_escape(f.file) + "\" alt=\"" + html_escape(f.caption) + "\"></a><figcaption>" +
             html_escape(f.caption) + "</figcaption></figure>\n";
    }
    s += "<h2>Provenance</h2>\n<ul>\n";
    for (const Data::Command& c : d_.commands)
      s += "<li><code>" + html_escape(c.command) + "</code> (commit <code>" +
           html_escape(c.commit) + "</code>, recorded in <a href=\"" + html_escape(link(c.source)) +
           "\">" + html_escape(fs::path(c.source).filename().string()) + "</a>)</li>\n";
    s += "<li>report written by <code>" + html_escape(o_.command_line) + "</code> (commit <code>" +
         html_escape(o_.commit) + "</code>)</li>\n<li>data files:";
    for (const std::string& f : d_.sources)
      s += " <a href=\"" + html_escape(link(f)) + "\">" + html_escape(link(f)) + "</a>";
    s += "</li>\n";
    for (const std::string& w : d_.warnings) s += "<li>warning: " + html_escape(w) + "</li>\n";
    return s + "</ul>\n</body></html>\n";
  }

  std::string intro() const {
    std::size_t finished = 0;
    for (const TrainRun& r : d_.runs) finished += r.finished() ? 1 : 0;
    return "Dense, Hadamard (wht) and identity attention output projections trained on the same "
           "data, seeds and token budget (" +
           std::to_string(finished) + " finished training runs over " +
           std::to_string(sizes_.size()) +
           " sizes), and their inference throughput measured "
           "side by side (" +
           std::to_string(d_.infer.size()) +
           " cases). Every figure below is computed from the linked data files; each verdict "
           "follows the rule stated next to it.";
  }

  static std::string equal_flops_note() {
    return "Each run's validation loss is interpolated (linearly in log FLOPs) at the least final "
           "training FLOPs of the size's dense and wht runs, which is wht's: wht needs fewer "
           "FLOPs per token, so at that budget it has finished its schedule while dense is still "
           "part-way through its learning-rate decay. That favours wht; the final losses at "
           "equal tokens are in the table above.";
  }

  const Data& d_;
  const WriteOptions& o_;
  bool guard_;  // refuse to replace files that were there before (not from a report)
  std::vector<std::pair<std::string, ModelConfig>> sizes_;
  std::vector<std::string> size_names_;
};

}  // namespace

Written write(const Data& data, const WriteOptions& options) {
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
  return Writer(data, options, guard).write();
}

}  // namespace whtlm::report
