// Package wait waits until network endpoints are ready: a TCP port accepts,
// an HTTP(S) URL answers with an expected status, a unix socket accepts, or
// (reversed) a port is released. Every address a name resolves to is tried,
// and localhost always means both 127.0.0.1 and ::1, so a server listening
// on one family only is found either way. When a target is not ready in
// time, its Status says why, from what was observed: "connection refused",
// "listening on 127.0.0.1 only, you asked for ::1", "accepting but HTTP
// 503", "TLS handshake failed: ...".
package wait
