// The three attention output projections. Shapes: x, dx, y, dy are [rows, d].
//   dense:    y += x W^T (+ b)     W: [d, d] ([in, out] for gpt2's Conv1D layout)
//   wht:      y += gamma * (H x / sqrt(d)) + beta      gamma, beta: [d]
//   identity: y += x
#include "model/projection.hpp"

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "backend/backend.hpp"
#include "backend/ops.hpp"
#include "whtlm/hadamard.hpp"

namespace whtlm::model {
namespace {

// Additions and subtractions of the fast transform for n = K * 2^m: m butterfly
// stages (n each) and the K x K mix (n (K - 1)) when K > 1.
double hadamard_additions(std::size_t n) {
  std::size_t k = n, m = 0;
  while (k % 2 == 0) {
    k /= 2;
    ++m;
  }
  return static_cast<double>(n) * (static_cast<double>(m) + static_cast<double>(k - 1));
}

// The double-precision reference path: the CPU templates behind the same names the
// backends use, so each variant's code is written once for both.
struct Reference {
  void linear_forward(double* y, const double* x, const double* w, const double* b,
                      const backend::LinearShape& s, backend::Write y_write) {
    backend::linear_forward(y, x, w, b, s, y_write);
  }
  void linear_backward(double* dx, double* dw, double* db, const double* dy, const double* x,
                       const double* w, const backend::LinearShape& s, backend::Write dx_write) {
    backend::linear_backward(dx, dw, db, dy, x, w, s, dx_write);
  }
  void hadamard_projection_forward(double* y, const double* x, const double* gamma,
                                   const double* beta, std::size_t rows, std::size_t n,
                                   double scale) {
    backend::hadamard_projection_forward(y, x, gamma, beta, rows, n, scale);
  }
  void hadamard_projection_backward(double* dx, double* dgamma, double* dbeta, const double* dy,
                                    const double* x, const double* gamma, std::size_t rows,
                                    std::size_t n, double scale) {
    backend::hadamard_projection_backward(dx, dgamma, dbeta, dy, x, gamma, rows, n, scale);
  }
  void add(double* y, const double* a, const double* b, std::size_t n) { backend::add(y, a, b, n); }
  void copy(void* dst, const void* src, std::size_t bytes) { std::memcpy(dst, src, bytes); }
};

// Implements both precisions of the virtual interface with one template per variant.
template <class Impl>
class Projector : public OutputProjection {
 public:
  void forward(backend::Backend& be, float* y, const float* x, const float* p, std::size_t rows,
               const backend::PackedWeight* packed) const override {
    if (packed == nullptr || !self().fwd_packed(be, y, x, p, rows, *packed))
      self().fwd(be, y, x, p, rows);
  }
  void forward(double* y, const double* x, const double* p, std::size_t rows) const override {
    Reference ref;
    self().fwd(ref, y, x, p, rows);
  }
  void backward(backend::Backend& be, float* dx, float* dp, const float* dy, const float* x,
                const float* p, std::size_t rows) const override {
    self().bwd(be, dx, dp, dy, x, p, rows);
  }
  void backward(double* dx, double* dp, const double* dy, const double* x, const double* p,
                std::size_t rows) const override {
    Reference ref;
    self().bwd(ref, dx, dp, dy, x, p, rows);
  }
  const std::vector<ProjectionParam>& parameters() const override { return params_; }

 protected:
  std::vector<ProjectionParam> params_;
  // A variant with a matrix weight hides this with a forward that reads the packed
  // copy; the others have nothing to pack.
  bool fwd_packed(backend::Backend&, float*, const float*, const float*, std::size_t,
                  const backend::PackedWeight&) const {
    return false;
  }

 private:
  const Impl& self() const { return static_cast<const Impl&>(*this); }
};

class Dense final : public Projector<Dense> {
 public:
  Dense(int d, bool bias, bool weight_in_out)
      : d_(static_cast<std::size_t>(d)),
        bias_(bias),
        layout_(weight_in_out ? backend::WeightLayout::in_out : backend::WeightLayout::out_in) {
    params_.push_back({"weight", {d, d}, TensorInit::residual_normal});
    if (bias_) params_.push_back({"bias", {d}, TensorInit::zeros});
  }
  Projection kind() const override { return Projection::dense; }
  double flops_forward() const override {
    return 2.0 * double(d_) * double(d_) + (bias_ ? double(d_) : 0.0);
  }
  double flops_backward() const override {
    return 4.0 * double(d_) * double(d_) + (bias_ ? double(d_) : 0.0);
  }

  template <class Ops, class T>
  void fwd(Ops& ops, T* y, const T* x, const T* p, std::size_t rows) const {
    ops.linear_forward(y, x, p, bias_ ? p + d_ * d_ : nullptr, {rows, d_, d_, layout_},
                       backend::Write::accumulate);
  }
  bool fwd_packed(backend::Backend& be, float* y, const float* x, const float* p, std::size_t rows,
                  const backend::PackedWeight& w) const {
    be.linear_forward_packed(y, x, w, bias_ ? p + d_ * d_ : nullptr, rows,
                             backend::Write::accumulate);
    return true;
  }
  template <class Ops, class T>
  void bwd(Ops& ops, T* dx, T* dp, const T* dy, const T* x, const T* p, std::size_t rows) const {
    ops.linear_backward(dx, dp, bias_ ? dp + d_ * d_ : nullptr, dy, x, p, {rows, d_, d_, layout_},
                        backend::Write::overwrite);
  }

 private:
  std::size_t d_;
  bool bias_;
  backend::WeightLayout layout_;
};

class Wht final : public Projector<Wht> {
 public:
  explicit Wht(int d) : d_(static_cast<std::size_t>(d)) {
    check_hadamard_size(d_);
    params_.push_back({"scale", {d}, TensorInit::wht_scale});
    params_.push_back({"bias", {d}, TensorInit::zeros});
  }
  Projection kind() const override { return Projection::wht; }
  // Transform, then scale by 1/sqrt(d) and gamma (2 multiplies) and add beta.
  double flops_forward() const override { return hadamard_additions(d_) + 3.0 * double(d_); }
  // d beta (1), d gamma (2), gamma * dy (1), the transform, its scale (1).
  double flops_backward() const override { return hadamard_additions(d_) + 5.0 * double(d_); }

  // p = gamma | beta. The backend fuses transform, scale, affine and residual add.
  template <class Ops, class T>
  void fwd(Ops& ops, T* y, const T* x, const T* p, std::size_t rows) const {
    ops.hadamard_projection_forward(y, x, p, p + d_, rows, d_, scale<T>());
  }
  // t = H x / sqrt(d) is recomputed rather than kept from the forward pass, so the
  // backward needs no memory of its own (see ops.hpp).
  template <class Ops, class T>
  void bwd(Ops& ops, T* dx, T* dp, const T* dy, const T* x, const T* p, std::size_t rows) const {
    ops.hadamard_projection_backward(dx, dp, dp + d_, dy, x, p, rows, d_, scale<T>());
  }

 private:
  template <class T>
  T scale() const {
    return static_cast<T>(hadamard_orthonormal_scale(d_));
  }
  std::size_t d_;
};

class Identity final : public Projector<Identity> {
 public:
  explicit Identity(int d) : d_(static_cast<std::size_t>(d)) {}
  Projection kind() const override { return Projection::identity; }
  double flops_forward() const override { return 0; }
  double flops_backward() const override { return 0; }

  template <class Ops, class T>
  void fwd(Ops& ops, T* y, const T* x, const T*, std::size_t rows) const {
    ops.add(y, y, x, rows * d_);
  }
  template <class Ops, class T>
  void bwd(Ops& ops, T* dx, T*, const T* dy, const T*, const T*, std::size_t rows) const {
    ops.copy(dx, dy, rows * d_ * sizeof(T));
  }

 private:
  std::size_t d_;
};

}  // namespace

std::size_t OutputProjection::parameter_count() const {
  std::size_t n = 0;
  for (const ProjectionParam& p : parameters()) {
    std::size_t e = 1;
    for (std::int64_t s : p.shape) e *= static_cast<std::size_t>(s);
    n += e;
  }
  return n;
}

std::string projection_width_problem(Projection kind, int d) {
  if (kind != Projection::wht || hadamard_supported(static_cast<std::size_t>(d))) return {};
  try {
    check_hadamard_size(static_cast<std::size_t>(d));
  } catch (const std::invalid_argument& e) {
    return std::string("needs a Hadamard size: ") + e.what();
  }
  return {};
}

std::unique_ptr<OutputProjection> make_output_projection(Projection kind, int d, bool bias,
                                                         bool weight_in_out) {
  switch (kind) {
    case Projection::dense:
      return std::make_unique<Dense>(d, bias, weight_in_out);
    case Projection::wht:
      return std::make_unique<Wht>(d);
    case Projection::identity:
      return std::make_unique<Identity>(d);
  }
  throw std::invalid_argument("unknown output projection");
}

std::unique_ptr<OutputProjection> make_output_projection(const ModelConfig& c) {
  return make_output_projection(c.projection, c.d_model, c.has_bias(), c.family == Family::gpt2);
}

}  // namespace whtlm::model
