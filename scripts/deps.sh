#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine. Idempotent: it
# installs only what is missing, and only when it runs as root.
set -euo pipefail

need=()
command -v ip >/dev/null       || need+=(iproute2)
command -v ss >/dev/null       || need+=(iproute2)
command -v nft >/dev/null      || need+=(nftables)
command -v xmllint >/dev/null  || need+=(libxml2-utils)
command -v lsof >/dev/null     || need+=(lsof)
[ -f /usr/share/nmap/nmap.dtd ] || need+=(nmap-common)
command -v nmap >/dev/null     || need+=(nmap)
command -v ndiff >/dev/null    || need+=(ndiff)
command -v python3 >/dev/null  || need+=(python3)
command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v masscan >/dev/null  || need+=(masscan)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
command -v redis-server >/dev/null || need+=(redis-server)

if [ ${#need[@]} -eq 0 ]; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing ${need[*]}; run as root (or install them) for the full test suite" >&2
	exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
