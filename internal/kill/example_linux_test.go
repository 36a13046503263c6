package kill_test

import (
	"context"
	"fmt"
	"log"

	"portolan/internal/kill"
)

// NewPlan is a dry run: it names the processes Run would signal.
func ExampleNewPlan() {
	plan, err := kill.NewPlan(context.Background(), kill.Request{Port: 3000})
	if err != nil {
		log.Fatal(err)
	}
	for _, t := range plan.Targets {
		if t.Refused != "" {
			fmt.Printf("pid %d: not signalled: %s %s\n", t.Process.PID, t.Refused, t.Instead)
			continue
		}
		fmt.Printf("pid %d (%s) would get %v\n", t.Process.PID, t.Process.Comm, plan.Signal)
	}
}
