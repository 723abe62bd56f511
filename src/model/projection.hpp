// The attention output projection: the one seam where dense, wht and identity
// differ. Everything the rest of the code needs from a variant is here: its
// parameters (names, shapes), forward, backward and cost. No other file
// branches on which variant is in use.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "whtlm/model.hpp"

// The variants run on a backend, which this header names without including: the
// parameter layout reads a variant's parameters and cost and needs no kernel.
namespace whtlm::backend {
class Backend;
struct PackedWeight;
}  // namespace whtlm::backend

namespace whtlm::model {

// One parameter tensor of the projection, named by its Hugging Face suffix
// ("weight", "bias", "scale"), stored in this order in the projection's block.
// (Weight decay follows the shape, as for every tensor: see ParamLayout.)
struct ProjectionParam {
  std::string suffix;
  std::vector<std::int64_t> shape;
  TensorInit init = TensorInit::zeros;
};

class OutputProjection {
 public:
  virtual ~OutputProjection() = default;
  virtual Projection kind() const = 0;
  // The parameters, in their order inside the projection's contiguous block.
  virtual const std::vector<ProjectionParam>& parameters() const = 0;
  std::size_t parameter_count() const;

  // x: rows x d (the attention output), y: rows x d. Adds the projection of x into y
  // (y is the residual stream): y += P(x). p points at the projection's block. The
  // float version runs on a backend (pointers on its device); the double version is
  // the tests' reference, on the CPU. packed: inference's packed copy of the dense
  // weight, read instead of p's when given (the other variants have no matrix).
  virtual void forward(backend::Backend& be, float* y, const float* x, const float* p,
                       std::size_t rows, const backend::PackedWeight* packed = nullptr) const = 0;
  virtual void forward(double* y, const double* x, const double* p, std::size_t rows) const = 0;

  // dy: rows x d, the gradient arriving at y. Writes dx (rows x d, overwritten; it may
  // serve as workspace before that, so it must not alias dy or x) and adds the parameter
  // gradients into dp (same layout as p).
  virtual void backward(backend::Backend& be, float* dx, float* dp, const float* dy, const float* x,
                        const float* p, std::size_t rows) const = 0;
  virtual void backward(double* dx, double* dp, const double* dy, const double* x, const double* p,
                        std::size_t rows) const = 0;

  // Per token (one row): arithmetic of the forward and of the backward pass.
  virtual double flops_forward() const = 0;
  virtual double flops_backward() const = 0;
};

// Why a variant cannot run at model width d ("needs a Hadamard size: ..."), or empty
// when it can. ModelConfig::validate reports it against d_model.
std::string projection_width_problem(Projection kind, int d);

// d: model width. bias: the dense variant has a bias (gpt2). weight_in_out: the dense
// weight is stored [in, out] (gpt2 Conv1D) rather than [out, in] (Linear). Throws
// std::invalid_argument when d does not suit the variant (wht needs a supported
// Hadamard size).
std::unique_ptr<OutputProjection> make_output_projection(Projection kind, int d, bool bias,
                                                         bool weight_in_out);
// The variant a model config names, at its width, bias and weight layout.
std::unique_ptr<OutputProjection> make_output_projection(const ModelConfig& c);

}  // namespace whtlm::model
