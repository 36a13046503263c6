//go:build !linux

package forward

// queueSupported: the portable relay takes no queue; a rule with a
// queue-timeout is refused.
const queueSupported = false
