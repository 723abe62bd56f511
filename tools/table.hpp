// A plain text table for the terminal: columns right-aligned to their widest cell.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

namespace whtlm::cli {

class Table {
 public:
  explicit Table(std::vector<std::string> header) : rows_{std::move(header)} {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void print(std::FILE* out) const {
    std::vector<std::size_t> width;
    for (const auto& r : rows_)
      for (std::size_t i = 0; i < r.size(); ++i) {
        if (width.size() <= i) width.push_back(0);
        if (r[i].size() > width[i]) width[i] = r[i].size();
      }
    for (std::size_t k = 0; k < rows_.size(); ++k) {
      std::string line;
      for (std::size_t i = 0; i < rows_[k].size(); ++i) {
        if (i > 0) line += "  ";
        line += std::string(width[i] - rows_[k][i].size(), ' ') + rows_[k][i];
      }
      std::fprintf(out, "%s\n", line.c_str());
      if (k == 0) {
        std::size_t total = 0;
        for (std::size_t w : width) total += w + 2;
        std::fprintf(out, "%s\n", std::string(total - 2, '-').c_str());
      }
    }
  }

 private:
  std::vector<std::vector<std::string>> rows_;
};

// printf-style formatting into a std::string.
template <class... Args>
std::string fmt(const char* f, Args... args) {
  const int len = std::snprintf(nullptr, 0, f, args...);
  std::string s(static_cast<std::size_t>(len), '\0');
  std::snprintf(s.data(), s.size() + 1, f, args...);
  return s;
}

}  // namespace whtlm::cli
