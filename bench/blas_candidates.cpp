// blas_candidates.cpp - compare the sgemm of candidate BLAS libraries on
// transformer-shaped single-precision matmuls.
//
// Self-contained: every library is dlopen()ed by its full path with
// RTLD_LOCAL, so the cblas_sgemm of OpenBLAS and BLIS never clash, and all of
// them share the one libgomp thread pool this program is linked with.
//
// Candidates (names for --candidates):
//   openblas          OpenBLAS as it loads by default (OPENBLAS_CORETYPE unset)
//   openblas:<Core>   OpenBLAS with OPENBLAS_CORETYPE=<Core> set before load.
//                     OpenBLAS reads the variable in its load-time constructor,
//                     so each such candidate is a private copy of the .so
//                     (copied to /tmp, dlopen()ed, then unlinked).
//   blis              BLIS (cblas_sgemm / cblas_sgemv of the BLIS build)
//   dnnl              oneDNN dnnl_sgemm (no gemv entry point)
//
// Build:  g++ -std=c++20 -O2 -fopenmp bench/blas_candidates.cpp -o blas_candidates
//         (needs the oneDNN headers from libdnnl-dev for the declarations only;
//          nothing is linked except libgomp)
// Run:    ./blas_candidates --help
//
// Row-major shapes, X[N x d], W[d x k], dY[N x k]:
//   fwd   Y  = X   * W      sgemm M=N N=k K=d  (NoTrans, NoTrans)
//   gemv  y  = W^T * x      sgemv, only for N=1 (what fwd N=1 really is)
//   dX    dX = dY  * W^T    sgemm M=N N=d K=k  (NoTrans, Trans)
//   dW    dW = X^T * dY     sgemm M=d N=k K=N  (Trans, NoTrans)
// beta = 0 everywhere; GFLOP/s = 2*N*d*k / time.

#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace {

// CBLAS ABI (32-bit integers in both Debian builds: OpenBLAS blasint=int,
// BLIS f77_int=int32_t).
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;
using cblas_sgemm_fn = void (*)(int, int, int, int, int, int, float, const float*, int,
                                const float*, int, float, float*, int);
using cblas_sgemv_fn = void (*)(int, int, int, int, float, const float*, int, const float*, int,
                                float, float*, int);
using dnnl_sgemm_fn = decltype(&dnnl_sgemm);

struct Options {
  std::vector<int> threads{1, 2};
  int reps = 5;
  int big_reps = 3;
  double big_gflop = 20.0;  // shapes with at least this many GFLOP use big_reps
  double min_time_ms = 40.0;
  std::vector<int> Ns{1, 8, 4096};
  std::vector<std::pair<int, int>> dks{
      {256, 256}, {1024, 1024}, {1024, 4096}, {4096, 1024}, {4096, 4096}};
  std::vector<std::string> forms{"fwd", "gemv", "dX", "dW"};
  std::vector<int> bwd_Ns{4096};
  std::vector<std::string> candidates{
      "openblas", "openblas:SkylakeX", "openblas:Haswell", "openblas:Zen", "blis", "dnnl"};
  std::string openblas_path = "/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0";
  std::string blis_path = "/usr/lib/x86_64-linux-gnu/blis-openmp/libblis.so.4";
  std::string dnnl_path = "/usr/lib/x86_64-linux-gnu/libdnnl.so.2";
  bool raw = false;
};

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "blas_candidates: %s\n", msg.c_str());
  std::exit(2);
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t pos = s.find(sep, start);
    if (pos == std::string::npos) pos = s.size();
    if (pos > start) out.push_back(s.substr(start, pos - start));
    start = pos + 1;
  }
  return out;
}

std::vector<int> parse_ints(const std::string& s) {
  std::vector<int> v;
  for (auto& t : split(s, ',')) v.push_back(std::atoi(t.c_str()));
  return v;
}

void usage() {
  std::printf(
      "usage: blas_candidates [options]\n"
      "  --threads LIST       thread counts, e.g. 1,2            (default 1,2)\n"
      "  --reps R             timed samples per cell             (default 5)\n"
      "  --big-reps R         samples for shapes >= --big-gflop  (default 3)\n"
      "  --big-gflop G        threshold in GFLOP per call        (default 20)\n"
      "  --min-time-ms T      min duration of one sample         (default 40)\n"
      "  --N LIST             batch rows for fwd/gemv            (default 1,8,4096)\n"
      "  --bwd-N LIST         batch rows for dX/dW               (default 4096)\n"
      "  --dk LIST            d x k pairs, e.g. 256x256,4096x1024\n"
      "  --forms LIST         subset of fwd,gemv,dX,dW           (default all)\n"
      "  --candidates LIST    openblas, openblas:<Core>, blis, dnnl\n"
      "                       (default openblas,openblas:SkylakeX,openblas:Haswell,\n"
      "                        openblas:Zen,blis,dnnl)\n"
      "  --openblas-path P, --blis-path P, --dnnl-path P   library locations\n"
      "  --raw                also print every sample\n");
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) die("missing value for " + a);
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      usage();
      std::exit(0);
    } else if (a == "--threads") {
      o.threads = parse_ints(val());
    } else if (a == "--reps") {
      o.reps = std::atoi(val().c_str());
    } else if (a == "--big-reps") {
      o.big_reps = std::atoi(val().c_str());
    } else if (a == "--big-gflop") {
      o.big_gflop = std::atof(val().c_str());
    } else if (a == "--min-time-ms") {
      o.min_time_ms = std::atof(val().c_str());
    } else if (a == "--N") {
      o.Ns = parse_ints(val());
    } else if (a == "--bwd-N") {
      o.bwd_Ns = parse_ints(val());
    } else if (a == "--dk") {
      o.dks.clear();
      for (auto& t : split(val(), ',')) {
        auto p = split(t, 'x');
        if (p.size() != 2) die("bad --dk entry " + t);
        o.dks.emplace_back(std::atoi(p[0].c_str()), std::atoi(p[1].c_str()));
      }
    } else if (a == "--forms") {
      o.forms = split(val(), ',');
    } else if (a == "--candidates") {
      o.candidates = split(val(), ',');
    } else if (a == "--openblas-path") {
      o.openblas_path = val();
    } else if (a == "--blis-path") {
      o.blis_path = val();
    } else if (a == "--dnnl-path") {
      o.dnnl_path = val();
    } else if (a == "--raw") {
      o.raw = true;
    } else {
      usage();
      die("unknown option " + a);
    }
  }
  if (o.reps < 1 || o.big_reps < 1) die("reps must be >= 1");
  o.big_reps = std::min(o.big_reps, o.reps);
  return o;
}

template <class F>
F sym(void* h, const char* name, bool required = true) {
  void* p = dlsym(h, name);
  if (!p && required) die(std::string("missing symbol ") + name);
  return reinterpret_cast<F>(p);
}

// ---------------------------------------------------------------------------
// Candidates

struct Candidate {
  std::string name;
  std::string info;  // what its runtime dispatch picked
  cblas_sgemm_fn sgemm = nullptr;
  cblas_sgemv_fn sgemv = nullptr;
  dnnl_sgemm_fn dsgemm = nullptr;
  void (*set_threads)(int) = nullptr;

  void gemm(bool ta, bool tb, int M, int N, int K, const float* A, int lda, const float* B, int ldb,
            float* C, int ldc) const {
    if (dsgemm) {
      dsgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
    } else {
      sgemm(kRowMajor, ta ? kTrans : kNoTrans, tb ? kTrans : kNoTrans, M, N, K, 1.0f, A, lda, B,
            ldb, 0.0f, C, ldc);
    }
  }
};

// Load OpenBLAS with a given OPENBLAS_CORETYPE ("" = unset). A coretype other
// than the default needs its own copy of the shared object, since dlopen() of
// an already loaded path returns the existing instance and the constructor
// that reads the variable does not run again.
Candidate load_openblas(const Options& o, const std::string& core) {
  std::string path = o.openblas_path;
  std::string tmp;
  if (!core.empty()) {
    char tmpl[] = "/tmp/blas_candidates_openblas_XXXXXX";
    int out = mkstemp(tmpl);
    if (out < 0) die("mkstemp failed");
    int in = open(path.c_str(), O_RDONLY);
    if (in < 0) die("cannot open " + path);
    struct stat st {};
    fstat(in, &st);
    off_t off = 0;
    while (off < st.st_size)
      if (sendfile(out, in, &off, st.st_size - off) <= 0) die("copy of " + path + " failed");
    close(in);
    close(out);
    tmp = path = tmpl;
  }
  const char* old = std::getenv("OPENBLAS_CORETYPE");
  std::string saved = old ? old : "";
  if (core.empty())
    unsetenv("OPENBLAS_CORETYPE");
  else
    setenv("OPENBLAS_CORETYPE", core.c_str(), 1);
  void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (old)
    setenv("OPENBLAS_CORETYPE", saved.c_str(), 1);
  else
    unsetenv("OPENBLAS_CORETYPE");
  if (!tmp.empty()) unlink(tmp.c_str());
  if (!h) die(std::string("dlopen failed: ") + dlerror());

  Candidate c;
  c.sgemm = sym<cblas_sgemm_fn>(h, "cblas_sgemm");
  c.sgemv = sym<cblas_sgemv_fn>(h, "cblas_sgemv");
  c.set_threads = sym<void (*)(int)>(h, "openblas_set_num_threads");
  auto corename = sym<char* (*)()>(h, "openblas_get_corename");
  auto config = sym<char* (*)()>(h, "openblas_get_config");
  auto parallel = sym<int (*)()>(h, "openblas_get_parallel");
  std::string got = corename();
  c.name = core.empty() ? "OpenBLAS default (" + got + ")" : "OpenBLAS " + core;
  if (!core.empty() && strcasecmp(got.c_str(), core.c_str()) != 0) c.name += " (got " + got + ")";
  c.info = std::string("corename=") + got + "; parallel=" + std::to_string(parallel()) +
           " (0 none, 1 pthreads, 2 OpenMP); config=\"" + config() + "\"";
  return c;
}

Candidate load_blis(const Options& o) {
  void* h = dlopen(o.blis_path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) die(std::string("dlopen failed: ") + dlerror());
  Candidate c;
  c.sgemm = sym<cblas_sgemm_fn>(h, "cblas_sgemm");
  c.sgemv = sym<cblas_sgemv_fn>(h, "cblas_sgemv");
  c.set_threads = sym<void (*)(int)>(h, "bli_thread_set_num_threads");
  auto get_threads = sym<int (*)()>(h, "bli_thread_get_num_threads");
  auto arch_id = sym<int (*)()>(h, "bli_arch_query_id");
  auto arch_str = sym<const char* (*)(int)>(h, "bli_arch_string");
  auto version = sym<const char* (*)()>(h, "bli_info_get_version_str");
  auto openmp = sym<int (*)()>(h, "bli_info_get_enable_openmp", false);
  int id = arch_id();
  c.name = std::string("BLIS ") + arch_str(id);
  c.info = std::string("version ") + version() + "; sub-configuration=" + arch_str(id) + " (id " +
           std::to_string(id) + "); openmp=" + (openmp ? std::to_string(openmp()) : "?") +
           "; threads before bli_thread_set_num_threads()=" + std::to_string(get_threads());
  return c;
}

const char* dnnl_isa_name(int isa) {
  switch (isa) {
    case dnnl_cpu_isa_sse41:
      return "sse41";
    case dnnl_cpu_isa_avx:
      return "avx";
    case dnnl_cpu_isa_avx2:
      return "avx2";
    case dnnl_cpu_isa_avx512_mic:
      return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops:
      return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core:
      return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni:
      return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16:
      return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx:
      return "avx512_core_amx";
    case dnnl_cpu_isa_avx2_vnni:
      return "avx2_vnni";
    default:
      return "?";
  }
}

Candidate load_dnnl(const Options& o) {
  void* h = dlopen(o.dnnl_path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) die(std::string("dlopen failed: ") + dlerror());
  Candidate c;
  c.dsgemm = sym<dnnl_sgemm_fn>(h, "dnnl_sgemm");
  auto isa = sym<decltype(&dnnl_get_effective_cpu_isa)>(h, "dnnl_get_effective_cpu_isa");
  auto ver = sym<decltype(&dnnl_version)>(h, "dnnl_version");
  const dnnl_version_t* v = ver();
  int i = static_cast<int>(isa());
  c.name = std::string("oneDNN ") + dnnl_isa_name(i);
  auto rt = [](unsigned r) -> std::string {
    switch (r) {
      case DNNL_RUNTIME_NONE:
        return "none";
      case DNNL_RUNTIME_SEQ:
        return "sequential";
      case DNNL_RUNTIME_OMP:
        return "OpenMP";
      case DNNL_RUNTIME_TBB:
        return "TBB";
      case DNNL_RUNTIME_THREADPOOL:
        return "threadpool";
      case DNNL_RUNTIME_OCL:
        return "OpenCL";
      case DNNL_RUNTIME_SYCL:
        return "SYCL";
      default:
        return std::to_string(r);
    }
  };
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "version %d.%d.%d; effective ISA=%s (0x%x); cpu_runtime=%s; gpu_runtime=%s",
                v->major, v->minor, v->patch, dnnl_isa_name(i), i, rt(v->cpu_runtime).c_str(),
                rt(v->gpu_runtime).c_str());
  c.info = buf;
  return c;  // threads: follows omp_get_max_threads(), no own setter
}

// ---------------------------------------------------------------------------
// Shapes and buffers

struct Shape {
  std::string form;
  int N, d, k;
  double gflop() const { return 2.0 * N * d * k * 1e-9; }
  // sgemm parameters
  bool ta() const { return form == "dW"; }
  bool tb() const { return form == "dX"; }
  int M() const { return form == "dW" ? d : N; }
  int Nc() const { return form == "dX" ? d : k; }
  int K() const { return form == "dX" ? k : (form == "dW" ? N : d); }
  size_t a_elems() const { return size_t(N) * (form == "dX" ? k : d); }
  size_t b_elems() const { return form == "dW" ? size_t(N) * k : size_t(d) * k; }
  size_t c_elems() const { return size_t(M()) * Nc(); }
  int lda() const { return form == "dX" ? k : d; }  // X: d, dY: k, X (dW, transposed): d
  int ldb() const { return k; }                     // W: k, W (dX, transposed): k, dY: k
  int ldc() const { return Nc(); }
  std::string label() const {
    char b[96];
    if (form == "fwd")
      std::snprintf(b, sizeof b, "fwd X·W N=%d d=%d k=%d", N, d, k);
    else if (form == "gemv")
      std::snprintf(b, sizeof b, "gemv Wᵀx N=1 d=%d k=%d", d, k);
    else if (form == "dX")
      std::snprintf(b, sizeof b, "dX dY·Wᵀ N=%d d=%d k=%d", N, d, k);
    else
      std::snprintf(b, sizeof b, "dW Xᵀ·dY N=%d d=%d k=%d", N, d, k);
    return b;
  }
};

struct AlignedFree {
  void operator()(float* p) const { std::free(p); }
};
using Buf = std::unique_ptr<float[], AlignedFree>;

Buf make_buf(size_t n, uint64_t seed) {
  size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
  auto* p = static_cast<float*>(std::aligned_alloc(64, bytes ? bytes : 64));
  if (!p) die("out of memory");
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < n; ++i) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    p[i] = float((s >> 40) & 0xFFFF) / 32768.0f - 1.0f;
  }
  return Buf(p);
}

void run_once(const Candidate& c, const Shape& s, const float* A, const float* B, float* C) {
  if (s.form == "gemv")
    c.sgemv(kRowMajor, kTrans, s.d, s.k, 1.0f, B, s.k, A, 1, 0.0f, C, 1);
  else
    c.gemm(s.ta(), s.tb(), s.M(), s.Nc(), s.K(), A, s.lda(), B, s.ldb(), C, s.ldc());
}

// Spot-check a few output elements against a double-precision dot product.
double max_rel_err(const Shape& s, const float* A, const float* B, const float* C) {
  double worst = 0;
  int M = s.form == "gemv" ? 1 : s.M(), Nn = s.form == "gemv" ? s.k : s.Nc();
  int K = s.form == "gemv" ? s.d : s.K();
  for (int t = 0; t < 16; ++t) {
    int i = int((uint64_t(t) * 2654435761u) % M), j = int((uint64_t(t) * 40503u + 7) % Nn);
    double ref = 0, mag = 0;
    for (int p = 0; p < K; ++p) {
      double a, b;
      if (s.form == "gemv") {
        a = A[p];
        b = B[size_t(p) * s.k + j];
      } else {
        a = s.ta() ? A[size_t(p) * s.lda() + i] : A[size_t(i) * s.lda() + p];
        b = s.tb() ? B[size_t(j) * s.ldb() + p] : B[size_t(p) * s.ldb() + j];
      }
      ref += a * b;
      mag += std::fabs(a * b);
    }
    double got = s.form == "gemv" ? C[j] : C[size_t(i) * s.ldc() + j];
    worst = std::max(worst, std::fabs(got - ref) / (mag + 1e-30));
  }
  return worst;
}

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int dl_cb(struct dl_phdr_info* info, size_t, void* data) {
  auto* out = static_cast<std::vector<std::string>*>(data);
  std::string n = info->dlpi_name ? info->dlpi_name : "";
  for (const char* key : {"gomp", "iomp", "tbb", "omp5", "pthread"})
    if (n.find(key) != std::string::npos) {
      out->push_back(n);
      break;
    }
  return 0;
}

std::string cpu_model() {
  FILE* f = std::fopen("/proc/cpuinfo", "r");
  if (!f) return "?";
  char line[512];
  std::string r = "?";
  while (std::fgets(line, sizeof line, f))
    if (std::strncmp(line, "model name", 10) == 0) {
      const char* p = std::strchr(line, ':');
      r = p ? p + 2 : line;
      r.erase(r.find_last_not_of("\n ") + 1);
      break;
    }
  std::fclose(f);
  return r;
}

std::string loadavg() {
  FILE* f = std::fopen("/proc/loadavg", "r");
  if (!f) return "?";
  char b[128] = {0};
  if (!std::fgets(b, sizeof b, f)) b[0] = 0;
  std::fclose(f);
  std::string s = b;
  s.erase(s.find_last_not_of("\n ") + 1);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse_args(argc, argv);

  std::vector<Candidate> cands;
  for (const auto& name : o.candidates) {
    if (name == "openblas")
      cands.push_back(load_openblas(o, ""));
    else if (name.rfind("openblas:", 0) == 0)
      cands.push_back(load_openblas(o, name.substr(9)));
    else if (name == "blis")
      cands.push_back(load_blis(o));
    else if (name == "dnnl")
      cands.push_back(load_dnnl(o));
    else
      die("unknown candidate " + name);
  }
  if (cands.empty()) die("no candidates");

  std::vector<Shape> shapes;
  for (const auto& f : o.forms) {
    if (f != "fwd" && f != "gemv" && f != "dX" && f != "dW") die("unknown form " + f);
  }
  auto want = [&](const char* f) {
    return std::find(o.forms.begin(), o.forms.end(), f) != o.forms.end();
  };
  for (int N : o.Ns)
    for (auto [d, k] : o.dks) {
      if (want("fwd")) shapes.push_back({"fwd", N, d, k});
      if (N == 1 && want("gemv")) shapes.push_back({"gemv", 1, d, k});
    }
  for (const char* f : {"dX", "dW"})
    if (want(f))
      for (int N : o.bwd_Ns)
        for (auto [d, k] : o.dks) shapes.push_back({f, N, d, k});

  // ---- header
  std::time_t now = std::time(nullptr);
  char date[64];
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S %Z", std::localtime(&now));
  std::printf("# BLAS candidates: row-major sgemm, GFLOP/s (median)\n\n");
  std::printf("- date: %s\n- cpu: %s, %d logical CPUs online\n", date, cpu_model().c_str(),
              int(sysconf(_SC_NPROCESSORS_ONLN)));
  std::printf("- command:");
  for (int i = 0; i < argc; ++i) std::printf(" %s", argv[i]);
  std::printf(
      "\n- reps: %d (%d for shapes >= %.0f GFLOP), min sample %.0f ms; samples taken "
      "in rounds over all shapes, candidate order rotated each time\n",
      o.reps, o.big_reps, o.big_gflop, o.min_time_ms);
  std::printf("- loadavg at start: %s\n", loadavg().c_str());
  std::vector<std::string> rts;
  dl_iterate_phdr(dl_cb, &rts);
  std::printf("- threading runtimes loaded in this process:");
  for (auto& r : rts) std::printf(" %s", r.c_str());
  std::printf("\n");
  for (auto& c : cands) std::printf("- %s: %s\n", c.name.c_str(), c.info.c_str());
  std::printf("\n");
  std::fflush(stdout);

  // results[threads][shape][cand] = samples
  std::map<int, std::vector<std::vector<std::vector<double>>>> res;
  for (int t : o.threads)
    res[t].assign(shapes.size(), std::vector<std::vector<double>>(cands.size()));

  // One set of buffers, sized for the largest shape; every shape uses a prefix.
  size_t na = 1, nb = 1, nc = 1;
  for (const Shape& s : shapes) {
    na = std::max(na, s.form == "gemv" ? size_t(s.d) : s.a_elems());
    nb = std::max(nb, s.b_elems());
    nc = std::max(nc, s.form == "gemv" ? size_t(s.k) : s.c_elems());
  }
  Buf A = make_buf(na, 1), B = make_buf(nb, 2), C = make_buf(nc, 3);

  // Rounds: every round visits every shape (and thread count) once and takes
  // one sample per candidate, in an order rotated from round to round. A
  // burst of outside load therefore spoils one sample of a few shapes, not
  // all samples of one shape. Round 0 starts with warm-up + calibration.
  auto reps_of = [&](const Shape& s) { return s.gflop() >= o.big_gflop ? o.big_reps : o.reps; };
  int rounds = 0;
  for (const Shape& s : shapes) rounds = std::max(rounds, reps_of(s));
  // iters[threads][shape][cand]: calls per sample so that a sample >= min_time
  std::map<int, std::vector<std::vector<long>>> iters;
  for (int t : o.threads) iters[t].assign(shapes.size(), std::vector<long>(cands.size(), 1));

  auto t_start = Clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - t_start).count(); };
  for (int r = 0; r < rounds; ++r) {
    for (size_t si = 0; si < shapes.size(); ++si) {
      const Shape& s = shapes[si];
      if (r >= reps_of(s)) continue;
      for (int t : o.threads) {
        omp_set_num_threads(t);
        for (auto& c : cands)
          if (c.set_threads) c.set_threads(t);
        if (r == 0) {
          for (size_t ci = 0; ci < cands.size(); ++ci) {
            const Candidate& c = cands[ci];
            if (s.form == "gemv" && !c.sgemv) continue;
            auto t0 = Clock::now();
            run_once(c, s, A.get(), B.get(), C.get());
            double dt = std::chrono::duration<double>(Clock::now() - t0).count();
            double err = max_rel_err(s, A.get(), B.get(), C.get());
            if (!(err < 1e-4))
              std::fprintf(stderr, "WARNING: %s on %s: relative error %.3g\n", c.name.c_str(),
                           s.label().c_str(), err);
            if (dt < o.min_time_ms * 1e-3) {
              long n = std::max(1L, long(o.min_time_ms * 1e-3 / 4 / std::max(dt, 1e-7)));
              t0 = Clock::now();
              for (long i = 0; i < n; ++i) run_once(c, s, A.get(), B.get(), C.get());
              dt = std::chrono::duration<double>(Clock::now() - t0).count() / n;
              iters[t][si][ci] =
                  std::max(1L, long(std::ceil(o.min_time_ms * 1e-3 / std::max(dt, 1e-8))));
            }
          }
        }
        for (size_t q = 0; q < cands.size(); ++q) {
          size_t ci = (q + r + si) % cands.size();  // rotate who goes first
          const Candidate& c = cands[ci];
          if (s.form == "gemv" && !c.sgemv) continue;
          long n = iters[t][si][ci];
          auto t0 = Clock::now();
          for (long i = 0; i < n; ++i) run_once(c, s, A.get(), B.get(), C.get());
          double dt = std::chrono::duration<double>(Clock::now() - t0).count();
          res[t][si][ci].push_back(s.gflop() * n / dt);
        }
      }
    }
    std::fprintf(stderr, "[%6.1fs] round %d/%d done, loadavg %s\n", elapsed(), r + 1, rounds,
                 loadavg().c_str());
  }

  // ---- tables
  for (int t : o.threads) {
    std::printf("## %d thread%s (GFLOP/s, median; best in bold)\n\n", t, t == 1 ? "" : "s");
    std::printf("| shape | GFLOP/call |");
    for (auto& c : cands) std::printf(" %s |", c.name.c_str());
    std::printf("\n|---|---:|");
    for (size_t i = 0; i < cands.size(); ++i) std::printf("---:|");
    std::printf("\n");
    std::vector<double> logsum(cands.size(), 0);
    std::vector<int> cnt(cands.size(), 0);
    for (size_t si = 0; si < shapes.size(); ++si) {
      std::vector<double> med(cands.size(), -1);
      double best = 0;
      for (size_t ci = 0; ci < cands.size(); ++ci)
        if (!res[t][si][ci].empty()) best = std::max(best, med[ci] = median(res[t][si][ci]));
      std::printf("| %s | %.4g |", shapes[si].label().c_str(), shapes[si].gflop());
      for (size_t ci = 0; ci < cands.size(); ++ci) {
        if (med[ci] < 0) {
          std::printf(" n/a |");
          continue;
        }
        if (med[ci] == best)
          std::printf(" **%.1f** |", med[ci]);
        else
          std::printf(" %.1f |", med[ci]);
        if (shapes[si].form != "gemv") {
          logsum[ci] += std::log(med[ci] / best);
          cnt[ci]++;
        }
      }
      std::printf("\n");
    }
    std::printf("| geomean vs best (sgemm rows) | |");
    for (size_t ci = 0; ci < cands.size(); ++ci)
      std::printf(" %.0f%% |", cnt[ci] ? 100.0 * std::exp(logsum[ci] / cnt[ci]) : 0.0);
    std::printf("\n\n");
    if (o.raw) {
      std::printf("raw samples (%d thread%s):\n\n", t, t == 1 ? "" : "s");
      for (size_t si = 0; si < shapes.size(); ++si)
        for (size_t ci = 0; ci < cands.size(); ++ci) {
          std::printf("    %-36s %-34s", shapes[si].label().c_str(), cands[ci].name.c_str());
          for (double g : res[t][si][ci]) std::printf(" %.1f", g);
          if (res[t][si][ci].empty()) std::printf(" n/a");
          std::printf("\n");
        }
      std::printf("\n");
    }
  }
  std::printf("- loadavg at end: %s; total %.0f s\n", loadavg().c_str(), elapsed());
  return 0;
}
