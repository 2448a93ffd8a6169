package sidecar

import "sync/atomic"

// roundRobin takes the instances in turn, skipping those not allowed.
type roundRobin struct {
	next atomic.Uint64
}

func (r *roundRobin) pick(set *endpointSet, p *pickReq) *endpoint {
	n := len(set.eps)
	if n == 0 {
		return nil
	}
	i := int((r.next.Add(1) - 1) % uint64(n))
	return firstOK(set.eps, i, p)
}

var _ balancer = (*roundRobin)(nil)
