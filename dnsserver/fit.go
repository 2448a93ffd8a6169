package dnsserver

import (
	"strings"

	"github.com/miekg/dns"
)

// compressAbove is the size from which replies are compressed. Smaller
// ones go out uncompressed, which saves building the compression map on
// the common path.
const compressAbove = dns.MinMsgSize

// fit cuts m (without its OPT record) to at most size bytes and reports
// whether answer records were cut, in which case the caller sets TC.
//
// Additional records are kept consistent with the answers: a record there
// that no answer points to (node metadata) is dropped first, without TC,
// since it is optional (RFC 2181 9); then answers are cut from the end
// (they are shuffled, so each client gets a different subset), keeping
// exactly the additional records the kept answers point to, so that every
// SRV record that goes out has its target's address with it.
func fit(m *dns.Msg, size int) (cut bool) {
	m.Compress = false
	l := m.Len()
	if l <= size && l <= compressAbove {
		return false
	}
	m.Compress = true
	if l <= size || m.Len() <= size {
		return false
	}
	extra := referenced(m.Answer, m.Extra)
	m.Extra = extra
	if m.Len() <= size {
		return false
	}
	all := m.Answer
	lo, hi := 0, len(all) // all[:lo] fits, all[:hi+1] does not
	for lo < hi {
		mid := (lo + hi + 1) / 2
		m.Answer = all[:mid]
		m.Extra = referenced(m.Answer, extra)
		if m.Len() <= size {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	m.Answer = all[:lo]
	m.Extra = referenced(m.Answer, extra)
	if m.Len() > size { // only a huge question or authority is left
		m.Extra = nil
		if m.Len() > size {
			m.Ns = nil
		}
	}
	return lo < len(all)
}

// referenced returns, in a new slice, the records of extra whose name is
// the target of a record in answers (SRV, NS, CNAME, MX).
func referenced(answers, extra []dns.RR) []dns.RR {
	if len(extra) == 0 {
		return nil
	}
	var targets map[string]struct{}
	if len(answers) > 8 {
		targets = make(map[string]struct{}, len(answers))
		for _, rr := range answers {
			if t := target(rr); t != "" {
				targets[strings.ToLower(t)] = struct{}{}
			}
		}
	}
	out := make([]dns.RR, 0, min(len(extra), 2*len(answers)))
	for _, rr := range extra {
		name := rr.Header().Name
		if targets != nil {
			if _, ok := targets[strings.ToLower(name)]; ok {
				out = append(out, rr)
			}
			continue
		}
		for _, a := range answers {
			if t := target(a); t != "" && strings.EqualFold(t, name) {
				out = append(out, rr)
				break
			}
		}
	}
	return out
}

func target(rr dns.RR) string {
	switch rr := rr.(type) {
	case *dns.SRV:
		return rr.Target
	case *dns.NS:
		return rr.Ns
	case *dns.CNAME:
		return rr.Target
	case *dns.MX:
		return rr.Mx
	}
	return ""
}
