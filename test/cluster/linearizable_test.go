package cluster

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/outrigger/outrigger/internal/testutil"
)

type regInput struct {
	put   bool
	key   string
	value string
}

type regOutput struct {
	value string
}

// registerModel is a set of independent registers, one per key, partitioned
// by key; a missing key reads as "".
var registerModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(regInput).key
			byKey[k] = append(byKey[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(byKey))
		for _, ops := range byKey {
			out = append(out, ops)
		}
		return out
	},
	Init: func() interface{} { return "" },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		in := input.(regInput)
		if in.put {
			return true, in.value
		}
		return output.(regOutput).value == state.(string), state
	},
	DescribeOperation: func(input, output interface{}) string {
		in := input.(regInput)
		if in.put {
			return fmt.Sprintf("put(%s, %s)", in.key, in.value)
		}
		return fmt.Sprintf("get(%s) -> %q", in.key, output.(regOutput).value)
	},
}

// TestLinearizableAcrossLeaderKill records put/get histories from clients
// on every agent (default-consistency reads) while the leader is killed and
// restarted, and checks them with porcupine. Puts whose outcome is unknown
// (errors, timeouts) may take effect at any later time.
func TestLinearizableAcrossLeaderKill(t *testing.T) {
	c := startCluster(t, 1)
	agents := append([]*testutil.Proc{c.clients[0]}, c.servers...)
	keys := []string{"lin/a", "lin/b", "lin/c"}
	httpc := &http.Client{Timeout: 5 * time.Second}

	start := time.Now()
	now := func() int64 { return time.Since(start).Nanoseconds() }
	var (
		mu      sync.Mutex
		history []porcupine.Operation
		unknown int
		stop    = make(chan struct{})
		wg      sync.WaitGroup
	)
	record := func(op porcupine.Operation) {
		mu.Lock()
		history = append(history, op)
		mu.Unlock()
	}
	for id := 0; id < 6; id++ {
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			via := agents[id%len(agents)]
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				key := keys[(id+n)%len(keys)]
				url := "http://" + via.HTTPAddr() + "/v1/kv/" + key
				if n%2 == 0 {
					val := fmt.Sprintf("c%d-%d", id, n)
					call := now()
					req, _ := http.NewRequest("PUT", url, strings.NewReader(val))
					resp, err := httpc.Do(req)
					if isRefused(err) {
						// Never reached an agent: no effect, not part of the history.
						time.Sleep(50 * time.Millisecond)
						continue
					}
					ok := false
					if err == nil {
						body, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						ok = resp.StatusCode == 200 && strings.TrimSpace(string(body)) == "true"
					}
					ret := now()
					if !ok {
						// Unknown outcome: it may have been applied at any time after call.
						ret = math.MaxInt64 / 2
						mu.Lock()
						unknown++
						mu.Unlock()
						time.Sleep(20 * time.Millisecond)
					}
					record(porcupine.Operation{ClientId: id, Input: regInput{put: true, key: key, value: val}, Call: call, Output: regOutput{}, Return: ret})
					continue
				}
				call := now()
				resp, err := httpc.Get(url + "?raw")
				if err != nil {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				ret := now()
				var v string
				switch resp.StatusCode {
				case 200:
					v = string(body)
				case 404:
					v = ""
				default:
					time.Sleep(20 * time.Millisecond)
					continue // a failed read has no effect
				}
				record(porcupine.Operation{ClientId: id, Input: regInput{key: key}, Call: call, Output: regOutput{value: v}, Return: ret})
			}
		}(id)
	}

	time.Sleep(2 * time.Second) // let the history build before the fault
	old := c.leader(t)
	old.Kill()
	t.Logf("killed leader %s at %v", old.Name, time.Since(start).Round(time.Millisecond))
	c.leader(t)
	time.Sleep(2 * time.Second)
	old.Start()
	t.Logf("restarted %s at %v", old.Name, time.Since(start).Round(time.Millisecond))
	c.waitLeader(t, old)
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	reads := 0
	for _, op := range history {
		if !op.Input.(regInput).put {
			reads++
		}
	}
	if reads < 100 {
		t.Fatalf("only %d successful reads recorded: the cluster barely served", reads)
	}
	res, info := porcupine.CheckOperationsVerbose(registerModel, history, 60*time.Second)
	t.Logf("FIGURE linearizability: %d operations (%d reads, %d puts of unknown outcome): %s", len(history), reads, unknown, res)
	if res == porcupine.Illegal {
		path := t.TempDir() + "/history.html"
		if err := porcupine.VisualizePath(registerModel, info, path); err == nil {
			t.Logf("visualization: %s", path)
		}
		t.Fatal("history is not linearizable")
	}
	if res == porcupine.Unknown {
		t.Fatal("linearizability check timed out")
	}
}

// isRefused reports a connection that was never made: the request cannot
// have had any effect.
func isRefused(err error) bool {
	var op *net.OpError
	return err != nil && errors.As(err, &op) && op.Op == "dial"
}
