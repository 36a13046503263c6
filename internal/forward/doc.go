// Package forward relays TCP connections and UDP sessions from local
// listeners to one or more targets.
//
// A [Server] runs a set of [Rule]s. TCP is relayed with io.Copy between two
// *net.TCPConn, which Linux turns into splice(2): bytes never enter user
// space. Byte counts come from io.Copy's return values and idle timeouts
// from deadlines refreshed between io.CopyN chunks, because wrapping a
// conn to count or to refresh deadlines would silently lose splice.
//
// [Server.Apply] can be called again with a new rule set (a reload):
// listeners whose address is unchanged stay open, live connections and UDP
// sessions keep the rule they started under, and removed rules stop
// accepting and drain.
package forward
