#!/bin/bash
# run.sh [firewall-bench flags]: portolan's firewall planning benchmark, as
# root, in one command. Builds portolan (CGO_ENABLED=0) and the harness
# (this directory), then times, in network namespaces of its own, the first
# apply of a 10,000-rule profile, re-applying it unchanged and with one rule
# changed, and plan, against `nft -f` of the same rules in the same run.
#
#   bench/firewall/run.sh                 # 10,000 rules, 5 rounds
#   bench/firewall/run.sh -n 2000 -rounds 3
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "run.sh: needs root (network namespaces)" >&2; exit 1; }
command -v nft >/dev/null || apt-get install -y nftables >/dev/null
BIN=${TMPDIR:-/tmp}
CGO_ENABLED=0 go build -o "$BIN/portolan-fwbench" ./cmd/portolan
CGO_ENABLED=0 go build -o "$BIN/firewall-bench" ./bench/firewall
echo "$(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)); kernel $(uname -r); load $(cut -d' ' -f1-3 /proc/loadavg); $(nft --version)"
exec timeout "${LIMIT:-3600}" "$BIN/firewall-bench" -portolan "$BIN/portolan-fwbench" "$@"
