// The downstream proxy in the report: each run's downstream.json (cloze accuracy over
// K candidate words, bits per byte; whtlm/downstream.hpp) summarised per size and
// variant, its section's table and text, and the claim of comparable downstream
// performance decided from them.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

#include "report/analysis.hpp"
#include "whtlm/report.hpp"

namespace whtlm::report {
namespace {

using namespace detail;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string fmt(const char* f, double v) {
  if (!std::isfinite(v)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// The first run that measured the proxy (with a cloze when there is one), for the
// section's description of the candidates and items.
const TrainRun* first_measured(const Data& d) {
  const TrainRun* any = nullptr;
  for (const TrainRun& r : d.runs) {
    if (!r.finished() || !r.downstream.measured) continue;
    if (r.downstream.cloze) return &r;
    if (any == nullptr) any = &r;
  }
  return any;
}

DownstreamArm make_arm(const Data& d, const std::string& size, Projection p, ScaleInit init,
                       const std::string& label) {
  DownstreamArm a;
  a.size = size;
  a.label = label;
  a.proj = p;
  a.scale_init = init;
  std::vector<double> acc, bpb, majority;
  for (const auto& [seed, r] : runs_of(d, size, p, init)) {
    const Downstream& x = r->downstream;
    if (!x.measured) continue;
    ++a.seeds;
    bpb.push_back(x.bits_per_byte);
    if (!x.cloze) continue;
    ++a.cloze_seeds;
    acc.push_back(x.accuracy);
    majority.push_back(x.majority_accuracy);
    if (!x.top_answer.empty())
      a.top_answers +=
          (a.top_answers.empty() ? "" : ", ") + x.top_answer + " " + fmt("%.2f", x.top_share);
    a.chance = x.chance;
    a.items = a.items == 0 ? x.items : std::min(a.items, x.items);
  }
  a.accuracy_mean = mean(acc);
  a.accuracy_spread = spread(acc);
  a.bpb_mean = mean(bpb);
  a.bpb_spread = spread(bpb);
  a.majority_accuracy = mean(majority);
  if (a.cloze_seeds == 0) a.chance = kNaN;
  return a;
}

// One size's comparison of wht (the claims' scale init) with dense.
struct SizeEvidence {
  std::string size;
  double acc_diff = kNaN, acc_noise = kNaN;  // wht - dense; noise: larger spread, >= 1/items
  double bpb_diff = kNaN, bpb_noise = kNaN;  // wht - dense
  double acc_w = kNaN, acc_x = kNaN, bpb_w = kNaN, bpb_x = kNaN;
  std::size_t items = 0;
  // +1: within the noise or better on both; -1: worse beyond the noise on either; 0:
  // the noise is unknown (one seed).
  // (A difference of exactly the noise, e.g. one item, is within it: 1e-9 absorbs the
  // rounding of the fractions.)
  int sign() const {
    if (std::isfinite(acc_noise) && acc_diff < -acc_noise - 1e-9) return -1;
    if (std::isfinite(bpb_noise) && bpb_diff > bpb_noise + 1e-9) return -1;
    return std::isfinite(acc_noise) && std::isfinite(bpb_noise) ? 1 : 0;
  }
};

}  // namespace

std::vector<DownstreamArm> downstream_arms(const Data& d) {
  std::vector<DownstreamArm> out;
  for (const auto& named : sizes_by_params(d)) {
    const std::string& size = named.first;
    std::vector<DownstreamArm> arms{make_arm(d, size, Projection::dense, d.wht_init, "dense"),
                                    make_arm(d, size, Projection::wht, d.wht_init, "wht")};
    for (ScaleInit init : {ScaleInit::matched, ScaleInit::one})
      if (init != d.wht_init)
        arms.push_back(make_arm(d, size, Projection::wht, init,
                                std::string("wht, scale ") + scale_init_name(init)));
    arms.push_back(make_arm(d, size, Projection::identity, d.wht_init, "identity"));
    for (const DownstreamArm& a : arms)
      if (a.seeds > 0) out.push_back(a);
  }
  return out;
}

namespace detail {

Claim downstream_claim(const Data& d) {
  Claim c{"downstream",
          "Comparable downstream performance",
          "comparable or slightly better (v1)",
          "",
          "",
          Verdict::not_measured};
  c.rule =
      "the downstream proxy of each run (held-out cloze accuracy over K candidate words, "
      "bits per byte; see Downstream proxy), mean over seeds; noise: the larger seed spread "
      "of wht and dense (for accuracy at least one item, 1/items; unknown with one seed); "
      "held when at every size wht's accuracy is not below dense's by more than the noise "
      "and its bits per byte not above dense's by more than the noise; did not hold when "
      "either is worse beyond the noise at some size; otherwise inconclusive";
  std::vector<SizeEvidence> ev;
  std::string skipped;
  for (const auto& named : sizes_by_params(d)) {
    const std::string& size = named.first;
    const DownstreamArm w = make_arm(d, size, Projection::wht, d.wht_init, "wht");
    const DownstreamArm x = make_arm(d, size, Projection::dense, d.wht_init, "dense");
    for (const DownstreamArm* a : {&w, &x})
      for (const auto& [seed, r] : runs_of(d, size, a->proj, a->scale_init))
        if (r->downstream.measured && !r->downstream.cloze && skipped.empty())
          skipped = r->downstream.cloze_skipped;
    if (w.cloze_seeds == 0 || x.cloze_seeds == 0) continue;
    SizeEvidence e;
    e.size = size;
    e.items = std::min(w.items, x.items);
    e.acc_w = w.accuracy_mean;
    e.acc_x = x.accuracy_mean;
    e.bpb_w = w.bpb_mean;
    e.bpb_x = x.bpb_mean;
    e.acc_diff = w.accuracy_mean - x.accuracy_mean;
    e.bpb_diff = w.bpb_mean - x.bpb_mean;
    if (std::isfinite(w.accuracy_spread) && std::isfinite(x.accuracy_spread))
      e.acc_noise = std::max(
          {w.accuracy_spread, x.accuracy_spread, e.items > 0 ? 1.0 / double(e.items) : 0.0});
    if (std::isfinite(w.bpb_spread) && std::isfinite(x.bpb_spread))
      e.bpb_noise = std::max(w.bpb_spread, x.bpb_spread);
    ev.push_back(e);
  }
  if (ev.empty()) {
    c.ours = !skipped.empty() ? "not measured: no cloze (" + skipped + ")"
                              : "not measured: no finished dense and wht runs with a "
                                "downstream.json (folders from before the proxy have none)";
    return c;
  }
  int worse = 0, fine = 0;
  for (const SizeEvidence& e : ev) {
    c.ours += (c.ours.empty() ? "" : "; ") + e.size + ": cloze wht " + fmt("%.3f", e.acc_w) +
              " vs dense " + fmt("%.3f", e.acc_x) +
              (std::isfinite(e.acc_noise) ? " (noise " + fmt("%.3f", e.acc_noise) + ")"
                                          : std::string(" (one seed: noise unknown)")) +
              ", bits/byte " + fmt("%.4f", e.bpb_w) + " vs " + fmt("%.4f", e.bpb_x) +
              (std::isfinite(e.bpb_noise) ? " (noise " + fmt("%.4f", e.bpb_noise) + ")"
                                          : std::string(" (noise unknown)")) +
              ", " + std::to_string(e.items) + " items";
    const int s = e.sign();
    worse += s < 0 ? 1 : 0;
    fine += s > 0 ? 1 : 0;
  }
  c.verdict = worse > 0                ? Verdict::not_held
              : fine == int(ev.size()) ? Verdict::held
                                       : Verdict::inconclusive;
  return c;
}

std::string downstream_note(const Data& d) {
  const TrainRun* r = first_measured(d);
  if (r == nullptr)
    return "Not measured: no finished run here has a downstream.json (experiment folders "
           "from before the proxy have none).";
  const Downstream& x = r->downstream;
  std::string s =
      "A downstream proxy, not a benchmark such as LAMBADA or HellaSwag. Held-out cloze: "
      "every verse of the validation split (a whole line inside one validation chunk) whose "
      "last word is one of the K most frequent verse-final words of the training split (ties "
      "in byte order)";
  if (x.cloze) {
    std::string words;
    for (const std::string& w : x.candidates) words += (words.empty() ? "" : ", ") + w;
    s +=
        ", here K = " + std::to_string(x.candidates.size()) + ": " + words +
        ". The model reads up to " + std::to_string(x.context_bytes) +
        " bytes of text before the word (the verse so far and the text before it, never "
        "across a chunk) and scores each candidate by the sum of the log-probabilities of "
        "its bytes and of the byte that actually follows the word in the verse (its "
        "punctuation, so a word that is a prefix of another gains nothing); its answer is "
        "the best-scoring candidate. " +
        std::to_string(x.items) +
        " items, spread evenly over the eligible verses; chance is 1/K = " + fmt("%.3f", x.chance) +
        ", and always answering the most frequent word scores " + fmt("%.3f", x.majority_accuracy) +
        ". The commonest answer is, per seed, the word the model gave most often and its share "
        "of the items: a model that gives one word whatever the context scores that word's "
        "share.";
  } else {
    s += "; no cloze was scored for " + r->name + ": " + x.cloze_skipped + ".";
  }
  s += " Bits per byte: the mean validation loss over fixed windows of the validation split " +
       std::string("(") + fmt("%.0f", x.bytes) +
       " bytes scored) over ln 2 per byte. wht rows are the runs whose scale started " +
       scale_init_name(d.wht_init) + ".";
  return s;
}

TextTable downstream_table(const Data& d,
                           const std::function<std::string(const std::string&)>& link) {
  TextTable t{
      {"size", "variant", "seeds", "cloze accuracy", "seed spread", "chance", "most frequent word",
       "commonest answer (share)", "items", "bits per byte", "seed spread", "data"},
      {},
      11};
  for (const DownstreamArm& a : downstream_arms(d)) {
    std::string files;
    for (const auto& [seed, r] : runs_of(d, a.size, a.proj, a.scale_init))
      if (r->downstream.measured) {
        if (!files.empty()) files += ' ';
        files += link(r->dir + "/downstream.json");
      }
    t.rows.push_back({a.size, a.label, std::to_string(a.seeds),
                      a.cloze_seeds > 0 ? fmt("%.3f", a.accuracy_mean) : std::string("skipped"),
                      fmt("%.3f", a.accuracy_spread), fmt("%.3f", a.chance),
                      fmt("%.3f", a.majority_accuracy),
                      a.top_answers.empty() ? std::string("-") : a.top_answers,
                      a.items > 0 ? std::to_string(a.items) : std::string("-"),
                      fmt("%.4f", a.bpb_mean), fmt("%.4f", a.bpb_spread), files});
  }
  return t;
}

}  // namespace detail

}  // namespace whtlm::report
