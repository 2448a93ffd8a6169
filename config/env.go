package config

import "strings"

// EnvVar is one environment variable Load reads and the key it sets.
type EnvVar struct {
	Name string // e.g. OUTRIGGER_HTTP_PORT
	Key  string // e.g. ports.http
}

var envVars = []EnvVar{
	{"OUTRIGGER_NODE", "node_name"},
	{"OUTRIGGER_DATACENTER", "datacenter"},
	{"OUTRIGGER_DATA_DIR", "data_dir"},
	{"OUTRIGGER_BIND", "bind_addr"},
	{"OUTRIGGER_ADVERTISE", "advertise_addr"},
	{"OUTRIGGER_CLIENT", "client_addr"},
	{"OUTRIGGER_HTTP_PORT", "ports.http"},
	{"OUTRIGGER_DNS_PORT", "ports.dns"},
	{"OUTRIGGER_SERF_PORT", "ports.serf_lan"},
	{"OUTRIGGER_SERVER_PORT", "ports.server"},
	{"OUTRIGGER_SERVER", "server"},
	{"OUTRIGGER_BOOTSTRAP_EXPECT", "bootstrap_expect"},
	{"OUTRIGGER_RETRY_JOIN", "retry_join"},
	{"OUTRIGGER_ENCRYPT", "encrypt"},
	{"OUTRIGGER_LOG_LEVEL", "log_level"},
	{"OUTRIGGER_LOG_JSON", "log_json"},
	{"OUTRIGGER_INGRESS", "ingress_name"},
}

// EnvVars returns the environment variables Load reads, in this order:
//
//	OUTRIGGER_NODE              node_name
//	OUTRIGGER_DATACENTER        datacenter
//	OUTRIGGER_DATA_DIR          data_dir
//	OUTRIGGER_BIND              bind_addr
//	OUTRIGGER_ADVERTISE         advertise_addr
//	OUTRIGGER_CLIENT            client_addr
//	OUTRIGGER_HTTP_PORT         ports.http
//	OUTRIGGER_DNS_PORT          ports.dns
//	OUTRIGGER_SERF_PORT         ports.serf_lan
//	OUTRIGGER_SERVER_PORT       ports.server
//	OUTRIGGER_SERVER            server            (true/false, 1/0)
//	OUTRIGGER_BOOTSTRAP_EXPECT  bootstrap_expect
//	OUTRIGGER_RETRY_JOIN        retry_join        (comma-separated)
//	OUTRIGGER_ENCRYPT           encrypt
//	OUTRIGGER_LOG_LEVEL         log_level
//	OUTRIGGER_LOG_JSON          log_json          (true/false, 1/0)
//
// A variable that is unset or empty is ignored, so `OUTRIGGER_NODE=` in a
// compose file does not blank the node name. Values parse like strings in
// a file: integers in decimal, booleans as strconv.ParseBool takes them.
func EnvVars() []EnvVar {
	return append([]EnvVar(nil), envVars...)
}

// envLayer reads the environment through lookup.
func envLayer(lookup func(string) (string, bool)) (*layer, []error) {
	l := newLayer()
	var errs []error
	for _, ev := range envVars {
		v, ok := lookup(ev.Name)
		if !ok || v == "" {
			continue
		}
		var val any = v
		if ev.Key == "retry_join" {
			var list []any
			for _, s := range strings.Split(v, ",") {
				if s = strings.TrimSpace(s); s != "" {
					list = append(list, s)
				}
			}
			if len(list) == 0 {
				continue
			}
			val = list
		}
		if err := l.decode(ev.Key, ev.Name, val); err != nil {
			errs = append(errs, err)
		}
	}
	return l, errs
}
