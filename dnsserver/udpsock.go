package dnsserver

import (
	"errors"
	"net"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// udpSock is the socket of the batch path. Each reader goroutine has a
// udpPort of its own (its buffers and scratch space); the goroutines of
// queries answered off the batch reply with writeTo.
type udpSock interface {
	port(in []ipv4.Message) udpPort
	writeTo(p []byte, addr net.Addr) error
	// wake makes readers blocked in readBatch return soon.
	wake()
	close() error
}

// udpPort reads a batch of datagrams into ms (Buffers[0], N, Flags, Addr;
// an Addr is valid until the next read) and sends a batch of replies.
type udpPort interface {
	readBatch(ms []ipv4.Message) (int, error)
	writeBatch(ms []ipv4.Message) (int, error)
}

// batchConn is ipv4.PacketConn or ipv6.PacketConn (whose Message is the
// same type).
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// pollSock is the portable udpSock: the net package's socket, read with
// x/net's ReadBatch (recvmmsg where the OS has it) through Go's poller.
type pollSock struct {
	conn *net.UDPConn
	bc   batchConn
}

func newPollSock(c *net.UDPConn) *pollSock {
	p := &pollSock{conn: c}
	if a, ok := c.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() != nil {
		p.bc = ipv4.NewPacketConn(c)
	} else {
		p.bc = ipv6.NewPacketConn(c)
	}
	return p
}

func (p *pollSock) port([]ipv4.Message) udpPort { return p }
func (p *pollSock) readBatch(ms []ipv4.Message) (int, error) {
	return p.bc.ReadBatch(ms, 0)
}
func (p *pollSock) writeBatch(ms []ipv4.Message) (int, error) { return p.bc.WriteBatch(ms, 0) }
func (p *pollSock) writeTo(b []byte, addr net.Addr) error {
	_, err := p.conn.WriteTo(b, addr)
	return err
}
func (p *pollSock) wake() { _ = p.conn.SetReadDeadline(time.Unix(1, 0)) }
func (p *pollSock) close() error {
	if err := p.conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}
