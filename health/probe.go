package health

import (
	"context"
	"crypto/tls"
	"net/http"
)

// prober runs one check once. ctx carries the run's Timeout; the output
// may be longer than the cap (the caller caps it) but a prober reading
// from the network reads no more than limit+1 bytes of it.
type prober interface {
	probe(ctx context.Context) result
}

// newProber builds the prober of a normalized, validated definition;
// nil for TTL checks, which have none.
func newProber(d *CheckDefinition, limit int) prober {
	switch d.Type() {
	case TypeHTTP:
		return newHTTPProbe(d, limit)
	case TypeTCP:
		return newTCPProbe(d)
	case TypeGRPC:
		return newGRPCProbe(d)
	case TypeScript:
		return &scriptProbe{args: d.Args, timeout: d.Timeout, limit: limit}
	}
	return nil
}

func tlsConfig(d *CheckDefinition) *tls.Config {
	return &tls.Config{
		InsecureSkipVerify: d.TLSSkipVerify, //nolint:gosec // the user asked for it (TLSSkipVerify)
		ServerName:         d.TLSServerName,
	}
}

// newTransport returns a transport for one check. Keep-alives are off:
// each run opens a fresh connection, so a run tests what a new client
// would get and a half-dead pooled connection cannot fail it. No proxy
// from the environment either: checks target the local service directly,
// and an HTTP_PROXY meant for the application's outbound calls would
// otherwise swallow them.
func newTransport(d *CheckDefinition) *http.Transport {
	// No timeouts here: the run's context bounds dial, handshake, headers
	// and body together.
	return &http.Transport{
		Proxy:                  nil,
		TLSClientConfig:        tlsConfig(d),
		DisableKeepAlives:      true,
		ForceAttemptHTTP2:      true,
		MaxResponseHeaderBytes: 64 << 10,
	}
}
