// Package config turns defaults, configuration files (JSON or HCL, Consul's
// keys), environment variables and command-line flags into one validated
// agent Config. It does not start anything: the agent package wires the
// resulting Config into components.
package config

import "time"

// Config is the agent's whole configuration after merging every source.
// Field comments give the Consul key it is read from.
type Config struct {
	// Dev runs a single in-memory server with everything on (-dev).
	Dev bool
	// NodeName names this agent in the cluster (node_name). Default: hostname.
	NodeName string
	// Datacenter (datacenter). Default "dc1".
	Datacenter string
	// DataDir holds persistent state (data_dir). Required unless Dev.
	DataDir string

	// BindAddr is the address gossip and server RPC listen on (bind_addr).
	// Default "0.0.0.0".
	BindAddr string
	// AdvertiseAddr is the address other agents use to reach this one
	// (advertise_addr). Default: BindAddr, or the first private IPv4 when
	// BindAddr is unspecified.
	AdvertiseAddr string
	// ClientAddr is the address HTTP and DNS listen on (client_addr).
	// Default "127.0.0.1".
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
	// (retry_interval). Default 5s (1s in Dev).
	RetryInterval time.Duration
	// RetryMax caps join attempts; 0 means retry forever (retry_max).
	RetryMax int

	// Encrypt is the base64 gossip key (encrypt): 16, 24 or 32 bytes decoded.
	Encrypt string

	// LeaveOnTerminate makes SIGTERM a graceful leave (leave_on_terminate).
	// Default true.
	LeaveOnTerminate bool
	// SkipLeaveOnInterrupt makes Ctrl-C (SIGINT) stop without leaving
	// (skip_leave_on_interrupt). Default false.
	SkipLeaveOnInterrupt bool

	// LogLevel is one of trace, debug, info, warn, error (log_level).
	LogLevel string
	// LogJSON logs in JSON lines instead of text (log_json).
	LogJSON bool

	// NodeMeta is free-form node metadata (node_meta).
	NodeMeta map[string]string

	// ConfigFiles and ConfigDirs record where the configuration came from,
	// in the order loaded; informational.
	ConfigFiles []string
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
		LeaveOnTerminate: true,
		LogLevel:         "info",
	}
}
