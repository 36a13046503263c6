#!/usr/bin/env bash
# Runs every Fuzz target in the module for FUZZTIME each (default 5s).
# A finding (a failing input written to testdata/fuzz) fails the run. Go's
# fuzzer sometimes ends a very short run with only "context deadline
# exceeded" when a worker is slow to stop on a loaded machine; that is no
# finding: the target is run once more, and a second such ending is
# reported as a warning.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${FUZZTIME:-5s}
log=$(mktemp)
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
		echo "fuzz $pkg $f ($t)"
		for try in 1 2; do
			if go test -run='^$' -fuzz="^$f\$" -fuzztime="$t" "$pkg" >"$log" 2>&1; then
				break
			fi
			if grep -q 'Failing input written\|panic:' "$log" || ! grep -q 'context deadline exceeded' "$log"; then
				cat "$log"
				exit 1
			fi
			if [ "$try" = 2 ]; then
				echo "warning: $f ended twice with only 'context deadline exceeded' (no finding)"
			fi
		done
	done
done
