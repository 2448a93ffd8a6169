package kvstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/hashicorp/raft"
)

// The model: each key is a register of strings ("" = absent), with
// get, put and compare-and-set by value. Values are unique per write, so a
// cas at the ModifyIndex a read returned is a cas on the value it read.
type regInput struct {
	op     string // get, put, cas
	key    string
	value  string // put, cas: the new value
	expect string // cas: the value read before
}

type regOutput struct {
	value   string // get
	ok      bool   // cas
	unknown bool   // the call never returned a definite answer
}

var registerModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(regInput).key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() interface{} { return "" },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		st, in, out := state.(string), input.(regInput), output.(regOutput)
		switch in.op {
		case "get":
			return out.value == st, st
		case "put":
			return true, in.value
		case "cas":
			// An operation with an unknown outcome that did not happen is
			// linearized after everything else (its return time is
			// infinite), where it changes nothing observed; so when it is
			// linearized earlier it must have taken effect if it could.
			if out.unknown {
				if st == in.expect {
					return true, in.value
				}
				return true, st
			}
			if out.ok {
				return st == in.expect, in.value
			}
			return st != in.expect, st
		}
		return false, st
	},
	DescribeOperation: func(input, output interface{}) string {
		in, out := input.(regInput), output.(regOutput)
		switch in.op {
		case "get":
			return fmt.Sprintf("get(%s) → %q", in.key, out.value)
		case "put":
			return fmt.Sprintf("put(%s, %q) unknown=%v", in.key, in.value, out.unknown)
		}
		return fmt.Sprintf("cas(%s, %q→%q) → %v unknown=%v", in.key, in.expect, in.value, out.ok, out.unknown)
	},
}

func TestRegisterModelRejectsStaleRead(t *testing.T) {
	h := []porcupine.Operation{
		{ClientId: 0, Input: regInput{op: "put", key: "k", value: "a"}, Call: 0, Output: regOutput{}, Return: 10},
		{ClientId: 1, Input: regInput{op: "put", key: "k", value: "b"}, Call: 20, Output: regOutput{}, Return: 30},
		{ClientId: 2, Input: regInput{op: "get", key: "k"}, Call: 40, Output: regOutput{value: "a"}, Return: 50},
	}
	if porcupine.CheckOperations(registerModel, h) {
		t.Fatal("a read of an overwritten value after the overwrite returned was accepted")
	}
	h[2].Output = regOutput{value: "b"}
	if !porcupine.CheckOperations(registerModel, h) {
		t.Fatal("a linearizable history was rejected")
	}
}

// history records operations from concurrent clients.
type history struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
}

func (h *history) now() int64 { return int64(time.Since(h.start)) }

func (h *history) add(client int, in regInput, call int64, out regOutput, ret int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
}

// lclient is one client of the linearizability test: it sends each
// operation to the node it believes leads and follows NotLeaderError
// hints.
type lclient struct {
	id     int
	pinned bool // reads only, always from the same server
	stores []*Store
	hist   *history
	target int
	seq    int
	rnd    *rand.Rand
}

func (c *lclient) follow(err error) {
	if c.pinned {
		return
	}
	var nle *NotLeaderError
	if errors.As(err, &nle) && nle.LeaderID != "" {
		for i, s := range c.stores {
			if s.ID() == nle.LeaderID {
				c.target = i
				return
			}
		}
	}
	c.target = c.rnd.IntN(len(c.stores))
}

// get is a default-consistency read: VerifyLeader, then the local state.
// A failed read changed nothing and is not recorded.
func (c *lclient) get(key string) (value string, index uint64, ok bool) {
	s := c.stores[c.target]
	call := c.hist.now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	err := s.VerifyLeader(ctx)
	cancel()
	if err != nil {
		c.follow(err)
		return "", 0, false
	}
	e, _ := s.State().Get(key)
	if e != nil {
		value, index = string(e.Value), e.ModifyIndex
	}
	c.hist.add(c.id, regInput{op: "get", key: key}, call, regOutput{value: value}, c.hist.now())
	return value, index, true
}

// write applies a put or cas. ErrNotLeader means it was not applied and
// it is not recorded; any other error leaves the outcome unknown.
func (c *lclient) write(in regInput, op KVOp) {
	s := c.stores[c.target]
	call := c.hist.now()
	// A short timeout lets writers leave a cut-off leader quickly.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	res, err := s.Apply(ctx, &Command{Type: CmdKV, KV: op})
	cancel()
	switch {
	case err == nil:
		c.hist.add(c.id, in, call, regOutput{ok: res.OK}, c.hist.now())
	case errors.Is(err, ErrNotLeader):
		c.follow(err)
	default:
		c.hist.add(c.id, in, call, regOutput{unknown: true}, math.MaxInt64)
		c.follow(err)
	}
}

func (c *lclient) run(stop <-chan struct{}, keys []string) {
	// Pace the load so the history stays small enough to check quickly.
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		key := keys[c.rnd.IntN(len(keys))]
		if c.pinned {
			c.get(key)
			continue
		}
		c.seq++
		value := fmt.Sprintf("c%d-%d", c.id, c.seq)
		switch p := c.rnd.IntN(10); {
		case p < 4:
			c.get(key)
		case p < 7:
			c.write(regInput{op: "put", key: key, value: value}, KVOp{Verb: VerbSet, Key: key, Value: []byte(value)})
		default:
			old, idx, ok := c.get(key)
			if ok {
				c.write(regInput{op: "cas", key: key, value: value, expect: old}, KVOp{Verb: VerbCAS, Key: key, Index: idx, Value: []byte(value)})
			}
		}
	}
}

// TestLinearizable runs concurrent clients against a 3-server cluster
// while the leader is partitioned away and later shut down, and checks the
// history of reads (through VerifyLeader) and writes with porcupine.
func TestLinearizable(t *testing.T) {
	// n0 keeps the longest lease raft allows while n1 and n2 time out
	// fast: when n0 leads and is cut off, the others elect a new leader
	// while n0 still believes it leads. That is the window in which a read
	// skipping the quorum check would be stale; pinned readers keep asking
	// n0 through it.
	c := newCluster(t, 3, clusterOpts{tweak: func(cfg *Config) {
		if cfg.NodeID == "n0" {
			cfg.Timing = Timing{HeartbeatTimeout: time.Second, ElectionTimeout: time.Second, LeaderLeaseTimeout: time.Second, CommitTimeout: 5 * time.Millisecond}
			return
		}
		cfg.Timing = Timing{HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond, LeaderLeaseTimeout: 200 * time.Millisecond, CommitTimeout: 5 * time.Millisecond}
	}})
	moveLeader := func(to int) {
		waitUntil(t, 15*time.Second, fmt.Sprintf("n%d to lead", to), func() bool {
			l := c.leader()
			if c.index(l) == to {
				return true
			}
			target := c.nodes[to].store
			_ = l.raft.LeadershipTransferToServer(raft.ServerID(target.ID()), raft.ServerAddress(target.Addr())).Error()
			return false
		})
	}
	stores := make([]*Store, len(c.nodes))
	for i, nd := range c.nodes {
		stores[i] = nd.store
	}
	keys := []string{"a", "b", "c"}
	hist := &history{start: time.Now()}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// Five clients read and write through whichever server leads; three
	// more read from one server each, so the servers that lose leadership
	// keep being asked.
	const clients = 8
	for i := 0; i < clients; i++ {
		cl := &lclient{id: i, stores: stores, hist: hist, target: i % len(stores), pinned: i >= 5, rnd: rand.New(rand.NewPCG(uint64(i), 42))}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl.run(stop, keys)
		}()
	}

	phase := func(what string, d time.Duration) {
		t.Logf("nemesis: %s", what)
		select {
		case <-time.After(d):
		case <-t.Context().Done():
		}
	}
	moveLeader(0)
	phase("steady", time.Second)
	moveLeader(0)
	old := 0
	c.partition(old)
	phase(fmt.Sprintf("leader n%d partitioned away", old), 2*time.Second)
	c.heal()
	phase("healed", time.Second)
	l := c.index(c.leader())
	c.stop(l)
	phase(fmt.Sprintf("leader n%d shut down", l), 2*time.Second)
	close(stop)
	wg.Wait()

	// Final reads: every acknowledged write must still be visible.
	final := &lclient{id: clients, stores: stores, hist: hist, rnd: rand.New(rand.NewPCG(99, 1))}
	for _, k := range keys {
		waitUntil(t, 15*time.Second, "a final read of "+k, func() bool {
			_, _, ok := final.get(k)
			return ok
		})
	}
	c.waitConverged()

	var gets, puts, cas, unknown int
	for _, op := range hist.ops {
		switch op.Input.(regInput).op {
		case "get":
			gets++
		case "put":
			puts++
		case "cas":
			cas++
		}
		if op.Output.(regOutput).unknown {
			unknown++
		}
	}
	t.Logf("history: %d operations (%d gets, %d puts, %d cas, %d with unknown outcome)", len(hist.ops), gets, puts, cas, unknown)
	if gets < 50 || puts+cas < 50 {
		t.Fatalf("too few operations to judge: %d gets, %d writes", gets, puts+cas)
	}
	res, info := porcupine.CheckOperationsVerbose(registerModel, hist.ops, 30*time.Second)
	switch res {
	case porcupine.Ok:
	case porcupine.Illegal:
		if f, err := os.CreateTemp("", "kvstore-history-*.html"); err == nil {
			if porcupine.Visualize(registerModel, info, f) == nil {
				t.Logf("visualization: %s", f.Name())
			}
			f.Close()
		}
		t.Fatal("history is not linearizable")
	default:
		t.Fatalf("linearizability check inconclusive: %s", res)
	}
}
