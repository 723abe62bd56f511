// GGUF v3 reading (header checked on open, tensors read by offset) and writing (streamed
// through an atomic temp file). Layout and the rules llama.cpp holds files to:
// ../shared/INTEROP.md section 1, summed up in whtlm/gguf.hpp.
#include "whtlm/gguf.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace whtlm::io {

static_assert(std::endian::native == std::endian::little, "whtlm assumes a little-endian host");

namespace {

constexpr char kMagic[4] = {'G', 'G', 'U', 'F'};
constexpr std::uint32_t kVersion = 3;
constexpr const char* kAlignmentKey = "general.alignment";
constexpr std::size_t kMaxTensorName = 63;  // llama.cpp: GGML_MAX_NAME 64 with the NUL
constexpr std::size_t kMaxKey = 65535;
constexpr std::uint32_t kMaxDims = 4;
constexpr int kMaxArrayDepth = 4;
constexpr std::uint64_t kMaxValues = std::uint64_t{1} << 23;
constexpr std::uint32_t kLastValueType = 12;
// A metadata string longer than this (the largest real ones, chat templates, are tens of
// KiB) is refused before it is allocated, whatever the file's size.
constexpr std::uint64_t kMaxString = std::uint64_t{256} << 20;

// Fewest bytes a KV pair (key of 1 byte, then a u8 value) and a tensor info (name of 1
// byte, one dim) take, for bounding the counts against the file's size.
constexpr std::uint64_t kMinKvBytes = 8 + 1 + 4 + 1;
constexpr std::uint64_t kMinTensorInfoBytes = 8 + 1 + 4 + 8 + 4 + 8;

struct TypeEntry {
  GgmlType type;
  const char* name;
  std::uint64_t block;        // elements per block
  std::uint64_t block_bytes;  // bytes per block
};
constexpr TypeEntry kTypes[] = {
    {GgmlType::f32, "F32", 1, 4},
    {GgmlType::f16, "F16", 1, 2},
    {GgmlType::q8_0, "Q8_0", 32, 34},
    {GgmlType::bf16, "BF16", 1, 2},
};

const TypeEntry* type_entry(std::uint32_t id) {
  for (const auto& e : kTypes)
    if (static_cast<std::uint32_t>(e.type) == id) return &e;
  return nullptr;
}

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": " + what);
}

// A problem found while parsing one field; the caller prefixes the file and the field.
struct Problem : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string num(std::uint64_t v) { return std::to_string(v); }

// A name or key as error messages show it: quoted, bytes outside printable ASCII as \xNN,
// long ones cut.
std::string printable(const std::string& s) {
  static const char* hex = "0123456789abcdef";
  std::string out = "'";
  for (std::size_t i = 0; i < s.size() && i < 96; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      out += "\\x";
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  if (s.size() > 96) out += "...";
  return out + "'";
}

// Why `key` is not a valid metadata key, or "" when it is: 1..65535 bytes of printable
// ASCII (the spec's lower_snake_case segments joined by '.' are not enforced).
std::string key_problem(const std::string& key) {
  if (key.empty()) return "the key is empty";
  if (key.size() > kMaxKey)
    return "the key is " + num(key.size()) + " bytes, over the limit of " + num(kMaxKey);
  for (char ch : key) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c >= 0x7f) return "the key " + printable(key) + " is not printable ASCII";
  }
  return {};
}

// Why `name` is not a valid tensor name, or "" when it is: 1..63 bytes, no control bytes.
std::string name_problem(const std::string& name) {
  if (name.empty()) return "the name is empty";
  if (name.size() > kMaxTensorName)
    return "the name is " + num(name.size()) + " bytes, over llama.cpp's limit of " +
           num(kMaxTensorName);
  for (char ch : name) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) return "the name holds the control byte " + printable(name);
  }
  return {};
}

bool is_power_of_two(std::uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

std::uint64_t pad(std::uint64_t v, std::uint64_t align) { return (v + align - 1) / align * align; }

std::string dims_string(const std::vector<std::uint64_t>& dims) {
  std::string s = "[";
  for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + num(dims[i]);
  return s + "]";
}

// Why `dims` are not a valid tensor shape, or "": 1..4 dims, each 1..INT64_MAX, product
// within INT64_MAX (llama.cpp's ne are int64).
std::string dims_problem(const std::vector<std::uint64_t>& dims) {
  if (dims.empty() || dims.size() > kMaxDims) return "n_dims " + num(dims.size()) + " is not 1..4";
  constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  std::uint64_t n = 1;
  for (std::uint64_t d : dims) {
    if (d == 0) return "dims " + dims_string(dims) + " hold a 0";
    if (d > kMax || __builtin_mul_overflow(n, d, &n) || n > kMax)
      return "dims " + dims_string(dims) + " overflow: more than 2^63 - 1 elements";
  }
  return {};
}

// Bytes of a tensor of a known type and valid dims, or a problem.
std::uint64_t tensor_bytes(const TypeEntry& t, const std::vector<std::uint64_t>& dims) {
  if (dims[0] % t.block != 0)
    throw Problem(std::string(t.name) + " needs ne0 (dims[0]) to be a multiple of " + num(t.block) +
                  ", found " + num(dims[0]));
  std::uint64_t n = dims[0] / t.block;
  for (std::size_t i = 1; i < dims.size(); ++i) n *= dims[i];  // checked by dims_problem
  std::uint64_t bytes = 0;
  if (__builtin_mul_overflow(n, t.block_bytes, &bytes) ||
      bytes > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
    throw Problem(std::string(t.name) + " " + dims_string(dims) + " is more than 2^63 - 1 bytes");
  return bytes;
}

// Smallest encoding of one value of each type (an array: its elem_type and count).
std::uint64_t min_value_bytes(std::uint32_t type) {
  switch (static_cast<GgufValueType>(type)) {
    case GgufValueType::u8:
    case GgufValueType::i8:
    case GgufValueType::boolean:
      return 1;
    case GgufValueType::u16:
    case GgufValueType::i16:
      return 2;
    case GgufValueType::u32:
    case GgufValueType::i32:
    case GgufValueType::f32:
      return 4;
    case GgufValueType::u64:
    case GgufValueType::i64:
    case GgufValueType::f64:
    case GgufValueType::string:
      return 8;
    case GgufValueType::array:
      return 12;
  }
  return 1;
}

// ---------------------------------------------------------------------------------------------
// Reading: a buffered cursor over the header. Every read is bounds-checked first.

class Cursor {
 public:
  explicit Cursor(const InputFile& f) : file_(f), size_(f.size()) {}

  std::uint64_t pos() const { return pos_; }
  std::uint64_t remaining() const { return size_ - pos_; }

  void read(void* dst, std::uint64_t n, const char* what) {
    if (n > remaining())
      throw Problem("truncated: " + std::string(what) + " needs " + num(n) + " bytes at offset " +
                    num(pos_) + ", the file ends at " + num(size_));
    auto* out = static_cast<char*>(dst);
    while (n > 0) {
      if (pos_ < buf_start_ || pos_ >= buf_start_ + buf_.size()) refill(n);
      const std::uint64_t at = pos_ - buf_start_;
      const std::uint64_t k = std::min<std::uint64_t>(n, buf_.size() - at);
      std::memcpy(out, buf_.data() + at, k);
      out += k;
      pos_ += k;
      n -= k;
    }
  }
  template <class T>
  T get(const char* what) {
    T v;
    read(&v, sizeof v, what);
    return v;
  }
  std::string string(const char* what) {
    const auto len = get<std::uint64_t>(what);
    if (len > remaining())
      throw Problem(std::string(what) + " length " + num(len) + " goes past the end of the file (" +
                    num(remaining()) + " bytes left at offset " + num(pos_) + ")");
    if (len > kMaxString)
      throw Problem(std::string(what) + " length " + num(len) + " is over the limit of " +
                    num(kMaxString) + " bytes");
    std::string s(static_cast<std::size_t>(len), '\0');
    read(s.data(), len, what);
    return s;
  }

 private:
  void refill(std::uint64_t want) {
    constexpr std::uint64_t kChunk = std::uint64_t{1} << 20;
    const std::uint64_t n = std::min(remaining(), std::max(want, kChunk));
    buf_.resize(static_cast<std::size_t>(std::min(n, kChunk)));
    buf_start_ = pos_;
    file_.read_at(pos_, buf_.data(), buf_.size());
  }

  const InputFile& file_;
  std::uint64_t size_;
  std::uint64_t pos_ = 0;
  std::vector<char> buf_;
  std::uint64_t buf_start_ = 0;
};

struct ValueParser {
  Cursor& in;
  std::uint64_t values = 0;  // parsed so far, array elements included

  void count(std::uint64_t n) {
    values += n;
    if (values > kMaxValues)
      throw Problem("more than " + num(kMaxValues) +
                    " metadata values (array elements included) in the file");
  }

  static std::uint32_t checked_type(std::uint32_t t, const char* what) {
    if (t > kLastValueType)
      throw Problem(std::string(what) + " " + num(t) + " is not a GGUF value type (0..12)");
    return t;
  }

  GgufValue value(std::uint32_t type, int depth) {
    GgufValue v;
    v.type = static_cast<GgufValueType>(type);
    switch (v.type) {
      case GgufValueType::u8:
        v.integer = in.get<std::uint8_t>("u8 value");
        break;
      case GgufValueType::i8:
        v.integer = in.get<std::int8_t>("i8 value");
        break;
      case GgufValueType::u16:
        v.integer = in.get<std::uint16_t>("u16 value");
        break;
      case GgufValueType::i16:
        v.integer = in.get<std::int16_t>("i16 value");
        break;
      case GgufValueType::u32:
        v.integer = in.get<std::uint32_t>("u32 value");
        break;
      case GgufValueType::i32:
        v.integer = in.get<std::int32_t>("i32 value");
        break;
      case GgufValueType::u64:
        v.integer = static_cast<std::int64_t>(in.get<std::uint64_t>("u64 value"));
        break;
      case GgufValueType::i64:
        v.integer = in.get<std::int64_t>("i64 value");
        break;
      case GgufValueType::f32:
        v.real = in.get<float>("f32 value");
        break;
      case GgufValueType::f64:
        v.real = in.get<double>("f64 value");
        break;
      case GgufValueType::boolean: {
        const auto b = in.get<std::uint8_t>("bool value");
        if (b > 1) throw Problem("bool value " + num(b) + " is not 0 or 1");
        v.integer = b;
        break;
      }
      case GgufValueType::string:
        v.text = in.string("string");
        break;
      case GgufValueType::array:
        array(v, depth + 1);
        break;
    }
    return v;
  }

  void array(GgufValue& v, int depth) {
    const std::uint32_t elem =
        checked_type(in.get<std::uint32_t>("array element type"), "array element type");
    v.elem_type = static_cast<GgufValueType>(elem);
    if (v.elem_type == GgufValueType::array && depth >= kMaxArrayDepth)
      throw Problem("arrays nested more than " + num(kMaxArrayDepth) + " deep");
    const auto n = in.get<std::uint64_t>("array count");
    const std::uint64_t min = min_value_bytes(elem);
    if (n > in.remaining() / min)
      throw Problem("array count " + num(n) + " of " +
                    gguf_value_type_name(static_cast<GgufValueType>(elem)) + " needs at least " +
                    num(min) + " bytes each, " + num(in.remaining()) +
                    " bytes are left at offset " + num(in.pos()));
    count(n);
    v.items.reserve(static_cast<std::size_t>(n));
    for (std::uint64_t i = 0; i < n; ++i) {
      try {
        v.items.push_back(value(elem, depth));
      } catch (const Problem& p) {
        throw Problem("array element " + num(i) + ": " + p.what());
      }
    }
  }
};

std::string type_name_of(const GgufValue& v) {
  std::string s = gguf_value_type_name(v.type);
  if (v.type == GgufValueType::array) s += std::string(" of ") + gguf_value_type_name(v.elem_type);
  return s;
}

// ---------------------------------------------------------------------------------------------
// Writing

void put(std::string& out, const void* p, std::size_t n) {
  out.append(static_cast<const char*>(p), n);
}
template <class T>
void put(std::string& out, T v) {
  put(out, &v, sizeof v);
}
void put_string(std::string& out, const std::string& s) {
  put<std::uint64_t>(out, s.size());
  out += s;
}

// Why `v` cannot be written as it is, or "". `depth` counts the arrays `v` is in, itself
// included (1 for a key's value), as the reader counts them.
std::string value_problem(const GgufValue& v, int depth) {
  const auto t = static_cast<std::uint32_t>(v.type);
  if (t > kLastValueType) return "value type " + num(t) + " is not a GGUF value type (0..12)";
  auto range = [&](std::int64_t lo, std::int64_t hi) -> std::string {
    if (v.integer < lo || v.integer > hi)
      return std::to_string(v.integer) + " does not fit " + gguf_value_type_name(v.type);
    return {};
  };
  switch (v.type) {
    case GgufValueType::u8:
      return range(0, 255);
    case GgufValueType::i8:
      return range(-128, 127);
    case GgufValueType::u16:
      return range(0, 65535);
    case GgufValueType::i16:
      return range(-32768, 32767);
    case GgufValueType::u32:
      return range(0, 4294967295);
    case GgufValueType::i32:
      return range(std::numeric_limits<std::int32_t>::min(),
                   std::numeric_limits<std::int32_t>::max());
    case GgufValueType::boolean:
      return range(0, 1);
    case GgufValueType::array: {
      const auto e = static_cast<std::uint32_t>(v.elem_type);
      if (e > kLastValueType) return "array element type " + num(e) + " is not a GGUF value type";
      if (v.elem_type == GgufValueType::array && depth >= kMaxArrayDepth)
        return "arrays nested more than " + num(kMaxArrayDepth) + " deep";
      for (std::size_t i = 0; i < v.items.size(); ++i) {
        if (v.items[i].type != v.elem_type)
          return "array element " + num(i) + " is " + gguf_value_type_name(v.items[i].type) +
                 ", the array's elements are " + gguf_value_type_name(v.elem_type);
        std::string p = value_problem(v.items[i], depth + 1);
        if (!p.empty()) return "array element " + num(i) + ": " + p;
      }
      return {};
    }
    default:
      return {};
  }
}

void put_value(std::string& out, const GgufValue& v) {
  switch (v.type) {
    case GgufValueType::u8:
      put(out, static_cast<std::uint8_t>(v.integer));
      break;
    case GgufValueType::i8:
      put(out, static_cast<std::int8_t>(v.integer));
      break;
    case GgufValueType::u16:
      put(out, static_cast<std::uint16_t>(v.integer));
      break;
    case GgufValueType::i16:
      put(out, static_cast<std::int16_t>(v.integer));
      break;
    case GgufValueType::u32:
      put(out, static_cast<std::uint32_t>(v.integer));
      break;
    case GgufValueType::i32:
      put(out, static_cast<std::int32_t>(v.integer));
      break;
    case GgufValueType::u64:
      put(out, static_cast<std::uint64_t>(v.integer));
      break;
    case GgufValueType::i64:
      put(out, v.integer);
      break;
    case GgufValueType::f32:
      put(out, static_cast<float>(v.real));
      break;
    case GgufValueType::f64:
      put(out, v.real);
      break;
    case GgufValueType::boolean:
      put(out, static_cast<std::uint8_t>(v.integer != 0));
      break;
    case GgufValueType::string:
      put_string(out, v.text);
      break;
    case GgufValueType::array:
      put(out, static_cast<std::uint32_t>(v.elem_type));
      put<std::uint64_t>(out, v.items.size());
      for (const GgufValue& item : v.items) put_value(out, item);
      break;
  }
}

}  // namespace

std::string ggml_type_name(std::uint32_t type_id) {
  const TypeEntry* e = type_entry(type_id);
  return e != nullptr ? e->name : "type " + num(type_id);
}

bool ggml_type_known(std::uint32_t type_id) { return type_entry(type_id) != nullptr; }

std::uint64_t ggml_row_bytes(GgmlType type, std::uint64_t ne0) {
  const TypeEntry* e = type_entry(static_cast<std::uint32_t>(type));
  if (e == nullptr)
    throw std::invalid_argument("ggml_row_bytes: ggml type " +
                                num(static_cast<std::uint32_t>(type)) + " is not one whtlm knows");
  if (ne0 % e->block != 0)
    throw std::invalid_argument("ggml_row_bytes: a " + std::string(e->name) + " row of " +
                                num(ne0) + " elements is not a multiple of its block of " +
                                num(e->block));
  std::uint64_t bytes = 0;
  if (__builtin_mul_overflow(ne0 / e->block, e->block_bytes, &bytes))
    throw std::invalid_argument("ggml_row_bytes: a " + std::string(e->name) + " row of " +
                                num(ne0) + " elements overflows 64 bits");
  return bytes;
}

const char* gguf_value_type_name(GgufValueType t) {
  switch (t) {
    case GgufValueType::u8:
      return "u8";
    case GgufValueType::i8:
      return "i8";
    case GgufValueType::u16:
      return "u16";
    case GgufValueType::i16:
      return "i16";
    case GgufValueType::u32:
      return "u32";
    case GgufValueType::i32:
      return "i32";
    case GgufValueType::f32:
      return "f32";
    case GgufValueType::boolean:
      return "bool";
    case GgufValueType::string:
      return "string";
    case GgufValueType::array:
      return "array";
    case GgufValueType::u64:
      return "u64";
    case GgufValueType::i64:
      return "i64";
    case GgufValueType::f64:
      return "f64";
  }
  return "invalid";
}

std::uint64_t GgufTensorInfo::numel() const {
  std::uint64_t n = 1;
  for (std::uint64_t d : dims) n *= d;
  return n;
}

// ---------------------------------------------------------------------------------------------
// GgufReader

GgufReader::GgufReader(const std::string& path) : file_(path) {
  Cursor in(file_);
  const std::uint64_t size = file_.size();
  auto header = [&](const char* field, auto&& f) {
    try {
      return f();
    } catch (const Problem& p) {
      fail(path, std::string("header ") + field + ": " + p.what());
    }
  };

  char magic[4];
  header("magic", [&] { in.read(magic, 4, "the magic \"GGUF\""); });
  if (std::memcmp(magic, kMagic, 4) != 0)
    fail(path,
         "header magic: " + printable(std::string(magic, 4)) + ", not 'GGUF': not a GGUF file");
  version_ = header("version", [&] { return in.get<std::uint32_t>("the version"); });
  if (version_ != kVersion) {
    std::string why = version_ == 1 || version_ == 2
                          ? ": GGUF v1 and v2 are not read; convert the file to v3"
                      : (version_ & 0xffff) == 0 ? ": a big-endian file? only little-endian is read"
                                                 : ": not a GGUF version";
    fail(path, "header version: found " + num(version_) + ", expected 3" + why);
  }
  const auto n_tensors =
      header("tensor_count", [&] { return in.get<std::uint64_t>("tensor_count"); });
  const auto n_kv =
      header("metadata_kv_count", [&] { return in.get<std::uint64_t>("metadata_kv_count"); });
  const std::uint64_t room = in.remaining();
  if (n_kv > room / kMinKvBytes)
    fail(path, "header metadata_kv_count: " + num(n_kv) + " key-value pairs need at least " +
                   num(kMinKvBytes) + " bytes each, the file has " + num(room) +
                   " after the header");
  if (n_tensors > (room - n_kv * kMinKvBytes) / kMinTensorInfoBytes)
    fail(path, "header tensor_count: " + num(n_tensors) + " tensors need at least " +
                   num(kMinTensorInfoBytes) + " bytes of info each, the file has " +
                   num(room - n_kv * kMinKvBytes) + " after the header and metadata");

  ValueParser values{in};
  for (std::uint64_t i = 0; i < n_kv; ++i) {
    std::string field = "metadata key #" + num(i) + " (of " + num(n_kv) + ")";
    try {
      std::string key = in.string("key");
      if (std::string p = key_problem(key); !p.empty()) throw Problem(p);
      field = "metadata " + key;
      if (metadata_.count(key) != 0) throw Problem("the key appears more than once");
      const std::uint32_t type =
          ValueParser::checked_type(in.get<std::uint32_t>("value type"), "value type");
      GgufValue v = values.value(type, 0);
      values.count(1);
      key_order_.push_back(key);
      metadata_.emplace(std::move(key), std::move(v));
    } catch (const Problem& p) {
      fail(path, field + ": " + p.what());
    }
  }

  if (auto it = metadata_.find(kAlignmentKey); it != metadata_.end()) {
    const GgufValue& v = it->second;
    if (v.type != GgufValueType::u32)
      fail(path, std::string("metadata ") + kAlignmentKey + ": type " + type_name_of(v) +
                     ", llama.cpp requires u32");
    if (!is_power_of_two(static_cast<std::uint64_t>(v.integer)))
      fail(path, std::string("metadata ") + kAlignmentKey + ": " + std::to_string(v.integer) +
                     " is not a power of two");
    alignment_ = static_cast<std::uint32_t>(v.integer);
  }

  std::vector<std::uint64_t> rel_offsets;
  // The count is only bounded by the file's size: reserve no more than a real model has.
  tensors_.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(n_tensors, 4096)));
  for (std::uint64_t i = 0; i < n_tensors; ++i) {
    std::string field = "tensor #" + num(i) + " (of " + num(n_tensors) + ")";
    try {
      GgufTensorInfo t;
      t.name = in.string("name");
      if (std::string p = name_problem(t.name); !p.empty()) throw Problem(p);
      field = "tensor " + printable(t.name);
      if (tensor_index_.count(t.name) != 0) throw Problem("the name appears more than once");
      const auto n_dims = in.get<std::uint32_t>("n_dims");
      if (n_dims < 1 || n_dims > kMaxDims) throw Problem("n_dims " + num(n_dims) + " is not 1..4");
      for (std::uint32_t d = 0; d < n_dims; ++d) t.dims.push_back(in.get<std::uint64_t>("dim"));
      if (std::string p = dims_problem(t.dims); !p.empty()) throw Problem(p);
      t.type = in.get<std::uint32_t>("ggml type");
      const auto offset = in.get<std::uint64_t>("offset");
      if (offset % alignment_ != 0)
        throw Problem("offset " + num(offset) + " is not a multiple of the alignment " +
                      num(alignment_));
      if (const TypeEntry* e = type_entry(t.type)) t.nbytes = tensor_bytes(*e, t.dims);
      rel_offsets.push_back(offset);
      tensor_index_.emplace(t.name, tensors_.size());
      tensors_.push_back(std::move(t));
    } catch (const Problem& p) {
      fail(path, field + ": " + p.what());
    }
  }

  // The data section starts at the end of the infos padded to the alignment.
  const std::uint64_t data_start = pad(in.pos(), alignment_);
  for (std::size_t i = 0; i < tensors_.size(); ++i) {
    GgufTensorInfo& t = tensors_[i];
    const std::uint64_t rel = rel_offsets[i];
    const std::uint64_t room_after = data_start <= size ? size - data_start : 0;
    if (rel > room_after || t.nbytes > room_after - rel)
      fail(path, "tensor " + printable(t.name) + ": data at offset " + num(rel) +
                     " of the data section (which starts at " + num(data_start) + "), " +
                     num(t.nbytes) + " bytes of " + ggml_type_name(t.type) + " " +
                     dims_string(t.dims) + ", go past the end of the file (" + num(size) +
                     " bytes): truncated?");
    t.offset = data_start + rel;
  }
  std::vector<const GgufTensorInfo*> by_offset;
  for (const GgufTensorInfo& t : tensors_)
    if (t.nbytes > 0) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const GgufTensorInfo* a, const GgufTensorInfo* b) { return a->offset < b->offset; });
  for (std::size_t i = 1; i < by_offset.size(); ++i) {
    const GgufTensorInfo& a = *by_offset[i - 1];
    const GgufTensorInfo& b = *by_offset[i];
    if (b.offset < a.offset + a.nbytes)
      fail(path, "tensor " + printable(b.name) + ": its bytes [" + num(b.offset) + ", " +
                     num(b.offset + b.nbytes) + ") overlap those of tensor " + printable(a.name) +
                     " [" + num(a.offset) + ", " + num(a.offset + a.nbytes) + ")");
  }
}

const GgufValue& GgufReader::value(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) fail(path(), "metadata " + key + ": missing");
  return it->second;
}

namespace {

const GgufValue& typed(const GgufReader& r, const std::string& key, GgufValueType type,
                       GgufValueType elem = GgufValueType::u8) {
  const GgufValue& v = r.value(key);
  const bool ok = v.type == type && (type != GgufValueType::array || v.elem_type == elem);
  if (!ok) {
    std::string want = gguf_value_type_name(type);
    if (type == GgufValueType::array) want += std::string(" of ") + gguf_value_type_name(elem);
    fail(r.path(), "metadata " + key + ": type " + type_name_of(v) + ", expected " + want);
  }
  return v;
}

}  // namespace

std::uint32_t GgufReader::get_u32(const std::string& key) const {
  return static_cast<std::uint32_t>(typed(*this, key, GgufValueType::u32).integer);
}

float GgufReader::get_f32(const std::string& key) const {
  return static_cast<float>(typed(*this, key, GgufValueType::f32).real);
}

bool GgufReader::get_bool(const std::string& key) const {
  return typed(*this, key, GgufValueType::boolean).integer != 0;
}

std::string GgufReader::get_string(const std::string& key) const {
  return typed(*this, key, GgufValueType::string).text;
}

std::vector<std::string> GgufReader::get_string_array(const std::string& key) const {
  const GgufValue& v = typed(*this, key, GgufValueType::array, GgufValueType::string);
  std::vector<std::string> out;
  out.reserve(v.items.size());
  for (const GgufValue& item : v.items) out.push_back(item.text);
  return out;
}

std::vector<std::int32_t> GgufReader::get_i32_array(const std::string& key) const {
  const GgufValue& v = typed(*this, key, GgufValueType::array, GgufValueType::i32);
  std::vector<std::int32_t> out;
  out.reserve(v.items.size());
  for (const GgufValue& item : v.items) out.push_back(static_cast<std::int32_t>(item.integer));
  return out;
}

std::vector<float> GgufReader::get_f32_array(const std::string& key) const {
  const GgufValue& v = typed(*this, key, GgufValueType::array, GgufValueType::f32);
  std::vector<float> out;
  out.reserve(v.items.size());
  for (const GgufValue& item : v.items) out.push_back(static_cast<float>(item.real));
  return out;
}

const GgufTensorInfo* GgufReader::find(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

void GgufReader::read_bytes(const std::string& name, void* dst) const {
  const GgufTensorInfo* t = find(name);
  if (t == nullptr) fail(path(), "tensor " + printable(name) + ": no tensor of that name");
  if (!ggml_type_known(t->type))
    fail(path(), "tensor " + printable(name) + ": ggml type " + num(t->type) + " (" +
                     ggml_type_name(t->type) + ") is not one whtlm reads (F32, F16, Q8_0, BF16)");
  file_.read_at(t->offset, dst, static_cast<std::size_t>(t->nbytes));
}

// ---------------------------------------------------------------------------------------------
// GgufWriter

void GgufWriter::add_value(const std::string& key, const GgufValue& v) {
  auto bad = [&](const std::string& what) {
    throw std::invalid_argument("gguf: metadata " + (key.empty() ? "''" : key) + ": " + what);
  };
  if (std::string p = key_problem(key); !p.empty()) bad(p);
  for (const auto& [k, old] : metadata_)
    if (k == key) bad("the key is added more than once");
  if (std::string p = value_problem(v, 1); !p.empty()) bad(p);
  if (key == kAlignmentKey) {
    if (v.type != GgufValueType::u32) bad("type " + type_name_of(v) + ", llama.cpp requires u32");
    if (!is_power_of_two(static_cast<std::uint64_t>(v.integer)))
      bad(std::to_string(v.integer) + " is not a power of two");
    alignment_ = static_cast<std::uint32_t>(v.integer);
  }
  metadata_.emplace_back(key, v);
}

void GgufWriter::add(const std::string& key, GgufValue v) { add_value(key, v); }

namespace {

GgufValue scalar(GgufValueType t, std::int64_t integer, double real = 0) {
  GgufValue v;
  v.type = t;
  v.integer = integer;
  v.real = real;
  return v;
}

template <class T, class F>
GgufValue array_of(GgufValueType elem, const std::vector<T>& items, F&& make) {
  GgufValue v;
  v.type = GgufValueType::array;
  v.elem_type = elem;
  v.items.reserve(items.size());
  for (const T& x : items) v.items.push_back(make(x));
  return v;
}

}  // namespace

void GgufWriter::add_u32(const std::string& key, std::uint32_t v) {
  add(key, scalar(GgufValueType::u32, v));
}
void GgufWriter::add_i32(const std::string& key, std::int32_t v) {
  add(key, scalar(GgufValueType::i32, v));
}
void GgufWriter::add_u64(const std::string& key, std::uint64_t v) {
  add(key, scalar(GgufValueType::u64, static_cast<std::int64_t>(v)));
}
void GgufWriter::add_f32(const std::string& key, float v) {
  add(key, scalar(GgufValueType::f32, 0, v));
}
void GgufWriter::add_bool(const std::string& key, bool v) {
  add(key, scalar(GgufValueType::boolean, v ? 1 : 0));
}
void GgufWriter::add_string(const std::string& key, const std::string& v) {
  GgufValue s;
  s.type = GgufValueType::string;
  s.text = v;
  add(key, std::move(s));
}
void GgufWriter::add_string_array(const std::string& key, const std::vector<std::string>& v) {
  add(key, array_of(GgufValueType::string, v, [](const std::string& x) {
        GgufValue s;
        s.type = GgufValueType::string;
        s.text = x;
        return s;
      }));
}
void GgufWriter::add_i32_array(const std::string& key, const std::vector<std::int32_t>& v) {
  add(key, array_of(GgufValueType::i32, v,
                    [](std::int32_t x) { return scalar(GgufValueType::i32, x); }));
}
void GgufWriter::add_f32_array(const std::string& key, const std::vector<float>& v) {
  add(key,
      array_of(GgufValueType::f32, v, [](float x) { return scalar(GgufValueType::f32, 0, x); }));
}

void GgufWriter::add_tensor(const std::string& name, const std::vector<std::uint64_t>& dims,
                            GgmlType type, const void* data, std::size_t nbytes) {
  auto bad = [&](const std::string& what) {
    throw std::invalid_argument("gguf: tensor " + printable(name) + ": " + what);
  };
  if (std::string p = name_problem(name); !p.empty()) bad(p);
  for (const Tensor& t : tensors_)
    if (t.name == name) bad("the name is added more than once");
  if (std::string p = dims_problem(dims); !p.empty()) bad(p);
  const TypeEntry* e = type_entry(static_cast<std::uint32_t>(type));
  if (e == nullptr) bad("ggml type " + num(static_cast<std::uint32_t>(type)) + " is not known");
  std::uint64_t want = 0;
  try {
    want = tensor_bytes(*e, dims);
  } catch (const Problem& p) {
    bad(p.what());
  }
  if (want != nbytes)
    bad(num(nbytes) + " bytes given, " + e->name + " " + dims_string(dims) + " is " + num(want));
  if (data == nullptr) bad("the data pointer is null");
  tensors_.push_back({name, dims, type, data, nbytes});
}

FileChecksum GgufWriter::write(const std::string& path) const {
  std::string head;
  head.append(kMagic, 4);
  put(head, kVersion);
  put<std::uint64_t>(head, tensors_.size());
  put<std::uint64_t>(head, metadata_.size());
  for (const auto& [key, v] : metadata_) {
    put_string(head, key);
    put(head, static_cast<std::uint32_t>(v.type));
    put_value(head, v);
  }
  // llama.cpp requires offset_i == sum_{j<i} PAD(nbytes_j, alignment).
  const std::uint64_t align = alignment_;
  std::uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    put_string(head, t.name);
    put(head, static_cast<std::uint32_t>(t.dims.size()));
    for (std::uint64_t d : t.dims) put(head, d);
    put(head, static_cast<std::uint32_t>(t.type));
    put(head, offset);
    offset += pad(t.nbytes, align);
  }
  if (!tensors_.empty()) head.append(pad(head.size(), align) - head.size(), '\0');

  return write_file_atomic_with(path, [&](AtomicWriter& w) {
    w.write(head);
    const std::string zeros(static_cast<std::size_t>(std::min<std::uint64_t>(align, 4096)), '\0');
    for (const Tensor& t : tensors_) {
      w.write(t.data, t.nbytes);
      std::uint64_t gap = pad(t.nbytes, align) - t.nbytes;
      while (gap > 0) {
        const std::uint64_t k = std::min<std::uint64_t>(gap, zeros.size());
        w.write(zeros.data(), k);
        gap -= k;
      }
    }
  });
}

}  // namespace whtlm::io
