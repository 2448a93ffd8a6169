package kvstore

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
)

// BenchmarkApplyParallel measures concurrent Apply throughput on a
// 3-server cluster over TCP with bolt log stores (fsync on), all on one
// machine and disk:
//
//   - batch: the default, raft's buffered apply channel (BatchApplyCh)
//     and the batching FSM: concurrent Applies share a disk write and an
//     fsync on each server.
//   - nobatchch: DisableBatchApply; raft still group-commits the Applies
//     already waiting when its leader loop comes round.
//   - serial: DisableBatchApply and MaxAppendEntries 1, close to one fsync
//     per command: what batching saves.
//
// go test -run '^$' -bench ApplyParallel -benchtime 5s ./kvstore/
func BenchmarkApplyParallel(b *testing.B) {
	for _, bc := range []struct {
		name  string
		tweak func(*Config)
	}{
		{"batch", func(*Config) {}},
		{"nobatchch", func(c *Config) { c.DisableBatchApply = true }},
		{"serial", func(c *Config) { c.DisableBatchApply = true; c.MaxAppendEntries = 1 }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := newCluster(b, 3, clusterOpts{tcp: true, onDisk: true, tweak: func(cfg *Config) {
				cfg.Logger = slog.New(slog.DiscardHandler)
				bc.tweak(cfg)
			}})
			l := c.leader()
			value := make([]byte, 100)
			var n atomic.Int64
			var failed atomic.Int64
			b.SetParallelism(32) // 32 × GOMAXPROCS concurrent clients
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					i := n.Add(1)
					_, err := l.Apply(ctx, &Command{Type: CmdKV, KV: KVOp{Verb: VerbSet, Key: fmt.Sprintf("bench/%04d", i%4096), Value: value}})
					if err != nil {
						failed.Add(1)
					}
				}
			})
			b.StopTimer()
			if f := failed.Load(); f > 0 {
				b.Fatalf("%d of %d applies failed", f, b.N)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
	}
}

// BenchmarkVerifyLeaderParallel measures default-consistency reads
// (VerifyLeader, then a local Get) on the leader of a 3-server TCP
// cluster; concurrent callers share heartbeat rounds.
func BenchmarkVerifyLeaderParallel(b *testing.B) {
	c := newCluster(b, 3, clusterOpts{tcp: true, tweak: func(cfg *Config) {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}})
	l := c.leader()
	c.set("k", "v")
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if err := l.VerifyLeader(ctx); err != nil {
				b.Error(err)
				return
			}
			if e, _ := l.State().Get("k"); e == nil {
				b.Error("k missing")
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
}
