// Fuzzes a training run folder as `whtlm report` reads it (report::load): the input is
// the run's metrics.jsonl, next to a fixed, valid train_state.json (of a 1000-step run,
// so every step the input names counts). Errors must name the run folder; a run that
// loads is put through the report's arithmetic (loss_at_equal_flops, decide_claims),
// which must not throw.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "fuzz_common.hpp"
#include "whtlm/report.hpp"

namespace {

// train_state.json of a 2-step tiny run (scripts/fuzz-seeds), with step and steps 1000.
constexpr std::string_view kTrainState = R"({
  "checkpoint": "checkpoints/step-1000",
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
    "save_every": 0, "seed": 1, "seq": 16, "steps": 1000, "threads": 1, "tokens": 0,
    "warmup": -1, "weight_decay": 0.10000000149011612
  },
  "step": 1000,
  "threads": 1,
  "tokens": 64000.0
}
)";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace whtlm;
  fuzz::init_once();
  static const std::string run = [] {
    const std::string d = fuzz::scratch_dir() + "/run";
    std::filesystem::create_directories(d);
    fuzz::write_input("run/train_state.json", kTrainState);
    return d;
  }();
  fuzz::write_input("run/metrics.jsonl", data, size);
  report::Data loaded;
  if (!fuzz::expect_clean({run}, [&] { loaded = report::load({run}); })) return 0;
  fuzz::expect_no_throw("the report's claims over a loaded run", [&] {
    (void)report::loss_at_equal_flops(loaded);
    (void)report::decide_claims(loaded);
  });
  return 0;
}
