# Shared by the shell tests: a temp folder removed on exit, pass/fail counters and
# `check NAME EXIT-CODE`. Source it after setting -uo pipefail; end the test with
# `finish`, which prints the counts and exits non-zero on any failure.
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
