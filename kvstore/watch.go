package kvstore

import (
	"slices"
	"sync"
)

// watchRegistry wakes waiters of exactly the keys, prefixes and tables a
// write touched. Waiters of one key or prefix share one channel, closed on
// the first matching write and then forgotten; the next waiter makes a new
// one. A write to key k looks up k among the key watches and every prefix
// of k among the prefix watches, trying only the prefix lengths that are
// registered, so its cost does not grow with the number of waiters.
type watchRegistry struct {
	mu       sync.Mutex
	keys     map[string]*watchGroup
	prefixes map[string]*watchGroup
	tables   map[string]*watchGroup
	// prefixLens holds the distinct lengths of registered prefixes, sorted,
	// with lenCount counting prefixes per length.
	prefixLens []int
	lenCount   map[int]int
}

type watchGroup struct {
	ch   chan struct{}
	refs int
	// subs are the waiters on several names (watchMany) that include
	// this one; fired with the group.
	subs map[*multiWait]struct{}
}

// multiWait is one waiter on several names: its channel is closed on the
// first write to any of them.
type multiWait struct {
	ch    chan struct{}
	fired bool
}

func (mw *multiWait) fire() {
	if !mw.fired {
		mw.fired = true
		close(mw.ch)
	}
}

// closeGroup closes g's channel and fires its multi-name waiters.
func closeGroup(g *watchGroup) {
	close(g.ch)
	for mw := range g.subs {
		mw.fire()
	}
}

// Watch tables (anything not keyed per K/V key).
const tableSessions = "sessions"

func newWatchRegistry() *watchRegistry {
	return &watchRegistry{
		keys:     make(map[string]*watchGroup),
		prefixes: make(map[string]*watchGroup),
		tables:   make(map[string]*watchGroup),
		lenCount: make(map[int]int),
	}
}

type watchKind int

const (
	watchKey watchKind = iota
	watchPrefix
	watchTable
)

func (w *watchRegistry) mapFor(kind watchKind) map[string]*watchGroup {
	switch kind {
	case watchKey:
		return w.keys
	case watchPrefix:
		return w.prefixes
	}
	return w.tables
}

// watch registers interest in name and returns a channel closed on the next
// matching write, and a release function to call when no longer waiting.
func (w *watchRegistry) watch(kind watchKind, name string) (<-chan struct{}, func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.mapFor(kind)
	g := m[name]
	if g == nil {
		g = &watchGroup{ch: make(chan struct{})}
		m[name] = g
		if kind == watchPrefix {
			w.addLen(len(name))
		}
	}
	g.refs++
	return g.ch, func() { w.release(kind, name, g) }
}

// watchMany registers one waiter on every name (of one kind): the channel
// is closed on the next write to any of them. One channel for a thousand
// names, where watch would need a thousand channels (and a goroutine or a
// select case each) to wait on them at once.
func (w *watchRegistry) watchMany(kind watchKind, names []string) (<-chan struct{}, func()) {
	mw := &multiWait{ch: make(chan struct{})}
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.mapFor(kind)
	groups := make([]*watchGroup, len(names))
	for i, name := range names {
		g := m[name]
		if g == nil {
			g = &watchGroup{ch: make(chan struct{})}
			m[name] = g
			if kind == watchPrefix {
				w.addLen(len(name))
			}
		}
		g.refs++
		if g.subs == nil {
			g.subs = make(map[*multiWait]struct{})
		}
		g.subs[mw] = struct{}{}
		groups[i] = g
	}
	return mw.ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		for i, g := range groups {
			delete(g.subs, mw)
			w.releaseLocked(kind, names[i], g)
		}
	}
}

func (w *watchRegistry) release(kind watchKind, name string, g *watchGroup) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.releaseLocked(kind, name, g)
}

func (w *watchRegistry) releaseLocked(kind watchKind, name string, g *watchGroup) {
	g.refs--
	m := w.mapFor(kind)
	if g.refs == 0 && m[name] == g {
		delete(m, name)
		if kind == watchPrefix {
			w.removeLen(len(name))
		}
	}
}

func (w *watchRegistry) addLen(n int) {
	if w.lenCount[n] == 0 {
		i, _ := slices.BinarySearch(w.prefixLens, n)
		w.prefixLens = slices.Insert(w.prefixLens, i, n)
	}
	w.lenCount[n]++
}

func (w *watchRegistry) removeLen(n int) {
	w.lenCount[n]--
	if w.lenCount[n] == 0 {
		delete(w.lenCount, n)
		if i, ok := slices.BinarySearch(w.prefixLens, n); ok {
			w.prefixLens = slices.Delete(w.prefixLens, i, i+1)
		}
	}
}

// fire closes the group of name, if any, and forgets it.
func (w *watchRegistry) fire(kind watchKind, name string) {
	m := w.mapFor(kind)
	if g := m[name]; g != nil {
		closeGroup(g)
		delete(m, name)
		if kind == watchPrefix {
			w.removeLen(len(name))
		}
	}
}

// notify wakes the waiters of the given keys and of every prefix of them,
// and of the given tables.
func (w *watchRegistry) notify(keys []string, tables []string) {
	if len(keys) == 0 && len(tables) == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, k := range keys {
		if len(w.keys) > 0 {
			w.fire(watchKey, k)
		}
		// Walk a snapshot of the lengths: fire may shrink prefixLens.
		for i := 0; i < len(w.prefixLens); {
			n := w.prefixLens[i]
			if n > len(k) {
				break
			}
			before := len(w.prefixLens)
			w.fire(watchPrefix, k[:n])
			if len(w.prefixLens) == before {
				i++
			}
		}
	}
	for _, t := range tables {
		w.fire(watchTable, t)
	}
}

// notifyAll wakes every waiter (after a snapshot restore replaced the
// whole state).
func (w *watchRegistry) notifyAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range []map[string]*watchGroup{w.keys, w.prefixes, w.tables} {
		for name, g := range m {
			closeGroup(g)
			delete(m, name)
		}
	}
	w.prefixLens = nil
	clear(w.lenCount)
}

// count returns the number of registered groups (for tests and metrics).
func (w *watchRegistry) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.keys) + len(w.prefixes) + len(w.tables)
}
