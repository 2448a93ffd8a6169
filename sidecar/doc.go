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
//     a connection to one instance. On Linux one event loop per listener
//     does it, as HAProxy does, outside Go's net package: raw non-blocking
//     sockets in its own edge-triggered epoll set (accept4, connect,
//     recv/send through a 16 KiB buffer per direction; EPOLLRDHUP and short
//     reads spare the read that would find EAGAIN; close without an
//     epoll_ctl DEL), and a direction that fills its buffer switches to
//     splice(2) through a pipe for bulk transfers. Half-close is passed on
//     (shutdown of the other side once its pending bytes are sent), a side
//     is not read while the other cannot take more, and connect failures
//     are retried on another instance. Elsewhere (and for an instance
//     registered by host name) the connection is copied between
//     *net.TCPConn values by two goroutines.
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
//     (WebSocket) is tunnelled after the 101. On Linux the listener's event
//     loop serves the common request itself (l7loop_linux.go): heads and
//     small Content-Length bodies parsed from its buffer, keep-alive
//     upstream connections of its own, responses streamed with their
//     framing; what it does not serve (chunked or large request bodies,
//     Expect, Upgrade, h2c) is handed to the goroutine-per-connection path
//     above at a request boundary.
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
