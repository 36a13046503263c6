#!/usr/bin/env bash
# run.sh - portolan forward against HAProxy, nginx stream, rinetd and socat,
# in the same run, on loopback only; prints medians and ratios.
#
#   bench/forward/run.sh            # env: REPS=2 ROUNDS=5 T=5 N=3000 UN=5000 OUT=/tmp/fwdbench
#
# Per relay and repetition: iperf3 1 and 8 streams (Gbit/s) and 8*UN UDP
# request/responses from 8 clients at once (req/s); then ROUNDS
# rounds of N sequential connect/64 B echo/close (conns/s) and UN UDP
# request/responses on one socket (req/s; every reply checked against its
# request) per relay, the relays taking turns connection by connection. The relay's CPU time is
# read from /proc for its whole process group (children included), giving
# CPU s per GB, us per connection and us per UDP exchange.
#
# The report ends with the forwarding issue's targets judged on the run's
# medians, and each relay's share of the single stream with no relay
# (direct, when in RELAYS): on loopback the relays share the cores with
# iperf3, so that share is what bounds their throughput ratios.
#
# SNI routing: ROUNDS rounds per repetition of SN TLS connections (full
# handshake, 64 B echo, close; server names cycling over an exact match,
# a wildcard match and the default route) through portolan's sni rule,
# nginx's ssl_preread and HAProxy's req.ssl_sni, taking turns; direct goes
# to the default backend. SNI_ONLY=1 runs only this part.
# Needs: apt-get install -y haproxy nginx-light libnginx-mod-stream rinetd socat iperf3
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=${OUT:-/tmp/fwdbench}
REPS=${REPS:-2} ROUNDS=${ROUNDS:-5} T=${T:-5} N=${N:-3000} UN=${UN:-5000} SN=${SN:-1000} SNI_ONLY=${SNI_ONLY:-0}
RELAYS=${RELAYS:-"direct portolan haproxy nginx rinetd socat"}
[ "$SNI_ONLY" = 1 ] && RELAYS=${RELAYS_SNI:-"direct portolan haproxy nginx"}
mkdir -p "$OUT"
CSV=$OUT/raw.csv; : >"$CSV"
PGIDS=()

stop_all() { for p in "${PGIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null; done; sleep 0.3; for p in "${PGIDS[@]}"; do kill -KILL -- "-$p" 2>/dev/null; done; PGIDS=(); }
trap stop_all EXIT INT TERM
bg() { setsid "$@" >>"$OUT/$(basename "$1").log" 2>&1 </dev/null & PGIDS+=($!); LAST=$!; }
ticks() { # CPU ticks of process group $1, reaped children included
	local t=0 f l
	for f in /proc/[0-9]*/stat; do
		{ read -r l <"$f"; } 2>/dev/null || continue
		set -- "$1" ${l##*) }
		[ "$4" = "$1" ] && t=$((t + ${13} + ${14} + ${15} + ${16}))
	done
	echo $t
}
waitport() { for _ in $(seq 50); do ss -Hltn "sport = :$1" | grep -q . && return 0; sleep 0.1; done; echo "port $1 not up" >&2; return 1; }

go build -o "$OUT/load" "$ROOT/bench/forward/load" || exit 1
CGO_ENABLED=0 go build -o "$OUT/portolan" "$ROOT/cmd/portolan" || exit 1
[ "$SNI_ONLY" = 1 ] || bg iperf3 -s -B 127.0.0.1 -p 5201
bg "$OUT/load" echo -tcp 127.0.0.1:5301 -udp 127.0.0.1:5301
bg "$OUT/load" tlsecho -tcp 127.0.0.1:5401,127.0.0.1:5402,127.0.0.1:5403
[ "$SNI_ONLY" = 1 ] || waitport 5201; waitport 5301; waitport 5401; waitport 5402; waitport 5403

start_relay() { # name -> TP (iperf port), EP (echo port), SP (SNI port or ""), RPG (relay pgid or "")
	RPG="" SP=""
	case $1 in
	direct) TP=5201 EP=5301 SP=5403 ;;
	portolan) TP=16201 EP=16301 SP=16401
		cat >"$OUT/forward.yaml" <<-Y
		rules:
		  - {name: sni, listen: "127.0.0.1:$SP", targets: [127.0.0.1:5403], sni: {a.example: 127.0.0.1:5401, "*.example": 127.0.0.1:5402}}
		  - {name: iperf, listen: "127.0.0.1:$TP", targets: [127.0.0.1:5201]}
		  - {name: echo, listen: "127.0.0.1:$EP", targets: [127.0.0.1:5301]}
		  - {name: udp, proto: udp, listen: "127.0.0.1:$EP", targets: [127.0.0.1:5301], idle-timeout: 10s}
		Y
		bg "$OUT/portolan" forward -c "$OUT/forward.yaml"; RPG=$LAST ;;
	haproxy) TP=16202 EP=16302 SP=16402
		cat >"$OUT/haproxy.cfg" <<-H
		global
		    maxconn 4000
		defaults
		    mode tcp
		    timeout connect 5s
		    timeout client 60s
		    timeout server 60s
		listen iperf
		    bind 127.0.0.1:$TP
		    server s 127.0.0.1:5201
		listen echo
		    bind 127.0.0.1:$EP
		    server s 127.0.0.1:5301
		frontend sni
		    bind 127.0.0.1:$SP
		    tcp-request inspect-delay 5s
		    tcp-request content accept if { req_ssl_hello_type 1 }
		    use_backend sni_a if { req.ssl_sni -i a.example }
		    use_backend sni_w if { req.ssl_sni -m end .example }
		    default_backend sni_d
		backend sni_a
		    server s 127.0.0.1:5401
		backend sni_w
		    server s 127.0.0.1:5402
		backend sni_d
		    server s 127.0.0.1:5403
		H
		bg haproxy -db -f "$OUT/haproxy.cfg"; RPG=$LAST ;;
	nginx) TP=16203 EP=16303 SP=16403
		cat >"$OUT/nginx.conf" <<-X
		load_module /usr/lib/nginx/modules/ngx_stream_module.so;
		worker_processes auto; daemon off; pid $OUT/nginx.pid; error_log $OUT/nginx-error.log warn;
		events { worker_connections 4096; }
		stream {
		  server { listen 127.0.0.1:$TP; proxy_pass 127.0.0.1:5201; }
		  server { listen 127.0.0.1:$EP; proxy_pass 127.0.0.1:5301; }
		  server { listen 127.0.0.1:$EP udp; proxy_pass 127.0.0.1:5301; proxy_timeout 10s; }
		  map \$ssl_preread_server_name \$sni_upstream {
		    hostnames;
		    a.example 127.0.0.1:5401;
		    *.example 127.0.0.1:5402;
		    default 127.0.0.1:5403;
		  }
		  server { listen 127.0.0.1:$SP; ssl_preread on; proxy_pass \$sni_upstream; }
		}
		X
		bg nginx -p "$OUT" -c "$OUT/nginx.conf"; RPG=$LAST ;;
	rinetd) TP=16204 EP=16304
		printf '127.0.0.1 %s 127.0.0.1 5201\n127.0.0.1 %s 127.0.0.1 5301\n127.0.0.1 %s/udp 127.0.0.1 5301/udp [timeout=10]\n' $TP $EP $EP >"$OUT/rinetd.conf"
		bg rinetd -f -c "$OUT/rinetd.conf"; RPG=$LAST ;;
	socat) TP=16205 EP=16305
		bg sh -c "socat TCP4-LISTEN:$TP,bind=127.0.0.1,reuseaddr,fork,backlog=1024 TCP4:127.0.0.1:5201 &
			socat TCP4-LISTEN:$EP,bind=127.0.0.1,reuseaddr,fork,backlog=1024 TCP4:127.0.0.1:5301 &
			socat -T 10 UDP4-LISTEN:$EP,bind=127.0.0.1,reuseaddr,fork UDP4:127.0.0.1:5301 & wait"; RPG=$LAST ;;
	esac
	# (SNI_ONLY starts no iperf3 server for direct.)
	{ [ "$SNI_ONLY$TP" = 15201 ] || waitport $TP; } && waitport $EP && { [ -z "$SP" ] || waitport $SP; }
}

measure() { # rep relay test unit cmd... (stdout of cmd: value)
	local rep=$1 relay=$2 test=$3 unit=$4; shift 4
	local c0=0 c1=0 v
	[ -n "$RPG" ] && c0=$(ticks $RPG)
	v=$("$@")
	[ -n "$RPG" ] && c1=$(ticks $RPG)
	echo "$rep,$relay,$test,$v,$unit,$(( (c1 - c0) ))" >>"$CSV"
	echo "rep $rep $relay $test: $v $unit, relay cpu $(( c1 - c0 )) ticks" >&2
}
iperf() { timeout $((T + 20)) iperf3 -c 127.0.0.1 -p "$1" -t "$T" -P "$2" -J | python3 -c '
import json,sys
e=json.load(sys.stdin)["end"]; print("%.3f %d" % (e["sum_received"]["bits_per_second"]/1e9, e["sum_received"]["bytes"]))'; }
conns() { "$OUT/load" conns -addr 127.0.0.1:$EP -n $N -c 1 -max 60s | sed -E 's/.*ok=([0-9]+).*rate=([0-9]+).*/\2 \1/'; }
udprr() { "$OUT/load" udprr -addr 127.0.0.1:$EP -n $UN -c 1 -max 60s | tr '\n' ' ' | sed -E 's/.*ok=([0-9]+).*rate=([0-9]+).*wrong_replies=([0-9]+).*/\2 \1 \3/'; }
udprr8() { "$OUT/load" udprr -addr 127.0.0.1:$EP -n $((8 * UN)) -c 8 -max 60s | tr '\n' ' ' | sed -E 's/.*ok=([0-9]+).*rate=([0-9]+).*wrong_replies=([0-9]+).*/\2 \1 \3/'; }

# Every relay runs for the whole benchmark (an idle one costs nothing), so
# that the short-connection and UDP tests can interleave them: `load turns`
# makes one connection (or exchange) through each relay in turn, in a new
# random order each time, and times each relay's alone. This machine's
# speed drifts by tens of percent from one second to the next; taking
# turns puts every relay under the same drift. socat, which forks a
# process per connection, is measured on its own.
declare -A RTP REP RSP RRPG
for relay in $RELAYS; do
	start_relay $relay || exit 1
	RTP[$relay]=$TP REP[$relay]=$EP RSP[$relay]=$SP RRPG[$relay]=$RPG
done
use() { TP=${RTP[$1]} EP=${REP[$1]} SP=${RSP[$1]} RPG=${RRPG[$1]}; }
turns() { # rep test(conn1|udprr|sni) unit relays...
	local rep=$1 test=$2 unit=$3 addrs="" r c1 line v of=conns n=$N port
	shift 3
	[ "$test" = udprr ] && of=udprr n=$UN
	[ "$test" = sni ] && of="tls -sni a.example,x.example,other.test" n=$SN
	local -A c0
	for r in "$@"; do
		use $r; port=$EP; [ "$test" = sni ] && port=$SP
		addrs+=",127.0.0.1:$port"
		c0[$r]=0; [ -n "$RPG" ] && c0[$r]=$(ticks $RPG)
	done
	"$OUT/load" turns -addr "${addrs#,}" -of $of -n $n -max 300s >"$OUT/turns.txt"
	for r in "$@"; do
		use $r; c1=0; [ -n "$RPG" ] && c1=$(ticks $RPG)
		port=$EP; [ "$test" = sni ] && port=$SP
		line=$(grep " addr=127.0.0.1:$port " "$OUT/turns.txt")
		v=$(echo "$line" | sed -E 's/.*ok=([0-9]+).*rate=([0-9]+).*/\2 \1/')
		[ "$test" = udprr ] && v="$v $(echo "$line" | sed -E 's/.*wrong_replies=([0-9]+).*/\1/')"
		echo "$rep,$r,$test,$v,$unit,$(( c1 - c0[$r] ))" >>"$CSV"
		echo "rep $rep $r $test: $v $unit, relay cpu $(( c1 - c0[$r] )) ticks" >&2
	done
}
TURNS=() UTURNS=()
for relay in $RELAYS; do
	[ $relay = socat ] && continue
	TURNS+=($relay)
	# HAProxy relays no UDP; rinetd 0.73 takes the UDP rule but answers
	# nothing here, and each unanswered request would wait out its 1 s.
	case $relay in haproxy | rinetd) ;; *) UTURNS+=($relay) ;; esac
done
STURNS=()
for relay in $RELAYS; do
	[ -n "${RSP[$relay]}" ] && STURNS+=($relay)
done
for rep in $(seq $REPS); do
	for round in $(seq $ROUNDS); do
		turns $rep.$round sni conns/s "${STURNS[@]}"
	done
done
[ "$SNI_ONLY" = 1 ] && { python3 "$HERE/summarize.py" "$CSV"; exit 0; }
for rep in $(seq $REPS); do
	for relay in $RELAYS; do
		use $relay
		measure $rep $relay tcp1 Gbit/s iperf $TP 1
		measure $rep $relay tcp8 Gbit/s iperf $TP 8
		# 8 clients at once, each with its own socket (session): a
		# throughput test like iperf's, so the relays take it one by one.
		# (socat's UDP fork mode serves one peer per child here.)
		case $relay in haproxy | rinetd | socat) ;; *) measure $rep $relay udp8 req/s udprr8 ;; esac
	done
	for round in $(seq $ROUNDS); do
		turns $rep.$round conn1 conns/s "${TURNS[@]}"
		[ ${#UTURNS[@]} -gt 0 ] && turns $rep.$round udprr req/s "${UTURNS[@]}"
	done
	case " $RELAYS " in *" socat "*)
		use socat
		measure $rep socat conn1 conns/s conns
		measure $rep socat udprr req/s udprr ;;
	esac
done
python3 "$HERE/summarize.py" "$CSV"
