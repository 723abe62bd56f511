// Reading the JSON documents users hand us (config.json, train_state.json, experiment
// plans, experiment.json): a parse error names the file and the field being read (a
// number like 1e999 fails inside the parser, so the field is known only from the
// parse), and every field is read through JsonObject, which checks its presence, its
// type and, for numbers, its Bound (whtlm/limits.hpp). Every error is a
// std::runtime_error of the form
//   run/train_state.json: field "options.threads": 70000 is too large: expected ...
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "whtlm/limits.hpp"

namespace whtlm::io {

// Parses `text`; on failure names `source`, the field being read and the position.
nlohmann::json parse_json(std::string_view text, const std::string& source);

// The text of a field's place in a document: source + ": field \"a.b\"".
std::string field_where(const std::string& source, std::string_view field);

// One JSON object of a document, read field by field.
class JsonObject {
 public:
  // `path` is the object's own place in the document ("" at the top, "options", ...).
  JsonObject(const nlohmann::json& j, std::string source, std::string path = "");

  bool has(std::string_view key) const;  // present and not null
  const nlohmann::json& at(std::string_view key) const;
  std::string where(std::string_view key) const;
  std::string field(std::string_view key) const;  // "a.b": the key's place in the document
  [[noreturn]] void fail(std::string_view key, const std::string& why) const;

  // A number within `b`. The fallback is used when the field is absent or null.
  double number(std::string_view key, const Bound& b) const;
  double number(std::string_view key, const Bound& b, double fallback) const;
  // An integer within `b`, exact beyond 2^53 (b.integer must be set).
  template <class T>
  T integer(std::string_view key, const Bound& b) const {
    return static_cast<T>(exact_integer(key, b));
  }
  template <class T>
  T integer(std::string_view key, const Bound& b, T fallback) const {
    return has(key) ? integer<T>(key, b) : fallback;
  }
  std::uint64_t unsigned_integer(std::string_view key) const;  // any uint64 (seeds)
  std::string string(std::string_view key) const;
  std::string string(std::string_view key, const std::string& fallback) const;
  bool boolean(std::string_view key, bool fallback) const;
  JsonObject object(std::string_view key) const;

  const std::string& source() const { return source_; }
  const nlohmann::json& raw() const { return j_; }

 private:
  std::int64_t exact_integer(std::string_view key, const Bound& b) const;

  const nlohmann::json& j_;
  std::string source_, path_;
};

}  // namespace whtlm::io
