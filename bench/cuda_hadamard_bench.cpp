// GPU benchmark of the fused Hadamard projection (src/backend/cuda/hadamard.cu) against
// what bounds it and what it replaces. Per width d, with rows x d activations:
//   fwd   hadamard_projection_forward: y += gamma * H x / sqrt(d) + beta
//   bwd   hadamard_projection_backward: dx, dgamma, dbeta
//   copy  cudaMemcpyAsync device to device of 1.5 * rows * d floats: it reads and writes
//         3 * rows * d * 4 bytes in all, the bytes the forward must move (x read, y read,
//         y written) and the backward too (x and dy read, dx written); fwd/copy and bwd/copy
//         are the ratios to it (1.0 = as fast as memory allows)
//   gemm  the dense projection it replaces: y += x W^T, rows x d by d x d, fp32 (cuBLASLt,
//         no TF32), and the same with bf16 x and W
// Each is timed with CUDA events on the backend's stream: warm-up calls, then the median of
// --reps calls, rotating over three sets of buffers so that L2 does not keep the data. Before
// timing, every d is checked once against the CPU library (whtlm::fwht) on random normal
// inputs, outputs poisoned with NaN: PASS/FAIL with the largest error relative to the largest
// reference value. Exit status: 0, 1 on a FAIL or an error, 2 for bad arguments, 77 without a GPU.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/cuda/kernels.hpp"
#include "whtlm/hadamard.hpp"
#include "whtlm/perf.hpp"

namespace {

namespace cu = whtlm::backend::cuda;
using json = nlohmann::json;

constexpr int kSets = 3;    // buffer sets the timed calls rotate over
constexpr int kWarmup = 3;  // untimed calls before each measurement
constexpr double kTolerance = 1e-5;

struct Options {
  std::size_t rows = 16384;
  std::vector<std::size_t> sizes{512, 1024, 2048, 4096, 8192};
  int reps = 30;
  std::string json_path;
  bool check_all = false;  // only check every supported length, aligned and not
};

void usage(std::FILE* out) {
  std::fprintf(out,
               "usage: cuda_hadamard_bench [--rows N] [--sizes D,D,...] [--reps N] [--json FILE]\n"
               "       cuda_hadamard_bench --check-all\n"
               "  Times the fused Hadamard projection (forward, backward) on the GPU against a\n"
               "  device-to-device copy of the same bytes and the fp32/bf16 GEMM it replaces,\n"
               "  after checking each size against the CPU transform.\n"
               "  --rows N      activation rows (default 16384)\n"
               "  --sizes LIST  widths d, any supported Hadamard length (default "
               "512,1024,2048,4096,8192)\n"
               "  --reps N      timed calls per measurement, median reported (default 30, min 20)\n"
               "  --json FILE   also write the results as JSON\n"
               "  --check-all   no timing: check every supported length (67 rows), with aligned\n"
               "                and with misaligned pointers (the kernels' scalar path)\n"
               "Exit status: 0 all PASS, 1 a FAIL or an error, 2 bad arguments, 77 no GPU.\n");
}

std::size_t parse_count(const std::string& s, const char* what) {
  std::size_t used = 0;
  unsigned long long v = 0;
  try {
    v = std::stoull(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != s.size() || v == 0)
    throw std::invalid_argument(std::string(what) + ": expected a positive integer, got '" + s +
                                "'");
  return static_cast<std::size_t>(v);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      usage(stdout);
      std::exit(0);
    }
    if (a == "--check-all") {
      o.check_all = true;
      continue;
    }
    if (i + 1 >= argc) throw std::invalid_argument("unknown option or missing value: " + a);
    const std::string v = argv[++i];
    if (a == "--rows") {
      o.rows = parse_count(v, "--rows");
    } else if (a == "--reps") {
      o.reps = static_cast<int>(std::max<std::size_t>(20, parse_count(v, "--reps")));
    } else if (a == "--json") {
      o.json_path = v;
    } else if (a == "--sizes") {
      o.sizes.clear();
      for (std::size_t start = 0; start <= v.size();) {
        const std::size_t comma = std::min(v.find(',', start), v.size());
        const std::size_t d = parse_count(v.substr(start, comma - start), "--sizes");
        whtlm::check_hadamard_size(d);
        o.sizes.push_back(d);
        start = comma + 1;
      }
    } else {
      throw std::invalid_argument("unknown option: " + a);
    }
  }
  return o;
}

void ok(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(err));
}

cudaStream_t stream() { return static_cast<cudaStream_t>(cu::stream()); }

// A device array of T, freed on scope exit.
template <class T>
class DeviceArray {
 public:
  explicit DeviceArray(std::size_t count) : count_(count) {
    ok(cudaMalloc(&p_, count * sizeof(T)), "cudaMalloc");
  }
  ~DeviceArray() { cudaFree(p_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  DeviceArray(DeviceArray&& o) noexcept : p_(o.p_), count_(o.count_) { o.p_ = nullptr; }

  T* get() const { return p_; }
  void upload(const std::vector<T>& h) {
    ok(cudaMemcpy(p_, h.data(), count_ * sizeof(T), cudaMemcpyHostToDevice), "upload");
  }

 private:
  T* p_ = nullptr;
  std::size_t count_;
};

std::vector<float> random_normal(std::size_t count, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(count);
  for (float& x : v) x = dist(gen);
  return v;
}

// Largest |got - ref| over the largest |ref|; infinite when got has a NaN.
double relative_error(const std::vector<float>& got, const std::vector<double>& ref) {
  double err = 0, scale = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(got[i])) return std::numeric_limits<double>::infinity();
    err = std::max(err, std::fabs(static_cast<double>(got[i]) - ref[i]));
    scale = std::max(scale, std::fabs(ref[i]));
  }
  return scale > 0 ? err / scale : err;
}

// A device copy of h starting `offset` elements into its allocation (offset 1 misaligns the
// vectors, so the kernels take their scalar path).
template <class T>
struct Placed {
  DeviceArray<T> array;
  T* p;
  Placed(const std::vector<T>& h, std::size_t offset) : array(h.size() + offset) {
    p = array.get() + offset;
    ok(cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice), "upload");
  }
  std::vector<T> download(std::size_t count) const {
    std::vector<T> h(count);
    ok(cudaMemcpy(h.data(), p, count * sizeof(T), cudaMemcpyDeviceToHost), "download");
    return h;
  }
};

std::uint16_t bf16_round(float f) {  // round to nearest even, as the GPU's conversion
  std::uint32_t u = 0;
  std::memcpy(&u, &f, sizeof u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}

float bf16_value(std::uint16_t b) {
  const std::uint32_t u = static_cast<std::uint32_t>(b) << 16;
  float f = 0;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Checks the forward (fp32 and bf16 x), the backward and the plain transform for width d on
// `rows` rows against the CPU library, device pointers `offset` floats into their allocations.
// Returns the largest relative error over all outputs.
double verify(std::size_t d, std::size_t rows, std::size_t offset) {
  const std::size_t count = rows * d;
  const float scale = static_cast<float>(whtlm::hadamard_orthonormal_scale(d));
  const std::vector<float> x = random_normal(count, 1), y0 = random_normal(count, 2),
                           dy = random_normal(count, 3), gamma = random_normal(d, 4),
                           beta = random_normal(d, 5), dg0 = random_normal(d, 6),
                           db0 = random_normal(d, 7);
  std::vector<std::uint16_t> xh(count);
  std::vector<float> t = x, th(count), gdy(count);
  for (std::size_t i = 0; i < count; ++i) {
    xh[i] = bf16_round(x[i]);
    th[i] = bf16_value(xh[i]);
    gdy[i] = gamma[i % d] * dy[i];
  }
  // CPU: t = scale * H x (and of the bf16 x), dx = scale * H (gamma * dy).
  whtlm::fwht(t.data(), rows, d, scale);
  whtlm::fwht(th.data(), rows, d, scale);
  whtlm::fwht(gdy.data(), rows, d, scale);
  std::vector<double> y_ref(count), yh_ref(count), dg_ref(dg0.begin(), dg0.end()),
      db_ref(db0.begin(), db0.end());
  for (std::size_t i = 0; i < count; ++i) {
    const std::size_t c = i % d;
    y_ref[i] = y0[i] + static_cast<double>(gamma[c]) * t[i] + beta[c];
    yh_ref[i] = y0[i] + static_cast<double>(gamma[c]) * th[i] + beta[c];
    dg_ref[c] += static_cast<double>(dy[i]) * t[i];
    db_ref[c] += dy[i];
  }

  const std::vector<float> poison(count, std::numeric_limits<float>::quiet_NaN());
  Placed<float> x_(x, offset), y_(y0, offset), yh_(y0, offset), t_(x, offset), dy_(dy, offset),
      dx_(poison, offset), g_(gamma, offset), b_(beta, offset), dg_(dg0, offset), db_(db0, offset);
  Placed<std::uint16_t> xh_(xh, offset);
  // The uploads ran on the legacy default stream, which the backend's stream does not wait for.
  ok(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  cu::hadamard_projection_forward(y_.p, x_.p, g_.p, b_.p, rows, d, scale);
  cu::hadamard_projection_forward_bf16(yh_.p, xh_.p, g_.p, b_.p, rows, d, scale);
  cu::hadamard_projection_backward(dx_.p, dg_.p, db_.p, dy_.p, x_.p, g_.p, rows, d, scale);
  cu::fwht(t_.p, rows, d, scale);
  cu::synchronize();

  const std::vector<double> t_ref(t.begin(), t.end()), dx_ref(gdy.begin(), gdy.end());
  return std::max(
      {relative_error(y_.download(count), y_ref), relative_error(yh_.download(count), yh_ref),
       relative_error(t_.download(count), t_ref), relative_error(dx_.download(count), dx_ref),
       relative_error(dg_.download(d), dg_ref), relative_error(db_.download(d), db_ref)});
}

// Median microseconds of call(set) over reps calls, set = 0, 1, 2, 0, ... after warm-up.
double time_us(const std::function<void(int)>& call, int reps) {
  for (int i = 0; i < kWarmup; ++i) call(i % kSets);
  cudaEvent_t start = nullptr, stop = nullptr;
  ok(cudaEventCreate(&start), "cudaEventCreate");
  ok(cudaEventCreate(&stop), "cudaEventCreate");
  std::vector<double> samples;
  for (int i = 0; i < reps; ++i) {
    ok(cudaEventRecord(start, stream()), "cudaEventRecord");
    call(i % kSets);
    ok(cudaEventRecord(stop, stream()), "cudaEventRecord");
    ok(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0;
    ok(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    samples.push_back(1e3 * ms);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return whtlm::perf::summarize(samples).median;
}

struct Result {
  std::size_t d = 0, rows = 0;
  double fwd_us = 0, bwd_us = 0, copy_us = 0, gemm_us = 0, gemm_bf16_us = 0;
  double bytes = 0;  // moved by the forward (and by the copy): 3 * rows * d * 4
};

Result measure(std::size_t d, std::size_t rows, int reps) {
  const std::size_t count = rows * d;
  const float scale = static_cast<float>(whtlm::hadamard_orthonormal_scale(d));
  const std::vector<float> host = random_normal(count, 11), params = random_normal(d, 12),
                           weight = random_normal(d * d, 13);
  // Per set: x, y, dy, dx (rows x d), the copy's source and destination (1.5 rows x d each),
  // bf16 x.
  std::vector<DeviceArray<float>> x, y, dy, dx, src, dst;
  std::vector<DeviceArray<std::uint16_t>> xh;
  const std::size_t copy_count = count + count / 2;
  for (int s = 0; s < kSets; ++s) {
    for (auto* v : {&x, &y, &dy, &dx}) {
      v->emplace_back(count);
      v->back().upload(host);
    }
    src.emplace_back(copy_count);
    dst.emplace_back(copy_count);
    xh.emplace_back(count);
  }
  DeviceArray<float> gamma(d), beta(d), dgamma(d), dbeta(d), w(d * d);
  DeviceArray<std::uint16_t> wh(d * d);
  for (auto* p : {&gamma, &beta, &dgamma, &dbeta}) p->upload(params);
  w.upload(weight);
  // The uploads ran on the legacy default stream, which the backend's stream does not wait for.
  ok(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  for (int s = 0; s < kSets; ++s) {
    ok(cudaMemsetAsync(src[s].get(), 0, copy_count * sizeof(float), stream()), "cudaMemsetAsync");
    cu::to_bf16(xh[s].get(), x[s].get(), count);
  }
  cu::to_bf16(wh.get(), w.get(), d * d);
  cu::synchronize();

  Result r;
  r.d = d;
  r.rows = rows;
  r.bytes = 3.0 * static_cast<double>(count) * sizeof(float);
  r.fwd_us = time_us(
      [&](int s) {
        cu::hadamard_projection_forward(y[s].get(), x[s].get(), gamma.get(), beta.get(), rows, d,
                                        scale);
      },
      reps);
  r.bwd_us = time_us(
      [&](int s) {
        cu::hadamard_projection_backward(dx[s].get(), dgamma.get(), dbeta.get(), dy[s].get(),
                                         x[s].get(), gamma.get(), rows, d, scale);
      },
      reps);
  r.copy_us = time_us(
      [&](int s) {
        ok(cudaMemcpyAsync(dst[s].get(), src[s].get(), copy_count * sizeof(float),
                           cudaMemcpyDeviceToDevice, stream()),
           "cudaMemcpyAsync");
      },
      reps);
  r.gemm_us = time_us(
      [&](int s) {
        cu::gemm(whtlm::Trans::no, whtlm::Trans::yes, rows, d, d, 1.0f, x[s].get(), d, w.get(), d,
                 1.0f, y[s].get(), d);
      },
      reps);
  r.gemm_bf16_us = time_us(
      [&](int s) {
        cu::gemm_bf16(whtlm::Trans::no, whtlm::Trans::yes, rows, d, d, 1.0f, xh[s].get(), d,
                      wh.get(), d, 1.0f, y[s].get(), d);
      },
      reps);
  cu::synchronize();
  return r;
}

int run(const Options& o) {
  if (cu::device_count() == 0) {
    std::fprintf(stderr, "cuda_hadamard_bench: no CUDA device found; nothing to measure\n");
    return 77;
  }
  const std::string device = cu::device_description();
  std::printf("%s\n", device.c_str());

  if (o.check_all) {
    bool pass = true;
    for (std::size_t d : whtlm::hadamard_supported_sizes()) {
      for (std::size_t offset : {0, 1}) {
        const double err = verify(d, 67, offset);
        pass = pass && err < kTolerance;
        std::printf("check d=%zu rows=67 %s: %s (max relative error %.2e)\n", d,
                    offset == 0 ? "aligned" : "misaligned", err < kTolerance ? "PASS" : "FAIL",
                    err);
      }
    }
    std::printf("%s\n", pass ? "all PASS" : "some FAIL");
    return pass ? 0 : 1;
  }
  std::printf(
      "copy: device-to-device cudaMemcpyAsync of 1.5 * rows * d floats, reading and "
      "writing 3 * rows * d * 4 bytes, as the forward does (x, y read; y written)\n");

  json checks = json::array();
  bool all_pass = true;
  const std::size_t check_rows = std::min<std::size_t>(o.rows, 512);
  for (std::size_t d : o.sizes) {
    const double err = verify(d, check_rows, 0);
    const bool pass = err < kTolerance;
    all_pass = all_pass && pass;
    std::printf("check d=%zu rows=%zu: %s (max relative error %.2e, tolerance %.0e)\n", d,
                check_rows, pass ? "PASS" : "FAIL", err, kTolerance);
    checks.push_back({{"d", d}, {"rows", check_rows}, {"max_rel_error", err}, {"pass", pass}});
  }

  std::printf("\n%6s %7s %9s %9s %9s %8s %8s %10s %10s %8s %8s\n", "d", "rows", "fwd us", "bwd us",
              "copy us", "fwd/copy", "bwd/copy", "gemm us", "bf16 us", "gemm/fwd", "fwd GB/s");
  json results = json::array();
  for (std::size_t d : o.sizes) {
    const Result r = measure(d, o.rows, o.reps);
    const double gbs = r.bytes / (r.fwd_us * 1e3);
    std::printf("%6zu %7zu %9.1f %9.1f %9.1f %8.2f %8.2f %10.1f %10.1f %8.1f %8.0f\n", r.d, r.rows,
                r.fwd_us, r.bwd_us, r.copy_us, r.fwd_us / r.copy_us, r.bwd_us / r.copy_us,
                r.gemm_us, r.gemm_bf16_us, r.gemm_us / r.fwd_us, gbs);
    std::fflush(stdout);
    results.push_back({{"d", r.d},
                       {"rows", r.rows},
                       {"fwd_us", r.fwd_us},
                       {"bwd_us", r.bwd_us},
                       {"copy_us", r.copy_us},
                       {"fwd_over_copy", r.fwd_us / r.copy_us},
                       {"bwd_over_copy", r.bwd_us / r.copy_us},
                       {"gemm_fp32_us", r.gemm_us},
                       {"gemm_bf16_us", r.gemm_bf16_us},
                       {"gemm_over_fwd", r.gemm_us / r.fwd_us},
                       {"fwd_bytes", r.bytes},
                       {"fwd_gb_per_s", gbs}});
  }

  if (!o.json_path.empty()) {
    const json out = {
        {"device", device},
        {"reps", o.reps},
        {"statistic", "median"},
        {"copy",
         "cudaMemcpyAsync device to device of 1.5 * rows * d floats: 3 * rows * d * 4 bytes "
         "read and written, as the forward (x read, y read, y written) and the backward "
         "(x, dy read, dx written)"},
        {"gemm",
         "y += x W^T, rows x d by d x d, fp32 without TF32 (gemm_fp32) and bf16 inputs "
         "with fp32 accumulation (gemm_bf16), cuBLASLt"},
        {"checks", checks},
        {"results", results}};
    std::ofstream f(o.json_path);
    f << out.dump(2) << "\n";
    if (!f) throw std::runtime_error("cannot write " + o.json_path);
  }
  if (!all_pass) std::fprintf(stderr, "cuda_hadamard_bench: a check FAILED\n");
  return all_pass ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  try {
    o = parse(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cuda_hadamard_bench: %s\n", e.what());
    usage(stderr);
    return 2;
  }
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cuda_hadamard_bench: %s\n", e.what());
    return 1;
  }
}
