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

// Bytes of host memory this process can still allocate: the least of MemAvailable +
// SwapFree, the room under RLIMIT_AS and RLIMIT_DATA, and the room under its cgroup's
// memory.max; UINT64_MAX when none is known. Plans (models, KV caches, data) are
// checked against it before they are allocated.
std::uint64_t host_memory_available();
// Peak resident set size of this process so far, in bytes (0 where unknown).
std::size_t peak_rss_bytes();
// Resident set size now, in bytes (0 where unknown).
std::size_t current_rss_bytes();

// Limits on files read whole: documents (config.json, train_state.json, plans,
// prompts) and tokenizer files. Text corpora are bounded by memory instead.
inline constexpr std::uint64_t kMaxDocumentBytes = std::uint64_t{64} << 20;
inline constexpr std::uint64_t kMaxTokenizerBytes = std::uint64_t{512} << 20;
inline constexpr std::uint64_t kNoLimit = ~std::uint64_t{0};

// Whole file into a string. Only a regular file is read (a folder, a FIFO, a device
// such as /dev/zero is refused at once, never waited on or read forever), and one
// larger than max_bytes is refused with its size and the limit. std::runtime_error
// names the path and the reason.
std::string read_file(const std::string& path, std::uint64_t max_bytes = kMaxDocumentBytes);

// A regular file opened for reading by offset. Reads never fault: a file that
// shrinks while it is open (truncated by another program) gives a std::runtime_error
// naming it, where a memory map would take a SIGBUS.
class InputFile {
 public:
  // Refuses anything but a regular file, naming the path and what it is.
  explicit InputFile(const std::string& path);
  ~InputFile();
  InputFile(InputFile&& other) noexcept;
  InputFile& operator=(InputFile&& other) noexcept;
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  const std::string& path() const { return path_; }
  std::uint64_t size() const { return size_; }  // when opened
  // Exactly n bytes at offset into dst (thread-safe).
  void read_at(std::uint64_t offset, void* dst, std::size_t n) const;

 private:
  std::string path_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

// CRC-32C (Castagnoli, the checksum of iSCSI, ext4 and btrfs) of n bytes, continuing
// from `crc` (0 to start); hardware instructions where the CPU has them.
std::uint32_t crc32c(std::uint32_t crc, const void* data, std::size_t n);
// What a checkpoint records of each file it writes, and checks when it reads it.
struct FileChecksum {
  std::uint64_t bytes = 0;
  std::uint32_t crc32c = 0;
  bool operator==(const FileChecksum&) const = default;
};
// The checksum of a whole file (read in blocks; std::runtime_error naming it).
FileChecksum file_checksum(const std::string& path);
// "crc32c 0x1a2b3c4d, 1234 bytes".
std::string describe(const FileChecksum& c);

// Every regular file under `folder`, recursively, in sorted path order (how a folder of
// text or shards is read). std::runtime_error names the folder when it cannot be listed
// or holds no file.
std::vector<std::string> list_files(const std::string& folder);

// Writes `bytes` to path atomically: a temp file in the same folder (path + ".tmp." + a
// unique suffix, created exclusively, so no other file is ever overwritten), fsync,
// rename over path, fsync of the folder. On any failure the temp file is removed, the
// old file at path (if any) is untouched, and std::runtime_error names the path and
// the reason. Returns the checksum of what was written.
FileChecksum write_file_atomic(const std::string& path, std::string_view bytes);

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
  friend FileChecksum write_file_atomic_with(const std::string&,
                                             const std::function<void(AtomicWriter&)>&);
  AtomicWriter(int fd, const std::string& path, const std::string& tmp)
      : fd_(fd), path_(path), tmp_(tmp) {}

  int fd_;
  const std::string& path_;  // the final path, for error messages
  const std::string& tmp_;
  std::uint64_t written_ = 0;
  std::uint32_t crc_ = 0;
};

// The streaming form of write_file_atomic: `fill` writes the contents through the AtomicWriter,
// straight into the temp file, so large files never sit in memory whole. The same guarantees
// hold; an exception thrown by `fill` removes the temp file and propagates unchanged.
FileChecksum write_file_atomic_with(const std::string& path,
                                    const std::function<void(AtomicWriter&)>& fill);

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<std::int64_t> shape;
  std::size_t offset = 0;  // byte offset into the data section
  std::size_t nbytes = 0;
  std::size_t numel() const;  // product of the shape; 1 for a scalar (shape [])
};

// A safetensors file opened for reading: the header is read and validated on open:
// 8-byte little-endian header length within the file (and at most 100 MB, as the
// format's reference reader allows), JSON object, no repeated names, each tensor entry
// with a known dtype, a shape of non-negative ints, data_offsets [begin, end] with
// end - begin == numel * dtype_size, within the data section, no overlaps; optional
// "__metadata__" object of string -> string. Tensor bytes are read from the file on
// request (io::InputFile: a file truncated meanwhile is an error, not a signal).
// Every error is a std::runtime_error whose message names the file path and what is wrong.
class SafetensorsReader {
 public:
  explicit SafetensorsReader(const std::string& path);

  const std::string& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;  // throws naming file + tensor if absent
  // The tensor's raw bytes (info(name).nbytes of them, any dtype) into dst.
  void read_bytes(const std::string& name, void* dst) const;

  // Check dtype F32 / I32 and the exact shape, then copy into dst. Errors name the file, the
  // tensor, and expected vs found dtype and shape.
  void read_f32(const std::string& name, const std::vector<std::int64_t>& shape, float* dst) const;
  void read_i32(const std::string& name, const std::vector<std::int64_t>& shape,
                std::int32_t* dst) const;

 private:
  void read_checked(const std::string& name, DType dtype, const std::vector<std::int64_t>& shape,
                    void* dst) const;

  std::string path_;
  InputFile file_;
  std::map<std::string, std::string> metadata_;
  std::map<std::string, TensorInfo> tensors_;
  std::uint64_t data_start_ = 0;  // offset of the data section in the file
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
// Returns the checksum of the file written.
FileChecksum write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                               const std::map<std::string, std::string>& metadata = {});

}  // namespace whtlm::io
