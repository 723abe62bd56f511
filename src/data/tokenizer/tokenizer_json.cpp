// Tokenizer files: Hugging Face tokenizer.json (read and written), GPT-2's encoder.json +
// vocab.bpe (read), resolving a tokenizer spec, and reading training text.
#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "data/tokenizer/tokenizer_impl.hpp"
#include "io/json_read.hpp"
#include "whtlm/io.hpp"
#include "whtlm/tokenizer.hpp"

namespace whtlm::tok {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr std::string_view kEot = "<|endoftext|>";

// Errors name the file, then the field: "tok.json: model.merges[3]: unknown token 'x'".
[[noreturn]] void fail(const std::string& origin, const std::string& field,
                       const std::string& what) {
  throw std::runtime_error(origin + ": " + (field.empty() ? "" : field + ": ") + what);
}

std::string in_quotes(std::string_view s) {
  std::string q(1, '\'');
  q += s;
  q += '\'';
  return q;
}

json parse_json(std::string_view text, const std::string& origin) {
  return io::parse_json(text, origin);  // names the field being read when it fails
}

// A vocabulary being read: vocab-file string -> id, and id -> token bytes.
struct Vocab {
  std::vector<std::optional<std::string>> bytes;  // id -> bytes
  std::vector<std::string> keys;                  // id -> the string in the file
  std::vector<SpecialToken> specials;
  std::vector<std::uint8_t> special;
  const json* object = nullptr;  // the vocab object, for merge look-ups
  std::size_t capacity = 0;      // ids the file can hold: vocab entries + added tokens

  std::optional<std::int32_t> id_of(const std::string& key) const {
    const auto it = object->find(key);
    if (it == object->end()) return std::nullopt;
    return it->get<std::int32_t>();
  }
};

// Reads {"token string": id, ...}; ids must be unique, and below the number of ids the
// file holds in all (the entries here plus `extra_ids`, the added tokens), since ids run
// from 0 without gaps: checked before anything is sized by them, so that one huge id
// in a small file is an error, not gigabytes of memory.
Vocab read_vocab(const json& v, const std::string& origin, const std::string& field,
                 std::size_t extra_ids) {
  if (!v.is_object()) fail(origin, field, "expected an object of token -> id");
  Vocab vocab;
  vocab.object = &v;
  std::int64_t max_id = -1;
  const auto capacity = static_cast<std::int64_t>(v.size() + extra_ids);
  for (const auto& [key, id] : v.items()) {
    if (!id.is_number_integer() || id.get<std::int64_t>() < 0 ||
        id.get<std::int64_t>() > 0x7FFFFFFE)
      fail(origin, field,
           "token " + in_quotes(key) + " has id " + id.dump() +
               " (expected an integer from 0 to 2^31-2)");
    if (id.get<std::int64_t>() >= capacity)
      fail(origin, field,
           "token " + in_quotes(key) + " has id " + id.dump() + ", but the file lists only " +
               std::to_string(capacity) + " tokens, and ids must run from 0 to " +
               std::to_string(capacity - 1) + " without gaps");
    max_id = std::max(max_id, id.get<std::int64_t>());
  }
  vocab.capacity = static_cast<std::size_t>(capacity);
  vocab.bytes.resize(static_cast<std::size_t>(max_id + 1));
  vocab.keys.resize(vocab.bytes.size());
  vocab.special.assign(vocab.bytes.size(), 0);
  std::vector<std::uint8_t> used(vocab.bytes.size(), 0);
  for (const auto& [key, value] : v.items()) {
    const auto id = value.get<std::size_t>();
    if (used[id])
      fail(origin, field,
           "duplicate id " + std::to_string(id) + ": " + in_quotes(vocab.keys[id]) + " and " +
               in_quotes(key));
    used[id] = 1;
    vocab.keys[id] = key;
    vocab.bytes[id] = from_unicode_string(key);
  }
  return vocab;
}

// Makes `content` a special token with `id`, which the vocabulary may already list (with
// the same string) or which may extend it.
void add_special(Vocab& vocab, const std::string& content, std::size_t id,
                 const std::string& origin, const std::string& field) {
  if (id >= vocab.capacity)
    fail(origin, field,
         "id " + std::to_string(id) + " is beyond the " + std::to_string(vocab.capacity) +
             " tokens the file lists (ids must run from 0 without gaps)");
  if (id >= vocab.bytes.size()) {
    vocab.bytes.resize(id + 1);
    vocab.keys.resize(id + 1);
    vocab.special.resize(id + 1, 0);
  } else if (!vocab.keys[id].empty() && vocab.keys[id] != content &&
             vocab.keys[id] != to_unicode_string(content)) {
    fail(origin, field,
         "id " + std::to_string(id) + " is " + in_quotes(vocab.keys[id]) + " in model.vocab but " +
             in_quotes(content) + " here");
  }
  if (const auto other = vocab.id_of(content); other && static_cast<std::size_t>(*other) != id)
    fail(origin, field,
         in_quotes(content) + " has id " + std::to_string(id) + " here but " +
             std::to_string(*other) + " in model.vocab");
  if (vocab.special[id]) fail(origin, field, "id " + std::to_string(id) + " is listed twice");
  vocab.keys[id] = content;
  vocab.bytes[id] = content;
  vocab.special[id] = 1;
  vocab.specials.push_back({content, static_cast<std::int32_t>(id)});
}

// The token bytes by id; every id from 0 up must be present and byte-level.
std::vector<std::string> finish_vocab(Vocab& vocab, const std::string& origin,
                                      const std::string& field) {
  std::vector<std::string> tokens(vocab.bytes.size());
  for (std::size_t id = 0; id < vocab.bytes.size(); ++id) {
    if (vocab.keys[id].empty() && !vocab.bytes[id])
      fail(origin, field,
           "no token has id " + std::to_string(id) + " (ids must run from 0 to " +
               std::to_string(vocab.bytes.size() - 1) + " without gaps)");
    if (!vocab.bytes[id])
      fail(origin, field,
           "token " + in_quotes(vocab.keys[id]) + " (id " + std::to_string(id) +
               ") has a character outside the byte-level alphabet (GPT-2's byte-to-unicode map)");
    tokens[id] = *vocab.bytes[id];
  }
  for (int b = 0; b < 256; ++b) {
    const std::string key = to_unicode_string(std::string(1, static_cast<char>(b)));
    const auto id = vocab.id_of(key);
    if (!id || vocab.special[static_cast<std::size_t>(*id)])
      fail(origin, field,
           "no token for the byte " + std::to_string(b) + " (" + in_quotes(key) +
               "); a byte-level BPE needs all 256 single bytes");
  }
  return tokens;
}

// The ids of merge (a, b); `field` names it for errors.
std::pair<std::int32_t, std::int32_t> merge_ids(const Vocab& vocab, const std::string& a,
                                                const std::string& b, const std::string& origin,
                                                const std::string& field,
                                                const std::string& vocab_name) {
  const auto ia = vocab.id_of(a), ib = vocab.id_of(b);
  if (!ia) fail(origin, field, "unknown token " + in_quotes(a) + " (not in " + vocab_name + ")");
  if (!ib) fail(origin, field, "unknown token " + in_quotes(b) + " (not in " + vocab_name + ")");
  if (vocab.special[*ia] || vocab.special[*ib]) fail(origin, field, "merges a special token");
  if (!vocab.id_of(a + b))
    fail(origin, field, "the merged token " + in_quotes(a + b) + " is not in " + vocab_name);
  return {*ia, *ib};
}

bool is_null_or_empty(const json& m, const char* key) {
  if (!m.contains(key)) return true;
  const json& v = m[key];
  return v.is_null() || (v.is_string() && v.get<std::string>().empty());
}

void check_pre_tokenizer(const json& j, const std::string& origin) {
  if (!j.contains("pre_tokenizer")) fail(origin, "pre_tokenizer", "missing (expected ByteLevel)");
  const json& p = j["pre_tokenizer"];
  if (!p.is_object() || !p.contains("type") || p["type"] != "ByteLevel")
    fail(origin, "pre_tokenizer",
         "expected {\"type\": \"ByteLevel\", ...}, got " + p.dump().substr(0, 200) +
             " (only GPT-2's byte-level pre-tokenization is supported)");
  if (!p.contains("add_prefix_space") || p["add_prefix_space"] != false)
    fail(origin, "pre_tokenizer.add_prefix_space",
         "must be false (a prefix space is not supported; Hugging Face's default is true)");
  if (p.contains("use_regex") && p["use_regex"] != true)
    fail(origin, "pre_tokenizer.use_regex", "must be true (GPT-2's pattern)");
}

}  // namespace

Tokenizer Tokenizer::from_json(std::string_view json_text, const std::string& origin) {
  const json j = parse_json(json_text, origin);
  if (!j.is_object()) fail(origin, "", "expected a JSON object (a tokenizer.json)");
  if (!j.contains("model")) fail(origin, "model", "missing");
  const json& m = j["model"];
  if (!m.is_object()) fail(origin, "model", "expected an object");
  if (m.contains("type") && m["type"] != "BPE")
    fail(origin, "model.type",
         "expected \"BPE\", got " + m["type"].dump() + " (only byte-level BPE is supported)");
  if (m.contains("dropout") && !m["dropout"].is_null())
    fail(origin, "model.dropout", "BPE dropout is not supported (expected null)");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (!is_null_or_empty(m, key))
      fail(origin, std::string("model.") + key, "not supported (expected \"\" or null)");
  bool ignore_merges = false;
  if (m.contains("ignore_merges")) {
    if (!m["ignore_merges"].is_boolean())
      fail(origin, "model.ignore_merges", "expected true or false");
    ignore_merges = m["ignore_merges"].get<bool>();
  }
  if (j.contains("normalizer") && !j["normalizer"].is_null())
    fail(origin, "normalizer",
         "not supported (expected null), got " + j["normalizer"].dump().substr(0, 200));
  check_pre_tokenizer(j, origin);
  if (!m.contains("vocab")) fail(origin, "model.vocab", "missing");
  if (!m.contains("merges")) fail(origin, "model.merges", "missing");

  const json* added_tokens =
      j.contains("added_tokens") && !j["added_tokens"].is_null() ? &j["added_tokens"] : nullptr;
  if (added_tokens != nullptr && !added_tokens->is_array())
    fail(origin, "added_tokens", "expected an array");
  Vocab vocab =
      read_vocab(m["vocab"], origin, "model.vocab", added_tokens ? added_tokens->size() : 0);
  if (added_tokens != nullptr) {
    const json& added = *added_tokens;
    for (std::size_t i = 0; i < added.size(); ++i) {
      const std::string field = "added_tokens[" + std::to_string(i) + "]";
      const json& t = added[i];
      if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() ||
          t["id"].get<std::int64_t>() < 0 || t["id"].get<std::int64_t>() > 0x7FFFFFFE)
        fail(origin, field, "expected {\"id\": N, \"content\": \"...\"} with 0 <= N < 2^31-1");
      if (!t.contains("content") || !t["content"].is_string() ||
          t["content"].get<std::string>().empty())
        fail(origin, field + ".content", "expected a non-empty string");
      add_special(vocab, t["content"].get<std::string>(), t["id"].get<std::size_t>(), origin,
                  field);
    }
  }
  std::vector<std::string> tokens = finish_vocab(vocab, origin, "model.vocab");

  const json& merges_json = m["merges"];
  if (!merges_json.is_array()) fail(origin, "model.merges", "expected an array");
  std::vector<std::pair<std::int32_t, std::int32_t>> merges;
  merges.reserve(merges_json.size());
  for (std::size_t i = 0; i < merges_json.size(); ++i) {
    const std::string field = "model.merges[" + std::to_string(i) + "]";
    const json& e = merges_json[i];
    std::string a, b;
    if (e.is_string()) {
      const std::string s = e.get<std::string>();
      const std::size_t space = s.find(' ');
      if (space == std::string::npos || space == 0 || space + 1 == s.size() ||
          s.find(' ', space + 1) != std::string::npos)
        fail(origin, field, "expected \"a b\" (two tokens and one space), got " + e.dump());
      a = s.substr(0, space);
      b = s.substr(space + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      a = e[0].get<std::string>();
      b = e[1].get<std::string>();
    } else {
      fail(origin, field, "expected \"a b\" or [\"a\", \"b\"], got " + e.dump().substr(0, 200));
    }
    merges.push_back(merge_ids(vocab, a, b, origin, field, "model.vocab"));
  }
  return from_parts(std::move(tokens), std::move(merges), std::move(vocab.specials), origin,
                    ignore_merges);
}

Tokenizer Tokenizer::from_gpt2_files(const std::string& encoder_json_path,
                                     const std::string& vocab_bpe_path) {
  const json enc =
      parse_json(io::read_file(encoder_json_path, io::kMaxTokenizerBytes), encoder_json_path);
  Vocab vocab = read_vocab(enc, encoder_json_path, "", 0);
  if (const auto eot = vocab.id_of(std::string(kEot)))
    add_special(vocab, std::string(kEot), static_cast<std::size_t>(*eot), encoder_json_path, "");
  std::vector<std::string> tokens = finish_vocab(vocab, encoder_json_path, "");

  const std::string text = io::read_file(vocab_bpe_path, io::kMaxTokenizerBytes);
  const std::string vocab_name = fs::path(encoder_json_path).filename().string();
  std::vector<std::pair<std::int32_t, std::int32_t>> merges;
  std::size_t line_no = 0;
  for (std::size_t pos = 0; pos < text.size();) {
    std::size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) eol = text.size();
    std::string line = text.substr(pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (line_no == 1 && line.rfind("#version", 0) == 0)) continue;
    const std::string where = "line " + std::to_string(line_no);
    const std::size_t space = line.find(' ');
    if (space == std::string::npos || space == 0 || space + 1 == line.size() ||
        line.find(' ', space + 1) != std::string::npos)
      fail(vocab_bpe_path, where,
           "expected two tokens separated by one space, got " + in_quotes(line));
    merges.push_back(merge_ids(vocab, line.substr(0, space), line.substr(space + 1), vocab_bpe_path,
                               where, vocab_name));
  }
  return from_parts(std::move(tokens), std::move(merges), std::move(vocab.specials),
                    encoder_json_path);
}

std::string Tokenizer::to_json() const {
  const Impl& impl = *impl_;
  auto q = [](std::string_view s) { return json(std::string(s)).dump(); };
  std::string out;
  out.reserve(impl.tokens.size() * 40 + 1024);
  out += "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n";
  out += "  \"added_tokens\": [";
  for (std::size_t i = 0; i < impl.specials.size(); ++i) {
    const SpecialToken& sp = impl.specials[i];
    out += i ? ",\n" : "\n";
    out += "    {\"id\": " + std::to_string(sp.id) + ", \"content\": " + q(sp.content) +
           ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": "
           "false, \"special\": true}";
  }
  out += impl.specials.empty() ? "],\n" : "\n  ],\n";
  out += "  \"normalizer\": null,\n";
  out +=
      "  \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
      "\"trim_offsets\": true, \"use_regex\": true},\n";
  out +=
      "  \"post_processor\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, "
      "\"trim_offsets\": false, \"use_regex\": true},\n";
  out +=
      "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, "
      "\"trim_offsets\": true, \"use_regex\": true},\n";
  out +=
      "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n";
  out += "    \"continuing_subword_prefix\": \"\",\n    \"end_of_word_suffix\": \"\",\n";
  out += "    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n";
  out += std::string("    \"ignore_merges\": ") + (impl.ignore_merges ? "true" : "false") + ",\n";
  out += "    \"vocab\": {";
  // Special tokens appear in the vocabulary under their own text (as in GPT-2's file),
  // so that Hugging Face finds them there and keeps their ids.
  for (std::size_t id = 0; id < impl.tokens.size(); ++id) {
    out += id ? ",\n      " : "\n      ";
    out += q(impl.is_special[id] ? impl.tokens[id] : to_unicode_string(impl.tokens[id]));
    out += ": " + std::to_string(id);
  }
  out += "\n    },\n    \"merges\": [";
  for (std::size_t r = 0; r < impl.merges.size(); ++r) {
    out += r ? ",\n      " : "\n      ";
    // Byte-level token strings never hold a space (the byte 0x20 is written U+0120).
    out += q(to_unicode_string(impl.tokens[impl.merges[r].first]) + " " +
             to_unicode_string(impl.tokens[impl.merges[r].second]));
  }
  out += impl.merges.empty() ? "]\n  }\n}\n" : "\n    ]\n  }\n}\n";
  return out;
}

void Tokenizer::save(const std::string& path) const { io::write_file_atomic(path, to_json()); }

Tokenizer load_tokenizer(const std::string& spec) {
  if (spec == "byte" || spec == "bytes") return Tokenizer::bytes();
  if (spec.empty())
    throw std::runtime_error(
        "--tokenizer: empty (expected \"byte\", a tokenizer.json, or a "
        "folder holding one or GPT-2's encoder.json + vocab.bpe)");
  std::error_code ec;
  const fs::file_status status = fs::status(spec, ec);
  if (fs::is_directory(status)) {
    const fs::path dir(spec);
    auto has = [&](const char* name) { return fs::is_regular_file(dir / name, ec); };
    if (has("tokenizer.json")) {
      const std::string path = (dir / "tokenizer.json").string();
      return Tokenizer::from_json(io::read_file(path, io::kMaxTokenizerBytes), path);
    }
    if (has("encoder.json") && has("vocab.bpe"))
      return Tokenizer::from_gpt2_files((dir / "encoder.json").string(),
                                        (dir / "vocab.bpe").string());
    if (has("vocab.json") && has("merges.txt"))
      return Tokenizer::from_gpt2_files((dir / "vocab.json").string(),
                                        (dir / "merges.txt").string());
    throw std::runtime_error(spec +
                             ": the folder holds no tokenizer.json, encoder.json + vocab.bpe "
                             "or vocab.json + merges.txt");
  }
  if (fs::exists(status))
    return Tokenizer::from_json(io::read_file(spec, io::kMaxTokenizerBytes), spec);
  throw std::runtime_error("tokenizer " + spec +
                           ": no such file or folder (expected \"byte\", a tokenizer.json, or a "
                           "folder holding one or GPT-2's encoder.json + vocab.bpe)");
}

std::string read_text(const std::string& path) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (!fs::exists(status)) throw std::runtime_error(path + ": no such file or folder");
  if (!fs::is_directory(status)) return io::read_file(path, io::kNoLimit);
  const std::vector<std::string> files = io::list_files(path);
  std::string text;
  for (std::size_t i = 0; i < files.size(); ++i) {
    if (i > 0) text += '\n';
    text += io::read_file(files[i], io::kNoLimit);
  }
  return text;
}

}  // namespace whtlm::tok
