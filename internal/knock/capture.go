package knock

import (
	"context"
	"errors"
	"fmt"

	"portolan/internal/nflog"
)

// Capture modes of Server.Capture.
const (
	CaptureAuto   = "auto"   // NFLOG, else AF_PACKET
	CaptureNFLOG  = "nflog"  // NFLOG only
	CapturePacket = "packet" // AF_PACKET only
)

// capture is where the server's knock and SPA packets come from: the
// doors' NFLOG group, or an AF_PACKET socket with a BPF filter where NFLOG
// is missing. Read is as nflog.Reader.Read (only Payload and Timestamp are
// set by the AF_PACKET capture).
type capture interface {
	Read(ctx context.Context, pkts []nflog.Packet) (int, error)
	// Lost counts packets the kernel dropped before they were read.
	Lost() uint64
	Close() error
}

// packetCapturer is what openPacketCapture returns: a capture whose filter
// follows the doors.
type packetCapturer interface {
	capture
	SetWatch(watch []DoorPort) error
}

// nflogCapture is an NFLOG group.
type nflogCapture struct{ *nflog.Reader }

func (c nflogCapture) Lost() uint64 { return c.Stats().Lost }

// ParseCapture checks a capture mode; "" is CaptureAuto.
func ParseCapture(s string) (string, error) {
	switch s {
	case "", CaptureAuto:
		return CaptureAuto, nil
	case CaptureNFLOG, CapturePacket:
		return s, nil
	}
	return "", fmt.Errorf("capture %q: want auto, nflog or packet", s)
}

// fallBack reports whether an NFLOG failure is worth trying AF_PACKET for:
// not when another daemon holds the group (the doors are its own).
func fallBack(err error) bool {
	return !errors.Is(err, nflog.ErrGroupBusy) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}
