package dnsserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Server answers DNS queries over UDP and TCP from a Catalog. It is also
// a dns.Handler (ServeDNS), usable without Start.
type Server struct {
	cfg     Config
	catalog Catalog
	m       *metrics

	ttls    ttlTable
	nodeTTL uint32
	domains [2]domainInfo // Domain, AltDomain
	nsAddr  netip.Addr    // invalid when there is none

	recurse   bool          // recursors configured: RA set, outside names forwarded
	fwdSem    chan struct{} // bounds concurrent forwards
	fwdClient [2]*dns.Client

	exchanges sync.Pool // *exchange

	ctx            context.Context // canceled by Shutdown: aborts lookups and forwards
	cancel         context.CancelFunc
	lookupDeadline *sharedDeadline

	// doneCtx is canceled from the start: lookups made while answering
	// in place (see udp.go) must not wait.
	doneCtx context.Context

	mu    sync.Mutex
	state int          // stateNew, stateStarted, stateClosed
	udp   *dns.Server  // nil when batch serves UDP
	batch *batchServer // UDP on a socket bound to one address
	tcp   *dns.Server
	addr  string
	wg    sync.WaitGroup
}

const (
	stateNew = iota
	stateStarted
	stateClosed
)

// domainInfo holds the names derived from one of our domains, built once
// so that answers concatenate at most once per record.
type domainInfo struct {
	apex       string // "consul."
	ns         string // "ns.consul."
	mbox       string // "hostmaster.consul."
	nodeSuffix string // ".node.dc1.consul."
	addrSuffix string // ".addr.dc1.consul."
	targets    *targetCache
}

func newDomainInfo(apex, dc string) domainInfo {
	return domainInfo{
		apex:       apex,
		ns:         "ns." + apex,
		mbox:       "hostmaster." + apex,
		nodeSuffix: ".node." + dc + "." + apex,
		addrSuffix: ".addr." + dc + "." + apex,
		targets:    newTargetCache(),
	}
}

// New returns a Server answering from cat. It does not listen: call
// Start, or use the Server as a dns.Handler.
func New(cfg Config, cat Catalog) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cat == nil {
		return nil, &ConfigError{"Catalog", "missing"}
	}
	cfg = cfg.withDefaults()
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		catalog: cat,
		m:       m,
		ttls:    newTTLTable(cfg.ServiceTTL),
		nodeTTL: seconds(cfg.NodeTTL),
		recurse: len(cfg.Recursors) > 0,
		fwdSem:  make(chan struct{}, cfg.MaxConcurrentRecursions),
	}
	s.domains[0] = newDomainInfo(cfg.Domain, cfg.Datacenter)
	if cfg.AltDomain != "" {
		s.domains[1] = newDomainInfo(cfg.AltDomain, cfg.Datacenter)
	}
	if cfg.NSAddress != "" {
		s.nsAddr, _ = parseIP(cfg.NSAddress)
	}
	for i, network := range []string{"udp", "tcp"} {
		s.fwdClient[i] = &dns.Client{Net: network, Timeout: cfg.RecursorTimeout, UDPSize: dns.MinMsgSize}
	}
	s.exchanges.New = func() any { return new(exchange) }
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.lookupDeadline = newSharedDeadline(s.ctx, cfg.LookupTimeout)
	var cancelDone context.CancelFunc
	s.doneCtx, cancelDone = context.WithCancel(context.Background())
	cancelDone()
	return s, nil
}

// Start listens on Config.Addr over UDP and TCP and serves in the
// background. It returns once both listeners are serving.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case stateStarted:
		return ErrStarted
	case stateClosed:
		return ErrClosed
	}
	pc, ln, err := listen(s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("dnsserver: listen: %w", err)
	}
	s.addr = pc.LocalAddr().String()
	invalid := func([]byte, error) { s.m.rejected[rejectMalformed].Inc() }
	idle := s.cfg.TCPIdleTimeout
	servers := []*dns.Server{}
	if c, ok := useBatchUDP(pc); ok {
		s.batch = newBatchServer(s, c)
	} else {
		s.udp = &dns.Server{
			PacketConn:     pc,
			Net:            "udp",
			Handler:        s,
			UDPSize:        udpReadSize,
			WriteTimeout:   s.cfg.WriteTimeout,
			MsgAcceptFunc:  s.acceptMsg,
			MsgInvalidFunc: invalid,
		}
		servers = append(servers, s.udp)
	}
	s.tcp = &dns.Server{
		Listener:       newLimitListener(ln, s.cfg.MaxTCPConnections, s.m.tcpRefused.Inc),
		Net:            "tcp",
		Handler:        s,
		ReadTimeout:    s.cfg.TCPReadTimeout,
		WriteTimeout:   s.cfg.WriteTimeout,
		IdleTimeout:    func() time.Duration { return idle },
		MaxTCPQueries:  s.cfg.MaxTCPQueries,
		MsgAcceptFunc:  s.acceptMsg,
		MsgInvalidFunc: invalid,
	}
	servers = append(servers, s.tcp)
	started := make(chan struct{}, 2)
	failed := make(chan error, 2)
	for _, srv := range servers {
		srv.NotifyStartedFunc = func() { started <- struct{}{} }
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := srv.ActivateAndServe(); err != nil {
				s.cfg.Logger.Warn("dns server stopped", "net", srv.Net, "error", err)
				failed <- err
			}
		}()
	}
	for range servers {
		select {
		case <-started:
		case err := <-failed:
			for _, srv := range servers {
				srv.Shutdown()
			}
			if s.batch != nil {
				s.batch.sock.close() // pc's socket, taken out of Go's poller
			}
			pc.Close()
			ln.Close()
			s.state = stateClosed
			return fmt.Errorf("dnsserver: serve: %w", err)
		}
	}
	if s.batch != nil {
		s.batch.start()
	}
	s.state = stateStarted
	s.cfg.Logger.Info("dns server listening", "addr", s.addr, "domain", s.cfg.Domain,
		"alt_domain", s.cfg.AltDomain, "recursors", len(s.cfg.Recursors))
	return nil
}

// Addr is the address the server listens on (UDP and TCP share the
// port), or "" before Start.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Shutdown stops listening, aborts catalog lookups and forwards in flight
// and waits, within ctx, for the serving goroutines to finish. A Server
// cannot be started again.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	prev := s.state
	s.state = stateClosed
	s.mu.Unlock()
	s.cancel()
	if prev != stateStarted {
		return nil
	}
	var udpErr error
	if s.batch != nil {
		udpErr = s.batch.shutdown(ctx)
	} else {
		udpErr = s.udp.ShutdownContext(ctx)
	}
	err := errors.Join(udpErr, s.tcp.ShutdownContext(ctx))
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		err = errors.Join(err, ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("dnsserver: shutdown: %w", err)
	}
	return nil
}

// listen binds UDP and TCP on addr. With port 0 both get the same free
// port, so that a client retrying a truncated answer over TCP finds us.
func listen(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	tries := 1
	if port == "0" {
		tries = 20
	}
	for i := 0; ; i++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, err
		}
		p := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if i+1 >= tries {
			return nil, nil, err
		}
	}
}

// acceptMsg screens a message by its header before it is parsed. A
// response is dropped without a word (answering it could make us one end
// of a reflection loop); other opcodes (NOTIFY, UPDATE, ...) get NOTIMP,
// as from CoreDNS; a query with other than one question, or with records
// in the answer or authority section, gets FORMERR.
func (s *Server) acceptMsg(dh dns.Header) dns.MsgAcceptAction {
	const qr = 1 << 15
	switch {
	case dh.Bits&qr != 0:
		s.m.rejected[rejectResponse].Inc()
		return dns.MsgIgnore
	case int(dh.Bits>>11)&0xF != dns.OpcodeQuery:
		s.m.rejected[rejectOpcode].Inc()
		return dns.MsgRejectNotImplemented
	case dh.Qdcount != 1:
		s.m.rejected[rejectQuestions].Inc()
		return dns.MsgReject
	case dh.Ancount != 0 || dh.Nscount != 0 || dh.Arcount > 2:
		s.m.rejected[rejectSections].Inc()
		return dns.MsgReject
	}
	return dns.MsgAccept
}

// limitListener closes connections accepted beyond max open ones, rather
// than queueing them: a client is better off failing fast and retrying
// than waiting behind idle connections.
type limitListener struct {
	net.Listener
	sem     chan struct{}
	refused func()
}

func newLimitListener(l net.Listener, max int, refused func()) *limitListener {
	return &limitListener{Listener: l, sem: make(chan struct{}, max), refused: refused}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.sem <- struct{}{}:
			return &limitConn{Conn: c, sem: l.sem}, nil
		default:
			c.Close()
			l.refused()
		}
	}
}

type limitConn struct {
	net.Conn
	once sync.Once
	sem  chan struct{}
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { <-c.sem })
	return err
}

var _ dns.Handler = (*Server)(nil)
