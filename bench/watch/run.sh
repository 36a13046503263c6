#!/bin/bash
# run.sh [watch-bench flags]: portolan watch's benchmark, as root, in one
# command, in network namespaces of its own: detection-to-block latency
# (target < 100 ms) and attempts/s captured with every loss counted
# (target 50,000/s), with fail2ban's port-scan recipe and psad side by
# side (psad on the same scans and the same paced attempts).
#
# psad reads the kernel log, which shows LOG lines from a network
# namespace only while the machine-wide sysctl
# net.netfilter.nf_log_all_netns is 1: watch-bench sets it for the psad
# parts and puts the old value back; the trap below does too, should
# watch-bench be killed.
#
#   bench/watch/run.sh
#   bench/watch/run.sh -rounds 10 -rates 50000 -duration 3s
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "run.sh: needs root (network namespaces)" >&2; exit 1; }
command -v nft >/dev/null || apt-get install -y nftables >/dev/null
# fail2ban runs side by side (its usual port-scan recipe, see fail2ban.go).
command -v fail2ban-server >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fail2ban >/dev/null
command -v psad >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends psad >/dev/null || true
OLD_LOG_ALL_NETNS=$(cat /proc/sys/net/netfilter/nf_log_all_netns)
trap 'echo "$OLD_LOG_ALL_NETNS" > /proc/sys/net/netfilter/nf_log_all_netns' EXIT
BIN=${TMPDIR:-/tmp}
CGO_ENABLED=0 go build -o "$BIN/watch-bench" ./bench/watch
echo "$(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)); kernel $(uname -r); load $(cut -d' ' -f1-3 /proc/loadavg)"
timeout "${LIMIT:-900}" "$BIN/watch-bench" "$@"
