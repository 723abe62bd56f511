// Fuzzes a run's downstream.json as `whtlm report` reads it (report::load): the input is
// the downstream.json of a finished run folder whose train_state.json and metrics.jsonl
// are fixed and valid. A downstream.json that cannot be read leaves the proxy out with a
// warning naming the file, never the run: loading must not throw, and the run must be
// there either way. The loaded data then goes through the report's arithmetic
// (decide_claims, whose downstream claim reads the proxy), which must not throw.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_common.hpp"
#include "whtlm/report.hpp"

namespace {

// The run's metrics.jsonl: its two steps, each validated.
constexpr std::string_view kMetrics =
    R"({"elapsed_s":0.03,"flops":7182336.0,"grad_norm":1.5,"lr":0.00055,"peak_rss_bytes":17256448,"step":1,"tokens":32.0,"tokens_per_s":989.5,"train_loss":5.54,"val_loss":5.55})"
    "\n"
    R"({"elapsed_s":0.04,"flops":14364672.0,"grad_norm":1.6,"lr":0.0001,"peak_rss_bytes":17387520,"step":2,"tokens":64.0,"tokens_per_s":1160.0,"train_loss":5.53,"val_loss":5.54})"
    "\n";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace whtlm;
  fuzz::init_once();
  static const std::string run = [] {
    const std::string d = fuzz::tiny_run_folder(2);
    fuzz::write_input("run/metrics.jsonl", kMetrics);
    return d;
  }();
  fuzz::write_input("run/downstream.json", data, size);
  report::Data loaded;
  fuzz::expect_no_throw("report::load of a run with this downstream.json",
                        [&] { loaded = report::load({run}); });
  if (loaded.runs.size() != 1)
    fuzz::fail("the run was lost over its downstream.json (" + std::to_string(loaded.runs.size()) +
               " runs loaded)");
  fuzz::expect_no_throw("the report's claims over the loaded run",
                        [&] { (void)report::decide_claims(loaded); });
  return 0;
}
