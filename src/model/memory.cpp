// Planned memory, checked against what the device can give (model/memory.hpp).
#include "model/memory.hpp"

#include <cstdio>
#include <stdexcept>

namespace whtlm::model {

std::string size_text(double bytes) {
  char buf[48];
  const double tib = 1024.0 * 1024 * 1024 * 1024;
  if (bytes >= 1024 * tib)
    std::snprintf(buf, sizeof buf, "%.3g PiB", bytes / (1024 * tib));
  else if (bytes >= tib)
    std::snprintf(buf, sizeof buf, "%.2f TiB", bytes / tib);
  else if (bytes >= 1024.0 * 1024 * 1024)
    std::snprintf(buf, sizeof buf, "%.2f GiB", bytes / (1024.0 * 1024 * 1024));
  else if (bytes >= 1024.0 * 1024)
    std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / (1024.0 * 1024));
  else
    std::snprintf(buf, sizeof buf, "%.0f KiB", bytes / 1024.0);
  return buf;
}

double total_bytes(const std::vector<MemoryPart>& parts) {
  double total = 0;
  for (const MemoryPart& p : parts) total += p.bytes;
  return total;
}

bool fits(const backend::Backend& be, double bytes) {
  return bytes <= static_cast<double>(be.memory_available());
}

void require_memory(const backend::Backend& be, const std::string& title,
                    const std::vector<MemoryPart>& parts, const std::string& hint) {
  const double total = total_bytes(parts);
  const double room = static_cast<double>(be.memory_available());
  if (total <= room) return;
  std::string list;
  for (const MemoryPart& p : parts)
    if (p.bytes > 0) list += (list.empty() ? "" : ", ") + p.what + " " + size_text(p.bytes);
  throw std::runtime_error(title + " needs " + size_text(total) + " of memory (" + list +
                           "), more than the " + size_text(room) + " available on " +
                           device_name(be.device()) + (hint.empty() ? "" : "; " + hint));
}

}  // namespace whtlm::model
