# Shared by the shell tests: a temp folder removed on exit, pass/fail counters,
# `check NAME EXIT-CODE` and `refused NAME PATTERN -- COMMAND...`. Source it after
# setting -uo pipefail; end the test with `finish`, which prints the counts and exits
# non-zero on any failure.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
failures=0
passes=0

check() {  # check NAME EXIT-CODE-OF-THE-CONDITION
  if [ "$2" -eq 0 ]; then passes=$((passes + 1)); else echo "FAIL: $1"; failures=$((failures + 1)); fi
}

finish() {
  echo "$passes passed, $failures failed"
  [ "$failures" -eq 0 ]
}

refused() {  # refused NAME PATTERN -- command...: non-zero exit and PATTERN in stderr
  local name="$1" pattern="$2"
  shift 3
  "$@" >"$tmp/out" 2>"$tmp/err"
  local code=$?
  if [ "$code" -ne 0 ] && grep -q -- "$pattern" "$tmp/err"; then
    passes=$((passes + 1))
  else
    echo "FAIL: $name (exit $code, stderr: $(head -c 300 "$tmp/err"))"
    failures=$((failures + 1))
  fi
}
