#!/bin/bash
# run.sh [knock-bench flags]: time from the last knock (or the SPA datagram)
# to the first accepted connection on the protected port, for portolan
# knockd (SPA and a sequence), knockd 0.8 and fwknopd 2.6.10 (Debian's
# packages, installed here if missing), in network namespace pairs of its
# own, rounds interleaved. As root.
#
#   bench/knock/run.sh                 # 50 rounds each
#   bench/knock/run.sh -rounds 200 -only portolan-spa,knockd
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "run.sh: needs root (network namespaces)" >&2; exit 1; }
need=()
command -v nft >/dev/null || need+=(nftables)
command -v iptables >/dev/null || need+=(iptables)
command -v knockd >/dev/null || need+=(knockd)
command -v fwknopd >/dev/null || need+=(fwknop-server)
command -v fwknop >/dev/null || need+=(fwknop-client)
if [ ${#need[@]} -gt 0 ]; then

	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >/dev/null
fi
BIN=${TMPDIR:-/tmp}
CGO_ENABLED=0 go build -o "$BIN/portolan-knockbench" ./cmd/portolan
CGO_ENABLED=0 go build -o "$BIN/knock-bench" ./bench/knock
echo "$(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPUs; kernel $(uname -r); load $(cut -d' ' -f1-3 /proc/loadavg); $(knockd --version 2>&1 | head -1); $(fwknopd --version 2>&1 | head -1)"
exec timeout "${LIMIT:-1200}" "$BIN/knock-bench" -portolan "$BIN/portolan-knockbench" "$@"
