package config

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
)

// holdTCP and holdUDP take a free loopback port and keep it until the test
// ends.
func holdTCP(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

func holdUDP(t *testing.T) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// freePort returns a port free for both TCP and UDP on loopback just now.
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		ln.Close()
		if err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no port free for both TCP and UDP")
	return 0
}

func loopbackConfig(t *testing.T) Config {
	c := validConfig()
	c.BindAddr = "127.0.0.1"
	c.Server = true
	c.Ports = Ports{HTTP: freePort(t), DNS: freePort(t), SerfLAN: freePort(t), Server: freePort(t)}
	return c
}

func TestCheckPortsFree(t *testing.T) {
	c := loopbackConfig(t)
	if err := c.CheckPorts(); err != nil {
		t.Fatalf("free ports reported: %v", err)
	}
	// The probes are closed: checking again finds them free.
	if err := c.CheckPorts(); err != nil {
		t.Fatalf("second check: %v", err)
	}
}

func TestCheckPortsInUse(t *testing.T) {
	c := loopbackConfig(t)
	c.Ports.HTTP = holdTCP(t)
	c.Ports.DNS = holdUDP(t)
	c.Ports.Server = holdTCP(t)
	err := c.CheckPorts()
	want := strings.Join([]string{
		fmt.Sprintf("ports.http: 127.0.0.1:%d already in use", c.Ports.HTTP),
		fmt.Sprintf("ports.dns: 127.0.0.1:%d already in use (udp)", c.Ports.DNS),
		fmt.Sprintf("ports.server: 127.0.0.1:%d already in use", c.Ports.Server),
	}, "\n")
	// The DNS port is held for UDP only; its TCP side is free unless some
	// other process's connection happens to use that number as its local
	// port (the same ephemeral range) — then that line is right too.
	got := strings.Replace(errText(err), fmt.Sprintf("ports.dns: 127.0.0.1:%d already in use (tcp)\n", c.Ports.DNS), "", 1)
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if !errors.Is(err, ErrPortInUse) {
		t.Error("errors.Is(err, ErrPortInUse) = false")
	}

	// A client does not listen on the server port.
	c.Server = false
	if got := errText(c.CheckPorts()); strings.Contains(got, "ports.server") {
		t.Errorf("client checked the server port: %s", got)
	}
}

func TestCheckPortsSerfTCP(t *testing.T) {
	c := loopbackConfig(t)
	c.Ports.SerfLAN = holdTCP(t)
	want := fmt.Sprintf("ports.serf_lan: 127.0.0.1:%d already in use (tcp)", c.Ports.SerfLAN)
	if got := errText(c.CheckPorts()); !strings.Contains(got, want) {
		t.Errorf("got %q, want it to contain %q", got, want)
	}
}

func TestCheckPortsWildcardHolder(t *testing.T) {
	// Another process on 0.0.0.0 blocks our 127.0.0.1.
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c := loopbackConfig(t)
	c.Ports.HTTP = ln.Addr().(*net.TCPAddr).Port
	want := fmt.Sprintf("ports.http: 127.0.0.1:%d already in use", c.Ports.HTTP)
	if got := errText(c.CheckPorts()); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestCheckPortsOtherErrors(t *testing.T) {
	c := loopbackConfig(t)
	c.ClientAddr = "192.0.2.1" // TEST-NET-1: not assigned to this host
	err := c.CheckPorts()
	want := fmt.Sprintf("ports.http: cannot listen on 192.0.2.1:%d: ", c.Ports.HTTP) // then the OS's words
	if got := errText(err); !strings.HasPrefix(got, want) {
		t.Errorf("got %q, want it to start with %q", got, want)
	}
	if errors.Is(err, ErrPortInUse) {
		t.Error("an unassignable address reported as a port in use")
	}

	// Out-of-range ports are Validate's to report, not probed.
	c = loopbackConfig(t)
	c.Ports.HTTP = 0
	if err := c.CheckPorts(); err != nil {
		t.Errorf("port 0 probed: %v", err)
	}
}
