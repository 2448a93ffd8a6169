// Package gossip keeps this agent's view of cluster membership. It wraps
// hashicorp/memberlist (SWIM gossip over UDP and TCP) and adds what Serf adds
// for Consul: member tags carried in node metadata, failed and left members
// kept in the list until reaped, Consul's member statuses, events for
// subscribers, encryption with a shared key, join retries with back-off and
// rejoining the peers remembered from the previous run.
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
