// Package sidecar is the agent's built-in proxy: the sidecar listeners of the
// local services (an inbound listener forwarding to the application on
// localhost, and a local listener per upstream), and the ingress listeners at
// the cluster's edge.
//
// Upstream instances come from the agent's local catalog view (a Source) and
// change live: a Watch on the destination service (and on its
// "<name>-sidecar-proxy" service, so that traffic goes to an instance's
// sidecar when it has one) rebuilds the instance set within moments of a
// change, without a restart, and without touching established connections to
// instances that stay healthy. Connections to an instance that leaves the
// healthy set drain for Config.DrainTimeout and are then closed.
//
// Two forwarding modes:
//
//   - L4 (protocol "tcp", the default): each client connection is joined to
//     a connection to one instance. Bulk transfers are copied between
//     *net.TCPConn values with io.Copy, so Linux moves them with splice(2)
//     without copying through user space; small request/response traffic
//     goes through a 4 KiB buffer until a read fills it (splice costs a
//     pipe and two syscalls per chunk, and an idle spliced connection holds
//     its pipes: four more fds). Half-close (CloseWrite) is passed on.
//   - L7 (protocol "http"): an HTTP/1.1 forwarder with keep-alive pools per
//     instance, routes by host, path prefix and header, budgeted retries of
//     idempotent requests (without a body, or with a Content-Length body
//     up to 16 KiB, held until the exchange ends) on connect failure, 502,
//     503 and a connection that ends before any response byte; a pooled
//     connection the upstream had closed is retried without counting
//     against the budget; non-idempotent requests are never sent twice
//     (a pooled connection is checked with MSG_PEEK first). X-Forwarded-For
//     and X-Forwarded-Proto, and a 503 with a clear body when no instance is
//     healthy. HTTP/2 with prior knowledge (h2c, gRPC) is detected by its
//     preface and tunnelled at L4 to the first route that matches every
//     request (its requests are not routed one by one); Upgrade
//     (WebSocket) is tunnelled after the 101.
//
// Balancers (round robin, least connections, power of two choices,
// consistent hash on the client address or an HTTP header) live in their own
// files; passive outlier ejection, limits and retries apply per upstream.
//
// What it is not: it does not terminate TLS or speak Consul Connect's mTLS
// (traffic between sidecars is plain TCP), it does not read the catalog
// itself (the Source does), and it does not parse the agent's configuration
// files or serve the HTTP API (the agent does, and calls Apply and
// ApplyIngress). Parsers for the outside formats it owns (a sidecar's Proxy
// object, the -upstream flag, the ingress configuration) are here, each with
// errors naming the field and value.
package sidecar
