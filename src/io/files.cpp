// Whole-file reads and atomic writes on POSIX: temp file beside the target, fsync, rename, fsync
// of the folder, so a crash leaves either the old contents or the new, never a torn file.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "whtlm/io.hpp"

namespace whtlm::io {
namespace {

std::string os_reason(int err) { return std::strerror(err); }

[[noreturn]] void fail(const std::string& path, const std::string& what, int err) {
  throw std::runtime_error(path + ": " + what + ": " + os_reason(err));
}

// Closes a descriptor on scope exit unless released.
class FdGuard {
 public:
  explicit FdGuard(int fd) : fd_(fd) {}
  ~FdGuard() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdGuard(const FdGuard&) = delete;
  FdGuard& operator=(const FdGuard&) = delete;
  int get() const { return fd_; }
  // Closes now and reports the result (close can report a delayed write error).
  int close_now() {
    int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

// The folder holding `path`, for the fsync that makes a rename durable.
std::string parent_folder(const std::string& path) {
  std::string parent = std::filesystem::path(path).parent_path().string();
  return parent.empty() ? std::string(".") : parent;
}

}  // namespace

namespace {

// What a file is, for messages refusing anything but a regular file.
const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a folder";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

// Opens a regular file for reading without ever blocking (O_NONBLOCK: opening a FIFO
// would otherwise wait for a writer), and returns its size.
int open_regular(const std::string& path, std::uint64_t& size) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) fail(path, "cannot open", errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    fail(path, "cannot stat", err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw std::runtime_error(path + ": cannot read: " + kind_of(st.st_mode) +
                             ", where a regular file is needed");
  }
  // Regular files ignore O_NONBLOCK; clear it anyway so reads behave as usual.
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  size = static_cast<std::uint64_t>(st.st_size);
  return fd;
}

std::string mib_text(std::uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / 1048576.0);
  return buf;
}

}  // namespace

std::string read_file(const std::string& path, std::uint64_t max_bytes) {
  std::uint64_t size = 0;
  FdGuard guard(open_regular(path, size));
  auto too_large = [&](std::uint64_t n) {
    throw std::runtime_error(path + ": " + std::to_string(n) + " bytes (" + mib_text(n) +
                             ") is more than the " + mib_text(max_bytes) +
                             " whtlm reads for a file of this kind");
  };
  if (size > max_bytes) too_large(size);
  std::string out;
  if (size > 0) out.reserve(static_cast<std::size_t>(size));
  // Read until end of file rather than trusting st_size (a file may grow while we read
  // it), but never past the limit.
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(guard.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(path, "cannot read", errno);
    }
    if (n == 0) break;
    if (out.size() + static_cast<std::size_t>(n) > max_bytes)
      too_large(out.size() + static_cast<std::size_t>(n));
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

InputFile::InputFile(const std::string& path) : path_(path) { fd_ = open_regular(path, size_); }

InputFile::~InputFile() {
  if (fd_ >= 0) ::close(fd_);
}

InputFile::InputFile(InputFile&& other) noexcept
    : path_(std::move(other.path_)), fd_(std::exchange(other.fd_, -1)), size_(other.size_) {}

InputFile& InputFile::operator=(InputFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
    size_ = other.size_;
  }
  return *this;
}

void InputFile::read_at(std::uint64_t offset, void* dst, std::size_t n) const {
  auto* p = static_cast<char*>(dst);
  std::size_t done = 0;
  while (done < n) {
    const std::size_t chunk = std::min<std::size_t>(n - done, std::size_t{1} << 30);
    const ssize_t got = ::pread(fd_, p + done, chunk, static_cast<off_t>(offset + done));
    if (got < 0) {
      if (errno == EINTR) continue;
      fail(path_, "cannot read " + std::to_string(n) + " bytes at offset " + std::to_string(offset),
           errno);
    }
    if (got == 0) {
      struct stat st {};
      const std::string now =
          ::fstat(fd_, &st) == 0 ? std::to_string(st.st_size) + " bytes" : std::string("shorter");
      throw std::runtime_error(path_ + ": " + std::to_string(n) + " bytes at offset " +
                               std::to_string(offset) + " are past its end (now " + now + ", " +
                               std::to_string(size_) +
                               " when opened: truncated while in use by another program?)");
    }
    done += static_cast<std::size_t>(got);
  }
}

namespace {

// CRC-32C, reflected polynomial 0x82F63B78: a byte-wise table for machines without
// SSE4.2, the crc32 instruction (8 bytes a step) for those with it.
struct Crc32cTable {
  std::uint32_t t[256];
  Crc32cTable() {
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (c & 1 ? 0x82F63B78u : 0u);
      t[i] = c;
    }
  }
};

std::uint32_t crc32c_table(std::uint32_t crc, const unsigned char* p, std::size_t n) {
  static const Crc32cTable table;
  for (std::size_t i = 0; i < n; ++i) crc = table.t[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) std::uint32_t crc32c_sse42(std::uint32_t crc,
                                                             const unsigned char* p,
                                                             std::size_t n) {
  std::uint64_t c = crc;
  for (; n >= 8; p += 8, n -= 8) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    c = __builtin_ia32_crc32di(c, w);
  }
  auto c32 = static_cast<std::uint32_t>(c);
  for (; n > 0; ++p, --n) c32 = __builtin_ia32_crc32qi(c32, *p);
  return c32;
}
#endif

}  // namespace

std::uint32_t crc32c(std::uint32_t crc, const void* data, std::size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
#if defined(__x86_64__)
  static const bool sse42 = __builtin_cpu_supports("sse4.2");
  crc = sse42 ? crc32c_sse42(crc, p, n) : crc32c_table(crc, p, n);
#else
  crc = crc32c_table(crc, p, n);
#endif
  return ~crc;
}

FileChecksum file_checksum(const std::string& path) {
  const InputFile f(path);
  FileChecksum c;
  std::vector<char> buf(std::size_t{1} << 20);
  for (std::uint64_t at = 0; at < f.size(); at += buf.size()) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), f.size() - at));
    f.read_at(at, buf.data(), n);
    c.crc32c = crc32c(c.crc32c, buf.data(), n);
  }
  c.bytes = f.size();
  return c;
}

std::string describe(const FileChecksum& c) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "crc32c 0x%08x, %llu bytes", c.crc32c,
                static_cast<unsigned long long>(c.bytes));
  return buf;
}

void AtomicWriter::write(const void* data, std::size_t n) {
  const char* p = static_cast<const char*>(data);
  crc_ = crc32c(crc_, data, n);
  while (n > 0) {
    // Linux moves at most about 2 GiB per call; ask for 1 GiB at a time.
    std::size_t chunk = std::min<std::size_t>(n, std::size_t{1} << 30);
    ssize_t done = ::write(fd_, p, chunk);
    if (done < 0) {
      if (errno == EINTR) continue;
      fail(path_, "cannot write temporary file " + tmp_, errno);
    }
    p += done;
    n -= static_cast<std::size_t>(done);
    written_ += static_cast<std::uint64_t>(done);
  }
}

FileChecksum write_file_atomic_with(const std::string& path,
                                    const std::function<void(AtomicWriter&)>& fill) {
  // A name no other file has: created exclusively, so nothing of the user's is replaced.
  static std::atomic<unsigned> counter{0};
  std::string tmp;
  int fd = -1;
  for (int attempt = 0; fd < 0; ++attempt) {
    tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && (errno != EEXIST || attempt > 100))
      fail(path, "cannot create temporary file " + tmp, errno);
  }
  FdGuard guard(fd);

  // Until the rename succeeds, any way out of this function (error or exception from `fill`)
  // must take the temp file with it.
  struct TmpRemover {
    const std::string& name;
    bool armed = true;
    ~TmpRemover() {
      if (armed) ::unlink(name.c_str());
    }
  } remover{tmp};

  AtomicWriter writer(fd, path, tmp);
  fill(writer);

  if (::fsync(fd) != 0) fail(path, "cannot fsync temporary file " + tmp, errno);
  if (guard.close_now() != 0) fail(path, "cannot close temporary file " + tmp, errno);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    fail(path, "cannot rename " + tmp + " over it", errno);
  }
  remover.armed = false;

  // The new contents are in place; make the rename itself survive a crash. Some file systems
  // cannot fsync a folder (EINVAL); there is nothing more to do on those.
  const std::string folder = parent_folder(path);
  int dfd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) fail(path, "written, but cannot open folder " + folder + " to fsync it", errno);
  FdGuard dguard(dfd);
  if (::fsync(dfd) != 0 && errno != EINVAL) {
    fail(path, "written, but cannot fsync folder " + folder, errno);
  }
  return {writer.written_, writer.crc_};
}

FileChecksum write_file_atomic(const std::string& path, std::string_view bytes) {
  return write_file_atomic_with(path, [bytes](AtomicWriter& w) { w.write(bytes); });
}

std::vector<std::string> list_files(const std::string& folder) {
  std::error_code ec;
  std::vector<std::string> files;
  std::string skipped;  // an entry that is neither a folder nor a regular file, for the message
  for (auto it = std::filesystem::recursive_directory_iterator(folder, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code type_ec;
    if (it->is_regular_file(type_ec))
      files.push_back(it->path().string());
    else if (!it->is_directory(type_ec) && skipped.empty())
      skipped = it->path().string();
  }
  if (ec) throw std::runtime_error(folder + ": cannot list the folder: " + ec.message());
  if (files.empty())
    throw std::runtime_error(
        folder + ": the folder has no regular files" +
        (skipped.empty() ? std::string() : " (" + skipped + " is not a regular file)"));
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace whtlm::io
