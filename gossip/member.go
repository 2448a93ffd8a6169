package gossip

import (
	"maps"
	"net"
	"slices"
	"strconv"
	"time"
)

// Status is a member's state as Consul reports it in /v1/agent/members.
type Status int

// The values match Serf's and Consul's numbering, which clients rely on.
const (
	StatusNone    Status = 0
	StatusAlive   Status = 1
	StatusLeaving Status = 2
	StatusLeft    Status = 3
	StatusFailed  Status = 4
)

// String returns the word `consul members` prints: alive, leaving, left, failed.
func (s Status) String() string {
	switch s {
	case StatusAlive:
		return "alive"
	case StatusLeaving:
		return "leaving"
	case StatusLeft:
		return "left"
	case StatusFailed:
		return "failed"
	default:
		return "none"
	}
}

// Member is one agent as this agent knows it.
type Member struct {
	Name string
	Addr net.IP
	Port uint16 // gossip port
	// Tags carry the member's role and ports; see the Tag* constants.
	Tags   map[string]string
	Status Status
	// ProtocolMin/Max/Cur and DelegateMin/Max/Cur are memberlist's and
	// this build's protocol versions, reported as Consul does.
	ProtocolMin, ProtocolMax, ProtocolCur uint8
	DelegateMin, DelegateMax, DelegateCur uint8
	// Since is when Status last changed, as seen locally.
	Since time.Time
}

// Tag keys in a member's metadata. Role and dc follow Consul's tags so that
// tools reading /v1/agent/members understand them.
const (
	TagRole       = "role"  // "consul" for servers, "node" for clients
	TagDatacenter = "dc"    // datacenter name
	TagServerPort = "port"  // server RPC port (servers only)
	TagBuild      = "build" // version string
	TagVersion    = "vsn"   // protocol version
	TagHTTPPort   = "http"  // HTTP API port
	TagDNSPort    = "dns"   // DNS port
	TagBootstrap  = "expect"
	TagID         = "id" // node ID
)

// EventType says what happened to a member.
type EventType int

const (
	EventJoin EventType = iota + 1
	EventLeave
	EventFailed
	EventUpdate
	// EventReap: a failed or left member was forgotten after Config.ReapFailed
	// or Config.ReapLeft; the catalog may deregister it.
	EventReap
)

func (t EventType) String() string {
	switch t {
	case EventJoin:
		return "join"
	case EventLeave:
		return "leave"
	case EventFailed:
		return "failed"
	case EventUpdate:
		return "update"
	case EventReap:
		return "reap"
	}
	return "unknown"
}

// Event is a membership change delivered to subscribers.
type Event struct {
	Type   EventType
	Member Member
}

// clone returns a copy that shares no maps or slices with m.
func (m Member) clone() Member {
	m.Addr = slices.Clone(m.Addr)
	m.Tags = maps.Clone(m.Tags)
	return m
}

// address is "ip:port".
func (m Member) address() string {
	return net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port)))
}
