# shellcheck shell=bash
# Helpers for the hostile-input cases (tests/hostile/cases.sh), sourced by run.sh:
# the fixtures every case copies from, and the ways a case spoils a copy.
# Every helper works on paths relative to the case's own folder (its working
# directory); none touches $FIX, the fixtures, which cases only read or copy.
# Python is Debian's /usr/bin/python3 (the one on PATH may be another build).
PY=/usr/bin/python3

# --- copying fixtures -------------------------------------------------------------

fixture() {  # fixture NAME [DEST]: copy fixture NAME (file or folder, hard links kept)
  cp -a "$FIX/$1" "${2:-$1}"
}

# --- spoiling files ---------------------------------------------------------------

# json_set FILE KEY.PATH RAW: set a field to RAW JSON text, written verbatim (so
# 1e999, NaN or "x" stay as typed); the path's parts are object keys or list indexes.
json_set() {
  "$PY" - "$@" <<'EOF'
import json, sys
path, keys, raw = sys.argv[1], sys.argv[2].split("."), sys.argv[3]
doc = json.load(open(path))
mark = "\u0000HOSTILE\u0000"
node = doc
for k in keys[:-1]:
    node = node[int(k)] if isinstance(node, list) else node[k]
last = keys[-1]
if isinstance(node, list):
    node[int(last)] = mark
else:
    node[last] = mark
text = json.dumps(doc, indent=2).replace(json.dumps(mark), raw)
open(path, "w").write(text + "\n")
EOF
}

json_str() {  # json_str FILE KEY.PATH STRING: set a field to a JSON string
  json_set "$1" "$2" "$("$PY" -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$3")"
}

json_del() {  # json_del FILE KEY.PATH: remove a field
  "$PY" - "$@" <<'EOF'
import json, sys
path, keys = sys.argv[1], sys.argv[2].split(".")
doc = json.load(open(path))
node = doc
for k in keys[:-1]:
    node = node[int(k)] if isinstance(node, list) else node[k]
del node[int(keys[-1]) if isinstance(node, list) else keys[-1]]
open(path, "w").write(json.dumps(doc, indent=2) + "\n")
EOF
}

# flip_byte FILE OFFSET: invert one byte in place (the inode, hence every hard link
# to it, changes, as with a disk error); a negative OFFSET counts from the end.
flip_byte() {
  "$PY" - "$@" <<'EOF'
import os, sys
path, off = sys.argv[1], int(sys.argv[2])
if off < 0:
    off += os.path.getsize(path)
with open(path, "r+b") as f:
    f.seek(off)
    b = f.read(1)
    f.seek(off)
    f.write(bytes([b[0] ^ 0xFF]))
EOF
}

truncate_to() { truncate -s "$2" "$1"; }  # truncate_to FILE BYTES

# st_set FILE TENSOR VALUE [INDEX [COUNT]]: overwrite COUNT (1) float32 values of a
# safetensors tensor in place from INDEX; VALUE is a Python float literal (nan, inf,
# -inf, 1e30); INDEX -1 (the default) fills the whole tensor.
st_set() {
  "$PY" - "$@" <<'EOF'
import json, struct, sys
path, name, value = sys.argv[1], sys.argv[2], float(sys.argv[3])
index = int(sys.argv[4]) if len(sys.argv) > 4 else -1
count = int(sys.argv[5]) if len(sys.argv) > 5 else 1
with open(path, "r+b") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    head = json.loads(f.read(n))
    t = head[name]
    assert t["dtype"] == "F32"
    begin, end = t["data_offsets"]
    if index < 0:
        index, count = 0, (end - begin) // 4
    f.seek(8 + n + begin + 4 * index)
    f.write(struct.pack("<%df" % count, *([value] * count)))
EOF
}

# st_copy FILE FROM TO [SCALE]: add tensor TO holding FROM's values times SCALE (the
# file is rewritten): e.g. an untied GPT-2 lm_head.weight that differs from wte.
st_copy() {
  "$PY" - "$@" <<'EOF'
import json, struct, sys
path, src, dst = sys.argv[1], sys.argv[2], sys.argv[3]
scale = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0
raw = open(path, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
head = json.loads(raw[8:8 + n])
data = raw[8 + n:]
meta = head.pop("__metadata__", None)
t = head[src]
b, e = t["data_offsets"]
vals = struct.unpack("<%df" % ((e - b) // 4), data[b:e])
extra = struct.pack("<%df" % len(vals), *[v * scale for v in vals])
head[dst] = {"dtype": "F32", "shape": t["shape"], "data_offsets": [len(data), len(data) + len(extra)]}
if meta is not None:
    head["__metadata__"] = meta
h = json.dumps(head).encode()
h += b" " * (-len(h) % 8)
open(path, "wb").write(struct.pack("<Q", len(h)) + h + data + extra)
EOF
}

# st_header FILE RAW_JSON: replace the safetensors header with RAW_JSON (data kept).
st_header() {
  "$PY" - "$@" <<'EOF'
import struct, sys
path, h = sys.argv[1], sys.argv[2].encode()
raw = open(path, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
open(path, "wb").write(struct.pack("<Q", len(h)) + h + raw[8 + n:])
EOF
}

# st_len FILE N: set the 8-byte header length field to N (a lie about the header).
st_len() {
  "$PY" - "$@" <<'EOF'
import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.write(struct.pack("<Q", int(sys.argv[2])))
EOF
}

# shard FILE COUNT [MAGIC] [VERSION] [TOKEN]: write an llm.c shard whose header says
# COUNT tokens, holding min(COUNT, 4096) copies of TOKEN (default 65).
shard() {
  "$PY" - "$@" <<'EOF'
import struct, sys
path, count = sys.argv[1], int(sys.argv[2])
magic = int(sys.argv[3]) if len(sys.argv) > 3 else 20240520
version = int(sys.argv[4]) if len(sys.argv) > 4 else 1
token = int(sys.argv[5]) if len(sys.argv) > 5 else 65
head = struct.pack("<3i", magic, version, count) + b"\0" * (256 * 4 - 12)
body = struct.pack("<%dH" % min(max(count, 0), 4096), *([token] * min(max(count, 0), 4096)))
open(path, "wb").write(head + body)
EOF
}

# Fixtures: small, made once per run by the binary under test (so a fixed whtlm
# makes them its own way, e.g. keeping more checkpoints), in $FIX.
#   small.txt val.txt   ~20 KB and ~4 KB of text (one "document" each)
#   run/                tiny llama run stopped at step 2 of 4 (save-every 1, byte-level)
#   ck-llama ck-gpt2    `whtlm init` checkpoints (1 layer, d 64, context 256)
#   ck-nul              ck-gpt2 whose output is always token 0 (the byte NUL)
#   ck-tok              a vocab-300 llama checkpoint carrying tok.json
#   tok.json            a trained 300-token BPE; gpt2tok/ the same as encoder.json + vocab.bpe
#   shards/  x.bin      `data prepare` output with tok.json; one of its train shards
#   plan.json exp/      a 2-run experiment plan and the finished experiment (no bench)
#   bench.jsonl         `whtlm bench infer --json` output
make_fixtures() {
  local w="$WHTLM" tiny=(--layers 1 --d-model 64 --heads 2)
  mkdir -p "$FIX" && cd "$FIX" || return 1
  "$PY" - <<'EOF' || return 1
import random
r = random.Random(1)
words = ("the lord said unto moses and aaron in the land of egypt saying this month shall "
         "be unto you the beginning of months it shall be the first month of the year to you "
         "speak ye unto all the congregation of israel").split()
def text(n):
    return "".join(" ".join(r.choice(words) for _ in range(r.randint(5, 15))) + ".\n"
                   for _ in range(n))
open("small.txt", "w").write(text(400))
open("val.txt", "w").write(text(80))
EOF
  "$w" train --preset tiny "${tiny[@]}" --seq 32 --batch 2 --steps 4 --stop-after 2 \
    --save-every 1 --eval-every 0 --eval-batches 1 --data "$FIX/small.txt" --chunk-tokens 256 \
    --threads 1 --quiet --out run || return 1
  "$w" init --preset tiny "${tiny[@]}" --out ck-llama >/dev/null 2>&1 || return 1
  "$w" init --preset tiny-gpt2 "${tiny[@]}" --out ck-gpt2 >/dev/null 2>&1 || return 1
  cp -a ck-gpt2 ck-nul
  st_set ck-nul/model.safetensors transformer.ln_f.weight 0 &&
    st_set ck-nul/model.safetensors transformer.ln_f.bias 1 || return 1
  st_set ck-nul/model.safetensors transformer.wte.weight 1 0 64 || return 1  # row 0: ones
  rm -f ck-nul/checksums.json  # its weights were edited on purpose
  "$w" tokenizer train --vocab 300 --data small.txt --out tok.json --threads 1 --quiet || return 1
  mkdir gpt2tok
  "$PY" - <<'EOF' || return 1
import json
j = json.load(open("tok.json"))
json.dump(j["model"]["vocab"], open("gpt2tok/encoder.json", "w"))
open("gpt2tok/vocab.bpe", "w").write("#version: 0.2\n" + "\n".join(j["model"]["merges"]) + "\n")
EOF
  "$w" init --preset tiny "${tiny[@]}" --vocab 300 --out ck-tok >/dev/null 2>&1 || return 1
  cp tok.json ck-tok/tokenizer.json
  "$w" data prepare --tokenizer tok.json --data small.txt --chunk-tokens 256 --threads 1 \
    --out shards >/dev/null 2>&1 || return 1
  cp shards/train_000000.bin x.bin
  "$w" experiment --print-config >plan.json 2>/dev/null || return 1
  "$PY" - "$FIX" <<'EOF' || return 1
import json, sys
p = json.load(open("plan.json"))
p["sizes"] = [{"name": "L1-d64", "family": "llama", "layers": 1, "d_model": 64, "heads": 2,
               "kv_heads": 2, "d_ff": 128, "context": 64, "vocab": 256, "seeds": 1}]
p.update(projections=["dense", "wht"], tokens=256, batch=2, seq=32, eval_every=2,
         eval_batches=1, threads=1, data=sys.argv[1] + "/small.txt",
         val_data=sys.argv[1] + "/val.txt")
p["bench"].update(batches=[1], prompts=[8], decode=2, repetitions=1)
p["lr_sweep"]["factors"] = []  # no sweep: 3 runs
p.update(tokens_exponent=0, evals=0)
json.dump(p, open("plan.json", "w"), indent=2)
EOF
  "$w" experiment --config plan.json --no-bench --quiet --out exp >/dev/null 2>&1 || return 1
  "$w" bench infer --preset tiny --proj dense,wht --batch 1 --prompt 8 --decode 2 --reps 1 \
    --vocab 256 --context 16 --threads 1 --json bench.jsonl >/dev/null 2>&1 || return 1
}

# --- reading results (for `check`) --------------------------------------------------

json_get() {  # json_get FILE KEY.PATH: print a field (JSON text)
  "$PY" - "$@" <<'PYEOF'
import json, sys
node = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    node = node[int(k)] if isinstance(node, list) else node[k]
print(json.dumps(node))
PYEOF
}

# same_tokens A B: two `generate --json` outputs hold the same tokens, prompt by prompt.
same_tokens() {
  "$PY" - "$@" <<'PYEOF'
import json, sys
a, b = ([json.loads(l)["tokens"] for l in open(p) if l.strip()] for p in sys.argv[1:3])
sys.exit(0 if a == b and a else 1)
PYEOF
}

# st_dtype FILE TENSOR DTYPE: relabel a tensor's dtype in the header (same bytes).
st_dtype() {
  "$PY" - "$@" <<'PYEOF'
import json, struct, sys
path, name, dtype = sys.argv[1:4]
raw = open(path, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
head = json.loads(raw[8:8 + n])
head[name]["dtype"] = dtype
h = json.dumps(head).encode()
h += b" " * (-len(h) % 8)
open(path, "wb").write(struct.pack("<Q", len(h)) + h + raw[8 + n:])
PYEOF
}

# big_tokenizer FILE N: a valid byte-level tokenizer.json of N tokens (256 bytes, the
# rest special tokens <tK>).
big_tokenizer() {
  "$PY" - "$@" <<'PYEOF'
import json, sys
path, n = sys.argv[1], int(sys.argv[2])
shown = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
extra, vocab = 0, {}
for b in range(256):  # GPT-2's byte-to-unicode map
    if b in shown:
        vocab[chr(b)] = b
    else:
        vocab[chr(256 + extra)] = b
        extra += 1
doc = {"model": {"type": "BPE", "vocab": vocab, "merges": []},
       "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False},
       "added_tokens": [{"id": i, "content": "<t%d>" % i} for i in range(256, n)]}
json.dump(doc, open(path, "w"))
PYEOF
}

# many_shards DIR N: a prepared folder of N tiny train shards and 2 val shards (bytes).
many_shards() {
  "$PY" - "$@" <<'PYEOF'
import os, random, struct, sys
path, n = sys.argv[1], int(sys.argv[2])
os.makedirs(path, exist_ok=True)
random.seed(0)
for kind, count in (("train", n), ("val", 2)):
    for i in range(count):
        toks = [random.randrange(256) for _ in range(300)]
        with open(os.path.join(path, "%s_%06d.bin" % (kind, i)), "wb") as f:
            f.write(struct.pack("<256i", 20240520, 1, len(toks), *([0] * 253)))
            f.write(struct.pack("<%dH" % len(toks), *toks))
PYEOF
}

# bin_replace FILE OLD NEW: replace the first occurrence of the bytes OLD by NEW, in place
# (Python bytes-literal escapes: '\x02\x00'); both of one length, so every offset stays.
bin_replace() {
  "$PY" - "$@" <<'PYEOF'
import sys
path = sys.argv[1]
old, new = (s.encode("latin-1").decode("unicode_escape").encode("latin-1") for s in sys.argv[2:4])
assert len(old) == len(new), "bin_replace: OLD and NEW differ in length"
raw = open(path, "rb").read()
at = raw.find(old)
assert at >= 0, "bin_replace: OLD not in " + path
open(path, "wb").write(raw[:at] + new + raw[at + len(old):])
PYEOF
}

# no_output NAME...: the case folder's top level holds nothing but small.txt, val.txt and
# the NAMEs (hidden entries too): a refused command left no output, partial file or
# temporary file (FILE.tmp.PID.N) beside it.
no_output() {
  local e
  while IFS= read -r e; do
    case " small.txt val.txt $* " in *" $e "*) continue ;; esac
    echo "left behind: $e" >&2
    return 1
  done < <(ls -A)
}
