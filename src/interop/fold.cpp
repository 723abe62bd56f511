// The output projection as a dense matrix and back: folding wht and identity into the
// W_O any runtime knows, and fitting the closest wht to a dense W_O.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <vector>

#include "interop/common.hpp"
#include "whtlm/checkpoint.hpp"
#include "whtlm/hadamard.hpp"
#include "whtlm/interop.hpp"
#include "whtlm/io.hpp"

namespace whtlm::interop {

void fold_projection(const ModelConfig& c, const float* params, float* w, float* bias) {
  const std::size_t d = static_cast<std::size_t>(c.d_model);
  switch (c.projection) {
    case Projection::dense: {
      const bool in_out = c.family == Family::gpt2;  // Conv1D stores W^T
      for (std::size_t i = 0; i < d; ++i)
        for (std::size_t j = 0; j < d; ++j)
          w[i * d + j] = in_out ? params[j * d + i] : params[i * d + j];
      for (std::size_t i = 0; i < d; ++i) bias[i] = c.has_bias() ? params[d * d + i] : 0.0f;
      return;
    }
    case Projection::wht: {
      // y_i = gamma_i (H x)_i / sqrt(d) + beta_i: row i of W is gamma_i / sqrt(d) times
      // row i of H, every entry +-(gamma_i / sqrt(d)) rounded once.
      const std::vector<double> h = hadamard_matrix(d);
      const double s = hadamard_orthonormal_scale(d);
      for (std::size_t i = 0; i < d; ++i) {
        const double g = static_cast<double>(params[i]) * s;
        for (std::size_t j = 0; j < d; ++j) w[i * d + j] = static_cast<float>(g * h[i * d + j]);
        bias[i] = params[d + i];
      }
      return;
    }
    case Projection::identity:
      std::fill(w, w + d * d, 0.0f);
      for (std::size_t i = 0; i < d; ++i) w[i * d + i] = 1.0f;
      std::fill(bias, bias + d, 0.0f);
      return;
  }
  throw std::logic_error("fold_projection: unknown projection");
}

LayerFit fit_projection(const ModelConfig& c, const float* w, const float* bias, float* params) {
  const std::size_t d = static_cast<std::size_t>(c.d_model);
  LayerFit fit;
  double norm = 0;
  for (std::size_t k = 0; k < d * d; ++k) norm += double(w[k]) * double(w[k]);
  double resid = 0;
  switch (c.projection) {
    case Projection::dense: {
      const bool in_out = c.family == Family::gpt2;
      for (std::size_t i = 0; i < d; ++i)
        for (std::size_t j = 0; j < d; ++j)
          (in_out ? params[j * d + i] : params[i * d + j]) = w[i * d + j];
      if (c.has_bias())
        for (std::size_t i = 0; i < d; ++i) params[d * d + i] = bias != nullptr ? bias[i] : 0.0f;
      break;
    }
    case Projection::wht: {
      // Rows of H / sqrt(d) are orthonormal, so the least-squares gamma_i of row i is
      // its projection on H_i / sqrt(d), and the residual is what is left of the row.
      const std::vector<double> h = hadamard_matrix(d);
      const double s = hadamard_orthonormal_scale(d);
      fit.gamma_min = INFINITY;
      fit.gamma_max = -INFINITY;
      for (std::size_t i = 0; i < d; ++i) {
        double g = 0;
        for (std::size_t j = 0; j < d; ++j) g += double(w[i * d + j]) * h[i * d + j] * s;
        params[i] = static_cast<float>(g);
        params[d + i] = bias != nullptr ? bias[i] : 0.0f;
        for (std::size_t j = 0; j < d; ++j) {
          const double r = double(w[i * d + j]) - g * h[i * d + j] * s;
          resid += r * r;
        }
        fit.gamma_mean += g / double(d);
        fit.gamma_min = std::min(fit.gamma_min, g);
        fit.gamma_max = std::max(fit.gamma_max, g);
      }
      break;
    }
    case Projection::identity:
      // No parameters: the fit is I itself (the bias, if any, is dropped).
      for (std::size_t i = 0; i < d; ++i)
        for (std::size_t j = 0; j < d; ++j) {
          const double r = double(w[i * d + j]) - (i == j ? 1.0 : 0.0);
          resid += r * r;
        }
      fit.gamma_mean = fit.gamma_min = fit.gamma_max = 1;
      break;
  }
  fit.relative_residual = norm > 0 ? std::sqrt(resid / norm) : (resid > 0 ? INFINITY : 0.0);
  return fit;
}

SourceModel SourceModel::load(const std::string& dir) {
  const ModelConfig config = read_config(dir);
  verify_checkpoint_files(dir);
  SourceModel m{config, ParamLayout(config), {}, std::nullopt, dir};
  m.params.assign(m.layout.total_floats(), 0.0f);
  load_weights((std::filesystem::path(dir) / "model.safetensors").string(), m.layout,
               m.params.data());
  const std::string spec = checkpoint_tokenizer(dir);
  if (spec != "byte")
    m.tokenizer = tok::load_tokenizer(spec);
  else if (config.vocab_size == 256)
    m.tokenizer = tok::Tokenizer::bytes();
  return m;
}

std::vector<float> SourceModel::tensor(const std::string& name) const {
  const TensorSpec* t = layout.find(name);
  if (t == nullptr) throw std::logic_error("interop: the layout has no tensor " + name);
  const auto* p = params.data() + t->offset;
  return std::vector<float>(p, p + t->numel);
}

DenseOut SourceModel::dense_out(int layer) const {
  const std::size_t d = static_cast<std::size_t>(config.d_model);
  DenseOut o;
  o.w.resize(d * d);
  o.bias.resize(d);
  fold_projection(config, params.data() + layout.blocks[static_cast<std::size_t>(layer)].proj,
                  o.w.data(), o.bias.data());
  o.has_bias = config.projection == Projection::wht ||
               (config.projection == Projection::dense && config.has_bias());
  return o;
}

std::vector<float> transpose(const std::vector<float>& m, int rows, int cols) {
  std::vector<float> t(m.size());
  const std::size_t r = static_cast<std::size_t>(rows), c = static_cast<std::size_t>(cols);
  for (std::size_t i = 0; i < r; ++i)
    for (std::size_t j = 0; j < c; ++j) t[j * r + i] = m[i * c + j];
  return t;
}

std::string fold_description(Projection p) {
  switch (p) {
    case Projection::wht:
      return "W_O = diag(gamma) H / sqrt(d), bias = beta (H: whtlm's Hadamard matrix of order "
             "d; gamma, beta: the trained scale and bias)";
    case Projection::identity:
      return "W_O = I, no bias";
    case Projection::dense:
      return "none";
  }
  return "?";
}

}  // namespace whtlm::interop
