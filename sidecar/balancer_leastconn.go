package sidecar

// leastConn takes the instance with the fewest connections (tcp) or
// requests (http) in flight; ties go to a random one of them, so that a
// burst of new connections does not all land on the first instance.
type leastConn struct{}

func (leastConn) pick(set *endpointSet, p *pickReq) *endpoint {
	n := len(set.eps)
	if n == 0 {
		return nil
	}
	start := randN(n)
	var best *endpoint
	var bestLoad int64
	for i := 0; i < n; i++ {
		e := set.eps[(start+i)%n]
		if !p.ok(e) {
			continue
		}
		if l := e.active.Load(); best == nil || l < bestLoad {
			best, bestLoad = e, l
		}
	}
	return best
}

var _ balancer = leastConn{}
