package health

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
)

type tcpProbe struct {
	addr   string
	useTLS bool
	tls    *tls.Config
}

func newTCPProbe(d *CheckDefinition) *tcpProbe {
	return &tcpProbe{addr: d.TCP, useTLS: d.TCPUseTLS, tls: tlsConfig(d)}
}

func (p *tcpProbe) probe(ctx context.Context) result {
	var conn net.Conn
	var err error
	if p.useTLS {
		d := &tls.Dialer{Config: p.tls}
		conn, err = d.DialContext(ctx, "tcp", p.addr)
	} else {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "tcp", p.addr)
	}
	if err != nil {
		return result{StatusCritical, fmt.Sprintf("TCP connect %s: %v", p.addr, err)}
	}
	conn.Close()
	return result{StatusPassing, fmt.Sprintf("TCP connect %s: Success", p.addr)}
}
