package kvstore

import (
	"sync"

	"github.com/hashicorp/raft"
)

// closingStable guards raft's stable store across Shutdown. raft's network
// transport answers heartbeats on its own goroutines, which Raft.Shutdown
// does not wait for; a heartbeat landing after the bolt file is closed
// would make raft panic ("failed to save current term"). Once closed,
// writes are dropped (raft is shut down: nothing acts on them) and reads
// fail.
type closingStable struct {
	mu     sync.RWMutex
	closed bool
	s      raft.StableStore
}

func (c *closingStable) Set(k, v []byte) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return nil
	}
	return c.s.Set(k, v)
}

func (c *closingStable) Get(k []byte) ([]byte, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return nil, ErrShutdown
	}
	return c.s.Get(k)
}

func (c *closingStable) SetUint64(k []byte, v uint64) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return nil
	}
	return c.s.SetUint64(k, v)
}

func (c *closingStable) GetUint64(k []byte) (uint64, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return 0, ErrShutdown
	}
	return c.s.GetUint64(k)
}

// close marks the store closed, waiting for calls in flight, then runs
// closeFn (closing the underlying file) with no call able to reach it.
func (c *closingStable) close(closeFn func() error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return closeFn()
}

var _ raft.StableStore = (*closingStable)(nil)
