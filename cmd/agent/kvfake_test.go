package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeConsul is an in-memory stand-in for the few Consul endpoints the
// kv, lock and operator commands call: /v1/kv, /v1/txn, /v1/session and
// /v1/operator/raft. It follows CONSUL-COMPAT.md closely enough to test
// the CLI's side of the conversation, no further.
type fakeConsul struct {
	srv *httptest.Server

	mu       sync.Mutex
	index    uint64
	kv       map[string]*kvPair
	sessions map[string]string // ID → TTL
	nextID   int
	changed  chan struct{} // closed and replaced on every write

	// Knobs and records for tests.
	noTxn       bool     // answer 404 on /v1/txn, like an agent without it
	txnReject   string   // a txn touching this key fails with 409
	txnCalls    int      // transactions received
	kvPuts      int      // PUT /v1/kv requests received
	renewals    int      // session renewals received
	acquires    int      // ?acquire= writes received
	refuse      int      // refuse this many acquires of a free key (lock-delay)
	blocked     int      // blocking reads of a key held by another session
	queries     []string // "METHOD path?query" of every request
	peers       []map[string]any
	removed     []string // "id=X" / "address=Y" of peer removals
	failPeerOps bool     // answer 500 to peer removals
}

func newFakeConsul(t *testing.T) *fakeConsul {
	t.Helper()
	f := &fakeConsul{
		index:    10,
		kv:       map[string]*kvPair{},
		sessions: map[string]string{},
		changed:  make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/kv/{key...}", f.kvGet)
	mux.HandleFunc("PUT /v1/kv/{key...}", f.kvPut)
	mux.HandleFunc("DELETE /v1/kv/{key...}", f.kvDelete)
	mux.HandleFunc("PUT /v1/txn", f.txn)
	mux.HandleFunc("PUT /v1/session/create", f.sessionCreate)
	mux.HandleFunc("PUT /v1/session/renew/{id}", f.sessionRenew)
	mux.HandleFunc("PUT /v1/session/destroy/{id}", f.sessionDestroy)
	mux.HandleFunc("GET /v1/operator/raft/configuration", f.raftConfig)
	mux.HandleFunc("DELETE /v1/operator/raft/peer", f.raftRemove)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.queries = append(f.queries, r.Method+" "+r.URL.RequestURI())
		f.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeConsul) addr() string { return f.srv.Listener.Addr().String() }

// bump records a write; call with mu held.
func (f *fakeConsul) bump() uint64 {
	f.index++
	close(f.changed)
	f.changed = make(chan struct{})
	return f.index
}

// set writes a key directly, as another client would.
func (f *fakeConsul) set(key, value string, flags uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setLocked(key, []byte(value), flags)
}

func (f *fakeConsul) setLocked(key string, value []byte, flags uint64) {
	idx := f.bump()
	p := f.kv[key]
	if p == nil {
		p = &kvPair{Key: key, CreateIndex: idx}
		f.kv[key] = p
	}
	p.Value, p.Flags, p.ModifyIndex = value, flags, idx
}

// del deletes a key directly, as another client would.
func (f *fakeConsul) del(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.kv, key)
	f.bump()
}

func (f *fakeConsul) get(key string) (kvPair, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.kv[key]
	if !ok {
		return kvPair{}, false
	}
	return *p, true
}

func (f *fakeConsul) keys() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ks []string
	for k := range f.kv {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func (f *fakeConsul) sessionCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sessions)
}

func (f *fakeConsul) counter(p *int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return *p
}

// newSession creates a session as another client would.
func (f *fakeConsul) newSession() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	id := fmt.Sprintf("sess-%04d", f.nextID)
	f.sessions[id] = "15s"
	return id
}

// invalidate destroys a session the way a failed check or expired TTL
// does: its locks are released.
func (f *fakeConsul) invalidate(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.invalidateLocked(id)
}

func (f *fakeConsul) invalidateLocked(id string) {
	delete(f.sessions, id)
	for _, p := range f.kv {
		if p.Session == id {
			p.Session = ""
			p.ModifyIndex = f.bump()
		}
	}
}

// lockHolder is the session holding key, "" if none.
func (f *fakeConsul) lockHolder(key string) string {
	p, _ := f.get(key)
	return p.Session
}

// acquire takes key for session as another client would; false if held.
func (f *fakeConsul) acquire(key, session string, flags uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.acquireLocked(key, session, nil, flags)
}

func (f *fakeConsul) acquireLocked(key, session string, value []byte, flags uint64) bool {
	p := f.kv[key]
	if p != nil && p.Session != "" && p.Session != session {
		return false
	}
	f.setLocked(key, value, flags)
	p = f.kv[key]
	if p.Session != session {
		p.LockIndex++
	}
	p.Session = session
	return true
}

func (f *fakeConsul) kvGet(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	q := r.URL.Query()
	if s := q.Get("index"); s != "" {
		want, _ := strconv.ParseUint(s, 10, 64)
		wait := 5 * time.Minute
		if d, err := time.ParseDuration(q.Get("wait")); err == nil {
			wait = d
		}
		timer := time.NewTimer(wait)
		defer timer.Stop()
		counted := false
		for {
			f.mu.Lock()
			if f.index > want {
				f.mu.Unlock()
				break
			}
			if p := f.kv[key]; !counted && p != nil && p.Session != "" {
				f.blocked++
				counted = true
			}
			ch := f.changed
			f.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-timer.C:
			case <-r.Context().Done():
				return
			}
			break
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("X-Consul-Index", strconv.FormatUint(f.index, 10))
	_, recurse := q["recurse"]
	if _, keys := q["keys"]; keys {
		sep := q.Get("separator")
		seen := map[string]bool{}
		var out []string
		for k := range f.kv {
			if !strings.HasPrefix(k, key) {
				continue
			}
			if sep != "" {
				if i := strings.Index(k[len(key):], sep); i >= 0 {
					k = k[:len(key)+i+len(sep)]
				}
			}
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
		if len(out) == 0 {
			w.WriteHeader(404)
			return
		}
		sort.Strings(out)
		_ = json.NewEncoder(w).Encode(out)
		return
	}
	var out []kvPair
	for k, p := range f.kv {
		if k == key || (recurse && strings.HasPrefix(k, key)) {
			out = append(out, *p)
		}
	}
	if len(out) == 0 {
		w.WriteHeader(404)
		return
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	_ = json.NewEncoder(w).Encode(out)
}

func (f *fakeConsul) kvPut(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	q := r.URL.Query()
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if len(body) > 512<<10 {
		http.Error(w, "Value exceeds 524288 byte limit", http.StatusRequestEntityTooLarge)
		return
	}
	flags, err := strconv.ParseUint(q.Get("flags"), 10, 64)
	if q.Get("flags") != "" && err != nil {
		http.Error(w, "invalid flags", 400)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kvPuts++
	ok := true
	p := f.kv[key]
	switch {
	case q.Has("acquire"):
		id := q.Get("acquire")
		if _, valid := f.sessions[id]; !valid {
			http.Error(w, "invalid session "+id, 500)
			return
		}
		f.acquires++
		if f.refuse > 0 && (p == nil || p.Session == "") {
			f.refuse--
			ok = false
			break
		}
		ok = f.acquireLocked(key, id, body, flags)
	case q.Has("release"):
		id := q.Get("release")
		if p == nil || p.Session != id {
			ok = false
			break
		}
		f.setLocked(key, body, flags)
		f.kv[key].Session = ""
	case q.Has("cas"):
		cas, _ := strconv.ParseUint(q.Get("cas"), 10, 64)
		if (cas == 0 && p != nil) || (cas > 0 && (p == nil || p.ModifyIndex != cas)) {
			ok = false
			break
		}
		f.setLocked(key, body, flags)
	default:
		f.setLocked(key, body, flags)
	}
	fmt.Fprint(w, ok)
}

func (f *fakeConsul) kvDelete(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	q := r.URL.Query()
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case q.Has("recurse"):
		for k := range f.kv {
			if strings.HasPrefix(k, key) {
				delete(f.kv, k)
			}
		}
	case q.Has("cas"):
		cas, _ := strconv.ParseUint(q.Get("cas"), 10, 64)
		p := f.kv[key]
		if p == nil || p.ModifyIndex != cas {
			fmt.Fprint(w, false)
			return
		}
		delete(f.kv, key)
	default:
		delete(f.kv, key)
	}
	f.bump()
	fmt.Fprint(w, true)
}

func (f *fakeConsul) txn(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.noTxn {
		http.NotFound(w, r)
		return
	}
	f.txnCalls++
	var ops []struct {
		KV struct {
			Verb  string
			Key   string
			Value []byte
			Flags uint64
		}
	}
	if err := json.NewDecoder(r.Body).Decode(&ops); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	if len(ops) > 128 {
		http.Error(w, "too many operations", http.StatusRequestEntityTooLarge)
		return
	}
	for i, op := range ops {
		if op.KV.Verb != "set" || op.KV.Key == f.txnReject {
			w.WriteHeader(http.StatusConflict)
			fmt.Fprintf(w, `{"Results":null,"Errors":[{"OpIndex":%d,"What":"rejected by the test"}]}`, i)
			return
		}
	}
	var results []map[string]any
	for _, op := range ops {
		f.setLocked(op.KV.Key, op.KV.Value, op.KV.Flags)
		results = append(results, map[string]any{"KV": map[string]any{"Key": op.KV.Key}})
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"Results": results, "Errors": nil})
}

func (f *fakeConsul) sessionCreate(w http.ResponseWriter, r *http.Request) {
	var req struct{ Name, TTL, Behavior string }
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	if _, err := time.ParseDuration(req.TTL); req.TTL != "" && err != nil {
		http.Error(w, "bad TTL", 400)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	id := fmt.Sprintf("sess-%04d", f.nextID)
	f.sessions[id] = req.TTL
	_ = json.NewEncoder(w).Encode(map[string]string{"ID": id})
}

func (f *fakeConsul) sessionRenew(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.renewals++
	ttl, ok := f.sessions[id]
	if !ok {
		http.Error(w, "Session id '"+id+"' not found", 404)
		return
	}
	_ = json.NewEncoder(w).Encode([]map[string]string{{"ID": id, "TTL": ttl}})
}

func (f *fakeConsul) sessionDestroy(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.invalidateLocked(r.PathValue("id"))
	fmt.Fprint(w, true)
}

func (f *fakeConsul) raftConfig(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_ = json.NewEncoder(w).Encode(map[string]any{"Servers": f.peers, "Index": 42})
}

func (f *fakeConsul) raftRemove(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failPeerOps {
		http.Error(w, "id \"nope\" was not found in the Raft configuration", 500)
		return
	}
	f.removed = append(f.removed, r.URL.RawQuery)
}

// syncBuffer is a bytes.Buffer safe to read while a child process or a
// command's goroutine writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
