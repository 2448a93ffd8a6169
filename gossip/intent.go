package gossip

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/hashicorp/memberlist"
)

// Leave intents are the only messages this package adds to memberlist's
// gossip: a leaving member broadcasts one before memberlist's own leave
// message so that others can tell its leave from a failure (see
// memberTable). Format:
//
//	msgLeaveIntent, run ID (8 bytes, big endian), node name
const msgLeaveIntent = 1

func encodeLeaveIntent(runID uint64, name string) []byte {
	b := make([]byte, 0, 9+len(name))
	b = append(b, msgLeaveIntent)
	b = binary.BigEndian.AppendUint64(b, runID)
	return append(b, name...)
}

func decodeLeaveIntent(b []byte) (runID uint64, name string, err error) {
	if len(b) < 10 || b[0] != msgLeaveIntent {
		return 0, "", fmt.Errorf("not a leave intent (%d bytes)", len(b))
	}
	return binary.BigEndian.Uint64(b[1:9]), string(b[9:]), nil
}

// intentBroadcast is a queued leave intent. A newer intent about the same
// node replaces it.
type intentBroadcast struct {
	node   string
	msg    []byte
	notify chan struct{} // closed when sent often enough; may be nil
	once   sync.Once
}

func (b *intentBroadcast) Invalidates(other memberlist.Broadcast) bool {
	o, ok := other.(*intentBroadcast)
	return ok && o.node == b.node
}

func (b *intentBroadcast) Name() string    { return "leave:" + b.node }
func (b *intentBroadcast) Message() []byte { return b.msg }

func (b *intentBroadcast) Finished() {
	if b.notify != nil {
		b.once.Do(func() { close(b.notify) })
	}
}

var _ memberlist.NamedBroadcast = (*intentBroadcast)(nil)
