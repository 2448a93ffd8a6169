package dnsserver

import (
	"context"
	"testing"
	"time"
)

func TestSharedDeadline(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	d := newSharedDeadline(parent, 2*time.Second)
	t0 := time.Now()
	a := d.get(t0)
	if b := d.get(t0.Add(50 * time.Millisecond)); b != a {
		t.Errorf("queries 50ms apart got different contexts; want one shared")
	}
	c := d.get(t0.Add(150 * time.Millisecond))
	if c == a {
		t.Errorf("queries 150ms apart share a context; want a new one after the 100ms slack")
	}
	for _, tc := range []struct {
		ctx context.Context
		now time.Time
	}{{a, t0.Add(50 * time.Millisecond)}, {c, t0.Add(150 * time.Millisecond)}} {
		dl, ok := tc.ctx.Deadline()
		if left := dl.Sub(tc.now); !ok || left > 2*time.Second || left < 1900*time.Millisecond {
			t.Errorf("deadline %v after the query, want within [1.9s, 2s]", left)
		}
	}
	cancel()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("canceling the parent did not end the shared context")
	}
}
