// Package forward relays TCP connections and UDP sessions from local
// listeners to one or more targets.
//
// A [Server] runs a set of [Rule]s. On Linux, TCP bulk bytes move with raw
// non-blocking splice(2) calls through kernel pipes and never enter user
// space (small reads pass through the loop's buffer); each TCP listener
// is served by an epoll event loop (or [Server.Loops] of them) and each
// UDP listener by one (tcp_loop_linux.go, udp_linux.go), so a short
// connection or a datagram exchange costs no goroutine hand-offs; a busy
// UDP socket is read in batches (recvmmsg, one datagram at a time when
// quiet) and replies go out in batches (sendmmsg). Rules that accept
// PROXY headers, and other systems, relay TCP with a goroutine per
// direction (tcp.go). Rules with SNI routes ([Rule.SNI]) pick a
// connection's targets by the server name in its TLS ClientHello
// ([ParseClientHello]), which the loop reads before it dials
// (sni_loop_linux.go), and send the hello on first, never terminating TLS.
// Targets named by host name are resolved when the rules are loaded and
// again in the background every 30 s, never by a loop.
//
// [Server.Apply] can be called again with a new rule set (a reload):
// listeners whose address is unchanged stay open, live connections and UDP
// sessions keep the rule they started under, and removed rules stop
// accepting and drain.
package forward
