// Matrix products and the linear layer built on them, with the small helpers
// (column sums, adds) that bias gradients and residuals need.
#include <algorithm>
#include <cstring>
#include <vector>

#include "backend/ops.hpp"
#include "base/parallel.hpp"

namespace whtlm::backend {
namespace {

template <class T>
T at(const T* m, std::size_t ld, bool trans, std::size_t i, std::size_t j) {
  return trans ? m[j * ld + i] : m[i * ld + j];
}

}  // namespace

namespace {

constexpr std::size_t kGemvMaxRows = 4;

// C[m x n] = alpha * A B^T + beta * C for m <= kGemvMaxRows, B stored [n, k]: each
// output is a dot product of an A row with a B row; every B row is streamed once for
// all m rows. Threads split the n outputs.
void small_m_bt(std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a,
                std::size_t lda, const float* b, std::size_t ldb, float beta, float* c,
                std::size_t ldc) {
  parallel_ranges(n, n * k, [&](std::size_t j0, std::size_t nj) {
    for (std::size_t j = j0; j < j0 + nj; ++j) {
      const float* bj = b + j * ldb;
      float acc[kGemvMaxRows] = {0, 0, 0, 0};
      for (std::size_t i = 0; i < m; ++i) {
        const float* ai = a + i * lda;
        float s = 0;
#pragma omp simd reduction(+ : s)
        for (std::size_t p = 0; p < k; ++p) s += ai[p] * bj[p];
        acc[i] = s;
      }
      for (std::size_t i = 0; i < m; ++i) {
        float& out = c[i * ldc + j];
        out = alpha * acc[i] + (beta == 0.0f ? 0.0f : beta * out);
      }
    }
  });
}

}  // namespace

// Products with few rows (decoding) against a weight stored [out, in] (B transposed):
// up to 4 rows stream the weights once in the kernel above; up to 64 rows run as the
// transposed product C^T = B A^T, whose many rows suit the BLAS far better (measured:
// small, batch 16, decode 1.5x). Everything else goes to the BLAS as it is.
template <>
void gemm<float>(Trans ta, Trans tb, std::size_t m, std::size_t n, std::size_t k, float alpha,
                 const float* a, std::size_t lda, const float* b, std::size_t ldb, float beta,
                 float* c, std::size_t ldc) {
  if (ta == Trans::no && tb == Trans::yes && m >= 1 && k > 0 && n > 0) {
    if (m <= kGemvMaxRows) {
      small_m_bt(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
      return;
    }
    if (m <= 64) {
      thread_local std::vector<float> ct;
      ct.resize(n * m);
      sgemm(Trans::no, Trans::yes, n, m, k, alpha, b, ldb, a, lda, 0.0f, ct.data(), m);
      for (std::size_t i = 0; i < m; ++i)
        for (std::size_t j = 0; j < n; ++j) {
          float& out = c[i * ldc + j];
          out = ct[j * m + i] + (beta == 0.0f ? 0.0f : beta * out);
        }
      return;
    }
  }
  sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// Double precision is only used by the finite-difference tests: a plain loop, summing
// in k order, is all they need.
template <>
void gemm<double>(Trans ta, Trans tb, std::size_t m, std::size_t n, std::size_t k, double alpha,
                  const double* a, std::size_t lda, const double* b, std::size_t ldb, double beta,
                  double* c, std::size_t ldc) {
  const bool at_ = ta == Trans::yes, bt = tb == Trans::yes;
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      double s = 0;
      for (std::size_t p = 0; p < k; ++p) s += at(a, lda, at_, i, p) * at(b, ldb, bt, p, j);
      double& out = c[i * ldc + j];
      out = alpha * s + (beta == 0 ? 0.0 : beta * out);
    }
}

template <class T>
void column_sum(T* out, const T* x, std::size_t rows, std::size_t cols) {
  // Each thread owns a range of columns and sums its rows in order: the result does
  // not depend on the thread count.
  parallel_ranges(cols, rows * cols, [&](std::size_t c0, std::size_t nc) {
    for (std::size_t r = 0; r < rows; ++r) {
      const T* row = x + r * cols + c0;
      T* o = out + c0;
#pragma omp simd
      for (std::size_t j = 0; j < nc; ++j) o[j] += row[j];
    }
  });
}

template <class T>
void add(T* y, const T* a, const T* b, std::size_t n) {
  parallel_ranges(n, n, [&](std::size_t i0, std::size_t len) {
#pragma omp simd
    for (std::size_t i = i0; i < i0 + len; ++i) y[i] = a[i] + b[i];
  });
}

template <class T>
void linear_forward(T* y, const T* x, const T* w, const T* b, const LinearShape& s, Write y_write) {
  const std::size_t rows = s.rows, in = s.in, out = s.out;
  const bool w_in_out = s.layout == WeightLayout::in_out, accumulate = y_write == Write::accumulate;
  if (b != nullptr) {
    parallel_ranges(rows, rows * out, [&](std::size_t r0, std::size_t nr) {
      for (std::size_t r = r0; r < r0 + nr; ++r) {
        T* yr = y + r * out;
        if (accumulate) {
#pragma omp simd
          for (std::size_t j = 0; j < out; ++j) yr[j] += b[j];
        } else {
          std::memcpy(yr, b, out * sizeof(T));
        }
      }
    });
  }
  const T beta = b != nullptr || accumulate ? T(1) : T(0);
  if (w_in_out)
    gemm<T>(Trans::no, Trans::no, rows, out, in, T(1), x, in, w, out, beta, y, out);
  else
    gemm<T>(Trans::no, Trans::yes, rows, out, in, T(1), x, in, w, in, beta, y, out);
}

template <class T>
void linear_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const LinearShape& s,
                     Write dx_write) {
  const std::size_t rows = s.rows, in = s.in, out = s.out;
  const bool w_in_out = s.layout == WeightLayout::in_out;
  const T beta_x = dx_write == Write::accumulate ? T(1) : T(0);
  if (dx != nullptr) {
    if (w_in_out)  // dx = dy w^T, w: [in, out]
      gemm<T>(Trans::no, Trans::yes, rows, in, out, T(1), dy, out, w, out, beta_x, dx, in);
    else  // dx = dy w, w: [out, in]
      gemm<T>(Trans::no, Trans::no, rows, in, out, T(1), dy, out, w, in, beta_x, dx, in);
  }
  if (w_in_out)  // dw[in, out] += x^T dy
    gemm<T>(Trans::yes, Trans::no, in, out, rows, T(1), x, in, dy, out, T(1), dw, out);
  else  // dw[out, in] += dy^T x
    gemm<T>(Trans::yes, Trans::no, out, in, rows, T(1), dy, out, x, in, T(1), dw, in);
  if (db != nullptr) column_sum(db, dy, rows, out);
}

#define WHTLM_INSTANTIATE(T)                                                                     \
  template void column_sum<T>(T*, const T*, std::size_t, std::size_t);                           \
  template void add<T>(T*, const T*, const T*, std::size_t);                                     \
  template void linear_forward<T>(T*, const T*, const T*, const T*, const LinearShape&, Write);  \
  template void linear_backward<T>(T*, T*, T*, const T*, const T*, const T*, const LinearShape&, \
                                   Write);
WHTLM_INSTANTIATE(float)
WHTLM_INSTANTIATE(double)
#undef WHTLM_INSTANTIATE

}  // namespace whtlm::backend
