// Writes a small random model as a checkpoint folder, runs one forward and backward
// pass on random tokens, and saves tokens, targets, logits, loss and every
// parameter's gradient to CASE.safetensors, for tests/reference/compare_with_torch.py
// to check against an independent PyTorch implementation.
//   model_dump FAMILY PROJECTION D_MODEL OUT_DIR [VOCAB (default 61)]
#include <cmath>
#include <cstdio>
#include <exception>
#include <random>
#include <string>
#include <vector>

#include "whtlm/checkpoint.hpp"
#include "whtlm/hadamard.hpp"
#include "whtlm/io.hpp"
#include "whtlm/transformer.hpp"

int main(int argc, char** argv) {
  if (argc != 5 && argc != 6) {
    std::fprintf(stderr,
                 "usage: model_dump gpt2|llama dense|wht|identity D_MODEL OUT_DIR [VOCAB]\n");
    return 2;
  }
  try {
    using namespace whtlm;
    ModelConfig c;
    c.family = parse_family(argv[1]);
    c.projection = parse_projection(argv[2]);
    c.d_model = std::stoi(argv[3]);
    c.n_layer = 2;
    c.n_head = 4;
    c.n_kv_head = c.family == Family::llama ? 2 : 4;  // grouped-query attention in llama
    c.vocab_size = argc == 6 ? std::stoi(argv[5]) : 61;
    c.max_seq = 80;
    c.d_ff = c.family == Family::llama ? 3 * c.d_model / 2 : 0;
    const std::string dir = argv[4];
    Transformer model(c);
    model.init_weights(7);
    // Move every parameter off its initial value (scale away from 1, biases away from
    // 0) so each gradient formula is exercised with general values.
    std::mt19937 rng(11);
    std::uniform_real_distribution<float> u(-0.2f, 0.2f);
    for (float& p : model.params()) p += u(rng);
    save_model(dir, model.layout(), model.params().data());

    // seq 70 spans two attention query blocks.
    const int batch = 2, seq = 70;
    std::vector<std::int32_t> tokens(batch * seq), targets(batch * seq);
    std::uniform_int_distribution<int> tok(0, c.vocab_size - 1);
    for (auto& t : tokens) t = tok(rng);
    for (auto& t : targets) t = tok(rng);
    model.zero_grads();
    const double loss = model.forward(tokens.data(), targets.data(), batch, seq);
    const std::vector<float> logits(model.logits().begin(), model.logits().end());
    model.backward();
    const float loss_f = static_cast<float>(loss);

    std::vector<io::TensorToWrite> out{
        {"tokens", io::DType::i32, {batch, seq}, tokens.data()},
        {"targets", io::DType::i32, {batch, seq}, targets.data()},
        {"logits", io::DType::f32, {batch, seq, c.vocab_size}, logits.data()},
        {"loss", io::DType::f32, {}, &loss_f}};
    for (const TensorSpec& t : model.layout().tensors())
      out.push_back({"grad." + t.name, io::DType::f32, t.shape, model.grads().data() + t.offset});
    std::vector<float> h;
    if (c.projection == Projection::wht) {
      const std::vector<double> hd = hadamard_matrix(static_cast<std::size_t>(c.d_model));
      h.assign(hd.begin(), hd.end());
      out.push_back({"hadamard", io::DType::f32, {c.d_model, c.d_model}, h.data()});
    }
    io::write_safetensors(dir + "/case.safetensors", out);
    std::printf("%s %s d=%d: loss %.6f\n", argv[1], argv[2], c.d_model, loss);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "model_dump: %s\n", e.what());
    return 1;
  }
  return 0;
}
