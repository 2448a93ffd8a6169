package kvstore_test

import (
	"context"
	"fmt"
	"time"

	"github.com/outrigger/outrigger/kvstore"
)

// A blocking ?recurse read as an HTTP handler would do it: wait for the
// prefix's index to pass the client's, under the client's wait time, then
// answer with the list and its index either way.
func ExampleStateStore_WaitPrefix() {
	s, err := kvstore.New(kvstore.Config{NodeID: "dev", InMemory: true, Timing: kvstore.FastTiming()})
	if err != nil {
		panic(err)
	}
	defer s.Shutdown()
	if err := s.Bootstrap(nil); err != nil {
		panic(err)
	}
	ctx := context.Background()
	if _, _, err := s.WaitForLeader(ctx); err != nil { // the server elects itself
		panic(err)
	}
	apply := func(c *kvstore.Command) (*kvstore.Result, error) { return s.Apply(ctx, c) }
	if _, err := apply(&kvstore.Command{Type: kvstore.CmdKV, KV: kvstore.KVOp{Verb: kvstore.VerbSet, Key: "web/a", Value: []byte("1")}}); err != nil {
		panic(err)
	}

	st := s.State()
	_, index := st.List("web/") // the client's X-Consul-Index

	go func() {
		_, _ = apply(&kvstore.Command{Type: kvstore.CmdKV, KV: kvstore.KVOp{Verb: kvstore.VerbSet, Key: "api/x"}}) // does not wake the reader
		_, _ = apply(&kvstore.Command{Type: kvstore.CmdKV, KV: kvstore.KVOp{Verb: kvstore.VerbSet, Key: "web/b", Value: []byte("2")}})
	}()

	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute) // ?wait=5m
	defer cancel()
	_, _ = st.WaitPrefix(wctx, "web/", index) // a timeout is answered like a change
	entries, newIndex := st.List("web/")
	for _, e := range entries {
		fmt.Printf("%s=%s\n", e.Key, e.Value)
	}
	fmt.Println(newIndex > index)
	// Output:
	// web/a=1
	// web/b=2
	// true
}
