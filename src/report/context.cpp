// The report writer's shared context (context.hpp): sizes in report order, paths and
// links in the report folder, the sweep's variants, number formatting.
#include "report/context.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <stdexcept>

#include "report/analysis.hpp"

namespace whtlm::report::detail {

namespace fs = std::filesystem;

std::string fmt(const char* f, double v) {
  if (!std::isfinite(v)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string variant_label(Projection p, ScaleInit init) {
  return p == Projection::wht ? std::string("wht, scale ") + scale_init_name(init)
                              : projection_name(p);
}

void refuse_overwrite(const std::string& dir, const std::string& name) {
  throw std::invalid_argument(dir + ": holds " + name +
                              ", which no earlier whtlm report wrote (no .whtlm-report there); "
                              "choose another folder, or --force to replace it");
}

Context::Context(const Data& d, const std::string& out, bool g)
    : data(d), out_dir(out), guard(g), sizes(sizes_by_params(d)) {
  for (const auto& [name, m] : sizes) size_names.push_back(name);
  for (const std::string& s : infer_sizes(d))
    if (std::find(size_names.begin(), size_names.end(), s) == size_names.end())
      size_names.push_back(s);
}

std::string Context::path(const std::string& rel) const {
  return (fs::path(out_dir) / rel).string();
}

std::string Context::link(const std::string& file) const {
  std::error_code ec;
  const fs::path rel = fs::relative(fs::absolute(file), fs::absolute(out_dir), ec);
  return ec || rel.empty() ? fs::absolute(file).string() : rel.string();
}

std::size_t Context::size_index(const std::string& s) const {
  return std::size_t(std::find(size_names.begin(), size_names.end(), s) - size_names.begin());
}

bool Context::largest(const std::string& s) const { return size_index(s) + 1 == size_names.size(); }

std::vector<SweepVariant> Context::sweep_variants() const {
  std::vector<SweepVariant> v;
  for (const std::string& s : size_names)
    for (Projection p : kProjections)
      for (ScaleInit init :
           {data.wht_init, data.wht_init == ScaleInit::one ? ScaleInit::matched : ScaleInit::one}) {
        if (p != Projection::wht && init != data.wht_init) continue;
        for (const SweepRun& r : data.sweep)
          if (r.size == s && r.proj == p && (p != Projection::wht || r.scale_init == init)) {
            v.emplace_back(s, p, init);
            break;
          }
      }
  return v;
}

std::vector<const SweepRun*> Context::sweep_points(const std::string& s, Projection p,
                                                   ScaleInit init) const {
  std::vector<const SweepRun*> v;
  for (const SweepRun& r : data.sweep)
    if (r.size == s && r.proj == p && (p != Projection::wht || r.scale_init == init))
      v.push_back(&r);
  std::sort(v.begin(), v.end(), [](const SweepRun* a, const SweepRun* b) { return a->lr < b->lr; });
  return v;
}

}  // namespace whtlm::report::detail
