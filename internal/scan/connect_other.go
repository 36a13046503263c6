//go:build !linux

package scan

import "context"

// Open starts a session; off Linux it is a DialProber's.
func (ConnectProber) Open(ctx context.Context, report func(Reply)) (Session, error) {
	return DialProber{}.Open(ctx, report)
}
