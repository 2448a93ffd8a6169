package gossip

import (
	"context"
	"sync"
	"testing"
	"time"
)

// When the whole cluster stops at once, the last members to leave have
// nobody left to gossip their leave to: they stop waiting as soon as no
// peer is alive, instead of waiting out the leave timeout (5 s) for
// broadcasts that cannot go out, and report no error.
func TestLeaveTogether(t *testing.T) {
	nodes := makeCluster(t, 3, nil)
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	took := make([]time.Duration, len(nodes))
	for i, nd := range nodes {
		wg.Go(func() {
			start := time.Now()
			errs[i] = nd.Leave(context.Background())
			took[i] = time.Since(start)
			_ = nd.Shutdown() // as the agent does after leaving
		})
	}
	wg.Wait()
	for i, nd := range nodes {
		if errs[i] != nil {
			t.Errorf("%s: leave: %v", nd.name, errs[i])
		}
		if took[i] >= leaveTimeout*3/5 {
			t.Errorf("%s: leave took %s with every peer leaving too; want well under the %s timeout", nd.name, took[i], leaveTimeout)
		}
	}
}
