package gossip

import (
	"net"

	"github.com/hashicorp/memberlist"
)

// emit logs, counts and publishes an event.
func (g *Gossip) emit(ev Event) {
	m := ev.Member
	attrs := []any{"name", m.Name, "addr", m.address()}
	switch ev.Type {
	case EventJoin:
		g.log.Info("member joined", attrs...)
	case EventLeave:
		g.log.Info("member left", attrs...)
	case EventFailed:
		g.log.Warn("member failed", attrs...)
	case EventUpdate:
		g.log.Debug("member updated", attrs...)
	case EventReap:
		g.log.Info("member reaped", append(attrs, "status", m.Status.String())...)
	}
	g.met.events.WithLabelValues(ev.Type.String()).Inc()
	g.subs.publish(ev)
	if ev.Type != EventUpdate {
		g.markDirty()
	}
}

func (g *Gossip) markDirty() {
	select {
	case g.dirty <- struct{}{}:
	default:
	}
}

// toMember converts a memberlist node. Malformed metadata is logged and
// dropped rather than hiding the member.
func (g *Gossip) toMember(n *memberlist.Node) (Member, uint64) {
	runID, tags, err := decodeMeta(n.Meta)
	if err != nil {
		g.log.Warn("member has malformed metadata", "name", n.Name, "err", err)
	}
	return Member{
		Name:        n.Name,
		Addr:        append(net.IP(nil), n.Addr...),
		Port:        n.Port,
		Tags:        tags,
		ProtocolMin: n.PMin, ProtocolMax: n.PMax, ProtocolCur: n.PCur,
		DelegateMin: n.DMin, DelegateMax: n.DMax, DelegateCur: n.DCur,
	}, runID
}

// onLeaveIntent handles a leave intent received from the network.
func (g *Gossip) onLeaveIntent(msg []byte) {
	runID, name, err := decodeLeaveIntent(msg)
	if err != nil {
		g.log.Debug("ignoring gossip message", "err", err)
		return
	}
	ev, emit, changed := g.table.leaveIntent(name, runID, g.now())
	if !changed {
		return
	}
	// Pass it on, as memberlist does with its own news.
	g.bcast.QueueBroadcast(&intentBroadcast{node: name, msg: append([]byte(nil), msg...)})
	if emit {
		g.emit(ev)
	} else {
		g.log.Info("member leaving", "name", name)
	}
}

// eventDelegate receives memberlist's membership callbacks. memberlist
// holds its node lock while calling them: they must be quick, must not
// block and must not call back into memberlist.
type eventDelegate struct{ g *Gossip }

func (d *eventDelegate) NotifyJoin(n *memberlist.Node) {
	m, runID := d.g.toMember(n)
	if ev, ok := d.g.table.alive(m, runID, d.g.now()); ok {
		d.g.emit(ev)
	}
}

func (d *eventDelegate) NotifyLeave(n *memberlist.Node) {
	m, runID := d.g.toMember(n)
	// memberlist v0.6 does not set n.State here (it updates its own copy);
	// honour it anyway should a later version do so.
	if ev, ok := d.g.table.gone(m, runID, n.State == memberlist.StateLeft, d.g.now()); ok {
		d.g.emit(ev)
	}
}

func (d *eventDelegate) NotifyUpdate(n *memberlist.Node) {
	m, runID := d.g.toMember(n)
	if ev, ok := d.g.table.alive(m, runID, d.g.now()); ok {
		d.g.emit(ev)
	}
}

// delegate serves this member's metadata and carries leave intents; the
// rest of memberlist's Delegate (user state on push/pull) is unused.
type delegate struct{ g *Gossip }

func (d *delegate) NodeMeta(limit int) []byte {
	d.g.metaMu.Lock()
	defer d.g.metaMu.Unlock()
	if len(d.g.meta) > limit { // cannot happen: encodeMeta enforces 512
		return nil
	}
	return append([]byte(nil), d.g.meta...)
}

func (d *delegate) NotifyMsg(b []byte) { d.g.onLeaveIntent(b) }

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.g.bcast.GetBroadcasts(overhead, limit)
}

func (d *delegate) LocalState(join bool) []byte            { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool) {}

var (
	_ memberlist.EventDelegate = (*eventDelegate)(nil)
	_ memberlist.Delegate      = (*delegate)(nil)
	_ error                    = joinErrors(nil)
)
