package ephemeral_test

import (
	"context"
	"fmt"
	"log"

	"portolan/internal/ephemeral"
)

// Survey reports how close each destination is to running out of local
// ports.
func ExampleSurvey() {
	r, err := ephemeral.Survey(context.Background(), ephemeral.Request{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d usable ports in %v\n", r.Usable, r.Range)
	for _, d := range r.Destinations {
		fmt.Printf("%v: %d in use, %d left\n", d.Remote, d.InUse, d.Headroom)
	}
}
