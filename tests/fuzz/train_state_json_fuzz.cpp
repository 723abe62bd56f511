// Fuzzes a run folder's train_state.json (read_run_state, what --resume and the report
// read): the input is the file, written into a run folder of its own (one per process,
// reused). Errors must name the file's path.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

#include "fuzz_common.hpp"
#include "whtlm/train.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace whtlm;
  fuzz::init_once();
  static const std::string dir = [] {
    const std::string d = fuzz::scratch_dir() + "/run";
    std::filesystem::create_directories(d);
    return d;
  }();
  fuzz::write_input("run/train_state.json", data, size);
  fuzz::expect_clean({dir + "/train_state.json"}, [&] {
    const RunState s = read_run_state(dir);
    (void)s.finished();
  });
  return 0;
}
