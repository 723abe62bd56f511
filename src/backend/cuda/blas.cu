// Matrix products through cuBLASLt: the row-major gemm of kernels.hpp (fp32, or bf16
// inputs; fp32 accumulation and output; no TF32) and the linear layer built on it.
//
// cuBLASLt is column-major. A row-major X [r x c] with row stride ld, read column-major,
// is X^T [c x r] with leading dimension ld. So the row-major product
//   C[m x n] = alpha op(A) op(B) + beta C
// is the column-major product of the transposes
//   C^T[n x m] = alpha op(B)^T op(A)^T + beta C^T:
// cuBLASLt's A is our B (transposed iff tb), its B is our A (transposed iff ta), and its
// M, N, K are n, m, k. Its layouts describe the matrices as stored, before op():
//   its A:   tb == no ? n x k : k x n, ld = ldb   (our B stored k x n or n x k)
//   its B:   ta == no ? k x m : m x k, ld = lda   (our A stored m x k or k x m)
//   its C/D: n x m, ld = ldc.
// Check with m = 2, k = 3, n = 4. ta = tb = no (lda = 3, ldb = 4, ldc = 4): its A is
// the B buffer as 4 x 3, (j, p) at j + 4p = B[p][j], so it is B^T; its B is the A
// buffer as 3 x 2, (p, i) at p + 3i = A[i][p], so it is A^T; D is 4 x 2 with (j, i) at
// j + 4i = C[i][j], and D = B^T A^T = (A B)^T. ta = tb = yes (A stored 3 x 2, lda = 2;
// B stored 4 x 3, ldb = 3): its A is the B buffer as 3 x 4, (p, j) at p + 3j = B[j][p],
// transposed (j, p) = B[j][p] = op(B)^T[j][p]; its B is the A buffer as 2 x 3, (i, p)
// at i + 2p = A[p][i], transposed (p, i) = A[p][i] = op(A)^T[p][i]. The mixed cases
// take one operand from each.
#include <cublasLt.h>

#include <compare>
#include <map>
#include <mutex>

#include "backend/cuda/common.cuh"

namespace whtlm::backend::cuda {
namespace {

void ok(cublasStatus_t status, const char* what) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  throw std::runtime_error(std::string("cuBLASLt: ") + what + ": " + cublasLtGetStatusName(status) +
                           " (" + cublasLtGetStatusString(status) + ")");
}

constexpr std::size_t kWorkspaceBytes = std::size_t{32} << 20;

// The handle and the workspace, created on first use and kept for the life of the
// process (never destroyed: at exit the CUDA runtime may already be gone). The
// workspace is cudaMalloc'd here, outside the backend's allocation count.
struct Context {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
};

const Context& context() {
  static const Context ctx = [] {
    Context c;
    ok(cublasLtCreate(&c.handle), "cublasLtCreate");
    check(cudaMalloc(&c.workspace, kWorkspaceBytes), "cudaMalloc (cuBLASLt workspace)");
    return c;
  }();
  return ctx;
}

// Everything a matmul needs but the pointers and scalars, per shape.
struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;  // cuBLASLt's A, B, C = D
  cublasLtMatmulAlgo_t algo{};
};

// Largest power of two (up to 256) that divides the address: the alignment the
// heuristic may assume for that operand.
std::uint64_t alignment(const void* p) {
  const auto address = reinterpret_cast<std::uintptr_t>(p);
  std::uint64_t a = 256;
  while (a > 1 && address % a != 0) a /= 2;
  return a;
}

template <class T>
void set(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr, const T& value) {
  ok(cublasLtMatmulDescSetAttribute(desc, attr, &value, sizeof value),
     "cublasLtMatmulDescSetAttribute");
}

template <class T>
void set(cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attr,
         const T& value) {
  ok(cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof value),
     "cublasLtMatmulPreferenceSetAttribute");
}

// A gemm in our row-major terms, with the alignment of each pointer.
struct PlanKey {
  bool bf16, ta, tb;
  std::uint64_t m, n, k, lda, ldb, ldc, align_a, align_b, align_c;
  auto operator<=>(const PlanKey&) const = default;
};

Plan make_plan(const PlanKey& key) {
  const bool ta = key.ta, tb = key.tb;
  const std::uint64_t m = key.m, n = key.n, k = key.k;
  const auto lda = static_cast<std::int64_t>(key.lda), ldb = static_cast<std::int64_t>(key.ldb),
             ldc = static_cast<std::int64_t>(key.ldc);
  const cudaDataType in_type = key.bf16 ? CUDA_R_16BF : CUDA_R_32F;
  Plan p;
  ok(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
  const cublasOperation_t op_a = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  set(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, op_a);
  set(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, op_b);
  ok(cublasLtMatrixLayoutCreate(&p.a, in_type, tb ? k : n, tb ? n : k, ldb),
     "cublasLtMatrixLayoutCreate (A)");
  ok(cublasLtMatrixLayoutCreate(&p.b, in_type, ta ? m : k, ta ? k : m, lda),
     "cublasLtMatrixLayoutCreate (B)");
  ok(cublasLtMatrixLayoutCreate(&p.c, CUDA_R_32F, n, m, ldc), "cublasLtMatrixLayoutCreate (C)");

  cublasLtMatmulPreference_t pref = nullptr;
  ok(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
  set(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, std::uint64_t{kWorkspaceBytes});
  // cuBLASLt's A is our b and its B our a.
  set(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, static_cast<std::uint32_t>(key.align_b));
  set(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, static_cast<std::uint32_t>(key.align_a));
  set(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, static_cast<std::uint32_t>(key.align_c));
  set(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, static_cast<std::uint32_t>(key.align_c));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(context().handle, p.desc, p.a, p.b,
                                                               p.c, p.c, pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  ok(status, "cublasLtMatmulAlgoGetHeuristic");
  if (found == 0) ok(CUBLAS_STATUS_NOT_SUPPORTED, "cublasLtMatmulAlgoGetHeuristic (no algorithm)");
  ok(result.state, "cublasLtMatmulAlgoGetHeuristic (result)");
  p.algo = result.algo;
  return p;
}

const Plan& plan_for(const PlanKey& key) {
  static std::mutex mutex;
  static auto* plans = new std::map<PlanKey, Plan>;  // never destroyed, like the handle
  std::lock_guard<std::mutex> lock(mutex);
  auto it = plans->find(key);
  if (it == plans->end()) it = plans->emplace(key, make_plan(key)).first;
  return it->second;  // map nodes never move
}

// c[i][j] = beta c[i][j] for i < rows, j < cols (beta == 0 writes zeros, NaN or not).
__global__ void scale_matrix_kernel(float* c, std::size_t rows, std::size_t cols, std::size_t ldc,
                                    float beta) {
  const std::size_t j = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= cols) return;
  for (std::size_t i = blockIdx.y; i < rows; i += gridDim.y) {
    float& v = c[i * ldc + j];
    v = beta == 0.0f ? 0.0f : beta * v;
  }
}

// y[r] = b (+ y[r] when accumulate): the bias the gemm then adds onto with beta = 1.
__global__ void bias_rows_kernel(float* y, const float* b, std::size_t rows, std::size_t out,
                                 bool accumulate) {
  const std::size_t j = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= out) return;
  const float bj = b[j];
  for (std::size_t r = blockIdx.y; r < rows; r += gridDim.y) {
    float& v = y[r * out + j];
    v = accumulate ? v + bj : bj;
  }
}

constexpr unsigned kThreads = 256;

// Columns across x, rows striding over y (at most 65535 blocks).
dim3 matrix_grid(std::size_t rows, std::size_t cols) {
  return dim3(static_cast<unsigned>((cols + kThreads - 1) / kThreads),
              static_cast<unsigned>(rows < 65535 ? rows : 65535));
}

void matmul(bool bf16, Trans ta, Trans tb, std::size_t m, std::size_t n, std::size_t k, float alpha,
            const void* a, std::size_t lda, const void* b, std::size_t ldb, float beta, float* c,
            std::size_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {  // an empty sum: C = beta C
    if (beta != 1.0f) {
      scale_matrix_kernel<<<matrix_grid(m, n), kThreads, 0, cu_stream()>>>(c, m, n, ldc, beta);
      check_launch("gemm (k = 0)");
    }
    return;
  }
  const PlanKey key(bf16, ta == Trans::yes, tb == Trans::yes, m, n, k, lda, ldb, ldc, alignment(a),
                    alignment(b), alignment(c));
  const Plan& p = plan_for(key);
  const Context& ctx = context();
  ok(cublasLtMatmul(ctx.handle, p.desc, &alpha, b, p.a, a, p.b, &beta, c, p.c, c, p.c, &p.algo,
                    ctx.workspace, kWorkspaceBytes, cu_stream()),
     bf16 ? "cublasLtMatmul (bf16)" : "cublasLtMatmul");
}

}  // namespace

void gemm(Trans ta, Trans tb, std::size_t m, std::size_t n, std::size_t k, float alpha,
          const float* a, std::size_t lda, const float* b, std::size_t ldb, float beta, float* c,
          std::size_t ldc) {
  matmul(false, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void gemm_bf16(Trans ta, Trans tb, std::size_t m, std::size_t n, std::size_t k, float alpha,
               const std::uint16_t* a, std::size_t lda, const std::uint16_t* b, std::size_t ldb,
               float beta, float* c, std::size_t ldc) {
  matmul(true, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

namespace {

// The layer's products, written once for both operand types (bf16: x, w and dy are
// the converted copies; everything else stays fp32).
//   forward:  y = x w (w [in, out]) or x w^T (w [out, in]), added onto y when beta = 1
//   backward: dx = dy w^T or dy w (when dx is given), dw += x^T dy or dy^T x
// The bias is written (or added) into y first and the product added onto it, as on
// the CPU; db is the column sums of the fp32 dy.
void bias_rows(float* y, const float* b, std::size_t rows, std::size_t out, bool accumulate) {
  bias_rows_kernel<<<matrix_grid(rows, out), kThreads, 0, cu_stream()>>>(y, b, rows, out,
                                                                         accumulate);
  check_launch("linear_forward (bias)");
}

void forward_product(bool bf16, float* y, const void* x, const void* w, std::size_t rows,
                     std::size_t in, std::size_t out, bool w_in_out, float beta) {
  if (w_in_out)
    matmul(bf16, Trans::no, Trans::no, rows, out, in, 1.0f, x, in, w, out, beta, y, out);
  else
    matmul(bf16, Trans::no, Trans::yes, rows, out, in, 1.0f, x, in, w, in, beta, y, out);
}

void dx_product(bool bf16, float* dx, const void* dy, const void* w, std::size_t rows,
                std::size_t in, std::size_t out, bool w_in_out, bool dx_accumulate) {
  const float beta_x = dx_accumulate ? 1.0f : 0.0f;
  if (w_in_out)
    matmul(bf16, Trans::no, Trans::yes, rows, in, out, 1.0f, dy, out, w, out, beta_x, dx, in);
  else
    matmul(bf16, Trans::no, Trans::no, rows, in, out, 1.0f, dy, out, w, in, beta_x, dx, in);
}

void dw_product(bool bf16, float* dw, const void* x, const void* dy, std::size_t rows,
                std::size_t in, std::size_t out, bool w_in_out) {
  if (w_in_out)
    matmul(bf16, Trans::yes, Trans::no, in, out, rows, 1.0f, x, in, dy, out, 1.0f, dw, out);
  else
    matmul(bf16, Trans::yes, Trans::no, out, in, rows, 1.0f, dy, out, x, in, 1.0f, dw, in);
}

}  // namespace

void linear_forward(float* y, const float* x, const float* w, const float* b, std::size_t rows,
                    std::size_t in, std::size_t out, bool w_in_out, bool accumulate) {
  if (rows == 0 || out == 0) return;
  if (b != nullptr) bias_rows(y, b, rows, out, accumulate);
  const float beta = b != nullptr || accumulate ? 1.0f : 0.0f;
  forward_product(false, y, x, w, rows, in, out, w_in_out, beta);
}

// dx and db may be null.
void linear_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                     const float* w, std::size_t rows, std::size_t in, std::size_t out,
                     bool w_in_out, bool dx_accumulate) {
  if (dx != nullptr) dx_product(false, dx, dy, w, rows, in, out, w_in_out, dx_accumulate);
  dw_product(false, dw, x, dy, rows, in, out, w_in_out);
  if (db != nullptr) column_sum(db, dy, rows, out);
}

std::size_t linear_bf16_scratch(std::size_t rows, std::size_t in, std::size_t out) {
  return rows * in + rows * out + in * out;
}

// The same layer on bf16 copies of the products' operands: the scratch holds
// x | dy | w rounded to bf16, each converted once per call.
void linear_forward_bf16(float* y, const float* x, const float* w, const float* b, std::size_t rows,
                         std::size_t in, std::size_t out, bool w_in_out, bool accumulate,
                         std::uint16_t* scratch) {
  if (rows == 0 || out == 0) return;
  if (b != nullptr) bias_rows(y, b, rows, out, accumulate);
  std::uint16_t* x16 = scratch;
  std::uint16_t* w16 = scratch + rows * in + rows * out;
  to_bf16(x16, x, rows * in);
  to_bf16(w16, w, in * out);
  const float beta = b != nullptr || accumulate ? 1.0f : 0.0f;
  forward_product(true, y, x16, w16, rows, in, out, w_in_out, beta);
}

void linear_backward_bf16(float* dx, float* dw, float* db, const float* dy, const float* x,
                          const float* w, std::size_t rows, std::size_t in, std::size_t out,
                          bool w_in_out, bool dx_accumulate, std::uint16_t* scratch) {
  std::uint16_t* x16 = scratch;
  std::uint16_t* dy16 = scratch + rows * in;
  std::uint16_t* w16 = dy16 + rows * out;
  to_bf16(dy16, dy, rows * out);
  if (dx != nullptr) {
    to_bf16(w16, w, in * out);
    dx_product(true, dx, dy16, w16, rows, in, out, w_in_out, dx_accumulate);
  }
  to_bf16(x16, x, rows * in);
  dw_product(true, dw, x16, dy16, rows, in, out, w_in_out);
  if (db != nullptr) column_sum(db, dy, rows, out);
}

}  // namespace whtlm::backend::cuda
