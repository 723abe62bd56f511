// GGUF v3, the file format of ggml and llama.cpp (../shared/INTEROP.md section 1):
//   "GGUF", u32 version 3, u64 tensor_count, u64 metadata_kv_count,
//   metadata: gguf_string key, u32 value type, value (arrays: u32 element type, u64 count,
//             elements), gguf_string = u64 length + UTF-8 bytes (no NUL),
//   tensor infos: gguf_string name, u32 n_dims, u64 dims[n_dims] in ggml order (ne[0],
//             the contiguous dimension, first), u32 ggml type, u64 offset into the data,
//   zero padding to the alignment (general.alignment, default 32), then the tensor data,
//   each tensor at its offset, padded to the alignment, in the order of the infos.
// All little-endian. The reader takes hostile files: every size, count and offset is
// checked against the file before it is used, and every error is a std::runtime_error
// naming the file and the field (key or tensor). Only the format lives here; what the
// tensors mean (llama, gpt2) is src/interop's business.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "whtlm/io.hpp"

namespace whtlm::io {

// ggml tensor types whtlm reads and writes (ids as in ggml.h). A file may hold others;
// the reader lists them by id and refuses to read their bytes.
enum class GgmlType : std::uint32_t { f32 = 0, f16 = 1, q8_0 = 8, bf16 = 30 };
// "F32", "F16", "Q8_0", "BF16"; for any other id "type N".
std::string ggml_type_name(std::uint32_t type_id);
// Whether `type_id` is one of GgmlType.
bool ggml_type_known(std::uint32_t type_id);
// Bytes of a row of ne0 elements of a known type; std::invalid_argument when ne0 is not a
// multiple of the type's block (32 for Q8_0).
std::uint64_t ggml_row_bytes(GgmlType type, std::uint64_t ne0);

// Metadata value types (ids as in gguf.h).
enum class GgufValueType : std::uint32_t {
  u8 = 0,
  i8 = 1,
  u16 = 2,
  i16 = 3,
  u32 = 4,
  i32 = 5,
  f32 = 6,
  boolean = 7,
  string = 8,
  array = 9,
  u64 = 10,
  i64 = 11,
  f64 = 12,
};
const char* gguf_value_type_name(GgufValueType t);  // "u32", "string", "array", ...

// One metadata value. Scalars: integers in `integer` (u64 values above INT64_MAX are
// kept bit for bit), floats in `real`, booleans as 0/1 in `integer`, strings in `text`.
// Arrays: elem_type and the elements in `items` (strings in items[i].text ...); an
// array of arrays nests.
struct GgufValue {
  GgufValueType type = GgufValueType::u32;
  GgufValueType elem_type = GgufValueType::u8;  // arrays only
  std::int64_t integer = 0;
  double real = 0;
  std::string text;
  std::vector<GgufValue> items;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<std::uint64_t> dims;  // ggml order: dims[0] is the contiguous dimension
  std::uint32_t type = 0;           // ggml type id
  std::uint64_t offset = 0;         // absolute, in the file
  std::uint64_t nbytes = 0;         // 0 for a type the reader does not know
  std::uint64_t numel() const;
};

// A GGUF file opened for reading: the header (metadata and tensor infos) is read and
// checked on open, tensor bytes on request. Checks: magic, version 3, counts that the
// file's size can hold, string and array lengths within the file, no duplicate keys or
// tensor names, tensor names of at most 63 bytes, 1..4 dims whose product does not
// overflow, general.alignment a u32 power of two when present, tensor data (of known
// types) of the size its dims and type give, aligned, inside the file and not
// overlapping another tensor. Also: keys of 1..65535 printable ASCII bytes, tensor names
// without control bytes, booleans 0 or 1, arrays nested at most 4 deep, strings of at
// most 256 MiB and at most 2^23 metadata values (array elements included) in all.
// Offsets need not follow llama.cpp's stricter packing rule (the writer's files do).
class GgufReader {
 public:
  explicit GgufReader(const std::string& path);

  const std::string& path() const { return file_.path(); }
  std::uint32_t version() const { return version_; }
  std::uint32_t alignment() const { return alignment_; }

  // Metadata keys in file order.
  const std::vector<std::string>& keys() const { return key_order_; }
  bool has(const std::string& key) const { return metadata_.count(key) != 0; }
  // The value; std::runtime_error naming the file and key when absent.
  const GgufValue& value(const std::string& key) const;
  // Typed getters: the key must be present with exactly this type (as llama.cpp
  // requires); otherwise std::runtime_error "PATH: metadata KEY: ...".
  std::uint32_t get_u32(const std::string& key) const;
  float get_f32(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  std::string get_string(const std::string& key) const;
  std::vector<std::string> get_string_array(const std::string& key) const;
  std::vector<std::int32_t> get_i32_array(const std::string& key) const;
  std::vector<float> get_f32_array(const std::string& key) const;

  // Tensor infos in file order.
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find(const std::string& name) const;  // nullptr when absent
  // The tensor's raw bytes (info.nbytes of them) into dst; std::runtime_error naming
  // the file and tensor when absent or of a type the reader does not know.
  void read_bytes(const std::string& name, void* dst) const;

 private:
  InputFile file_;
  std::uint32_t version_ = 0;
  std::uint32_t alignment_ = 32;
  std::vector<std::string> key_order_;
  std::map<std::string, GgufValue> metadata_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, std::size_t> tensor_index_;
};

// Builds a GGUF v3 file: metadata and tensors in the order added, data aligned to 32
// bytes (or general.alignment when set through add_u32), written atomically and
// streamed (io::write_file_atomic_with). Tensor bytes are not copied: they must stay
// valid until write() returns. Refuses (std::invalid_argument naming the key or tensor)
// duplicate keys or names, names over 63 bytes, 0 or more than 4 dims, and a byte count
// that does not match dims and type. Each tensor's data is followed by zero padding to
// the alignment (the last one's too, as gguf-py writes it); a file without tensors ends
// after its tensor infos.
class GgufWriter {
 public:
  void add_u32(const std::string& key, std::uint32_t v);
  void add_i32(const std::string& key, std::int32_t v);
  void add_u64(const std::string& key, std::uint64_t v);
  void add_f32(const std::string& key, float v);
  void add_bool(const std::string& key, bool v);
  void add_string(const std::string& key, const std::string& v);
  void add_string_array(const std::string& key, const std::vector<std::string>& v);
  void add_i32_array(const std::string& key, const std::vector<std::int32_t>& v);
  void add_f32_array(const std::string& key, const std::vector<float>& v);
  // Any value (every type, nested arrays up to 4 deep): scalars' integers must fit their
  // type, booleans be 0 or 1, and array items be of the array's elem_type.
  void add_value(const std::string& key, const GgufValue& v);
  // dims in ggml order (dims[0] contiguous): a row-major [out, in] matrix is {in, out}.
  void add_tensor(const std::string& name, const std::vector<std::uint64_t>& dims, GgmlType type,
                  const void* data, std::size_t nbytes);

  FileChecksum write(const std::string& path) const;

 private:
  struct Tensor {
    std::string name;
    std::vector<std::uint64_t> dims;
    GgmlType type;
    const void* data;
    std::size_t nbytes;
  };
  void add(const std::string& key, GgufValue v);
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<Tensor> tensors_;
  std::uint32_t alignment_ = 32;
};

}  // namespace whtlm::io
