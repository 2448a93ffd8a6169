package gossip

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// waitRetryDone waits for the retry-join loop's outcome.
func waitRetryDone(t *testing.T, nd *testNode, timeout time.Duration) error {
	t.Helper()
	select {
	case err := <-nd.RetryJoinDone():
		return err
	case <-time.After(timeout):
		t.Fatalf("%s: retry join still running after %v", nd.name, timeout)
		return nil
	}
}

func TestRetryJoinWaitsForSeed(t *testing.T) {
	// Learn a free port by starting the seed once, then stop it.
	seed := startNode(t, testConfig("seed"))
	_, port := seed.Addr()
	if err := seed.Shutdown(); err != nil {
		t.Fatal(err)
	}

	cfg := testConfig("b")
	cfg.RetryJoin = []string{fmt.Sprintf("127.0.0.1:%d", port)}
	b := startNode(t, cfg)
	waitFor(t, 10*time.Second, "two failed join attempts", func() error {
		if n := b.logs.count("join failed, will retry"); n < 2 {
			return fmt.Errorf("%d attempts logged", n)
		}
		return nil
	})

	cfg = testConfig("seed")
	cfg.BindPort = port
	seed2 := startNode(t, cfg)
	if err := waitRetryDone(t, b, 15*time.Second); err != nil {
		t.Fatalf("retry join: %v", err)
	}
	waitAllSee(t, []*testNode{seed2, b}, 2)
	if _, ok := b.logs.find("joined the cluster", "attempt="); !ok {
		t.Error("success not logged")
	}
}

func TestRetryJoinGivesUp(t *testing.T) {
	a := startNode(t, testConfig("a"))
	_, port := a.Addr()
	if err := a.Shutdown(); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig("b")
	cfg.RetryJoin = []string{fmt.Sprintf("127.0.0.1:%d", port)}
	cfg.RetryMax = 3
	cfg.RetryInterval = 10 * time.Millisecond
	cfg.RetryMaxInterval = 20 * time.Millisecond
	b := startNode(t, cfg)
	err := waitRetryDone(t, b, 15*time.Second)
	if !errors.Is(err, ErrRetryJoinExhausted) || !strings.Contains(err.Error(), "3 attempts") {
		t.Fatalf("got %v, want ErrRetryJoinExhausted after 3 attempts", err)
	}
	if n := b.logs.count("join failed, will retry"); n != 2 {
		t.Errorf("%d retries logged, want 2", n)
	}
	if _, ok := b.logs.find("level=ERROR", "giving up joining the cluster"); !ok {
		t.Error("giving up not logged")
	}
}

func TestRetryJoinNothingToDo(t *testing.T) {
	a := startNode(t, testConfig("a"))
	if err := waitRetryDone(t, a, 5*time.Second); err != nil {
		t.Errorf("got %v, want nil", err)
	}
}

func TestRetryJoinStopsWithContext(t *testing.T) {
	cfg := testConfig("b")
	cfg.RetryJoin = []string{"127.0.0.1:1"}
	cfg.RetryInterval = time.Hour
	cfg.RetryMaxInterval = time.Hour
	cfg.Logger = newLogCapture(t).logger("b")
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Shutdown()
	ctx, cancel := context.WithCancel(context.Background())
	g.Start(ctx)
	g.Start(ctx) // second call ignored
	cancel()
	select {
	case err := <-g.RetryJoinDone():
		if !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("retry loop did not stop with its context")
	}
}

func TestRejoinRememberedPeers(t *testing.T) {
	for _, graceful := range []bool{false, true} {
		name := "after hard stop"
		if graceful {
			name = "after leave"
		}
		t.Run(name, func(t *testing.T) {
			a := startNode(t, testConfig("a"))
			dir := t.TempDir()
			cfg := testConfig("b")
			cfg.DataDir = dir
			b := startNode(t, cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := b.Join(ctx, []string{a.addr}); err != nil {
				t.Fatal(err)
			}
			waitAllSee(t, []*testNode{a, b}, 2)
			// Saved while running, not only at shutdown (a crash skips that).
			peersFile := filepath.Join(dir, "gossip", "peers.json")
			waitFor(t, 10*time.Second, "peers.json lists a", func() error {
				data, err := os.ReadFile(peersFile)
				if err != nil {
					return err
				}
				if !strings.Contains(string(data), `"addr": "`+a.addr+`"`) {
					return fmt.Errorf("peers.json: %s", data)
				}
				return nil
			})

			_, bPort := b.Addr()
			if graceful {
				if err := b.Leave(ctx); err != nil {
					t.Fatal(err)
				}
				b.Shutdown()
				waitStatus(t, []*testNode{a}, "b", StatusLeft, 10*time.Second)
			} else {
				b.Shutdown()
				waitStatus(t, []*testNode{a}, "b", StatusFailed, 30*time.Second)
			}

			ch, unsubscribe := a.Subscribe(8)
			defer unsubscribe()
			cfg = testConfig("b")
			cfg.DataDir = dir // no RetryJoin: only the remembered peers
			if !graceful {
				cfg.BindPort = bPort // same address: a restart in place
			}
			b2 := startNode(t, cfg)
			if err := waitRetryDone(t, b2, 15*time.Second); err != nil {
				t.Fatalf("rejoin: %v", err)
			}
			if _, ok := b2.logs.find("rejoining peers remembered from the last run", "peers=1"); !ok {
				t.Error("rejoin not logged")
			}
			waitEvent(t, ch, EventJoin, "b", 15*time.Second)
			waitStatus(t, []*testNode{a}, "b", StatusAlive, 15*time.Second)
			waitAllSee(t, []*testNode{a, b2}, 2)
			if m, _ := a.Member("b"); m.address() != b2.addr {
				t.Errorf("a sees b at %s, want %s", m.address(), b2.addr)
			}
		})
	}
}

// A restarted member whose RetryJoin reaches one group (the servers,
// restarted together) still contacts a remembered peer outside it (the
// clients, which marked the servers failed and do not probe them again):
// remembered peers already met through RetryJoin do not count.
func TestRejoinReachesRememberedPeersBeyondRetryJoin(t *testing.T) {
	a := startNode(t, testConfig("a")) // the other servers
	b := startNode(t, testConfig("b")) // a client, not in a's cluster
	dir := t.TempDir()
	ps, err := openPeerStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := ps.save([]peerEntry{{"a", a.addr}, {"b", b.addr}}); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig("c")
	cfg.DataDir = dir
	cfg.RetryJoin = []string{a.addr}
	c := startNode(t, cfg)
	if err := waitRetryDone(t, c, 15*time.Second); err != nil {
		t.Fatalf("rejoin: %v", err)
	}
	waitAllSee(t, []*testNode{a, b, c}, 3)
}
