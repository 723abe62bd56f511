// Fuzzes experiment plans (experiment::plan_from_json, `whtlm experiment --config`): the
// input is the plan's text. Errors must name the source given. An accepted plan must
// round-trip: plan_to_json, read back by plan_from_json, written again gives the same
// JSON (the experiment folder compares plans this way to refuse a different one).
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_common.hpp"
#include "whtlm/experiment.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace whtlm;
  fuzz::init_once();
  const std::string source = "fuzz-input/plan.json";
  const std::string text(reinterpret_cast<const char*>(data), size);
  experiment::Plan plan;
  if (!fuzz::expect_clean({source}, [&] { plan = experiment::plan_from_json(text, source); }))
    return 0;
  fuzz::expect_no_throw("plan_to_json + plan_from_json of an accepted plan", [&] {
    const std::string first = experiment::plan_to_json(plan);
    const std::string second =
        experiment::plan_to_json(experiment::plan_from_json(first, "round trip"));
    fuzz::check(first == second, "the plan's JSON changed in a round trip:\n" + fuzz::quote(first) +
                                     "\nbecame\n" + fuzz::quote(second));
    for (const experiment::Size& s : plan.sizes) {
      (void)plan.steps(s);
      (void)plan.sweep_steps(s);
      (void)plan.eval_every_of(s);
    }
  });
  return 0;
}
