package httpapi

import (
	"net"
	"net/http"
	"strconv"

	"github.com/hashicorp/raft"

	"github.com/outrigger/outrigger/gossip"
)

// raftProtocolVersion is the Raft protocol spoken (hashicorp/raft v3,
// server IDs), as Consul reports it.
const raftProtocolVersion = "3"

// raftServerJSON is Consul's RaftServer.
type raftServerJSON struct {
	ID              string
	Node            string
	Address         string
	Leader          bool
	ProtocolVersion string
	Voter           bool
}

// raftConfigurationJSON is Consul's RaftConfiguration.
type raftConfigurationJSON struct {
	Servers []raftServerJSON
	// Index is the Raft index of the configuration as raft reports it
	// (hashicorp/raft v1.7 reports 0, and so does Consul on it).
	Index uint64
}

// raftConfiguration serves GET /v1/operator/raft/configuration: the Raft
// servers, with node names from gossip (a member's "id" tag is its Raft
// ID; failing that, its address and server port are the Raft address).
func (a *kvAPI) raftConfiguration(w http.ResponseWriter, r *http.Request) {
	st := a.store(w, r)
	if st == nil {
		return
	}
	o, rerr := parseReadOptions(r.URL.Query())
	if rerr != nil {
		writeRequestError(w, rerr)
		return
	}
	o.index = 0 // not a blocking endpoint
	if !a.prepareRead(w, r, st, o, watchSpec{}) {
		return
	}
	servers, err := st.Configuration()
	if err != nil {
		a.storeError(w, r, err, nil)
		return
	}
	byID, byAddr := map[string]string{}, map[string]string{}
	for _, m := range a.s.cfg.Agent.Members() {
		if id := m.Tags[gossip.TagID]; id != "" {
			byID[id] = m.Name
		}
		if port := m.Tags[gossip.TagServerPort]; port != "" && m.Addr != nil {
			byAddr[net.JoinHostPort(m.Addr.String(), port)] = m.Name
		}
	}
	_, leaderID := st.Leader()
	out := raftConfigurationJSON{Servers: make([]raftServerJSON, 0, len(servers))}
	for _, sv := range servers {
		node, ok := byID[string(sv.ID)]
		if !ok {
			if node, ok = byAddr[string(sv.Address)]; !ok {
				node = "(unknown)"
			}
		}
		out.Servers = append(out.Servers, raftServerJSON{
			ID: string(sv.ID), Node: node, Address: string(sv.Address),
			Leader: leaderID != "" && string(sv.ID) == leaderID, ProtocolVersion: raftProtocolVersion,
			Voter: sv.Suffrage == raft.Voter,
		})
	}
	out.Index, _ = strconv.ParseUint(st.Stats()["latest_configuration_index"], 10, 64)
	setReadMeta(w, st, o.mode, out.Index)
	writeJSON(w, r, out)
}

// raftRemovePeer serves DELETE /v1/operator/raft/peer?id=|?address=: it
// removes a server from the Raft configuration (on the leader). A peer
// that is not in the configuration is a 404, most likely a typo.
func (a *kvAPI) raftRemovePeer(w http.ResponseWriter, r *http.Request) {
	st := a.store(w, r)
	if st == nil {
		return
	}
	q := r.URL.Query()
	_, hasID := q["id"]
	_, hasAddr := q["address"]
	switch {
	case !hasID && !hasAddr:
		Error(w, http.StatusBadRequest, "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove")
		return
	case hasID && hasAddr:
		Error(w, http.StatusBadRequest, "Must specify only one of ?id or ?address")
		return
	}
	name, value := "id", q.Get("id")
	if hasAddr {
		name, value = "address", q.Get("address")
	}
	if value == "" {
		Error(w, http.StatusBadRequest, "Missing value for ?%s", name)
		return
	}
	servers, err := st.Configuration()
	if err != nil {
		a.storeError(w, r, err, nil)
		return
	}
	id := ""
	for _, sv := range servers {
		if (hasID && string(sv.ID) == value) || (hasAddr && string(sv.Address) == value) {
			id = string(sv.ID)
			break
		}
	}
	if id == "" {
		Error(w, http.StatusNotFound, "%s %q was not found in the Raft configuration", name, value)
		return
	}
	if err := st.RemoveServer(r.Context(), id); err != nil {
		a.storeError(w, r, err, nil)
		return
	}
	w.WriteHeader(http.StatusOK)
}
