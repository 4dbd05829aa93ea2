#!/usr/bin/env bash
# Runs every fuzz target in the module for FUZZTIME each (default 10s).
#
# A failing input is always saved under the package's testdata/fuzz and replayed by the next
# run, so a real finding fails twice. A run that fails once and then passes without a saved
# input is the fuzzing engine itself stumbling (a worker lost under load): its output is shown,
# and the target is retried once rather than failing the whole test run.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
fuzztime=${FUZZTIME:-10s}
status=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for dir in $(grep -rl --include='*_test.go' '^func Fuzz' cmd internal | xargs -n1 dirname | sort -u); do
  for target in $(grep -h '^func Fuzz' "$dir"/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do
    log "fuzz $dir $target ($fuzztime)"
    for attempt in 1 2; do
      if go test "./$dir" -run '^$' -fuzz "^$target\$" -fuzztime "$fuzztime" -fuzzminimizetime 200x >"$out" 2>&1; then
        break
      fi
      grep -v '^fuzz: elapsed' "$out" | tail -40 >&2
      if [ $attempt = 2 ] || [ -n "$(git status --porcelain -- "$dir/testdata/fuzz")" ]; then
        log "FAIL: $dir $target"
        status=1
        break
      fi
      log "$target failed without a saved input; retrying once"
    done
  done
done
exit $status
