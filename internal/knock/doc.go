// Package knock owns port knocking and single-packet authorization: the
// doors' configuration (knockd.yaml) and keys, the SPA datagram's format,
// the client (Knock, SPA.Send) and the daemon (Server), which opens a
// door by adding an element with a kernel timeout to a set in portolan's
// nftables table. The daemon reads knocks from the doors' NFLOG group or,
// where NFLOG is missing, from an AF_PACKET socket with a classic BPF
// filter (Server.Capture). docs/knock.md is the user's guide.
package knock
