package cluster

import (
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
)

// TestConsulClientThroughClientAgent drives the K/V, transaction, session
// and status calls of the unchanged Consul Go client through a client
// agent, which forwards them to the servers.
func TestConsulClientThroughClientAgent(t *testing.T) {
	c := startCluster(t, 1)
	cl := client(t, c.clients[0])
	kv := cl.KV()

	if _, err := kv.Put(&consul.KVPair{Key: "app/a", Value: []byte("1"), Flags: 42}, nil); err != nil {
		t.Fatal(err)
	}
	p, meta, err := kv.Get("app/a", nil)
	if err != nil || p == nil || string(p.Value) != "1" || p.Flags != 42 {
		t.Fatalf("Get = %+v, %v", p, err)
	}
	if !meta.KnownLeader || meta.LastIndex == 0 {
		t.Errorf("query meta = %+v, want KnownLeader and an index", meta)
	}

	// CAS with the right and a stale index.
	p.Value = []byte("2")
	if ok, _, err := kv.CAS(p, nil); err != nil || !ok {
		t.Fatalf("CAS = %v, %v", ok, err)
	}
	if ok, _, err := kv.CAS(p, nil); err != nil || ok {
		t.Fatalf("stale CAS = %v, %v, want false", ok, err)
	}

	// A blocking query through the client agent wakes on a write.
	_, meta, err = kv.Get("app/a", nil)
	if err != nil {
		t.Fatal(err)
	}
	woke := make(chan *consul.KVPair, 1)
	go func() {
		p, _, err := kv.Get("app/a", &consul.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 30 * time.Second})
		if err != nil {
			t.Error(err)
		}
		woke <- p
	}()
	time.Sleep(200 * time.Millisecond) // let the query block first
	if _, err := kv.Put(&consul.KVPair{Key: "app/a", Value: []byte("3")}, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-woke:
		if p == nil || string(p.Value) != "3" {
			t.Errorf("blocking Get woke with %+v", p)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("blocking Get did not wake on the write")
	}

	// Transactions: all or nothing.
	ops := consul.KVTxnOps{
		{Verb: consul.KVSet, Key: "app/b", Value: []byte("b")},
		{Verb: consul.KVCheckNotExists, Key: "app/a"},
	}
	ok, resp, _, err := kv.Txn(ops, nil)
	if err != nil || ok || len(resp.Errors) != 1 || resp.Errors[0].OpIndex != 1 {
		t.Fatalf("failing txn = %v %+v %v", ok, resp, err)
	}
	if p, _, _ := kv.Get("app/b", nil); p != nil {
		t.Fatalf("rolled-back txn wrote app/b")
	}

	// Sessions and locks.
	sid, _, err := cl.Session().Create(&consul.SessionEntry{Name: "t", TTL: "30s", Behavior: consul.SessionBehaviorDelete}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _, err := kv.Acquire(&consul.KVPair{Key: "app/lock", Value: []byte("me"), Session: sid}, nil); err != nil || !ok {
		t.Fatalf("Acquire = %v, %v", ok, err)
	}
	if _, err := cl.Session().Destroy(sid, nil); err != nil {
		t.Fatal(err)
	}
	if p, _, _ := kv.Get("app/lock", nil); p != nil {
		t.Errorf("behavior delete: app/lock still there: %+v", p)
	}

	// A value over the 512 KiB limit, forwarded: the servers' 413 and its
	// message reach the client (a 3 MiB body is streamed to the server,
	// which answers before reading it all).
	for _, size := range []int{600 << 10, 3 << 20} {
		_, err := kv.Put(&consul.KVPair{Key: "app/big", Value: make([]byte, size)}, nil)
		if err == nil || !strings.Contains(err.Error(), "413") || !strings.Contains(err.Error(), "too large") {
			t.Errorf("PUT of %d bytes through the client agent: %v, want a 413 saying the value is too large", size, err)
		}
	}

	// Stale reads through a follower and consistent reads.
	if _, _, err := kv.List("app/", &consul.QueryOptions{AllowStale: true}); err != nil {
		t.Errorf("stale list: %v", err)
	}
	if _, _, err := kv.List("app/", &consul.QueryOptions{RequireConsistent: true}); err != nil {
		t.Errorf("consistent list: %v", err)
	}
	peers, err := cl.Status().Peers()
	if err != nil || len(peers) != 3 {
		t.Errorf("peers = %v, %v", peers, err)
	}
	cfg, err := cl.Operator().RaftGetConfiguration(nil)
	if err != nil || len(cfg.Servers) != 3 {
		t.Errorf("raft configuration = %+v, %v", cfg, err)
	}
}
