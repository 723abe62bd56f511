#include "whtlm/device_type.hpp"

#include <stdexcept>
#include <string>

namespace whtlm {

const char* device_name(Device d) { return d == Device::cuda ? "cuda" : "cpu"; }

Device parse_device(std::string_view name) {
  for (Device d : {Device::cpu, Device::cuda})
    if (name == device_name(d)) return d;
  throw std::invalid_argument("unknown device '" + std::string(name) + "' (expected cpu or cuda)");
}

const char* precision_name(Precision p) { return p == Precision::bf16 ? "bf16" : "fp32"; }

Precision parse_precision(std::string_view name) {
  for (Precision p : {Precision::fp32, Precision::bf16})
    if (name == precision_name(p)) return p;
  throw std::invalid_argument("unknown precision '" + std::string(name) +
                              "' (expected fp32 or bf16)");
}

const char* weight_format_name(WeightFormat f) {
  switch (f) {
    case WeightFormat::bf16:
      return "bf16";
    case WeightFormat::q8_0:
      return "q8_0";
    default:
      return "f32";
  }
}

WeightFormat parse_weight_format(std::string_view name) {
  for (WeightFormat f : {WeightFormat::f32, WeightFormat::bf16, WeightFormat::q8_0})
    if (name == weight_format_name(f)) return f;
  throw std::invalid_argument("unknown weight format '" + std::string(name) +
                              "' (expected f32, bf16 or q8_0)");
}

}  // namespace whtlm
