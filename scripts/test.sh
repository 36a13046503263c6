#!/usr/bin/env bash
# The whole test suite: what CI runs, and what a contributor runs.
set -euo pipefail
cd "$(dirname "$0")/.."

t0=$SECONDS
bash scripts/deps.sh

echo "== gofmt at $((SECONDS - t0)) s"
bad=$(gofmt -l $(git ls-files -co --exclude-standard '*.go') 2>/dev/null || true)
if [ -n "$bad" ]; then echo "gofmt needed: $bad" >&2; exit 1; fi

echo "== go vet at $((SECONDS - t0)) s"
go vet ./...

echo "== staticcheck at $((SECONDS - t0)) s"
# Pinned; fetched through the Go module proxy on first use.
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

echo "== static build (CGO_ENABLED=0) at $((SECONDS - t0)) s"
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

echo "== tests (fuzz seed corpora included) at $((SECONDS - t0)) s"
# Root-only tests run when we are root; with CI=true they fail rather than skip without it.
# Three runs go at once, since most end-to-end tests wait on timers, relays
# and child processes rather than on the CPU:
#  - race: every package but the end-to-end ones under the race detector;
#  - plain: the end-to-end packages (cli, firewall, forward, report,
#    netlab), whose tests time real relays, rollback timers and browsers and
#    run a child process per case, several times slower under -race. Their
#    engines' concurrency is in packages of the race run (daemon, nflog,
#    watch, knock, scan, sockets, store, wait); `make race` is the whole
#    module under the race detector;
#  - relay: portolan forward runs as a user without privileges in the
#    documented systemd unit (DynamicUser), and the kernel's limits for such
#    users (pipe sizes, descriptors) differ from root's, so the relay's tests
#    run again as one, an unused uid with no capabilities.
e2e='/internal/(cli|firewall|forward|report|netlab)$'
race_pkgs=$(go list ./... | grep -vE "$e2e")
plain_pkgs=$(go list ./... | grep -E "$e2e")
tmp=$(mktemp -d)
chmod 755 "$tmp"
keep=
trap '[ -n "$keep" ] || rm -rf "$tmp"' EXIT
# Package results as they come; the full logs are kept only on failure.
show='^(ok|FAIL|panic:)|^\s*--- (FAIL|SKIP)|WARNING: DATA RACE'
run() { # NAME COMMAND...: runs COMMAND, logging to $tmp/NAME, status in $tmp/NAME.rc
	local name=$1
	shift
	{ "$@" 2>&1; echo $? >"$tmp/$name.rc"; } | tee "$tmp/$name" | grep --line-buffered -E "$show"
}
relay() {
	go test -c -o "$tmp/forward.test" ./internal/forward || return
	cd "$tmp" && setpriv --reuid=64123 --regid=64123 --clear-groups --inh-caps=-all \
		env HOME="$tmp" ./forward.test -test.count=1 -test.v -test.timeout=10m
}
set +e
run race go test -race -count=1 -timeout 20m -v $race_pkgs &
run plain go test -count=1 -timeout 20m -v $plain_pkgs &
if [ "$(id -u)" = 0 ]; then
	(run relay relay >/dev/null) &
fi
wait
set -e
rc() { cat "$tmp/$1.rc" 2>/dev/null || echo 1; }
race_status=$(rc race) plain_status=$(rc plain)
cat "$tmp/race" "$tmp/plain" >"$tmp/all"
status=0
[ $race_status -eq 0 ] || status=$race_status
[ $plain_status -eq 0 ] || status=$plain_status
if [ $status -ne 0 ]; then
	keep=1
	echo "== failures (full logs: $tmp/race, $tmp/plain)"
	grep -B2 -A30 -E -- '--- FAIL|^panic:|DATA RACE' "$tmp/all" | head -300
fi
passed=$(grep -cE '^\s*--- PASS' "$tmp/all" || true)
failed=$(grep -cE '^\s*--- FAIL' "$tmp/all" || true)
skipped=$(grep -cE '^\s*--- SKIP' "$tmp/all" || true)
summary="tests: $passed passed, $failed failed, $skipped skipped"
[ $status -eq 0 ] || { echo "$summary"; exit $status; }

echo "== relay tests as an unprivileged user (ran beside the others)"
if [ "$(id -u)" = 0 ]; then
	relay_status=$(rc relay)
	grep -E '^(ok|FAIL|PASS|panic:|\s+--- FAIL)' "$tmp/relay" || true
	if [ $relay_status -ne 0 ]; then
		keep=1
		grep -B2 -A30 -E -- '--- FAIL|^panic:' "$tmp/relay" | head -200
		echo "relay tests as uid 64123 failed (full log: $tmp/relay)" >&2
		exit $relay_status
	fi
	echo "unprivileged relay tests: $(grep -cE '^\s*--- PASS' "$tmp/relay" || true) passed"
elif [ "${CI:-}" = true ]; then
	echo "CI=true but not root: the unprivileged relay run needs root to drop to another user" >&2
	exit 1
fi

echo "== short fuzz runs at $((SECONDS - t0)) s"
# A wall-clock budget (FUZZBUDGET seconds, default 60): the seed corpora
# ran above already, so this is exploration, bounded whatever the number
# of parsers; the targets take turns from one day to the next.
bash scripts/fuzz.sh

echo "$summary"
echo "== done in $((SECONDS - t0)) s"
