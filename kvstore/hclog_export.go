package kvstore

import (
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// HCLogger adapts l to hclog for the agent's other hashicorp components
// (the Raft network transport it builds over its multiplexed server port).
func HCLogger(l *slog.Logger, name string) hclog.Logger { return newHCLogAdapter(l, name) }
