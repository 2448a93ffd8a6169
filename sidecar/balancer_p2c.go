package sidecar

// p2c is the power of two choices: two instances at random, the less loaded
// wins. Nearly as good as least connections, without a scan.
type p2c struct{}

func (p2c) pick(set *endpointSet, p *pickReq) *endpoint {
	n := len(set.eps)
	switch n {
	case 0:
		return nil
	case 1:
		return firstOK(set.eps, 0, p)
	}
	i := randN(n)
	j := randN(n - 1)
	if j >= i {
		j++
	}
	a, b := set.eps[i], set.eps[j]
	aok, bok := p.ok(a), p.ok(b)
	switch {
	case aok && bok:
		if b.active.Load() < a.active.Load() {
			return b
		}
		return a
	case aok:
		return a
	case bok:
		return b
	}
	return firstOK(set.eps, i, p)
}

var _ balancer = p2c{}
