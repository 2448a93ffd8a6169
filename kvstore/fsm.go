package kvstore

import (
	"errors"
	"io"
	"log/slog"

	"github.com/hashicorp/raft"
)

// FSM is the Raft state machine: it decodes committed commands and applies
// them to a StateStore. Raft hands it batches of committed logs
// (raft.BatchingFSM); a batch becomes one state swap and one round of watch
// notifications.
//
// The value returned for each log (raft.ApplyFuture.Response) is internal;
// Store.Apply turns it into a *Result or an error.
type FSM struct {
	state  *StateStore
	logger *slog.Logger
	// observeBatch, if set, is told the size of every batch (metrics).
	observeBatch func(n int)
}

// NewFSM returns an FSM applying to state. A nil logger discards.
func NewFSM(state *StateStore, logger *slog.Logger) *FSM {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &FSM{state: state, logger: logger}
}

// State returns the store the FSM applies to.
func (f *FSM) State() *StateStore { return f.state }

// Apply applies one committed log.
func (f *FSM) Apply(l *raft.Log) interface{} {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch applies committed logs in order and returns one response per
// log. Logs that are not commands only advance the applied index. A log
// that cannot be decoded is reported to its proposer and skipped: every
// replica skips it alike, so they stay identical.
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	if f.observeBatch != nil {
		f.observeBatch(len(logs))
	}
	indexes := make([]uint64, len(logs))
	cmds := make([]*Command, len(logs))
	var decodeErrs map[int]error
	for i, l := range logs {
		indexes[i] = l.Index
		if l.Type != raft.LogCommand {
			continue
		}
		c, err := DecodeCommand(l.Data)
		if err != nil {
			if errors.Is(err, errUnknownIgnorable) {
				f.logger.Debug("skipping unknown ignorable command", "index", l.Index)
				continue
			}
			f.logger.Error("cannot decode command", "index", l.Index, "error", err)
			if decodeErrs == nil {
				decodeErrs = make(map[int]error)
			}
			decodeErrs[i] = err
			continue
		}
		cmds[i] = c
	}
	outcomes := f.state.applyCommands(indexes, cmds)
	out := make([]interface{}, len(logs))
	for i := range logs {
		switch {
		case decodeErrs[i] != nil:
			out[i] = applyOutcome{err: decodeErrs[i]}
		case cmds[i] != nil:
			out[i] = outcomes[i]
		}
	}
	return out
}

// Snapshot captures the current state. It is O(1): the state is immutable,
// so Persist can stream it while Apply goes on.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{root: f.state.load()}, nil
}

// Restore replaces the state with the snapshot read from rc and wakes every
// waiter.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	root, err := readSnapshot(rc)
	if err != nil {
		return err
	}
	f.state.restore(root)
	f.logger.Info("restored snapshot", "index", root.index, "keys", root.kv.Len(), "sessions", root.sessions.Len(),
		"nodes", root.nodes.Len(), "service_instances", root.services.Len(), "checks", root.checks.Len())
	return nil
}

type fsmSnapshot struct{ root *stateRoot }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := writeSnapshot(sink, s.root); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}

var (
	_ raft.BatchingFSM = (*FSM)(nil)
	_ raft.FSMSnapshot = (*fsmSnapshot)(nil)
)
