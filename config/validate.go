package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Validate checks c and returns every problem, one per line (errors.Join of
// *FieldError), each naming the Consul key and the bad value, e.g.
//
//	encrypt: key is 7 bytes after base64 decoding, want 16, 24 or 32
//
// It does not touch the network; CheckPorts does.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fieldErr(ErrInvalid, field, format, args...))
	}

	switch {
	case c.NodeName == "":
		bad("node_name", "empty")
	case !isLabel(c.NodeName):
		bad("node_name", "%s must be letters, digits and '-' (it is a DNS label)", quote(c.NodeName))
	case len(c.NodeName) > 63:
		bad("node_name", "%s is longer than 63 characters (it is a DNS label)", quote(c.NodeName))
	}
	switch {
	case c.Datacenter == "":
		bad("datacenter", "empty")
	case strings.TrimFunc(c.Datacenter, isDatacenterRune) != "":
		bad("datacenter", "%s must be lowercase letters, digits, '-' and '_'", quote(c.Datacenter))
	}
	if c.IngressName != "" && (strings.TrimFunc(c.IngressName, isIngressNameRune) != "" || len(c.IngressName) > 128) {
		bad("ingress_name", "%s must be at most 128 letters, digits, '-', '_' and '.' (it names a K/V key)", quote(c.IngressName))
	}
	if c.DataDir == "" && !c.Dev {
		bad("data_dir", "required (or run with -dev)")
	}

	bind, bindOK := parseIP(c.BindAddr)
	if !bindOK {
		bad("bind_addr", "%s is not an IP address", quote(c.BindAddr))
	}
	client, clientOK := parseIP(c.ClientAddr)
	if !clientOK {
		bad("client_addr", "%s is not an IP address", quote(c.ClientAddr))
	}
	if c.AdvertiseAddr != "" {
		if ip, ok := parseIP(c.AdvertiseAddr); !ok {
			bad("advertise_addr", "%s is not an IP address", quote(c.AdvertiseAddr))
		} else if ip.IsUnspecified() {
			bad("advertise_addr", "%s cannot be advertised: other agents cannot reach it", quote(c.AdvertiseAddr))
		}
	}

	for _, p := range c.portList() {
		if p.port < 1 || p.port > 65535 {
			bad(p.field, "%d is out of range 1-65535", p.port)
		}
	}
	if bindOK && clientOK {
		errs = append(errs, c.portClashes(bind, client)...)
	}

	if c.BootstrapExpect < 0 {
		bad("bootstrap_expect", "%d is negative", c.BootstrapExpect)
	} else if c.BootstrapExpect > 0 && !c.Server {
		bad("bootstrap_expect", "%d needs server = true (-server)", c.BootstrapExpect)
	}

	for i, addr := range c.RetryJoin {
		if err := checkJoinAddr(addr); err != nil {
			bad(fmt.Sprintf("retry_join[%d]", i), "%s is not host[:port]: %v", quote(addr), err)
		}
	}
	if c.RetryInterval <= 0 {
		bad("retry_interval", "%s must be positive", c.RetryInterval)
	}
	if c.RetryMax < 0 {
		bad("retry_max", "%d is negative", c.RetryMax)
	}
	if c.ReconnectTimeout < 8*time.Hour {
		bad("reconnect_timeout", "%s is less than 8h", c.ReconnectTimeout)
	}
	if c.Proxy.DrainTimeout < 0 {
		bad("proxy.drain_timeout", "%s is negative", c.Proxy.DrainTimeout)
	}
	if c.Autopilot.DeadServerLastContactThreshold < time.Minute {
		bad("autopilot.dead_server_last_contact_threshold", "%s is below the minimum of 1m", c.Autopilot.DeadServerLastContactThreshold)
	}

	if c.Encrypt != "" {
		key, err := base64.StdEncoding.DecodeString(c.Encrypt)
		switch {
		case err != nil:
			bad("encrypt", "not valid base64 (make a key with `agent keygen`)")
		case len(key) != 16 && len(key) != 24 && len(key) != 32:
			bad("encrypt", "key is %d bytes after base64 decoding, want 16, 24 or 32", len(key))
		}
	}

	switch c.LogLevel {
	case "trace", "debug", "info", "warn", "error":
	default:
		bad("log_level", "%s is not one of trace, debug, info, warn, error", quote(c.LogLevel))
	}

	errs = append(errs, checkNodeMeta(c.NodeMeta)...)
	return errors.Join(errs...)
}

// parseIP parses a plain IP address (an IPv6 zone is allowed).
func parseIP(s string) (netip.Addr, bool) {
	ip, err := netip.ParseAddr(s)
	return ip, err == nil
}

// isLabel reports whether s is made of letters, digits and hyphens only.
func isLabel(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return s != ""
}

func isDatacenterRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_'
}

// checkJoinAddr checks one retry_join entry: an IP address, a host name,
// either with a port, or a bracketed IPv6 address with or without a port.
func checkJoinAddr(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if strings.Contains(s, "provider=") {
		return errors.New("cloud auto-join is not supported")
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return nil // bare IPv4 or IPv6
	}
	host, port := s, ""
	switch {
	case strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]"):
		host = s[1 : len(s)-1]
		if ip, err := netip.ParseAddr(host); err != nil || !ip.Is6() {
			return errors.New("brackets must hold an IPv6 address")
		}
		return nil
	case strings.Contains(s, ":"):
		var err error
		if host, port, err = net.SplitHostPort(s); err != nil {
			return errors.New("cannot split host and port")
		}
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("port %s is not 1-65535", quote(port))
		}
		if _, err := netip.ParseAddr(host); err == nil {
			return nil
		}
	}
	if !isHostname(host) {
		return errors.New("not an IP address or host name")
	}
	return nil
}

// isHostname reports whether s is a plausible DNS name: dot-separated
// labels of letters, digits, '-' and '_', 1-63 bytes each, 253 in all,
// with an optional trailing dot.
func isHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// Node metadata limits, Consul's.
const (
	maxMetaPairs    = 64
	maxMetaKeyLen   = 128
	maxMetaValueLen = 512
)

func checkNodeMeta(meta map[string]string) []error {
	var errs []error
	if len(meta) > maxMetaPairs {
		errs = append(errs, fieldErr(ErrInvalid, "node_meta", "%d pairs, at most %d allowed", len(meta), maxMetaPairs))
	}
	for _, k := range slices.Sorted(maps.Keys(meta)) {
		switch {
		case k == "":
			errs = append(errs, fieldErr(ErrInvalid, "node_meta", "empty key"))
			continue
		case len(k) > maxMetaKeyLen:
			errs = append(errs, fieldErr(ErrInvalid, "node_meta", "key %s is longer than %d characters", quote(k), maxMetaKeyLen))
			continue
		case strings.TrimFunc(k, isMetaKeyRune) != "":
			errs = append(errs, fieldErr(ErrInvalid, "node_meta", "key %s must be letters, digits, '-' and '_'", quote(k)))
			continue
		}
		if v := meta[k]; utf8.RuneCountInString(v) > maxMetaValueLen {
			errs = append(errs, fieldErr(ErrInvalid, "node_meta."+k, "value is longer than %d characters", maxMetaValueLen))
		}
	}
	return errs
}

func isMetaKeyRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
}

func isIngressNameRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
}
