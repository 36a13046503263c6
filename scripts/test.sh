#!/usr/bin/env bash
# The whole test suite: what CI runs, and what a contributor runs.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh

echo "== gofmt"
bad=$(gofmt -l $(git ls-files -co --exclude-standard '*.go') 2>/dev/null || true)
if [ -n "$bad" ]; then echo "gofmt needed: $bad" >&2; exit 1; fi

echo "== go vet"
go vet ./...

echo "== static build (CGO_ENABLED=0)"
CGO_ENABLED=0 go build -trimpath -o bin/portolan ./cmd/portolan
if file bin/portolan 2>/dev/null | grep -q 'dynamically linked'; then
	echo "bin/portolan is dynamically linked" >&2; exit 1
fi
if readelf -l bin/portolan 2>/dev/null | grep -q INTERP; then
	echo "bin/portolan has an ELF interpreter: not static" >&2; exit 1
fi

echo "== tests (fuzz seed corpora included)"
# Root-only tests run when we are root; with CI=true they fail rather than skip without it.
log=$(mktemp)
status=0
go test -count=1 -timeout 20m -v ./... >"$log" 2>&1 || status=$?
grep -E '^(ok|FAIL|---|panic:|\s+--- FAIL)' "$log" | grep -v -- '--- PASS' || true
if [ $status -ne 0 ]; then
	echo "== failures (full log: $log)"
	grep -B2 -A30 -E -- '--- FAIL' "$log" | head -300
fi
passed=$(grep -cE '^\s*--- PASS' "$log" || true)
failed=$(grep -cE '^\s*--- FAIL' "$log" || true)
skipped=$(grep -cE '^\s*--- SKIP' "$log" || true)
summary="tests: $passed passed, $failed failed, $skipped skipped"
[ $status -eq 0 ] || { echo "$summary"; exit $status; }

echo "== short fuzz runs"
FUZZTIME=${FUZZTIME:-3s} bash scripts/fuzz.sh

echo "$summary"
