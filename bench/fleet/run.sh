#!/bin/bash
# run.sh [fleet-bench flags]: what storing a 65,535-port sweep into
# PostgreSQL costs against --no-store (and SQLite), as root, in one command.
#
#   bench/fleet/run.sh              # 5 runs of each configuration
#   bench/fleet/run.sh -runs 9
#
# Needs PostgreSQL's server programs (Debian's postgresql package;
# scripts/deps.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "run.sh: needs root (network namespaces)" >&2; exit 1; }
BIN=${TMPDIR:-/tmp}
CGO_ENABLED=0 go build -o "$BIN/portolan-bench" ./cmd/portolan
CGO_ENABLED=0 go build -o "$BIN/fleet-bench" ./bench/fleet
exec "$BIN/fleet-bench" -portolan "$BIN/portolan-bench" "$@"
