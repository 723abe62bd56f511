// The three attention output projections. Shapes: x, dx, y, dy are [rows, d].
//   dense:    y += x W^T (+ b)     W: [d, d] ([in, out] for gpt2's Conv1D layout)
//   wht:      y += gamma * (H x / sqrt(d)) + beta      gamma, beta: [d]
//   identity: y += x
#include "model/projection.hpp"

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "backend/ops.hpp"
#include "whtlm/hadamard.hpp"

namespace whtlm::model {
namespace {

using backend::column_sum;

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

// Implements both precisions of the virtual interface with one template.
template <class Impl>
class Projector : public OutputProjection {
 public:
  void forward(float* y, const float* x, const float* p, std::size_t rows) const override {
    self().template fwd<float>(y, x, p, rows);
  }
  void forward(double* y, const double* x, const double* p, std::size_t rows) const override {
    self().template fwd<double>(y, x, p, rows);
  }
  void backward(float* dx, float* dp, const float* dy, const float* x, const float* p,
                std::size_t rows) const override {
    self().template bwd<float>(dx, dp, dy, x, p, rows);
  }
  void backward(double* dx, double* dp, const double* dy, const double* x, const double* p,
                std::size_t rows) const override {
    self().template bwd<double>(dx, dp, dy, x, p, rows);
  }
  const std::vector<ProjectionParam>& parameters() const override { return params_; }

 protected:
  std::vector<ProjectionParam> params_;

 private:
  const Impl& self() const { return static_cast<const Impl&>(*this); }
};

class Dense final : public Projector<Dense> {
 public:
  Dense(int d, bool bias, bool weight_in_out)
      : d_(static_cast<std::size_t>(d)), bias_(bias), in_out_(weight_in_out) {
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

  template <class T>
  void fwd(T* y, const T* x, const T* p, std::size_t rows) const {
    backend::linear_forward<T>(y, x, p, bias_ ? p + d_ * d_ : nullptr, rows, d_, d_, in_out_, true);
  }
  template <class T>
  void bwd(T* dx, T* dp, const T* dy, const T* x, const T* p, std::size_t rows) const {
    backend::linear_backward<T>(dx, dp, bias_ ? dp + d_ * d_ : nullptr, dy, x, p, rows, d_, d_,
                                in_out_, false);
  }

 private:
  std::size_t d_;
  bool bias_, in_out_;
};

class Wht final : public Projector<Wht> {
 public:
  explicit Wht(int d) : d_(static_cast<std::size_t>(d)) {
    check_hadamard_size(d_);
    params_.push_back({"scale", {d}, TensorInit::ones});
    params_.push_back({"bias", {d}, TensorInit::zeros});
  }
  Projection kind() const override { return Projection::wht; }
  // Transform, then scale by 1/sqrt(d) and gamma (2 multiplies) and add beta.
  double flops_forward() const override { return hadamard_additions(d_) + 3.0 * double(d_); }
  // d beta (1), d gamma (2), gamma * dy (1), the transform, its scale (1).
  double flops_backward() const override { return hadamard_additions(d_) + 5.0 * double(d_); }

  template <class T>
  void fwd(T* y, const T* x, const T* p, std::size_t rows) const {
    const T* gamma = p;
    const T* beta = p + d_;
    if constexpr (sizeof(T) == 4) {
      fwht_affine_residual(x, nullptr, y, gamma, beta, rows, d_, scale<float>());
    } else {  // double: the tests' reference path, unfused
      std::vector<T> t(x, x + rows * d_);
      fwht(t.data(), rows, d_, scale<T>());
      for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t i = 0; i < d_; ++i) y[r * d_ + i] += gamma[i] * t[r * d_ + i] + beta[i];
    }
  }

  // t = H x / sqrt(d) is recomputed rather than kept from the forward pass, in dx
  // (written last), so the backward needs no memory of its own.
  template <class T>
  void bwd(T* dx, T* dp, const T* dy, const T* x, const T* p, std::size_t rows) const {
    const T* gamma = p;
    T* dgamma = dp;
    T* dbeta = dp + d_;
    const std::size_t n = rows * d_;
    std::memcpy(dx, x, n * sizeof(T));
    transform(dx, rows);
    for (std::size_t i = 0; i < n; ++i) dx[i] *= dy[i];
    column_sum(dgamma, dx, rows, d_);
    column_sum(dbeta, dy, rows, d_);
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t i = 0; i < d_; ++i) dx[r * d_ + i] = gamma[i] * dy[r * d_ + i];
    transform(dx, rows);  // H is symmetric: the transform is its own transpose
  }

 private:
  template <class T>
  T scale() const {
    return static_cast<T>(hadamard_orthonormal_scale(d_));
  }
  void transform(float* v, std::size_t rows) const { fwht(v, rows, d_, scale<float>()); }
  void transform(double* v, std::size_t rows) const { fwht(v, rows, d_, scale<double>()); }
  std::size_t d_;
};

class Identity final : public Projector<Identity> {
 public:
  explicit Identity(int d) : d_(static_cast<std::size_t>(d)) {}
  Projection kind() const override { return Projection::identity; }
  double flops_forward() const override { return 0; }
  double flops_backward() const override { return 0; }

  template <class T>
  void fwd(T* y, const T* x, const T*, std::size_t rows) const {
    backend::add(y, y, x, rows * d_);
  }
  template <class T>
  void bwd(T* dx, T*, const T* dy, const T*, const T*, std::size_t rows) const {
    std::memcpy(dx, dy, rows * d_ * sizeof(T));
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

}  // namespace whtlm::model
