//go:build !linux

package knock

import (
	"fmt"
	"runtime"
)

func openPacketCapture(int, []DoorPort) (packetCapturer, error) {
	return nil, fmt.Errorf("af_packet capture: not supported on %s", runtime.GOOS)
}
