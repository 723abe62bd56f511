// Fuzzes a training run folder as `whtlm report` reads it (report::load): the input is
// the run's metrics.jsonl, next to a fixed, valid train_state.json (of a 1000-step run,
// so every step the input names counts). Errors must name the run folder; a run that
// loads is put through the report's arithmetic (loss_at_equal_flops, decide_claims),
// which must not throw.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_common.hpp"
#include "whtlm/report.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace whtlm;
  fuzz::init_once();
  static const std::string run = fuzz::tiny_run_folder(1000);
  fuzz::write_input("run/metrics.jsonl", data, size);
  report::Data loaded;
  if (!fuzz::expect_clean({run}, [&] { loaded = report::load({run}); })) return 0;
  fuzz::expect_no_throw("the report's claims over a loaded run", [&] {
    (void)report::loss_at_equal_flops(loaded);
    (void)report::decide_claims(loaded);
  });
  return 0;
}
