#!/usr/bin/env bash
# End-to-end checks of the `whtlm` command line: help, bad input refused with a
# clear message and a non-zero exit, and `bench fwht --json` writing one complete
# JSON line per case. Usage: cli_test.sh PATH/TO/whtlm
set -uo pipefail
whtlm="$1"
source "$(dirname "$0")/testlib.sh"

"$whtlm" --help >"$tmp/help" 2>&1
check "--help exits 0" $?
grep -q "bench" "$tmp/help"; check "--help lists bench" $?
"$whtlm" bench fwht --help >/dev/null 2>&1; check "bench fwht --help exits 0" $?

"$whtlm" bench fwht --sizes 1000 --rows 1 >"$tmp/out" 2>"$tmp/err"
code=$?
[ "$code" -ne 0 ]; check "unsupported size exits non-zero" $?
grep -q "n = 1000 is not supported" "$tmp/err"; check "error names n" $?
grep -q "896 and 1024" "$tmp/err"; check "error names the nearest sizes" $?

"$whtlm" bench fwht --rows 0 >/dev/null 2>"$tmp/err"
[ $? -ne 0 ] && grep -q -- "--rows" "$tmp/err"; check "zero rows refused naming --rows" $?

"$whtlm" bench fwht --sizes 256 --json /nonexistent-dir/x.jsonl >/dev/null 2>"$tmp/err"
[ $? -ne 0 ] && grep -q "/nonexistent-dir/x.jsonl" "$tmp/err"; check "unwritable --json refused naming the file" $?

"$whtlm" bench fwht --sizes 256,768 --rows 3 --threads 1 --reps 1 --min-time 0.0005 \
  --json "$tmp/b.jsonl" >"$tmp/table" 2>/dev/null
check "bench fwht runs" $?
[ "$(wc -l <"$tmp/b.jsonl")" -eq 2 ]; check "one JSON line per case" $?
for key in '"n":768' '"rows":3' '"threads":1' '"fwht_ns":{' '"fused_ns":{' '"memcpy_ns":{' \
           '"unfused_ns":{' '"dense_ns":{' '"median":' '"isa":'; do
  grep -q "$key" "$tmp/b.jsonl"; check "JSON has $key" $?
done
grep -q "768" "$tmp/table"; check "table lists n=768" $?

"$whtlm" bench fwht --sizes 256 --rows 2 --threads 1 --reps 1 --min-time 0.0005 --json - \
  >"$tmp/stdout" 2>/dev/null
[ "$(wc -l <"$tmp/stdout")" -eq 1 ] && ! grep -qv '^{' "$tmp/stdout"
check "--json - leaves only JSON on stdout" $?

"$whtlm" bench fwht --min-time 0 >/dev/null 2>"$tmp/err"
[ $? -ne 0 ] && grep -q -- "--min-time" "$tmp/err"; check "non-positive --min-time refused" $?

"$whtlm" bench fwht --threads 0 >/dev/null 2>"$tmp/err"
[ $? -ne 0 ] && head -1 "$tmp/err" | grep -q -- "--threads: 0 is too small: expected an integer from 1" &&
  ! grep -q "fwht ns/row" "$tmp/err"
check "--threads 0 refused before any work" $?

finish
