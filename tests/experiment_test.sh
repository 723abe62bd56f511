#!/usr/bin/env bash
# `whtlm experiment` and `whtlm report` end to end on a plan of tiny models:
#  - the plan round-trips through --print-config, and bad plans are refused naming the field;
#  - an experiment killed part-way (SIGKILL) and started again finishes every run,
#    keeping what was done; a third start redoes nothing;
#  - every run gets its downstream proxy (downstream.json), kept on a restart;
#  - a different plan in the same folder is refused;
#  - the report has every figure (well-formed SVG), links only files that exist,
#    and the claims table; `whtlm report` redraws it from the folders.
# Usage: experiment_test.sh PATH/TO/whtlm
set -uo pipefail
whtlm="$1"
py=/usr/bin/python3
source "$(dirname "$0")/testlib.sh"

"$whtlm" experiment --help >/dev/null 2>&1; check "experiment --help" $?
"$whtlm" report --help >/dev/null 2>&1; check "report --help" $?

# A text corpus of its own, so the test needs no cache.
$py -c "
import random
r = random.Random(5)
words = 'the of and to in that he shall unto for i his a lord they be is him not them'.split()
print('\n'.join(' '.join(r.choice(words) for _ in range(12)) for _ in range(9000)))
" >"$tmp/corpus.txt"

cat >"$tmp/plan.json" <<EOF
{
  "sizes": [
    {"name": "a", "layers": 1, "d_model": 64, "heads": 2, "context": 64, "seeds": 2},
    {"name": "b", "layers": 2, "d_model": 64, "heads": 2, "context": 64}
  ],
  "tokens": 1536, "batch": 4, "seq": 32, "lr": 0.003, "eval_every": 4, "eval_batches": 2,
  "evals": 0, "tokens_exponent": 0, "lr_sweep": {"factors": []},
  "data": "$tmp/corpus.txt", "threads": 1,
  "bench": {"batches": [1, 2], "prompts": [8, 16], "decode": 4, "repetitions": 2},
  "note": "This plan is the test's own."
}
EOF

# The plan round-trips.
"$whtlm" experiment --config "$tmp/plan.json" --print-config >"$tmp/printed.json"
check "--print-config" $?
"$whtlm" experiment --config "$tmp/printed.json" --print-config | cmp -s - "$tmp/printed.json"
check "printed plan reads back to the same plan" $?
"$whtlm" experiment --print-config | $py -c "import json, sys; p = json.load(sys.stdin); \
  assert len(p['sizes']) >= 3 and p['projections'] == ['dense', 'wht', 'identity'], p; \
  assert p['scale_inits'] == ['matched', 'one'], p; \
  assert len(p['lr_sweep']['factors']) >= 3 and p['tokens_exponent'] > 0, p"
check "default plan: three or more sizes, three projections, wht's scale matched and one, a sweep, tokens growing with size" $?

# Bad plans name the field.
sed 's/"lr": 0.003/"lr": 0.003, "lr_typo": 1/' "$tmp/plan.json" >"$tmp/bad1.json"
refused "unknown field named" 'field "lr_typo": unknown field' -- \
  "$whtlm" experiment --config "$tmp/bad1.json" --out "$tmp/bad"
sed 's/"d_model": 64, "heads": 2, "context": 64, "seeds": 2/"d_model": 66, "heads": 2, "context": 64/' \
  "$tmp/plan.json" >"$tmp/bad2.json"
refused "size without a Hadamard width refused" "sizes.a.heads: .*d_model" -- \
  "$whtlm" experiment --config "$tmp/bad2.json" --out "$tmp/bad"
echo '{"tokens": "many"}' >"$tmp/bad3.json"
refused "wrong type named" 'field "tokens": expected an integer' -- \
  "$whtlm" experiment --config "$tmp/bad3.json" --out "$tmp/bad"
sed 's/"lr": 0.003/"lr": 0.003, "scale_inits": ["one", "half"]/' "$tmp/plan.json" >"$tmp/bad4.json"
refused "unknown scale init named" 'field "scale_inits": unknown initial wht scale .half.' -- \
  "$whtlm" experiment --config "$tmp/bad4.json" --out "$tmp/bad"
sed 's/"lr": 0.003/"lr": 0.003, "scale_inits": ["one", "one"]/' "$tmp/plan.json" >"$tmp/bad5.json"
refused "a scale init given twice refused" 'scale_inits: one is given twice' -- \
  "$whtlm" experiment --config "$tmp/bad5.json" --out "$tmp/bad"
refused "missing config file named" "nofile.json" -- \
  "$whtlm" experiment --config "$tmp/nofile.json" --out "$tmp/bad"
[ ! -e "$tmp/bad" ]; check "refused plans leave no folder behind" $?

# Killed part-way, then started again: every run finishes.
ex="$tmp/ex"
# The kill lands once the second run has started (the first one is then finished).
setsid "$whtlm" experiment --config "$tmp/plan.json" --out "$ex" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 600); do
  [ -e "$ex/runs/a-wht-s1/metrics.jsonl" ] && break
  sleep 0.05
done
kill -KILL -- -"$pid" 2>/dev/null
wait "$pid" 2>/dev/null
[ -e "$ex/runs/a-wht-s1/metrics.jsonl" ]; check "the experiment was killed while its second run trained" $?
"$whtlm" experiment --config "$tmp/plan.json" --out "$ex" >"$tmp/out2" 2>"$tmp/err2"
check "experiment finishes after a SIGKILL" $?
grep -q "a-dense-s1: finished earlier, kept" "$tmp/err2"; check "the finished run was kept" $?
runs=$(ls "$ex/runs" | wc -l)
[ "$runs" -eq 12 ]; check "12 run folders (a: 2 seeds x 4, b: 1 seed x 4: wht twice), got $runs" $?
$py - "$ex" <<'PY'
import json, os, sys
ex = sys.argv[1]
for name in sorted(os.listdir(os.path.join(ex, "runs"))):
    st = json.load(open(os.path.join(ex, "runs", name, "train_state.json")))
    assert st["step"] == 12, (name, st["step"])
    steps = [json.loads(l)["step"] for l in open(os.path.join(ex, "runs", name, "metrics.jsonl"))]
    assert steps == list(range(1, 13)), (name, steps)
init = {n: json.load(open(os.path.join(ex, "runs", n, "train_state.json")))["options"]["scale_init"]
        for n in ("a-wht-s1", "a-wht-init_one-s2", "b-wht-init_one-s1")}
assert init == {"a-wht-s1": "matched", "a-wht-init_one-s2": "one", "b-wht-init_one-s1": "one"}, init
doc = json.load(open(os.path.join(ex, "experiment.json")))
assert len(doc["commands"]) == 2 and all(c["commit"] for c in doc["commands"]), doc["commands"]
cases = [json.loads(l) for l in open(os.path.join(ex, "bench", "infer.jsonl"))]
# 2 sizes x 2 batches x 2 prompts x 3 projections x 2 phases
assert len(cases) == 48, len(cases)
PY
check "every run has 12 steps of metrics, wht's scale as planned, the sweep 48 rows, experiment.json both commands" $?
# As many claims printed as the report's claims table has rows, the downstream one among them.
rows=$(awk '/^## Claims/ {f = 1; next} /^## / {f = 0} f && /^\| / {n++} END {print n - 1}' \
  "$ex/report/report.md")
[ "$(grep -c "^  " "$tmp/out2")" -eq "$rows" ] && [ "$rows" -ge 11 ]
check "every claim printed ($rows)" $?
grep -q "follows the rule stated next to it. This plan is the test's own." "$ex/report/report.md"
check "the plan's note in the report's introduction" $?
grep -q "^  Comparable downstream performance " "$tmp/out2"; check "the downstream claim printed" $?
# The downstream proxy of every run (the corpus's lines end in one of 20 words, unpunctuated).
$py - "$ex" <<'PY'
import json, os, sys
ex = sys.argv[1]
for name in sorted(os.listdir(os.path.join(ex, "runs"))):
    d = json.load(open(os.path.join(ex, "runs", name, "downstream.json")))
    assert d["kind"] == "whtlm downstream" and d["bits_per_byte"] > 0, (name, d)
    assert d["bytes_scored"] > 0 and d["checkpoint"] == "checkpoints/step-12", (name, d)
    c = d["cloze"]
    assert c["K"] == 16 and len(c["candidates"]) == 16 and c["items"] > 0, (name, c)
    assert 0 <= c["accuracy"] <= 1 and abs(c["chance"] - 1 / 16) < 1e-12, (name, c)
    assert 0 < c["context_bytes"] <= 64, (name, c)
PY
check "every run has a downstream.json: cloze over 16 candidates, bits per byte" $?

# A third start redoes nothing.
"$whtlm" experiment --config "$tmp/plan.json" --out "$ex" 2>"$tmp/err3" >/dev/null
check "third start succeeds" $?
[ "$(grep -c 'finished earlier, kept' "$tmp/err3")" -eq 12 ]; check "third start keeps all 12 runs" $?
grep -q "^inference sweep:" "$tmp/err3"; [ $? -ne 0 ]; check "third start does not redo the sweep" $?
grep -q "^downstream " "$tmp/err3"; [ $? -ne 0 ]; check "third start keeps every downstream.json" $?

# A different plan in the same folder is refused.
sed 's/"lr": 0.003/"lr": 0.002/' "$tmp/plan.json" >"$tmp/plan2.json"
refused "different plan refused naming the field" "plan.lr" -- \
  "$whtlm" experiment --config "$tmp/plan2.json" --out "$ex"

# The report.
rep="$ex/report"
for f in index.html report.md figures/loss_vs_flops.svg figures/loss_vs_tokens.svg \
  figures/loss_vs_time.svg figures/prefill_vs_batch.svg figures/decode_vs_prompt.svg \
  figures/ratio_vs_batch.svg figures/memory_vs_batch.svg; do
  [ -s "$rep/$f" ]; check "report has $f" $?
done
# Two sizes fix no power law: the fits section says so and draws nothing
# (tests/report_test.cpp draws the figure from three sizes).
[ ! -e "$rep/figures/scaling_fits.svg" ]; check "two sizes: no scaling-fit figure" $?
for svg in "$rep"/figures/*.svg; do
  $py -c 'import sys, xml.etree.ElementTree as E; E.parse(sys.argv[1])' "$svg"
  check "$(basename "$svg") is well-formed XML" $?
done
$py - "$rep/index.html" <<'PY'
import os, re, sys
html = open(sys.argv[1]).read()
base = os.path.dirname(sys.argv[1])
refs = re.findall(r'(?:src|href)="([^"]+)"', html)
assert len(refs) >= 20, refs
missing = [r for r in refs if not os.path.exists(os.path.join(base, r))]
assert not missing, missing
assert "http://" not in html and "https://" not in html
for word in ("Claims", "Parameters", "Loss at equal training FLOPs", "Inference", "Provenance",
             "scale starts", "wht, scale one", "wht, scale matched", "Scaling fits", "Downstream proxy",
             "No fit: a projection's fit needs four or more finished runs over at least three budgets",
             "The claims above use wht runs whose scale started matched"):
    assert word in html, word
assert "metrics.jsonl" in html and "infer.jsonl" in html and "experiment.json" in html
PY
check "index.html: sections present, every link resolves, nothing remote" $?

# `whtlm report` (and its alias `plot`) redraw from the folders.
"$whtlm" report "$ex" --out "$tmp/r2" >"$tmp/r2.out" 2>&1; check "report redraws" $?
[ -s "$tmp/r2/index.html" ]; check "redrawn index.html" $?
"$whtlm" plot "$ex/runs/a-dense-s1" "$ex/runs/a-wht-s1" "$ex/bench/infer.jsonl" --out "$tmp/r3" \
  >/dev/null 2>&1
check "plot alias over run folders and a sweep file" $?
grep -q "L1-d64-h2" "$tmp/r3/report.md"; check "loose runs are named after their shape" $?
refused "report of a missing folder named" "nothere" -- "$whtlm" report "$tmp/nothere" --out "$tmp/r4"
refused "report without --out needs an experiment" "--out is needed" -- \
  "$whtlm" report "$ex/runs/a-dense-s1"

# A learning-rate sweep: every variant at three rates (the largest diverges), then the
# seeded runs at each variant's best rate.
cat >"$tmp/sweep.json" <<EOF
{
  "sizes": [{"name": "a", "layers": 1, "d_model": 64, "heads": 2, "context": 64, "seeds": 2}],
  "projections": ["dense", "wht"], "scale_inits": ["matched", "one"],
  "lr_sweep": {"factors": [0.5, 2, 4e7], "fraction": 0.5, "min_steps": 1},
  "tokens": 1536, "batch": 4, "seq": 32, "lr": 0.003, "eval_every": 4, "eval_batches": 2,
  "evals": 0, "data": "$tmp/corpus.txt", "threads": 1
}
EOF
sw="$tmp/sw"
"$whtlm" experiment --config "$tmp/sweep.json" --out "$sw" --no-bench >/dev/null 2>"$tmp/sw.err"
check "experiment with a learning-rate sweep" $?
grep -q "diverged at step" "$tmp/sw.err"; check "the largest rate diverged and was counted" $?
$py - "$sw" <<'PY'
import json, os, sys
sw = sys.argv[1]
def final(run):
    lines = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
    return [l["val_loss"] for l in lines if "val_loss" in l][-1]
sweep = sorted(os.listdir(os.path.join(sw, "sweep")))
assert len(sweep) == 9, sweep  # dense, wht matched, wht one x 3 rates
best = {}
for name in sweep:
    d = os.path.join(sw, "sweep", name)
    st = json.load(open(os.path.join(d, "train_state.json")))
    o = st["options"]
    key = name.rsplit("-lr", 1)[0]
    if os.path.exists(os.path.join(d, "diverged.json")):
        assert o["lr"] > 1e4, name
        continue
    assert st["step"] == 6, (name, st["step"])  # half of 12 steps
    loss = final(d)
    if key not in best or loss < best[key][0]:
        best[key] = (loss, o["lr"])
assert len(best) == 3, best
runs = sorted(os.listdir(os.path.join(sw, "runs")))
assert len(runs) == 6, runs
for name in runs:
    o = json.load(open(os.path.join(sw, "runs", name, "train_state.json")))["options"]
    want = best[name.rsplit("-s", 1)[0]][1]
    assert abs(o["lr"] - want) < 1e-12 * want, (name, o["lr"], want)
PY
check "9 sweep runs, each seeded run at its variant's best rate" $?
grep -q "Learning rate" "$sw/report/report.md" && [ -s "$sw/report/figures/lr_sweep.svg" ]
check "the report has the sweep's table and figure" $?
grep -q "| a | wht, scale one | .*diverged" "$sw/report/report.md"
check "the sweep table marks the diverged rate" $?
"$whtlm" experiment --config "$tmp/sweep.json" --out "$sw" --no-bench >/dev/null 2>"$tmp/sw2.err"
[ "$(grep -c 'finished earlier, kept' "$tmp/sw2.err")" -eq 15 ]
check "a second start keeps the 9 sweep runs and 6 seeded runs" $?
sed 's/4e7/4e9/' "$tmp/sweep.json" >"$tmp/sweep-bad.json"
refused "a sweep rate beyond the learning-rate bound refused" "lr_sweep.factors" -- \
  "$whtlm" experiment --config "$tmp/sweep-bad.json" --out "$tmp/bad"

finish
