package sidecar

import (
	"math/rand/v2"
)

// balancer chooses an instance among a snapshot; p.ok says which instances
// may be chosen (not ejected, not tried yet). It returns nil when none may.
// Implementations are safe for concurrent use and allocate nothing.
type balancer interface {
	pick(set *endpointSet, p *pickReq) *endpoint
}

func newBalancer(name string) balancer {
	switch name {
	case BalancerLeastConn:
		return leastConn{}
	case BalancerP2C:
		return p2c{}
	case BalancerHash:
		return ringHash{}
	}
	return &roundRobin{}
}

func randN(n int) int { return rand.IntN(n) }

// firstOK scans from start for an instance p allows.
func firstOK(eps []*endpoint, start int, p *pickReq) *endpoint {
	n := len(eps)
	for i := 0; i < n; i++ {
		e := eps[(start+i)%n]
		if p.ok(e) {
			return e
		}
	}
	return nil
}
