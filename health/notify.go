package health

import (
	"context"
	"sync"
)

// notifier delivers states to Config.OnUpdate from one goroutine, in the
// order checks changed, coalescing changes of a check that arrive while
// an earlier one waits: the receiver (anti-entropy) needs the latest
// state, and a slow receiver must neither block the checks nor make the
// queue grow without bound (it holds at most one state per check).
type notifier struct {
	fn   func(CheckState)
	wake chan struct{}

	mu      sync.Mutex
	pending map[string]CheckState
	order   []string // IDs in the order they became pending; may hold stale IDs
}

func newNotifier(fn func(CheckState)) *notifier {
	return &notifier{fn: fn, wake: make(chan struct{}, 1), pending: map[string]CheckState{}}
}

func (n *notifier) push(s CheckState) {
	n.mu.Lock()
	if _, ok := n.pending[s.ID]; !ok {
		n.order = append(n.order, s.ID)
	}
	n.pending[s.ID] = s
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// drop forgets a pending state (the check was removed).
func (n *notifier) drop(id string) {
	n.mu.Lock()
	delete(n.pending, id)
	n.mu.Unlock()
}

func (n *notifier) pop() (CheckState, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for len(n.order) > 0 {
		id := n.order[0]
		n.order = n.order[1:]
		if s, ok := n.pending[id]; ok {
			delete(n.pending, id)
			return s, true
		}
	}
	n.order = nil // let the backing array go
	return CheckState{}, false
}

func (n *notifier) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.wake:
		}
		for ctx.Err() == nil {
			s, ok := n.pop()
			if !ok {
				break
			}
			n.fn(s)
		}
	}
}
