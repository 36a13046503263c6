#!/usr/bin/env bash
# Socket-table benchmark (issue 3): `portolan who` and `portolan ls -a`
# against ss, lsof and fuser, in the same run, on a full socket table:
#
#   one   a helper process holds about 20,000 loopback sockets (a listener on
#         127.0.0.1:$PORT opened first, 100 more listeners, connected pairs)
#   many  $PROCS processes hold $PER listeners each; the middle one holds $PORT
#   netns $NETNS network namespaces; a process in one of them holds $PORT:
#         who --all-netns against ip netns exec NS ss in a loop over them all;
#         and ls -x (unix sockets) against ss -xp on the machine's own table
#
# Commands are timed interleaved by bench/sockets/cmp (round after round, each
# command once, so a drifting machine load weighs on all alike), then with
# hyperfine when it is installed (HYPERFINE=0 skips it). Prints Markdown for
# bench/RESULTS.md on stdout; progress on stderr.
#
# Loopback only (127.0.0.0/8), every loop bounded (the holders exit after
# 30 minutes in any case). Run as root so that every tool sees every owner:
#   sudo bench/sockets/run.sh | tee -a /tmp/sockets-results.md
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=${ROUNDS:-15}
N=${N:-20000}
PROCS=${PROCS:-1000}
PER=${PER:-20}
PORT=${PORT:-8080}
HYPERFINE=${HYPERFINE:-1}
NETNS=${NETNS:-50}
SCENARIOS=${SCENARIOS:-"one many netns"}

say() { echo "run.sh: $*" >&2; }

for tool in ss lsof fuser; do
	command -v "$tool" >/dev/null || { say "needs $tool (apt-get install iproute2 lsof psmisc)"; exit 1; }
done
if [ "$HYPERFINE" = 1 ] && ! command -v hyperfine >/dev/null; then
	say "hyperfine not found (apt-get install hyperfine): interleaved timings only"
	HYPERFINE=0
fi
if [ -n "$(ss -Htuln "sport = :$PORT")" ]; then
	say "port $PORT is in use here; pick another with PORT=..."
	exit 1
fi

work=$(mktemp -d)
holder_pid=
nsprefix=plb-$$-
cleanup() {
	if [ -n "$holder_pid" ]; then kill "$holder_pid" 2>/dev/null || true; wait "$holder_pid" 2>/dev/null || true; fi
	for ns in $(ip netns list 2>/dev/null | awk -v p="$nsprefix" 'index($1, p) == 1 {print $1}'); do
		ip netns delete "$ns" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT

say "building"
CGO_ENABLED=0 go build -trimpath -o "$work/portolan" ./cmd/portolan
go build -o "$work/holder" ./bench/sockets/holder
go build -o "$work/cmp" ./bench/sockets/cmp
P="$work/portolan"

# hold [ip netns exec NS] ARGS...: start the holder and wait until its sockets are in place.
hold() {
	rm -f "$work/ready"
	local pre=()
	if [ "$1" = ip ]; then pre=("$1" "$2" "$3" "$4"); shift 4; fi
	"${pre[@]}" "$work/holder" "$@" -port "$PORT" -ready "$work/ready" -max 30m 2>"$work/holder.log" &
	holder_pid=$!
	for _ in $(seq 1 600); do
		[ -s "$work/ready" ] && return 0
		kill -0 "$holder_pid" 2>/dev/null || { cat "$work/holder.log" >&2; exit 1; }
		sleep 0.1
	done
	say "holder not ready after 60 s"; exit 1
}

unhold() {
	kill "$holder_pid"; wait "$holder_pid" 2>/dev/null || true; holder_pid=
}

# compare TITLE TARGET CMD...: interleaved timings (and hyperfine's) of CMD...
# against the first.
compare() {
	local title=$1 target=$2; shift 2
	say "timing: $title"
	"$work/cmp" -rounds "$ROUNDS" -title "$title" -target "$target" -- "$@" | sed 's|'"$work"'/||g'
	if [ "$HYPERFINE" = 1 ]; then
		hyperfine -N --style none --warmup 2 --runs "$ROUNDS" --export-markdown "$work/hf.md" "$@" >/dev/null 2>&1 || true
		echo
		echo "hyperfine, same commands, back to back:"
		echo
		sed 's|'"$work"'/||g' "$work/hf.md"
	fi
}

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
echo
echo "## Socket table: who, ls (bench/sockets/run.sh), $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "Machine: $(nproc) CPUs ($cpu), Linux $(uname -r), load average at start $(cut -d' ' -f1-3 /proc/loadavg)."
echo "Tools: $("$P" version), $(ss -V | head -1), lsof $(lsof -v 2>&1 | awk '/revision/ {print $2; exit}'), $(fuser -V 2>&1 | head -1)."
echo "Measured: wall time of each command with output to /dev/null, as root, $ROUNDS interleaved rounds;"
echo "CPU = user + system time of the command. Ratios are other / portolan: above 1 means portolan is faster."

for sc in $SCENARIOS; do
	case $sc in
	one)
		hold -mode one -n "$N"
		echo; echo "### One process holding ~$N loopback sockets"; echo
		echo "$(sed 's/^ready //' "$work/ready"). Socket table: $(ss -s | sed -n 2p)."
		;;
	many)
		hold -mode many -procs "$PROCS" -per "$PER"
		echo; echo "### $PROCS processes with $PER listeners each"; echo
		echo "$(sed 's/^ready //' "$work/ready"). Socket table: $(ss -s | sed -n 2p)."
		;;
	netns)
		# Namespaces made here are deleted on exit; none is touched by ip
		# netns exec but the ones this script made.
		for i in $(seq 1 "$NETNS"); do
			ip netns add "$nsprefix$i"
			ip -n "$nsprefix$i" link set lo up
		done
		mid=$(( (NETNS + 1) / 2 ))
		hold ip netns exec "$nsprefix$mid" -mode many -procs 1 -per 20
		printf '#!/usr/bin/env bash\nfor ns in $(ip netns list | awk '"'"'index($1, "%s") == 1 {print $1}'"'"'); do ip netns exec "$ns" ss -Htnp state listening sport = :%s; done\n' "$nsprefix" "$PORT" >"$work/ss-netns.sh"
		echo; echo "### $NETNS network namespaces, a holder of $PORT in one"; echo
		echo "Namespace $nsprefix$mid: $(sed 's/^ready //' "$work/ready"). Unix sockets on the machine: $(ss -xa | tail -n +2 | wc -l)."
		owner=$("$P" who "$PORT/tcp" --all-netns --json | grep -m1 '"pid"' | tr -dc 0-9)
		ss_pid=$(ip netns exec "$nsprefix$mid" ss -Htnp state listening "sport = :$PORT" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
		echo "Holder of $PORT/tcp: portolan $owner, ss $ss_pid."
		if [ -z "$owner" ] || [ "$owner" != "$ss_pid" ]; then say "portolan and ss disagree on the holder of $PORT"; exit 1; fi
		compare "who --all-netns $PORT: target portolan at least 5x faster than ip netns exec NS ss over every namespace" 5 \
			"$P who $PORT/tcp --all-netns" \
			"bash $work/ss-netns.sh"
		compare "ls -x -a (unix sockets with owners) against ss -xap" 1 \
			"$P ls -x -a" \
			"ss -xap"
		unhold
		continue
		;;
	*) say "unknown scenario $sc"; exit 1 ;;
	esac
	# Check that every tool finds the holder before timing it.
	owner=$("$P" who "$PORT/tcp" --json | grep -m1 '"pid"' | tr -dc 0-9)
	fuser_pid=$(fuser -n tcp "$PORT" 2>/dev/null | tr -dc '0-9 ' | xargs)
	ss_pid=$(ss -Htnp state listening "sport = :$PORT" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
	lsof_pid=$(lsof -t -nP -iTCP:"$PORT" -sTCP:LISTEN | head -1)
	echo "Holder of $PORT/tcp: portolan $owner, ss $ss_pid, lsof $lsof_pid, fuser $fuser_pid."
	if [ -z "$owner" ] || [ "$owner" != "$ss_pid" ]; then say "portolan and ss disagree on the holder of $PORT"; exit 1; fi

	compare "who $PORT (every holder, as ss, lsof and fuser): target portolan at least 5x faster than ss" 5 \
		"$P who $PORT" \
		"ss -Htnp state listening sport = :$PORT" \
		"lsof -nP -iTCP:$PORT -sTCP:LISTEN" \
		"fuser -n tcp $PORT"
	compare "who $PORT --first (the lowest pid only) against ss" 5 \
		"$P who $PORT --first" \
		"ss -Htnp state listening sport = :$PORT"
	compare "ls -a with owners: target at least 2x faster than ss -tanp" 2 \
		"$P ls -a" \
		"ss -tanp"
	compare "ls -a --no-owner: target no slower than ss -tan" 1 \
		"$P ls -a --no-owner" \
		"ss -tan"
	unhold
done
echo
echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
