// safetensors reading (header validated on open, tensors read by offset) and writing
// (streamed through an atomic temp file). The format: u64 little-endian header length N,
// N bytes of JSON, then the data.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "whtlm/io.hpp"

namespace whtlm::io {

// Tensor bytes are stored little-endian and we hand them out unconverted.
static_assert(std::endian::native == std::endian::little, "whtlm assumes a little-endian host");

namespace {

using nlohmann::json;

constexpr const char* kMetadataKey = "__metadata__";

struct DTypeEntry {
  DType dtype;
  const char* name;
  std::size_t size;
};
constexpr DTypeEntry kDTypes[] = {
    {DType::f32, "F32", 4},   {DType::f64, "F64", 8}, {DType::f16, "F16", 2},
    {DType::bf16, "BF16", 2}, {DType::i32, "I32", 4}, {DType::i64, "I64", 8},
    {DType::u16, "U16", 2},   {DType::u8, "U8", 1},
};

const DTypeEntry& entry(DType d) {
  for (const auto& e : kDTypes)
    if (e.dtype == d) return e;
  throw std::invalid_argument("whtlm::io: invalid DType value " +
                              std::to_string(static_cast<int>(d)));
}

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": " + what);
}

// numel * element size, or nullopt when a dimension is negative or the product overflows.
std::optional<std::size_t> byte_count(const std::vector<std::int64_t>& shape, std::size_t elem) {
  std::size_t n = elem;
  for (std::int64_t d : shape) {
    if (d < 0) return std::nullopt;
    if (__builtin_mul_overflow(n, static_cast<std::uint64_t>(d), &n)) return std::nullopt;
  }
  return n;
}

// A JSON value that is a non-negative integer fitting `limit`, else nullopt.
std::optional<std::uint64_t> as_count(const json& v, std::uint64_t limit) {
  if (v.is_number_unsigned()) {
    auto u = v.get<std::uint64_t>();
    if (u <= limit) return u;
  } else if (v.is_number_integer() && v.get<std::int64_t>() >= 0) {
    return static_cast<std::uint64_t>(v.get<std::int64_t>());
  }
  return std::nullopt;
}

// Parses the header JSON, refusing a name that appears twice (plain parsing would silently keep
// the last one).
json parse_header(const std::string& path, const char* begin, const char* end) {
  std::set<std::string> seen;
  std::string repeated;
  auto on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth == 1 && event == json::parse_event_t::key && parsed.is_string()) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!seen.insert(key).second && repeated.empty()) repeated = key;
    }
    return true;
  };
  json header;
  try {
    header = json::parse(begin, end, on_event);
  } catch (const json::exception& e) {
    fail(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) fail(path, "header is not a JSON object");
  if (!repeated.empty()) fail(path, "header lists '" + repeated + "' more than once");
  return header;
}

TensorInfo parse_entry(const std::string& path, const std::string& name, const json& v) {
  auto bad = [&](const std::string& what) { fail(path, "tensor '" + name + "': " + what); };
  if (!v.is_object()) bad("entry is not a JSON object");

  TensorInfo t;
  t.name = name;

  auto dt = v.find("dtype");
  if (dt == v.end() || !dt->is_string()) bad("missing \"dtype\" string");
  auto dtype = dtype_from_name(dt->get_ref<const std::string&>());
  if (!dtype) bad("unknown dtype \"" + dt->get<std::string>() + "\"");
  t.dtype = *dtype;

  auto sh = v.find("shape");
  if (sh == v.end() || !sh->is_array()) bad("missing \"shape\" array");
  for (const json& d : *sh) {
    auto n = as_count(d, static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()));
    if (!n) bad("shape " + sh->dump() + " is not a list of non-negative integers");
    t.shape.push_back(static_cast<std::int64_t>(*n));
  }

  auto off = v.find("data_offsets");
  if (off == v.end() || !off->is_array() || off->size() != 2) {
    bad("missing \"data_offsets\" [begin, end]");
  }
  auto begin = as_count((*off)[0], std::numeric_limits<std::size_t>::max());
  auto end = as_count((*off)[1], std::numeric_limits<std::size_t>::max());
  if (!begin || !end || *end < *begin) {
    bad("data_offsets " + off->dump() + " is not a pair of integers 0 <= begin <= end");
  }
  t.offset = *begin;
  t.nbytes = *end - *begin;

  auto want = byte_count(t.shape, dtype_size(t.dtype));
  if (!want) bad("shape " + shape_string(t.shape) + " is too large");
  if (*want != t.nbytes) {
    bad("data_offsets " + off->dump() + " span " + std::to_string(t.nbytes) + " bytes, but " +
        dtype_name(t.dtype) + " " + shape_string(t.shape) + " needs " + std::to_string(*want));
  }
  return t;
}

}  // namespace

const char* dtype_name(DType d) { return entry(d).name; }
std::size_t dtype_size(DType d) { return entry(d).size; }

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& e : kDTypes)
    if (name == e.name) return e.dtype;
  return std::nullopt;
}

std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

std::size_t TensorInfo::numel() const {
  std::size_t n = 1;
  for (std::int64_t d : shape) n *= static_cast<std::size_t>(d);
  return n;
}

// ---------------------------------------------------------------------------------------------
// Reading

SafetensorsReader::SafetensorsReader(const std::string& path) : path_(path), file_(path) {
  const std::uint64_t size = file_.size();
  if (size < 8) {
    fail(path, "file is " + std::to_string(size) +
                   " bytes, too short for the 8-byte header length of a safetensors file");
  }
  unsigned char len[8];
  file_.read_at(0, len, sizeof len);
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len[i];
  const std::uint64_t room = size - 8;
  if (header_len > room) {
    fail(path, "header length " + std::to_string(header_len) + " goes past the end of the file (" +
                   std::to_string(room) + " bytes after the length field)");
  }
  // The format's reference reader refuses headers above 100 MB; so do we, before
  // allocating for one.
  constexpr std::uint64_t kMaxHeader = 100'000'000;
  if (header_len > kMaxHeader)
    fail(path, "header length " + std::to_string(header_len) + " is above the format's limit of " +
                   std::to_string(kMaxHeader) + " bytes");
  std::string text(static_cast<std::size_t>(header_len), '\0');
  file_.read_at(8, text.data(), text.size());
  json header = parse_header(path, text.data(), text.data() + text.size());

  data_start_ = 8 + header_len;
  const std::uint64_t data_size = room - header_len;

  for (const auto& [key, value] : header.items()) {
    if (key == kMetadataKey) {
      if (!value.is_object()) fail(path, "\"__metadata__\" is not a JSON object");
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string()) {
          fail(path, "\"__metadata__\" value of '" + mk + "' is not a string: " + mv.dump());
        }
        metadata_.emplace(mk, mv.get<std::string>());
      }
      continue;
    }
    tensors_.emplace(key, parse_entry(path, key, value));
  }

  // Bounds: report the largest end first, as "truncated" is the common failure.
  std::vector<const TensorInfo*> by_offset;
  std::uint64_t max_end = 0;
  for (const auto& [name, t] : tensors_) {
    by_offset.push_back(&t);
    std::uint64_t end = 0;
    if (__builtin_add_overflow(std::uint64_t{t.offset}, std::uint64_t{t.nbytes}, &end))
      end = ~std::uint64_t{0};
    max_end = std::max(max_end, end);
  }
  if (max_end > data_size) {
    fail(path, "truncated: header says " + std::to_string(max_end) +
                   " bytes of tensor data, file has " + std::to_string(data_size));
  }
  // Overlaps: in offset order, each tensor must begin at or after the previous one's end.
  // Empty tensors occupy no bytes and overlap nothing.
  std::erase_if(by_offset, [](const TensorInfo* t) { return t->nbytes == 0; });
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
  for (std::size_t i = 1; i < by_offset.size(); ++i) {
    const TensorInfo& prev = *by_offset[i - 1];
    const TensorInfo& cur = *by_offset[i];
    if (cur.offset < prev.offset + prev.nbytes) {
      fail(path, "tensors '" + prev.name + "' and '" + cur.name + "' overlap (bytes [" +
                     std::to_string(prev.offset) + ", " +
                     std::to_string(prev.offset + prev.nbytes) + ") and [" +
                     std::to_string(cur.offset) + ", " + std::to_string(cur.offset + cur.nbytes) +
                     "))");
    }
  }
}

std::vector<std::string> SafetensorsReader::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [name, t] : tensors_) out.push_back(name);  // std::map keeps them sorted
  return out;
}

bool SafetensorsReader::contains(const std::string& name) const {
  return tensors_.count(name) != 0;
}

const TensorInfo& SafetensorsReader::info(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) fail(path_, "no tensor named '" + name + "'");
  return it->second;
}

void SafetensorsReader::read_bytes(const std::string& name, void* dst) const {
  const TensorInfo& t = info(name);
  if (t.nbytes > 0) file_.read_at(data_start_ + t.offset, dst, t.nbytes);
}

void SafetensorsReader::read_checked(const std::string& name, DType dtype,
                                     const std::vector<std::int64_t>& shape, void* dst) const {
  const TensorInfo& t = info(name);
  if (t.dtype != dtype || t.shape != shape) {
    fail(path_, "tensor '" + name + "': expected " + dtype_name(dtype) + " " + shape_string(shape) +
                    ", found " + dtype_name(t.dtype) + " " + shape_string(t.shape));
  }
  if (t.nbytes > 0) file_.read_at(data_start_ + t.offset, dst, t.nbytes);
}

void SafetensorsReader::read_f32(const std::string& name, const std::vector<std::int64_t>& shape,
                                 float* dst) const {
  read_checked(name, DType::f32, shape, dst);
}

void SafetensorsReader::read_i32(const std::string& name, const std::vector<std::int64_t>& shape,
                                 std::int32_t* dst) const {
  read_checked(name, DType::i32, shape, dst);
}

// ---------------------------------------------------------------------------------------------
// Writing

FileChecksum write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                               const std::map<std::string, std::string>& metadata) {
  // Keys keep the caller's order in the header, which makes files easy to read by eye.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    auto& meta = header[kMetadataKey];
    meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
  }

  std::vector<std::size_t> sizes;
  sizes.reserve(tensors.size());
  std::set<std::string_view> seen;
  std::size_t offset = 0;
  for (const TensorToWrite& t : tensors) {
    auto bad = [&](const std::string& what) { fail(path, "tensor '" + t.name + "': " + what); };
    if (t.name.empty()) fail(path, "a tensor has an empty name");
    if (t.name.starts_with("__")) bad("names starting with \"__\" are reserved");
    if (!seen.insert(t.name).second) bad("name given more than once");
    auto n = byte_count(t.shape, dtype_size(t.dtype));
    if (!n) bad("shape " + shape_string(t.shape) + " has a negative dimension or is too large");
    if (*n > 0 && t.data == nullptr) bad("data pointer is null");
    header[t.name] = {{"dtype", dtype_name(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + *n}}};
    sizes.push_back(*n);
    offset += *n;
  }

  std::string text;
  try {
    text = header.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::strict);
  } catch (const nlohmann::json::exception& e) {
    fail(path, std::string("cannot encode header (names must be UTF-8): ") + e.what());
  }
  // Spaces after the JSON are allowed; they put the data section at a multiple of 8 bytes.
  text.append((8 - text.size() % 8) % 8, ' ');

  unsigned char len[8];
  std::uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));

  return write_file_atomic_with(path, [&](AtomicWriter& w) {
    w.write(len, sizeof len);
    w.write(text);
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      if (sizes[i] > 0) w.write(tensors[i].data, sizes[i]);
    }
  });
}

}  // namespace whtlm::io
