package sidecar

import (
	"sort"
	"strconv"
)

// ringHash is consistent hashing: each instance owns ringReplicas points on
// a ring; a key goes to the owner of the first point at or after its hash,
// or the next allowed owner along the ring. Adding or removing an instance
// moves only the keys of its points.
type ringHash struct{}

const ringReplicas = 160

type ringEntry struct {
	hash uint64
	e    *endpoint
}

func buildRing(eps []*endpoint) []ringEntry {
	ring := make([]ringEntry, 0, len(eps)*ringReplicas)
	for _, e := range eps {
		for i := 0; i < ringReplicas; i++ {
			ring = append(ring, ringEntry{hash: hashString(e.addr + "#" + strconv.Itoa(i)), e: e})
		}
	}
	sort.Slice(ring, func(i, j int) bool { return ring[i].hash < ring[j].hash })
	return ring
}

func (ringHash) pick(set *endpointSet, p *pickReq) *endpoint {
	ring := set.ring
	n := len(ring)
	if n == 0 {
		return nil
	}
	i := sort.Search(n, func(i int) bool { return ring[i].hash >= p.key })
	// Walk the ring; every instance is met within n steps.
	for k := 0; k < n; k++ {
		e := ring[(i+k)%n].e
		if p.ok(e) {
			return e
		}
	}
	return nil
}

var _ balancer = ringHash{}
