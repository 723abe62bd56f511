#!/usr/bin/env bash
# Training on BPE tokens through the command line:
#  - `whtlm data prepare` writes train/val shards, tokenizer.json and a summary, with
#    clear refusals for a used folder and a missing tokenizer;
#  - `whtlm train` on the prepared folder takes the tokenizer's vocabulary and its
#    checkpoints carry the tokenizer; on text with --tokenizer it does the same;
#  - `whtlm eval` reports bits per byte from the tokens' byte lengths, and
#    `whtlm generate` encodes and decodes text with the checkpoint's tokenizer.
# Usage: tokenized_training_test.sh PATH/TO/whtlm
set -uo pipefail
whtlm="$1"
py=/usr/bin/python3
source "$(dirname "$0")/testlib.sh"

"$whtlm" data prepare --help >/dev/null 2>&1; check "data prepare --help" $?

$py -c "
import random
r = random.Random(3)
words = 'and the lord said unto moses behold i will make thee a great nation'.split()
print('\n'.join(' '.join(r.choice(words) for _ in range(10)) for _ in range(8000)))
" >"$tmp/corpus.txt"
"$whtlm" tokenizer train --vocab 300 --data "$tmp/corpus.txt" --out "$tmp/tok.json" --quiet
check "tokenizer train" $?

"$whtlm" data prepare --tokenizer "$tmp/tok.json" --data "$tmp/corpus.txt" --out "$tmp/prep" \
  --chunk-tokens 2048 >"$tmp/prep.out" 2>"$tmp/prep.err"
check "data prepare" $?
for f in train_000000.bin val_000000.bin tokenizer.json prepare.json; do
  [ -s "$tmp/prep/$f" ]; check "prepared folder has $f" $?
done
grep -q "bytes per token" "$tmp/prep.out"; check "summary names bytes per token" $?
grep -q "100%" "$tmp/prep.err"; check "progress reaches 100%" $?
$py - "$tmp/prep/prepare.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
assert s["vocab_size"] == 300 and s["documents"] == 1, s
assert s["train_tokens"] + s["val_tokens"] == s["tokens"] and s["bytes"] > 2 * s["tokens"], s
PY
check "prepare.json: vocabulary, documents, tokens add up, more than 2 bytes per token" $?

refused "prepare into a used folder" "not empty" -- \
  "$whtlm" data prepare --tokenizer "$tmp/tok.json" --data "$tmp/corpus.txt" --out "$tmp/prep"
refused "prepare with a missing tokenizer names it" "nope.json" -- \
  "$whtlm" data prepare --tokenizer "$tmp/nope.json" --data "$tmp/corpus.txt" --out "$tmp/p2"

# A vocabulary beyond uint16 ids (65536) is refused before anything is written.
$py - "$tmp/big.json" <<'PY'
import json, sys
# GPT-2's byte-to-unicode map, then 256 byte tokens + 65281 two-byte tokens, each a merge.
keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
m, extra = {}, 0
for b in range(256):
    if b in keep:
        m[b] = chr(b)
    else:
        m[b] = chr(256 + extra)
        extra += 1
vocab = {m[b]: b for b in range(256)}
merges = []
for i in range(65281):
    a, b = divmod(i, 256)
    vocab[m[a] + m[b]] = 256 + i
    merges.append(m[a] + " " + m[b])
json.dump({"version": "1.0", "added_tokens": [], "normalizer": None,
           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                             "use_regex": True},
           "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                       "use_regex": True},
           "model": {"type": "BPE", "vocab": vocab, "merges": merges}}, open(sys.argv[1], "w"))
PY
refused "a vocabulary beyond uint16 is refused" "do not fit the uint16" -- \
  "$whtlm" data prepare --tokenizer "$tmp/big.json" --data "$tmp/corpus.txt" --out "$tmp/p3"
[ ! -e "$tmp/p3" ]; check "nothing written for a refused vocabulary" $?

small=(--layers 1 --d-model 64 --heads 2 --seq 32 --batch 4 --steps 30 --eval-every 15 --quiet)
"$whtlm" train "${small[@]}" --data "$tmp/prep" --out "$tmp/run" 2>"$tmp/train.err"
check "train on prepared shards" $?
$py -c "import json, sys; assert json.load(open(sys.argv[1]))['vocab_size'] == 300" \
  "$tmp/run/config.json"
check "the model takes the tokenizer's vocabulary" $?
[ -s "$tmp/run/tokenizer.json" ]; check "the checkpoint carries tokenizer.json" $?
echo "and the lord said unto moses" | "$whtlm" tokenizer encode --tokenizer "$tmp/tok.json" >"$tmp/a"
echo "and the lord said unto moses" | "$whtlm" tokenizer encode --tokenizer "$tmp/run/tokenizer.json" >"$tmp/b"
cmp -s "$tmp/a" "$tmp/b" && [ -s "$tmp/a" ]; check "the carried tokenizer encodes as the original" $?

"$whtlm" eval --checkpoint "$tmp/run" --data "$tmp/prep" --json >"$tmp/eval.json"
check "eval on the prepared shards" $?
$py - "$tmp/eval.json" <<'PY'
import json, math, sys
e = json.load(open(sys.argv[1]))
assert e["bytes"] > 2 * e["tokens"], e
want = e["loss"] * e["tokens"] / e["bytes"] / math.log(2)
assert abs(e["bits_per_byte"] - want) < 1e-9 * want, e
PY
check "bits per byte = loss x tokens / bytes / ln 2, over more than 2 bytes per token" $?

"$whtlm" generate --checkpoint "$tmp/run" --prompt "and the" --max-new-tokens 8 --json \
  >"$tmp/gen.json" 2>/dev/null
check "generate with the checkpoint's tokenizer" $?
$py -c "
import json, sys
g = json.loads(open(sys.argv[1]).readline())
assert g['prompt'] == 'and the' and len(g['tokens']) == 8 and isinstance(g['text'], str), g
" "$tmp/gen.json"
check "generate returns 8 tokens and their text" $?

"$whtlm" train "${small[@]}" --data "$tmp/corpus.txt" --tokenizer "$tmp/tok.json" \
  --chunk-tokens 2048 --out "$tmp/run2" 2>/dev/null
check "train on text with --tokenizer" $?
$py -c "import json, sys; assert json.load(open(sys.argv[1]))['vocab_size'] == 300" \
  "$tmp/run2/config.json"
check "text run takes the tokenizer's vocabulary" $?
"$whtlm" train --resume "$tmp/run2" --quiet 2>/dev/null; check "resume of a tokenized run" $?
refused "a vocabulary smaller than the tokenizer's is refused" "more than the model" -- \
  "$whtlm" train "${small[@]}" --data "$tmp/corpus.txt" --tokenizer "$tmp/tok.json" --vocab 290 \
  --out "$tmp/run3"

finish
