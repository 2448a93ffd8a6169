package config

import (
	"errors"
	"flag"
	"maps"
	"slices"
	"strings"
)

// Flags holds `agent run`'s flags. Create it with NewFlags, parse the flag
// set, then pass it to Load.
type Flags struct {
	// Hostname gives the default node name when no source sets one. If
	// nil, os.Hostname is used. Tests set it.
	Hostname func() (string, error)

	fs      *flag.FlagSet
	dev     bool
	vals    Config       // what the flags set; only visited flags count
	sources []fileSource // -config-file and -config-dir, in command-line order
	svc     serviceFlags // -service and the -service-* and -check-* flags
}

// fileSource is one -config-file or -config-dir argument.
type fileSource struct {
	path string
	dir  bool // from -config-dir
}

// NewFlags registers `agent run`'s flags on fs, with Consul's names (Go's
// flag package accepts -x and --x alike), and returns the value Load
// reads them from. Defaults shown by fs.PrintDefaults are DefaultConfig's;
// only flags given on the command line override other sources.
func NewFlags(fs *flag.FlagSet) *Flags {
	f := &Flags{fs: fs}
	d := DefaultConfig()
	v := &f.vals
	fs.BoolVar(&f.dev, "dev", false, "run a single in-memory server with everything on, for trying things out; no -data-dir needed")
	fs.StringVar(&v.NodeName, "node", "", "node name, unique in the cluster (default: the hostname up to its first dot)")
	fs.StringVar(&v.Datacenter, "datacenter", d.Datacenter, "datacenter name: lowercase letters, digits, '-' and '_'")
	fs.StringVar(&v.DataDir, "data-dir", "", "directory for persistent state (required unless -dev)")
	fs.StringVar(&v.BindAddr, "bind", d.BindAddr, "IP address gossip and server RPC listen on")
	fs.StringVar(&v.AdvertiseAddr, "advertise", "", "IP address other agents reach this one on (default: -bind, or the first private IPv4 if -bind is 0.0.0.0)")
	fs.StringVar(&v.ClientAddr, "client", d.ClientAddr, "IP address the HTTP API and DNS listen on")
	fs.IntVar(&v.Ports.HTTP, "http-port", d.Ports.HTTP, "HTTP API port")
	fs.IntVar(&v.Ports.DNS, "dns-port", d.Ports.DNS, "DNS port, UDP and TCP")
	fs.IntVar(&v.Ports.SerfLAN, "serf-port", d.Ports.SerfLAN, "gossip port, UDP and TCP")
	fs.IntVar(&v.Ports.Server, "server-port", d.Ports.Server, "Raft and server RPC port")
	fs.BoolVar(&v.Server, "server", false, "run as a server (a Raft voter)")
	fs.IntVar(&v.BootstrapExpect, "bootstrap-expect", 0, "servers to wait for before forming the cluster; needs -server")
	fs.Var((*listValue)(&v.RetryJoin), "retry-join", "`host[:port]` of an agent to join, retried until one succeeds; repeatable")
	fs.DurationVar(&v.RetryInterval, "retry-interval", d.RetryInterval, "first wait between join attempts")
	fs.IntVar(&v.RetryMax, "retry-max", 0, "join attempts before giving up; 0 retries forever")
	fs.StringVar(&v.Encrypt, "encrypt", "", "base64 gossip encryption `key`, 16, 24 or 32 bytes decoded (make one with agent keygen)")
	fs.Var(&sourceValue{&f.sources, false}, "config-file", "JSON or HCL configuration `file`; repeatable, later files override earlier ones")
	fs.Var(&sourceValue{&f.sources, true}, "config-dir", "`directory` whose *.json and *.hcl files are loaded in lexical order; repeatable")
	fs.StringVar(&v.LogLevel, "log-level", d.LogLevel, "trace, debug, info, warn or error")
	fs.BoolVar(&v.LogJSON, "log-json", false, "log JSON lines instead of text")
	fs.Var((*metaValue)(&v.NodeMeta), "node-meta", "`key:value` node metadata; repeatable")
	fs.BoolVar(&v.EnableScriptChecks, "enable-script-checks", false, "allow script checks (Args) in service and check definitions; anyone who can reach the HTTP API can then run commands as this agent's user")
	fs.StringVar(&v.IngressName, "ingress", "", "serve the ingress configuration stored under this `name` (K/V outrigger/ingress/NAME; PUT /v1/outrigger/ingress/NAME sets it)")
	f.svc.register(fs)
	return f
}

// layer returns what the flags the user set (and only those) say.
func (f *Flags) layer() *layer {
	l := newLayer()
	l.cfg = f.vals
	f.fs.Visit(func(fl *flag.Flag) {
		if key, ok := flagKeys[fl.Name]; ok {
			l.set[key] = true
		}
	})
	return l
}

// listValue is a repeatable string flag.
type listValue []string

func (l *listValue) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(*l, ",")
}

func (l *listValue) Set(s string) error {
	*l = append(*l, s)
	return nil
}

// metaValue is a repeatable key:value flag.
type metaValue map[string]string

func (m *metaValue) String() string {
	if m == nil || *m == nil {
		return ""
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(*m)) {
		parts = append(parts, k+":"+(*m)[k])
	}
	return strings.Join(parts, ",")
}

func (m *metaValue) Set(s string) error {
	k, v, ok := strings.Cut(s, ":")
	if !ok || k == "" {
		return errors.New("want key:value")
	}
	if *m == nil {
		*m = map[string]string{}
	}
	(*m)[k] = v
	return nil
}

// sourceValue appends -config-file and -config-dir arguments to one list,
// so files and directories load in the order given.
type sourceValue struct {
	list *[]fileSource
	dir  bool
}

func (s *sourceValue) String() string {
	if s == nil || s.list == nil {
		return ""
	}
	var paths []string
	for _, src := range *s.list {
		if src.dir == s.dir {
			paths = append(paths, src.path)
		}
	}
	return strings.Join(paths, ",")
}

func (s *sourceValue) Set(path string) error {
	if path == "" {
		return errors.New("empty path")
	}
	*s.list = append(*s.list, fileSource{path: path, dir: s.dir})
	return nil
}
