#!/usr/bin/env bash
# Runs the module's Fuzz targets. With FUZZTIME, every target runs that
# long. Without it, the run fits a wall-clock budget, FUZZBUDGET seconds
# (default 60): each target fuzzes for 1s (its start-up, the instrumented
# build and the baseline over its corpus, costs more on a busy machine),
# starting at a target that moves by one each day so that every parser gets
# its turn, and no target starts once the budget is spent. The seed corpora
# already run in the plain test run: this is extra exploration with a
# bounded cost, not the parsers' tests.
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
t=${FUZZTIME:-1s}
first=0
if [ -z "${FUZZTIME:-}" ]; then
	first=$(( $(date +%s) / 86400 % n ))
	echo "fuzzing for ${budget}s, ${t} a target, from target $((first + 1)) of $n"
else
	budget=0
	echo "fuzzing $n targets, $t each"
fi
start=$SECONDS
done_n=0
for ((i = 0; i < n; i++)); do
	if [ "$budget" -gt 0 ] && [ $((SECONDS - start)) -ge "$budget" ]; then
		break
	fi
	set -- ${targets[$(( (first + i) % n ))]}
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
	done_n=$((done_n + 1))
done
echo "fuzzed $done_n of $n targets in $((SECONDS - start))s"
