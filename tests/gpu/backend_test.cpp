// The CUDA backend against the CPU backend, op by op. Every test draws fresh random
// inputs (normal, seeded from the test's name, so each test gets its own numbers
// and a rerun the same ones), runs the CPU op and the CUDA op on the same inputs and
// compares the downloaded result with
//
//   rel = ||gpu - cpu|| / ||cpu||   (2-norms over the whole output, in double)
//
// Bounds: 1e-5 for fp32 ops unless a comment at the call says why a looser one (at
// most 1e-4) is needed; 1e-2 for ops that round to bf16. Outputs an op overwrites
// are filled with NaN on the GPU before the call, so an element the kernel skips
// shows up; outputs an op accumulates into start from the same random values on
// both sides. Every measured error is recorded as a test property ("rel_err ..."),
// which --gtest_output=json keeps, so the margins can be read after a run.
//
// Without a usable CUDA device (no GPU, no driver, a build without CUDA) every test
// here is skipped, visibly, with the reason.
#include "backend/backend.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/cuda/kernels.hpp"
#include "backend/ops.hpp"
#include "compare.hpp"
#include "whtlm/hadamard.hpp"

namespace whtlm {
namespace {

using gpu_test::matches;

using backend::AttentionShape;
using backend::Backend;
using backend::CachedSegment;
using backend::CacheShape;
using backend::DeviceArray;
using Vec = std::vector<float>;
using Ids = std::vector<std::int32_t>;
using Bf16 = std::vector<std::uint16_t>;

// fp32 ops whose result is a short sum or elementwise.
constexpr double kFp32 = 1e-5;
// fp32 ops with long or reordered reductions; every use says why (never above 1e-4).
constexpr double kLongSum = 1e-4;
// Ops that round inputs or outputs to bf16 (8 significant bits: 2^-9 = 2e-3 per value).
constexpr double kBf16 = 1e-2;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// FNV-1a of "Suite.Test": stable across builds and runs (std::hash need not be).
std::uint64_t seed_of_current_test() {
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string name = std::string(info->test_suite_name()) + "." + info->name();
  std::uint64_t h = 1469598103934665603ull;
  for (char c : name) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return h;
}

std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

// Host-side bf16 (round to nearest even; NaN stays a quiet NaN).
std::uint16_t bf16_of(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}
float float_of(std::uint16_t h) {
  const std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
Bf16 to_bf16(const Vec& v) {
  Bf16 out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = bf16_of(v[i]);
  return out;
}
Vec from_bf16(const Bf16& v) {
  Vec out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = float_of(v[i]);
  return out;
}

// Base fixture: skips without a usable CUDA backend; random inputs; host <-> device.
class Gpu : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!backend::cuda_usable(&why)) GTEST_SKIP() << "CUDA backend not usable: " << why;
    gpu_ = &backend::get(Device::cuda);
    cpu_ = &backend::cpu_backend();
    rng_.seed(seed_of_current_test());
  }
  void TearDown() override {
    // Surfaces an asynchronous error of this test here rather than in the next one.
    if (gpu_ != nullptr) {
      EXPECT_NO_THROW(gpu_->synchronize());
    }
  }

  // Normal values by Box-Muller over a splitmix64 stream seeded from rng_ (several
  // times faster than std::normal_distribution: the tests draw ~10^8 values).
  Vec normal(std::size_t n, float stddev = 1.0f, float mean = 0.0f) {
    std::uint64_t state = rng_();
    auto next = [&state] {
      std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      return z ^ (z >> 31);
    };
    Vec v(n);
    for (std::size_t i = 0; i < n; i += 2) {
      const std::uint64_t r = next();
      const double u1 = (static_cast<double>(r >> 40) + 1.0) * 0x1p-24;  // (0, 1]
      const double u2 = static_cast<double>(r & 0xffffffu) * 0x1p-24;    // [0, 1)
      const double radius = std::sqrt(-2.0 * std::log(u1));
      const double angle = 6.283185307179586 * u2;
      v[i] = mean + stddev * static_cast<float>(radius * std::cos(angle));
      if (i + 1 < n) v[i + 1] = mean + stddev * static_cast<float>(radius * std::sin(angle));
    }
    return v;
  }
  // Strictly positive values (second moments).
  Vec positive(std::size_t n, float scale = 1.0f) {
    Vec v = normal(n, scale);
    for (float& x : v) x = x * x + 1e-3f * scale;
    return v;
  }
  Ids uniform_ids(std::size_t n, std::size_t below) {
    std::uniform_int_distribution<std::int32_t> dist(0, static_cast<std::int32_t>(below) - 1);
    Ids v(n);
    for (auto& x : v) x = dist(rng_);
    return v;
  }

  template <class T>
  DeviceArray<T> up(const std::vector<T>& host) {
    DeviceArray<T> d(*gpu_, host.size());
    if (!host.empty()) gpu_->upload(d.data(), host.data(), host.size() * sizeof(T));
    return d;
  }
  DeviceArray<float> poisoned(std::size_t n) { return up(Vec(n, kNaN)); }
  // No synchronize() first: download() itself must see every op issued before it.
  template <class T>
  std::vector<T> down(const DeviceArray<T>& d) {
    std::vector<T> host(d.size());
    if (!host.empty()) gpu_->download(host.data(), d.data(), host.size() * sizeof(T));
    return host;
  }

  Backend* gpu_ = nullptr;
  Backend* cpu_ = nullptr;
  std::mt19937_64 rng_;
};

std::string shape(std::initializer_list<std::size_t> dims) {
  std::string s;
  for (std::size_t d : dims) {
    if (!s.empty()) s += 'x';
    s += std::to_string(d);
  }
  return s;
}

// --- device, memory --------------------------------------------------------------------

using CudaBackend = Gpu;

TEST_F(CudaBackend, DescribesTheDevice) {
  EXPECT_EQ(gpu_->device(), Device::cuda);
  const std::string d = gpu_->description();
  EXPECT_NE(d.find("cuda"), std::string::npos) << d;
  RecordProperty("description", d);
  EXPECT_GT(backend::cuda::device_count(), 0);
  EXPECT_FALSE(backend::cuda::device_description().empty());
  EXPECT_NE(backend::cuda::stream(), nullptr);
  EXPECT_NO_THROW(backend::cuda::check_launch("no launch"));
  EXPECT_NO_THROW(backend::cuda::synchronize());
  std::printf("[ device   ] %s\n", d.c_str());
}

TEST_F(CudaBackend, AllocateReturnsZeroedAlignedMemory) {
  for (std::size_t bytes : {std::size_t{1}, std::size_t{3}, std::size_t{64}, std::size_t{1000},
                            (std::size_t{1} << 20) + 5}) {
    SCOPED_TRACE(bytes);
    // Dirty the allocator first: memory freed with data in it may be handed out again.
    { DeviceArray<float> dirty = up(normal((bytes + 3) / 4)); }
    void* p = gpu_->allocate(bytes);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 64, 0u);
    std::vector<unsigned char> host(bytes, 0xAB);
    gpu_->download(host.data(), p, bytes);
    EXPECT_EQ(std::count(host.begin(), host.end(), 0), static_cast<long>(bytes));
    gpu_->release(p);
  }
  gpu_->release(nullptr);  // like free(nullptr)
}

TEST_F(CudaBackend, UploadDownloadCopyZeroRoundTrip) {
  const Vec h = normal(1001);
  DeviceArray<float> a = up(h);
  EXPECT_EQ(down(a), h);
  DeviceArray<float> b = poisoned(1001);
  gpu_->copy(b.data(), a.data(), 1001 * sizeof(float));
  EXPECT_EQ(down(b), h);
  gpu_->zero(b.data() + 10, 77 * sizeof(float));
  Vec expect = h;
  std::fill(expect.begin() + 10, expect.begin() + 87, 0.0f);
  EXPECT_EQ(down(b), expect);
  // Partial copy at an unaligned offset.
  gpu_->copy(a.data() + 3, b.data() + 500, 13 * sizeof(float));
  Vec expect_a = h;
  std::copy(expect.begin() + 500, expect.begin() + 513, expect_a.begin() + 3);
  EXPECT_EQ(down(a), expect_a);
}

TEST_F(CudaBackend, PeakAllocatedCountsAllocations) {
  gpu_->synchronize();
  gpu_->reset_peak();
  const std::size_t base = gpu_->peak_allocated();
  const std::size_t bytes = std::size_t{64} << 20;
  {
    DeviceArray<char> big(*gpu_, bytes);
    EXPECT_GE(gpu_->peak_allocated(), base + bytes);
  }
  EXPECT_GE(gpu_->peak_allocated(), base + bytes);  // a peak stays after the release
  gpu_->reset_peak();
  EXPECT_LT(gpu_->peak_allocated(), base + bytes);
}

TEST_F(CudaBackend, FailedAllocationThrowsAndLeavesTheDeviceUsable) {
  // 4 PiB: no device has it. The error must not stick to the next launch.
  try {
    void* p = gpu_->allocate(std::size_t{1} << 52);
    gpu_->release(p);
    ADD_FAILURE() << "allocating 4 PiB did not throw";
  } catch (const std::runtime_error& e) {
    RecordProperty("message", e.what());
  }
  const Vec h = normal(4097);
  DeviceArray<float> d = up(h);
  EXPECT_NO_THROW(gpu_->scale(d.data(), 2.0f, h.size()));
  EXPECT_NO_THROW(gpu_->synchronize());
  Vec expect = h;
  for (float& x : expect) x *= 2.0f;
  EXPECT_EQ(down(d), expect);
}

// --- GEMM ------------------------------------------------------------------------------

struct GemmCase {
  std::size_t m, n, k;
};
const GemmCase kGemmCases[] = {{1, 1, 1},        {7, 13, 5},       {67, 97, 33},   {33, 1, 130},
                               {256, 2304, 768}, {130, 768, 3072}, {67, 50304, 64}};

TEST_F(CudaBackend, GemmMatchesTheCpuForEveryTransposition) {
  for (const GemmCase& c : kGemmCases)
    for (Trans ta : {Trans::no, Trans::yes})
      for (Trans tb : {Trans::no, Trans::yes})
        for (int pad : {0, 3}) {
          const std::string what = "gemm " + shape({c.m, c.n, c.k}) +
                                   (ta == Trans::yes ? " At" : " A") +
                                   (tb == Trans::yes ? "Bt" : "B") + " pad " + std::to_string(pad);
          SCOPED_TRACE(what);
          const std::size_t a_rows = ta == Trans::no ? c.m : c.k;
          const std::size_t a_cols = ta == Trans::no ? c.k : c.m;
          const std::size_t b_rows = tb == Trans::no ? c.k : c.n;
          const std::size_t b_cols = tb == Trans::no ? c.n : c.k;
          const std::size_t lda = a_cols + pad, ldb = b_cols + pad, ldc = c.n + pad;
          const Vec a = normal(a_rows * lda), b = normal(b_rows * ldb);
          // beta = 0: C is only written (the poison must not leak through 0 * NaN).
          Vec c0(c.m * ldc, 0.0f);
          backend::gemm<float>(ta, tb, c.m, c.n, c.k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f,
                               c0.data(), ldc);
          DeviceArray<float> da = up(a), db = up(b), dc = poisoned(c.m * ldc);
          backend::cuda::gemm(ta, tb, c.m, c.n, c.k, 1.0f, da.data(), lda, db.data(), ldb, 0.0f,
                              dc.data(), ldc);
          Vec g0 = down(dc);
          // Padding columns of C are not part of the result: compare the m x n block.
          Vec got(c.m * c.n), want(c.m * c.n);
          for (std::size_t i = 0; i < c.m; ++i)
            for (std::size_t j = 0; j < c.n; ++j) {
              got[i * c.n + j] = g0[i * ldc + j];
              want[i * c.n + j] = c0[i * ldc + j];
            }
          EXPECT_TRUE(matches(got, want, kFp32, what + " beta 0"));
          // alpha, beta general: C = 0.7 op(A) op(B) - 0.3 C.
          const Vec c1 = normal(c.m * ldc);
          Vec want1 = c1;
          backend::gemm<float>(ta, tb, c.m, c.n, c.k, 0.7f, a.data(), lda, b.data(), ldb, -0.3f,
                               want1.data(), ldc);
          DeviceArray<float> dc1 = up(c1);
          backend::cuda::gemm(ta, tb, c.m, c.n, c.k, 0.7f, da.data(), lda, db.data(), ldb, -0.3f,
                              dc1.data(), ldc);
          // Padding columns are compared too: they must be left as they were.
          EXPECT_TRUE(matches(down(dc1), want1, kFp32, what + " beta -0.3"));
        }
}

TEST_F(CudaBackend, GemmBf16MatchesTheCpuOnRoundedInputs) {
  for (const GemmCase& c : kGemmCases)
    for (Trans ta : {Trans::no, Trans::yes})
      for (Trans tb : {Trans::no, Trans::yes}) {
        const std::string what = "gemm_bf16 " + shape({c.m, c.n, c.k}) +
                                 (ta == Trans::yes ? " At" : " A") +
                                 (tb == Trans::yes ? "Bt" : "B");
        SCOPED_TRACE(what);
        const std::size_t lda = ta == Trans::no ? c.k : c.m;
        const std::size_t ldb = tb == Trans::no ? c.n : c.k;
        const Vec a = normal(c.m * c.k), b = normal(c.k * c.n), c1 = normal(c.m * c.n);
        const Bf16 a16 = to_bf16(a), b16 = to_bf16(b);
        const Vec ar = from_bf16(a16), br = from_bf16(b16);
        Vec want_rounded = c1, want_exact = c1;
        backend::gemm<float>(ta, tb, c.m, c.n, c.k, 0.5f, ar.data(), lda, br.data(), ldb, 0.25f,
                             want_rounded.data(), c.n);
        backend::gemm<float>(ta, tb, c.m, c.n, c.k, 0.5f, a.data(), lda, b.data(), ldb, 0.25f,
                             want_exact.data(), c.n);
        DeviceArray<std::uint16_t> da = up(a16), db = up(b16);
        DeviceArray<float> dc = up(c1);
        backend::cuda::gemm_bf16(ta, tb, c.m, c.n, c.k, 0.5f, da.data(), lda, db.data(), ldb, 0.25f,
                                 dc.data(), c.n);
        const Vec got = down(dc);
        // Same rounded inputs: products of two bf16 values are exact in fp32, so only the
        // fp32 accumulation order (tensor-core blocking) differs. 1e-4, not 1e-5: the
        // tensor cores' fp32 accumulation is not guaranteed to round like sequential fp32.
        EXPECT_TRUE(matches(got, want_rounded, kLongSum, what + " vs rounded inputs"));
        // Against fp32 inputs: the bf16 rounding of A and B (~2^-9 relative each).
        EXPECT_TRUE(matches(got, want_exact, kBf16, what + " vs fp32 inputs"));
      }
}

// --- linear layers -----------------------------------------------------------------------

struct LinearCase {
  std::size_t rows, in, out;
};
// Odd sizes, then the model's: gpt2-124m qkv and MLP, gpt2-350m MLP, a head slice.
const LinearCase kLinearCases[] = {{1, 1, 1},        {3, 5, 7},        {67, 33, 97},
                                   {130, 768, 2304}, {64, 1024, 4096}, {67, 3072, 768},
                                   {17, 64, 50304}};

// The op shapes' enums from the loops' bools.
backend::WeightLayout layout_of(bool w_in_out) {
  return w_in_out ? backend::WeightLayout::in_out : backend::WeightLayout::out_in;
}
backend::Write write_of(bool accumulate) {
  return accumulate ? backend::Write::accumulate : backend::Write::overwrite;
}

TEST_F(CudaBackend, LinearForward) {
  for (const LinearCase& c : kLinearCases) {
    const Vec x = normal(c.rows * c.in), w = normal(c.in * c.out, 0.1f), b = normal(c.out);
    const Vec y0 = normal(c.rows * c.out);
    DeviceArray<float> dx = up(x), dw = up(w), db = up(b);
    for (bool w_in_out : {false, true})
      for (bool bias : {false, true})
        for (bool acc : {false, true}) {
          const std::string what = "linear_forward " + shape({c.rows, c.in, c.out}) +
                                   (w_in_out ? " w[in,out]" : " w[out,in]") +
                                   (bias ? " bias" : "") + (acc ? " accumulate" : "");
          SCOPED_TRACE(what);
          Vec want = acc ? y0 : Vec(c.rows * c.out, 0.0f);
          cpu_->linear_forward(want.data(), x.data(), w.data(), bias ? b.data() : nullptr,
                               {c.rows, c.in, c.out, layout_of(w_in_out)}, write_of(acc));
          DeviceArray<float> dy = acc ? up(y0) : poisoned(c.rows * c.out);
          gpu_->linear_forward(dy.data(), dx.data(), dw.data(), bias ? db.data() : nullptr,
                               {c.rows, c.in, c.out, layout_of(w_in_out)}, write_of(acc));
          EXPECT_TRUE(matches(down(dy), want, kFp32, what));
        }
  }
}

TEST_F(CudaBackend, LinearBackward) {
  for (const LinearCase& c : kLinearCases) {
    const Vec x = normal(c.rows * c.in), w = normal(c.in * c.out, 0.1f);
    const Vec dy = normal(c.rows * c.out);
    const Vec dx0 = normal(c.rows * c.in), dw0 = normal(c.in * c.out), db0 = normal(c.out);
    DeviceArray<float> gx = up(x), gw = up(w), gdy = up(dy);
    for (bool w_in_out : {false, true})
      for (int mode = 0; mode < 3; ++mode) {  // 0: dx written, 1: dx accumulated, 2: no dx
        for (bool bias : {false, true}) {
          const std::string what = "linear_backward " + shape({c.rows, c.in, c.out}) +
                                   (w_in_out ? " w[in,out]" : " w[out,in]") +
                                   (mode == 0   ? " dx="
                                    : mode == 1 ? " dx+="
                                                : " no-dx") +
                                   (bias ? " bias" : "");
          SCOPED_TRACE(what);
          Vec dx = mode == 1 ? dx0 : Vec(c.rows * c.in, 0.0f), dw = dw0, db = db0;
          cpu_->linear_backward(mode == 2 ? nullptr : dx.data(), dw.data(),
                                bias ? db.data() : nullptr, dy.data(), x.data(), w.data(),
                                {c.rows, c.in, c.out, layout_of(w_in_out)}, write_of(mode == 1));
          DeviceArray<float> gdx = mode == 1 ? up(dx0) : poisoned(c.rows * c.in);
          DeviceArray<float> gdw = up(dw0), gdb = up(db0);
          gpu_->linear_backward(mode == 2 ? nullptr : gdx.data(), gdw.data(),
                                bias ? gdb.data() : nullptr, gdy.data(), gx.data(), gw.data(),
                                {c.rows, c.in, c.out, layout_of(w_in_out)}, write_of(mode == 1));
          if (mode != 2) {
            EXPECT_TRUE(matches(down(gdx), dx, kFp32, what + " dx"));
          }
          EXPECT_TRUE(matches(down(gdw), dw, kFp32, what + " dw"));
          // db untouched (== db0) when no bias is passed: compared either way.
          EXPECT_TRUE(matches(down(gdb), db, kFp32, what + " db"));
        }
      }
  }
}

// Mixed precision: the bf16 backend's linear layers round the products' operands to
// bf16 and accumulate in fp32 (src/backend/cuda/kernels.hpp). Against the CPU on the
// same rounded operands only the summation order differs (1e-4, as for gemm_bf16);
// against the fp32 result, the rounding shows (1e-2).
Vec rounded(const Vec& v) { return from_bf16(to_bf16(v)); }

TEST_F(CudaBackend, Bf16BackendLinearForwardAndBackward) {
  Backend& bf = backend::get(Device::cuda, Precision::bf16);
  for (const LinearCase& c : kLinearCases) {
    const Vec x = normal(c.rows * c.in), w = normal(c.in * c.out, 0.1f), b = normal(c.out);
    const Vec y0 = normal(c.rows * c.out), dy = normal(c.rows * c.out);
    const Vec dx0 = normal(c.rows * c.in), dw0 = normal(c.in * c.out), db0 = normal(c.out);
    const Vec xr = rounded(x), wr = rounded(w), dyr = rounded(dy);
    DeviceArray<float> gx(bf, x.size()), gw(bf, w.size()), gb(bf, b.size()), gdy(bf, dy.size());
    bf.upload(gx.data(), x.data(), x.size() * 4);
    bf.upload(gw.data(), w.data(), w.size() * 4);
    bf.upload(gb.data(), b.data(), b.size() * 4);
    bf.upload(gdy.data(), dy.data(), dy.size() * 4);
    for (bool w_in_out : {false, true})
      for (bool acc : {false, true}) {
        const std::string what = "bf16 linear " + shape({c.rows, c.in, c.out}) +
                                 (w_in_out ? " w[in,out]" : " w[out,in]") +
                                 (acc ? " accumulate" : "");
        SCOPED_TRACE(what);
        Vec want_r = acc ? y0 : Vec(y0.size(), 0.0f), want = want_r;
        cpu_->linear_forward(want_r.data(), xr.data(), wr.data(), b.data(),
                             {c.rows, c.in, c.out, layout_of(w_in_out)}, write_of(acc));
        cpu_->linear_forward(want.data(), x.data(), w.data(), b.data(),
                             {c.rows, c.in, c.out, layout_of(w_in_out)}, write_of(acc));
        DeviceArray<float> gy = acc ? up(y0) : poisoned(y0.size());
        bf.linear_forward(gy.data(), gx.data(), gw.data(), gb.data(),
                          {c.rows, c.in, c.out, layout_of(w_in_out)}, write_of(acc));
        const Vec got = down(gy);
        EXPECT_TRUE(matches(got, want_r, kLongSum, what + " y vs rounded operands"));
        EXPECT_TRUE(matches(got, want, kBf16, what + " y vs fp32"));

        // Backward: dx (written, or accumulated when acc), dw, db accumulate.
        Vec dx_r = acc ? dx0 : Vec(dx0.size(), 0.0f), dw_r = dw0, db_r = db0;
        Vec dx = dx_r, dw = dw0, db = db0;
        cpu_->linear_backward(dx_r.data(), dw_r.data(), db_r.data(), dyr.data(), xr.data(),
                              wr.data(), {c.rows, c.in, c.out, layout_of(w_in_out)}, write_of(acc));
        cpu_->linear_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(),
                              {c.rows, c.in, c.out, layout_of(w_in_out)}, write_of(acc));
        DeviceArray<float> gdx = acc ? up(dx0) : poisoned(dx0.size());
        DeviceArray<float> gdw = up(dw0), gdb = up(db0);
        bf.linear_backward(gdx.data(), gdw.data(), gdb.data(), gdy.data(), gx.data(), gw.data(),
                           {c.rows, c.in, c.out, layout_of(w_in_out)}, write_of(acc));
        const Vec got_dx = down(gdx), got_dw = down(gdw), got_db = down(gdb);
        EXPECT_TRUE(matches(got_dx, dx_r, kLongSum, what + " dx vs rounded operands"));
        EXPECT_TRUE(matches(got_dx, dx, kBf16, what + " dx vs fp32"));
        EXPECT_TRUE(matches(got_dw, dw_r, kLongSum, what + " dw vs rounded operands"));
        EXPECT_TRUE(matches(got_dw, dw, kBf16, what + " dw vs fp32"));
        // db is a column sum of the fp32 dy, no product: only the bf16 bound is promised.
        EXPECT_TRUE(matches(got_db, db, kBf16, what + " db vs fp32"));
      }
  }
}

// The same through the kernels' own entry points, with the scratch they ask for.
TEST_F(CudaBackend, LinearBf16Kernels) {
  for (const LinearCase& c : kLinearCases) {
    const std::string what = "linear_*_bf16 " + shape({c.rows, c.in, c.out});
    SCOPED_TRACE(what);
    const Vec x = normal(c.rows * c.in), w = normal(c.in * c.out, 0.1f), b = normal(c.out);
    const Vec dy = normal(c.rows * c.out), dw0 = normal(c.in * c.out), db0 = normal(c.out);
    const Vec xr = rounded(x), wr = rounded(w), dyr = rounded(dy);
    const bool w_in_out = c.rows % 2 == 1;  // both layouts over the cases
    Vec y(c.rows * c.out), dx(c.rows * c.in), dw = dw0, db = db0;
    cpu_->linear_forward(y.data(), xr.data(), wr.data(), b.data(),
                         {c.rows, c.in, c.out, layout_of(w_in_out)}, write_of(false));
    cpu_->linear_backward(dx.data(), dw.data(), db.data(), dyr.data(), xr.data(), wr.data(),
                          {c.rows, c.in, c.out, layout_of(w_in_out)}, write_of(false));
    const std::size_t scratch_n = backend::cuda::linear_bf16_scratch(c.rows, c.in, c.out);
    DeviceArray<std::uint16_t> scratch(*gpu_, scratch_n);
    DeviceArray<float> gx = up(x), gw = up(w), gb = up(b), gdy = up(dy);
    DeviceArray<float> gy = poisoned(y.size()), gdx = poisoned(dx.size()), gdw = up(dw0),
                       gdb = up(db0);
    backend::cuda::linear_forward_bf16(gy.data(), gx.data(), gw.data(), gb.data(), c.rows, c.in,
                                       c.out, w_in_out, false, scratch.data());
    backend::cuda::linear_backward_bf16(gdx.data(), gdw.data(), gdb.data(), gdy.data(), gx.data(),
                                        gw.data(), c.rows, c.in, c.out, w_in_out, false,
                                        scratch.data());
    EXPECT_TRUE(matches(down(gy), y, kLongSum, what + " y"));
    EXPECT_TRUE(matches(down(gdx), dx, kLongSum, what + " dx"));
    EXPECT_TRUE(matches(down(gdw), dw, kLongSum, what + " dw"));
    EXPECT_TRUE(matches(down(gdb), db, kBf16, what + " db"));
  }
}

TEST_F(CudaBackend, ColumnSum) {
  for (std::size_t rows : {1, 3, 67, 1024, 8192})
    for (std::size_t cols : {1, 97, 768, 4099}) {
      const std::string what = "column_sum " + shape({rows, cols});
      SCOPED_TRACE(what);
      const Vec x = normal(rows * cols), out0 = normal(cols);
      Vec want = out0;
      backend::column_sum<float>(want.data(), x.data(), rows, cols);
      DeviceArray<float> gx = up(x), gout = up(out0);
      backend::cuda::column_sum(gout.data(), gx.data(), rows, cols);
      // Sums of up to 8192 values: the CPU adds rows in order, the GPU in a tree; the
      // sequential fp32 sum alone carries ~eps * sqrt(rows) ~ 5e-6 relative error at
      // 8192 rows, so 1e-5 would be a coin toss.
      EXPECT_TRUE(matches(down(gout), want, rows >= 1024 ? kLongSum : kFp32, what));
    }
}

// --- norms -------------------------------------------------------------------------------

struct NormCase {
  std::size_t rows, d;
};
const NormCase kNormCases[] = {{1, 7}, {67, 64}, {33, 100}, {256, 768}, {130, 1024}, {3, 4099}};

TEST_F(CudaBackend, LayerNormForwardAndBackward) {
  const float eps = 1e-5f;
  for (const NormCase& c : kNormCases) {
    const std::string what = "layernorm " + shape({c.rows, c.d});
    SCOPED_TRACE(what);
    // An offset and a spread, so the mean subtraction and the scale both matter.
    const Vec x = normal(c.rows * c.d, 2.0f, 0.5f);
    const Vec w = normal(c.d, 0.3f, 1.0f), b = normal(c.d, 0.3f);
    Vec y(c.rows * c.d), mean(c.rows), rstd(c.rows);
    cpu_->layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(),
                            {c.rows, c.d}, eps);
    DeviceArray<float> gx = up(x), gw = up(w), gb = up(b);
    DeviceArray<float> gy = poisoned(y.size()), gmean = poisoned(c.rows), grstd = poisoned(c.rows);
    gpu_->layernorm_forward(gy.data(), gmean.data(), grstd.data(), gx.data(), gw.data(), gb.data(),
                            {c.rows, c.d}, eps);
    EXPECT_TRUE(matches(down(gy), y, kFp32, what + " y"));
    EXPECT_TRUE(matches(down(gmean), mean, kFp32, what + " mean"));
    EXPECT_TRUE(matches(down(grstd), rstd, kFp32, what + " rstd"));

    // Backward from the CPU's saved statistics; dx, dw, db accumulate.
    const Vec dy = normal(c.rows * c.d);
    const Vec dx0 = normal(c.rows * c.d), dw0 = normal(c.d), db0 = normal(c.d);
    Vec dx = dx0, dw = dw0, db = db0;
    cpu_->layernorm_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), mean.data(),
                             rstd.data(), w.data(), {c.rows, c.d});
    DeviceArray<float> gdy = up(dy), gdx = up(dx0), gdw = up(dw0), gdb = up(db0);
    DeviceArray<float> cmean = up(mean), crstd = up(rstd);
    gpu_->layernorm_backward(gdx.data(), gdw.data(), gdb.data(), gdy.data(), gx.data(),
                             cmean.data(), crstd.data(), gw.data(), {c.rows, c.d});
    EXPECT_TRUE(matches(down(gdx), dx, kFp32, what + " dx"));
    EXPECT_TRUE(matches(down(gdw), dw, kFp32, what + " dw"));
    EXPECT_TRUE(matches(down(gdb), db, kFp32, what + " db"));
  }
}

TEST_F(CudaBackend, RmsNormForwardAndBackward) {
  const float eps = 1e-5f;
  for (const NormCase& c : kNormCases) {
    const std::string what = "rmsnorm " + shape({c.rows, c.d});
    SCOPED_TRACE(what);
    const Vec x = normal(c.rows * c.d, 2.0f, 0.5f), w = normal(c.d, 0.3f, 1.0f);
    Vec y(c.rows * c.d), rstd(c.rows);
    cpu_->rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), {c.rows, c.d}, eps);
    DeviceArray<float> gx = up(x), gw = up(w);
    DeviceArray<float> gy = poisoned(y.size()), grstd = poisoned(c.rows);
    gpu_->rmsnorm_forward(gy.data(), grstd.data(), gx.data(), gw.data(), {c.rows, c.d}, eps);
    EXPECT_TRUE(matches(down(gy), y, kFp32, what + " y"));
    EXPECT_TRUE(matches(down(grstd), rstd, kFp32, what + " rstd"));

    const Vec dy = normal(c.rows * c.d), dx0 = normal(c.rows * c.d), dw0 = normal(c.d);
    Vec dx = dx0, dw = dw0;
    cpu_->rmsnorm_backward(dx.data(), dw.data(), dy.data(), x.data(), rstd.data(), w.data(),
                           {c.rows, c.d});
    DeviceArray<float> gdy = up(dy), gdx = up(dx0), gdw = up(dw0), crstd = up(rstd);
    gpu_->rmsnorm_backward(gdx.data(), gdw.data(), gdy.data(), gx.data(), crstd.data(), gw.data(),
                           {c.rows, c.d});
    EXPECT_TRUE(matches(down(gdx), dx, kFp32, what + " dx"));
    EXPECT_TRUE(matches(down(gdw), dw, kFp32, what + " dw"));
  }
}

// --- activations -------------------------------------------------------------------------

const std::size_t kElementwiseSizes[] = {1, 7, 1000, 4099, (std::size_t{1} << 20) + 3};

TEST_F(CudaBackend, GeluForwardAndBackward) {
  for (std::size_t n : kElementwiseSizes) {
    const std::string what = "gelu n=" + std::to_string(n);
    SCOPED_TRACE(what);
    const Vec x = normal(n, 3.0f), dy = normal(n);
    Vec y(n), dx(n);
    cpu_->gelu_forward(y.data(), x.data(), n);
    cpu_->gelu_backward(dx.data(), dy.data(), x.data(), n);
    DeviceArray<float> gx = up(x), gdy = up(dy), gy = poisoned(n), gdx = poisoned(n);
    gpu_->gelu_forward(gy.data(), gx.data(), n);
    gpu_->gelu_backward(gdx.data(), gdy.data(), gx.data(), n);
    EXPECT_TRUE(matches(down(gy), y, kFp32, what + " y"));
    EXPECT_TRUE(matches(down(gdx), dx, kFp32, what + " dx"));
    // dx may alias dy (documented): in place.
    gpu_->gelu_backward(gdy.data(), gdy.data(), gx.data(), n);
    EXPECT_TRUE(matches(down(gdy), dx, kFp32, what + " dx in place"));
  }
}

TEST_F(CudaBackend, SwigluForwardAndBackward) {
  // ff: odd, small, gpt2-124m-like, llama d=1024 (8*1024/3 rounded up to 256 = 2816).
  for (std::size_t rows : {1, 67, 130})
    for (std::size_t ff : {1, 5, 2048, 2816}) {
      const std::string what = "swiglu " + shape({rows, ff});
      SCOPED_TRACE(what);
      const Vec h = normal(rows * 2 * ff, 2.0f), dy = normal(rows * ff);
      Vec y(rows * ff), dh(rows * 2 * ff);
      cpu_->swiglu_forward(y.data(), h.data(), rows, ff);
      cpu_->swiglu_backward(dh.data(), dy.data(), h.data(), rows, ff);
      DeviceArray<float> gh = up(h), gdy = up(dy), gy = poisoned(y.size()),
                         gdh = poisoned(dh.size());
      gpu_->swiglu_forward(gy.data(), gh.data(), rows, ff);
      gpu_->swiglu_backward(gdh.data(), gdy.data(), gh.data(), rows, ff);
      EXPECT_TRUE(matches(down(gy), y, kFp32, what + " y"));
      EXPECT_TRUE(matches(down(gdh), dh, kFp32, what + " dh"));
    }
}

// --- rotary embedding --------------------------------------------------------------------

struct HeadsCase {
  std::size_t batch, seq, n_head, n_kv, hd;
};
// The model's shapes (batch 2, seq 67 and 256; GQA 4/2 and MHA 12/12; hd 64 and 8),
// a single token, and small odd ones.
const HeadsCase kHeadsCases[] = {{2, 67, 4, 2, 64},    {2, 256, 4, 2, 64}, {2, 67, 12, 12, 64},
                                 {2, 256, 12, 12, 64}, {2, 67, 4, 2, 8},   {2, 256, 4, 2, 8},
                                 {1, 1, 1, 1, 8},      {3, 17, 4, 2, 16},  {1, 130, 6, 2, 32},
                                 {2, 33, 16, 16, 64}};

std::string heads_name(const char* op, const HeadsCase& c) {
  return std::string(op) + " b" + std::to_string(c.batch) + " t" + std::to_string(c.seq) + " h" +
         std::to_string(c.n_head) + "/" + std::to_string(c.n_kv) + " hd" + std::to_string(c.hd);
}

TEST_F(CudaBackend, RopeForwardAndBackward) {
  for (const HeadsCase& c : kHeadsCases) {
    const std::string what = heads_name("rope", c);
    SCOPED_TRACE(what);
    const std::size_t rows = c.batch * c.seq, width = (c.n_head + 2 * c.n_kv) * c.hd;
    Vec cos(c.seq * c.hd / 2), sin(c.seq * c.hd / 2);
    backend::rope_tables<float>(cos.data(), sin.data(), c.seq, c.hd, 10000.0);
    const Vec qkv = normal(rows * width);
    DeviceArray<float> gcos = up(cos), gsin = up(sin);

    Vec want = qkv;
    cpu_->rope_forward(want.data(), cos.data(), sin.data(), rows, c.seq, {c.n_head, c.n_kv, c.hd});
    DeviceArray<float> g = up(qkv);
    gpu_->rope_forward(g.data(), gcos.data(), gsin.data(), rows, c.seq, {c.n_head, c.n_kv, c.hd});
    EXPECT_TRUE(matches(down(g), want, kFp32, what + " forward"));

    Vec want_b = qkv;
    cpu_->rope_backward(want_b.data(), cos.data(), sin.data(), rows, c.seq,
                        {c.n_head, c.n_kv, c.hd});
    DeviceArray<float> gb = up(qkv);
    gpu_->rope_backward(gb.data(), gcos.data(), gsin.data(), rows, c.seq, {c.n_head, c.n_kv, c.hd});
    EXPECT_TRUE(matches(down(gb), want_b, kFp32, what + " backward"));
  }
}

TEST_F(CudaBackend, RopeForwardAtPositions) {
  for (const HeadsCase& c : kHeadsCases) {
    const std::string what = heads_name("rope_forward_at", c);
    SCOPED_TRACE(what);
    const std::size_t rows = c.batch * c.seq, width = (c.n_head + 2 * c.n_kv) * c.hd;
    const std::size_t max_pos = 300;
    Vec cos(max_pos * c.hd / 2), sin(max_pos * c.hd / 2);
    backend::rope_tables<float>(cos.data(), sin.data(), max_pos, c.hd, 10000.0);
    const Ids pos = uniform_ids(rows, max_pos);
    const Vec qkv = normal(rows * width);
    Vec want = qkv;
    cpu_->rope_forward_at(want.data(), cos.data(), sin.data(), rows, pos.data(),
                          {c.n_head, c.n_kv, c.hd});
    DeviceArray<float> g = up(qkv), gcos = up(cos), gsin = up(sin);
    DeviceArray<std::int32_t> gpos = up(pos);
    gpu_->rope_forward_at(g.data(), gcos.data(), gsin.data(), rows, gpos.data(),
                          {c.n_head, c.n_kv, c.hd});
    EXPECT_TRUE(matches(down(g), want, kFp32, what));
    // The kernel's own entry point.
    DeviceArray<float> g2 = up(qkv);
    backend::cuda::rope_forward_at(g2.data(), gcos.data(), gsin.data(), rows, gpos.data(), c.n_head,
                                   c.n_kv, c.hd);
    EXPECT_TRUE(matches(down(g2), want, kFp32, what + " (kernel)"));
  }
}

// --- attention ---------------------------------------------------------------------------

class Attention : public Gpu {
 protected:
  void check(const HeadsCase& c);
};

void Attention::check(const HeadsCase& c) {
  const std::string what = heads_name("attention", c);
  SCOPED_TRACE(what);
  const AttentionShape s{c.batch, c.seq, c.n_head, c.n_kv, c.hd};
  const std::size_t rows = c.batch * c.seq, width = (c.n_head + 2 * c.n_kv) * c.hd;
  const std::size_t out_n = rows * c.n_head * c.hd, lse_n = c.batch * c.n_head * c.seq;
  EXPECT_EQ(gpu_->attention_scratch_floats(s), 0u) << "documented: no scratch on CUDA";
  const Vec qkv = normal(rows * width, 1.5f), dout = normal(out_n);

  Vec out(out_n), lse(lse_n), scratch(cpu_->attention_scratch_floats(s));
  cpu_->attention_forward(out.data(), lse.data(), qkv.data(), s, scratch.data());
  DeviceArray<float> gscratch(*gpu_, gpu_->attention_scratch_floats(s));
  DeviceArray<float> gqkv = up(qkv), gout = poisoned(out_n), glse = poisoned(lse_n);
  gpu_->attention_forward(gout.data(), glse.data(), gqkv.data(), s, gscratch.data());
  EXPECT_TRUE(matches(down(gout), out, kFp32, what + " out"));
  EXPECT_TRUE(matches(down(glse), lse, kFp32, what + " lse"));

  // Backward from the CPU's forward results, so it is tested on its own.
  Vec dqkv(rows * width);
  cpu_->attention_backward(dqkv.data(), dout.data(), qkv.data(), out.data(), lse.data(), s,
                           scratch.data());
  DeviceArray<float> gdout = up(dout), cpu_out = up(out), cpu_lse = up(lse);
  DeviceArray<float> gdqkv = poisoned(dqkv.size());
  gpu_->attention_backward(gdqkv.data(), gdout.data(), gqkv.data(), cpu_out.data(), cpu_lse.data(),
                           s, gscratch.data());
  // dq, dk, dv are sums over up to 256 keys (dk, dv also over the query heads of a
  // group) of P * (dP - D), where D = rowsum(dout * out) is subtracted from dP: the
  // cancellation magnifies the fp32 rounding of P, and the GPU's blocked order of
  // those sums differs from the CPU's. Hence 1e-4 rather than 1e-5.
  EXPECT_TRUE(matches(down(gdqkv), dqkv, kLongSum, what + " dqkv"));
}

TEST_F(Attention, ForwardAndBackwardMatchTheCpu) {
  for (const HeadsCase& c : kHeadsCases) check(c);
}

// Head dimensions beyond the presets' 64 (a kernel may cap hd: it must then say so
// by throwing, which fails here with the message, rather than compute garbage).
TEST_F(Attention, HeadDim128And32) {
  check({2, 67, 4, 2, 128});
  check({1, 200, 8, 1, 32});
}

TEST_F(Attention, CachedMatchesTheCpu) {
  struct Case {
    std::size_t n_head, n_kv, hd, max_len;
  };
  for (const Case& c :
       {Case{4, 2, 64, 300}, Case{12, 12, 64, 256}, Case{4, 2, 8, 131}, Case{2, 1, 16, 70}}) {
    const CacheShape s{c.n_head, c.n_kv, c.hd, c.max_len};
    const std::string what = "attention_cached h" + std::to_string(c.n_head) + "/" +
                             std::to_string(c.n_kv) + " hd" + std::to_string(c.hd) + " max_len " +
                             std::to_string(c.max_len);
    SCOPED_TRACE(what);
    // Packed rows: a fresh prefill, decode steps deep into the cache, a chunk continuing
    // a prefill, a first token, a prefill reaching the last position.
    const std::size_t L = c.max_len;
    std::vector<CachedSegment> segs = {
        {2, 0, 37, 0}, {0, 37, 1, L - 1}, {1, 38, 5, L / 2},
        {3, 43, 1, 0}, {5, 44, 1, 67},    {4, 45, L, 0},
    };
    const std::size_t slots = 6, rows = 45 + L;
    const std::size_t q_stride = (c.n_head + 2 * c.n_kv) * c.hd, out_w = c.n_head * c.hd;
    const Vec q = normal(rows * q_stride, 1.5f);
    Vec k = normal(slots * c.n_kv * L * c.hd), v = normal(slots * c.n_kv * L * c.hd);
    // Cache positions past the last one a segment reads hold NaN: reading them poisons.
    for (const CachedSegment& g : segs)
      for (std::size_t kv = 0; kv < c.n_kv; ++kv)
        for (std::size_t p = g.pos0 + g.count; p < L; ++p)
          for (std::size_t i = 0; i < c.hd; ++i) {
            const std::size_t at = ((g.slot * c.n_kv + kv) * L + p) * c.hd + i;
            k[at] = kNaN;
            v[at] = kNaN;
          }
    Vec out(rows * out_w), scratch(cpu_->attention_cached_scratch_floats(s));
    cpu_->attention_cached(out.data(), q.data(), q_stride, k.data(), v.data(), segs.data(),
                           segs.size(), s, scratch.data());
    DeviceArray<float> gq = up(q), gk = up(k), gv = up(v), gout = poisoned(out.size());
    DeviceArray<float> gscratch(*gpu_, gpu_->attention_cached_scratch_floats(s));
    gpu_->attention_cached(gout.data(), gq.data(), q_stride, gk.data(), gv.data(), segs.data(),
                           segs.size(), s, gscratch.data());
    EXPECT_TRUE(matches(down(gout), out, kFp32, what));
    DeviceArray<float> gout2 = poisoned(out.size());
    backend::cuda::attention_cached(gout2.data(), gq.data(), q_stride, gk.data(), gv.data(),
                                    segs.data(), segs.size(), s);
    EXPECT_TRUE(matches(down(gout2), out, kFp32, what + " (kernel)"));
  }
}

// The store writes every kv head of every segment's rows at their positions, and
// nothing else (the rest of the caches keeps its NaN).
TEST_F(Attention, KvCacheStoreMatchesTheCpu) {
  const CacheShape s{4, 2, 64, 300};
  const std::size_t q_stride = (s.n_head + 2 * s.n_kv) * s.hd, slots = 6;
  // More segments than one launch takes (128), and an empty one.
  std::vector<CachedSegment> segs = {
      {2, 0, 37, 0}, {0, 37, 1, 299}, {1, 38, 0, 5}, {3, 38, 5, 150}};
  std::size_t rows = 43;
  for (std::size_t i = 0; i < 200; ++i) segs.push_back({4 + i % 2, rows++, 1, 10 + i});
  const Vec qkv = normal(rows * q_stride);
  const std::size_t cache = slots * s.n_kv * s.max_len * s.hd;
  Vec k(cache, kNaN), v(cache, kNaN);
  cpu_->kv_cache_store(k.data(), v.data(), qkv.data(), q_stride, segs.data(), segs.size(), s);
  DeviceArray<float> gqkv = up(qkv), gk = poisoned(cache), gv = poisoned(cache);
  gpu_->kv_cache_store(gk.data(), gv.data(), gqkv.data(), q_stride, segs.data(), segs.size(), s);
  const Vec got_k = down(gk), got_v = down(gv);
  std::size_t written = 0;
  for (std::size_t i = 0; i < cache; ++i) {
    if (std::isnan(k[i])) {
      ASSERT_TRUE(std::isnan(got_k[i]) && std::isnan(got_v[i])) << "wrote outside at " << i;
    } else {
      ++written;
      ASSERT_EQ(got_k[i], k[i]) << "k at " << i;
      ASSERT_EQ(got_v[i], v[i]) << "v at " << i;
    }
  }
  EXPECT_EQ(written, rows * s.n_kv * s.hd);
}

// --- embedding, loss -----------------------------------------------------------------------

TEST_F(CudaBackend, EmbeddingForwardAndBackward) {
  struct Case {
    std::size_t vocab, batch, seq, d;
    bool wpe;
  };
  // vocab 7: every token repeats many times (scatter-add contention).
  for (const Case& c :
       {Case{97, 3, 17, 64, true}, Case{50304, 2, 256, 768, true}, Case{7, 4, 67, 100, true},
        Case{97, 2, 67, 1000, false}, Case{50304, 1, 1, 1024, true}}) {
    const std::string what =
        "embedding " + shape({c.vocab, c.batch, c.seq, c.d}) + (c.wpe ? " wpe" : " no-wpe");
    SCOPED_TRACE(what);
    const std::size_t rows = c.batch * c.seq;
    const Ids tokens = uniform_ids(rows, c.vocab);
    const Vec wte = normal(c.vocab * c.d), wpe = normal(c.seq * c.d);
    Vec x(rows * c.d);
    cpu_->embedding_forward(x.data(), tokens.data(), wte.data(), c.wpe ? wpe.data() : nullptr, rows,
                            c.seq, c.d);
    DeviceArray<std::int32_t> gtok = up(tokens);
    DeviceArray<float> gwte = up(wte), gwpe = up(wpe), gx = poisoned(x.size());
    gpu_->embedding_forward(gx.data(), gtok.data(), gwte.data(), c.wpe ? gwpe.data() : nullptr,
                            rows, c.seq, c.d);
    EXPECT_TRUE(matches(down(gx), x, kFp32, what + " forward"));

    const Vec dx = normal(rows * c.d), dwte0 = normal(c.vocab * c.d), dwpe0 = normal(c.seq * c.d);
    Vec dwte = dwte0, dwpe = dwpe0;
    cpu_->embedding_backward(dwte.data(), c.wpe ? dwpe.data() : nullptr, dx.data(), tokens.data(),
                             rows, c.seq, c.d);
    DeviceArray<float> gdx = up(dx), gdwte = up(dwte0), gdwpe = up(dwpe0);
    gpu_->embedding_backward(gdwte.data(), c.wpe ? gdwpe.data() : nullptr, gdx.data(), gtok.data(),
                             rows, c.seq, c.d);
    EXPECT_TRUE(matches(down(gdwte), dwte, kFp32, what + " dwte"));
    EXPECT_TRUE(matches(down(gdwpe), dwpe, kFp32, what + " dwpe"));
  }
}

TEST_F(CudaBackend, EmbeddingForwardAtPositions) {
  for (bool with_wpe : {true, false}) {
    const std::size_t vocab = 50304, rows = 83, d = 768, max_pos = 1024;
    const std::string what = std::string("embedding_forward_at") + (with_wpe ? " wpe" : "");
    SCOPED_TRACE(what);
    const Ids tokens = uniform_ids(rows, vocab), pos = uniform_ids(rows, max_pos);
    const Vec wte = normal(vocab * d), wpe = normal(max_pos * d);
    Vec x(rows * d);
    cpu_->embedding_forward_at(x.data(), tokens.data(), wte.data(), with_wpe ? wpe.data() : nullptr,
                               rows, pos.data(), d);
    DeviceArray<std::int32_t> gtok = up(tokens), gpos = up(pos);
    DeviceArray<float> gwte = up(wte), gwpe = up(wpe), gx = poisoned(x.size());
    gpu_->embedding_forward_at(gx.data(), gtok.data(), gwte.data(),
                               with_wpe ? gwpe.data() : nullptr, rows, gpos.data(), d);
    EXPECT_TRUE(matches(down(gx), x, kFp32, what));
    DeviceArray<float> gx2 = poisoned(x.size());
    backend::cuda::embedding_forward_at(gx2.data(), gtok.data(), gwte.data(),
                                        with_wpe ? gwpe.data() : nullptr, rows, gpos.data(), d);
    EXPECT_TRUE(matches(down(gx2), x, kFp32, what + " (kernel)"));
  }
}

TEST_F(CudaBackend, CrossEntropyForwardAndBackward) {
  for (std::size_t rows : {1, 67, 130})
    for (std::size_t vocab : {2, 97, 50257, 50304}) {
      const std::string what = "cross_entropy " + shape({rows, vocab});
      SCOPED_TRACE(what);
      const Vec logits = normal(rows * vocab, 3.0f);
      const Ids targets = uniform_ids(rows, vocab);
      Vec losses(rows), lse(rows);
      cpu_->cross_entropy_forward(losses.data(), lse.data(), logits.data(), targets.data(), rows,
                                  vocab);
      DeviceArray<float> gl = up(logits), glosses = poisoned(rows), glse = poisoned(rows);
      DeviceArray<std::int32_t> gt = up(targets);
      gpu_->cross_entropy_forward(glosses.data(), glse.data(), gl.data(), gt.data(), rows, vocab);
      EXPECT_TRUE(matches(down(glosses), losses, kFp32, what + " losses"));
      EXPECT_TRUE(matches(down(glse), lse, kFp32, what + " lse"));

      // In place, from the CPU's lse; the mean's scale and an arbitrary one.
      for (float scale : {1.0f / static_cast<float>(rows), 0.37f}) {
        Vec grad = logits;
        cpu_->cross_entropy_backward(grad.data(), lse.data(), targets.data(), rows, vocab, scale);
        DeviceArray<float> gg = up(logits), clse = up(lse);
        gpu_->cross_entropy_backward(gg.data(), clse.data(), gt.data(), rows, vocab, scale);
        EXPECT_TRUE(matches(down(gg), grad, kFp32, what + " backward scale " + fmt("%g", scale)));
      }
    }
}

// --- vectors, optimizer ---------------------------------------------------------------------

TEST_F(CudaBackend, AddScale) {
  for (std::size_t n : kElementwiseSizes) {
    const std::string what = "n=" + std::to_string(n);
    SCOPED_TRACE(what);
    const Vec a = normal(n), b = normal(n);
    Vec y(n);
    cpu_->add(y.data(), a.data(), b.data(), n);
    DeviceArray<float> ga = up(a), gb = up(b), gy = poisoned(n);
    gpu_->add(gy.data(), ga.data(), gb.data(), n);
    EXPECT_TRUE(matches(down(gy), y, kFp32, "add " + what));
    gpu_->add(ga.data(), ga.data(), gb.data(), n);  // y may alias a
    EXPECT_TRUE(matches(down(ga), y, kFp32, "add in place " + what));

    Vec s = a;
    cpu_->scale(s.data(), -0.37f, n);
    DeviceArray<float> gs = up(a);
    gpu_->scale(gs.data(), -0.37f, n);
    EXPECT_TRUE(matches(down(gs), s, kFp32, "scale " + what));
  }
}

TEST_F(CudaBackend, SumSquares) {
  for (std::size_t n : {std::size_t{1}, std::size_t{1000}, (std::size_t{1} << 22) + 7}) {
    const std::string what = "sum_squares n=" + std::to_string(n);
    SCOPED_TRACE(what);
    const Vec x = normal(n, 3.0f);
    const double want = cpu_->sum_squares(x.data(), n);
    DeviceArray<float> gx = up(x);
    const double got = gpu_->sum_squares(gx.data(), n);
    // Documented as a sum in double: any order of double additions of the exact squares
    // agrees to ~n * 1e-16; a float accumulator anywhere would show as ~1e-7.
    EXPECT_TRUE(matches(got, want, 1e-9, what));
  }
}

// The interface promises the same sum for any thread count on one device, so the
// gradient-norm clipping (and with it training) is reproducible run to run.
TEST_F(CudaBackend, SumSquaresIsDeterministic) {
  const std::size_t n = (std::size_t{1} << 22) + 7;
  DeviceArray<float> gx = up(normal(n));
  const double first = gpu_->sum_squares(gx.data(), n);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(gpu_->sum_squares(gx.data(), n), first);
}

TEST_F(CudaBackend, AdamW) {
  const float lr = 1e-2f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f;
  const int t = 3;
  const float c1 = 1.0f / (1.0f - std::pow(b1, t)), c2 = 1.0f / (1.0f - std::pow(b2, t));
  for (std::size_t n : kElementwiseSizes)
    for (float shrink : {1.0f, 1.0f - lr * 0.1f}) {
      const std::string what = "adamw n=" + std::to_string(n) + " shrink " + fmt("%g", shrink);
      SCOPED_TRACE(what);
      const Vec p0 = normal(n, 0.05f), g = normal(n, 0.01f), m0 = normal(n, 0.003f);
      const Vec v0 = positive(n, 1e-2f);
      Vec p = p0, m = m0, v = v0;
      cpu_->adamw(p.data(), g.data(), m.data(), v.data(), n, lr, b1, b2, eps, c1, c2, shrink);
      DeviceArray<float> gp = up(p0), gg = up(g), gm = up(m0), gv = up(v0);
      gpu_->adamw(gp.data(), gg.data(), gm.data(), gv.data(), n, lr, b1, b2, eps, c1, c2, shrink);
      EXPECT_TRUE(matches(down(gp), p, kFp32, what + " p"));
      EXPECT_TRUE(matches(down(gm), m, kFp32, what + " m"));
      EXPECT_TRUE(matches(down(gv), v, kFp32, what + " v"));
    }
}

// --- bf16 conversion ------------------------------------------------------------------------

TEST_F(CudaBackend, Bf16ConversionsRoundToNearestEven) {
  // Values over many binades, exact ties (low half 0x8000) both ways, and specials.
  Vec x = normal(100003);
  std::uniform_int_distribution<int> binade(-60, 60);
  for (std::size_t i = 0; i < x.size(); i += 3) x[i] = std::ldexp(x[i], binade(rng_));
  std::uniform_int_distribution<std::uint32_t> bits(0, 0xffffu);
  for (std::size_t i = 1; i < x.size(); i += 7) {
    // Finite and normal (subnormal rounding is beside the point for training).
    std::uint32_t hi = bits(rng_);
    if ((hi & 0x7f80u) == 0x7f80u) hi &= ~0x0080u;
    if ((hi & 0x7f80u) == 0) hi |= 0x0080u;
    const std::uint32_t u = (hi << 16) | 0x8000u;
    std::memcpy(&x[i], &u, 4);
  }
  const float specials[] = {0.0f,
                            -0.0f,
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::max(),
                            -std::numeric_limits<float>::max(),
                            1.0f,
                            1.00390625f /* 1 + 2^-8: a tie */};
  std::copy(std::begin(specials), std::end(specials), x.begin());
  const Bf16 want = to_bf16(x);
  DeviceArray<float> gx = up(x);
  DeviceArray<std::uint16_t> g16 = up(Bf16(x.size(), 0xffff));
  backend::cuda::to_bf16(g16.data(), gx.data(), x.size());
  const Bf16 got = down(g16);
  std::size_t wrong = 0, first = 0;
  for (std::size_t i = 0; i < x.size(); ++i)
    if (got[i] != want[i] && wrong++ == 0) first = i;
  EXPECT_EQ(wrong, 0u) << "first at [" << first << "]: x " << x[first] << " gpu 0x" << std::hex
                       << got[first] << " host 0x" << want[first];

  // NaN stays NaN.
  DeviceArray<float> gnan = up(Vec(5, kNaN));
  DeviceArray<std::uint16_t> gnan16 = up(Bf16(5, 0));
  backend::cuda::to_bf16(gnan16.data(), gnan.data(), 5);
  for (std::uint16_t h : down(gnan16)) EXPECT_TRUE(std::isnan(float_of(h))) << std::hex << h;

  // from_bf16: every bit pattern, exactly (NaN patterns to NaN).
  Bf16 all(65536);
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::uint16_t>(i);
  DeviceArray<std::uint16_t> gall = up(all);
  DeviceArray<float> gf = poisoned(all.size());
  backend::cuda::from_bf16(gf.data(), gall.data(), all.size());
  const Vec f = down(gf);
  wrong = 0;
  for (std::size_t i = 0; i < all.size(); ++i) {
    const float e = float_of(all[i]);
    const bool same = std::isnan(e) ? std::isnan(f[i]) : std::memcmp(&e, &f[i], 4) == 0;
    if (!same && wrong++ == 0) first = i;
  }
  EXPECT_EQ(wrong, 0u) << "first pattern 0x" << std::hex << first;
}

// --- the Hadamard projection ------------------------------------------------------------------

// Every supported size (2 .. 32768 and K * 2^m, K = 12, 20, 28), at least 100 rows.
std::size_t rows_for(std::size_t n) {
  return std::max<std::size_t>(103, (std::size_t{1} << 17) / n + 3);
}

class Hadamard : public Gpu {};

TEST_F(Hadamard, TransformMatchesTheCpuAtEverySize) {
  for (std::size_t n : hadamard_supported_sizes()) {
    const std::size_t rows = rows_for(n);
    for (float scale : {static_cast<float>(hadamard_orthonormal_scale(n)), 1.0f}) {
      if (scale == 1.0f && n > 1024) continue;  // unnormalised: small sizes are enough
      const std::string what = "fwht " + shape({rows, n}) + " scale " + fmt("%g", scale);
      SCOPED_TRACE(what);
      const Vec x = normal(rows * n);
      Vec want = x;
      fwht(want.data(), rows, n, scale);
      DeviceArray<float> g = up(x);
      backend::cuda::fwht(g.data(), rows, n, scale);
      EXPECT_TRUE(matches(down(g), want, kFp32, what));
    }
  }
}

TEST_F(Hadamard, ProjectionForwardAndBackwardMatchTheCpuAtEverySize) {
  for (std::size_t n : hadamard_supported_sizes()) {
    const std::size_t rows = rows_for(n);
    const float scale = static_cast<float>(hadamard_orthonormal_scale(n));
    const std::string what = "hadamard_projection " + shape({rows, n});
    SCOPED_TRACE(what);
    const Vec x = normal(rows * n), gamma = normal(n, 0.5f, 1.0f), beta = normal(n, 0.3f);
    const Vec y0 = normal(rows * n);
    Vec y = y0;
    cpu_->hadamard_projection_forward(y.data(), x.data(), gamma.data(), beta.data(), rows, n,
                                      scale);
    DeviceArray<float> gx = up(x), ggamma = up(gamma), gbeta = up(beta), gy = up(y0);
    gpu_->hadamard_projection_forward(gy.data(), gx.data(), ggamma.data(), gbeta.data(), rows, n,
                                      scale);
    EXPECT_TRUE(matches(down(gy), y, kFp32, what + " forward"));

    const Vec dy = normal(rows * n), dgamma0 = normal(n), dbeta0 = normal(n);
    Vec dx(rows * n), dgamma = dgamma0, dbeta = dbeta0;
    cpu_->hadamard_projection_backward(dx.data(), dgamma.data(), dbeta.data(), dy.data(), x.data(),
                                       gamma.data(), rows, n, scale);
    DeviceArray<float> gdy = up(dy), gdx = poisoned(dx.size()), gdgamma = up(dgamma0),
                       gdbeta = up(dbeta0);
    gpu_->hadamard_projection_backward(gdx.data(), gdgamma.data(), gdbeta.data(), gdy.data(),
                                       gx.data(), ggamma.data(), rows, n, scale);
    EXPECT_TRUE(matches(down(gdx), dx, kFp32, what + " dx"));
    // dgamma, dbeta: column sums over rows_for(n) >= 103 rows (up to 65539 at n = 2),
    // added in a different order on each side; 1e-4 where the sum is long.
    const double tol = rows >= 1024 ? kLongSum : kFp32;
    EXPECT_TRUE(matches(down(gdgamma), dgamma, tol, what + " dgamma"));
    EXPECT_TRUE(matches(down(gdbeta), dbeta, tol, what + " dbeta"));
  }
}

TEST_F(Hadamard, ProjectionForwardFromBf16) {
  for (std::size_t n : hadamard_supported_sizes()) {
    const std::size_t rows = rows_for(n);
    const float scale = static_cast<float>(hadamard_orthonormal_scale(n));
    const std::string what = "hadamard_projection_forward_bf16 " + shape({rows, n});
    SCOPED_TRACE(what);
    const Vec x = normal(rows * n), gamma = normal(n, 0.5f, 1.0f), beta = normal(n, 0.3f);
    const Vec y0 = normal(rows * n);
    const Bf16 x16 = to_bf16(x);
    const Vec xr = from_bf16(x16);
    Vec want_rounded = y0, want_exact = y0;
    cpu_->hadamard_projection_forward(want_rounded.data(), xr.data(), gamma.data(), beta.data(),
                                      rows, n, scale);
    cpu_->hadamard_projection_forward(want_exact.data(), x.data(), gamma.data(), beta.data(), rows,
                                      n, scale);
    DeviceArray<std::uint16_t> gx = up(x16);
    DeviceArray<float> ggamma = up(gamma), gbeta = up(beta), gy = up(y0);
    backend::cuda::hadamard_projection_forward_bf16(gy.data(), gx.data(), ggamma.data(),
                                                    gbeta.data(), rows, n, scale);
    const Vec got = down(gy);
    // After the exact bf16 -> fp32 widening the arithmetic is the fp32 kernel's.
    EXPECT_TRUE(matches(got, want_rounded, kFp32, what + " vs rounded x"));
    EXPECT_TRUE(matches(got, want_exact, kBf16, what + " vs fp32 x"));
  }
}

}  // namespace
}  // namespace whtlm
