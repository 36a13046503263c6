package cli

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestFirewallInterruptedExits130(t *testing.T) {
	for _, err := range []error{context.Canceled, fmt.Errorf("plan: %w", context.Canceled), context.DeadlineExceeded} {
		var ee *exitError
		if got := interrupted(err); !errors.As(got, &ee) || ee.code != ExitInterrupted {
			t.Errorf("interrupted(%v) = %v; want exit %d", err, got, ExitInterrupted)
		}
	}
	other := errors.New("write table: permission denied")
	if got := interrupted(other); got != other {
		t.Errorf("interrupted(%v) = %v; want it unchanged", other, got)
	}
}
