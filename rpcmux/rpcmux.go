// Package rpcmux shares a server agent's one server port (8300) between
// Raft and server-to-server HTTP (request forwarding), the way Consul
// multiplexes its RPC port: each connection starts with one byte naming
// its protocol. It carries bytes only; what runs over each protocol is
// the kvstore's and the agent's business.
package rpcmux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Protocol bytes sent first on every connection to the server port.
const (
	ProtoRaft byte = 'R'
	ProtoHTTP byte = 'H'
)

// Errors.
var (
	ErrClosed = errors.New("rpcmux: closed")
)

// handshakeTimeout bounds how long a new connection may take to send its
// protocol byte, so idle sockets cannot pile up.
const handshakeTimeout = 5 * time.Second

// Mux accepts connections on the server port and hands each to the
// listener of its protocol.
type Mux struct {
	ln        net.Listener
	advertise net.Addr
	log       *slog.Logger
	raft      *subListener
	http      *subListener
	closeOnce sync.Once
}

// Listen listens on addr ("ip:port"). advertise is the address peers dial
// (Raft records it in its configuration); if nil, the listener's address.
func Listen(addr string, advertise net.Addr, log *slog.Logger) (*Mux, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("rpcmux: listen %s: %w", addr, err)
	}
	if advertise == nil {
		advertise = ln.Addr()
	}
	if log == nil {
		log = slog.Default()
	}
	m := &Mux{ln: ln, advertise: advertise, log: log}
	m.raft = newSubListener(advertise)
	m.http = newSubListener(advertise)
	go m.acceptLoop()
	return m, nil
}

// Addr is the bound address.
func (m *Mux) Addr() net.Addr { return m.ln.Addr() }

// Close stops accepting and closes both protocol listeners.
func (m *Mux) Close() error {
	var err error
	m.closeOnce.Do(func() {
		err = m.ln.Close()
		m.raft.Close()
		m.http.Close()
	})
	return err
}

func (m *Mux) acceptLoop() {
	var backoff time.Duration
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary errors (EMFILE): back off rather than spin.
			backoff = min(max(backoff*2, 5*time.Millisecond), time.Second)
			m.log.Warn("rpcmux: accept", "err", err)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		go m.route(conn)
	}
}

func (m *Mux) route(conn net.Conn) {
	_ = conn.SetReadDeadline(time.Now().Add(handshakeTimeout))
	var b [1]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		conn.Close()
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	var sub *subListener
	switch b[0] {
	case ProtoRaft:
		sub = m.raft
	case ProtoHTTP:
		sub = m.http
	default:
		m.log.Warn("rpcmux: unknown protocol byte; closing", "byte", b[0], "from", conn.RemoteAddr().String())
		conn.Close()
		return
	}
	if !sub.deliver(conn) {
		conn.Close()
	}
}

// HTTPListener returns the listener of forwarded HTTP connections.
func (m *Mux) HTTPListener() net.Listener { return m.http }

// RaftLayer returns a raft.StreamLayer over this port.
func (m *Mux) RaftLayer() raft.StreamLayer { return &raftLayer{sub: m.raft} }

// subListener is a net.Listener fed by the Mux.
type subListener struct {
	addr   net.Addr
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newSubListener(addr net.Addr) *subListener {
	return &subListener{addr: addr, conns: make(chan net.Conn, 16), closed: make(chan struct{})}
}

func (s *subListener) deliver(c net.Conn) bool {
	select {
	case s.conns <- c:
		return true
	case <-s.closed:
		return false
	}
}

func (s *subListener) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.closed:
		return nil, ErrClosed
	}
}

func (s *subListener) Close() error {
	s.once.Do(func() { close(s.closed) })
	return nil
}

func (s *subListener) Addr() net.Addr { return s.addr }

type raftLayer struct{ sub *subListener }

func (r *raftLayer) Accept() (net.Conn, error) { return r.sub.Accept() }
func (r *raftLayer) Close() error              { return r.sub.Close() }
func (r *raftLayer) Addr() net.Addr            { return r.sub.Addr() }
func (r *raftLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return Dial(context.Background(), string(addr), ProtoRaft, timeout)
}

// Dial connects to a server port and announces proto.
func Dial(ctx context.Context, addr string, proto byte, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write([]byte{proto}); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// HTTPTransport returns an http.RoundTripper whose connections go to a
// server port (the request URL's host) with the HTTP protocol byte. Use it
// with URLs like http://10.0.0.5:8300/v1/kv/x.
func HTTPTransport() *http.Transport {
	return &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			// Servers are on the LAN: a dial that takes a second is to a
			// server that is gone (its packets dropped), and the caller
			// tries another.
			return Dial(ctx, addr, ProtoHTTP, time.Second)
		},
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		// Blocking queries may hold a response up to ~11 minutes.
		ResponseHeaderTimeout: 0,
	}
}

var (
	_ net.Listener     = (*subListener)(nil)
	_ raft.StreamLayer = (*raftLayer)(nil)
)
