#!/usr/bin/env bash
# whtlm's Hugging Face export against the independent PyTorch reference, and back:
#  - for both families and all three projections, tests/model_dump writes a random model
#    (vocabulary 256: the byte tokenizer) and whtlm's logits; `whtlm export --to hf` folds the projection into a plain dense
#    layout (llama: attention_bias with zero q/k/v biases carries beta), and
#    tests/reference/check_hf_export.py runs those files as a dense model in float64:
#    logits within 1e-5 of whtlm's (relative to the largest), also when sharded;
#  - export -> import gives back every tensor bit for bit (F32): dense and --keep-wht
#    exactly, a folded wht within 2e-6 relative (gamma is refitted from W_O);
#  - q8_0 and bad input are refused with a message naming the option.
# Usage: interop_hf_test.sh PATH/TO/whtlm PATH/TO/model_dump
set -uo pipefail
whtlm="$1"
dump="$2"
here="$(cd "$(dirname "$0")" && pwd)"
py=/usr/bin/python3
source "$here/testlib.sh"
if ! "$py" -c "import torch, numpy" 2>/dev/null; then
  echo "FAIL: Debian's python3-torch and python3-numpy are needed (scripts/install-deps)"
  exit 1
fi

same_weights() {  # same_weights A/model.safetensors B/model.safetensors RTOL
  "$py" - "$@" <<'PY'
import sys, os, numpy as np
sys.path.insert(0, os.environ["REF"])
import torch_model as tm
a, b, rtol = tm.load_safetensors(sys.argv[1]), tm.load_safetensors(sys.argv[2]), float(sys.argv[3])
if set(a) != set(b):
    print("tensors differ:", sorted(set(a) ^ set(b))); sys.exit(1)
for k in a:
    x, y = np.asarray(a[k]), np.asarray(b[k])
    if x.shape != y.shape: print(k, "shape", x.shape, y.shape); sys.exit(1)
    if rtol == 0:
        if x.tobytes() != y.tobytes(): print(k, "not bit-identical"); sys.exit(1)
    else:
        e = float(np.max(np.abs(x - y)) / max(np.max(np.abs(x)), 1e-30))
        if e > rtol: print(k, "relative error", e); sys.exit(1)
PY
}
export REF="$here/reference"

for family in llama gpt2; do
  for proj in dense wht identity; do
    src="$tmp/$family-$proj"
    if ! "$dump" "$family" "$proj" 64 "$src" 256 >"$tmp/log" 2>&1; then
      echo "FAIL: model_dump $family $proj"; cat "$tmp/log"; failures=$((failures + 1)); continue
    fi
    "$whtlm" export "$src" --to hf --out "$tmp/hf-$family-$proj" >/dev/null 2>"$tmp/log"
    check "export $family $proj" $?
    "$py" "$here/reference/check_hf_export.py" "$tmp/hf-$family-$proj" "$src/case.safetensors"
    check "$family $proj: exported logits in PyTorch" $?
    "$whtlm" export "$src" --to hf --max-shard-gib 0.00002 --out "$tmp/hfs-$family-$proj" >/dev/null 2>&1
    [ -f "$tmp/hfs-$family-$proj/model.safetensors.index.json" ] &&
      [ "$(ls "$tmp/hfs-$family-$proj" | grep -c '^model-.*-of-.*\.safetensors$')" -gt 1 ]
    check "$family $proj: sharded export has an index and several shards" $?
    "$py" "$here/reference/check_hf_export.py" "$tmp/hfs-$family-$proj" "$src/case.safetensors"
    check "$family $proj: sharded logits in PyTorch" $?
    # Round trips.
    "$whtlm" import "$tmp/hfs-$family-$proj" --out "$tmp/back-$family-$proj" >/dev/null 2>"$tmp/log"
    rc=$?
    check "import $family $proj (sharded)" $rc
    [ $rc -eq 0 ] || cat "$tmp/log"
    rtol=0
    [ "$proj" = wht ] && rtol=2e-6
    same_weights "$src/model.safetensors" "$tmp/back-$family-$proj/model.safetensors" "$rtol"
    check "$family $proj: export -> import gives the weights back (rtol $rtol)" $?
    if [ "$proj" = wht ]; then
      "$whtlm" export "$src" --to hf --keep-wht --out "$tmp/keep-$family" >/dev/null 2>&1 &&
        "$whtlm" import "$tmp/keep-$family" --out "$tmp/keepback-$family" >/dev/null 2>"$tmp/log"
      check "$family --keep-wht export and import" $?
      same_weights "$src/model.safetensors" "$tmp/keepback-$family/model.safetensors" 0
      check "$family --keep-wht round trip is bit-identical" $?
    fi
  done
done

refused "hf takes no q8_0" "q8_0" -- "$whtlm" export "$tmp/llama-wht" --to hf --type q8_0 --out "$tmp/q"
refused "an existing folder needs --force" "force" -- "$whtlm" export "$tmp/llama-wht" --to hf --out "$tmp/hf-llama-wht"
refused "a missing checkpoint" "config.json" -- "$whtlm" export "$tmp/nowhere" --to hf --out "$tmp/n"
"$dump" llama wht 64 "$tmp/v61" >/dev/null 2>&1
refused "gguf needs a tokenizer for vocabulary 61" "tokenizer" -- "$whtlm" export "$tmp/v61" --to gguf --out "$tmp/n.gguf"
finish
