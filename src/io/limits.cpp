// One check and one message for every bounded number (include/whtlm/limits.hpp).
#include "whtlm/limits.hpp"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace whtlm {
namespace {

// The shortest text that reads back as v ("1e30", "0.1", "70000", "nan").
std::string shortest_text(double v) {
  char buf[64];
  for (int digits = 1; digits <= 17; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, v);
    if (std::isnan(v) || std::strtod(buf, nullptr) == v) break;
  }
  std::string s = buf;  // "1e+09" -> "1e9", "1e-05" -> "1e-5"
  const std::size_t e = s.find('e');
  if (e != std::string::npos) {
    std::size_t digits = e + 1;
    if (s[digits] == '+')
      s.erase(digits, 1);
    else if (s[digits] == '-')
      ++digits;
    while (digits + 1 < s.size() && s[digits] == '0') s.erase(digits, 1);
  }
  return s;
}

// A bound's end as text: integers in full up to 1e10, then "1e12", "1e18".
std::string number_text(double v) { return std::fabs(v) < 1e10 ? value_text(v) : shortest_text(v); }

}  // namespace

std::string describe(const Bound& b) {
  std::string s = b.integer ? "an integer" : "a number";
  if (b.min_open || b.max_open) {
    s += " in ";
    s += b.min_open ? "(" : "[";
    s += number_text(b.min) + ", " + number_text(b.max);
    s += b.max_open ? ")" : "]";
  } else {
    s += " from " + number_text(b.min) + " to " + number_text(b.max);
  }
  if (b.note != nullptr) s += std::string(" (") + b.note + ")";
  return s;
}

namespace {

// Why b refuses v, or nullptr when it holds it.
const char* refusal(const Bound& b, double value) {
  if (std::isnan(value)) return "not a number";
  if (std::isinf(value)) return value > 0 ? "infinite" : "negative infinity";
  if (value < b.min || (b.min_open && value == b.min)) return "too small";
  if (value > b.max || (b.max_open && value == b.max)) return "too large";
  if (b.integer && value != std::floor(value)) return "not an integer";
  return nullptr;
}

[[noreturn]] void refuse(const Bound& b, const std::string& shown, const char* why,
                         std::string_view where) {
  throw std::invalid_argument(std::string(where) + ": " + shown + " is " + why + ": expected " +
                              describe(b));
}

}  // namespace

std::string value_text(double v) {
  if (v == std::floor(v) && std::fabs(v) < 1e16) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  return shortest_text(v);
}

double check_bound(const Bound& b, double value, std::string_view where) {
  if (const char* why = refusal(b, value)) refuse(b, value_text(value), why, where);
  return value;
}

double parse_bounded(const Bound& b, std::string_view text, std::string_view where) {
  const std::string s(text);
  const std::string shown = s.substr(0, 40);  // as the user wrote it
  // strtod takes "nan" and "inf" too; those are refused below with a reason.
  char* end = nullptr;
  errno = 0;
  const double v = s.empty() ? 0.0 : std::strtod(s.c_str(), &end);
  if (s.empty() || end == s.c_str() || *end != '\0' ||
      std::isspace(static_cast<unsigned char>(s[0])))
    throw std::invalid_argument(std::string(where) + ": '" + shown +
                                "' is not a number: expected " + describe(b));
  if (errno == ERANGE && std::isinf(v)) refuse(b, shown, "too large", where);  // 1e999
  // Plain digits beyond 2^64 - 1 round to 2^64 as a double; refuse them as written.
  if (b.integer && s.find_first_not_of("0123456789") == std::string::npos) {
    errno = 0;
    (void)std::strtoull(s.c_str(), nullptr, 10);
    if (errno == ERANGE) refuse(b, shown, "too large", where);
  }
  if (const char* why = refusal(b, v)) refuse(b, shown, why, where);
  return v;
}

}  // namespace whtlm
