// Memory planned before it is allocated: a run, a model or an inference session adds
// up what it will hold and is refused, naming each part, what is available and what
// would fit, before any of it is allocated (ARCHITECTURE: memory is planned, not
// discovered). Sizes are doubles so that absurd shapes cannot overflow the sum.
#pragma once

#include <string>
#include <vector>

#include "backend/backend.hpp"

namespace whtlm::model {

struct MemoryPart {
  std::string what;  // "weights", "AdamW moments", ...
  double bytes = 0;
};

// Throws std::runtime_error
//   "<title> needs 9.31 GiB (weights 1.20 GiB, ...), more than the 3.10 GiB of memory
//    available on cpu; <hint>"
// when the parts together exceed be.memory_available(). `hint` says what would fit.
void require_memory(const backend::Backend& be, const std::string& title,
                    const std::vector<MemoryPart>& parts, const std::string& hint = "");

// The sum of the parts, and whether they fit (for callers that look for what fits).
double total_bytes(const std::vector<MemoryPart>& parts);
bool fits(const backend::Backend& be, double bytes);

// "1.20 GiB", "340.0 MiB", "12 KiB".
std::string size_text(double bytes);

}  // namespace whtlm::model
