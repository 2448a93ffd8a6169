// Package gossip keeps this agent's view of cluster membership. It wraps
// hashicorp/memberlist (SWIM gossip over UDP and TCP) and adds what Serf adds
// for Consul: member tags carried in node metadata, failed and left members
// kept in the list until reaped, Consul's member statuses, events for
// subscribers, encryption with a shared key, join retries with back-off,
// rejoining the peers remembered from the previous run, and reconnecting
// to failed members.
//
// It is for knowing who is in the cluster, how to reach them and whether
// they are alive. It is not a transport for application data (no user
// messages, no queries, no custom broadcasts), it does not elect leaders or
// order anything (that is Raft's job in kvstore/), and it does not know about
// services: the catalog consumes its events.
//
// Failure detection and dissemination times are memberlist's: with the "lan"
// profile a node that stops answering is suspected after a failed probe and
// declared failed after SuspicionMult*log10(N)*ProbeInterval (4s for 10
// nodes, about 9s for 200), sooner when several members confirm the
// suspicion. A member that left gracefully is seen as left as soon as its
// leave message arrives. A failed member's name may be taken over by a new
// address after 30s (a restarted container with a new IP).
//
// Reconnect: memberlist never probes a member it declared failed again, so
// a network partition that heals, or a group of agents that all restart
// together and only meet each other, could leave the cluster split for
// good. As Serf does, every ReconnectInterval (30s) each member may try to
// join again the last known address of one failed member picked at random
// among those failed: with probability failed/alive (alive counting itself
// and at least 1), so that the cluster as a whole tries each failed member
// about once per interval. One side reaching the other is enough: the
// push/pull exchange tells each side about the other's members, and a
// member told it is dead refutes it. Members that left are never tried,
// nor a failed member whose address another live member now holds, and a
// member that is leaving tries no more. A failed member is tried until it
// is reaped after ReapFailed (72h, Serf's ReconnectTimeout). Attempts and
// successes are counted in outrigger_gossip_reconnect_attempts_total and
// outrigger_gossip_reconnect_successes_total; a success is logged at info
// ("reconnected to failed member"), a failure at debug.
//
// On the wire this is memberlist's protocol plus one message of this
// package's: a leave intent, sent by a member about to leave so that the
// others record StatusLeft rather than StatusFailed (memberlist knows the
// difference but does not pass it to its event delegate). Node metadata
// carries the tags and a random run ID, so that an intent from an earlier
// run of an agent cannot mark its next run as leaving.
//
// Logs: memberlist's own lines are routed into the slog.Logger given in
// Config, with their [DEBUG]/[INFO]/[WARN]/[ERR] prefixes mapped to slog
// levels. Messages rejected because of an encryption key mismatch are logged
// once per sender and minute as one line:
//
//	gossip: rejected message from 127.0.0.1:53122: no installed key could decrypt it (gossip encryption key mismatch?)
package gossip
