package config

import "time"

// Config is the agent's whole configuration after merging every source.
// Field comments give the Consul key it is read from.
type Config struct {
	// Dev runs a single in-memory server with everything on (-dev, flag
	// only). See DevConfig.
	Dev bool
	// NodeName names this agent in the cluster (node_name). Default: the
	// hostname up to its first dot.
	NodeName string
	// Datacenter (datacenter). Default "dc1".
	Datacenter string
	// DataDir holds persistent state (data_dir). Required unless Dev.
	DataDir string

	// BindAddr is the address gossip and server RPC listen on (bind_addr).
	// A plain IP address; go-sockaddr templates are not supported.
	// Default "0.0.0.0".
	BindAddr string
	// AdvertiseAddr is the address other agents use to reach this one
	// (advertise_addr). A plain IP address. If empty, the agent uses
	// BindAddr, or the first private IPv4 when BindAddr is unspecified.
	AdvertiseAddr string
	// ClientAddr is the address HTTP and DNS listen on (client_addr). One
	// plain IP address (Consul's space-separated list and templates are not
	// supported). Default "127.0.0.1".
	ClientAddr string

	Ports Ports

	// Server makes this agent a Raft voter (server).
	Server bool
	// BootstrapExpect is the number of servers to wait for before forming
	// the Raft cluster (bootstrap_expect). 0 means no automatic bootstrap.
	BootstrapExpect int

	// RetryJoin lists host[:port] addresses joined at start and retried with
	// back-off until one succeeds (retry_join).
	RetryJoin []string
	// RetryInterval is the first back-off between join attempts
	// (retry_interval, a duration string such as "30s"). Default 5s (1s in
	// Dev).
	RetryInterval time.Duration
	// RetryMax caps join attempts; 0 means retry forever (retry_max).
	RetryMax int
	// ReconnectTimeout is how long a failed member is kept and retried
	// (reconnect_timeout, as Consul): the gossip layer joins its last
	// address again now and then until it comes back or this passes, and
	// then forgets it. Default 72h; at least 8h, as Consul requires.
	ReconnectTimeout time.Duration

	// Encrypt is the base64 gossip key (encrypt): 16, 24 or 32 bytes decoded.
	Encrypt string

	// LeaveOnTerminate makes SIGTERM a graceful leave (leave_on_terminate).
	// Default true for clients, false for servers (as Consul: a stopped
	// server stays in the Raft configuration so a restart keeps quorum).
	LeaveOnTerminate bool
	// SkipLeaveOnInterrupt makes Ctrl-C (SIGINT) stop without leaving
	// (skip_leave_on_interrupt). Default false for clients, true for servers.
	SkipLeaveOnInterrupt bool

	// LogLevel is one of trace, debug, info, warn, error (log_level). Load
	// lowercases it and maps "warning" to "warn" and "err" to "error".
	LogLevel string
	// LogJSON logs in JSON lines instead of text (log_json).
	LogJSON bool

	// Autopilot tunes how servers manage the Raft configuration.
	Autopilot Autopilot

	// Proxy tunes the built-in sidecar and ingress proxy.
	Proxy Proxy

	// NodeMeta is free-form node metadata (node_meta).
	NodeMeta map[string]string

	// EnableScriptChecks allows script checks (a check with Args), from
	// files and the HTTP API alike (enable_script_checks,
	// -enable-script-checks). Off by default: with it on, anyone who can
	// reach the HTTP API can run commands as the agent's user.
	EnableScriptChecks bool

	// IngressName makes this agent an ingress (ingress_name, -ingress): it
	// serves the ingress configuration stored under that name in K/V
	// (outrigger/ingress/NAME), following changes live. An `ingress`
	// section of a file (in Extra) seeds that key when it is absent.
	IngressName string

	// Extra keeps, undecoded, the sections that later work will give a
	// meaning to, keyed by their Consul key: service, services, check,
	// checks, watches, templates, recursors, dns_config, domain, alt_domain,
	// and ingress (Outrigger's). Values
	// have the shapes encoding/json gives, except that numbers are int when
	// integral (float64 otherwise): map[string]any, []any, string, int,
	// float64, bool, nil. The list keys (service, services, check, checks,
	// watches, templates, recursors) always hold a []any, so a lone JSON object or HCL
	// block becomes a one-element list; dns_config is one object even if
	// HCL repeats the block. Objects nested inside these sections that came
	// from HCL blocks appear as one-element lists of objects (HCL1 cannot
	// tell a block from a list of blocks): decoders of these sections should
	// accept either, as asObject does.
	//
	// The -service flag (with -service-port, -service-tag, -check-http and
	// the rest) adds one more entry to "service", after the files' ones,
	// in the same shape a file's `service { }` block has.
	Extra map[string]any

	// ConfigFiles records the files the configuration was read from, in the
	// order loaded, directories expanded; informational.
	ConfigFiles []string
}

// Proxy holds the proxy { ... } settings.
type Proxy struct {
	// DrainTimeout is how long connections to an instance that left the
	// healthy set (or to a removed listener) live on before they are
	// closed, and how long a stopping agent lets connections finish
	// (proxy.drain_timeout). Default 30s.
	DrainTimeout time.Duration
}

// Autopilot holds the autopilot { ... } settings (Consul's names).
type Autopilot struct {
	// CleanupDeadServers lets the leader remove servers that have been
	// failed in gossip for DeadServerLastContactThreshold
	// (autopilot.cleanup_dead_servers). Default true. The leader never
	// removes one if fewer than bootstrap_expect voters would remain.
	CleanupDeadServers bool
	// DeadServerLastContactThreshold is how long a server must have been
	// failed before it is removed (autopilot.dead_server_last_contact_threshold).
	// Default 24h; at least 1m.
	DeadServerLastContactThreshold time.Duration
}

// Ports are the agent's listening ports (ports { ... }).
type Ports struct {
	HTTP    int // ports.http, default 8500
	DNS     int // ports.dns, default 8600
	SerfLAN int // ports.serf_lan, default 8301
	Server  int // ports.server, default 8300
}

// DefaultConfig returns the defaults, before any file, environment or flag.
func DefaultConfig() Config {
	return Config{
		Datacenter:       "dc1",
		BindAddr:         "0.0.0.0",
		ClientAddr:       "127.0.0.1",
		Ports:            Ports{HTTP: 8500, DNS: 8600, SerfLAN: 8301, Server: 8300},
		RetryInterval:    5 * time.Second,
		ReconnectTimeout: 72 * time.Hour,
		LeaveOnTerminate: true,
		Autopilot:        Autopilot{CleanupDeadServers: true, DeadServerLastContactThreshold: 24 * time.Hour},
		Proxy:            Proxy{DrainTimeout: 30 * time.Second},
		LogLevel:         "info",
	}
}

// DevConfig returns the configuration -dev starts from: DefaultConfig with
// Dev and Server on, BootstrapExpect 1 (a cluster of one elects itself),
// BindAddr and ClientAddr on 127.0.0.1 and RetryInterval 1s. DataDir is not
// required. Files, environment and flags still override it.
func DevConfig() Config {
	c := DefaultConfig()
	c.Dev = true
	c.Server = true
	c.BootstrapExpect = 1
	c.BindAddr = "127.0.0.1"
	c.ClientAddr = "127.0.0.1"
	c.RetryInterval = time.Second
	return c
}
