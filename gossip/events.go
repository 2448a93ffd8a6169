package gossip

import (
	"sync"
)

// maxQueuedEvents bounds each subscriber's backlog. Membership events are
// rare (a few per member per lifetime), so a subscriber this far behind is
// stuck rather than slow; dropping then bounds memory.
const maxQueuedEvents = 16384

// fanout delivers events to subscribers without ever blocking the
// publisher (memberlist calls us with its node lock held). Each subscriber
// has its channel of the requested size and, behind it, a queue of up to
// maxQueuedEvents; a goroutine moves events from queue to channel. Events
// are delivered in order; past the queue limit new events are dropped and
// counted, and the subscriber should resynchronise from Members.
type fanout struct {
	onDrop func(first bool) // called per dropped event; first is true once per subscriber

	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool
	wg     sync.WaitGroup
}

type subscriber struct {
	ch      chan Event
	wake    chan struct{} // cap 1
	stop    chan struct{}
	stopped sync.Once

	mu      sync.Mutex
	queue   []Event
	dropped bool
}

func newFanout(onDrop func(first bool)) *fanout {
	return &fanout{onDrop: onDrop, subs: map[*subscriber]struct{}{}}
}

// subscribe registers a subscriber. After close, it returns a closed
// channel.
func (f *fanout) subscribe(buf int) (<-chan Event, func()) {
	s := &subscriber{
		ch:   make(chan Event, max(buf, 0)),
		wake: make(chan struct{}, 1),
		stop: make(chan struct{}),
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		close(s.ch)
		return s.ch, func() {}
	}
	f.subs[s] = struct{}{}
	f.wg.Add(1)
	f.mu.Unlock()

	done := make(chan struct{})
	go func() {
		defer f.wg.Done()
		defer close(done)
		s.run()
	}()
	cancel := func() {
		f.mu.Lock()
		delete(f.subs, s)
		f.mu.Unlock()
		s.halt()
		<-done
	}
	return s.ch, cancel
}

// publish queues ev for every subscriber; it never blocks.
func (f *fanout) publish(ev Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.subs {
		if ok, first := s.push(ev); !ok && f.onDrop != nil {
			f.onDrop(first)
		}
	}
}

// close stops every subscriber and closes their channels; events still
// queued are discarded.
func (f *fanout) close() {
	f.mu.Lock()
	f.closed = true
	subs := f.subs
	f.subs = map[*subscriber]struct{}{}
	f.mu.Unlock()
	for s := range subs {
		s.halt()
	}
	f.wg.Wait()
}

// push queues ev. It reports false if the queue is full, and first the
// first time that happens.
func (s *subscriber) push(ev Event) (ok, first bool) {
	s.mu.Lock()
	if len(s.queue) >= maxQueuedEvents {
		first = !s.dropped
		s.dropped = true
		s.mu.Unlock()
		return false, first
	}
	s.queue = append(s.queue, ev)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return true, false
}

func (s *subscriber) halt() { s.stopped.Do(func() { close(s.stop) }) }

func (s *subscriber) run() {
	defer close(s.ch)
	for {
		s.mu.Lock()
		if len(s.queue) == 0 {
			s.queue = nil // let a drained backlog's array go
			s.mu.Unlock()
			select {
			case <-s.wake:
				continue
			case <-s.stop:
				return
			}
		}
		ev := s.queue[0]
		s.queue[0] = Event{}
		s.queue = s.queue[1:]
		s.mu.Unlock()
		select {
		case s.ch <- ev:
		case <-s.stop:
			return
		}
	}
}
