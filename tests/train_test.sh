#!/usr/bin/env bash
# Training, evaluation, checkpoints and resume through the `whtlm` command line:
#  - a short run on the built-in corpus brings validation loss well below ln(256);
#  - metrics.jsonl has one complete record per step, validation at intervals;
#  - stopping mid-run (cleanly, or by SIGKILL between checkpoints) and resuming
#    gives bit-identical weights and optimizer state to an uninterrupted run;
#  - bad input is refused with a message naming the file or field, nothing left behind.
# Usage: train_test.sh PATH/TO/whtlm
set -uo pipefail
whtlm="$1"
py=/usr/bin/python3
source "$(dirname "$0")/testlib.sh"

small=(--layers 2 --d-model 64 --heads 2 --seq 64 --batch 8 --quiet)

for cmd in train eval; do
  "$whtlm" "$cmd" --help >/dev/null 2>&1; check "$cmd --help" $?
done

# A short run on the built-in corpus.
"$whtlm" train "${small[@]}" --steps 60 --lr 3e-3 --eval-every 30 --out "$tmp/run" 2>"$tmp/log"
check "short training run" $?
for f in model.safetensors config.json optimizer.safetensors train_state.json metrics.jsonl; do
  [ -s "$tmp/run/$f" ]; check "run folder has $f" $?
done
ls "$tmp/run" | grep -q tmp; [ $? -ne 0 ]; check "no temporary files left in the run folder" $?
$py - "$tmp/run/metrics.jsonl" <<'PY'
import json, math, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert [r["step"] for r in recs] == list(range(1, 61)), "one record per step"
keys = {"step", "tokens", "flops", "train_loss", "lr", "grad_norm", "tokens_per_s", "elapsed_s",
        "peak_rss_bytes"}
for r in recs:
    assert keys <= r.keys(), f"missing {keys - r.keys()}"
val = {r["step"]: r["val_loss"] for r in recs if "val_loss" in r}
assert sorted(val) == [30, 60], f"validation at 30 and 60, got {sorted(val)}"
assert val[60] < 0.5 * math.log(256), f"validation loss {val[60]} not well below ln 256"
assert recs[-1]["flops"] > recs[0]["flops"] > 0 and recs[-1]["tokens"] == 60 * 8 * 64
PY
check "metrics.jsonl complete and validation loss well below ln(256)" $?

# eval on the checkpoint: JSON with loss, perplexity and bits per byte.
"$whtlm" eval --checkpoint "$tmp/run" --seq 64 --max-windows 16 --json >"$tmp/eval.json" 2>"$tmp/err"
check "eval runs" $?
$py -c "
import json, math, sys
j = json.load(open('$tmp/eval.json'))
assert abs(j['perplexity'] - math.exp(j['loss'])) < 1e-9 * j['perplexity']
assert abs(j['bits_per_byte'] - j['loss'] / math.log(2)) < 1e-12
assert j['loss'] < 0.5 * math.log(256) and j['tokens'] == 16 * 64
" ; check "eval JSON: loss, perplexity, bits per byte" $?

# Resume after a clean stop equals the uninterrupted run, bit for bit.
args=("${small[@]}" --steps 12 --eval-every 4 --save-every 5)
"$whtlm" train "${args[@]}" --out "$tmp/a" 2>/dev/null; check "uninterrupted run" $?
"$whtlm" train "${args[@]}" --out "$tmp/b" --stop-after 7 2>/dev/null; check "stop after 7" $?
"$whtlm" train --resume "$tmp/b" --quiet 2>/dev/null; check "resume" $?
cmp -s "$tmp/a/model.safetensors" "$tmp/b/model.safetensors"; check "resumed weights identical" $?
cmp -s "$tmp/a/optimizer.safetensors" "$tmp/b/optimizer.safetensors"
check "resumed optimizer state identical" $?
$py - "$tmp/a/metrics.jsonl" "$tmp/b/metrics.jsonl" <<'PY'
import json, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:])
assert [r["step"] for r in b] == list(range(1, 13)), "no duplicated or missing steps"
for x, y in zip(a, b):
    assert x["train_loss"] == y["train_loss"] and x.get("val_loss") == y.get("val_loss")
PY
check "resumed metrics match the uninterrupted run" $?

# SIGKILL between checkpoints, then resume from the last one.
long=("${small[@]}" --steps 40 --eval-every 0 --save-every 3)
"$whtlm" train "${long[@]}" --out "$tmp/k0" 2>/dev/null; check "uninterrupted long run" $?
"$whtlm" train "${long[@]}" --out "$tmp/k" 2>/dev/null &
pid=$!
for _ in $(seq 1 400); do
  [ -f "$tmp/k/train_state.json" ] && break
  sleep 0.02
done
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
killed_at=$($py -c "import json; print(json.load(open('$tmp/k/train_state.json'))['step'])")
"$whtlm" train --resume "$tmp/k" --quiet 2>"$tmp/err"; check "resume after SIGKILL (at step $killed_at)" $?
cmp -s "$tmp/k0/model.safetensors" "$tmp/k/model.safetensors"
check "weights after SIGKILL + resume identical to the uninterrupted run" $?

# Bad input.
refused "existing run folder" "already holds a run" -- "$whtlm" train "${small[@]}" --steps 2 --out "$tmp/run"
refused "wht with an unsupported width names --d-model" "--d-model" -- \
  "$whtlm" train --proj wht --d-model 100 --heads 2 --steps 2 --out "$tmp/x1"
[ ! -e "$tmp/x1" ]; check "nothing created for a refused run" $?
refused "unknown preset" "unknown preset 'huge'" -- "$whtlm" train --preset huge --steps 1 --out "$tmp/x2"
refused "missing length" "--steps" -- "$whtlm" train "${small[@]}" --out "$tmp/x3"
refused "eval of a missing checkpoint" "$tmp/none/config.json" -- "$whtlm" eval --checkpoint "$tmp/none"

cp -r "$tmp/run" "$tmp/trunc"
head -c 5000 "$tmp/run/model.safetensors" >"$tmp/trunc/model.safetensors"
refused "truncated safetensors" "model.safetensors: truncated" -- "$whtlm" eval --checkpoint "$tmp/trunc"
cp -r "$tmp/run" "$tmp/nofield"
$py -c "
import json; p = '$tmp/nofield/config.json'; c = json.load(open(p)); del c['hidden_size']
json.dump(c, open(p, 'w'))"
refused "config.json missing field" 'field "hidden_size": missing' -- "$whtlm" eval --checkpoint "$tmp/nofield"
cp -r "$tmp/run" "$tmp/badproj"
sed -i 's/"attn_output_projection": "dense"/"attn_output_projection": "wht"/' "$tmp/badproj/config.json"
refused "dense weights under a wht config" "o_proj.weight' does not belong" -- \
  "$whtlm" eval --checkpoint "$tmp/badproj"
cp -r "$tmp/run" "$tmp/badval"
sed -i 's/"attn_output_projection": "dense"/"attn_output_projection": "sparse"/' "$tmp/badval/config.json"
refused "unknown projection in config.json" 'field "attn_output_projection"' -- \
  "$whtlm" eval --checkpoint "$tmp/badval"
cp -r "$tmp/run" "$tmp/shape"
sed -i 's/"vocab_size": 256/"vocab_size": 300/' "$tmp/shape/config.json"
refused "tensor of the wrong shape" "expected F32 \[300, 64\], found F32 \[256, 64\]" -- \
  "$whtlm" eval --checkpoint "$tmp/shape"

# llm.c shards: a corrupt header and out-of-vocabulary tokens are refused.
$py - "$tmp" <<'PY'
import struct, sys
d = sys.argv[1]
def shard(path, magic, tokens):
    with open(path, "wb") as f:
        f.write(struct.pack("<256i", magic, 1, len(tokens), *([0] * 253)))
        f.write(struct.pack(f"<{len(tokens)}H", *tokens))
shard(f"{d}/bad.bin", 12345, [1, 2, 3])
shard(f"{d}/oov.bin", 20240520, [5] * 70000 + [300] + [5] * 100)
PY
refused "corrupt shard header" "bad.bin: bad magic 12345" -- \
  "$whtlm" train "${small[@]}" --steps 1 --data "$tmp/bad.bin" --out "$tmp/x4"
refused "token outside the vocabulary" "300" -- \
  "$whtlm" train "${small[@]}" --steps 1 --data "$tmp/oov.bin" --val-fraction 0.5 --chunk-tokens 1000 --out "$tmp/x5"

finish
