// whtlm's side of the interop parity tests: for a checkpoint and prompt token ids, the
// next-token distribution at every prompt position and N greedily generated tokens,
// from the fp32 training forward pass (no KV cache), as one JSON object
//   {"probs": [[p(token 0), ...], ...], "greedy": [...]}
//   interop_probe CHECKPOINT IDS(comma-separated) N
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <sstream>
#include <string>
#include <vector>

#include "whtlm/checkpoint.hpp"
#include "whtlm/transformer.hpp"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: interop_probe CHECKPOINT IDS N\n");
    return 2;
  }
  try {
    using namespace whtlm;
    auto model = load_model(argv[1]);
    std::vector<std::int32_t> ids;
    std::stringstream ss(argv[2]);
    for (std::string t; std::getline(ss, t, ',');) ids.push_back(std::stoi(t));
    const int n = std::stoi(argv[3]);
    const int V = model->config().vocab_size;
    auto distribution = [&](const float* logits) {
      double m = -INFINITY;
      for (int v = 0; v < V; ++v) m = std::max(m, double(logits[v]));
      std::vector<double> p(logits, logits + V);
      double sum = 0;
      for (double& x : p) sum += (x = std::exp(x - m));
      for (double& x : p) x /= sum;
      return p;
    };
    const int prompt = static_cast<int>(ids.size());
    model->forward(ids.data(), nullptr, 1, prompt);
    std::string out = "{\"probs\": [";
    for (int t = 0; t < prompt; ++t) {
      const std::vector<double> p = distribution(model->logits().data() + std::size_t(t) * V);
      out += t ? ",[" : "[";
      for (int v = 0; v < V; ++v) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%s%.9g", v ? "," : "", p[std::size_t(v)]);
        out += buf;
      }
      out += "]";
    }
    out += "], \"greedy\": [";
    for (int g = 0; g < n; ++g) {
      model->forward(ids.data(), nullptr, 1, static_cast<int>(ids.size()));
      const float* last = model->logits().data() + (ids.size() - 1) * std::size_t(V);
      const int next = static_cast<int>(std::max_element(last, last + V) - last);
      ids.push_back(next);
      if (g > 0) out += ',';
      out += std::to_string(next);
    }
    out += "]}";
    std::printf("%s\n", out.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "interop_probe: %s\n", e.what());
    return 1;
  }
  return 0;
}
