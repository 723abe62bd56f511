// The CPU implementation of the Backend interface (src/backend/backend.hpp).
#pragma once

#include "backend/backend.hpp"

namespace whtlm::backend::cpu {

Backend& backend();

}  // namespace whtlm::backend::cpu
