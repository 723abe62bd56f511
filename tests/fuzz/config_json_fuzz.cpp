// Fuzzes config.json parsing (config_from_json): the input is the file's text. An
// accepted config is laid out (ParamLayout, what loading a checkpoint does before it
// reads the weights), so configs whose sizes would blow up memory show as findings
// (libFuzzer's -malloc_limit_mb, the replay main's limit). It must also survive a round
// trip through config_to_json (what save_model writes) unchanged, d_ff compared as ff().
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_common.hpp"
#include "whtlm/checkpoint.hpp"
#include "whtlm/model.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace whtlm;
  fuzz::init_once();
  const std::string source = "fuzz-input/config.json";
  const std::string text(reinterpret_cast<const char*>(data), size);
  ModelConfig config;
  if (!fuzz::expect_clean({source}, [&] { config = config_from_json(text, source); })) return 0;

  fuzz::expect_no_throw("ParamLayout of an accepted config", [&] {
    const ParamLayout layout(config);
    (void)layout.count();
  });
  fuzz::expect_no_throw("config_to_json + config_from_json of an accepted config", [&] {
    ModelConfig again = config_from_json(config_to_json(config), "round trip");
    ModelConfig want = config;
    want.d_ff = want.ff();
    again.d_ff = again.ff();
    fuzz::check(again == want, "config.json round trip changed the config: " + describe(want) +
                                   " became " + describe(again));
  });
  return 0;
}
