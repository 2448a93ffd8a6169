package kvstore

import (
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Store. The zero value of every field but NodeID and
// DataDir means its default, resolved in one place (withDefaults);
// DefaultConfig returns the defaults spelled out.
type Config struct {
	// NodeID is this server's Raft ID, unique and stable across restarts.
	// Required.
	NodeID string
	// BindAddr is the host:port the Raft TCP transport listens on. Port 0
	// picks a free port (see Store.Addr). If empty, "0.0.0.0:8300".
	BindAddr string
	// Advertise is the host:port other servers dial. If empty, the
	// listener's address, which must then not be an unspecified address
	// such as 0.0.0.0.
	Advertise string
	// DataDir holds raft/raft.db (bbolt log and stable store) and
	// raft/snapshots. Required unless InMemory.
	DataDir string
	// InMemory keeps the log, stable store and snapshots in memory (-dev).
	// Nothing survives a restart. With no Transport and no BindAddr an
	// in-memory transport is used too.
	InMemory bool
	// Transport, if set, is used instead of a TCP transport (tests use
	// raft.NewInmemTransport). Raft closes it on Shutdown.
	Transport raft.Transport

	// SnapshotThreshold is the number of new logs that triggers a
	// snapshot. If zero, 8192.
	SnapshotThreshold uint64
	// SnapshotInterval is how often the threshold is checked (staggered up
	// to twice this). If zero, 30s (as Consul), so a restarted server replays a short log tail.
	SnapshotInterval time.Duration
	// TrailingLogs is how many logs are kept after a snapshot so a lagging
	// follower can catch up without one. If zero, 10240.
	TrailingLogs uint64
	// RetainSnapshots is how many snapshots are kept on disk. If zero, 2.
	RetainSnapshots int

	// Timing holds Raft's timeouts. If zero, DefaultTiming(); FastTiming()
	// suits tests and -dev.
	Timing Timing
	// MaxAppendEntries bounds the logs sent per AppendEntries and applied
	// per batch (at most 1024). If zero, 256.
	MaxAppendEntries int
	// DisableBatchApply turns off raft's buffered apply channel
	// (Config.BatchApplyCh). Batching is on by default: concurrent Apply
	// calls then share one disk write and one fsync.
	DisableBatchApply bool
	// ApplyTimeout caps how long Apply waits when ctx has no earlier
	// deadline. If zero, 30s.
	ApplyTimeout time.Duration

	// MinSessionTTL is the smallest non-zero session TTL accepted. If zero,
	// 10s (Consul's minimum).
	MinSessionTTL time.Duration
	// TombstoneTTL is how long a tombstone is kept at least before the
	// leader reaps it (at most twice this). If zero, 15m.
	TombstoneTTL time.Duration

	// Logger receives the store's and raft's logs. If nil, logs are
	// discarded.
	Logger *slog.Logger
	// Registerer receives the store's Prometheus metrics. If nil, none are
	// registered (never the global registry).
	Registerer prometheus.Registerer
	// Now is the clock used to stamp commands (lock-delay). If nil,
	// time.Now.
	Now func() time.Time
}

// Timing is Raft's timing profile.
type Timing struct {
	// HeartbeatTimeout: time without contact from the leader before a
	// follower starts an election.
	HeartbeatTimeout time.Duration
	// ElectionTimeout: time a candidate waits before retrying.
	ElectionTimeout time.Duration
	// LeaderLeaseTimeout: time a leader stays leader without reaching a
	// quorum. At most HeartbeatTimeout.
	LeaderLeaseTimeout time.Duration
	// CommitTimeout: longest wait before the leader sends new logs on an
	// otherwise idle connection.
	CommitTimeout time.Duration
}

// DefaultTiming is raft's own default profile, for LAN clusters.
func DefaultTiming() Timing {
	return Timing{
		HeartbeatTimeout:   time.Second,
		ElectionTimeout:    time.Second,
		LeaderLeaseTimeout: 500 * time.Millisecond,
		CommitTimeout:      50 * time.Millisecond,
	}
}

// FastTiming elects and fails over in about a second, for in-process
// tests and -dev. It still tolerates a loaded machine (and the race
// detector); it does not suit a WAN.
func FastTiming() Timing {
	return Timing{
		HeartbeatTimeout:   500 * time.Millisecond,
		ElectionTimeout:    500 * time.Millisecond,
		LeaderLeaseTimeout: 400 * time.Millisecond,
		CommitTimeout:      5 * time.Millisecond,
	}
}

// DefaultConfig returns the defaults. NodeID and DataDir (or InMemory) are
// still to be set.
func DefaultConfig() Config {
	var c Config
	c.withDefaults()
	return c
}

func (c *Config) withDefaults() {
	if c.BindAddr == "" && !c.InMemory && c.Transport == nil {
		c.BindAddr = "0.0.0.0:8300"
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 8192
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = 30 * time.Second
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = 10240
	}
	if c.RetainSnapshots == 0 {
		c.RetainSnapshots = 2
	}
	if c.Timing == (Timing{}) {
		c.Timing = DefaultTiming()
	}
	if c.MaxAppendEntries == 0 {
		c.MaxAppendEntries = 256
	}
	if c.ApplyTimeout == 0 {
		c.ApplyTimeout = 30 * time.Second
	}
	if c.MinSessionTTL == 0 {
		c.MinSessionTTL = 10 * time.Second
	}
	if c.TombstoneTTL == 0 {
		c.TombstoneTTL = 15 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

func configErr(field, format string, args ...any) error {
	return fmt.Errorf("kvstore: config: %w: %s: %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...))
}

// Validate checks c after defaults are applied; the error names the field.
func (c Config) Validate() error {
	c.withDefaults()
	if c.NodeID == "" {
		return configErr("NodeID", "required")
	}
	if c.DataDir == "" && !c.InMemory {
		return configErr("DataDir", "required unless InMemory")
	}
	if c.Transport == nil && c.BindAddr != "" {
		host, _, err := net.SplitHostPort(c.BindAddr)
		if err != nil {
			return configErr("BindAddr", "%v", err)
		}
		if c.Advertise != "" {
			if _, _, err := net.SplitHostPort(c.Advertise); err != nil {
				return configErr("Advertise", "%v", err)
			}
		} else if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			return configErr("Advertise", "required when BindAddr %q is not an address others can dial", c.BindAddr)
		}
	}
	t := c.Timing
	for _, f := range []struct {
		name string
		d    time.Duration
	}{
		{"Timing.HeartbeatTimeout", t.HeartbeatTimeout},
		{"Timing.ElectionTimeout", t.ElectionTimeout},
		{"Timing.LeaderLeaseTimeout", t.LeaderLeaseTimeout},
		{"Timing.CommitTimeout", t.CommitTimeout},
	} {
		if f.d < time.Millisecond {
			return configErr(f.name, "%s is below 1ms", f.d)
		}
	}
	if t.LeaderLeaseTimeout > t.HeartbeatTimeout {
		return configErr("Timing.LeaderLeaseTimeout", "%s exceeds HeartbeatTimeout %s", t.LeaderLeaseTimeout, t.HeartbeatTimeout)
	}
	if t.ElectionTimeout < t.HeartbeatTimeout {
		return configErr("Timing.ElectionTimeout", "%s is below HeartbeatTimeout %s", t.ElectionTimeout, t.HeartbeatTimeout)
	}
	if c.SnapshotInterval < 5*time.Millisecond {
		return configErr("SnapshotInterval", "%s is below 5ms", c.SnapshotInterval)
	}
	if c.MaxAppendEntries < 1 || c.MaxAppendEntries > 1024 {
		return configErr("MaxAppendEntries", "%d not in [1, 1024]", c.MaxAppendEntries)
	}
	if c.RetainSnapshots < 1 {
		return configErr("RetainSnapshots", "%d is below 1", c.RetainSnapshots)
	}
	if c.ApplyTimeout < 0 {
		return configErr("ApplyTimeout", "negative")
	}
	if c.MinSessionTTL < 0 || c.MinSessionTTL > MaxSessionTTL {
		return configErr("MinSessionTTL", "%s not in [0, %s]", c.MinSessionTTL, MaxSessionTTL)
	}
	if c.TombstoneTTL < 0 {
		return configErr("TombstoneTTL", "negative")
	}
	return nil
}

// raftConfig translates c (with defaults applied) into raft's Config.
func (c *Config) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.NodeID)
	rc.HeartbeatTimeout = c.Timing.HeartbeatTimeout
	rc.ElectionTimeout = c.Timing.ElectionTimeout
	rc.LeaderLeaseTimeout = c.Timing.LeaderLeaseTimeout
	rc.CommitTimeout = c.Timing.CommitTimeout
	rc.SnapshotThreshold = c.SnapshotThreshold
	rc.SnapshotInterval = c.SnapshotInterval
	rc.TrailingLogs = c.TrailingLogs
	rc.MaxAppendEntries = c.MaxAppendEntries
	rc.BatchApplyCh = !c.DisableBatchApply
	rc.ShutdownOnRemove = false
	rc.NoLegacyTelemetry = true
	rc.Logger = newHCLogAdapter(c.Logger, "raft")
	return rc
}
