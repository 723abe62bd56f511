// A main for the fuzz harnesses without libFuzzer (GCC builds, tests/fuzz/README.md):
// feeds each file named on the command line, and each file under each folder named
// there (recursively, in sorted order), to LLVMFuzzerTestOneInput once. Files whose
// name starts with '.' (.gitkeep) or "README" are skipped, and so is a folder that does
// not exist, so an empty regression folder replays as nothing.
//
// As libFuzzer's -malloc_limit_mb does, a single allocation above a limit is a finding:
// under ASan through its options (max_allocation_size_mb=1024: operator new aborts with
// ASan's out-of-memory report); otherwise a replaced operator new throws std::bad_alloc
// above 1024 MiB (or WHTLM_FUZZ_MALLOC_LIMIT_MB), which the harnesses report.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <new>
#include <string>
#include <system_error>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

#if defined(__SANITIZE_ADDRESS__)
#define WHTLM_REPLAY_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WHTLM_REPLAY_ASAN 1
#endif
#endif

#if defined(WHTLM_REPLAY_ASAN)
// Read by ASan at start-up, before ASAN_OPTIONS (which may override it).
extern "C" const char* __asan_default_options() {
  return "max_allocation_size_mb=1024:allocator_may_return_null=1";
}
#else
namespace {
std::size_t malloc_limit() {
  static const std::size_t limit = [] {
    const char* env = std::getenv("WHTLM_FUZZ_MALLOC_LIMIT_MB");
    const long long mb = env != nullptr ? std::atoll(env) : 1024;
    return static_cast<std::size_t>(mb > 0 ? mb : 1024) << 20;
  }();
  return limit;
}
}  // namespace

// The default operator new[] and the nothrow forms call this one; operator delete
// stays the library's (free), which matches the malloc below.
void* operator new(std::size_t size) {
  if (size > malloc_limit()) throw std::bad_alloc();
  for (;;) {
    if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();
  }
}
#endif

namespace {

namespace fs = std::filesystem;

bool skipped(const fs::path& p) {
  const std::string name = p.filename().string();
  return name.empty() || name[0] == '.' || name.rfind("README", 0) == 0;
}

std::vector<std::string> inputs_of(const std::string& arg) {
  std::vector<std::string> out;
  std::error_code ec;
  if (fs::is_directory(arg, ec)) {
    for (auto it = fs::recursive_directory_iterator(arg, ec); !ec && it != fs::end(it);
         it.increment(ec)) {
      if (it->is_regular_file(ec) && !skipped(it->path())) out.push_back(it->path().string());
    }
    std::sort(out.begin(), out.end());
  } else if (fs::is_regular_file(arg, ec)) {
    out.push_back(arg);
  } else {
    std::fprintf(stderr, "replay: %s: no such file or folder; skipped\n", arg.c_str());
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FILE|FOLDER...\n  runs each input once through the harness\n",
                 argv[0]);
    return 2;
  }
  std::size_t count = 0;
  for (int i = 1; i < argc; ++i) {
    for (const std::string& path : inputs_of(argv[i])) {
      std::ifstream in(path, std::ios::binary);
      if (!in) {
        std::fprintf(stderr, "replay: %s: cannot open\n", path.c_str());
        return 1;
      }
      const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                    std::istreambuf_iterator<char>());
      // Printed first, so the input that crashes is the last one named.
      std::fprintf(stderr, "replay: %s (%zu bytes)\n", path.c_str(), bytes.size());
      std::fflush(stderr);
      LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
      ++count;
    }
  }
  std::fprintf(stderr, "replay: %zu inputs, no finding\n", count);
  return 0;
}
