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

echo "== staticcheck"
# Pinned; fetched through the Go module proxy on first use.
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

echo "== static build (CGO_ENABLED=0)"
CGO_ENABLED=0 go build -buildvcs=auto -trimpath -o bin/portolan ./cmd/portolan
# The build says what it was built from (GOFLAGS may turn VCS stamping off).
# Checked in a plain clone, as CI's: Go does not stamp from every git
# worktree layout.
rev=$(git rev-parse --short=12 HEAD 2>/dev/null || true)
if [ -d .git ] && [ -n "$rev" ] && ! bin/portolan --version | grep -q "$rev"; then
	echo "bin/portolan --version does not name the revision $rev: $(bin/portolan --version)" >&2; exit 1
fi
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
# The race detector runs on every package but the end-to-end ones, whose
# tests time real relays, firewall rollback timers and browsers and run a
# child process per case (several times slower under -race, past the
# suite's budget): cli, firewall, forward, report, netlab. Their engines'
# concurrency is in the packages that do run with -race (daemon, nflog,
# watch, knock, scan, sockets, store, wait); a whole-module -race run is
# `make race`.
e2e='/internal/(cli|firewall|forward|report|netlab)$'
race_pkgs=$(go list ./... | grep -vE "$e2e")
plain_pkgs=$(go list ./... | grep -E "$e2e")
# Package results as they come (the full log is kept only on failure).
set +e
{
	go test -race -count=1 -timeout 20m -v $race_pkgs 2>&1
	echo "race-status $?"
	go test -count=1 -timeout 20m -v $plain_pkgs 2>&1
	echo "plain-status $?"
} | tee "$log" | grep --line-buffered -E '^(ok|FAIL|panic:)|^\s*--- (FAIL|SKIP)|WARNING: DATA RACE'
status=$(awk '/^(race|plain)-status / && $2 != 0 { s = $2 } END { print s + 0 }' "$log")
set -e
if [ $status -ne 0 ]; then
	echo "== failures (full log: $log)"
	grep -B2 -A30 -E -- '--- FAIL' "$log" | head -300
fi
passed=$(grep -cE '^\s*--- PASS' "$log" || true)
failed=$(grep -cE '^\s*--- FAIL' "$log" || true)
skipped=$(grep -cE '^\s*--- SKIP' "$log" || true)
summary="tests: $passed passed, $failed failed, $skipped skipped"
[ $status -eq 0 ] || { echo "$summary"; exit $status; }
rm -f "$log"

echo "== relay tests as an unprivileged user"
# portolan forward runs as a user without privileges in the documented
# systemd unit (DynamicUser): the kernel's limits for such users (pipe
# sizes, descriptors) differ from root's, so the relay's tests run as one
# too, an unused uid with no capabilities.
if [ "$(id -u)" = 0 ]; then
	udir=$(mktemp -d)
	chmod 755 "$udir"
	go test -c -o "$udir/forward.test" ./internal/forward
	ulog="$udir/log"
	ustatus=0
	(cd "$udir" && setpriv --reuid=64123 --regid=64123 --clear-groups --inh-caps=-all \
		env HOME="$udir" ./forward.test -test.count=1 -test.v -test.timeout=10m) >"$ulog" 2>&1 || ustatus=$?
	grep -E '^(ok|FAIL|PASS|panic:|\s+--- FAIL)' "$ulog" || true
	if [ $ustatus -ne 0 ]; then
		grep -B2 -A30 -E -- '--- FAIL' "$ulog" | head -200
		echo "relay tests as uid 64123 failed" >&2
		exit $ustatus
	fi
	upassed=$(grep -cE '^\s*--- PASS' "$ulog" || true)
	echo "unprivileged relay tests: $upassed passed"
	rm -rf "$udir"
elif [ "${CI:-}" = true ]; then
	echo "CI=true but not root: the unprivileged relay run needs root to drop to another user" >&2
	exit 1
fi

echo "== short fuzz runs"
# A wall-clock budget (FUZZBUDGET seconds, default 90): the seed corpora
# ran above already, so this is exploration, bounded whatever the number
# of parsers; the targets take turns from one day to the next.
bash scripts/fuzz.sh

echo "$summary"
