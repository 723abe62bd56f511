#!/usr/bin/env bash
# The build's include check (cmake/check_layers.cmake) against this build's own layer
# declarations: every layer's files pass as they are, and a file of a layer that
# includes a header of a layer above it, or beside it, is refused with the file, the
# include and its layer named. Usage: layer_check_test.sh CMAKE SOURCE_DIR LAYERS_DIR
set -uo pipefail
cmake_bin="$1" root="$2" layers="$3"
source "$(dirname "$0")/testlib.sh"
script="$root/cmake/check_layers.cmake"

# A layer's declaration with one more file, written into the temp folder.
with_file() {  # with_file LAYER FILE: prints the path of the new config
  local cfg="$tmp/$1-$(basename "$2").cmake"
  sed "s|^set(STAMP .*|set(STAMP \"$tmp/stamp\")|" "$layers/$1.cmake" >"$cfg"
  echo "list(APPEND FILES \"$2\")" >>"$cfg"
  echo "$cfg"
}
bad() {  # bad LAYER INCLUDE PATTERN: a file of LAYER including INCLUDE is refused
  local file="$tmp/$1_$(echo "$2" | tr '/.' '__').cpp"
  printf '#include <vector>\n#include "%s"\n' "$2" >"$file"
  refused "$1 including $2" "$3" -- "$cmake_bin" -DCONFIG="$(with_file "$1" "$file")" -P "$script"
}
good() {  # good LAYER INCLUDE: a file of LAYER including INCLUDE passes
  local file="$tmp/$1_ok_$(echo "$2" | tr '/.' '__').cpp"
  printf '#include "%s"\n' "$2" >"$file"
  "$cmake_bin" -DCONFIG="$(with_file "$1" "$file")" -P "$script" >"$tmp/out" 2>&1
  check "$1 may include $2 ($(head -c 300 "$tmp/out"))" $?
}

# The tree as it is passes, layer by layer.
for cfg in "$layers"/*.cmake; do
  name=$(basename "$cfg" .cmake)
  sed "s|^set(STAMP .*|set(STAMP \"$tmp/stamp\")|" "$cfg" >"$tmp/as-is.cmake"
  "$cmake_bin" -DCONFIG="$tmp/as-is.cmake" -P "$script" >"$tmp/out" 2>&1
  check "layer $name as it is ($(head -c 300 "$tmp/out"))" $?
done

# Upward and sideways includes are refused, naming the file's layer and the header's.
bad backend_cpu whtlm/transformer.hpp "is layer 'model'"
bad backend_cpu whtlm/model.hpp "is layer 'model'"
bad backend_api whtlm/model.hpp "layer 'backend_api' includes a layer it does not build on"
bad backend_cpu backend/cuda/kernels.hpp "is layer 'backend_cuda'"
bad hadamard backend/backend.hpp "is layer 'backend_api'"
bad model infer/whatever.hpp "is layer 'infer'"
bad model whtlm/train.hpp "is layer 'train'"
bad train whtlm/perf.hpp "is layer 'perf'"
bad data whtlm/transformer.hpp "is layer 'model'"
bad base whtlm/io.hpp "is layer 'io'"
bad report whtlm/experiment.hpp "is layer 'experiment'"
# Downward includes, and headers of no layer (the standard library's), pass.
good model backend/backend.hpp
good train whtlm/model.hpp
good experiment whtlm/report.hpp
good backend_cpu base/parallel.hpp
good base vector

finish
