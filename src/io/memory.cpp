// How much host memory this process can still take: what the kernel reports available
// (MemAvailable plus free swap), within the process's own limits (RLIMIT_AS,
// RLIMIT_DATA) and its cgroup's (memory.max), so that a plan too large for the machine
// is refused with a message before any of it is allocated.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>

#include "whtlm/io.hpp"

namespace whtlm::io {
namespace {

constexpr std::uint64_t kUnknown = std::numeric_limits<std::uint64_t>::max();

// A "Name:   1234 kB" line of /proc/meminfo or /proc/self/status, in bytes.
std::uint64_t proc_kb(const char* file, const std::string& name) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line))
    if (line.compare(0, name.size(), name) == 0 && line.size() > name.size() &&
        line[name.size()] == ':') {
      std::istringstream s(line.substr(name.size() + 1));
      std::uint64_t kb = 0;
      if (s >> kb) return kb * 1024;
    }
  return kUnknown;
}

// Room left under a resource limit, given what the process already uses of it.
std::uint64_t under_limit(int resource, std::uint64_t used) {
  struct rlimit r {};
  if (getrlimit(resource, &r) != 0 || r.rlim_cur == RLIM_INFINITY) return kUnknown;
  const auto limit = static_cast<std::uint64_t>(r.rlim_cur);
  if (used == kUnknown) return limit;
  return limit > used ? limit - used : 0;
}

// memory.max - memory.current of this process's cgroup (v2), where one is set.
std::uint64_t cgroup_room() {
  std::ifstream in("/proc/self/cgroup");
  std::string line, path;
  while (std::getline(in, line))
    if (line.rfind("0::", 0) == 0) path = line.substr(3);
  if (path.empty()) return kUnknown;
  const std::string dir = "/sys/fs/cgroup" + path;
  std::ifstream max_in(dir + "/memory.max"), cur_in(dir + "/memory.current");
  std::string max_text;
  std::uint64_t current = 0, max = 0;
  if (!(max_in >> max_text) || max_text == "max" || !(cur_in >> current)) return kUnknown;
  try {
    max = std::stoull(max_text);
  } catch (...) {
    return kUnknown;
  }
  return max > current ? max - current : 0;
}

}  // namespace

std::uint64_t host_memory_available() {
  std::uint64_t room = kUnknown;
  const std::uint64_t avail = proc_kb("/proc/meminfo", "MemAvailable");
  const std::uint64_t swap = proc_kb("/proc/meminfo", "SwapFree");
  if (avail != kUnknown) room = avail + (swap == kUnknown ? 0 : swap);
  room = std::min(room, under_limit(RLIMIT_AS, proc_kb("/proc/self/status", "VmSize")));
  room = std::min(room, under_limit(RLIMIT_DATA, proc_kb("/proc/self/status", "VmData")));
  room = std::min(room, cgroup_room());
  return room;
}

std::size_t peak_rss_bytes() {
  rusage u{};
  if (getrusage(RUSAGE_SELF, &u) != 0) return 0;
  return static_cast<std::size_t>(u.ru_maxrss) * 1024;  // Linux reports KiB
}

std::size_t current_rss_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long size = 0, resident = 0;
  const int got = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  if (got != 2) return 0;
  return static_cast<std::size_t>(resident) * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

}  // namespace whtlm::io
