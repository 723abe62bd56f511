#!/usr/bin/env bash
# Whole model against PyTorch: for both families and all three output projections,
# model_dump writes random weights, our logits and our gradients; an independent
# PyTorch implementation (tests/reference) recomputes them in float64 and the test
# fails unless logits agree to 1e-5 and every gradient to 1e-4 (relative to the
# tensor's largest entry). d = 48 = 12 * 4 checks a non-power-of-two Hadamard size.
# Usage: torch_compare.sh PATH/TO/model_dump
set -uo pipefail
dump="$1"
here="$(cd "$(dirname "$0")" && pwd)"
python=/usr/bin/python3
if ! "$python" -c "import torch, numpy" 2>/dev/null; then
  echo "FAIL: Debian's python3-torch and python3-numpy are needed (scripts/install-deps)"
  exit 1
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
failures=0
for family in llama gpt2; do
  for proj in dense wht identity; do
    for d in 64 48; do
      [ "$d" = 48 ] && [ "$proj" != wht ] && continue
      dir="$tmp/$family-$proj-$d"
      if ! "$dump" "$family" "$proj" "$d" "$dir" >"$tmp/log" 2>&1; then
        echo "FAIL: model_dump $family $proj $d"; cat "$tmp/log"; failures=$((failures + 1))
        continue
      fi
      if "$python" "$here/reference/compare_with_torch.py" "$dir" "$dir/case.safetensors" \
          >"$tmp/cmp" 2>&1; then
        echo "ok: $family $proj d=$d ($(grep -c . "$tmp/cmp") tensors compared)"
      else
        echo "FAIL: $family $proj d=$d"; cat "$tmp/cmp"; failures=$((failures + 1))
      fi
    done
  done
done
[ "$failures" -eq 0 ]
