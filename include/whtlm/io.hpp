// Files at the edge of the engine: whole-file reads, crash-safe (atomic) writes, and the
// safetensors format used for checkpoints and for Hugging Face weights.
//
// safetensors layout: an 8-byte little-endian unsigned header length N, then N bytes of a JSON
// object, then the raw tensor data. Each JSON entry maps a tensor name to its dtype, shape and
// data_offsets [begin, end), counted from the start of the data section; an optional
// "__metadata__" entry maps strings to strings. Tensor bytes are little-endian and row-major.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace whtlm::io {

// Element types we read and write; safetensors names F32, F64, F16, BF16, I32, I64, U16, U8.
enum class DType { f32, f64, f16, bf16, i32, i64, u16, u8 };

const char* dtype_name(DType);  // "F32", "BF16", ...
std::size_t dtype_size(DType);  // bytes per element
// The DType with safetensors name `name` ("F32" ...), or nullopt for any other name.
std::optional<DType> dtype_from_name(std::string_view name);

// Prints a shape the way error messages show it: "[768, 2304]", "[]" for a scalar.
std::string shape_string(const std::vector<std::int64_t>& shape);

// Whole file into a string; throws std::runtime_error naming the path and the OS reason.
std::string read_file(const std::string& path);

// Every regular file under `folder`, recursively, in sorted path order (how a folder of
// text or shards is read). std::runtime_error names the folder when it cannot be listed
// or holds no file.
std::vector<std::string> list_files(const std::string& folder);

// Writes `bytes` to path atomically: a temp file in the same folder (path + ".tmp"), fsync, rename
// over path, fsync of the folder. On any failure the temp file is removed, the old file at path (if
// any) is untouched, and std::runtime_error names the path and the reason.
void write_file_atomic(const std::string& path, std::string_view bytes);

// The sink handed to the callback of write_file_atomic_with: appends bytes to the temp file.
class AtomicWriter {
 public:
  AtomicWriter(const AtomicWriter&) = delete;
  AtomicWriter& operator=(const AtomicWriter&) = delete;

  // Appends n bytes (retrying partial writes); throws std::runtime_error naming the file.
  void write(const void* data, std::size_t n);
  void write(std::string_view bytes) { write(bytes.data(), bytes.size()); }
  std::uint64_t bytes_written() const { return written_; }

 private:
  friend void write_file_atomic_with(const std::string&, const std::function<void(AtomicWriter&)>&);
  AtomicWriter(int fd, const std::string& path) : fd_(fd), path_(path) {}

  int fd_;
  const std::string& path_;  // the final path, for error messages
  std::uint64_t written_ = 0;
};

// The streaming form of write_file_atomic: `fill` writes the contents through the AtomicWriter,
// straight into the temp file, so large files never sit in memory whole. The same guarantees
// hold; an exception thrown by `fill` removes the temp file and propagates unchanged.
void write_file_atomic_with(const std::string& path,
                            const std::function<void(AtomicWriter&)>& fill);

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<std::int64_t> shape;
  std::size_t offset = 0;  // byte offset into the data section
  std::size_t nbytes = 0;
  std::size_t numel() const;  // product of the shape; 1 for a scalar (shape [])
};

// A safetensors file opened for reading: the file is memory-mapped (read-only), the JSON header
// parsed and validated on open: 8-byte little-endian header length within the file, JSON object,
// no repeated names, each tensor entry with a known dtype, a shape of non-negative ints,
// data_offsets [begin, end] with end - begin == numel * dtype_size, within the data section, no
// overlaps; optional "__metadata__" object of string -> string.
// Every error is a std::runtime_error whose message names the file path and what is wrong.
class SafetensorsReader {
 public:
  explicit SafetensorsReader(const std::string& path);
  ~SafetensorsReader();  // unmaps
  SafetensorsReader(SafetensorsReader&& other) noexcept;
  SafetensorsReader& operator=(SafetensorsReader&& other) noexcept;
  SafetensorsReader(const SafetensorsReader&) = delete;
  SafetensorsReader& operator=(const SafetensorsReader&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;  // throws naming file + tensor if absent
  // Pointer into the mapping, valid while the reader lives. Files we write keep every tensor
  // 8-byte aligned; files from elsewhere may not be aligned, so copy rather than cast if unsure.
  const void* data(const std::string& name) const;

  // Check dtype F32 / I32 and the exact shape, then copy into dst. Errors name the file, the
  // tensor, and expected vs found dtype and shape.
  void read_f32(const std::string& name, const std::vector<std::int64_t>& shape, float* dst) const;
  void read_i32(const std::string& name, const std::vector<std::int64_t>& shape,
                std::int32_t* dst) const;

 private:
  void read_checked(const std::string& name, DType dtype, const std::vector<std::int64_t>& shape,
                    void* dst) const;
  void unmap() noexcept;

  std::string path_;
  std::map<std::string, std::string> metadata_;
  std::map<std::string, TensorInfo> tensors_;
  const unsigned char* map_ = nullptr;  // the whole file
  std::size_t map_size_ = 0;
  const unsigned char* data_ = nullptr;  // start of the data section, inside map_
};

struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<std::int64_t> shape;
  const void* data;  // numel * dtype_size bytes, little-endian; may be null when numel is 0
};

// Serialises the tensors (in the given order, each tensor's data right after the previous one,
// with no gaps, as the format requires) with optional metadata, via write_file_atomic_with. The
// header is padded with spaces to a multiple of 8 bytes, so the data section starts 8-byte
// aligned in the file. Tensor bytes are streamed into the temp file without another copy.
// Rejects empty or duplicate names, names starting with "__", and negative dimensions.
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace whtlm::io
