#!/usr/bin/env bash
# whtlm's GGUF export run by real llama.cpp (node-llama-cpp 3.21.1's prebuilt CPU build,
# installed by scripts/install-deps; tests/reference/llamacpp_run.mjs drives it).
# Small models are trained here (llama with grouped-query attention and gpt2; dense,
# wht, identity; the byte tokenizer and a trained BPE), exported as F32 and Q8_0, and
# llama.cpp's results are compared with whtlm's own fp32 forward (tests/interop_probe):
#  - F32: greedy continuations equal token for token; next-token probabilities at every
#    prompt position within 1e-5 (llama) and 2e-3 (gpt2: llama.cpp's GELU goes through
#    an fp16 table) with an F32 KV cache and no flash attention, and within 1e-2 with
#    llama.cpp's defaults (F16 KV cache; flash attention, which rounds to fp16 on the CPU);
#  - Q8_0: next-token probabilities within 5e-2 (llama.cpp quantizes the activations
#    too); the greedy tokens that agree are counted, not required;
#  - the same text tokenizes to the same ids in both.
# WHTLM_PARITY_TABLE=FILE also writes the table as Markdown.
# Usage: interop_llamacpp_test.sh PATH/TO/whtlm PATH/TO/interop_probe
set -uo pipefail
whtlm="$1"
probe="$2"
here="$(cd "$(dirname "$0")" && pwd)"
py=/usr/bin/python3
source "$here/testlib.sh"

export WHTLM_NPM_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/whtlm/npm"
if ! command -v node >/dev/null || [ ! -d "$WHTLM_NPM_DIR/node_modules/node-llama-cpp" ] ||
  [ ! -d "$WHTLM_NPM_DIR/node_modules/@node-llama-cpp/linux-x64" ]; then
  echo "FAIL: node-llama-cpp and @node-llama-cpp/linux-x64 are missing under $WHTLM_NPM_DIR;" \
    "install them with scripts/install-deps"
  exit 1
fi

text="In the beginning God created the heaven and the earth. Hi, wörld!"
"$whtlm" tokenizer train --vocab 320 --out "$tmp/bpe.json" --quiet >/dev/null 2>&1
check "a BPE tokenizer trains" $?

table="$tmp/table.md"
echo "| model | tokenizer | type | tokens equal | greedy equal | max abs dp (F32 KV, no flash attn) | max abs dp (llama.cpp defaults) |" >"$table"
echo "|---|---|---|---|---|---|---|" >>"$table"

run_case() {  # run_case FAMILY PROJ TOKENIZER
  local family="$1" proj="$2" tokname="$3" run="$tmp/$1-$2-$3"
  local shape=(--preset tiny --kv-heads 2)
  [ "$family" = gpt2 ] && shape=(--preset tiny-gpt2)
  local tokopt=()
  [ "$tokname" = bpe ] && tokopt=(--tokenizer "$tmp/bpe.json")
  if ! "$whtlm" train "${shape[@]}" --d-model 64 --layers 2 --heads 4 --proj "$proj" \
    "${tokopt[@]}" --seq 64 --batch 8 --steps 80 --lr 3e-3 --eval-every 0 --quiet \
    --out "$run" >"$tmp/log" 2>&1; then
    echo "FAIL: training $family $proj $tokname"; cat "$tmp/log"; failures=$((failures + 1)); return
  fi
  local ids
  ids="$("$whtlm" tokenizer encode --tokenizer "${tokopt[1]:-byte}" <<<"$text" | tr ' ' ',' | sed 's/,*$//')"
  "$whtlm" tokenizer encode --tokenizer "${tokopt[1]:-byte}" --json <<<"$text" >"$tmp/whtlm_tokens.json"
  "$probe" "$run" "$ids" 16 >"$tmp/whtlm.json" 2>"$tmp/log" || {
    echo "FAIL: interop_probe $family $proj $tokname"; cat "$tmp/log"; failures=$((failures + 1)); return
  }
  for type in f32 q8_0; do
    local gguf="$run.$type.gguf" name="$family $proj $tokname $type"
    if ! "$whtlm" export "$run" --to gguf --type "$type" --out "$gguf" >"$tmp/log" 2>&1; then
      echo "FAIL: export $name"; cat "$tmp/log"; failures=$((failures + 1)); continue
    fi
    for mode in exact default; do
      if ! node "$here/reference/llamacpp_run.mjs" "$gguf" "$ids" 16 "$text"$'\n' "$mode" \
        >"$tmp/llama_$mode.json" 2>"$tmp/log"; then
        echo "FAIL: llama.cpp $name ($mode)"; cat "$tmp/log"; failures=$((failures + 1)); continue 2
      fi
    done
    "$py" - "$tmp/whtlm.json" "$tmp/llama_exact.json" "$tmp/llama_default.json" \
      "$tmp/whtlm_tokens.json" "$type" "$family $proj" "$tokname" "$table" <<'PY'
import json, sys
ours, l32, l16, toks, typ, model, tokname, table = sys.argv[1:]
ours, l32, l16 = (json.load(open(p)) for p in (ours, l32, l16))
toks = json.load(open(toks))
def maxdiff(a, b):
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))
d32, d16 = maxdiff(ours["probs"], l32["probs"]), maxdiff(ours["probs"], l16["probs"])
same_tokens = toks == l32["tokens"]
g_equal = sum(1 for a, b in zip(ours["greedy"], l32["greedy"]) if a == b)
n = len(ours["greedy"])
fails = []
if not same_tokens:
    fails.append(f"tokenization differs: whtlm {toks[:20]} llama.cpp {l32['tokens'][:20]}")
if len(ours["probs"]) != len(l32["probs"]) or len(ours["probs"][0]) != len(l32["probs"][0]):
    fails.append("distribution shapes differ")
if typ == "f32":
    if ours["greedy"] != l32["greedy"]:
        fails.append(f"greedy differs: whtlm {ours['greedy']} llama.cpp {l32['greedy']}")
    bound = 1e-5 if model.startswith("llama") else 2e-3
    if d32 > bound: fails.append(f"max |dp| {d32:.2e} > {bound:g} (F32 KV, no flash attention)")
    if d16 > 1e-2: fails.append(f"max |dp| {d16:.2e} > 1e-2 (llama.cpp's defaults)")
else:
    if d32 > 5e-2 or d16 > 5e-2: fails.append(f"max |dp| {max(d32, d16):.2e} > 5e-2")
with open(table, "a") as f:
    f.write(f"| {model} | {tokname} | {typ.upper()} | {'yes' if same_tokens else 'NO'} | "
            f"{g_equal}/{n} | {d32:.1e} | {d16:.1e} |\n")
for m in fails:
    print(f"FAIL: {model} {tokname} {typ}: {m}")
sys.exit(1 if fails else 0)
PY
    check "$name matches llama.cpp" $?
  done
}

for family in llama gpt2; do
  for proj in dense wht identity; do run_case "$family" "$proj" byte; done
  run_case "$family" wht bpe
done

# Refusals: keep-wht and a missing tokenizer cannot go to GGUF; an existing file needs --force.
refused "--keep-wht is hf only" "keep-wht" -- "$whtlm" export "$tmp/llama-wht-byte" --to gguf --keep-wht --out "$tmp/x.gguf"
refused "existing --out" "exists" -- "$whtlm" export "$tmp/llama-wht-byte" --to gguf --out "$tmp/llama-wht-byte.f32.gguf"
refused "hf takes no q8_0" "q8_0" -- "$whtlm" export "$tmp/llama-wht-byte" --to hf --type q8_0 --out "$tmp/hfq"

cat "$table"
[ -n "${WHTLM_PARITY_TABLE:-}" ] && cp "$table" "$WHTLM_PARITY_TABLE"
finish
