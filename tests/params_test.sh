#!/usr/bin/env bash
# End-to-end checks of `whtlm params`: the counts it prints agree with the closed
# forms of each family (computed here from n_layer and d_model), FLOPs are sane, and
# bad input is refused before anything is printed. Usage: params_test.sh PATH/TO/whtlm
set -uo pipefail
whtlm="$1"
python=/usr/bin/python3
source "$(dirname "$0")/testlib.sh"

# Runs a Python check script on stdin with arguments; it prints one "ok NAME" or
# "FAIL: NAME" line per check, which are counted here.
pycheck() {
  local out
  out="$("$python" - "$@" 2>&1)"
  local rc=$?
  if [ $rc -ne 0 ]; then
    echo "FAIL: python checks crashed:"; echo "$out"; failures=$((failures + 1)); return
  fi
  while IFS= read -r line; do
    case "$line" in
      ok\ *) passes=$((passes + 1)) ;;
      FAIL:*) echo "$line"; failures=$((failures + 1)) ;;
      *) echo "$line" ;;
    esac
  done <<<"$out"
}

"$whtlm" --help >"$tmp/help" 2>&1
check "--help exits 0" $?
grep -q "params" "$tmp/help"; check "--help lists params" $?
"$whtlm" params --help >"$tmp/phelp" 2>&1
check "params --help exits 0" $?
grep -q "tiny" "$tmp/phelp" && grep -q "gpt2-124m" "$tmp/phelp"
check "params --help lists the presets" $?

# JSON: one line per projection, the closed forms per family.
"$whtlm" params --preset tiny,gpt2-124m --json >"$tmp/p.jsonl" 2>"$tmp/err"
check "params --json runs" $?
[ ! -s "$tmp/err" ]; check "params --json writes nothing to stderr" $?
pycheck "$tmp/p.jsonl" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def check(name, cond):
    print(("ok " if cond else "FAIL: ") + name)
check("six JSON lines (2 presets x 3 projections)", len(rows) == 6)
by = {(r["preset"], r["proj"]): r for r in rows}
for preset, family in (("tiny", "llama"), ("gpt2-124m", "gpt2")):
    if not all((preset, p) in by for p in ("dense", "wht", "identity")):
        check(preset + ": dense, wht and identity present", False)
        continue
    dense, wht, ident = (by[(preset, p)] for p in ("dense", "wht", "identity"))
    check(preset + ": family " + family, dense["family"] == family)
    L, d, V = dense["n_layer"], dense["d_model"], dense["vocab_size"]
    bias = d if family == "gpt2" else 0  # the dense projection's bias (gpt2 only)
    out_dense = d * d + bias             # one block's dense output projection
    check(preset + ": wht total = dense - L(d^2 [+ d]) + L 2d",
          wht["params_total"] == dense["params_total"] - L * out_dense + L * 2 * d)
    check(preset + ": identity total = dense - L(d^2 [+ d])",
          ident["params_total"] == dense["params_total"] - L * out_dense)
    qkv = 3 * d * d + (3 * d if family == "gpt2" else 0)
    check(preset + ": dense attention per block = qkv + d^2 [+ d]",
          dense["attn_params_per_block"] == qkv + out_dense)
    check(preset + ": wht attention per block = qkv + 2d",
          wht["attn_params_per_block"] == qkv + 2 * d)
    check(preset + ": identity attention per block = qkv",
          ident["attn_params_per_block"] == qkv)
    for r in rows:
        if r["preset"] != preset:
            continue
        p = r["proj"]
        check(preset + "/" + p + ": components sum to the total",
              sum(r["params_by_component"].values()) == r["params_total"])
        check(preset + "/" + p + ": weight bytes = 4 x params",
              r["weight_bytes"] == 4 * r["params_total"])
        check(preset + "/" + p + ": training FLOPs > forward FLOPs > 0",
              r["flops_train_per_token"] > r["flops_forward_per_token"] > 0)
        check(preset + "/" + p + ": embedding = V d", r["params_by_component"]["embedding"] == V * d)
        check(preset + "/" + p + ": seq defaults to the preset's context", r["seq"] == dense["seq"])
    check(preset + ": dense has no reduction keys", "total_reduction_vs_dense" not in dense)
    for r in (wht, ident):
        a = (dense["attn_params_per_block"] - r["attn_params_per_block"]) / dense["attn_params_per_block"]
        t = (dense["params_total"] - r["params_total"]) / dense["params_total"]
        check(preset + "/" + r["proj"] + ": attention reduction fraction",
              abs(r.get("attn_reduction_vs_dense_per_block", -1) - a) < 1e-12)
        check(preset + "/" + r["proj"] + ": total reduction fraction",
              abs(r.get("total_reduction_vs_dense", -1) - t) < 1e-12)
        check(preset + "/" + r["proj"] + ": fewer FLOPs than dense",
              r["flops_train_per_token"] < dense["flops_train_per_token"]
              and r["flops_forward_per_token"] < dense["flops_forward_per_token"])
# tiny: llama, d = 256, 4 heads, no bias: 4 d^2 dense, 3 d^2 + 2d wht per block.
if ("tiny", "wht") in by:
    d = by[("tiny", "dense")]["d_model"]
    check("tiny: d = 256, 4 heads", d == 256 and by[("tiny", "dense")]["n_head"] == 4)
    check("tiny: dense attention per block = 4 d^2",
          by[("tiny", "dense")]["attn_params_per_block"] == 4 * d * d == 262144)
    check("tiny: wht attention per block = 3 d^2 + 2d",
          by[("tiny", "wht")]["attn_params_per_block"] == 3 * d * d + 2 * d == 197120)
EOF

# The table: the same figures, readable.
"$whtlm" params --preset tiny >"$tmp/table" 2>"$tmp/err"
check "params (table) runs" $?
[ ! -s "$tmp/err" ]; check "params (table) writes nothing to stderr" $?
pycheck "$tmp/table" <<'EOF'
import sys
text = open(sys.argv[1]).read()
def check(name, cond):
    print(("ok " if cond else "FAIL: ") + name)
d = 256
dense, wht, ident = 4 * d * d, 3 * d * d + 2 * d, 3 * d * d
check("table header names the preset and its shape", text.startswith("tiny: llama, 4 layers, d 256"))
for col in ("dense", "wht", "identity"):
    check("table has a " + col + " column", col in text.splitlines()[1].split())
for row in ("embedding", "position", "attn_qkv", "attn_out", "mlp", "norm", "head", "total"):
    check("table has a " + row + " row", any(l.startswith(row) for l in text.splitlines()))
line = next((l for l in text.splitlines() if l.startswith("attention per block:")), "")
expect = "dense {:,}, wht {:,} ({:,}, {:+.1f}%)".format(dense, wht, wht - dense,
                                                         100 * (wht - dense) / dense)
check("attention per block line: " + expect, expect in line)
check("identity in the attention line", "identity {:,}".format(ident) in line)
for label in ("whole model:", "forward FLOPs/token:", "training FLOPs/token:", "weight bytes"):
    check("table has a '" + label + "' line", any(l.startswith(label) for l in text.splitlines()))
EOF

# One projection, several presets, --preset all, --vocab and --seq.
"$whtlm" params --preset tiny --preset gpt2-124m --proj wht --json >"$tmp/w.jsonl" 2>/dev/null
[ $? -eq 0 ] && [ "$(wc -l <"$tmp/w.jsonl")" -eq 2 ] && ! grep -q '"proj":"dense"' "$tmp/w.jsonl"
check "--preset twice with --proj wht: one wht line each" $?
"$whtlm" params --preset all --json >"$tmp/all.jsonl" 2>/dev/null
check "--preset all runs" $?
pycheck "$tmp/all.jsonl" <<'EOF'
import json, sys, collections
rows = [json.loads(l) for l in open(sys.argv[1])]
def check(name, cond):
    print(("ok " if cond else "FAIL: ") + name)
n = collections.Counter(r["preset"] for r in rows)
check("--preset all covers tiny, base and gpt2-350m",
      all(p in n for p in ("tiny", "small", "base", "gpt2-124m", "gpt2-350m")))
check("--preset all: three projections per preset", len(n) >= 5 and set(n.values()) == {3})
EOF
"$whtlm" params --preset tiny --proj dense --vocab 1000 --seq 64 --json >"$tmp/v.jsonl" 2>/dev/null
check "--vocab and --seq run" $?
pycheck "$tmp/v.jsonl" "$tmp/p.jsonl" <<'EOF'
import json, sys
v = json.loads(open(sys.argv[1]).readline())
base = next(json.loads(l) for l in open(sys.argv[2]) if '"tiny"' in l and '"dense"' in l)
def check(name, cond):
    print(("ok " if cond else "FAIL: ") + name)
check("--vocab 1000: vocab_size", v["vocab_size"] == 1000)
check("--vocab 1000: untied llama embedding and head grow by (1000 - 256) d each",
      v["params_total"] == base["params_total"] + 2 * (1000 - 256) * v["d_model"])
check("--seq 64: seq", v["seq"] == 64)
EOF

# Refusals: non-zero exit, a message naming the problem, nothing on stdout.
refused() {  # refused NAME PATTERN ARGS... (of `whtlm params`; stdout must stay empty)
  local name="$1" pattern="$2"
  shift 2
  "$whtlm" params "$@" >"$tmp/out" 2>"$tmp/err"
  local code=$?
  [ $code -ne 0 ] && grep -q -- "$pattern" "$tmp/err" && [ ! -s "$tmp/out" ]
  check "$name" $?
}
refused "unknown preset refused naming it" "nope" --preset nope
grep -q "gpt2-124m" "$tmp/err" && grep -q "tiny" "$tmp/err"
check "unknown preset error lists the choices" $?
refused "unknown preset among known ones refused before printing" "nope" --preset tiny,nope
refused "--proj bogus refused" "--proj" --preset tiny --proj bogus
grep -q "bogus" "$tmp/err"; check "--proj error names the value" $?
refused "--vocab 0 refused" "--vocab" --preset tiny --vocab 0
refused "--seq 0 refused" "--seq" --preset tiny --seq 0
refused "--seq beyond the context refused" "tiny" --preset tiny --seq 100000
"$whtlm" params >/dev/null 2>&1
[ $? -ne 0 ]; check "--preset is required" $?

finish
