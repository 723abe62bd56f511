// Fuzzes a run's downstream.json as `whtlm report` reads it (report::load): the input is
// the downstream.json of a finished run folder whose train_state.json and metrics.jsonl
// are fixed and valid. A downstream.json that cannot be read leaves the proxy out with a
// warning naming the file, never the run: loading must not throw, and the run must be
// there either way. The loaded data then goes through the report's arithmetic
// (decide_claims, whose downstream claim reads the proxy), which must not throw.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "fuzz_common.hpp"
#include "whtlm/report.hpp"

namespace {

// A finished 2-step tiny run (the shape of metrics_jsonl_fuzz.cpp's, with 2 steps).
constexpr std::string_view kTrainState = R"({
  "checkpoint": "checkpoints/step-2",
  "elapsed_s": 0.061113797,
  "flops": 14364672.0,
  "options": {
    "accum": 1, "batch": 2, "beta1": 0.8999999761581421, "beta2": 0.949999988079071,
    "clip": 1.0,
    "config": {
      "architectures": ["LlamaForCausalLM"], "attention_bias": false,
      "attn_output_projection": "wht", "head_dim": 16, "hidden_act": "silu",
      "hidden_size": 32, "intermediate_size": 256, "max_position_embeddings": 256,
      "mlp_bias": false, "model_type": "llama", "num_attention_heads": 2,
      "num_hidden_layers": 1, "num_key_value_heads": 2, "rms_norm_eps": 9.999999747378752e-06,
      "rope_theta": 10000.0, "tie_word_embeddings": false, "torch_dtype": "float32",
      "vocab_size": 256
    },
    "data": {"chunk_tokens": 1024, "path": "small.txt", "tokenizer": "byte",
             "val_fraction": 0.05, "val_path": ""},
    "device": "cpu", "eps": 9.99999993922529e-09, "eval_batches": 1, "eval_every": 1,
    "flops": 0.0, "lr": 0.001, "min_lr_ratio": 0.1, "precision": "fp32", "preset": "tiny",
    "save_every": 0, "seed": 1, "seq": 16, "steps": 2, "threads": 1, "tokens": 0,
    "warmup": -1, "weight_decay": 0.10000000149011612
  },
  "step": 2,
  "threads": 1,
  "tokens": 64.0
}
)";

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
    const std::string d = fuzz::scratch_dir() + "/run";
    std::filesystem::create_directories(d);
    fuzz::write_input("run/train_state.json", kTrainState);
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
