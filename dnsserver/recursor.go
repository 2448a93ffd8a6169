package dnsserver

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// errMismatch: a recursor answered another question than the one asked.
var errMismatch = errors.New("answer does not match the question")

// forward answers a name outside our domains from the recursors: one
// exchange at a time, each bounded by RecursorTimeout, moving to the next
// recursor on an error, a timeout, or a SERVFAIL or REFUSED answer (as
// Consul does). Without recursors, or when the client did not ask for
// recursion, it answers REFUSED: the agent is never an open resolver.
func (s *Server) forward(x *exchange) {
	if !s.recurse || !x.req.RecursionDesired {
		x.reply(dns.RcodeRefused, false)
		return
	}
	select {
	case s.fwdSem <- struct{}{}:
		defer func() { <-s.fwdSem }()
	default:
		s.m.fwdShed.Inc()
		x.reply(dns.RcodeServerFailure, false)
		return
	}
	x.forward = true

	// A fresh ID and no options of the client's (cookies, client subnet):
	// only the question, the client's UDP size and its DO bit go on.
	fwd := &dns.Msg{
		MsgHdr:   dns.MsgHdr{Id: dns.Id(), Opcode: dns.OpcodeQuery, RecursionDesired: true, CheckingDisabled: x.req.CheckingDisabled},
		Question: []dns.Question{x.q},
	}
	if x.opt != nil {
		fwd.SetEdns0(uint16(min(max(int(x.opt.UDPSize()), dns.MinMsgSize), MaxUDPSize)), x.opt.Do())
	}
	client := s.fwdClient[b2i(x.tcp)]

	order := s.cfg.Recursors
	if s.cfg.RecursorStrategy == RecursorRandom && len(order) > 1 {
		order = append([]string(nil), order...)
		rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	}
	for _, addr := range order {
		resp, err := s.exchangeWith(client, fwd, addr)
		if err == nil {
			err = checkAnswer(resp, x.q)
		}
		if err != nil {
			s.m.recursorErrs.Inc()
			s.cfg.Logger.Debug("dns: recursor failed", "recursor", addr, "name", x.q.Name, "error", err)
			if s.ctx.Err() != nil {
				break // shutting down
			}
			continue
		}
		resp.Extra = withoutOPT(resp.Extra)
		resp.Authoritative = false
		resp.Question = x.req.Question // the client's exact case (0x20)
		x.write(resp)
		return
	}
	x.reply(dns.RcodeServerFailure, false)
}

// exchangeWith asks one recursor, within RecursorTimeout; Shutdown
// aborts it.
func (s *Server) exchangeWith(client *dns.Client, m *dns.Msg, addr string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.RecursorTimeout)
	defer cancel()
	co, err := client.DialContext(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer co.Close()
	// The exchange heeds ctx's deadline but not its cancellation: a
	// deadline in the past unblocks it.
	stop := context.AfterFunc(s.ctx, func() { co.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	r, _, err := client.ExchangeWithConnContext(ctx, m, co)
	return r, err
}

// checkAnswer accepts a recursor's answer to q that is worth passing on:
// not SERVFAIL or REFUSED (or another error: the next recursor may do
// better), and for the same question.
func checkAnswer(resp *dns.Msg, q dns.Question) error {
	if resp.Rcode != dns.RcodeSuccess && resp.Rcode != dns.RcodeNameError {
		return fmt.Errorf("rcode %s", dns.RcodeToString[resp.Rcode])
	}
	if len(resp.Question) != 1 || resp.Question[0].Qtype != q.Qtype ||
		resp.Question[0].Qclass != q.Qclass || !strings.EqualFold(resp.Question[0].Name, q.Name) {
		return errMismatch
	}
	return nil
}

func withoutOPT(rrs []dns.RR) []dns.RR {
	out := rrs[:0]
	for _, rr := range rrs {
		if rr.Header().Rrtype != dns.TypeOPT {
			out = append(out, rr)
		}
	}
	return out
}
