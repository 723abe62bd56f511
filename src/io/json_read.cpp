// JSON documents from users, read with errors that name the file and the field.
#include "io/json_read.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace whtlm::io {
namespace {

using nlohmann::json;

// nlohmann's messages start with "[json.exception.parse_error.101] "; the rest says it.
std::string plain(const char* what) {
  std::string s(what);
  if (!s.empty() && s[0] == '[') {
    const std::size_t close = s.find("] ");
    if (close != std::string::npos) s.erase(0, close + 2);
  }
  return s;
}

const char* type_name(const json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "a boolean";
  if (v.is_number()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_array()) return "an array";
  return "an object";
}

std::string shown(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

}  // namespace

std::string field_where(const std::string& source, std::string_view field) {
  return source + ": field \"" + std::string(field) + "\"";
}

namespace {

// A SAX handler that builds nothing and keeps the path of the value being parsed
// ("options.threads", "sizes[2].d_model"), to name the field a parse failed in.
class PathTracker : public nlohmann::json_sax<json> {
 public:
  bool null() override { return value(); }
  bool boolean(bool) override { return value(); }
  bool number_integer(number_integer_t) override { return value(); }
  bool number_unsigned(number_unsigned_t) override { return value(); }
  bool number_float(number_float_t, const string_t&) override { return value(); }
  bool string(string_t&) override { return value(); }
  bool binary(binary_t&) override { return value(); }
  bool start_object(std::size_t) override {
    value();
    frames_.push_back({false, "", 0});
    return true;
  }
  bool key(string_t& k) override {
    if (!frames_.empty()) frames_.back().key = k;
    return true;
  }
  bool end_object() override { return pop(); }
  bool start_array(std::size_t) override {
    value();
    frames_.push_back({true, "", 0});
    return true;
  }
  bool end_array() override { return pop(); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;
  }

  // The innermost array's failing element has not been counted yet; an outer array's
  // element in progress (an object or array) has.
  std::string path() const {
    std::string p;
    for (std::size_t i = 0; i < frames_.size(); ++i) {
      const Frame& f = frames_[i];
      if (f.array)
        p += "[" + std::to_string(i + 1 == frames_.size() || f.count == 0 ? f.count : f.count - 1) +
             "]";
      else if (!f.key.empty())
        p += (p.empty() ? "" : ".") + f.key;
    }
    return p;
  }

 private:
  struct Frame {
    bool array;
    std::string key;
    std::size_t count;  // arrays: values seen so far
  };
  bool value() {
    if (!frames_.empty() && frames_.back().array) ++frames_.back().count;
    return true;
  }
  bool pop() {
    if (!frames_.empty()) frames_.pop_back();
    return true;
  }
  std::vector<Frame> frames_;
};

}  // namespace

json parse_json(std::string_view text, const std::string& source) {
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    // Only on failure: a second, linear pass that tracks where the parser was. (A parse
    // callback would track it always, but nlohmann's callback parser is quadratic in
    // the length of an array of objects.)
    PathTracker tracker;
    json::sax_parse(text.begin(), text.end(), &tracker);
    const std::string field = tracker.path();
    const std::string where = field.empty() ? source : field_where(source, field);
    throw std::runtime_error(where + ": not valid JSON: " + plain(e.what()));
  }
}

JsonObject::JsonObject(const nlohmann::json& j, std::string source, std::string path)
    : j_(j), source_(std::move(source)), path_(std::move(path)) {
  if (!j_.is_object())
    throw std::runtime_error((path_.empty() ? source_ : field_where(source_, path_)) +
                             ": expected a JSON object, found " + type_name(j_));
}

std::string JsonObject::field(std::string_view key) const {
  return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
}

std::string JsonObject::where(std::string_view key) const {
  return field_where(source_, field(key));
}

void JsonObject::fail(std::string_view key, const std::string& why) const {
  throw std::runtime_error(where(key) + ": " + why);
}

bool JsonObject::has(std::string_view key) const {
  const auto it = j_.find(key);
  return it != j_.end() && !it->is_null();
}

const nlohmann::json& JsonObject::at(std::string_view key) const {
  const auto it = j_.find(key);
  if (it == j_.end() || it->is_null()) fail(key, "missing");
  return *it;
}

double JsonObject::number(std::string_view key, const Bound& b) const {
  const nlohmann::json& v = at(key);
  if (!v.is_number())
    fail(key, "expected " + describe(b) + ", found " + type_name(v) + " " + shown(v));
  try {
    return check_bound(b, v.get<double>(), where(key));
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(e.what());
  }
}

double JsonObject::number(std::string_view key, const Bound& b, double fallback) const {
  return has(key) ? number(key, b) : fallback;
}

std::int64_t JsonObject::exact_integer(std::string_view key, const Bound& b) const {
  const double v = number(key, b);  // type, finiteness, integrality and range
  const nlohmann::json& j = at(key);
  if (j.is_number_integer()) return j.get<std::int64_t>();
  return static_cast<std::int64_t>(v);  // written as 1e6 or 16.0: exact below 2^53
}

std::uint64_t JsonObject::unsigned_integer(std::string_view key) const {
  const nlohmann::json& v = at(key);
  if (v.is_number_unsigned()) return v.get<std::uint64_t>();
  if (v.is_number_integer() && v.get<std::int64_t>() >= 0)
    return static_cast<std::uint64_t>(v.get<std::int64_t>());
  fail(key, "expected an integer from 0 to 18446744073709551615, found " + shown(v));
}

std::string JsonObject::string(std::string_view key) const {
  const nlohmann::json& v = at(key);
  if (!v.is_string()) fail(key, std::string("expected a string, found ") + type_name(v));
  return v.get<std::string>();
}

std::string JsonObject::string(std::string_view key, const std::string& fallback) const {
  return has(key) ? string(key) : fallback;
}

bool JsonObject::boolean(std::string_view key, bool fallback) const {
  if (!has(key)) return fallback;
  const nlohmann::json& v = at(key);
  if (!v.is_boolean()) fail(key, std::string("expected true or false, found ") + shown(v));
  return v.get<bool>();
}

JsonObject JsonObject::object(std::string_view key) const {
  return JsonObject(at(key), source_, field(key));
}

}  // namespace whtlm::io
