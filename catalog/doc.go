// Package catalog is the agent's side of the service catalog: the
// services and checks this agent owns, the anti-entropy that copies them
// to the servers, and the local view of the services the agent uses.
//
//   - ServiceDefinition: a service as registered with the agent, in
//     Consul's JSON shapes (PUT /v1/agent/service/register bodies and
//     configuration files; CamelCase or snake_case keys), with Consul's
//     defaults and validation errors that name the field and the value.
//     Its checks are kept as raw JSON for the health package.
//   - LocalState: the services and checks this agent owns, their current
//     statuses (UpdateCheck is the health checks' callback), node and
//     service maintenance mode, and change notification.
//   - AntiEntropy: pushes every local change to the servers at once, and
//     periodically compares the servers' entries for this node with
//     LocalState and repairs both ways. It reaches the servers through a
//     Client; HTTPClient is one over Consul's HTTP API.
//   - View: a demand-driven, read-only copy of /v1/health/service/:name
//     for the services the agent actually uses (DNS, sidecar upstreams,
//     the read API): the first use subscribes, a blocking query keeps the
//     result fresh, the last result is kept when the servers are
//     unreachable (Snapshot.Stale, Snapshot.Age), and a subscription
//     unused for IdleTimeout is dropped, so memory follows use rather than
//     catalog size.
//
// It is not the servers' catalog (kvstore holds that, in Raft), not the
// HTTP endpoints (httpapi calls LocalState and View), and it does not run
// health checks (the health package does, and reports results to
// LocalState.UpdateCheck).
//
// # Behaviour worth knowing
//
//   - IDs and service names are case-insensitive, as in the catalog:
//     LocalState and View key them folded.
//   - Removing a service or check while the servers are unreachable is
//     kept as a tombstone until the servers confirm it, so nothing local
//     is lost either way.
//   - A check whose output alone changed is pushed after
//     CheckUpdateInterval (5 minutes by default, as in Consul); status
//     changes go at once.
//   - Anti-entropy never removes the servers' serfHealth check or their
//     "consul" service; everything else on this node that the agent does
//     not own is deregistered.
//   - The view's reads are ?stale by default: any server answers, so
//     discovery works without a leader.
package catalog
