#!/usr/bin/env bash
# Hostile-input cases: corrupt, extreme and malformed input to every whtlm command,
# each stating what a correct whtlm does (tests/hostile/cases.sh; the DSL and the
# verdicts are in tests/hostile/README.md).
#
#   run.sh WHTLM [--sweep FILE.tsv] [--jobs N] [--only REGEX] [--keep] [--timeout S]
#
# Test mode (default): prints every case that is not `clear` or `ok` and the count
# per verdict; exits non-zero unless all are. --sweep FILE also writes one TSV row per
# case and always exits 0 (unless the fixtures cannot be made). --jobs: cases run in
# parallel (2). --only: the cases whose id matches REGEX. --keep: keep the work
# folder. --timeout: seconds a case may run (60, or HOSTILE_TIMEOUT).
# Each case runs in its own folder under `ulimit -v` 4 GiB (not for an ASan build,
# or with HOSTILE_NO_MEMCAP=1; HOSTILE_MEMCAP_KB changes it); a peak RSS above 1 GiB
# (HOSTILE_RSS_KB; 3 GiB under ASan) is a memory blow-up too.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
usage() { sed -n '5,6p' "${BASH_SOURCE[0]}" | sed 's/^# *//' >&2; exit 2; }

[ $# -ge 1 ] || usage
WHTLM="$1"
shift
sweep="" jobs=2 only="" keep=0 limit_default="${HOSTILE_TIMEOUT:-60}"
while [ $# -gt 0 ]; do
  case "$1" in
    --sweep) sweep="${2:?--sweep needs a file}"; shift 2 ;;
    --jobs) jobs="${2:?--jobs needs a number}"; shift 2 ;;
    --only) only="${2:?--only needs a regex}"; shift 2 ;;
    --keep) keep=1; shift ;;
    --timeout) limit_default="${2:?--timeout needs seconds}"; shift 2 ;;
    *) usage ;;
  esac
done
case "$WHTLM" in /*) ;; *) WHTLM="$PWD/$WHTLM" ;; esac
[ -x "$WHTLM" ] || { echo "hostile: $WHTLM is not an executable" >&2; exit 2; }
[ -n "$sweep" ] && case "$sweep" in /*) ;; *) sweep="$PWD/$sweep" ;; esac

# --- the DSL (see README.md) ---------------------------------------------------------
C_ID=() C_GROUP=() C_EXPECT=() C_WORDS=() C_SETUP=() C_CHECK=() C_ALLOW=() C_WATCH=()
C_CMD=() C_LIMIT=()
cur_group="misc" next_setup="" next_check="" next_allow="" next_watch="" next_limit=""

group() { cur_group="$1"; }
given() { next_setup+="${next_setup:+; }$1"; }  # shell run in the case folder first
check() { next_check+="${next_check:+ && }$1"; }  # shell run afterwards; must succeed
# allow [-a] PATH...: may change when the command succeeds (-a: whatever its exit)
allow() {
  local mark="ok:" p
  [ "${1:-}" = -a ] && { mark="always:"; shift; }
  for p in "$@"; do next_allow+="$mark$p"$'\n'; done
}
watch() { local p; for p in "$@"; do next_watch+="$p"$'\n'; done; }  # also snapshot
limit() { next_limit="$1"; }  # this case's timeout, seconds

# An option given again replaces the earlier one (so a case can override an option
# of a base array such as TRAIN: `"${TRAIN[@]}" --batch 0`); CLI11 would refuse the
# repeat. Options that take no value, and --special (a list), are known by name.
flag_options=" --quiet --json --jsonl --no-bench --no-dense --no-special --allow-special --time --print-config --quick --help "
dedup_options() {  # dedup_options ARGS...: sets argv (of the caller) to ARGS, deduplicated
  local -a units=() names=()
  while [ $# -gt 0 ]; do
    if [[ "$1" == --?* ]] && [[ "$flag_options" != *" $1 "* ]] && [ $# -ge 2 ]; then
      units+=("$1"$'\x1f'"$2") names+=("$1")
      shift 2
    else
      units+=("$1") names+=("$1")
      shift
    fi
  done
  local -A seen=()
  local -a kept=()
  local k
  for ((k = ${#units[@]} - 1; k >= 0; k--)); do
    if [[ "${names[k]}" == --?* ]] && [ "${names[k]}" != --special ]; then
      [ -n "${seen[${names[k]}]:-}" ] && continue
      seen[${names[k]}]=1
    fi
    kept=("${units[k]}" "${kept[@]}")
  done
  argv=()
  for k in "${kept[@]}"; do
    if [[ "$k" == *$'\x1f'* ]]; then argv+=("${k%%$'\x1f'*}" "${k#*$'\x1f'}"); else argv+=("$k"); fi
  done
}

# hcase ID error|ok|safe [WORD...] -- whtlm ARGS...   (one command, argv as written)
# hcase ID error|ok|safe [WORD...] --sh 'SHELL'       (a snippet; `whtlm` is a function)
hcase() {
  local id="$1" expect="$2" words="" cmd=""
  shift 2
  case "$expect" in error | ok | safe) ;; *) echo "hostile: case $id: expect error, ok or safe" >&2; exit 2 ;; esac
  while [ $# -gt 0 ] && [ "$1" != "--" ] && [ "$1" != "--sh" ]; do
    words+="$1"$'\n'
    shift
  done
  case "${1:-}" in
    --)
      shift
      [ "${1:-}" = whtlm ] || { echo "hostile: case $id: the command must start with whtlm" >&2; exit 2; }
      shift
      # shellcheck disable=SC2016  # expands in the case's shell
      cmd='exec "$WHTLM"'
      local -a argv=()
      dedup_options "$@"
      [ "${#argv[@]}" -gt 0 ] && cmd+=" $(printf '%q ' "${argv[@]}")"
      ;;
    --sh) cmd="$2" ;;
    *) echo "hostile: case $id: no -- or --sh before the command" >&2; exit 2 ;;
  esac
  local i
  for i in "${C_ID[@]}"; do
    [ "$i" = "$id" ] && { echo "hostile: case id $id is used twice" >&2; exit 2; }
  done
  C_ID+=("$id") C_GROUP+=("$cur_group") C_EXPECT+=("$expect") C_WORDS+=("$words")
  C_SETUP+=("$next_setup") C_CHECK+=("$next_check") C_ALLOW+=("$next_allow")
  C_WATCH+=("$next_watch") C_CMD+=("$cmd") C_LIMIT+=("${next_limit:-$limit_default}")
  next_setup="" next_check="" next_allow="" next_watch="" next_limit=""
}

# shellcheck source=cases.sh
source "$here/cases.sh"
if [ -n "$next_setup$next_check$next_allow$next_watch$next_limit" ]; then
  echo "hostile: cases.sh ends with given/check/allow/watch/limit not followed by hcase" >&2
  exit 2
fi

# --- the work folder, fixtures and the environment of every case ---------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/whtlm-hostile.XXXXXX")"
cleanup() {
  local pids
  mapfile -t pids < <(jobs -p)
  [ "${#pids[@]}" -gt 0 ] && kill "${pids[@]}" 2>/dev/null
  if [ "$keep" = 1 ]; then echo "hostile: work folder kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
export WHTLM FIX="$work/fix" HOSTILE_LIB="$here/lib.sh" XDG_CACHE_HOME="$work/cache"
mkdir -p "$work/cases" "$work/logs" "$work/results" "$XDG_CACHE_HOME"

memcap_kb="${HOSTILE_MEMCAP_KB:-4194304}"
if [ "${HOSTILE_NO_MEMCAP:-0}" = 1 ] || ldd "$WHTLM" 2>/dev/null | grep -q asan ||
  grep -qa '__asan_init' "$WHTLM"; then
  memcap_kb=""  # ASan reserves terabytes of address space: use its own RSS limit instead
  export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}allocator_may_return_null=1:hard_rss_limit_mb=4096"
  rss_limit_kb="${HOSTILE_RSS_KB:-3145728}"
fi
# Peak resident memory of each case (GNU time), where there is one: a case above the
# limit blew up memory even when the cap made it fail in some other way.
rss_limit_kb="${rss_limit_kb:-${HOSTILE_RSS_KB:-1048576}}"
rss_cmd=()
[ -x /usr/bin/time ] && rss_cmd=(/usr/bin/time -f %M -o /dev/fd/3)

# shellcheck source=lib.sh
source "$here/lib.sh"
start_fix=$SECONDS
if ! (make_fixtures) >"$work/logs/fixtures.log" 2>&1; then
  echo "hostile: making the fixtures failed:" >&2
  tail -n 20 "$work/logs/fixtures.log" >&2
  exit 2
fi

# shellcheck disable=SC2016  # expands in the case's shell
prelude='source "$HOSTILE_LIB"; whtlm() { "$WHTLM" "$@"; }; '
crash_re='AddressSanitizer|LeakSanitizer|runtime error:|terminate called|Segmentation fault|libgomp:|core dumped'
memory_re='bad_alloc|max_size\(\)|Cannot allocate memory|out of memory|allocation-size-too-big|hard rss limit'
asan_memory_re='allocation-size-too-big|hard rss limit|allocator is out of memory|out of memory: allocator'

# Every regular file under the case folder (and the watched paths), with its sha256.
snapshot() {  # snapshot WATCH-LIST
  local w
  {
    find . -type f -print0
    while IFS= read -r w; do
      [ -n "$w" ] && [ -e "$w" ] && find "$w" -type f -print0
    done <<<"$1"
  } | sort -zu | xargs -0 -r sha256sum 2>/dev/null
}

# The files of BEFORE that are gone or changed in AFTER, other than ALLOWed paths.
lost_files() {  # lost_files BEFORE AFTER ALLOW-LIST
  awk -v allow="$3" '
    BEGIN { n = split(allow, a, "\n"); for (i = 1; i <= n; i++) if (a[i] != "") {
              p = a[i]; if (p !~ /^\//) p = "./" p; sub(/\/+$/, "", p); ok[++m] = p } }
    function allowed(f,   i) { for (i = 1; i <= m; i++)
                                 if (f == ok[i] || index(f, ok[i] "/") == 1) return 1
                               return 0 }
    NR == FNR { h[substr($0, 67)] = $1; next }
    { f = substr($0, 67); if (allowed(f)) next
      if (!(f in h)) print "removed " f; else if (h[f] != $1) print "changed " f }' "$2" "$1"
}

has_words() {  # has_words STDERR-FILE WORDS: the first missing word, if any
  local word alt found
  while IFS= read -r word; do
    [ -z "$word" ] && continue
    found=0
    IFS='|' read -ra alts <<<"$word"
    for alt in "${alts[@]}"; do grep -qiF -- "$alt" "$1" && { found=1; break; }; done
    [ "$found" = 1 ] || { printf '%s' "$word"; return 1; }
  done <<<"$2"
  return 0
}

# One TSV row; tabs and newlines inside a field become spaces, an empty field "-".
row() {
  local f sep=""
  for f in "$@"; do
    f="${f//[$'\t\n\r']/ }"
    printf '%s%s' "$sep" "${f:--}"
    sep=$'\t'
  done
  printf '\n'
}

run_case() {  # run_case INDEX: runs one case, writes its result row to results/INDEX
  local i="$1" id="${C_ID[$1]}" dir out err rc secs t0 verdict detail="" lost missing
  dir="$work/cases/$id" out="$work/logs/$id.out" err="$work/logs/$id.err"
  mkdir -p "$dir"
  cp "$FIX/small.txt" "$FIX/val.txt" "$dir/"  # every case starts with the user's text files
  if ! (cd "$dir" && timeout 120 bash -c "$prelude${C_SETUP[i]}") >"$work/logs/$id.setup" 2>&1; then
    row "$id" "${C_GROUP[i]}" "${C_EXPECT[i]}" broken - 0 \
      "$(head -c 200 "$work/logs/$id.setup")" "the setup failed" >"$work/results/$i"
    return
  fi
  (cd "$dir" && snapshot "${C_WATCH[i]}") >"$work/logs/$id.before"
  t0=$(date +%s.%N)
  {  # (bash's own "Segmentation fault" notice about the subshell goes to /dev/null)
    (
      cd "$dir" || exit 99
      ulimit -c 0
      ulimit -f 1048576  # KiB: no case writes a GiB
      [ -n "$memcap_kb" ] && ulimit -v "$memcap_kb"
      exec "${rss_cmd[@]}" timeout -k 5 "${C_LIMIT[i]}" bash -c "$prelude${C_CMD[i]}"
    ) >"$out" 2>"$err" </dev/null 3>"$work/logs/$id.rss"
  } 2>/dev/null
  rc=$?
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  (cd "$dir" && snapshot "${C_WATCH[i]}") >"$work/logs/$id.after"
  local allowed
  allowed="$(sed -n 's/^always://p' <<<"${C_ALLOW[i]}")"
  [ "$rc" = 0 ] && allowed+=$'\n'"$(sed -n 's/^ok://p' <<<"${C_ALLOW[i]}")"
  lost="$(lost_files "$work/logs/$id.before" "$work/logs/$id.after" "$allowed" | head -n 5 |
    tr '\n' ' ')"

  local rss
  rss="$(tail -n 1 "$work/logs/$id.rss" 2>/dev/null)"
  [[ "$rss" =~ ^[0-9]+$ ]] || rss=0

  local checked=0
  if [ -n "${C_CHECK[i]}" ]; then
    (cd "$dir" && OUT="$out" ERR="$err" RC="$rc" timeout 120 bash -c "$prelude${C_CHECK[i]}") \
      >"$work/logs/$id.check" 2>&1
    checked=$?
  fi

  if [ "$rc" = 124 ] || { [ "$rc" = 137 ] && awk -v s="$secs" -v l="${C_LIMIT[i]}" 'BEGIN { exit !(s >= l) }'; }; then
    verdict=hang detail="killed after ${C_LIMIT[i]} s"
  elif grep -qE "$asan_memory_re" "$err"; then
    verdict=memory detail="ASan memory limit"
  elif [ "$rc" -ge 128 ] || grep -qE "$crash_re" "$err"; then
    verdict=crash
    [ "$rc" -ge 128 ] && detail="signal $((rc - 128))"
    grep -qE "$memory_re" "$err" && detail+="${detail:+; }also memory"
  elif grep -qE "$memory_re" "$err"; then
    verdict=memory
  elif [ "$rss" -gt "$rss_limit_kb" ]; then
    verdict=memory detail="peak RSS $((rss / 1024)) MiB"
  elif [ -n "$lost" ]; then
    verdict=data-loss detail="$lost"
  elif [ "${C_EXPECT[i]}" = error ] || { [ "${C_EXPECT[i]}" = safe ] && [ "$rc" != 0 ]; }; then
    if [ "$rc" = 0 ]; then
      verdict=wrong detail="exit 0, expected an error"
    elif [ "$checked" != 0 ]; then
      verdict=wrong detail="check failed: ${C_CHECK[i]}"
    elif [ ! -s "$err" ]; then
      verdict=vague detail="no message"
    elif ! missing="$(has_words "$err" "${C_WORDS[i]}")"; then
      verdict=vague detail="message lacks '$missing'"
    else
      verdict=clear
    fi
  else
    if [ "$rc" != 0 ]; then
      verdict=wrong detail="exit $rc, expected success"
    elif [ "$checked" != 0 ]; then
      verdict=wrong detail="check failed: ${C_CHECK[i]}"
    else
      verdict=ok
    fi
  fi
  [ -n "$lost" ] && [ "$verdict" != data-loss ] && detail+="${detail:+; }also lost: $lost"
  row "$id" "${C_GROUP[i]}" "${C_EXPECT[i]}" "$verdict" "$rc" "$secs" \
    "$(head -c 200 "$err")" "$detail" >"$work/results/$i"
}

# --- run the selected cases, a few at a time ----------------------------------------
selected=()
for i in "${!C_ID[@]}"; do
  if [ -z "$only" ] || [[ "${C_ID[i]}" =~ $only ]]; then selected+=("$i"); fi
done
echo "hostile: ${#selected[@]} cases, $jobs at a time, against $WHTLM" \
  "(fixtures in $((SECONDS - start_fix)) s; memory cap ${memcap_kb:-none}${memcap_kb:+ KiB})"
running=0
for i in "${selected[@]}"; do
  run_case "$i" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n
    running=$((running - 1))
  fi
done
wait

# --- report ------------------------------------------------------------------------
declare -A count=()
failed=0
[ -n "$sweep" ] && printf 'id\tgroup\texpected\tverdict\texit\tseconds\tstderr\tdetail\n' >"$sweep"
for i in "${selected[@]}"; do
  IFS=$'\t' read -r id grp expect verdict rc secs _ detail <"$work/results/$i"
  count[$verdict]=$((${count[$verdict]:-0} + 1))
  [ -n "$sweep" ] && cat "$work/results/$i" >>"$sweep"
  if [ "$verdict" != clear ] && [ "$verdict" != ok ]; then
    failed=$((failed + 1))
    [ "$detail" = - ] && detail=""
    echo "FAIL $id [$grp, expected $expect]: $verdict (exit $rc, $secs s)${detail:+: $detail}"
    head -n 3 "$work/logs/$id.err" 2>/dev/null | cut -c1-200 | sed 's/^/    /'
  fi
done
summary=""
for v in clear ok hang crash memory data-loss wrong vague broken; do
  [ -n "${count[$v]:-}" ] && summary+=" $v ${count[$v]},"
done
echo "hostile: ${#selected[@]} cases:${summary%,}"
[ -n "$sweep" ] && { echo "hostile: sweep written to $sweep"; exit 0; }
[ "$failed" -eq 0 ]
