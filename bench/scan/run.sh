#!/bin/bash
# run.sh [scan-bench flags]: portolan's scan benchmark, as root, in one command.
#
# Builds portolan (CGO_ENABLED=0) and the harness (this directory), then runs
# the harness: a netlab test network (scanner and target namespaces), portolan,
# nmap -sT -T4, nmap -sT --min-rate 5000 and, if built, naabu's connect scan,
# then portolan's peak RSS over 10 million probes. Prints the tables; raw
# outputs and results.md go to -out DIR (default /tmp/scan-bench-DATE).
#
#   bench/scan/run.sh                      # 3 runs of everything (about 20 min loaded)
#   bench/scan/run.sh -runs 5 -silent 0    # more runs, no silent-network RSS run
#   bench/scan/run.sh -tools portolan,nmap-T4 -scenarios all-v4 -memory=false
#   BUILD_NAABU=1 bench/scan/run.sh        # build naabu first (cgo + libpcap-dev, ~5 min)
#
# Environment: NAABU=path (default /tmp/naabu-build/naabu if present),
# BUILD_NAABU=1, LIMIT=seconds for the whole run (default 3600).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "run.sh: needs root (network namespaces)" >&2; exit 1; }

need=()
command -v nmap >/dev/null || need+=(nmap)
command -v masscan >/dev/null || need+=(masscan)
command -v nft >/dev/null || need+=(nftables)
if [ ${#need[@]} -gt 0 ]; then apt-get install -y "${need[@]}" >/dev/null; fi

BIN=${TMPDIR:-/tmp}
CGO_ENABLED=0 go build -o "$BIN/portolan-bench" ./cmd/portolan
CGO_ENABLED=0 go build -o "$BIN/scan-bench" ./bench/scan

# naabu: `go install ...@latest` is refused by the module proxy here; the
# pinned v2.3.5 builds (cgo, libpcap).
NAABU_DIR=${NAABU_DIR:-/tmp/naabu-build}
if [ -z "${NAABU:-}" ] && [ "${BUILD_NAABU:-0}" = 1 ] && [ ! -x "$NAABU_DIR/naabu" ]; then
	dpkg -s libpcap-dev >/dev/null 2>&1 || apt-get install -y libpcap-dev >/dev/null
	mkdir -p "$NAABU_DIR"
	(
		cd "$NAABU_DIR"
		[ -f go.mod ] || printf 'module naabubuild\n\ngo 1.24\n' > go.mod
		export GOFLAGS=-mod=mod CGO_ENABLED=1
		timeout 900 go get github.com/projectdiscovery/naabu/v2@v2.3.5
		timeout 900 go build -o naabu github.com/projectdiscovery/naabu/v2/cmd/naabu
	) || echo "run.sh: naabu did not build; running without it" >&2
fi
if [ -z "${NAABU:-}" ] && [ -x "$NAABU_DIR/naabu" ]; then NAABU=$NAABU_DIR/naabu; fi

# The harness runs in the background so that a trapped Ctrl-C or SIGTERM
# reaches it at once; it stops the running tool and removes its namespaces.
# timeout bounds the whole run; -sweep removes what a SIGKILL might leave.
timeout -s INT -k 60 "${LIMIT:-3600}" "$BIN/scan-bench" -portolan "$BIN/portolan-bench" ${NAABU:+-naabu "$NAABU"} "$@" &
pid=$!
trap 'kill -INT $pid 2>/dev/null || true' INT TERM
while kill -0 $pid 2>/dev/null; do wait $pid || true; done
wait $pid && rc=0 || rc=$?
"$BIN/scan-bench" -sweep || true
exit $rc
