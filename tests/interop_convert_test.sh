#!/usr/bin/env bash
# Dense-to-Hadamard conversion and fine-tuning through the `whtlm` command line:
#  - `convert` turns a dense checkpoint into a wht (or identity) one, one line per layer
#    with its relative residual, and the result evaluates;
#  - `train --init` starts a new run from it (model, tokenizer from the checkpoint; a
#    fresh optimizer), and --resume of that run continues from the run's own checkpoint,
#    bit for bit, even after the init checkpoint changed;
#  - bad input is refused with a clear message: a non-dense source, an out folder that
#    holds a checkpoint, model options given with --init.
# Usage: interop_convert_test.sh PATH/TO/whtlm
set -uo pipefail
whtlm="$1"
py=/usr/bin/python3
source "$(dirname "$0")/testlib.sh"

shape=(--layers 2 --d-model 64 --heads 2 --seq 64)
"$whtlm" convert --help >/dev/null 2>&1; check "convert --help" $?
# (grep reads the whole text: grep -q would close the pipe early, and with pipefail the
# writer's SIGPIPE could fail the check)
"$whtlm" train --help 2>/dev/null | grep -c -- "--init" >/dev/null; check "train --help lists --init" $?

for preset in tiny tiny-gpt2; do
  "$whtlm" init --preset "$preset" "${shape[@]}" --seed 3 --out "$tmp/dense-$preset" 2>/dev/null
  check "init a dense $preset" $?
  "$whtlm" convert "$tmp/dense-$preset" --proj wht --out "$tmp/wht-$preset" >"$tmp/out" 2>"$tmp/err"
  check "convert $preset to wht" $?
  [ "$(grep -cE '^ +[01] +[0-9.]+ ' "$tmp/out")" -eq 2 ]; check "$preset: one line per layer" $?
  grep -q "relative residual" "$tmp/out"; check "$preset: the summary names the residual" $?
  grep -q '"attn_output_projection": "wht"' "$tmp/wht-$preset/config.json"
  check "$preset: the converted config is wht" $?
  [ -s "$tmp/wht-$preset/checksums.json" ]; check "$preset: checksums written" $?
  "$whtlm" eval --checkpoint "$tmp/wht-$preset" --seq 64 --max-windows 2 >/dev/null 2>&1
  check "$preset: the converted model evaluates" $?
done
# A freshly initialised W_O is random: its fit leaves about sqrt(1 - 1/64) = 0.992.
$py - "$tmp/out" <<'PY'
import re, sys
rows = [l.split() for l in open(sys.argv[1]) if re.match(r"^ +[01] ", l)]
for r in rows:
    assert abs(float(r[1]) - (1 - 1 / 64) ** 0.5) < 0.02, r
PY
check "a random W_O fits to a residual of about sqrt(1 - 1/d)" $?
"$whtlm" convert "$tmp/dense-tiny" --proj identity --out "$tmp/identity" >/dev/null 2>&1
check "convert to identity" $?
grep -q '"attn_output_projection": "identity"' "$tmp/identity/config.json"
check "the identity config" $?

# Bad input.
refused "a wht source" "attention output projection is wht" -- \
  "$whtlm" convert "$tmp/wht-tiny" --proj identity --out "$tmp/x1"
refused "a wht source names the folder" "$tmp/wht-tiny" -- \
  "$whtlm" convert "$tmp/wht-tiny" --proj identity --out "$tmp/x1"
[ ! -e "$tmp/x1" ]; check "nothing created for a refused conversion" $?
refused "an out folder holding a checkpoint" "already holds" -- \
  "$whtlm" convert "$tmp/dense-tiny" --out "$tmp/wht-tiny"
refused "out is the source" "is the source checkpoint" -- \
  "$whtlm" convert "$tmp/dense-tiny" --out "$tmp/dense-tiny" --force
refused "dense is no target" "--proj" -- \
  "$whtlm" convert "$tmp/dense-tiny" --proj dense --out "$tmp/x2"
refused "a missing checkpoint" "$tmp/none" -- "$whtlm" convert "$tmp/none" --out "$tmp/x3"
refused "--out is required" "--out" -- "$whtlm" convert "$tmp/dense-tiny"
"$whtlm" convert "$tmp/dense-tiny" --out "$tmp/wht-tiny" --force >/dev/null 2>&1
check "--force replaces the checkpoint" $?

# train --init: a new run from the converted weights, 3 steps on the built-in data.
run=(--steps 3 --batch 4 --seq 64 --eval-every 0 --eval-batches 1 --quiet)
"$whtlm" train --init "$tmp/wht-tiny" "${run[@]}" --out "$tmp/ft" 2>"$tmp/err"
check "train --init (stderr: $(head -c 200 "$tmp/err"))" $?
grep -q '"attn_output_projection": "wht"' "$tmp/ft/config.json"; check "the run's model is the checkpoint's" $?
$py - "$tmp/ft/train_state.json" "$tmp/wht-tiny" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
assert s["options"]["init_from"] == sys.argv[2], s["options"].get("init_from")
assert s["step"] == 3
PY
check "train_state.json records init_from" $?
refused "--proj with --init" "--proj cannot be given with --init" -- \
  "$whtlm" train --init "$tmp/wht-tiny" --proj dense "${run[@]}" --out "$tmp/x4"
refused "--preset with --init" "--preset cannot be given with --init" -- \
  "$whtlm" train --init "$tmp/wht-tiny" --preset small "${run[@]}" --out "$tmp/x5"
refused "--init with --resume" "--init cannot be given with --resume" -- \
  "$whtlm" train --resume "$tmp/ft" --init "$tmp/wht-tiny"
refused "a missing init checkpoint" "$tmp/none" -- \
  "$whtlm" train --init "$tmp/none" "${run[@]}" --out "$tmp/x6"
refused "--seq beyond the checkpoint's context" "--seq 128" -- \
  "$whtlm" train --init "$tmp/wht-tiny" --steps 3 --seq 128 --quiet --out "$tmp/x7"
[ ! -e "$tmp/x4" ] && [ ! -e "$tmp/x6" ] && [ ! -e "$tmp/x7" ]
check "nothing created for a refused run" $?

# --resume of an --init run: bit for bit the uninterrupted run, from the run's own
# checkpoint (the init checkpoint is replaced by other weights in between).
args=(--init "$tmp/wht-tiny" --steps 6 --batch 4 --seq 64 --eval-every 3 --eval-batches 1
      --save-every 3 --quiet)
"$whtlm" train "${args[@]}" --out "$tmp/a" 2>/dev/null; check "uninterrupted --init run" $?
"$whtlm" train "${args[@]}" --out "$tmp/b" --stop-after 3 2>/dev/null; check "stop after 3" $?
"$whtlm" init "${shape[@]}" --seed 4 --out "$tmp/dense-other" 2>/dev/null
"$whtlm" convert "$tmp/dense-other" --out "$tmp/wht-tiny" --force >/dev/null 2>&1
check "replace the init checkpoint" $?
"$whtlm" train --resume "$tmp/b" 2>"$tmp/err"; check "resume (stderr: $(head -c 200 "$tmp/err"))" $?
cmp -s "$tmp/a/model.safetensors" "$tmp/b/model.safetensors"; check "resumed weights identical" $?
cmp -s "$tmp/a/optimizer.safetensors" "$tmp/b/optimizer.safetensors"
check "resumed optimizer state identical" $?
$py - "$tmp/a/metrics.jsonl" "$tmp/b/metrics.jsonl" <<'PY'
import json, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:])
assert [r["step"] for r in b] == list(range(1, 7))
for x, y in zip(a, b):
    assert x["train_loss"] == y["train_loss"] and x.get("val_loss") == y.get("val_loss")
PY
check "resumed metrics match the uninterrupted run" $?

finish
