// Fuzzes what `whtlm report` reads besides run folders (report::load): the input is
// written as a `whtlm bench infer --json` file (infer.jsonl) and, separately, as the
// experiment.json of an otherwise empty experiment folder; each is loaded on its own.
// Errors must name the file (or the folder given). Data that loads is then put through
// the report's arithmetic (loss_at_equal_flops, decide_claims), which must not throw.
// metrics_jsonl_fuzz.cpp covers run folders.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

#include "fuzz_common.hpp"
#include "whtlm/report.hpp"

namespace {

void decide(const whtlm::report::Data& data, const char* what) {
  whtlm::fuzz::expect_no_throw(std::string("the report's claims over a loaded ") + what, [&] {
    (void)whtlm::report::loss_at_equal_flops(data);
    (void)whtlm::report::decide_claims(data);
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace whtlm;
  fuzz::init_once();
  static const std::string experiment = [] {
    const std::string d = fuzz::scratch_dir() + "/experiment";
    std::filesystem::create_directories(d);
    return d;
  }();

  const std::string jsonl = fuzz::write_input("infer.jsonl", data, size);
  report::Data loaded;
  if (fuzz::expect_clean({jsonl}, [&] { loaded = report::load({jsonl}); }))
    decide(loaded, "bench infer file");

  const std::string manifest = fuzz::write_input("experiment/experiment.json", data, size);
  if (fuzz::expect_clean({manifest, experiment}, [&] { loaded = report::load({experiment}); }))
    decide(loaded, "experiment folder");
  return 0;
}
