#!/usr/bin/env bash
# Runs every Fuzz target in the module. FUZZBUDGET (default 60s) is shared
# evenly among the targets, at least 1s each; FUZZTIME sets one time for
# each target instead. The seed corpora already run in the plain test run:
# this is extra exploration with a bounded cost, not the parsers' tests.
# A finding (a failing input written to testdata/fuzz) fails the run. Go's
# fuzzer sometimes ends a very short run with only "context deadline
# exceeded" when a worker is slow to stop on a loaded machine; that is no
# finding: the target is run once more, and a second such ending is
# reported as a warning.
set -euo pipefail
cd "$(dirname "$0")/.."
budget=${FUZZBUDGET:-60}
budget=${budget%s}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
targets=()
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
		targets+=("$pkg $f")
	done
done
n=${#targets[@]}
[ "$n" -gt 0 ] || exit 0
t=${FUZZTIME:-$(( budget / n > 1 ? budget / n : 1 ))s}
echo "fuzzing $n targets, $t each"
start=$SECONDS
for pt in "${targets[@]}"; do
	set -- $pt
	pkg=$1 f=$2
	for try in 1 2; do
		if go test -run='^$' -fuzz="^$f\$" -fuzztime="$t" "$pkg" >"$log" 2>&1; then
			break
		fi
		if grep -q 'Failing input written\|panic:' "$log" || ! grep -q 'context deadline exceeded' "$log"; then
			echo "fuzz $pkg $f:"
			cat "$log"
			exit 1
		fi
		if [ "$try" = 2 ]; then
			echo "warning: $f ended twice with only 'context deadline exceeded' (no finding)"
		fi
	done
done
echo "fuzzed $n targets in $((SECONDS - start))s"
