package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"
)

// listener is one port the agent listens on.
type listener struct {
	field    string // "ports.http"
	addr     string // the configured IP address
	port     int
	tcp, udp bool
}

// portList returns every configured port, server's included.
func (c *Config) portList() []listener {
	return []listener{
		{"ports.http", c.ClientAddr, c.Ports.HTTP, true, false},
		{"ports.dns", c.ClientAddr, c.Ports.DNS, true, true},
		{"ports.serf_lan", c.BindAddr, c.Ports.SerfLAN, true, true},
		{"ports.server", c.BindAddr, c.Ports.Server, true, false},
	}
}

// listeners returns the ports this agent will listen on: the server port
// only on a server.
func (c *Config) listeners() []listener {
	l := c.portList()
	if !c.Server {
		l = l[:3]
	}
	return l
}

// portClashes reports two listeners of this agent wanting the same port
// and protocol on overlapping addresses, once per pair, on the later one.
func (c *Config) portClashes(bind, client netip.Addr) []error {
	addrOf := map[string]netip.Addr{c.BindAddr: bind, c.ClientAddr: client}
	ls := c.listeners()
	var errs []error
	for j, b := range ls {
		for _, a := range ls[:j] {
			if a.port != b.port {
				continue
			}
			proto := protocols(a.tcp && b.tcp, a.udp && b.udp)
			if proto == "" || !overlaps(addrOf[a.addr], addrOf[b.addr]) {
				continue
			}
			if a.addr == b.addr {
				errs = append(errs, fieldErr(ErrInvalid, b.field, "%d is also %s on %s (%s)", b.port, a.field, b.addr, proto))
			} else {
				errs = append(errs, fieldErr(ErrInvalid, b.field, "%d on %s overlaps %s on %s (%s)", b.port, b.addr, a.field, a.addr, proto))
			}
		}
	}
	return errs
}

func protocols(tcp, udp bool) string {
	switch {
	case tcp && udp:
		return "tcp and udp"
	case tcp:
		return "tcp"
	case udp:
		return "udp"
	}
	return ""
}

// overlaps reports whether listening on a and on b can collide: the same
// address, or an unspecified one covering the other (0.0.0.0 covers IPv4,
// :: covers both families on a dual-stack host).
func overlaps(a, b netip.Addr) bool {
	a, b = a.Unmap().WithZone(""), b.Unmap().WithZone("")
	switch {
	case a == b:
		return true
	case a.IsUnspecified():
		return a.Is6() || b.Is4()
	case b.IsUnspecified():
		return b.Is6() || a.Is4()
	}
	return false
}

// CheckPorts tries to listen on each port the agent will use, on its
// address: http (TCP), dns (UDP and TCP), serf_lan (UDP and TCP), and
// server (TCP) if Server. It closes each probe at once and reports every
// port it could not get, one per line, e.g.
//
//	ports.http: 127.0.0.1:8500 already in use
//	ports.dns: 127.0.0.1:8600 already in use (udp)
//
// Ports serving both protocols name the protocol. Run it after Validate
// succeeds; out-of-range ports are skipped here. A port free now may still
// be taken before the agent binds it: this is for a clear message at
// start, not a reservation.
func (c *Config) CheckPorts() error {
	var errs []error
	for _, l := range c.listeners() {
		if l.port < 1 || l.port > 65535 {
			continue
		}
		hostPort := net.JoinHostPort(l.addr, strconv.Itoa(l.port))
		for _, proto := range []string{"tcp", "udp"} {
			if proto == "tcp" && !l.tcp || proto == "udp" && !l.udp {
				continue
			}
			err := probe(proto, hostPort)
			if err == nil {
				continue
			}
			suffix := ""
			if l.tcp && l.udp {
				suffix = " (" + proto + ")"
			}
			if errors.Is(err, syscall.EADDRINUSE) {
				errs = append(errs, fieldErr(ErrPortInUse, l.field, "%s already in use%s", hostPort, suffix))
				continue
			}
			var oe *net.OpError
			if errors.As(err, &oe) {
				err = oe.Err
			}
			errs = append(errs, fieldErr(ErrInvalid, l.field, "cannot listen on %s%s: %v", hostPort, suffix, err))
		}
	}
	return errors.Join(errs...)
}

// probe listens on hostPort and closes the listener at once.
func probe(proto, hostPort string) error {
	switch proto {
	case "tcp":
		ln, err := net.Listen("tcp", hostPort)
		if err != nil {
			return err
		}
		ln.Close()
		return nil
	case "udp":
		pc, err := net.ListenPacket("udp", hostPort)
		if err != nil {
			return err
		}
		pc.Close()
		return nil
	}
	return fmt.Errorf("unknown protocol %q", proto)
}
