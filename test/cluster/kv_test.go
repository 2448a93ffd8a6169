package cluster

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/outrigger/outrigger/internal/testutil"
)

// TestKVThroughClientSurvivesLeaderKillAndFullRestart: writes through a
// client agent; kill -9 the leader and measure the write gap; restart it
// and see it rejoin with its data; restart all three and find every
// acknowledged key.
func TestKVThroughClientSurvivesLeaderKillAndFullRestart(t *testing.T) {
	c := startCluster(t, 1)
	kv := client(t, c.clients[0]).KV()

	// A writer loop through the client agent, recording what was acknowledged.
	var (
		mu    sync.Mutex
		acked []string
		fails int
		stop  = make(chan struct{})
		done  = make(chan struct{})
		gaps  []time.Duration
	)
	go func() {
		defer close(done)
		lastOK := time.Now()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			key := fmt.Sprintf("acked/%06d", i)
			_, err := kv.Put(&consul.KVPair{Key: key, Value: []byte(strconv.Itoa(i))}, nil)
			mu.Lock()
			if err != nil {
				fails++
			} else {
				if gap := time.Since(lastOK); gap > 300*time.Millisecond {
					gaps = append(gaps, gap)
				}
				lastOK = time.Now()
				acked = append(acked, key)
			}
			mu.Unlock()
			if err != nil {
				time.Sleep(20 * time.Millisecond)
			}
		}
	}()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	testutil.WaitFor(t, 20*time.Second, "100 acknowledged writes", func() error {
		if n := count(); n < 100 {
			return fmt.Errorf("%d so far", n)
		}
		return nil
	})

	old := c.leader(t)
	killedAt := time.Now()
	old.Kill()
	before := count()
	testutil.WaitFor(t, 30*time.Second, "writes to resume after the leader was killed", func() error {
		if count() <= before+10 {
			return fmt.Errorf("still %d acknowledged", count())
		}
		return nil
	})
	newLeader := c.leader(t)
	mu.Lock()
	var worst time.Duration
	for _, g := range gaps {
		worst = max(worst, g)
	}
	mu.Unlock()
	t.Logf("FIGURE leader kill: %s killed, new leader %s; longest write gap %v (goal < 3s); %d writes failed meanwhile",
		old.Name, newLeader.Name, worst.Round(time.Millisecond), fails)
	_ = killedAt

	// The killed server comes back with its data and catches up.
	old.Start()
	c.waitLeader(t, old)
	close(stop)
	<-done
	mu.Lock()
	keys := append([]string(nil), acked...)
	mu.Unlock()
	stale := client(t, old).KV()
	testutil.WaitFor(t, 30*time.Second, old.Name+" to catch up", func() error {
		pairs, _, err := stale.List("acked/", &consul.QueryOptions{AllowStale: true})
		if err != nil {
			return err
		}
		if len(pairs) < len(keys) {
			return fmt.Errorf("%d of %d keys on %s", len(pairs), len(keys), old.Name)
		}
		return nil
	})

	// Full restart: every acknowledged key is still there.
	for _, s := range c.servers {
		s.Kill()
	}
	start := time.Now()
	for _, s := range c.servers {
		s.Start()
	}
	for _, s := range c.servers {
		c.waitLeader(t, s)
	}
	t.Logf("FIGURE full restart: leader again after %v", time.Since(start).Round(time.Millisecond))
	var pairs consul.KVPairs
	testutil.WaitFor(t, 30*time.Second, "a consistent list after restart", func() error {
		var err error
		pairs, _, err = kv.List("acked/", &consul.QueryOptions{RequireConsistent: true})
		return err
	})
	have := map[string]bool{}
	for _, p := range pairs {
		have[p.Key] = true
	}
	lost := 0
	for _, k := range keys {
		if !have[k] {
			lost++
		}
	}
	t.Logf("FIGURE acknowledged writes: %d, lost after kill + full restart: %d", len(keys), lost)
	if lost > 0 {
		t.Errorf("%d of %d acknowledged writes lost", lost, len(keys))
	}
}

// TestSessionReleasedWhenNodeFails: a lock held by a session of a client
// agent's node is released when that agent is killed.
func TestSessionReleasedWhenNodeFails(t *testing.T) {
	c := startCluster(t, 2)
	holder := client(t, c.clients[1])
	sid, _, err := holder.Session().Create(&consul.SessionEntry{Name: "lock", LockDelay: time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ok, _, err := holder.KV().Acquire(&consul.KVPair{Key: "locks/a", Value: []byte("x"), Session: sid}, nil)
	if err != nil || !ok {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	c.clients[1].Kill()
	kv := client(t, c.clients[0]).KV()
	testutil.WaitFor(t, 45*time.Second, "the lock to be released", func() error {
		p, _, err := kv.Get("locks/a", nil)
		if err != nil {
			return err
		}
		if p == nil || p.Session != "" {
			return fmt.Errorf("still held: %+v", p)
		}
		return nil
	})
}
