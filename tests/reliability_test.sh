#!/usr/bin/env bash
# Training when things go wrong, end to end: what each check proves is in its name.
#  - divergence: a NaN gradient stops the run naming the step and the tensor; the last
#    checkpoint stays resumable; --on-nonfinite skip skips and counts such steps.
#  - checksums: a flipped bit in a checkpoint is found at load, naming the file, and
#    --resume falls back to the previous checkpoint and ends bit-identical to a run
#    that never failed.
#  - storage faults: a write past the file-size limit (EFBIG) and a full disk (ENOSPC,
#    on a small tmpfs where the machine lets us mount one) during a checkpoint lose
#    nothing: the state still names the last complete checkpoint, and resuming from it
#    ends bit-identical to an uninterrupted run.
#  - a train_state.json naming a checkpoint outside the run is refused before anything
#    is removed.
# Usage: reliability_test.sh PATH/TO/whtlm
set -uo pipefail
whtlm="$(realpath "$1")"
source "$(dirname "$0")/testlib.sh"
cd "$tmp" || exit 1

/usr/bin/python3 -c "import random; random.seed(1); print(''.join(random.choice('abc de\n') for _ in range(120000)))" >small.txt
tiny=(--preset tiny --layers 1 --d-model 64 --heads 2 --seq 32 --batch 2 --data small.txt
      --chunk-tokens 1024 --threads 1 --quiet)
state_field() { /usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }
metrics_field() {  # metrics_field FILE STEP FIELD
  /usr/bin/python3 -c "
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r['step'] == int(sys.argv[2]): print(r.get(sys.argv[3]))" "$1" "$2" "$3"
}

# The reference: 6 uninterrupted steps, a checkpoint every 2.
"$whtlm" train "${tiny[@]}" --steps 6 --save-every 2 --out ref 2>/dev/null
check "reference run" $?

# --- divergence ------------------------------------------------------------------------
"$whtlm" train "${tiny[@]}" --steps 12 --save-every 5 --lr 1e3 --clip 0 --warmup 0 --out div \
  2>err.txt
code=$?
[ "$code" -eq 1 ]; check "a diverging run stops with exit 1" $?
grep -q "step 6: the loss is" err.txt; check "the message names the step" $?
grep -q "the first tensor with a non-finite gradient is model.embed_tokens.weight" err.txt
check "the message names the first tensor affected" $?
grep -q "last checkpoint (checkpoints/step-5) is intact" err.txt; check "it points to the last checkpoint" $?
[ "$(state_field div/train_state.json step)" = 5 ]; check "train_state.json still names step 5" $?
"$whtlm" eval --checkpoint div --data small.txt --split all --max-windows 2 >/dev/null 2>&1
check "the last checkpoint loads" $?
"$whtlm" train --resume div --on-nonfinite skip --max-skips 2 2>err.txt
[ $? -eq 1 ] && grep -q "3 steps skipped for non-finite values, more than --max-skips 2" err.txt
check "--on-nonfinite skip counts skipped steps and stops past --max-skips" $?
[ "$(metrics_field div/metrics.jsonl 7 skipped)" = True ] &&
  [ "$(metrics_field div/metrics.jsonl 7 skipped_steps)" = 2 ]
check "skipped steps are marked and counted in metrics.jsonl" $?
"$whtlm" train --resume div --lr 0.1 2>err.txt
[ $? -ne 0 ] && grep -q -- "--lr cannot be given with --resume" err.txt
check "options a resumed run would ignore are refused" $?

# --- checksums -------------------------------------------------------------------------
"$whtlm" train "${tiny[@]}" --steps 6 --save-every 2 --stop-after 4 --out flip 2>/dev/null
check "run to step 4" $?
/usr/bin/python3 - flip/checkpoints/step-4/model.safetensors <<'EOF'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(5000); b = f.read(1); f.seek(5000); f.write(bytes([b[0] ^ 0x04]))
EOF
"$whtlm" eval --checkpoint flip/checkpoints/step-4 --data small.txt --split all 2>err.txt >/dev/null
[ $? -ne 0 ] && grep -q "flip/checkpoints/step-4/model.safetensors: checksum mismatch" err.txt
check "a flipped bit is found at load, naming the file" $?
"$whtlm" eval --checkpoint flip --data small.txt --split all 2>err.txt >/dev/null
[ $? -ne 0 ] && grep -q "flip/model.safetensors: checksum mismatch" err.txt
check "loading the run folder finds it too (its files are the newest checkpoint's)" $?
"$whtlm" train --resume flip 2>err.txt
check "resume falls back instead of failing" $?
grep -q "falling back to the previous checkpoint, checkpoints/step-2 (step 2)" err.txt
check "the fall-back is said, with the checkpoint used" $?
cmp -s flip/model.safetensors ref/model.safetensors && cmp -s flip/optimizer.safetensors ref/optimizer.safetensors
check "after the fall-back the run ends bit-identical to the uninterrupted one" $?
cmp -s flip/checkpoints/step-4/model.safetensors ref/checkpoints/step-4/model.safetensors
check "the damaged checkpoint is replaced by a good one" $?

"$whtlm" train "${tiny[@]}" --steps 6 --save-every 2 --stop-after 4 --out both 2>/dev/null
for s in 2 4; do printf 'x' | dd of="both/checkpoints/step-$s/optimizer.safetensors" bs=1 seek=900 conv=notrunc 2>/dev/null; done
"$whtlm" train --resume both 2>err.txt
[ $? -ne 0 ] && grep -q "no intact checkpoint to resume from" err.txt &&
  grep -q "step-4/optimizer.safetensors: checksum mismatch" err.txt &&
  grep -q "step-2/optimizer.safetensors: checksum mismatch" err.txt
check "with every checkpoint damaged, resume refuses naming each file" $?
[ -e both/checkpoints/step-2/model.safetensors ] && [ -e both/checkpoints/step-4/model.safetensors ]
check "and removes none of them" $?

# --- storage faults --------------------------------------------------------------------
# EFBIG: the file-size limit lets the model through and stops the optimizer state of
# the first checkpoint (the limit is in KiB blocks).
(ulimit -f 600; "$whtlm" train "${tiny[@]}" --steps 6 --save-every 2 --out efbig 2>err.txt)
code=$?
[ "$code" -eq 1 ] && grep -q "optimizer.safetensors: cannot write temporary file .*File too large" err.txt
check "a write past the file-size limit is an error naming the file, not a SIGXFSZ" $?
[ "$(state_field efbig/train_state.json step)" = 0 ] && ! ls efbig/checkpoints/step-2/*.tmp.* 2>/dev/null
check "the failed checkpoint is not committed and leaves no temporary file" $?
"$whtlm" train --resume efbig 2>/dev/null && cmp -s efbig/model.safetensors ref/model.safetensors
check "resuming after it ends bit-identical to the uninterrupted run" $?

# ENOSPC: a tmpfs with room for one checkpoint; the second one fills the disk.
mkdir -p disk
if mount -t tmpfs -o size=1700k tmpfs disk 2>/dev/null; then
  "$whtlm" train "${tiny[@]}" --steps 6 --save-every 2 --out disk/run 2>err.txt
  code=$?
  [ "$code" -eq 1 ] && grep -q "No space left on device" err.txt
  check "a full disk during a checkpoint is an error naming the file" $?
  [ "$(state_field disk/run/train_state.json step)" = 2 ]
  check "train_state.json still names the last complete checkpoint" $?
  cp -a disk/run nospace
  umount disk
  "$whtlm" train --resume nospace 2>/dev/null && cmp -s nospace/model.safetensors ref/model.safetensors &&
    cmp -s nospace/optimizer.safetensors ref/optimizer.safetensors
  check "moved to a disk with room, it resumes and ends bit-identical to the uninterrupted run" $?
else
  echo "SKIP: cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN): full-disk case not run"
fi

# --- a checkpoint path outside the run -------------------------------------------------
for bad in "../../x" "/etc" "checkpoints/step-9"; do
  rm -rf esc && cp -a ref esc
  /usr/bin/python3 -c "
import json, sys
p = 'esc/train_state.json'; s = json.load(open(p)); s['checkpoint'] = sys.argv[1]
s['checkpoints'][0]['path'] = sys.argv[1]; json.dump(s, open(p, 'w'))" "$bad"
  "$whtlm" train --resume esc 2>err.txt
  [ $? -ne 0 ] && grep -q "is not the checkpoint of step 6" err.txt && [ -e esc/checkpoints/step-6/model.safetensors ] &&
    [ -e esc/checkpoints/step-4/model.safetensors ]
  check "train_state.json naming '$bad' is refused and no checkpoint removed" $?
done

finish
