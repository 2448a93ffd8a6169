package dnsserver

import (
	"context"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDig asks the real dig, as a user would, over UDP and TCP.
func TestDig(t *testing.T) {
	dig, err := exec.LookPath("dig")
	if err != nil {
		t.Skip("dig is not installed (Debian: apt-get install bind9-dnsutils); skipping the dig test")
	}
	cat := fixture()
	cat.SetService("big", manyInstances("big", 200)...)
	s := startServer(t, cat, nil)
	host, port, _ := net.SplitHostPort(s.Addr())

	digOut := func(t *testing.T, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		args = append([]string{"@" + host, "-p", port, "+time=3", "+tries=1"}, args...)
		out, err := exec.CommandContext(ctx, dig, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("dig %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	// run returns the lines of dig's output that are not comments, sorted.
	run := func(t *testing.T, args ...string) []string {
		t.Helper()
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(digOut(t, args...)), "\n") {
			if l != "" && !strings.HasPrefix(l, ";;") {
				lines = append(lines, l)
			}
		}
		slices.Sort(lines)
		return lines
	}
	wantSRV := []string{
		"1 1 8086 n6.node.dc1.consul.",
		"1 1 9090 7f000104.addr.dc1.consul.",
		"1 10 8080 n1.node.dc1.consul.",
		"1 3 8081 n2.node.dc1.consul.",
	}
	for _, transport := range []string{"+notcp", "+tcp"} {
		t.Run(transport, func(t *testing.T) {
			if got := run(t, "web.service.consul", "SRV", "+short", transport); !slices.Equal(got, wantSRV) {
				t.Errorf("SRV +short: got %q, want %q", got, wantSRV)
			}
			if got, want := run(t, "web.service.consul", "+short", transport), []string{"127.0.0.1", "127.0.0.2", "127.0.1.4"}; !slices.Equal(got, want) {
				t.Errorf("A +short: got %q, want %q", got, want)
			}
			if got, want := run(t, "n1.node.consul", "TXT", "+short", transport), []string{`"env=prod"`, `"rack=r1"`}; !slices.Equal(got, want) {
				t.Errorf("TXT +short: got %q, want %q", got, want)
			}
		})
	}
	// 200 A records do not fit dig's default EDNS0 buffer (1232): dig
	// retries over TCP by itself on TC and gets them all.
	if got := run(t, "big.service.consul", "+short"); len(got) != 200 {
		t.Errorf("200 instances: dig got %d addresses, want 200", len(got))
	}
	// NXDOMAIN, with the SOA in AUTHORITY.
	out := digOut(t, "nope.service.consul")
	if !strings.Contains(out, "status: NXDOMAIN") || !strings.Contains(out, "SOA\tns.consul. hostmaster.consul.") {
		t.Errorf("NXDOMAIN: want status NXDOMAIN and the SOA, got\n%s", out)
	}
}
