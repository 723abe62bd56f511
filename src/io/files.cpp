// Whole-file reads and atomic writes on POSIX: temp file beside the target, fsync, rename, fsync
// of the folder, so a crash leaves either the old contents or the new, never a torn file.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>

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

std::string read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, "cannot open", errno);
  FdGuard guard(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) fail(path, "cannot stat", errno);
  if (S_ISDIR(st.st_mode)) fail(path, "cannot read", EISDIR);

  std::string out;
  if (st.st_size > 0) out.reserve(static_cast<std::size_t>(st.st_size));
  // Read until end of file rather than trusting st_size: files in /proc report 0, and a file
  // may grow while we read it.
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(path, "cannot read", errno);
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

void AtomicWriter::write(const void* data, std::size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    // Linux moves at most about 2 GiB per call; ask for 1 GiB at a time.
    std::size_t chunk = std::min<std::size_t>(n, std::size_t{1} << 30);
    ssize_t done = ::write(fd_, p, chunk);
    if (done < 0) {
      if (errno == EINTR) continue;
      fail(path_, "cannot write temporary file " + path_ + ".tmp", errno);
    }
    p += done;
    n -= static_cast<std::size_t>(done);
    written_ += static_cast<std::uint64_t>(done);
  }
}

void write_file_atomic_with(const std::string& path,
                            const std::function<void(AtomicWriter&)>& fill) {
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) fail(path, "cannot create temporary file " + tmp, errno);
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

  AtomicWriter writer(fd, path);
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
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  write_file_atomic_with(path, [bytes](AtomicWriter& w) { w.write(bytes); });
}

std::vector<std::string> list_files(const std::string& folder) {
  std::error_code ec;
  std::vector<std::string> files;
  for (auto it = std::filesystem::recursive_directory_iterator(folder, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code type_ec;
    if (it->is_regular_file(type_ec)) files.push_back(it->path().string());
  }
  if (ec) throw std::runtime_error(folder + ": cannot list the folder: " + ec.message());
  if (files.empty()) throw std::runtime_error(folder + ": the folder has no files");
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace whtlm::io
