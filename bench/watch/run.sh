#!/bin/bash
# run.sh [watch-bench flags]: portolan watch's benchmark, as root, in one
# command, in network namespaces of its own: detection-to-block latency
# (target < 100 ms) and attempts/s captured with every loss counted
# (target 50,000/s).
#
#   bench/watch/run.sh
#   bench/watch/run.sh -rounds 10 -rates 50000 -duration 3s
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "run.sh: needs root (network namespaces)" >&2; exit 1; }
command -v nft >/dev/null || apt-get install -y nftables >/dev/null
# fail2ban runs side by side (its usual port-scan recipe, see fail2ban.go).
command -v fail2ban-server >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fail2ban >/dev/null
BIN=${TMPDIR:-/tmp}
CGO_ENABLED=0 go build -o "$BIN/watch-bench" ./bench/watch
echo "$(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)); kernel $(uname -r); load $(cut -d' ' -f1-3 /proc/loadavg)"
exec timeout "${LIMIT:-900}" "$BIN/watch-bench" "$@"
