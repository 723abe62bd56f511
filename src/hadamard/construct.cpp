// Hadamard matrix constructions: Sylvester for powers of two, Paley for the small
// orders K in {12, 20, 28}, and the list of supported transform lengths.
#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

#include "hadamard/plan.hpp"
#include "whtlm/hadamard.hpp"

namespace whtlm {
namespace {

constexpr std::size_t kMaxN = std::size_t{1} << 15;

// Legendre symbol of a modulo the odd prime q: 0, +1 (quadratic residue) or -1.
int legendre(long a, long q) {
  a = ((a % q) + q) % q;
  if (a == 0) return 0;
  for (long x = 1; x < q; ++x)
    if ((x * x) % q == a) return 1;
  return -1;
}

using IntMatrix = std::vector<int>;

// Paley I, q prime with q % 4 == 3: a Hadamard matrix of order q + 1, made symmetric.
// The skew matrix I + [[0, 1^T], [-1, Q]] (Q[i][j] = chi(j - i)) is multiplied on
// the right by the permutation j -> -j of the core and its first column negated.
// Both keep the Hadamard property; the result depends on i + j only in the core and
// has equal first row and column, hence is symmetric.
IntMatrix paley1_symmetric(long q) {
  const long k = q + 1;
  IntMatrix h(static_cast<std::size_t>(k * k));
  auto at = [&](long r, long c) -> int& { return h[static_cast<std::size_t>(r * k + c)]; };
  at(0, 0) = -1;
  for (long j = 1; j < k; ++j) at(0, j) = 1;
  for (long i = 1; i < k; ++i) at(i, 0) = 1;
  for (long i = 0; i < q; ++i) {
    for (long j = 0; j < q; ++j) {
      // Column j of the permuted matrix is column -j of I + Q.
      const long jp = (q - j) % q;
      at(i + 1, j + 1) = (i == jp ? 1 : 0) + legendre(jp - i, q);
    }
  }
  return h;
}

// Paley II, q prime with q % 4 == 1: a symmetric Hadamard matrix of order 2(q + 1).
// C = [[0, 1^T], [1, Q]] is a symmetric conference matrix; each 0 of C becomes
// [[1, -1], [-1, -1]] and each +-1 becomes +-[[1, 1], [1, -1]].
IntMatrix paley2(long q) {
  const long c = q + 1;
  auto conf = [&](long i, long j) -> int {
    if (i == j) return 0;
    if (i == 0 || j == 0) return 1;
    return legendre(j - i, q);
  };
  const long k = 2 * c;
  IntMatrix h(static_cast<std::size_t>(k * k));
  for (long i = 0; i < c; ++i) {
    for (long j = 0; j < c; ++j) {
      const int e = conf(i, j);
      const int blk[2][2] = {{e == 0 ? 1 : e, e == 0 ? -1 : e},
                             {e == 0 ? -1 : e, e == 0 ? -1 : -e}};
      for (int a = 0; a < 2; ++a)
        for (int b = 0; b < 2; ++b)
          h[static_cast<std::size_t>((2 * i + a) * k + 2 * j + b)] = blk[a][b];
    }
  }
  return h;
}

// Throws std::logic_error unless h is symmetric with h h^T = k I.
void verify_symmetric_hadamard(const IntMatrix& h, std::size_t k) {
  for (std::size_t i = 0; i < k; ++i) {
    for (std::size_t j = 0; j < k; ++j) {
      if (h[i * k + j] != h[j * k + i])
        throw std::logic_error("Hadamard matrix of order " + std::to_string(k) +
                               " is not symmetric");
      long dot = 0;
      for (std::size_t c = 0; c < k; ++c) dot += h[i * k + c] * h[j * k + c];
      if (dot != (i == j ? static_cast<long>(k) : 0))
        throw std::logic_error("Hadamard matrix of order " + std::to_string(k) +
                               " fails H H^T = K I");
    }
  }
}

IntMatrix build_base(std::size_t k) {
  IntMatrix h;
  switch (k) {
    case 1:
      h = {1};
      break;
    case 12:
      h = paley1_symmetric(11);
      break;
    case 20:
      h = paley1_symmetric(19);
      break;
    case 28:
      h = paley2(13);
      break;
    default:
      throw std::invalid_argument("no Hadamard base matrix of order " + std::to_string(k) +
                                  " (have 1, 12, 20, 28)");
  }
  verify_symmetric_hadamard(h, k);
  return h;
}

}  // namespace

std::vector<int> hadamard_base_matrix(std::size_t k) { return build_base(k); }

const std::vector<std::size_t>& hadamard_supported_sizes() {
  static const std::vector<std::size_t> sizes = [] {
    std::vector<std::size_t> s;
    for (std::size_t n = 2; n <= kMaxN; n *= 2) s.push_back(n);
    for (std::size_t k : {12, 20, 28})
      for (std::size_t n = k; n <= kMaxN; n *= 2) s.push_back(n);
    std::sort(s.begin(), s.end());
    return s;
  }();
  return sizes;
}

bool hadamard_supported(std::size_t n) {
  const auto& s = hadamard_supported_sizes();
  return std::binary_search(s.begin(), s.end(), n);
}

void check_hadamard_size(std::size_t n) {
  if (hadamard_supported(n)) return;
  const auto& s = hadamard_supported_sizes();
  std::ostringstream msg;
  msg << "Hadamard transform length n = " << n << " is not supported";
  const auto above = std::upper_bound(s.begin(), s.end(), n);
  if (above == s.begin()) {
    msg << "; the smallest supported length is " << s.front();
  } else if (above == s.end()) {
    msg << "; the largest supported length is " << s.back();
  } else {
    msg << "; nearest supported lengths: " << *(above - 1) << " and " << *above;
  }
  msg << " (powers of two 2.." << kMaxN << ", and 12, 20 or 28 times a power of two)";
  throw std::invalid_argument(msg.str());
}

double hadamard_orthonormal_scale(std::size_t n) {
  check_hadamard_size(n);
  return 1.0 / std::sqrt(static_cast<double>(n));
}

std::vector<double> hadamard_matrix(std::size_t n) {
  const hadamard_detail::Plan plan = hadamard_detail::make_plan(n);
  const std::size_t k = plan.k, l = plan.l;
  std::vector<double> m(n * n);
  for (std::size_t r = 0; r < n; ++r) {
    for (std::size_t c = 0; c < n; ++c) {
      const std::size_t a = r / l, b = r % l, a2 = c / l, b2 = c % l;
      // Sylvester: H[b][b2] = (-1)^popcount(b & b2).
      const int syl = (__builtin_popcountll(b & b2) & 1) ? -1 : 1;
      m[r * n + c] = static_cast<double>(plan.base->h[a * k + a2] * syl);
    }
  }
  return m;
}

namespace hadamard_detail {

Plan make_plan(std::size_t n) {
  static const auto make = [](std::size_t k) {
    Base b;
    b.k = k;
    b.h = build_base(k);
    b.minority.assign(k * k, 0);
    for (std::size_t a = 0; a < k; ++a) {
      std::size_t plus = 0;
      for (std::size_t c = 0; c < k; ++c) plus += b.h[a * k + c] > 0 ? 1 : 0;
      const int s = 2 * plus <= k ? 1 : -1;  // the less frequent sign of row a
      std::uint8_t m = 0;
      for (std::size_t c = 0; c < k; ++c)
        if (b.h[a * k + c] == s) b.minority[a * k + m++] = static_cast<std::uint8_t>(c);
      b.count.push_back(m);
      b.sign.push_back(s);
    }
    return b;
  };
  static const Base bases[] = {make(1), make(12), make(20), make(28)};
  // Called on every transform: decide with a few integer tests, no search.
  const auto pow2 = [](std::size_t l) { return l >= 1 && (l & (l - 1)) == 0; };
  if (n >= 2 && n <= kMaxN) {
    for (const Base& b : bases)
      if (n % b.k == 0 && pow2(n / b.k)) return Plan{n, b.k, n / b.k, &b};
  }
  check_hadamard_size(n);  // throws with the nearest supported sizes
  throw std::logic_error("hadamard: supported size " + std::to_string(n) + " has no plan");
}

}  // namespace hadamard_detail
}  // namespace whtlm
