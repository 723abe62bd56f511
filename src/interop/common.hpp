// What export, import and conversion share: a checkpoint loaded whole (weights,
// tokenizer), its output projections as dense matrices, and small layout helpers.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "whtlm/model.hpp"
#include "whtlm/tokenizer.hpp"

namespace whtlm::interop {

// A layer's output projection as the dense map it computes: w [out][in] (row i =
// output channel) and its bias (zeros when the projection has none).
struct DenseOut {
  std::vector<float> w, bias;
  bool has_bias = false;  // the projection itself has a bias (gpt2 dense, wht)
};

// A checkpoint folder read whole: config.json (checked), model.safetensors (checked
// against checksums.json when there is one) and its tokenizer (tokenizer.json, else
// the byte tokenizer for a vocabulary of 256; none for another vocabulary).
struct SourceModel {
  ModelConfig config;
  ParamLayout layout;
  std::vector<float> params;
  std::optional<tok::Tokenizer> tokenizer;
  std::string dir;  // the folder it was read from, for messages

  static SourceModel load(const std::string& dir);
  // A copy of the named tensor's floats (std::logic_error when the layout lacks it).
  std::vector<float> tensor(const std::string& name) const;
  DenseOut dense_out(int layer) const;
};

// m [rows][cols] row-major -> [cols][rows].
std::vector<float> transpose(const std::vector<float>& m, int rows, int cols);
// "W_O = diag(gamma) H / sqrt(d), bias = beta" and the like, recorded in exported files.
std::string fold_description(Projection p);

}  // namespace whtlm::interop
