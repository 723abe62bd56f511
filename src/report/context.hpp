// What every part of the report writer reads: the data, its sizes in report order, the
// report folder (paths in it, links from it to the data files, the guard against
// replacing a user's files), the sweep's variants, and number formatting.
#pragma once

#include <cstddef>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "whtlm/model.hpp"
#include "whtlm/report.hpp"

namespace whtlm::report::detail {

inline constexpr Projection kProjections[] = {Projection::dense, Projection::wht,
                                              Projection::identity};

// printf-style formatting of one number; "-" when it is not finite.
std::string fmt(const char* f, double v);

// A variant's name in tables and legends: "wht, scale one", or the projection's name.
std::string variant_label(Projection p, ScaleInit init);

[[noreturn]] void refuse_overwrite(const std::string& dir, const std::string& name);

// One size and variant of the learning-rate sweep.
using SweepVariant = std::tuple<std::string, Projection, ScaleInit>;

struct Context {
  Context(const Data& data, const std::string& out_dir, bool guard);

  const Data& data;
  std::string out_dir;
  bool guard;  // refuse to replace files that were there before (not from a report)
  // The training sizes by dense parameter count, each with its shape.
  std::vector<std::pair<std::string, ModelConfig>> sizes;
  // Those sizes' names, then the inference-only sizes: the order of rows and curves.
  std::vector<std::string> size_names;

  // A path in the report folder.
  std::string path(const std::string& rel) const;
  // A data file's link from the report folder.
  std::string link(const std::string& file) const;
  std::size_t size_index(const std::string& s) const;
  bool largest(const std::string& s) const;

  // The sweep's variants in report order: size, then projection, then scale init.
  std::vector<SweepVariant> sweep_variants() const;
  // A variant's sweep runs, by learning rate.
  std::vector<const SweepRun*> sweep_points(const std::string& s, Projection p,
                                            ScaleInit init) const;
};

}  // namespace whtlm::report::detail
